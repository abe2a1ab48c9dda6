//! A native stand-in for the router, so plugin authors test with plain `cargo test`.
//!
//! It drives the plugin through the same steps the router does (config as JSON -> `new`, then the world's calls),
//! but natively: no wasm build, no limits. Run the built `.wasm` under the real host with `sluice plugin test`.

#[cfg(feature = "signaling")]
mod signaling;
#[cfg(feature = "signaling")]
pub use signaling::{MockSession, SignalingHost, SignalingState};

#[cfg(feature = "auth")]
use crate::auth::{Authorizer, Decision, Request};

/// Hosts one auth plugin natively.
#[cfg(feature = "auth")]
#[derive(Debug)]
pub struct AuthHost<P> {
    plugin: P,
}

#[cfg(feature = "auth")]
impl<P: Authorizer> AuthHost<P> {
    /// Starts the plugin with `config` as the router would hand it over: JSON of the `config` table.
    pub fn new(config: &str) -> Result<Self, String> {
        Ok(AuthHost { plugin: P::new(crate::config::parse::<P::Config>(config)?)? })
    }

    /// Starts the plugin with a config built by `serde_json::json!`.
    pub fn from_value(config: serde_json::Value) -> Result<Self, String> {
        Self::new(&config.to_string())
    }

    pub fn authorize(&self, request: &Request) -> Decision {
        self.plugin.authorize(request)
    }
}
