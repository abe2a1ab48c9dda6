//! The host side of the `auth` world: a pool of instances per plugin, calls under a deadline and a memory cap,
//! and the decision cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::Component;

use super::LoadError;
use super::engine::{PluginHost, deadline_ticks};
use super::state::HostState;
use super::stats::{CallFailure, PluginStats};
use super::world::{WorldPlugin, world_impl};
use crate::config::model::PluginConfig;

pub(super) mod bindings {
    wasmtime::component::bindgen!({
        world: "auth",
        path: "../sdk/wit",
        additional_derives: [PartialEq, Eq, Hash],
    });
}

use bindings::{Auth, AuthPre};
world_impl!(Auth, AuthPre);

pub use bindings::sluice::plugin::auth_types::{
    Action, Allow, BasicCredentials, Credentials, Decision, Protocol, Request,
};
use bindings::sluice::plugin::host::{Host, LogLevel};

/// `auth-types` has no functions; its host trait is empty.
impl bindings::sluice::plugin::auth_types::Host for HostState {}

impl Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        let level = match level {
            LogLevel::Trace => tracing::Level::TRACE,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        };
        HostState::log(self, level, &message);
    }
}

/// Idle instances kept per plugin; concurrent calls beyond it instantiate more and drop them afterwards.
const MAX_IDLE: usize = 8;
/// Decisions cached per plugin; when full, expired ones go first, then everything.
const MAX_CACHED: usize = 10_000;

/// An auth plugin, loaded: idle instances and cached decisions over the world's loader.
pub struct AuthPlugin {
    plugin: WorldPlugin<Auth>,
    idle: Mutex<Vec<Instance>>,
    cache: Mutex<HashMap<[u8; 32], CachedAllow>>,
}

impl std::fmt::Debug for AuthPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthPlugin").field("name", &self.plugin.name).finish_non_exhaustive()
    }
}

/// An `allow` the plugin said may be reused until `until`.
#[derive(Debug, Clone)]
struct CachedAllow {
    allow: Allow,
    until: Instant,
}

struct Instance {
    store: Store<HostState>,
    auth: Auth,
}

impl AuthPlugin {
    /// Links and pre-instantiates the plugin, then starts one instance to run `init` with its config: a config
    /// the plugin rejects fails the load, with the plugin's message.
    pub fn new(host: &PluginHost, config: &PluginConfig, component: &Component) -> Result<AuthPlugin, LoadError> {
        let plugin = AuthPlugin {
            plugin: WorldPlugin::link(host, config, component)?,
            idle: Mutex::new(Vec::new()),
            cache: Mutex::new(HashMap::new()),
        };
        let first = plugin.instantiate().map_err(|e| LoadError::new(&config.name, e.to_string()))?;
        plugin.idle.lock().unwrap_or_else(|p| p.into_inner()).push(first);
        Ok(plugin)
    }

    pub fn stats(&self) -> &PluginStats {
        &self.plugin.stats
    }

    /// A decision cached for this request, if one is still fresh. Cheap: no plugin call.
    pub fn cached(&self, request: &Request) -> Option<Allow> {
        let key = cache_key(request);
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(&key).filter(|c| c.until > Instant::now()).map(|c| c.allow.clone())
    }

    /// Asks the plugin. Blocks for up to the call timeout: call it from a blocking-capable thread, never from an
    /// async task. An `allow` with a TTL is cached.
    pub fn authorize(&self, request: &Request) -> Result<Decision, CallFailure> {
        let decision = self.call(request)?;
        if let Decision::Allow(allow) = &decision
            && allow.cache_ttl_ms > 0
        {
            let until = Instant::now() + Duration::from_millis(u64::from(allow.cache_ttl_ms));
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= MAX_CACHED {
                let now = Instant::now();
                cache.retain(|_, c| c.until > now);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(cache_key(request), CachedAllow { allow: allow.clone(), until });
        }
        Ok(decision)
    }

    /// One call into the plugin on a pooled instance. A failed instance is dropped, never reused.
    pub fn call(&self, request: &Request) -> Result<Decision, CallFailure> {
        self.call_measured(request).0
    }

    /// [`call`](Self::call), also returning the instance's linear memory size afterwards (bytes).
    pub fn call_measured(&self, request: &Request) -> (Result<Decision, CallFailure>, usize) {
        // Popped in its own statement: the lock must not be held while a new instance is made and initialised.
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut instance = match idle {
            Some(i) => i,
            None => match self.instantiate() {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!(plugin = %self.plugin.name, error = %e, "plugin instance could not be started");
                    return (Err(e), 0);
                }
            },
        };
        let result = self.call_on(&mut instance, request);
        let memory = instance.store.data().memory.peak;
        if result.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(instance);
            }
        }
        (result, memory)
    }

    fn call_on(&self, instance: &mut Instance, request: &Request) -> Result<Decision, CallFailure> {
        let plugin = &self.plugin;
        let started = Instant::now();
        instance.store.set_epoch_deadline(deadline_ticks(plugin.timeout));
        let result = instance.auth.sluice_plugin_authorizer().call_authorize(&mut instance.store, request);
        plugin.count_call(started);
        result.map_err(|e| {
            let failure = plugin.failed(&e, &instance.store);
            tracing::warn!(plugin = %plugin.name, error = %failure, "plugin call failed; its instance is recycled");
            failure
        })
    }

    /// Instantiates from the `InstancePre` and drops the instance, without running `init`: what the
    /// instantiation benchmark measures.
    pub fn instantiate_bare(&self) -> Result<(), CallFailure> {
        self.plugin.instantiate_bare()
    }

    /// A fresh instance, initialised with the plugin's config.
    fn instantiate(&self) -> Result<Instance, CallFailure> {
        let plugin = &self.plugin;
        let mut store = plugin.new_store();
        let auth = plugin.instantiate(&mut store)?;
        store.set_epoch_deadline(deadline_ticks(plugin.timeout));
        let failure = match auth.sluice_plugin_authorizer().call_init(&mut store, &plugin.config_json) {
            Ok(Ok(())) => return Ok(Instance { store, auth }),
            Ok(Err(message)) => CallFailure::Instantiate(format!("its init refused the config: {message}")),
            Err(e) => plugin.classify(&e, &store),
        };
        plugin.stats.failed(&failure);
        Err(failure)
    }
}

/// What a cached decision is filed under: a hash of (action, protocol, route, credentials) and, for API calls,
/// the method and path, so secrets are not kept and an allow for `GET /v1/status` is not reused for
/// `POST /v1/reload`. Every field is length-prefixed. The address and query are not part of it: a plugin whose
/// decision depends on them returns TTL 0.
fn cache_key(request: &Request) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(&[request.action as u8, request.protocol as u8]);
    field(request.route.as_bytes());
    field(if request.action == Action::Api { request.target.as_bytes() } else { b"" });
    match &request.credentials {
        Credentials::None => field(b"none"),
        Credentials::Basic(b) => {
            field(b"basic");
            field(b.user.as_bytes());
            field(b.password.as_bytes());
        }
        Credentials::Bearer(t) => {
            field(b"bearer");
            field(t.as_bytes());
        }
        Credentials::StreamKey(k) => {
            field(b"key");
            field(k.as_bytes());
        }
    }
    h.finalize().into()
}
