//! What each plugin instance's store holds: its WASI context (empty unless granted), its resource table and
//! its memory cap.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The longest log line a plugin can write; the rest is cut (a plugin must not flood the router's log).
const MAX_LOG_LINE: usize = 4096;

pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub memory: MemoryCap,
    pub plugin: Arc<str>,
}

impl HostState {
    /// `env`: the granted environment variables (`grants.env`) that are set; nothing else is visible.
    pub fn new(plugin: Arc<str>, memory_cap: usize, env: &[(String, String)]) -> HostState {
        let mut wasi = WasiCtx::builder();
        // Guest panics print to stderr: let the admin see them.
        wasi.inherit_stderr();
        for (k, v) in env {
            wasi.env(k, v);
        }
        HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            memory: MemoryCap { cap: memory_cap, hit: false, peak: 0 },
            plugin,
        }
    }

    pub fn log(&self, level: tracing::Level, message: &str) {
        let mut end = message.len().min(MAX_LOG_LINE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let message = &message[..end];
        let plugin = &*self.plugin;
        match level {
            tracing::Level::ERROR => tracing::error!(plugin, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin, "{message}"),
            tracing::Level::INFO => tracing::info!(plugin, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(plugin, "{message}"),
            tracing::Level::TRACE => tracing::trace!(plugin, "{message}"),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Refuses memory growth past the plugin's `limits.memory`, and remembers that it did, so the trap that
/// usually follows (Rust aborts when allocation fails) is reported as out-of-memory.
#[derive(Debug)]
pub struct MemoryCap {
    cap: usize,
    pub hit: bool,
    /// The largest linear memory granted so far, in bytes.
    pub peak: usize,
}

/// Table elements a plugin may have: far above what real code uses, low enough to bound host memory.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
