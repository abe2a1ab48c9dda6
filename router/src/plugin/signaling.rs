//! The host side of the `signaling` world: one instance per mounted plugin serving all of its clients, calls
//! under a deadline and a memory cap, and the host calls (send, rooms, sessions, timers) over [`SignalingHost`].
//!
//! Host calls never wait: sends go to each client's bounded queue through its transport ([`Outbound`]), rooms are
//! kept here, and what needs the router's async machinery (a WebRTC session, a timer, a route watch) is queued as a
//! [`HostRequest`] that the adapter driving the instance (`signal/adapter.rs`) carries out after the call returns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::Store;
use wasmtime::component::Component;

use super::LoadError;
use super::engine::{PluginHost, deadline_ticks};
use super::state::HostState;
use super::stats::{CallFailure, PluginStats};
use super::world::{WorldPlugin, world_impl};
use crate::config::model::PluginConfig;

mod bindings {
    wasmtime::component::bindgen!({
        world: "signaling",
        path: "../sdk/wit",
        with: {
            // Every world imports `host`: its bindings (and its one implementation) are the auth world's.
            "sluice:plugin/host": crate::plugin::auth::bindings::sluice::plugin::host,
        },
    });
}

use bindings::{Signaling, SignalingPre};
world_impl!(Signaling, SignalingPre);

pub use bindings::exports::sluice::plugin::signaling_adapter::{Client, HttpRequest, HttpResponse, Transport};
pub use bindings::sluice::plugin::signaling_host::{Event, Outgoing, RouteState};

/// The most rooms one plugin may have, and the most clients one room may hold: far above real use, low enough
/// that a plugin bug cannot grow the router's memory without end.
const MAX_ROOMS: usize = 100_000;
const MAX_ROOM_MEMBERS: usize = 100_000;
/// The longest room name and route name a plugin may pass.
const MAX_NAME: usize = 256;
/// The largest SDP a plugin may pass; the WebRTC engine checks its own (smaller) limit when the session starts.
const MAX_SDP: usize = 256 << 10;
/// Requests queued by one call; a plugin asking for more in one call is told no.
const MAX_REQUESTS_PER_CALL: usize = 10_000;

/// A client's transport, as the host sees it: where its messages go. Implemented by `signal/socketio.rs` and
/// `signal/websocket.rs`. Never blocks: a full queue is an error (and the transport closes that client).
pub trait Outbound: Send + Sync {
    fn transport(&self) -> Transport;
    fn send(&self, message: &Outgoing) -> Result<(), String>;
    fn ack(&self, ack: u64, args: &str) -> Result<(), String>;
    /// Closes the connection for good (the plugin asked; the client is not meant to come back by itself).
    fn close(&self, reason: &str);
    /// Drops the connection because the plugin restarted, so that the client reconnects by itself: Socket.IO
    /// clients do after a transport close (not after a namespace disconnect); WebSocket clients get 1012.
    fn restart(&self, reason: &str) {
        self.close(reason)
    }
}

/// What a host call asked for that the adapter carries out after the call returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRequest {
    Session { connection: u64, session: String, publish: bool, route: String, offer: String },
    Candidate { session: String, candidate: String },
    EndSession { session: String },
    Watch { route: String, watch: bool },
    Timer { token: u64, ms: u32 },
    Disconnect { connection: u64, reason: String },
}

/// The signaling state of one instance: its clients, rooms and sessions, and the requests of the current call.
#[derive(Default)]
pub struct SignalingHost {
    clients: HashMap<u64, ClientEntry>,
    rooms: HashMap<String, Vec<u64>>,
    /// Sessions the plugin started, by id, with their connection.
    sessions: HashMap<String, u64>,
    requests: Vec<HostRequest>,
}

struct ClientEntry {
    outbound: Arc<dyn Outbound>,
    rooms: Vec<String>,
}

impl std::fmt::Debug for SignalingHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingHost")
            .field("clients", &self.clients.len())
            .field("rooms", &self.rooms.len())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl SignalingHost {
    /// A client the plugin may now address (before `on-connect`, so the plugin can greet it there).
    pub fn add_client(&mut self, id: u64, outbound: Arc<dyn Outbound>) {
        self.clients.insert(id, ClientEntry { outbound, rooms: Vec::new() });
    }

    /// Forgets a client: it leaves its rooms; returns its sessions, which the adapter ends.
    pub fn remove_client(&mut self, id: u64) -> Vec<String> {
        if let Some(entry) = self.clients.remove(&id) {
            for room in entry.rooms {
                self.leave_room(id, &room);
            }
        }
        let sessions: Vec<String> = self.sessions.iter().filter(|(_, c)| **c == id).map(|(s, _)| s.clone()).collect();
        for s in &sessions {
            self.sessions.remove(s);
        }
        sessions
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// A session ended by itself (its peer went away): forgotten, so the plugin's later calls on it are no-ops.
    pub fn forget_session(&mut self, session: &str) {
        self.sessions.remove(session);
    }

    /// The requests the last call made, in order.
    pub fn take_requests(&mut self) -> Vec<HostRequest> {
        std::mem::take(&mut self.requests)
    }

    fn request(&mut self, request: HostRequest) -> Result<(), String> {
        if self.requests.len() >= MAX_REQUESTS_PER_CALL {
            return Err(format!("more than {MAX_REQUESTS_PER_CALL} requests in one call"));
        }
        self.requests.push(request);
        Ok(())
    }

    fn leave_room(&mut self, id: u64, room: &str) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.retain(|m| *m != id);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    fn send(&self, connection: u64, message: &Outgoing) -> Result<(), String> {
        let client = self.clients.get(&connection).ok_or_else(|| format!("no connection {connection}"))?;
        check_kind(client.outbound.transport(), message)?;
        client.outbound.send(message)
    }

    fn start_session(
        &mut self,
        connection: u64,
        route: String,
        offer: String,
        publish: bool,
    ) -> Result<String, String> {
        if !self.clients.contains_key(&connection) {
            return Err(format!("no connection {connection}"));
        }
        check_name("route", &route)?;
        if offer.len() > MAX_SDP {
            return Err(format!("the offer exceeds {MAX_SDP} bytes"));
        }
        let session = new_session_id();
        self.request(HostRequest::Session { connection, session: session.clone(), publish, route, offer })?;
        self.sessions.insert(session.clone(), connection);
        Ok(session)
    }
}

/// Events go to Socket.IO clients, text to WebSocket clients.
fn check_kind(transport: Transport, message: &Outgoing) -> Result<(), String> {
    match (transport, message) {
        (Transport::SocketIo, Outgoing::Event(_)) | (Transport::Websocket, Outgoing::Text(_)) => Ok(()),
        (Transport::SocketIo, Outgoing::Text(_)) => Err("a Socket.IO client takes events, not text".into()),
        (Transport::Websocket, Outgoing::Event(_)) => Err("a WebSocket client takes text, not events".into()),
    }
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("a {what} name must be 1 to {MAX_NAME} bytes"));
    }
    Ok(())
}

fn new_session_id() -> String {
    let mut bytes = [0u8; 12];
    // Without randomness the id is still unique per process (the counter); it just is not unguessable.
    let _ = getrandom::fill(&mut bytes);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sig{n:x}-{hex}")
}

impl HostState {
    fn signaling(&mut self) -> &mut SignalingHost {
        self.signaling.get_or_insert_with(SignalingHost::default)
    }
}

impl bindings::sluice::plugin::signaling_host::Host for HostState {
    fn send(&mut self, connection: u64, message: Outgoing) -> Result<(), String> {
        self.signaling().send(connection, &message)
    }

    fn broadcast(&mut self, room: String, message: Outgoing, except: Option<u64>) -> u32 {
        let host = self.signaling();
        let Some(members) = host.rooms.get(&room) else { return 0 };
        let mut reached = 0;
        for id in members {
            if Some(*id) != except && host.send(*id, &message).is_ok() {
                reached += 1;
            }
        }
        reached
    }

    fn ack(&mut self, connection: u64, ack: u64, args: String) -> Result<(), String> {
        let host = self.signaling();
        let client = host.clients.get(&connection).ok_or_else(|| format!("no connection {connection}"))?;
        client.outbound.ack(ack, &args)
    }

    fn join(&mut self, connection: u64, room: String) {
        let host = self.signaling();
        if check_name("room", &room).is_err() || (host.rooms.len() >= MAX_ROOMS && !host.rooms.contains_key(&room)) {
            return;
        }
        let Some(client) = host.clients.get_mut(&connection) else { return };
        let members = host.rooms.entry(room.clone()).or_default();
        if !members.contains(&connection) && members.len() < MAX_ROOM_MEMBERS {
            members.push(connection);
            client.rooms.push(room);
        }
    }

    fn leave(&mut self, connection: u64, room: String) {
        let host = self.signaling();
        if let Some(client) = host.clients.get_mut(&connection) {
            client.rooms.retain(|r| *r != room);
        }
        host.leave_room(connection, &room);
    }

    fn members(&mut self, room: String) -> Vec<u64> {
        self.signaling().rooms.get(&room).cloned().unwrap_or_default()
    }

    fn publish(&mut self, connection: u64, route: String, offer: String) -> Result<String, String> {
        self.signaling().start_session(connection, route, offer, true)
    }

    fn read(&mut self, connection: u64, route: String, offer: String) -> Result<String, String> {
        self.signaling().start_session(connection, route, offer, false)
    }

    fn add_candidate(&mut self, session: String, candidate: String) -> Result<(), String> {
        let host = self.signaling();
        if !host.sessions.contains_key(&session) {
            return Err(format!("no session {session}"));
        }
        if candidate.len() > 4096 {
            return Err("a candidate line is at most 4096 bytes".into());
        }
        let line = candidate.trim().trim_start_matches("a=");
        if line.is_empty() {
            return Ok(());
        }
        if !line.starts_with("candidate:") {
            return Err("a candidate starts with `candidate:`".into());
        }
        host.request(HostRequest::Candidate { session, candidate: line.to_string() })
    }

    fn end_session(&mut self, session: String) {
        let host = self.signaling();
        if host.sessions.remove(&session).is_some() {
            let _ = host.request(HostRequest::EndSession { session });
        }
    }

    fn watch_route(&mut self, route: String, watch: bool) {
        if check_name("route", &route).is_ok() {
            let _ = self.signaling().request(HostRequest::Watch { route, watch });
        }
    }

    fn set_timer(&mut self, token: u64, ms: u32) {
        let _ = self.signaling().request(HostRequest::Timer { token, ms });
    }

    fn disconnect(&mut self, connection: u64, reason: String) {
        let _ = self.signaling().request(HostRequest::Disconnect { connection, reason });
    }
}

/// A signaling plugin, loaded: the world's loader. The adapter of its mount starts instances with [`start`](Self::start).
pub struct SignalingPlugin {
    plugin: WorldPlugin<Signaling>,
}

impl std::fmt::Debug for SignalingPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingPlugin").field("name", &self.plugin.name).finish_non_exhaustive()
    }
}

/// A running instance with its signaling state.
pub struct SignalingInstance {
    store: Store<HostState>,
    bindings: Signaling,
}

impl std::fmt::Debug for SignalingInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingInstance").finish_non_exhaustive()
    }
}

impl SignalingInstance {
    pub fn host(&mut self) -> &mut SignalingHost {
        self.store.data_mut().signaling()
    }
}

impl SignalingPlugin {
    /// Links and pre-instantiates the plugin, then starts one instance to run `init`: a config the plugin rejects
    /// fails the load, with the plugin's message.
    pub fn new(host: &PluginHost, config: &PluginConfig, component: &Component) -> Result<Self, LoadError> {
        let plugin = SignalingPlugin { plugin: WorldPlugin::link(host, config, component)? };
        plugin.start().map_err(|e| LoadError::new(&config.name, e.to_string()))?;
        Ok(plugin)
    }

    pub fn name(&self) -> &Arc<str> {
        &self.plugin.name
    }

    pub fn stats(&self) -> &PluginStats {
        &self.plugin.stats
    }

    /// A fresh instance, initialised with the plugin's config.
    pub fn start(&self) -> Result<SignalingInstance, CallFailure> {
        let plugin = &self.plugin;
        let mut store = plugin.new_store();
        store.data_mut().signaling = Some(SignalingHost::default());
        let bindings = plugin.instantiate(&mut store)?;
        store.set_epoch_deadline(deadline_ticks(plugin.timeout));
        let failure = match bindings.sluice_plugin_signaling_adapter().call_init(&mut store, &plugin.config_json) {
            Ok(Ok(())) => return Ok(SignalingInstance { store, bindings }),
            Ok(Err(message)) => CallFailure::Instantiate(format!("its init refused the config: {message}")),
            Err(e) => plugin.classify(&e, &store),
        };
        plugin.stats.failed(&failure);
        Err(failure)
    }

    /// One call into `instance` under the plugin's deadline. A failure is counted; the instance must not be used
    /// again (the adapter starts a new one).
    fn call<R>(
        &self,
        instance: &mut SignalingInstance,
        f: impl FnOnce(
            &bindings::exports::sluice::plugin::signaling_adapter::Guest,
            &mut Store<HostState>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        let plugin = &self.plugin;
        let started = Instant::now();
        instance.store.set_epoch_deadline(deadline_ticks(plugin.timeout));
        let result = f(instance.bindings.sluice_plugin_signaling_adapter(), &mut instance.store);
        plugin.count_call(started);
        result.map_err(|e| {
            let failure = plugin.failed(&e, &instance.store);
            tracing::warn!(plugin = %plugin.name, error = %failure, "signaling plugin call failed; restarting it");
            failure
        })
    }

    pub fn on_connect(
        &self,
        instance: &mut SignalingInstance,
        client: &Client,
    ) -> Result<Result<(), String>, CallFailure> {
        self.call(instance, |g, s| g.call_on_connect(s, client))
    }

    pub fn on_event(
        &self,
        instance: &mut SignalingInstance,
        connection: u64,
        name: &str,
        args: &str,
        ack: Option<u64>,
    ) -> Result<(), CallFailure> {
        self.call(instance, |g, s| g.call_on_event(s, connection, name, args, ack))
    }

    pub fn on_message(&self, instance: &mut SignalingInstance, connection: u64, text: &str) -> Result<(), CallFailure> {
        self.call(instance, |g, s| g.call_on_message(s, connection, text))
    }

    pub fn on_disconnect(
        &self,
        instance: &mut SignalingInstance,
        connection: u64,
        reason: &str,
    ) -> Result<(), CallFailure> {
        self.call(instance, |g, s| g.call_on_disconnect(s, connection, reason))
    }

    pub fn on_session(
        &self,
        instance: &mut SignalingInstance,
        connection: u64,
        session: &str,
        answer: &Result<String, String>,
    ) -> Result<(), CallFailure> {
        self.call(instance, |g, s| g.call_on_session(s, connection, session, answer.as_deref().map_err(String::as_str)))
    }

    pub fn on_route_state(
        &self,
        instance: &mut SignalingInstance,
        route: &str,
        state: RouteState,
    ) -> Result<(), CallFailure> {
        self.call(instance, |g, s| g.call_on_route_state(s, route, state))
    }

    pub fn on_timer(&self, instance: &mut SignalingInstance, token: u64) -> Result<(), CallFailure> {
        self.call(instance, |g, s| g.call_on_timer(s, token))
    }

    pub fn on_http(
        &self,
        instance: &mut SignalingInstance,
        request: &HttpRequest,
    ) -> Result<HttpResponse, CallFailure> {
        self.call(instance, |g, s| g.call_on_http(s, request))
    }
}

/// Splits a JSON array of arguments (what `emit`/`ack` take) into its elements, each kept as the plugin wrote it
/// (checked, not parsed into values: they are only written out again).
pub fn parse_args(args: &str) -> Result<Vec<Box<serde_json::value::RawValue>>, String> {
    if !args.trim_start().starts_with('[') {
        return Err("arguments must be a JSON array".into());
    }
    serde_json::from_str(args).map_err(|e| format!("arguments are not a JSON array: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<String>>,
    }

    impl Outbound for Recorder {
        fn transport(&self) -> Transport {
            Transport::SocketIo
        }
        fn send(&self, message: &Outgoing) -> Result<(), String> {
            if let Outgoing::Event(e) = message {
                self.sent.lock().expect("lock").push(e.name.clone());
            }
            Ok(())
        }
        fn ack(&self, _ack: u64, _args: &str) -> Result<(), String> {
            Ok(())
        }
        fn close(&self, _reason: &str) {}
    }

    fn state() -> HostState {
        let mut s = HostState::new(Arc::from("t"), 1 << 20, &[]);
        s.signaling = Some(SignalingHost::default());
        s
    }

    use bindings::sluice::plugin::signaling_host::Host as _;

    #[test]
    fn rooms_keep_join_order_skip_the_sender_and_vanish_when_empty() {
        let mut s = state();
        let clients: Vec<Arc<Recorder>> = (0..3).map(|_| Arc::new(Recorder::default())).collect();
        for (i, c) in clients.iter().enumerate() {
            s.signaling().add_client(i as u64, c.clone());
            s.join(i as u64, "r".into());
        }
        s.join(0, "r".into());
        assert_eq!(s.members("r".into()), vec![0, 1, 2], "a second join changes nothing");
        let hello = Outgoing::Event(Event { name: "hello".into(), args: "[]".into() });
        assert_eq!(s.broadcast("r".into(), hello.clone(), Some(1)), 2);
        assert!(clients[1].sent.lock().expect("lock").is_empty());
        assert_eq!(*clients[0].sent.lock().expect("lock"), vec!["hello"]);
        assert_eq!(s.send(0, Outgoing::Text("x".into())), Err("a Socket.IO client takes events, not text".into()));
        s.leave(0, "r".into());
        assert!(s.signaling().remove_client(1).is_empty());
        assert_eq!(s.members("r".into()), vec![2]);
        s.signaling().remove_client(2);
        assert_eq!(s.signaling().room_count(), 0);
        assert_eq!(s.broadcast("r".into(), hello, None), 0);
    }

    #[test]
    fn sessions_are_queued_checked_and_ended_with_their_connection() {
        let mut s = state();
        s.signaling().add_client(7, Arc::new(Recorder::default()));
        assert!(s.publish(8, "cam".into(), "v=0".into()).is_err(), "no such connection");
        assert!(s.publish(7, String::new(), "v=0".into()).is_err(), "no route name");
        let id = s.publish(7, "cam".into(), "v=0".into()).expect("queued");
        assert_eq!(s.add_candidate(id.clone(), "a=candidate:1 1 udp 1 127.0.0.1 9 typ host".into()), Ok(()));
        assert!(s.add_candidate(id.clone(), "nonsense".into()).is_err());
        assert!(s.add_candidate("other".into(), "candidate:1".into()).is_err());
        let requests = s.signaling().take_requests();
        assert!(matches!(&requests[0], HostRequest::Session { publish: true, route, .. } if route == "cam"));
        assert_eq!(
            requests[1],
            HostRequest::Candidate {
                session: id.clone(),
                candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host".into()
            }
        );
        assert_eq!(s.signaling().remove_client(7), vec![id.clone()]);
        s.end_session(id);
        assert!(s.signaling().take_requests().is_empty(), "the session went with its connection");
    }

    #[test]
    fn args_must_be_a_json_array() {
        let args = parse_args(r#"[{"a": 1}, 2]"#).expect("array");
        assert_eq!(args.iter().map(|a| a.get()).collect::<Vec<_>>(), [r#"{"a": 1}"#, "2"]);
        assert!(parse_args(r#"{"a":1}"#).is_err());
        assert!(parse_args("[").is_err());
    }
}
