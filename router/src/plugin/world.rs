//! The loading and bookkeeping every world's host shares, written once: linking a component against WASI and
//! the world's imports, its `InstancePre`, the plugin's config, limits and granted environment, stores for its
//! instances, and counting instantiations, calls and failures. Each world (`auth`, `sink`, `signaling`)
//! is a thin layer over a [`WorldPlugin`]: its calls, and how it keeps instances (pooled for auth, one per
//! recording for sinks, one per mount for signaling).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store};

use super::LoadError;
use super::engine::PluginHost;
use super::state::HostState;
use super::stats::{CallFailure, PluginStats};
use crate::config::model::PluginConfig;

/// What a world's generated bindings (`wasmtime::component::bindgen!`) give the generic loader.
pub trait World: Sized {
    /// The world's typed `InstancePre` (`AuthPre`, `SinkPre`).
    type Pre: Send + Sync;
    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()>;
    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre>;
    fn engine(pre: &Self::Pre) -> &Engine;
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self>;
}

/// A plugin of world `W`, linked and pre-instantiated, with what every instance of it is made with.
pub struct WorldPlugin<W: World> {
    pub name: Arc<str>,
    pre: W::Pre,
    /// The plugin's `config` table, as the JSON its `init`/constructor gets.
    pub config_json: String,
    pub memory_cap: u64,
    pub timeout: Duration,
    env: Vec<(String, String)>,
    pub stats: PluginStats,
}

impl<W: World> std::fmt::Debug for WorldPlugin<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorldPlugin").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<W: World> WorldPlugin<W> {
    /// Links `component` against WASI (blocking waits trap) and `W`'s imports, and pre-instantiates it. A
    /// component that imports what the world does not offer fails here, with wasmtime's words.
    pub fn link(host: &PluginHost, config: &PluginConfig, component: &Component) -> Result<Self, LoadError> {
        let name = config.name.as_str();
        let link_error = |e: wasmtime::Error| LoadError::new(name, format!("cannot link: {e:#}"));
        let mut linker = super::state::base_linker(host.engine()).map_err(link_error)?;
        W::add_to_linker(&mut linker).map_err(link_error)?;
        let pre = W::pre(linker.instantiate_pre(component).map_err(link_error)?).map_err(link_error)?;
        Ok(WorldPlugin {
            name: Arc::from(name),
            pre,
            config_json: config.config.to_string(),
            memory_cap: config.limits.memory_bytes,
            timeout: config.limits.call_timeout,
            env: super::state::granted_env(&config.grants),
            stats: PluginStats::default(),
        })
    }

    /// A store for one instance: the plugin's WASI context (its granted environment only), its memory cap and a
    /// deadline for what runs first.
    pub fn new_store(&self) -> Store<HostState> {
        let cap = usize::try_from(self.memory_cap).unwrap_or(usize::MAX);
        let state = HostState::new(Arc::clone(&self.name), cap, &self.env);
        super::state::new_store(W::engine(&self.pre), state, self.timeout)
    }

    /// Instantiates into `store`, counted; a failure (a trap in its start, out of memory) is classified and
    /// counted.
    pub fn instantiate(&self, store: &mut Store<HostState>) -> Result<W, CallFailure> {
        match W::instantiate(&self.pre, store) {
            Ok(instance) => {
                self.stats.instantiations.fetch_add(1, Ordering::Relaxed);
                Ok(instance)
            }
            Err(e) => {
                let failure = self.classify(&e, store);
                self.stats.failed(&failure);
                Err(failure)
            }
        }
    }

    /// Instantiates into a fresh store and drops the instance, counting nothing: what the instantiation
    /// benchmark measures.
    pub fn instantiate_bare(&self) -> Result<(), CallFailure> {
        let mut store = self.new_store();
        W::instantiate(&self.pre, &mut store).map(drop).map_err(|e| CallFailure::Instantiate(format!("{e:#}")))
    }

    /// What a call's error was: a trap, the deadline, the memory cap.
    pub fn classify(&self, e: &wasmtime::Error, store: &Store<HostState>) -> CallFailure {
        CallFailure::classify(e, store.data().memory.hit, self.timeout, self.memory_cap)
    }

    /// A call that failed and took its instance with it: classified and counted.
    pub fn failed(&self, e: &wasmtime::Error, store: &Store<HostState>) -> CallFailure {
        let failure = self.classify(e, store);
        self.count_failure(&failure);
        failure
    }

    /// Counts a failure that ends the instance (it is never used again).
    pub fn count_failure(&self, failure: &CallFailure) {
        self.stats.failed(failure);
        self.stats.recycled.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a call that began at `started`, and its time.
    pub fn count_call(&self, started: Instant) {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.call_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Implements [`World`] for a world's generated bindings: `world_impl!(Auth, AuthPre)`.
macro_rules! world_impl {
    ($world:ty, $pre:ident) => {
        impl $crate::plugin::world::World for $world {
            type Pre = $pre<$crate::plugin::state::HostState>;

            fn add_to_linker(
                linker: &mut wasmtime::component::Linker<$crate::plugin::state::HostState>,
            ) -> wasmtime::Result<()> {
                <$world>::add_to_linker::<_, wasmtime::component::HasSelf<$crate::plugin::state::HostState>>(
                    linker,
                    |s| s,
                )
            }

            fn pre(
                pre: wasmtime::component::InstancePre<$crate::plugin::state::HostState>,
            ) -> wasmtime::Result<Self::Pre> {
                $pre::new(pre)
            }

            fn engine(pre: &Self::Pre) -> &wasmtime::Engine {
                pre.engine()
            }

            fn instantiate(
                pre: &Self::Pre,
                store: &mut wasmtime::Store<$crate::plugin::state::HostState>,
            ) -> wasmtime::Result<Self> {
                pre.instantiate(store)
            }
        }
    };
}
pub(crate) use world_impl;
