//! A native host for signaling plugins: clients, rooms and sessions in memory, and everything the plugin sent,
//! in order, for tests to read.

use std::collections::{BTreeMap, BTreeSet};

use crate::signaling::{Adapter, Client, Event, Host, HttpRequest, Outgoing, RouteState, Transport};

/// A session the plugin started with `publish` or `read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockSession {
    pub id: String,
    pub connection: u64,
    pub route: String,
    pub publish: bool,
    pub offer: String,
    pub candidates: Vec<String>,
    pub ended: bool,
}

/// What the plugin did, as the mock host saw it.
#[derive(Debug, Default)]
pub struct SignalingState {
    clients: BTreeMap<u64, Transport>,
    rooms: BTreeMap<String, Vec<u64>>,
    /// Everything sent, in order: (connection, message).
    pub sent: Vec<(u64, Outgoing)>,
    /// Acks answered: (connection, ack id, args).
    pub acks: Vec<(u64, u64, String)>,
    pub sessions: Vec<MockSession>,
    pub watched: BTreeSet<String>,
    /// Pending timers: token -> milliseconds.
    pub timers: BTreeMap<u64, u32>,
    /// Connections the plugin disconnected, with the reason.
    pub disconnected: Vec<(u64, String)>,
}

impl Host for SignalingState {
    fn send(&mut self, connection: u64, message: Outgoing) -> Result<(), String> {
        let transport = self.clients.get(&connection).ok_or_else(|| format!("no connection {connection}"))?;
        match (transport, &message) {
            (Transport::SocketIo, Outgoing::Event(_)) | (Transport::Websocket, Outgoing::Text(_)) => {
                self.sent.push((connection, message));
                Ok(())
            }
            _ => Err("wrong message kind for the client's transport".into()),
        }
    }

    fn broadcast(&mut self, room: &str, message: Outgoing, except: Option<u64>) -> u32 {
        let members = self.rooms.get(room).cloned().unwrap_or_default();
        members.into_iter().filter(|m| Some(*m) != except && self.send(*m, message.clone()).is_ok()).count() as u32
    }

    fn ack(&mut self, connection: u64, ack: u64, args: &str) -> Result<(), String> {
        if !self.clients.contains_key(&connection) {
            return Err(format!("no connection {connection}"));
        }
        self.acks.push((connection, ack, args.to_string()));
        Ok(())
    }

    fn join(&mut self, connection: u64, room: &str) {
        if self.clients.contains_key(&connection) {
            let members = self.rooms.entry(room.to_string()).or_default();
            if !members.contains(&connection) {
                members.push(connection);
            }
        }
    }

    fn leave(&mut self, connection: u64, room: &str) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.retain(|m| *m != connection);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    fn members(&mut self, room: &str) -> Vec<u64> {
        self.rooms.get(room).cloned().unwrap_or_default()
    }

    fn publish(&mut self, connection: u64, route: &str, offer: &str) -> Result<String, String> {
        self.start(connection, route, offer, true)
    }

    fn read(&mut self, connection: u64, route: &str, offer: &str) -> Result<String, String> {
        self.start(connection, route, offer, false)
    }

    fn add_candidate(&mut self, session: &str, candidate: &str) -> Result<(), String> {
        let s = self.sessions.iter_mut().find(|s| s.id == session && !s.ended);
        let s = s.ok_or_else(|| format!("no session {session}"))?;
        s.candidates.push(candidate.to_string());
        Ok(())
    }

    fn end_session(&mut self, session: &str) {
        if let Some(s) = self.sessions.iter_mut().find(|s| s.id == session) {
            s.ended = true;
        }
    }

    fn watch_route(&mut self, route: &str, watch: bool) {
        if watch {
            self.watched.insert(route.to_string());
        } else {
            self.watched.remove(route);
        }
    }

    fn set_timer(&mut self, token: u64, ms: u32) {
        self.timers.insert(token, ms);
    }

    fn disconnect(&mut self, connection: u64, reason: &str) {
        self.disconnected.push((connection, reason.to_string()));
    }
}

impl SignalingState {
    fn start(&mut self, connection: u64, route: &str, offer: &str, publish: bool) -> Result<String, String> {
        if !self.clients.contains_key(&connection) {
            return Err(format!("no connection {connection}"));
        }
        let id = format!("s{}", self.sessions.len() + 1);
        self.sessions.push(MockSession {
            id: id.clone(),
            connection,
            route: route.to_string(),
            publish,
            offer: offer.to_string(),
            candidates: Vec::new(),
            ended: false,
        });
        Ok(id)
    }

    /// The rooms and their members, in join order.
    pub fn rooms(&self) -> &BTreeMap<String, Vec<u64>> {
        &self.rooms
    }
}

/// Hosts one signaling plugin natively.
#[derive(Debug)]
pub struct SignalingHost<P> {
    plugin: P,
    pub state: SignalingState,
}

impl<P: Adapter> SignalingHost<P> {
    /// Starts the plugin with `config` as the router would hand it over: JSON of the `config` table.
    pub fn new(config: &str) -> Result<Self, String> {
        let plugin = P::new(crate::config::parse::<P::Config>(config)?)?;
        Ok(SignalingHost { plugin, state: SignalingState::default() })
    }

    /// Starts the plugin with a config built by `serde_json::json!`.
    pub fn from_value(config: serde_json::Value) -> Result<Self, String> {
        Self::new(&config.to_string())
    }

    /// A Socket.IO client on namespace `/` from 127.0.0.1, with this handshake `auth` payload.
    pub fn socketio_client(id: u64, auth: serde_json::Value) -> Client {
        Client {
            id,
            transport: Transport::SocketIo,
            namespace: "/".into(),
            query: Vec::new(),
            auth: auth.to_string(),
            remote_ip: "127.0.0.1".into(),
            identity: None,
        }
    }

    /// A plain WebSocket client of mount `path` from 127.0.0.1.
    pub fn websocket_client(id: u64, path: &str) -> Client {
        Client {
            id,
            transport: Transport::Websocket,
            namespace: path.into(),
            query: Vec::new(),
            auth: "{}".into(),
            remote_ip: "127.0.0.1".into(),
            identity: None,
        }
    }

    pub fn connect(&mut self, client: Client) -> Result<(), String> {
        self.state.clients.insert(client.id, client.transport);
        let result = self.plugin.on_connect(&mut self.state, &client);
        if result.is_err() {
            self.state.clients.remove(&client.id);
        }
        result
    }

    /// A Socket.IO event; `args` is the JSON array of its arguments.
    pub fn event(&mut self, connection: u64, name: &str, args: serde_json::Value, ack: Option<u64>) {
        self.plugin.on_event(&mut self.state, connection, name, &args.to_string(), ack)
    }

    pub fn message(&mut self, connection: u64, text: &str) {
        self.plugin.on_message(&mut self.state, connection, text)
    }

    /// The client leaves: out of its rooms, its sessions ended, then the plugin is told.
    pub fn disconnect(&mut self, connection: u64, reason: &str) {
        if self.state.clients.remove(&connection).is_none() {
            return;
        }
        let rooms: Vec<String> = self.state.rooms.keys().cloned().collect();
        for room in rooms {
            self.state.leave(connection, &room);
        }
        for s in self.state.sessions.iter_mut().filter(|s| s.connection == connection) {
            s.ended = true;
        }
        self.plugin.on_disconnect(&mut self.state, connection, reason)
    }

    /// The router's answer to session `session` (as `on-session`).
    pub fn answer(&mut self, session: &str, answer: Result<&str, &str>) {
        let Some(connection) = self.state.sessions.iter().find(|s| s.id == session).map(|s| s.connection) else {
            return;
        };
        self.plugin.on_session(&mut self.state, connection, session, answer)
    }

    pub fn route_state(&mut self, route: &str, state: RouteState) {
        if self.state.watched.contains(route) {
            self.plugin.on_route_state(&mut self.state, route, state)
        }
    }

    pub fn fire_timer(&mut self, token: u64) {
        if self.state.timers.remove(&token).is_some() {
            self.plugin.on_timer(&mut self.state, token)
        }
    }

    /// An HTTP request to the plugin's endpoints: (status, body as JSON).
    pub fn http(&mut self, method: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let request = HttpRequest {
            method: method.to_string(),
            path: path.to_string(),
            query: Vec::new(),
            body: if body.is_null() { String::new() } else { body.to_string() },
            remote_ip: "127.0.0.1".into(),
            identity: None,
        };
        let response = self.plugin.on_http(&mut self.state, &request);
        (response.status, serde_json::from_str(&response.body).unwrap_or(serde_json::Value::Null))
    }

    /// The events sent to `connection` since the last call, as (name, arguments), taken out of `state.sent`.
    pub fn events_to(&mut self, connection: u64) -> Vec<(String, serde_json::Value)> {
        self.take(connection)
            .into_iter()
            .filter_map(|m| match m {
                Outgoing::Event(Event { name, args }) => Some((name, serde_json::from_str(&args).ok()?)),
                Outgoing::Text(_) => None,
            })
            .collect()
    }

    /// The text messages sent to `connection` since the last call, parsed as JSON, taken out of `state.sent`.
    pub fn texts_to(&mut self, connection: u64) -> Vec<serde_json::Value> {
        self.take(connection)
            .into_iter()
            .filter_map(|m| match m {
                Outgoing::Text(t) => serde_json::from_str(&t).ok(),
                Outgoing::Event(_) => None,
            })
            .collect()
    }

    fn take(&mut self, connection: u64) -> Vec<Outgoing> {
        let (mine, others): (Vec<_>, Vec<_>) = self.state.sent.drain(..).partition(|(c, _)| *c == connection);
        self.state.sent = others;
        mine.into_iter().map(|(_, m)| m).collect()
    }

    /// The plugin value, to inspect its state.
    pub fn plugin(&self) -> &P {
        &self.plugin
    }
}
