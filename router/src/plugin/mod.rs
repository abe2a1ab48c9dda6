//! The WebAssembly plugin host: wasmtime with the component model, one engine per process.
//!
//! The WIT package in `sdk/wit/` is the single source of truth; [`auth`], [`sink`] and [`signaling`] generate the host side of
//! their worlds from it (the SDK generates the guest side from the same files), each a thin layer over the
//! loading every world shares (`world.rs`: link, `InstancePre`, config, limits, env, stores, statistics). Loading a plugin
//! ([`PluginHost::load`]) reads its bytes (embedded built-in or a file), checks what it imports against what it
//! was granted and which interface version it was built for, compiles it (or reuses the artifact cached under
//! its content hash) and makes an `InstancePre`. Calls then take a pooled instance, run under an epoch deadline
//! and a memory cap, and a trap, timeout or out-of-memory recycles that instance: the caller fails closed and
//! the router keeps going.

pub mod auth;
pub mod cases;
mod engine;
mod imports;
mod signal_cases;
pub mod signaling;
pub mod sink;
mod state;
mod stats;
pub mod storage;
mod world;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::config::model::{BuiltinPlugin, PluginConfig, PluginSource, PluginWorld};
pub use engine::PluginHost;
pub use stats::{CallFailure, PluginStats};

/// The WIT package version this router hosts (`sdk/wit`, `package sluice:plugin@...`).
pub const PLUGIN_API_VERSION: &str = "0.1.0";

/// The built-in plugins compiled to wasm32-wasip2 by build.rs: (name, component bytes).
static BUILTIN_PLUGINS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// A loaded plugin, ready to be called. Auth and signaling plugins are a few hundred bytes inline; boxed, so the enum
/// is as small as a sink (one per loaded plugin either way, the size only keeps clippy quiet).
#[derive(Debug)]
pub enum Plugin {
    Auth(Box<auth::AuthPlugin>),
    Sink(sink::SinkPlugin),
    Signaling(Box<signaling::SignalingPlugin>),
}

impl Plugin {
    pub fn world(&self) -> PluginWorld {
        match self {
            Plugin::Auth(_) => PluginWorld::Auth,
            Plugin::Sink(_) => PluginWorld::Sink,
            Plugin::Signaling(_) => PluginWorld::Signaling,
        }
    }

    pub fn stats(&self) -> &PluginStats {
        match self {
            Plugin::Auth(p) => p.stats(),
            Plugin::Sink(p) => p.stats(),
            Plugin::Signaling(p) => p.stats(),
        }
    }

    pub fn as_auth(&self) -> Option<&auth::AuthPlugin> {
        match self {
            Plugin::Auth(p) => Some(p),
            _ => None,
        }
    }

    pub fn as_sink(&self) -> Option<&sink::SinkPlugin> {
        match self {
            Plugin::Sink(p) => Some(p),
            _ => None,
        }
    }

    pub fn as_signaling(&self) -> Option<&signaling::SignalingPlugin> {
        match self {
            Plugin::Signaling(p) => Some(p),
            _ => None,
        }
    }
}

/// Where a plugin's bytes came from and their content hash (what the artifact cache and reloads key on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginOrigin {
    pub source: String,
    pub sha256: [u8; 32],
}

/// A plugin that could not be loaded, with a message for the admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin \"{plugin}\": {message}")]
pub struct LoadError {
    pub plugin: String,
    pub message: String,
}

impl LoadError {
    pub(crate) fn new(plugin: &str, message: impl Into<String>) -> Self {
        LoadError { plugin: plugin.to_string(), message: message.into() }
    }
}

/// The plugins of one version of routes.toml, by name.
#[derive(Debug, Default, Clone)]
pub struct Plugins {
    loaded: BTreeMap<String, Arc<LoadedPlugin>>,
}

/// A plugin with the configuration and bytes it was loaded from, to tell whether a reload must replace it.
#[derive(Debug)]
pub struct LoadedPlugin {
    pub config: PluginConfig,
    pub origin: PluginOrigin,
    pub plugin: Plugin,
}

impl Plugins {
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.loaded.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<LoadedPlugin>)> {
        self.loaded.iter()
    }

    /// Loads the plugins `wanted` lists, reusing from `previous` every plugin whose config and bytes are
    /// unchanged (running sessions and cached decisions stay); changed ones are loaded fresh, so new sessions
    /// get the new version while running ones finish on the old. Any failure fails the whole set: a reload
    /// then keeps the previous plugins.
    pub fn load(
        host: &PluginHost,
        wanted: &BTreeMap<String, PluginConfig>,
        previous: &Plugins,
    ) -> Result<(Plugins, Vec<String>), Vec<LoadError>> {
        let mut loaded = BTreeMap::new();
        let mut reloaded = Vec::new();
        let mut errors = Vec::new();
        for (name, config) in wanted {
            let bytes = match read_source(name, &config.source) {
                Ok(b) => b,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let origin = PluginOrigin { source: describe(&config.source), sha256: Sha256::digest(&bytes).into() };
            if let Some(old) = previous.get(name).filter(|old| old.config == *config && old.origin == origin) {
                loaded.insert(name.clone(), Arc::clone(old));
                continue;
            }
            match host.load(config, &bytes) {
                Ok(plugin) => {
                    if previous.get(name).is_some() {
                        reloaded.push(name.clone());
                    }
                    let loaded_plugin = LoadedPlugin { config: config.clone(), origin, plugin };
                    loaded.insert(name.clone(), Arc::new(loaded_plugin));
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() { Ok((Plugins { loaded }, reloaded)) } else { Err(errors) }
    }

    /// The files plugins are loaded from (absolute when the routes file's path is), to watch for changes.
    pub fn files(wanted: &BTreeMap<String, PluginConfig>) -> Vec<PathBuf> {
        wanted
            .values()
            .filter_map(|p| match &p.source {
                PluginSource::File(path) => Some(std::path::absolute(path).unwrap_or_else(|_| path.clone())),
                PluginSource::Builtin(_) => None,
            })
            .collect()
    }
}

fn describe(source: &PluginSource) -> String {
    match source {
        PluginSource::Builtin(b) => format!("builtin:{}", b.name()),
        PluginSource::File(p) => p.display().to_string(),
    }
}

/// The component bytes of a built-in, if this build has it.
pub fn builtin_bytes(builtin: BuiltinPlugin) -> Option<&'static [u8]> {
    BUILTIN_PLUGINS.iter().find(|(n, _)| *n == builtin.name()).map(|(_, b)| *b)
}

fn read_source(name: &str, source: &PluginSource) -> Result<Vec<u8>, LoadError> {
    match source {
        PluginSource::Builtin(b) => builtin_bytes(*b).map(<[u8]>::to_vec).ok_or_else(|| {
            LoadError::new(name, format!("the built-in \"{}\" is not part of this build yet", b.name()))
        }),
        // Validation made the path relative to the routes file already.
        PluginSource::File(path) => {
            std::fs::read(path).map_err(|e| LoadError::new(name, format!("cannot read {}: {e}", path.display())))
        }
    }
}

/// The artifact cache key of a component for this engine: content hash + engine compatibility.
fn artifact_name(engine: &wasmtime::Engine, sha256: &[u8; 32]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}-{:016x}.cwasm", h.finish())
}

/// Compiles `bytes`, or loads the machine code compiled earlier for the same bytes and engine.
fn compile(engine: &wasmtime::Engine, bytes: &[u8], cache_dir: Option<&Path>) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir else { return Component::new(engine, bytes) };
    let path = dir.join(artifact_name(engine, &Sha256::digest(bytes).into()));
    if path.exists() {
        // SAFETY: the file is an artifact this router serialized itself (named by the content hash and the
        // engine's compatibility hash) into its own data directory; wasmtime still checks the header.
        #[allow(unsafe_code)]
        let cached = unsafe { Component::deserialize_file(engine, &path) };
        match cached {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "plugin artifact cache entry unusable; recompiling")
            }
        }
    }
    let component = Component::new(engine, bytes)?;
    // A cache that cannot be written only costs the next start a compile.
    // Written under a name of its own (two processes may compile the same plugin at once), made durable, then
    // renamed: the cache never holds a partly written artifact.
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("{}.{n}.tmp", std::process::id()));
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(&component.serialize().map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot write the plugin artifact cache");
    }
    Ok(component)
}
