//! # sluice-sdk
//!
//! Write Sluice plugins: WebAssembly components the router loads to decide access (`auth`), consume media
//! (`sink`) or speak an application's signaling (`signaling`).
//!
//! `wit/` holds the WIT package `sluice:plugin@0.1.0`, the single source of truth: the router generates its host
//! side from the same files (`wasmtime::component::bindgen!`) that this crate generates guest bindings from
//! (`wit_bindgen::generate!`). Read the `.wit` files for what every call means.
//!
//! A plugin is a type implementing the trait of its world plus one export macro:
//!
//! ```ignore
//! use sluice_sdk::auth::{Authorizer, Decision, Request};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { token: String }
//!
//! struct OneToken(Config);
//!
//! impl Authorizer for OneToken {
//!     type Config = Config;
//!     fn new(config: Config) -> Result<Self, String> { Ok(OneToken(config)) }
//!     fn authorize(&self, request: &Request) -> Decision {
//!         match request.bearer() {
//!             Some(t) if t == self.0.token => Decision::allow("token holder", 60_000),
//!             Some(_) => Decision::deny("wrong token"),
//!             None => Decision::challenge("sluice"),
//!         }
//!     }
//! }
//! sluice_sdk::export_auth!(OneToken);
//! ```
//!
//! Enable the world's cargo feature (`sluice-sdk = { features = ["auth"] }`), build with
//! `cargo build --release --target wasm32-wasip2`, test natively with [`mock`] and plain `cargo test`, then run
//! it under the real host: `sluice plugin test target/wasm32-wasip2/release/NAME.wasm --world auth --cases
//! cases.toml`. `plugins/example-allowlist` in the Sluice repository shows the whole cycle.

// Generated bindings are unsafe FFI glue; everything else in this crate is safe Rust.
#![allow(unsafe_code)]

#[cfg(feature = "auth")]
pub mod auth;
pub mod config;
pub mod log;
#[cfg(any(feature = "auth", feature = "signaling"))]
pub mod mock;
#[cfg(feature = "signaling")]
pub mod signaling;
#[cfg(feature = "sink")]
pub mod sink;

/// The WIT package version this SDK builds plugins for. The router refuses a plugin whose major version
/// (for 0.x: minor version) differs from its own.
pub const PLUGIN_API_VERSION: &str = "0.1.0";

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

// Generated code names this crate by its absolute path, as plugins see it; this makes that path work inside too.
extern crate self as sluice_sdk;

#[cfg(test)]
mod tests {
    #[test]
    fn api_version_matches_the_wit_package() {
        let wit = include_str!("../wit/host.wit");
        assert!(wit.starts_with(&format!("package sluice:plugin@{};", super::PLUGIN_API_VERSION)));
    }
}
