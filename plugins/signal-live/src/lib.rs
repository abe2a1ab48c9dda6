//! `builtin:signal-live`: one broadcaster to many viewers over a plain WebSocket (JSON text messages), with chat,
//! likes and a viewer count, as live-shopping pages do it. Media goes through the router: the broadcaster
//! publishes into the configured route, viewers read it.
//!
//! Client -> server: `{type: "register", role: "broadcaster" | "viewer", name?}`, `{type: "offer", sdp}`,
//! `{type: "candidate", candidate}`, `{type: "chat", text}`, `{type: "like"}` (toggles), `{type: "stop"}`
//! (the broadcaster ends the show).
//! Server -> client: `{type: "registered", role, id}`, `{type: "answer", sdp}`, `{type: "chat", name, text,
//! timestamp}`, `{type: "stream_update", likes}`, `{type: "viewer_count", count}` (on every join and leave),
//! `{type: "stream_status", live}` (when the broadcast starts and stops), `{type: "error", message}`.
//!
//! One broadcast at a time: a second broadcaster is told another is live. Chat is capped in length and rate per
//! connection, and so are likes (each one is pushed to everyone). Config: `route` (default "live"),
//! `max_chat_length` (default 500), `chat_per_10s` (default 10; also the limit on likes).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_sdk::signaling::{Adapter, Client, Host, RouteState, text};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_route")]
    route: String,
    #[serde(default = "default_max_chat")]
    max_chat_length: usize,
    #[serde(default = "default_chat_rate")]
    chat_per_10s: usize,
}

fn default_route() -> String {
    "live".into()
}
fn default_max_chat() -> usize {
    500
}
fn default_chat_rate() -> usize {
    10
}

/// Everyone registered, for broadcasts.
const EVERYONE: &str = "everyone";
const MAX_NAME: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Broadcaster,
    Viewer,
}

#[derive(Debug)]
struct Member {
    role: Role,
    name: String,
    /// When its recent chat messages were sent (ms since the epoch), for the rate limit.
    chat_times: Vec<u64>,
    /// When its recent likes were toggled: each is a broadcast to everyone, so they are limited like chat.
    like_times: Vec<u64>,
    session: Option<String>,
}

#[derive(Debug)]
pub struct Live {
    config: Config,
    members: BTreeMap<u64, Member>,
    broadcaster: Option<u64>,
    live: bool,
    likes: BTreeSet<u64>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    sdp: Option<String>,
    #[serde(default)]
    candidate: Option<Value>,
    #[serde(default)]
    text: Option<String>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn error(host: &mut dyn Host, connection: u64, message: &str) {
    let _ = host.send(connection, text(&json!({ "type": "error", "message": message })));
}

impl Live {
    fn viewer_count(&self) -> usize {
        self.members.values().filter(|m| m.role == Role::Viewer).count()
    }

    fn announce_viewers(&self, host: &mut dyn Host) {
        host.broadcast(EVERYONE, text(&json!({ "type": "viewer_count", "count": self.viewer_count() })), None);
    }

    fn announce_likes(&self, host: &mut dyn Host) {
        host.broadcast(EVERYONE, text(&json!({ "type": "stream_update", "likes": self.likes.len() })), None);
    }

    fn set_live(&mut self, host: &mut dyn Host, live: bool) {
        if self.live == live {
            return;
        }
        self.live = live;
        if live {
            // A new show starts with no likes.
            self.likes.clear();
            self.announce_likes(host);
        }
        host.broadcast(EVERYONE, text(&json!({ "type": "stream_status", "live": live })), None);
    }

    fn register(&mut self, host: &mut dyn Host, connection: u64, message: &Message) {
        let role = match message.role.as_deref() {
            Some("broadcaster") => Role::Broadcaster,
            Some("viewer") => Role::Viewer,
            _ => return error(host, connection, "role is \"broadcaster\" or \"viewer\""),
        };
        if self.members.contains_key(&connection) {
            return error(host, connection, "already registered");
        }
        if role == Role::Broadcaster && self.broadcaster.is_some() {
            return error(host, connection, "another broadcast is live: only one broadcaster at a time");
        }
        let mut name: String = message.name.clone().unwrap_or_default().chars().take(MAX_NAME).collect();
        if name.trim().is_empty() {
            name = match role {
                Role::Broadcaster => "host".into(),
                Role::Viewer => format!("viewer {connection}"),
            };
        }
        if role == Role::Broadcaster {
            self.broadcaster = Some(connection);
        }
        self.members
            .insert(connection, Member { role, name, chat_times: Vec::new(), like_times: Vec::new(), session: None });
        host.join(connection, EVERYONE);
        let role_name = if role == Role::Broadcaster { "broadcaster" } else { "viewer" };
        let _ = host.send(connection, text(&json!({ "type": "registered", "role": role_name, "id": connection })));
        let _ = host.send(connection, text(&json!({ "type": "stream_status", "live": self.live })));
        let _ = host.send(connection, text(&json!({ "type": "stream_update", "likes": self.likes.len() })));
        self.announce_viewers(host);
    }

    fn offer(&mut self, host: &mut dyn Host, connection: u64, message: &Message) {
        let Some(member) = self.members.get_mut(&connection) else {
            return error(host, connection, "register first");
        };
        let Some(sdp) = message.sdp.as_deref() else { return error(host, connection, "an offer carries sdp") };
        if let Some(old) = member.session.take() {
            host.end_session(&old);
        }
        let started = match member.role {
            Role::Broadcaster => host.publish(connection, &self.config.route, sdp),
            Role::Viewer => host.read(connection, &self.config.route, sdp),
        };
        match started {
            Ok(session) => member.session = Some(session),
            Err(e) => error(host, connection, &e),
        }
    }

    fn chat(&mut self, host: &mut dyn Host, connection: u64, message: &Message) {
        let (limit, rate) = (self.config.max_chat_length, self.config.chat_per_10s);
        let Some(member) = self.members.get_mut(&connection) else {
            return error(host, connection, "register first");
        };
        let body = message.text.as_deref().unwrap_or("").trim();
        if body.is_empty() {
            return error(host, connection, "a chat message needs text");
        }
        if body.chars().count() > limit {
            return error(host, connection, &format!("chat messages are at most {limit} characters"));
        }
        let now = now_ms();
        member.chat_times.retain(|t| now.saturating_sub(*t) < 10_000);
        if member.chat_times.len() >= rate {
            return error(host, connection, &format!("slow down: at most {rate} chat messages per 10 seconds"));
        }
        member.chat_times.push(now);
        let chat = json!({ "type": "chat", "name": member.name, "text": body, "timestamp": now });
        host.broadcast(EVERYONE, text(&chat), None);
    }

    fn leave(&mut self, host: &mut dyn Host, connection: u64) {
        let Some(member) = self.members.remove(&connection) else { return };
        if let Some(session) = member.session {
            host.end_session(&session);
        }
        self.likes.remove(&connection);
        if self.broadcaster == Some(connection) {
            self.broadcaster = None;
            self.set_live(host, false);
        }
        self.announce_viewers(host);
        self.announce_likes(host);
    }
}

impl Adapter for Live {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.route.is_empty() {
            return Err("`route` names the route the broadcaster publishes into".into());
        }
        Ok(Live { config, members: BTreeMap::new(), broadcaster: None, live: false, likes: BTreeSet::new() })
    }

    fn on_connect(&mut self, host: &mut dyn Host, _client: &Client) -> Result<(), String> {
        host.watch_route(&self.config.route.clone(), true);
        Ok(())
    }

    fn on_message(&mut self, host: &mut dyn Host, connection: u64, body: &str) {
        let message: Message = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(_) => return error(host, connection, "messages are JSON objects with a \"type\""),
        };
        match message.kind.as_str() {
            "register" => self.register(host, connection, &message),
            "offer" => self.offer(host, connection, &message),
            "candidate" => {
                let session = self.members.get(&connection).and_then(|m| m.session.clone());
                let line = match &message.candidate {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Object(o)) => o.get("candidate").and_then(Value::as_str).unwrap_or("").to_string(),
                    _ => String::new(),
                };
                if let Some(session) = session
                    && let Err(e) = host.add_candidate(&session, &line)
                {
                    error(host, connection, &e);
                }
            }
            "chat" => self.chat(host, connection, &message),
            "like" => {
                let rate = self.config.chat_per_10s;
                let Some(member) = self.members.get_mut(&connection) else {
                    return error(host, connection, "register first");
                };
                let now = now_ms();
                member.like_times.retain(|t| now.saturating_sub(*t) < 10_000);
                if member.like_times.len() >= rate {
                    return error(host, connection, &format!("slow down: at most {rate} likes per 10 seconds"));
                }
                member.like_times.push(now);
                if !self.likes.remove(&connection) {
                    self.likes.insert(connection);
                }
                self.announce_likes(host);
            }
            "stop" if self.broadcaster == Some(connection) => {
                if let Some(session) = self.members.get_mut(&connection).and_then(|m| m.session.take()) {
                    host.end_session(&session);
                }
                self.set_live(host, false);
            }
            other => {
                error(host, connection, &format!("unknown type \"{}\"", other.chars().take(40).collect::<String>()))
            }
        }
    }

    fn on_session(&mut self, host: &mut dyn Host, connection: u64, session: &str, answer: Result<&str, &str>) {
        let Some(member) = self.members.get_mut(&connection) else { return };
        if member.session.as_deref() != Some(session) {
            return;
        }
        match answer {
            Ok(sdp) => {
                let _ = host.send(connection, text(&json!({ "type": "answer", "sdp": sdp })));
            }
            Err(e) => {
                member.session = None;
                error(host, connection, e);
            }
        }
    }

    fn on_route_state(&mut self, host: &mut dyn Host, route: &str, state: RouteState) {
        if route == self.config.route {
            self.set_live(host, state == RouteState::Live);
        }
    }

    fn on_disconnect(&mut self, host: &mut dyn Host, connection: u64, _reason: &str) {
        if let Some(member) = self.members.get_mut(&connection) {
            // The router ended it with the connection.
            member.session = None;
        }
        self.leave(host, connection);
    }
}

sluice_sdk::export_signaling!(Live);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_sdk::mock::SignalingHost;
    use sluice_sdk::signaling::RouteState;

    use super::Live;

    fn types(messages: &[serde_json::Value]) -> Vec<String> {
        messages.iter().map(|m| m["type"].as_str().unwrap_or("").to_string()).collect()
    }

    #[test]
    fn a_broadcast_with_viewers_chat_and_likes() {
        let mut h = SignalingHost::<Live>::new("{}").expect("config");
        for id in 1..=4 {
            h.connect(SignalingHost::<Live>::websocket_client(id, "/ws/live")).expect("connect");
        }
        assert!(h.state.watched.contains("live"));
        h.message(1, r#"{"type":"register","role":"broadcaster","name":"shop"}"#);
        assert_eq!(types(&h.texts_to(1)), ["registered", "stream_status", "stream_update", "viewer_count"]);
        h.message(2, r#"{"type":"register","role":"broadcaster"}"#);
        assert_eq!(h.texts_to(2)[0]["message"], json!("another broadcast is live: only one broadcaster at a time"));
        h.message(2, r#"{"type":"register","role":"viewer","name":"ana"}"#);
        h.message(3, r#"{"type":"register","role":"viewer"}"#);
        let counts: Vec<_> = h.texts_to(1).into_iter().filter(|m| m["type"] == "viewer_count").collect();
        assert_eq!(
            counts,
            vec![json!({"type": "viewer_count", "count": 1}), json!({"type": "viewer_count", "count": 2})]
        );
        h.message(1, r#"{"type":"offer","sdp":"v=0"}"#);
        assert!(h.state.sessions[0].publish);
        h.route_state("live", RouteState::Live);
        assert!(h.texts_to(3).contains(&json!({"type": "stream_status", "live": true})));
        h.message(2, r#"{"type":"chat","text":"how much?"}"#);
        let chat = h.texts_to(3).pop().expect("chat");
        assert_eq!((chat["name"].clone(), chat["text"].clone()), (json!("ana"), json!("how much?")));
        h.message(2, r#"{"type":"like"}"#);
        h.message(3, r#"{"type":"like"}"#);
        h.message(2, r#"{"type":"like"}"#);
        let likes: Vec<_> =
            h.texts_to(1).into_iter().filter(|m| m["type"] == "stream_update").map(|m| m["likes"].clone()).collect();
        assert_eq!(
            likes,
            vec![json!(0), json!(1), json!(2), json!(1)],
            "0 as the show starts; a second like takes it back"
        );
        h.texts_to(2);
        h.message(2, &format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(501)));
        assert_eq!(types(&h.texts_to(2)), ["error"]);
        h.disconnect(1, "gone");
        assert!(h.texts_to(3).contains(&json!({"type": "stream_status", "live": false})));
        h.message(4, "not json");
        assert_eq!(types(&h.texts_to(4)), ["error"]);
    }

    #[test]
    fn chat_is_rate_limited() {
        let mut h = SignalingHost::<Live>::from_value(json!({ "chat_per_10s": 3 })).expect("config");
        h.connect(SignalingHost::<Live>::websocket_client(1, "/ws/live")).expect("connect");
        h.message(1, r#"{"type":"register","role":"viewer"}"#);
        h.texts_to(1);
        for _ in 0..4 {
            h.message(1, r#"{"type":"chat","text":"hi"}"#);
        }
        assert_eq!(types(&h.texts_to(1)), ["chat", "chat", "chat", "error"]);
    }
}
