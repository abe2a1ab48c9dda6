//! Counters per loaded plugin, exported in /metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Trap;

/// Why a call into a plugin produced no answer. Every kind recycles the instance; callers fail closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("ran out of memory (limit {0} bytes)")]
    OutOfMemory(u64),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
}

impl CallFailure {
    /// Classifies a wasmtime error from a call.
    pub fn classify(e: &wasmtime::Error, memory_hit: bool, timeout: std::time::Duration, memory_cap: u64) -> Self {
        if memory_hit {
            return CallFailure::OutOfMemory(memory_cap);
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallFailure::Timeout(timeout),
            Some(trap) => CallFailure::Trap(trap.to_string()),
            None => CallFailure::Trap(format!("{e:#}")),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            CallFailure::Timeout(_) => "timeout",
            CallFailure::OutOfMemory(_) => "out_of_memory",
            CallFailure::Trap(_) => "trap",
            CallFailure::Instantiate(_) => "instantiate",
        }
    }
}

#[derive(Debug, Default)]
pub struct PluginStats {
    pub calls: AtomicU64,
    pub timeouts: AtomicU64,
    pub out_of_memory: AtomicU64,
    pub traps: AtomicU64,
    pub instantiate_failures: AtomicU64,
    /// Instances thrown away after a failure (and replaced on the next call).
    pub recycled: AtomicU64,
    pub instantiations: AtomicU64,
    /// Time spent inside the plugin, for the average in /metrics.
    pub call_nanos: AtomicU64,
}

impl PluginStats {
    pub fn failed(&self, failure: &CallFailure) {
        let counter = match failure {
            CallFailure::Timeout(_) => &self.timeouts,
            CallFailure::OutOfMemory(_) => &self.out_of_memory,
            CallFailure::Trap(_) => &self.traps,
            CallFailure::Instantiate(_) => &self.instantiate_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
