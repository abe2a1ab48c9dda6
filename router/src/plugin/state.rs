//! What each plugin instance's store holds: its WASI context (empty unless granted), its resource table and
//! its memory cap.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The longest log line a plugin can write; the rest is cut (a plugin must not flood the router's log).
const MAX_LOG_LINE: usize = 4096;

pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub memory: MemoryCap,
    pub plugin: Arc<str>,
    /// Sink plugins: the granted directory (`grants.storage`); `None` for other worlds.
    pub storage: Option<super::sink::StorageAccess>,
    /// Signaling plugins: their clients, rooms and queued requests; `None` for other worlds.
    pub signaling: Option<super::signaling::SignalingHost>,
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
            memory: MemoryCap { cap: memory_cap, hit: false, peak: 0, total: 0, held: 0 },
            plugin,
            storage: None,
            signaling: None,
        }
    }

    /// Host resources handed to the guest (storage files).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
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
    /// The most the instance used so far, in bytes: its linear memories and the batch payloads it held.
    pub peak: usize,
    /// Its linear memories now.
    total: usize,
    /// Batch payloads it holds (the sink world's `payload` handles).
    held: usize,
}

impl MemoryCap {
    /// Counts `len` bytes of payload the instance is handed; false (and nothing counted) past the cap.
    pub fn hold(&mut self, len: usize) -> bool {
        let held = self.held.saturating_add(len);
        if self.total.saturating_add(held) > self.cap {
            self.hit = true;
            return false;
        }
        self.held = held;
        self.peak = self.peak.max(self.total + held);
        true
    }

    /// The instance dropped a payload of `len` bytes.
    pub fn release(&mut self, len: usize) {
        self.held = self.held.saturating_sub(len);
    }
}

/// Table elements a plugin may have: far above what real code uses, low enough to bound host memory.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryCap {
    /// Counts every memory of the instance against one cap: a component of many modules gets no more.
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.total.saturating_add(desired.saturating_sub(current));
        if total.saturating_add(self.held) > self.cap {
            self.hit = true;
            return Ok(false);
        }
        self.total = total;
        self.peak = self.peak.max(total + self.held);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// A linker with what every plugin gets: WASI p2 (an empty context unless granted) whose blocking waits trap.
pub fn base_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::<HostState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    forbid_blocking(&mut linker)?;
    Ok(linker)
}

/// The granted environment variables (`grants.env`) that are set.
pub fn granted_env(grants: &crate::config::model::PluginGrants) -> Vec<(String, String)> {
    grants.env.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v))).collect()
}

/// A store for one instance of `state`: its memory cap enforced and a deadline for what runs first.
pub fn new_store(
    engine: &wasmtime::Engine,
    state: HostState,
    timeout: std::time::Duration,
) -> wasmtime::Store<HostState> {
    let mut store = wasmtime::Store::new(engine, state);
    store.limiter(|s| &mut s.memory);
    store.set_epoch_deadline(super::engine::deadline_ticks(timeout));
    store
}

/// The WASI version wasmtime-wasi 48 defines; guests built against older 0.2.x versions link to it.
const WASI_IO: &str = "wasi:io/poll@0.2.12";

/// Replaces WASI's blocking waits (`poll`, `pollable.block`) with a trap. A call blocked inside the host cannot be
/// interrupted by the epoch deadline, so a plugin that sleeps or waits would hold a thread for as long as it
/// likes; plugins answer from what they are given and never need to wait.
fn forbid_blocking(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_IO)?;
    for name in ["poll", "[method]pollable.block"] {
        poll.func_new(name, move |_store, _ty, _params, _results| {
            Err(wasmtime::Error::msg(format!("plugins may not block (wasi:io/poll {name})")))
        })?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_payloads_and_linear_memory_share_one_cap() {
        let mut cap = MemoryCap { cap: 1000, hit: false, peak: 0, total: 0, held: 0 };
        assert!(cap.memory_growing(0, 600, None).expect("grow"));
        assert!(cap.hold(300));
        assert!(!cap.hold(200), "600 + 300 + 200 > 1000");
        assert!(cap.hit);
        assert!(!cap.memory_growing(600, 800, None).expect("grow"), "the held payloads leave no room");
        cap.release(300);
        assert!(cap.memory_growing(600, 800, None).expect("grow"));
        assert!(cap.hold(200));
        assert_eq!(cap.peak, 1000);
    }
}
