//! `builtin:signal-cameras`: a camera-surveillance app's Socket.IO signaling, with the media going through the
//! router: a camera publishes into its route, viewers read it, so one camera feeds any number of viewers and a
//! recording.
//!
//! Events (each with one object argument):
//! - `join-room {cameraId, role: "camera" | "viewer"}`: joins the camera's room; the joiner gets the camera's
//!   `camera-status` at once.
//! - `offer {cameraId, sdp}`: from the camera, publishes into the camera's route; from a viewer, reads it. The
//!   router's answer comes back as `answer {cameraId, sdp}` (or `error {message}`).
//! - `ice-candidate {cameraId, candidate}`: trickled into the sender's session (a candidate string or an
//!   RTCIceCandidate-like object with `candidate`).
//! - `camera-status {cameraId, status: "offline" | "online" | "streaming"}` is pushed to the room whenever it
//!   changes: online while the camera is connected, streaming while its route is live.
//!
//! Config: `route` maps a camera id to its route name, `{cameraId}` standing for the id (default "{cameraId}");
//! the route must exist in routes.toml with `from = "whip"` and `whep` in `to`. REST under the plugin's `http`
//! prefix (e.g. "/api/signal-cameras"): `GET` lists the cameras connected to now (as camera or viewed) with their status and
//! viewer count.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_sdk::signaling::{Adapter, Host, HttpRequest, HttpResponse, RouteState, event, first_arg, json_response};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_route")]
    route: String,
}

fn default_route() -> String {
    "{cameraId}".into()
}

const MAX_ID: usize = 64;
const MAX_CAMERAS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Camera,
    Viewer,
}

#[derive(Debug, Default)]
struct Camera {
    /// The camera's connection while it is connected.
    camera: Option<u64>,
    viewers: Vec<u64>,
    live: bool,
    /// The status last pushed to the room.
    announced: Option<&'static str>,
}

impl Camera {
    fn status(&self) -> &'static str {
        match (self.live, self.camera) {
            (true, _) => "streaming",
            (false, Some(_)) => "online",
            (false, None) => "offline",
        }
    }
}

#[derive(Debug)]
pub struct Cameras {
    config: Config,
    cameras: BTreeMap<String, Camera>,
    /// Each connection's camera and role.
    members: HashMap<u64, (String, Role)>,
    /// Each connection's session (one at a time).
    sessions: HashMap<u64, String>,
    /// Route name -> camera id, for route-state reports.
    routes: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Join {
    camera_id: Value,
    role: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Offer {
    camera_id: Value,
    sdp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    camera_id: Value,
    candidate: Value,
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() && s.len() <= MAX_ID && !s.contains(['/', '{', '}']) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn room(camera: &str) -> String {
    format!("camera:{camera}")
}

fn error(host: &mut dyn Host, connection: u64, message: &str) {
    let _ = host.send(connection, event("error", &json!({ "message": message })));
}

impl Cameras {
    fn route_of(&self, camera: &str) -> String {
        self.config.route.replace("{cameraId}", camera)
    }

    /// Pushes the camera's status to its room if it changed; whether it did.
    fn announce(&mut self, host: &mut dyn Host, camera_id: &str) -> bool {
        let Some(camera) = self.cameras.get_mut(camera_id) else { return false };
        let status = camera.status();
        if camera.announced == Some(status) {
            return false;
        }
        camera.announced = Some(status);
        let update = event("camera-status", &json!({ "cameraId": camera_id, "status": status }));
        host.broadcast(&room(camera_id), update, None);
        true
    }

    fn join(&mut self, host: &mut dyn Host, connection: u64, args: &str) {
        let Some(join) = first_arg::<Join>(args) else {
            return error(host, connection, "join-room takes {cameraId, role}");
        };
        let Some(camera_id) = id_text(&join.camera_id) else {
            return error(host, connection, "cameraId must be 1 to 64 characters");
        };
        let role = match join.role.as_str() {
            "camera" => Role::Camera,
            "viewer" => Role::Viewer,
            _ => return error(host, connection, "role is \"camera\" or \"viewer\""),
        };
        if !self.cameras.contains_key(&camera_id) && self.cameras.len() >= MAX_CAMERAS {
            return error(host, connection, "too many cameras");
        }
        if let Some(Some(other)) = self.cameras.get(&camera_id).map(|c| c.camera)
            && role == Role::Camera
            && other != connection
        {
            return error(host, connection, "this camera is already connected");
        }
        self.leave(host, connection);
        let route = self.route_of(&camera_id);
        if !self.routes.contains_key(&route) {
            self.routes.insert(route.clone(), camera_id.clone());
            host.watch_route(&route, true);
        }
        let camera = self.cameras.entry(camera_id.clone()).or_default();
        match role {
            Role::Camera => camera.camera = Some(connection),
            Role::Viewer => camera.viewers.push(connection),
        }
        self.members.insert(connection, (camera_id.clone(), role));
        host.join(connection, &room(&camera_id));
        // The joiner hears the status once: with the room when it changed, else on its own.
        if !self.announce(host, &camera_id) {
            let status = self.cameras.get(&camera_id).map_or("offline", Camera::status);
            let _ = host.send(connection, event("camera-status", &json!({ "cameraId": camera_id, "status": status })));
        }
    }

    fn leave(&mut self, host: &mut dyn Host, connection: u64) {
        if let Some(session) = self.sessions.remove(&connection) {
            host.end_session(&session);
        }
        let Some((camera_id, role)) = self.members.remove(&connection) else { return };
        host.leave(connection, &room(&camera_id));
        if let Some(camera) = self.cameras.get_mut(&camera_id) {
            match role {
                Role::Camera => camera.camera = None,
                Role::Viewer => camera.viewers.retain(|v| *v != connection),
            }
        }
        let _ = self.announce(host, &camera_id);
        // A camera nobody is connected to is forgotten (its route unwatched): ids a client makes up do not pile up.
        if self.cameras.get(&camera_id).is_some_and(|c| c.camera.is_none() && c.viewers.is_empty()) {
            self.cameras.remove(&camera_id);
            let route = self.route_of(&camera_id);
            self.routes.remove(&route);
            host.watch_route(&route, false);
        }
    }

    fn offer(&mut self, host: &mut dyn Host, connection: u64, args: &str) {
        let Some(offer) = first_arg::<Offer>(args) else {
            return error(host, connection, "offer takes {cameraId, sdp}");
        };
        let camera_id = id_text(&offer.camera_id).unwrap_or_default();
        let Some((joined, role)) = self.members.get(&connection).cloned() else {
            return error(host, connection, "join the camera's room first");
        };
        if joined != camera_id {
            return error(host, connection, "you joined another camera's room");
        }
        if let Some(old) = self.sessions.remove(&connection) {
            host.end_session(&old);
        }
        let route = self.route_of(&camera_id);
        let started = match role {
            Role::Camera => host.publish(connection, &route, &offer.sdp),
            Role::Viewer => host.read(connection, &route, &offer.sdp),
        };
        match started {
            Ok(session) => {
                self.sessions.insert(connection, session);
            }
            Err(e) => error(host, connection, &e),
        }
    }

    fn candidate(&mut self, host: &mut dyn Host, connection: u64, args: &str) {
        let Some(c) = first_arg::<Candidate>(args) else {
            return error(host, connection, "ice-candidate takes {cameraId, candidate}");
        };
        let _ = c.camera_id;
        let line = match &c.candidate {
            Value::String(s) => s.clone(),
            Value::Object(o) => o.get("candidate").and_then(Value::as_str).unwrap_or_default().to_string(),
            _ => String::new(),
        };
        // Candidates before the offer have nowhere to go; an empty one ends gathering.
        if let Some(session) = self.sessions.get(&connection)
            && let Err(e) = host.add_candidate(session, &line)
        {
            error(host, connection, &e);
        }
    }
}

impl Adapter for Cameras {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if !config.route.contains("{cameraId}") {
            return Err("`route` must contain {cameraId}, e.g. \"cam-{cameraId}\"".into());
        }
        Ok(Cameras {
            config,
            cameras: BTreeMap::new(),
            members: HashMap::new(),
            sessions: HashMap::new(),
            routes: HashMap::new(),
        })
    }

    fn on_event(&mut self, host: &mut dyn Host, connection: u64, name: &str, args: &str, _ack: Option<u64>) {
        match name {
            "join-room" => self.join(host, connection, args),
            "offer" => self.offer(host, connection, args),
            "ice-candidate" => self.candidate(host, connection, args),
            "leave-room" => self.leave(host, connection),
            // Apps echo statuses from the camera page; the router's own status wins.
            "camera-status" => {}
            _ => error(host, connection, &format!("unknown event \"{}\"", name.chars().take(64).collect::<String>())),
        }
    }

    fn on_session(&mut self, host: &mut dyn Host, connection: u64, session: &str, answer: Result<&str, &str>) {
        let Some((camera_id, _)) = self.members.get(&connection) else { return };
        if self.sessions.get(&connection).map(String::as_str) != Some(session) {
            return;
        }
        match answer {
            Ok(sdp) => {
                let _ = host.send(connection, event("answer", &json!({ "cameraId": camera_id, "sdp": sdp })));
            }
            Err(e) => {
                self.sessions.remove(&connection);
                error(host, connection, e);
            }
        }
    }

    fn on_route_state(&mut self, host: &mut dyn Host, route: &str, state: RouteState) {
        let Some(camera_id) = self.routes.get(route).cloned() else { return };
        if let Some(camera) = self.cameras.get_mut(&camera_id) {
            camera.live = state == RouteState::Live;
        }
        let _ = self.announce(host, &camera_id);
    }

    fn on_disconnect(&mut self, host: &mut dyn Host, connection: u64, _reason: &str) {
        // The router ended the connection's session already.
        self.sessions.remove(&connection);
        self.leave(host, connection);
    }

    fn on_http(&mut self, _host: &mut dyn Host, request: &HttpRequest) -> HttpResponse {
        if request.method != "GET" || !request.path.trim_matches('/').is_empty() {
            return json_response(405, &json!({ "error": "method_not_allowed", "message": "GET / lists the cameras" }));
        }
        let cameras: Vec<Value> = self
            .cameras
            .iter()
            .map(|(id, c)| {
                json!({ "cameraId": id, "route": self.route_of(id), "status": c.status(), "viewers": c.viewers.len() })
            })
            .collect();
        json_response(200, &json!({ "cameras": cameras }))
    }
}

sluice_sdk::export_signaling!(Cameras);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_sdk::mock::SignalingHost;
    use sluice_sdk::signaling::RouteState;

    use super::Cameras;

    #[test]
    fn a_camera_publishes_a_viewer_reads_and_the_status_follows() {
        let mut h = SignalingHost::<Cameras>::from_value(json!({ "route": "cam-{cameraId}" })).expect("config");
        for id in [1, 2] {
            h.connect(SignalingHost::<Cameras>::socketio_client(id, json!({}))).expect("connect");
        }
        h.event(2, "join-room", json!([{ "cameraId": "door", "role": "viewer" }]), None);
        assert_eq!(
            h.events_to(2),
            vec![("camera-status".into(), json!([{ "cameraId": "door", "status": "offline" }]))]
        );
        assert!(h.state.watched.contains("cam-door"));
        h.event(1, "join-room", json!([{ "cameraId": "door", "role": "camera" }]), None);
        let online = ("camera-status".to_string(), json!([{ "cameraId": "door", "status": "online" }]));
        assert_eq!(h.events_to(2), vec![online.clone()]);
        h.event(1, "offer", json!([{ "cameraId": "door", "sdp": "v=0 cam" }]), None);
        h.event(
            1,
            "ice-candidate",
            json!([{ "cameraId": "door", "candidate": { "candidate": "candidate:1 1 udp 1 127.0.0.1 5 typ host" } }]),
            None,
        );
        let session = h.state.sessions[0].clone();
        assert!(session.publish && session.route == "cam-door");
        assert_eq!(session.candidates, vec!["candidate:1 1 udp 1 127.0.0.1 5 typ host"]);
        h.answer(&session.id, Ok("v=0 answer"));
        assert!(h.events_to(1).contains(&("answer".into(), json!([{ "cameraId": "door", "sdp": "v=0 answer" }]))));
        h.route_state("cam-door", RouteState::Live);
        assert_eq!(
            h.events_to(2),
            vec![("camera-status".into(), json!([{ "cameraId": "door", "status": "streaming" }]))]
        );
        h.event(2, "offer", json!([{ "cameraId": "door", "sdp": "v=0 viewer" }]), None);
        assert!(!h.state.sessions[1].publish, "a viewer reads");
        h.route_state("cam-door", RouteState::Offline);
        assert_eq!(h.events_to(2), vec![online]);
        h.disconnect(1, "gone");
        assert!(h.state.sessions[0].ended);
        assert_eq!(
            h.events_to(2),
            vec![("camera-status".into(), json!([{ "cameraId": "door", "status": "offline" }]))]
        );
        let (_, list) = h.http("GET", "", serde_json::Value::Null);
        assert_eq!(list["cameras"][0]["viewers"], json!(1));
    }

    #[test]
    fn a_second_camera_and_offers_before_joining_are_refused() {
        let mut h = SignalingHost::<Cameras>::new("{}").expect("config");
        for id in [1, 2] {
            h.connect(SignalingHost::<Cameras>::socketio_client(id, json!({}))).expect("connect");
        }
        h.event(2, "offer", json!([{ "cameraId": "x", "sdp": "v=0" }]), None);
        assert_eq!(h.events_to(2), vec![("error".into(), json!([{ "message": "join the camera's room first" }]))]);
        h.event(1, "join-room", json!([{ "cameraId": "x", "role": "camera" }]), None);
        h.event(2, "join-room", json!([{ "cameraId": "x", "role": "camera" }]), None);
        assert!(h.events_to(2).contains(&("error".into(), json!([{ "message": "this camera is already connected" }]))));
        assert!(SignalingHost::<Cameras>::from_value(json!({ "route": "fixed" })).is_err());
    }
}
