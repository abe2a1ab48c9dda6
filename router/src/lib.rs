//! # sluice
//!
//! A media router. Sources (the demo clip now; WHIP, RTSP and RTMP as they land) feed **routes** declared in
//! `routes.toml`; readers (WHEP viewers, RTSP/RTMP players, recorders, push targets) read them.
//!
//! Layers, each importing only the ones below it (`tests/layering.rs` keeps this true, with the upward imports
//! that remain listed there until the re-layering removes them):
//! - [`media`], [`backoff`], [`logging`]: tracks, frames, codec helpers; retry timing; log setup.
//! - [`config`]: routes.toml -> validated [`config::RouteTable`]; reload diffs.
//! - [`route`]: the route actor (one source, N readers, GOP cache, slow-reader policy). Knows no protocol.
//! - [`connections`]: admission of TCP connections (and per-address counts) shared by every listener.
//! - [`credentials`]: `sluice passwd` / `sluice token`, for the built-in auth plugins.
//! - [`plugin`]: the WebAssembly plugin host (wasmtime) and the sink world's storage; [`auth`]: access decisions
//!   at every entry point; [`recording`]: recorders, the recordings index, probe and stitch.
//! - [`admit`]: the one admission path (route, source/output, publish key, auth) every entry point takes.
//! - [`rtmp`], [`webrtc`]: the protocols (RTMP's server connections and client; WHIP/WHEP's shard);
//!   [`ingest`]: sources, one module per kind; [`egress`]: outputs, one module per kind (pushes so far).
//! - [`runtime`]: builds routes from the table, wires sources, applies reloads.
//! - [`api`]: HTTP (REST, metrics, UI) and its driver (`api::serve`: timeouts, caps, trusted proxies); [`server`]
//!   starts it all.

// Denied everywhere; the one exception is loading the plugin host's own precompiled artifacts (plugin/mod.rs).
#![deny(unsafe_code)]

pub mod admit;
pub mod api;
pub mod auth;
pub mod backoff;
pub mod config;
pub mod connections;
pub mod credentials;
pub mod egress;
pub mod ingest;
pub mod listen;
pub mod logging;
pub mod media;
pub mod plugin;
pub mod recording;
pub mod route;
pub mod rtmp;
pub mod runtime;
pub mod server;
pub mod webrtc;

/// The build script's wasm32-wasip2 check, compiled here only so its decision is unit tested.
#[cfg(test)]
#[path = "../build/wasm_target.rs"]
#[allow(dead_code, reason = "`ensure` runs in the build script, not here")]
mod build_wasm_target;
