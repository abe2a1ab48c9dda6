//! The process's one wasmtime engine, its epoch ticker and plugin loading.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use super::imports::{self, Inspected};
use super::storage::Storages;
use super::{LoadError, Plugin, auth, compile, signaling, sink};
use crate::config::model::{PluginConfig, PluginWorld};

/// How often the epoch advances: the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Instances alive at once across all plugins (pooled slots). Each slot reserves address space, not memory.
const POOLED_INSTANCES: u32 = 1000;
/// The largest linear memory any plugin may have; per-plugin caps (`limits.memory`) sit below it.
const MAX_MEMORY_BYTES: usize = 1 << 30;

/// The plugin host: one engine for the whole process, shared by every loaded plugin.
#[derive(Clone)]
pub struct PluginHost {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    /// The storage directories sink plugins write to: one registry per router, so every plugin granted a
    /// directory (and every version of it a reload brings) counts its usage once.
    storages: Arc<Storages>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost").field("cache_dir", &self.cache_dir).finish_non_exhaustive()
    }
}

/// Why the host could not start, or could not take a file as a plugin (before it has a name to blame: a load
/// wraps these in a [`LoadError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    #[error(
        "not a WebAssembly file (it does not start with the \\0asm magic bytes): `source` must name a plugin's .wasm \
         component"
    )]
    NotWasm,
    #[error(
        "a core WebAssembly module, not a component: build the plugin for --target wasm32-wasip2 (see the README's \
         \"Writing a plugin\")"
    )]
    CoreModule,
    #[error("not a WebAssembly component (unknown binary version)")]
    UnknownVersion,
    #[error("not a WebAssembly component this router can run: {0}")]
    Compile(String),
    /// What the component exports or imports is not what a plugin may (the message says which and why).
    #[error("{0}")]
    Interface(String),
}

impl PluginHost {
    /// A host on the process-wide engine. `cache_dir` keeps compiled artifacts between starts.
    pub fn shared(cache_dir: Option<PathBuf>) -> Result<PluginHost, HostError> {
        static ENGINE: OnceLock<Result<Engine, HostError>> = OnceLock::new();
        let engine = ENGINE.get_or_init(|| new_engine().map_err(|e| HostError::Engine(format!("{e:#}")))).clone()?;
        Ok(PluginHost { engine, cache_dir, storages: Arc::default() })
    }

    /// This host with the router's storage registry (instead of one of its own).
    pub fn with_storages(self, storages: Arc<Storages>) -> PluginHost {
        PluginHost { storages, ..self }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn storages(&self) -> &Arc<Storages> {
        &self.storages
    }

    /// Which world a component implements, from its exports (compiled, not cached, not instantiated).
    pub fn world_of(&self, bytes: &[u8]) -> Result<PluginWorld, HostError> {
        binary_kind(bytes)?;
        let component = compile(&self.engine, bytes, None).map_err(|e| HostError::Compile(root_cause(&e)))?;
        let exports: Vec<String> =
            component.component_type().exports(&self.engine).map(|(n, _)| n.to_string()).collect();
        imports::world_of(&exports).map_err(HostError::Interface)
    }

    /// Checks, compiles and prepares one plugin.
    pub fn load(&self, config: &PluginConfig, bytes: &[u8]) -> Result<Plugin, LoadError> {
        // Started with the first plugin: a router without plugins does not wake a thread every tick for nothing.
        static TICKER: std::sync::Once = std::sync::Once::new();
        TICKER.call_once(|| start_ticker(&self.engine));
        let name = config.name.as_str();
        binary_kind(bytes).map_err(|e| LoadError::new(name, e.to_string()))?;
        let component = compile(&self.engine, bytes, self.cache_dir.as_deref())
            .map_err(|e| LoadError::new(name, HostError::Compile(root_cause(&e)).to_string()))?;
        let Inspected { world } =
            imports::inspect(&self.engine, &component, config).map_err(|m| LoadError::new(name, m))?;
        if let Some(expected) = config.source.known_world()
            && expected != world
        {
            return Err(LoadError::new(name, format!("expected a {expected:?} plugin, this one implements {world:?}")));
        }
        match world {
            PluginWorld::Auth => Ok(Plugin::Auth(Box::new(auth::AuthPlugin::new(self, config, &component)?))),
            PluginWorld::Sink => Ok(Plugin::Sink(sink::SinkPlugin::new(self, config, &component)?)),
            PluginWorld::Signaling => {
                Ok(Plugin::Signaling(Box::new(signaling::SignalingPlugin::new(self, config, &component)?)))
            }
        }
    }
}

fn new_engine() -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOLED_INSTANCES)
        .total_core_instances(POOLED_INSTANCES * 4)
        .total_memories(POOLED_INSTANCES)
        .total_tables(POOLED_INSTANCES * 2)
        // A plugin is a handful of core modules with one memory; more is not a plugin we host, and unbounded
        // counts would let one component take every pooled slot.
        .max_core_instances_per_component(50)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_memory_size(MAX_MEMORY_BYTES);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Advances the engine's epoch every [`EPOCH_TICK`]: a call whose deadline (in ticks) passes traps.
fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("plugin-epoch".into()).spawn(move || {
        while let Some(engine) = weak.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
        }
    });
    if let Err(e) = spawned {
        // Without a ticker deadlines never fire; say so loudly rather than hang later.
        tracing::error!(error = %e, "cannot start the plugin epoch ticker: plugin call timeouts will not work");
    }
}

/// Epoch ticks for a call timeout (at least one).
pub fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64
}

/// Tells a component from the files people mistake for one, before wasmtime does: its parse errors quote the
/// bytes it found, which says nothing to someone who pointed `source` at the wrong file.
pub fn binary_kind(bytes: &[u8]) -> Result<(), HostError> {
    const MAGIC: &[u8] = b"\0asm";
    match bytes.get(..8) {
        _ if !bytes.starts_with(MAGIC) => Err(HostError::NotWasm),
        // Version 1, layer 0: a core module.
        Some([_, _, _, _, 1, 0, 0, 0]) => Err(HostError::CoreModule),
        // Layer 1: a component (its version changes with the proposal; wasmtime checks it).
        Some([_, _, _, _, _, _, 1, 0]) => Ok(()),
        _ => Err(HostError::UnknownVersion),
    }
}

fn root_cause(e: &wasmtime::Error) -> String {
    e.chain().last().map(|c| c.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::binary_kind;

    #[test]
    fn files_that_are_not_components_are_named_for_what_they_are() {
        let garbage = binary_kind(b"PK\x03\x04 a zip file").expect_err("garbage").to_string();
        assert!(garbage.starts_with("not a WebAssembly file"), "{garbage}");
        assert!(!garbage.contains("0x") && !garbage.contains('['), "no byte dump: {garbage}");
        let core = binary_kind(b"\0asm\x01\0\0\0rest").expect_err("core module").to_string();
        assert!(core.starts_with("a core WebAssembly module, not a component"), "{core}");
        assert!(binary_kind(b"\0asm\x0d\0\x01\0rest").is_ok(), "a component");
        assert!(binary_kind(b"\0asm").is_err(), "truncated");
    }
}
