//! What the router and `sluice-edge` share to connect out to other servers: the outbound RTMP session ([`rtmp`])
//! and the reconnect pacing every retrying connection uses ([`backoff`]). Kept free of wasmtime and SQLite, since
//! the edge binary for the Raspberry Pi links it.

pub mod backoff;
pub mod rtmp;
