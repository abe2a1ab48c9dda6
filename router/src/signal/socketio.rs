//! The Socket.IO transport: socketioxide (Socket.IO v5 over Engine.IO v4, long-polling with the upgrade to
//! WebSocket, acks, namespaces, heartbeats) serving one mount, every event handed to the mount's adapter.
//!
//! Every namespace is accepted and the plugin decides: its `on-connect` sees the namespace, the handshake's `auth`
//! payload, the query and the client's address, and an error there is the client's `connect_error`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::ser::{SerializeTuple, Serializer};
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts};
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide::{SendError, SocketError, SocketIo};
use socketioxide_core::Value;

use super::MountContext;
use super::adapter::Inbound;
use super::limits::{EventBudget, MAX_MESSAGE_BYTES};
use crate::auth::Credentials;
use crate::plugin::signaling::{Client, Outbound, Outgoing, Transport, parse_args};

/// Packets waiting to go to one client; past this the client is too slow and is disconnected.
const CLIENT_QUEUE: usize = 1024;
/// Engine.IO heartbeats (the official server's defaults): a client silent for interval + timeout is gone.
const PING_INTERVAL: Duration = Duration::from_secs(25);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// A Socket.IO server for one mount, as a tower service the HTTP listener calls for paths under the mount.
pub type Service = socketioxide::service::SocketIoService<NotFound>;

/// What the Socket.IO service answers for a request it does not take.
#[derive(Debug, Clone, Copy)]
pub struct NotFound;

impl tower::Service<axum::extract::Request> for NotFound {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: axum::extract::Request) -> Self::Future {
        use axum::response::IntoResponse as _;
        std::future::ready(Ok((axum::http::StatusCode::NOT_FOUND, "not a Socket.IO request\n").into_response()))
    }
}

/// Builds the server of a mount (e.g. "/socket.io/"). The returned [`SioMount`] must live as long as the service:
/// the handlers hold it weakly.
pub fn serve(mount: Arc<MountContext>) -> (Service, Arc<SioMount>) {
    let (service, io) = SocketIo::builder()
        .req_path(mount.path.trim_end_matches('/').to_string())
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        .max_payload(MAX_MESSAGE_BYTES as u64)
        .ws_max_message_size(MAX_MESSAGE_BYTES)
        .ws_max_frame_size(MAX_MESSAGE_BYTES)
        .max_buffer_size(CLIENT_QUEUE)
        // Signaling messages are small: a 1 KiB read buffer per connection instead of 4 (larger messages still
        // arrive whole; they take more reads).
        .ws_read_buffer_size(1024)
        .build_with_inner_svc(NotFound);
    let sio = Arc::new(SioMount {
        io,
        mount,
        clients: Mutex::default(),
        namespaces: Mutex::default(),
        restarting: AtomicBool::new(false),
    });
    sio.install(true);
    (service, sio)
}

/// One mount's Socket.IO server, for what concerns all its clients at once.
pub struct SioMount {
    io: SocketIo,
    mount: Arc<MountContext>,
    /// The clients, by their number. Sockets find theirs through a [`ClientKey`] in their extensions (which holds
    /// no reference back to the socket: a socket holding its client holding its socket would never be freed).
    clients: Mutex<HashMap<u64, Arc<SioClient>>>,
    /// Namespaces other than `/` that clients have opened (each stays in socketioxide's table): capped.
    namespaces: Mutex<std::collections::HashSet<String>>,
    /// Set while a restart closes every connection.
    restarting: AtomicBool,
}

/// Namespaces besides `/` a mount takes; past this, a connection to a new one is refused (a client inventing
/// namespaces would otherwise grow the server's table without end).
const MAX_NAMESPACES: usize = 32;
/// How long a client the plugin accepted may take to complete its Socket.IO connect; one whose transport died in
/// between is forgotten then (socketioxide reports no disconnect for a socket it never registered).
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

impl std::fmt::Debug for SioMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SioMount").field("path", &self.mount.path).finish_non_exhaustive()
    }
}

/// What a socket carries to find its client: its number and the mount (weakly).
#[derive(Clone)]
struct ClientKey {
    id: u64,
    mount: Weak<SioMount>,
}

impl ClientKey {
    fn client(&self) -> Option<Arc<SioClient>> {
        self.mount.upgrade()?.clients.lock().unwrap_or_else(|p| p.into_inner()).get(&self.id).cloned()
    }
}

impl SioMount {
    /// Accepts every namespace (up to [`MAX_NAMESPACES`]), each client handed to the mount's plugin.
    fn install(self: &Arc<Self>, with_namespaces: bool) {
        let weak = Arc::downgrade(self);
        let on_connect =
            async move |socket: SocketRef, TryData(auth): TryData<serde_json::Value>| -> Result<(), String> {
                let sio = weak.upgrade().ok_or_else(|| "this signaling mount was removed".to_string())?;
                connect(socket, auth.ok(), &sio).await
            };
        let handler = async |socket: SocketRef| {
            // Registered now: the plugin may have sent the client something from its `on-connect` already.
            if let Some(client) = socket.extensions.get::<ClientKey>().and_then(|k| k.client()) {
                client.registered(&socket).await;
            }
        };
        self.io.ns("/", handler.with(on_connect.clone()));
        // Any other namespace goes to the plugin too, which sees its name. (The pattern outlives `close`.)
        if with_namespaces && let Err(e) = self.io.dyn_ns("/{*namespace}", handler.with(on_connect)) {
            tracing::error!(error = %e, "cannot accept Socket.IO namespaces");
        }
    }

    /// Closes every client's transport (a namespace disconnect would tell socket.io-client not to come back), then
    /// takes clients again: they reconnect by themselves, to the plugin's fresh instance.
    fn restart(self: &Arc<Self>) {
        if self.restarting.swap(true, Ordering::AcqRel) {
            return;
        }
        let sio = Arc::clone(self);
        tokio::spawn(async move {
            sio.io.close().await;
            // socketioxide reports no disconnects for sockets it closes this way: forget them here.
            sio.clients.lock().unwrap_or_else(|p| p.into_inner()).clear();
            sio.install(false);
            sio.restarting.store(false, Ordering::Release);
        });
    }

    /// The mount is gone: every client's transport closes (they reconnect, to whatever is mounted then).
    pub fn shut_down(self: &Arc<Self>) {
        let sio = Arc::clone(self);
        tokio::spawn(async move {
            sio.io.close().await;
            sio.clients.lock().unwrap_or_else(|p| p.into_inner()).clear();
        });
    }

    fn forget(&self, id: u64) -> bool {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).remove(&id).is_some()
    }
}

async fn connect(socket: SocketRef, auth: Option<serde_json::Value>, sio: &Arc<SioMount>) -> Result<(), String> {
    let mount = &sio.mount;
    if socket.ns() != "/" {
        let mut namespaces = sio.namespaces.lock().unwrap_or_else(|p| p.into_inner());
        if !namespaces.contains(socket.ns()) {
            if namespaces.len() >= MAX_NAMESPACES {
                drop(namespaces);
                sio.io.delete_ns(socket.ns());
                return Err(format!("this server takes at most {MAX_NAMESPACES} namespaces"));
            }
            namespaces.insert(socket.ns().to_string());
        }
    }
    let id = mount.next_id();
    let parts = socket.req_parts();
    let remote_ip = super::client_ip(&parts.extensions);
    let (mut credentials, query) = crate::auth::http::credentials_and_query(&parts.headers, &parts.uri);
    let mut auth = match auth {
        Some(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    // The token apps put in the handshake (`io({auth: {token}})`) is a credential, not data for the plugin.
    if let Some(serde_json::Value::String(token)) = auth.remove("token")
        && credentials == Credentials::None
    {
        credentials = Credentials::Bearer(token);
    }
    let hello = Client {
        id,
        transport: Transport::SocketIo,
        namespace: socket.ns().to_string(),
        query: query.into_iter().filter(|(k, _)| !is_engine_io_param(k)).collect(),
        auth: serde_json::Value::Object(auth).to_string(),
        remote_ip,
        identity: None,
    };
    let client = Arc::new(SioClient {
        id,
        mount: Arc::downgrade(sio),
        socket: socket.clone(),
        acks: Mutex::new(HashMap::new()),
        pending: Mutex::new(Some(Vec::new())),
        budget: EventBudget::new(),
        is_registered: AtomicBool::new(false),
    });
    sio.clients.lock().unwrap_or_else(|p| p.into_inner()).insert(id, Arc::clone(&client));
    socket.extensions.insert(ClientKey { id, mount: Arc::downgrade(sio) });
    if let Err(refused) = mount.connect(hello, client, credentials).await {
        sio.forget(id);
        return Err(refused);
    }
    // Events are queued for the plugin by the `RawArgs` extractor, which socketioxide runs in the order packets
    // arrive (it runs each handler in a task of its own, so the order there is lost); the handler only keeps the
    // acknowledgement.
    socket.on_fallback(async |socket: SocketRef, RawArgs(ack): RawArgs, ack_sender: AckSender| {
        if let (Some(n), Some(client)) = (ack, socket.extensions.get::<ClientKey>().and_then(|k| k.client())) {
            client.keep_ack(n, ack_sender);
        }
    });
    let adapter = mount.adapter().clone();
    let weak = Arc::downgrade(sio);
    socket.on_disconnect(async move |reason: DisconnectReason| {
        if weak.upgrade().is_some_and(|sio| sio.forget(id)) {
            adapter.disconnected(id, reason.to_string()).await;
        }
    });
    // A transport that dies before socketioxide registers the socket gets no disconnect handler call.
    let adapter = mount.adapter().clone();
    let weak = Arc::downgrade(sio);
    tokio::spawn(async move {
        tokio::time::sleep(REGISTER_TIMEOUT).await;
        let Some(sio) = weak.upgrade() else { return };
        let client = sio.clients.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned();
        if client.is_some_and(|c| !c.is_registered.load(Ordering::Acquire)) && sio.forget(id) {
            adapter.disconnected(id, "the client never completed its connection".into()).await;
        }
    });
    Ok(())
}

fn close(socket: &SocketRef, id: u64, reason: &str) {
    tracing::debug!(connection = id, reason, "disconnecting a Socket.IO client");
    let _ = socket.clone().disconnect();
}

/// Engine.IO's own query parameters (`EIO`, `transport`, `sid`, and the cache-buster `t`) are not the app's.
fn is_engine_io_param(key: &str) -> bool {
    matches!(key, "EIO" | "transport" | "sid" | "t" | "j" | "b64")
}

/// Queues an event for the plugin, in arrival order (see `connect`), and yields its ack id for the handler.
struct RawArgs(Option<u64>);

#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("binary attachments are not supported by signaling plugins")]
    Binary,
    #[error("the event was not taken")]
    NotTaken,
}

impl FromMessageParts<socketioxide::adapter::LocalAdapter> for RawArgs {
    type Error = Refused;

    fn from_message_parts(s: &Arc<Socket>, v: &mut Value, ack_id: &Option<i64>) -> Result<Self, Refused> {
        let (Value::Str(text, None), Some(key)) = (&*v, s.extensions.get::<ClientKey>()) else {
            return Err(Refused::Binary);
        };
        let (Some(client), Some(sio)) = (key.client(), key.mount.upgrade()) else { return Err(Refused::NotTaken) };
        let socket = SocketRef::from(Arc::clone(s));
        if !client.budget.take() {
            close(&socket, client.id, "too many events: slow down");
            return Err(Refused::NotTaken);
        }
        let (name, args) = split_event(text);
        let ack = ack_id.and_then(|n| u64::try_from(n).ok());
        let event = Inbound::Event { connection: client.id, name, args, ack };
        if !sio.mount.adapter().offer(event) {
            close(&socket, client.id, "the signaling plugin is overloaded");
            return Err(Refused::NotTaken);
        }
        Ok(RawArgs(ack))
    }
}

/// `["name", a, b]` -> (`name`, `[a, b]`), the arguments re-joined so the plugin gets compact, valid JSON whatever
/// the client sent.
fn split_event(packet: &str) -> (String, String) {
    let Ok(values) = serde_json::from_str::<Vec<&serde_json::value::RawValue>>(packet) else {
        return (String::new(), "[]".to_string());
    };
    let Some((name, args)) = values.split_first() else { return (String::new(), "[]".to_string()) };
    let name = serde_json::from_str::<String>(name.get()).unwrap_or_default();
    let mut out = String::with_capacity(packet.len());
    out.push('[');
    for (i, v) in args.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(v.get());
    }
    out.push(']');
    (name, out)
}

/// One Socket.IO client, as the plugin host sends to it.
struct SioClient {
    id: u64,
    mount: Weak<SioMount>,
    socket: SocketRef,
    /// Acknowledgements, by id: the client's ack waiting for the plugin's answer, or the plugin's answer waiting
    /// for the handler that holds the client's ack (the two race: events reach the plugin before the handler runs).
    acks: Mutex<HashMap<u64, AckSlot>>,
    /// Messages sent while the socket was still connecting; `None` once connected.
    pending: Mutex<Option<Vec<Outgoing>>>,
    budget: EventBudget,
    /// socketioxide registered the socket (its connect completed).
    is_registered: AtomicBool,
}

enum AckSlot {
    Waiting(AckSender),
    Answered(Vec<Box<serde_json::value::RawValue>>),
}

/// Acks a client may leave waiting; older ones are dropped (their client gets no answer).
const MAX_PENDING_ACKS: usize = 256;

impl SioClient {
    fn keep_ack(&self, n: u64, ack: AckSender) {
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        match acks.remove(&n) {
            Some(AckSlot::Answered(args)) => {
                let _ = ack.send(&Args(&args));
            }
            _ => {
                if acks.len() >= MAX_PENDING_ACKS {
                    acks.clear();
                }
                acks.insert(n, AckSlot::Waiting(ack));
            }
        }
    }

    /// The socket is registered: what the plugin sent during `on-connect` goes out; a socket that closed in between
    /// is reported gone.
    async fn registered(&self, socket: &SocketRef) {
        self.is_registered.store(true, Ordering::Release);
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner()).take();
        for message in pending.into_iter().flatten() {
            let _ = self.emit(&message);
        }
        if !socket.connected()
            && let Some(sio) = self.mount.upgrade()
            && sio.forget(self.id)
        {
            sio.mount.adapter().disconnected(self.id, "the client left while connecting".into()).await;
        }
    }

    fn emit(&self, message: &Outgoing) -> Result<(), String> {
        let Outgoing::Event(event) = message else { return Err("a Socket.IO client takes events".into()) };
        let args = parse_args(&event.args)?;
        match self.socket.emit(&event.name, &Args(&args)) {
            Ok(()) => Ok(()),
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                let _ = self.socket.clone().disconnect();
                Err("the client is not reading: disconnected".into())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Outbound for SioClient {
    fn transport(&self) -> Transport {
        Transport::SocketIo
    }

    fn send(&self, message: &Outgoing) -> Result<(), String> {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(queue) = pending.as_mut() {
                if queue.len() >= CLIENT_QUEUE {
                    drop(pending);
                    self.close("too many messages before the client connected");
                    return Err("too many messages before the client connected: disconnected".into());
                }
                queue.push(message.clone());
                return Ok(());
            }
        }
        self.emit(message)
    }

    fn ack(&self, ack: u64, args: &str) -> Result<(), String> {
        let args = parse_args(args)?;
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        match acks.remove(&ack) {
            Some(AckSlot::Waiting(sender)) => sender.send(&Args(&args)).map_err(|e| e.to_string()),
            Some(AckSlot::Answered(_)) => Err(format!("acknowledgement {ack} was answered already")),
            None => {
                if acks.len() >= MAX_PENDING_ACKS {
                    return Err("too many acknowledgements waiting".into());
                }
                acks.insert(ack, AckSlot::Answered(args));
                Ok(())
            }
        }
    }

    fn close(&self, reason: &str) {
        tracing::debug!(reason, "disconnecting a Socket.IO client");
        let _ = self.socket.clone().disconnect();
    }

    fn restart(&self, _reason: &str) {
        if let Some(sio) = self.mount.upgrade() {
            sio.restart();
        }
    }
}

/// Arguments serialized as a tuple, which socketioxide sends as that many arguments (a `Vec` would be one); each is
/// written out as the plugin wrote it.
struct Args<'a>(&'a [Box<serde_json::value::RawValue>]);

impl serde::Serialize for Args<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        for v in self.0 {
            tuple.serialize_element(v)?;
        }
        tuple.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_name_is_cut_from_the_arguments() {
        let split = |p: &str| {
            let (name, args) = split_event(p);
            (name.as_str().to_owned(), args)
        };
        assert_eq!(
            split(r#"["join-room", {"roomId": "a"}, 3]"#),
            ("join-room".into(), r#"[{"roomId": "a"},3]"#.into())
        );
        assert_eq!(split(r#"["ping"]"#), ("ping".into(), "[]".into()));
        assert_eq!(split("not json"), (String::new(), "[]".into()));
    }

    #[test]
    fn arguments_serialize_as_a_tuple() {
        let args = crate::plugin::signaling::parse_args(r#"[{"a":1}, 2]"#).expect("args");
        assert!(socketioxide_core::parser::is_ser_tuple(&Args(&args)));
        assert_eq!(serde_json::to_string(&Args(&args)).expect("json"), r#"[{"a":1},2]"#);
    }
}
