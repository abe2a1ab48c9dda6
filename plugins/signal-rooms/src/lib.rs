//! `builtin:signal-rooms`: video-call rooms as Socket.IO apps signal them, and a REST API for the rooms.
//!
//! Events (each with one object argument):
//! - `join-room {roomId, displayName}`: the joiner gets `peers {peers: [ids], displayNames: {id: name}}`, the others
//!   `peer-joined {peerId, displayName}`. A full room answers `room-full {roomId, maxMembers}`.
//! - `signal {to, data}`: relayed to `to`, who must share the sender's room, as `signal {from, data}`.
//! - `leave-room`, or disconnecting: the others get `peer-left {peerId}`.
//! - Anything malformed or unknown: `error {message}`. An event sent with an ack gets `{ok, error?}` back.
//!
//! Peer ids are the router's connection numbers, as strings. A member without a `displayName` is named by who the
//! mount's auth plugin said it is (else "guest N"). Media does not go through the router (a mesh).
//!
//! REST under the plugin's `http` prefix (e.g. "/api/rooms"): `GET` lists rooms, `POST {id?, name?, maxMembers?}`
//! creates one, `GET /ID` shows one with its members, `DELETE /ID` closes it (members get `room-closed`).
//!
//! Config: `max_members` (default 4, a mesh of four) for rooms made by joining, `max_members_limit` (default 16)
//! the most a room made over REST may ask for, `create_on_join` (default true) whether joining an unknown room
//! makes it.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_sdk::signaling::{Adapter, Client, Host, HttpRequest, HttpResponse, event, first_arg, json_response};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_max_members")]
    max_members: usize,
    #[serde(default = "default_max_members_limit")]
    max_members_limit: usize,
    #[serde(default = "yes")]
    create_on_join: bool,
}

fn default_max_members() -> usize {
    4
}
fn default_max_members_limit() -> usize {
    16
}
fn yes() -> bool {
    true
}

/// The longest room id and display name taken.
const MAX_ID: usize = 64;
const MAX_NAME: usize = 64;
/// Rooms at once: beyond it, joining an unknown room or creating one is refused.
const MAX_ROOMS: usize = 10_000;

#[derive(Debug)]
struct Room {
    name: String,
    max_members: usize,
    /// (connection, display name), in join order.
    members: Vec<(u64, String)>,
    /// Made over REST: it stays when empty, until deleted.
    kept: bool,
}

#[derive(Debug)]
pub struct Rooms {
    config: Config,
    rooms: BTreeMap<String, Room>,
    /// Which room each connection is in.
    joined: HashMap<u64, String>,
    /// Who the mount's auth plugin said each client is: the display name of a member that gives none.
    identities: HashMap<u64, String>,
    next_room: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Join {
    room_id: Value,
    #[serde(default)]
    display_name: Option<String>,
}

/// `data` is relayed as the client wrote it, never parsed (an SDP or a candidate is most of a call's signaling).
#[derive(Deserialize)]
struct Signal<'a> {
    to: Value,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

#[derive(serde::Serialize)]
struct Relayed<'a> {
    from: &'a str,
    data: &'a serde_json::value::RawValue,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewRoom {
    id: Option<String>,
    name: Option<String>,
    max_members: Option<usize>,
}

/// Apps send ids as strings or numbers; both are taken.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() && s.len() <= MAX_ID => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn room_key(id: &str) -> String {
    format!("room:{id}")
}

impl Rooms {
    fn fail(&self, host: &mut dyn Host, connection: u64, ack: Option<u64>, message: &str) {
        let _ = host.send(connection, event("error", &json!({ "message": message })));
        if let Some(ack) = ack {
            let _ = host.ack(connection, ack, &json!([{ "ok": false, "error": message }]).to_string());
        }
    }

    fn ok(&self, host: &mut dyn Host, connection: u64, ack: Option<u64>, extra: Value) {
        if let Some(ack) = ack {
            let mut answer = json!({ "ok": true });
            if let (Value::Object(a), Value::Object(e)) = (&mut answer, extra) {
                a.extend(e);
            }
            let _ = host.ack(connection, ack, &json!([answer]).to_string());
        }
    }

    fn join(&mut self, host: &mut dyn Host, connection: u64, args: &str, ack: Option<u64>) {
        let Some(join) = first_arg::<Join>(args) else {
            return self.fail(host, connection, ack, "join-room takes {roomId, displayName}");
        };
        let Some(room_id) = id_text(&join.room_id) else {
            return self.fail(host, connection, ack, "roomId must be a string of 1 to 64 characters");
        };
        let mut name: String = join.display_name.unwrap_or_default().chars().take(MAX_NAME).collect();
        if name.trim().is_empty() {
            name = self.identities.get(&connection).cloned().unwrap_or_else(|| format!("guest {connection}"));
        }
        if self.joined.get(&connection) == Some(&room_id) {
            return self.ok(host, connection, ack, json!({ "roomId": room_id }));
        }
        if !self.rooms.contains_key(&room_id) {
            if !self.config.create_on_join {
                return self.fail(host, connection, ack, "no such room");
            }
            if self.rooms.len() >= MAX_ROOMS {
                return self.fail(host, connection, ack, "too many rooms");
            }
        }
        let max_members = self.config.max_members;
        let room = self.rooms.entry(room_id.clone()).or_insert_with(|| Room {
            name: room_id.clone(),
            max_members,
            members: Vec::new(),
            kept: false,
        });
        if room.members.len() >= room.max_members {
            let full = json!({ "roomId": room_id, "maxMembers": room.max_members });
            let _ = host.send(connection, event("room-full", &full));
            return self.fail(host, connection, ack, "the room is full");
        }
        let peers: Vec<String> = room.members.iter().map(|(id, _)| id.to_string()).collect();
        let names: serde_json::Map<String, Value> =
            room.members.iter().map(|(id, n)| (id.to_string(), Value::String(n.clone()))).collect();
        room.members.push((connection, name.clone()));
        // One room at a time: joining another leaves the first.
        self.leave(host, connection);
        self.joined.insert(connection, room_id.clone());
        let joined = event("peer-joined", &json!({ "peerId": connection.to_string(), "displayName": name }));
        host.broadcast(&room_key(&room_id), joined, None);
        host.join(connection, &room_key(&room_id));
        let _ = host.send(connection, event("peers", &json!({ "peers": peers, "displayNames": names })));
        self.ok(host, connection, ack, json!({ "roomId": room_id, "peerId": connection.to_string() }));
    }

    /// Takes `connection` out of its room; the others hear `peer-left`. An empty room made by joining goes away.
    fn leave(&mut self, host: &mut dyn Host, connection: u64) {
        let Some(room_id) = self.joined.remove(&connection) else { return };
        host.leave(connection, &room_key(&room_id));
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.retain(|(id, _)| *id != connection);
            let left = event("peer-left", &json!({ "peerId": connection.to_string() }));
            host.broadcast(&room_key(&room_id), left, None);
            if room.members.is_empty() && !room.kept {
                self.rooms.remove(&room_id);
            }
        }
    }

    fn signal(&mut self, host: &mut dyn Host, connection: u64, args: &str, ack: Option<u64>) {
        let Some(signal) = first_arg::<Signal>(args) else {
            return self.fail(host, connection, ack, "signal takes {to, data}");
        };
        let to = id_text(&signal.to).and_then(|t| t.parse::<u64>().ok());
        let same_room = |c: u64| self.joined.get(&c);
        match to {
            Some(to) if same_room(to).is_some() && same_room(to) == same_room(connection) => {
                let relayed = event("signal", &Relayed { from: &connection.to_string(), data: signal.data });
                match host.send(to, relayed) {
                    Ok(()) => self.ok(host, connection, ack, json!({})),
                    Err(e) => self.fail(host, connection, ack, &e),
                }
            }
            _ => self.fail(host, connection, ack, "no such peer in your room"),
        }
    }

    fn room_json(id: &str, room: &Room, with_members: bool) -> Value {
        let mut v = json!({
            "id": id,
            "name": room.name,
            "maxMembers": room.max_members,
            "memberCount": room.members.len(),
        });
        if with_members {
            v["members"] =
                room.members.iter().map(|(c, n)| json!({ "peerId": c.to_string(), "displayName": n })).collect();
        }
        v
    }

    fn create_room(&mut self, body: &str) -> HttpResponse {
        let new: NewRoom = if body.trim().is_empty() {
            NewRoom::default()
        } else {
            match serde_json::from_str(body) {
                Ok(n) => n,
                Err(e) => return json_response(400, &json!({ "error": "bad_body", "message": e.to_string() })),
            }
        };
        let id = match new.id {
            Some(id) if id.is_empty() || id.len() > MAX_ID || id.contains('/') => {
                let message = "id must be 1 to 64 characters without '/'";
                return json_response(400, &json!({ "error": "bad_id", "message": message }));
            }
            Some(id) => id,
            None => loop {
                self.next_room += 1;
                let id = format!("room-{}", self.next_room);
                if !self.rooms.contains_key(&id) {
                    break id;
                }
            },
        };
        if self.rooms.contains_key(&id) {
            return json_response(409, &json!({ "error": "room_exists", "message": format!("room {id} exists") }));
        }
        if self.rooms.len() >= MAX_ROOMS {
            return json_response(503, &json!({ "error": "too_many_rooms", "message": "too many rooms" }));
        }
        let max_members = new.max_members.unwrap_or(self.config.max_members);
        if max_members == 0 || max_members > self.config.max_members_limit {
            let message = format!("maxMembers must be 1 to {}", self.config.max_members_limit);
            return json_response(400, &json!({ "error": "bad_max_members", "message": message }));
        }
        let name = new.name.unwrap_or_else(|| id.clone()).chars().take(MAX_NAME).collect();
        let room = Room { name, max_members, members: Vec::new(), kept: true };
        let body = Self::room_json(&id, &room, true);
        self.rooms.insert(id, room);
        json_response(201, &body)
    }

    fn delete_room(&mut self, host: &mut dyn Host, id: &str) -> HttpResponse {
        let Some(room) = self.rooms.remove(id) else {
            return json_response(404, &json!({ "error": "no_room", "message": format!("no room {id}") }));
        };
        for (connection, _) in room.members {
            self.joined.remove(&connection);
            host.leave(connection, &room_key(id));
            let _ = host.send(connection, event("room-closed", &json!({ "roomId": id })));
        }
        json_response(200, &json!({ "deleted": id }))
    }
}

impl Adapter for Rooms {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.max_members == 0 || config.max_members > config.max_members_limit {
            return Err("max_members must be at least 1 and at most max_members_limit".into());
        }
        Ok(Rooms { config, rooms: BTreeMap::new(), joined: HashMap::new(), identities: HashMap::new(), next_room: 0 })
    }

    fn on_connect(&mut self, _host: &mut dyn Host, client: &Client) -> Result<(), String> {
        if let Some(identity) = &client.identity {
            self.identities.insert(client.id, identity.chars().take(MAX_NAME).collect());
        }
        Ok(())
    }

    fn on_event(&mut self, host: &mut dyn Host, connection: u64, name: &str, args: &str, ack: Option<u64>) {
        match name {
            "join-room" => self.join(host, connection, args, ack),
            "signal" => self.signal(host, connection, args, ack),
            "leave-room" => {
                self.leave(host, connection);
                self.ok(host, connection, ack, json!({}));
            }
            _ => self.fail(
                host,
                connection,
                ack,
                &format!("unknown event \"{}\"", name.chars().take(64).collect::<String>()),
            ),
        }
    }

    fn on_disconnect(&mut self, host: &mut dyn Host, connection: u64, _reason: &str) {
        self.leave(host, connection);
        self.identities.remove(&connection);
    }

    fn on_http(&mut self, host: &mut dyn Host, request: &HttpRequest) -> HttpResponse {
        let id = request.path.trim_matches('/');
        match (request.method.as_str(), id) {
            ("GET", "") => {
                let rooms: Vec<Value> = self.rooms.iter().map(|(id, r)| Self::room_json(id, r, false)).collect();
                json_response(200, &json!({ "rooms": rooms }))
            }
            ("POST", "") => self.create_room(&request.body),
            ("GET", id) => match self.rooms.get(id) {
                Some(room) => json_response(200, &Self::room_json(id, room, true)),
                None => json_response(404, &json!({ "error": "no_room", "message": format!("no room {id}") })),
            },
            ("DELETE", id) if !id.is_empty() => self.delete_room(host, id),
            _ => json_response(
                405,
                &json!({ "error": "method_not_allowed", "message": "GET, POST /, GET or DELETE /ID" }),
            ),
        }
    }
}

sluice_sdk::export_signaling!(Rooms);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_sdk::mock::SignalingHost;

    use super::Rooms;

    fn host() -> SignalingHost<Rooms> {
        let mut host = SignalingHost::<Rooms>::new("{}").expect("config");
        for id in 1..=5 {
            host.connect(SignalingHost::<Rooms>::socketio_client(id, json!({}))).expect("connect");
        }
        host
    }

    #[test]
    fn joiners_see_the_peers_and_the_peers_see_them() {
        let mut h = host();
        h.event(1, "join-room", json!([{ "roomId": "r", "displayName": "ana" }]), None);
        assert_eq!(h.events_to(1), vec![("peers".into(), json!([{ "peers": [], "displayNames": {} }]))]);
        h.event(2, "join-room", json!([{ "roomId": "r", "displayName": "bo" }]), Some(7));
        assert_eq!(h.events_to(1), vec![("peer-joined".into(), json!([{ "peerId": "2", "displayName": "bo" }]))]);
        assert_eq!(h.events_to(2), vec![("peers".into(), json!([{ "peers": ["1"], "displayNames": { "1": "ana" } }]))]);
        assert_eq!(h.state.acks, vec![(2, 7, json!([{ "ok": true, "roomId": "r", "peerId": "2" }]).to_string())]);
        h.event(1, "signal", json!([{ "to": "2", "data": { "sdp": "x" } }]), None);
        assert_eq!(h.events_to(2), vec![("signal".into(), json!([{ "from": "1", "data": { "sdp": "x" } }]))]);
        h.disconnect(1, "gone");
        assert_eq!(h.events_to(2), vec![("peer-left".into(), json!([{ "peerId": "1" }]))]);
    }

    #[test]
    fn a_fifth_member_is_refused_and_strangers_cannot_be_signaled() {
        let mut h = host();
        for id in 1..=4 {
            h.event(id, "join-room", json!([{ "roomId": "r" }]), None);
        }
        h.state.sent.clear();
        h.event(5, "join-room", json!([{ "roomId": "r" }]), None);
        let got = h.events_to(5);
        assert_eq!(got[0], ("room-full".into(), json!([{ "roomId": "r", "maxMembers": 4 }])));
        h.event(5, "signal", json!([{ "to": "1", "data": {} }]), None);
        assert_eq!(h.events_to(5), vec![("error".into(), json!([{ "message": "no such peer in your room" }]))]);
        assert!(h.events_to(1).is_empty());
        h.event(5, "nonsense", json!([]), None);
        h.event(5, "join-room", json!(["not an object"]), None);
        assert_eq!(h.events_to(5).len(), 2, "each mistake is answered with an error");
    }

    #[test]
    fn rooms_over_rest() {
        let mut h = host();
        let (status, room) = h.http("POST", "", json!({ "id": "standup", "maxMembers": 2 }));
        assert_eq!((status, room["maxMembers"].clone()), (201, json!(2)));
        assert_eq!(h.http("POST", "", json!({ "id": "standup" })).0, 409);
        assert_eq!(h.http("POST", "", json!({ "maxMembers": 99 })).0, 400);
        h.event(1, "join-room", json!([{ "roomId": "standup", "displayName": "ana" }]), None);
        let (_, shown) = h.http("GET", "/standup", serde_json::Value::Null);
        assert_eq!(shown["members"], json!([{ "peerId": "1", "displayName": "ana" }]));
        let (_, list) = h.http("GET", "", serde_json::Value::Null);
        assert_eq!(list["rooms"][0]["memberCount"], json!(1));
        h.state.sent.clear();
        assert_eq!(h.http("DELETE", "/standup", serde_json::Value::Null).0, 200);
        assert_eq!(h.events_to(1), vec![("room-closed".into(), json!([{ "roomId": "standup" }]))]);
        assert_eq!(h.http("GET", "/standup", serde_json::Value::Null).0, 404);
    }
}
