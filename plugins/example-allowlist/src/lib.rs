//! An auth plugin as a third party writes one: readers from listed address prefixes, publishers with a key.
//! Test: `cargo test -p example-allowlist`. Build: `cargo build -p example-allowlist --release --target
//! wasm32-wasip2`. Try it under the real host: `sluice plugin test target/wasm32-wasip2/release/example_allowlist.wasm
//! --world auth --cases plugins/example-allowlist/cases.toml`. Use it: `[plugins.lan] source = "path/to/x.wasm"`.
use sluice_sdk::auth::{Action, Authorizer, Decision, Request};

#[derive(Debug, serde::Deserialize)]
pub struct Config {
    /// Address prefixes readers may come from, e.g. "192.168.1." or "10.".
    readers: Vec<String>,
    publish_key: String,
}

#[derive(Debug)]
pub struct Allowlist(Config);

impl Authorizer for Allowlist {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(Allowlist(config))
    }

    fn authorize(&self, request: &Request) -> Decision {
        match request.action {
            // Depends on the address, so the router must not reuse it for other clients: cache TTL 0.
            Action::Read if self.0.readers.iter().any(|p| request.remote_ip.starts_with(p.as_str())) => {
                Decision::allow(request.remote_ip.clone(), 0)
            }
            Action::Publish if request.stream_key().or(request.bearer()) == Some(&self.0.publish_key) => {
                Decision::allow("publisher", 60_000)
            }
            _ => Decision::deny("not on the list"),
        }
    }
}

sluice_sdk::export_auth!(Allowlist);

#[cfg(test)]
mod tests {
    use sluice_sdk::auth::{Action, Request};
    use sluice_sdk::mock::AuthHost;

    #[test]
    fn lan_reads_and_keyed_publishers() {
        let config = serde_json::json!({ "readers": ["192.168.1."], "publish_key": "k" });
        let host = AuthHost::<super::Allowlist>::from_value(config).expect("config");
        assert!(host.authorize(&Request::new(Action::Read, "cam").with_remote_ip("192.168.1.9")).is_allow());
        assert!(!host.authorize(&Request::new(Action::Read, "cam").with_remote_ip("203.0.113.5")).is_allow());
        assert!(host.authorize(&Request::new(Action::Publish, "cam").with_stream_key("k")).is_allow());
        assert!(!host.authorize(&Request::new(Action::Publish, "cam").with_stream_key("x")).is_allow());
    }
}
