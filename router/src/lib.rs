//! # sluice
//!
//! A media router. Sources (the demo clip now; WHIP, RTSP and RTMP as they land) feed **routes** declared in
//! `routes.toml`; readers (WHEP viewers, RTSP/RTMP players, recorders, push targets) read them.
//!
//! Layers, each importing only the ones below it (`tests/layering.rs` keeps this true). The folders follow a
//! frame: `ingest` -> `route` -> `egress`, with the ports that admit and hand on (`listen`, `api`) on top.
//! - [`media`], [`backoff`], [`logging`]: tracks, frames, codec helpers; retry timing; log setup.
//! - [`config`]: routes.toml -> validated [`config::RouteTable`]; reload diffs.
//! - [`transcode`]: codec conversions of route frames for outputs that cannot carry the source's (AAC -> Opus for
//!   WebRTC), made once per route.
//! - [`route`]: the route actor (one source, N readers, GOP cache, slow-reader policy). Knows no protocol.
//! - [`connections`]: admission of TCP connections (and per-address counts) shared by every listener.
//! - [`credentials`]: `sluice passwd` / `sluice token`, for the built-in auth plugins.
//! - [`import`]: `sluice import`, other servers' configurations (MediaMTX's) as routes files.
//! - [`plugin`]: the WebAssembly plugin host (wasmtime) and the sink world's storage; [`auth`]: access decisions
//!   at every entry point; [`recording`]: the recordings index, retention, probe and stitch.
//! - [`admit`]: the one admission path (route, source/output, publish key, auth) every entry point takes.
//! - [`webrtc`], [`rtmp`], [`rtsp`]: protocol cores, what every path of a protocol shares (the WebRTC engine and
//!   its shard; RTMP's FLV conversion and writes; RTSP's messages, transports, SDP and packets). No admission in
//!   them.
//! - [`ingest`]: sources, one module per kind (demo, RTSP pull and publish, RTMP pull and publish, WHIP);
//!   [`egress`]: outputs, one module per kind (WHEP, RTSP and RTMP play, push, record). Neither uses the other.
//! - [`runtime`]: builds routes from the table, wires sources, recorders and pushes, applies reloads.
//! - [`listen`]: ports where a connection may publish or play (RTMP, RTSP): admit, then hand to ingest or egress.
//! - [`accounts`]: users, their cameras (routes made from a template) and sessions, in the router's database;
//!   decides `auth = "accounts"`.
//! - [`signal`]: signaling transports (Socket.IO, plain WebSocket) on the HTTP listener, each mount feeding a
//!   signaling plugin that starts WebRTC sessions as WHIP/WHEP do.
//! - [`api`]: HTTP (REST, WHIP/WHEP, metrics, UI) and its driver (`api::serve`: timeouts, caps, trusted
//!   proxies); [`server`] starts it all.

// Denied everywhere; the one exception is loading the plugin host's own precompiled artifacts (plugin/mod.rs).
#![deny(unsafe_code)]

pub mod accounts;
pub mod admit;
pub mod api;
pub mod auth;
/// Shared with sluice-edge (the `sluice-client` crate).
pub use sluice_client::backoff;
pub mod config;
pub mod connections;
pub mod credentials;
pub mod egress;
pub mod import;
pub mod ingest;
pub mod listen;
pub mod logging;
/// The media model, its own crate (`router/media`) so the edge binary and plugins share it without the router.
pub use sluice_media as media;
pub mod plugin;
pub mod recording;
pub mod route;
pub mod rtmp;
pub mod rtsp;
pub mod runtime;
pub mod server;
pub mod signal;
pub mod transcode;
pub mod webrtc;

/// The build script's wasm32-wasip2 check, compiled here only so its decision is unit tested.
#[cfg(test)]
#[path = "../build/wasm_target.rs"]
#[allow(dead_code, reason = "`ensure` runs in the build script, not here")]
mod build_wasm_target;
