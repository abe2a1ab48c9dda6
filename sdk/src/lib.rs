//! # sluice-sdk
//!
//! The kit third parties use to write Sluice plugins, and the one place the plugin interface is defined.
//!
//! What this crate will hold (the plugin-host issue fills it in):
//! - `wit/`: the WIT package `sluice:plugin@0.1.0`, the single source of truth for the host
//!   (`wasmtime::component::bindgen!`) and for guests (`wit_bindgen::generate!`). Three worlds: `auth`
//!   (authorize a publish/read/api request), `sink` (a recorder resource fed batches of frames) and `signaling`
//!   (a connection resource per WebSocket that can publish and read through the router).
//! - A trait per world and an export macro, so a plugin is a type implementing one trait.
//! - Typed plugin configuration through serde (the host hands `[plugins.NAME] config` over as JSON).
//! - A native mock host so plugin authors test with plain `cargo test`, without a router.
//!
//! Until then the crate only carries the version of the plugin interface the router speaks.

#![forbid(unsafe_code)]

/// The WIT package version the router hosts. A plugin built against another major version is refused at load.
pub const PLUGIN_API_VERSION: &str = "0.1.0";

#[cfg(test)]
mod tests {
    #[test]
    fn api_version_is_semver() {
        let parts: Vec<u32> = super::PLUGIN_API_VERSION.split('.').map(|p| p.parse().expect("numeric")).collect();
        assert_eq!(parts.len(), 3);
    }
}
