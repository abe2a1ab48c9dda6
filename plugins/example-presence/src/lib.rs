//! A signaling plugin as a third party writes one: who is online, and a shout box, over Socket.IO.
//! `hello {name}` puts a client on the list and everyone gets `online {names}`; `shout {text}` reaches everyone as
//! `shouted {name, text}`; leaving updates the list. Test: `cargo test -p example-presence`. Build:
//! `cargo build -p example-presence --release --target wasm32-wasip2`. Try it under the real host:
//! `sluice plugin test target/wasm32-wasip2/release/example_presence.wasm --world signaling --cases
//! plugins/example-presence/cases.toml`. Mount it: `[plugins.presence] source = "x.wasm"`, `mount = "/socket.io/"`.
use std::collections::BTreeMap;

use serde_json::json;
use sluice_sdk::signaling::{Adapter, Host, event, first_arg};

#[derive(Debug, serde::Deserialize)]
pub struct Config {
    /// The longest shout, in characters.
    #[serde(default = "default_max_shout")]
    max_shout: usize,
}

fn default_max_shout() -> usize {
    200
}

const EVERYONE: &str = "everyone";

#[derive(Debug)]
pub struct Presence {
    config: Config,
    names: BTreeMap<u64, String>,
}

#[derive(serde::Deserialize)]
struct Hello {
    name: String,
}

#[derive(serde::Deserialize)]
struct Shout {
    text: String,
}

impl Presence {
    fn announce(&self, host: &mut dyn Host) {
        let names: Vec<&String> = self.names.values().collect();
        host.broadcast(EVERYONE, event("online", &json!({ "names": names })), None);
    }
}

impl Adapter for Presence {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(Presence { config, names: BTreeMap::new() })
    }

    fn on_event(&mut self, host: &mut dyn Host, connection: u64, name: &str, args: &str, _ack: Option<u64>) {
        match (name, self.names.get(&connection)) {
            ("hello", _) => match first_arg::<Hello>(args) {
                Some(hello) if !hello.name.trim().is_empty() => {
                    self.names.insert(connection, hello.name.chars().take(40).collect());
                    host.join(connection, EVERYONE);
                    self.announce(host);
                }
                _ => {
                    let _ = host.send(connection, event("error", &json!({ "message": "hello takes {name}" })));
                }
            },
            ("shout", Some(who)) => {
                let text = first_arg::<Shout>(args).map(|s| s.text).unwrap_or_default();
                if !text.is_empty() && text.chars().count() <= self.config.max_shout {
                    host.broadcast(EVERYONE, event("shouted", &json!({ "name": who, "text": text })), None);
                }
            }
            _ => {
                let _ = host.send(connection, event("error", &json!({ "message": "say hello first" })));
            }
        }
    }

    fn on_disconnect(&mut self, host: &mut dyn Host, connection: u64, _reason: &str) {
        if self.names.remove(&connection).is_some() {
            self.announce(host);
        }
    }
}

sluice_sdk::export_signaling!(Presence);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_sdk::mock::SignalingHost;

    #[test]
    fn who_is_online_and_shouts() {
        let mut host = SignalingHost::<super::Presence>::new("{}").expect("config");
        for id in [1, 2] {
            host.connect(SignalingHost::<super::Presence>::socketio_client(id, json!({}))).expect("connect");
        }
        host.event(1, "hello", json!([{ "name": "ana" }]), None);
        host.event(2, "hello", json!([{ "name": "bo" }]), None);
        assert_eq!(host.events_to(1).last(), Some(&("online".into(), json!([{ "names": ["ana", "bo"] }]))));
        host.event(2, "shout", json!([{ "text": "hi" }]), None);
        assert_eq!(host.events_to(1), vec![("shouted".into(), json!([{ "name": "bo", "text": "hi" }]))]);
        host.disconnect(2, "gone");
        assert_eq!(host.events_to(1), vec![("online".into(), json!([{ "names": ["ana"] }]))]);
    }
}
