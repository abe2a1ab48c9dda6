//! The Socket.IO transport: socketioxide (Socket.IO v5 over Engine.IO v4, long-polling with the upgrade to
//! WebSocket, acks, namespaces, heartbeats) serving one mount, every event handed to the mount's adapter.
//!
//! Every namespace is accepted and the plugin decides: its `on-connect` sees the namespace, the handshake's `auth`
//! payload, the query and the client's address, and an error there is the client's `connect_error`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use serde::ser::{SerializeTuple, Serializer};
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
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
    let sio = Arc::new(SioMount { io, mount, restarting: AtomicBool::new(false) });
    sio.install();
    (service, sio)
}

/// One mount's Socket.IO server, for what concerns all its clients at once.
pub struct SioMount {
    io: SocketIo,
    mount: Arc<MountContext>,
    /// Set while a restart closes every connection.
    restarting: AtomicBool,
}

impl std::fmt::Debug for SioMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SioMount").field("path", &self.mount.path).finish_non_exhaustive()
    }
}

impl SioMount {
    /// Accepts every namespace, each client handed to the mount's plugin.
    fn install(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let on_connect =
            async move |socket: SocketRef, TryData(auth): TryData<serde_json::Value>| -> Result<(), String> {
                let sio = weak.upgrade().ok_or_else(|| "this signaling mount was removed".to_string())?;
                connect(socket, auth.ok(), &sio).await
            };
        let handler = async |socket: SocketRef| {
            // The plugin may have sent the client something from its `on-connect`, before the socket could take it.
            if let Some(client) = socket.extensions.get::<Arc<SioClient>>() {
                client.flush_pending();
            }
        };
        self.io.ns("/", handler.with(on_connect.clone()));
        // Any other namespace goes to the plugin too, which sees its name.
        if let Err(e) = self.io.dyn_ns("/{*namespace}", handler.with(on_connect)) {
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
            sio.install();
            sio.restarting.store(false, Ordering::Release);
        });
    }
}

async fn connect(socket: SocketRef, auth: Option<serde_json::Value>, sio: &Arc<SioMount>) -> Result<(), String> {
    let mount = &sio.mount;
    let id = mount.next_id();
    let parts = socket.req_parts();
    let remote = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
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
        remote_ip: remote.map(|ip| ip.to_canonical().to_string()).unwrap_or_default(),
        identity: None,
    };
    let client = Arc::new(SioClient {
        mount: Arc::clone(sio),
        socket: socket.clone(),
        acks: Mutex::new(HashMap::new()),
        pending: Mutex::new(Some(Vec::new())),
    });
    socket.extensions.insert(Arc::clone(&client));
    mount.connect(hello, client, credentials).await?;
    let budget = Arc::new(EventBudget::new());
    let events = mount.adapter().clone();
    let adapter = mount.adapter().clone();
    socket.on_fallback(
        async move |socket: SocketRef, Event(name): Event, RawArgs(args, ack_id): RawArgs, ack: AckSender| {
            if !budget.take() {
                close(&socket, id, "too many events: slow down");
                return;
            }
            let ack_id = ack_id.and_then(|n| u64::try_from(n).ok());
            if let (Some(n), Some(client)) = (ack_id, socket.extensions.get::<Arc<SioClient>>()) {
                client.keep_ack(n, ack);
            }
            if !events.offer(Inbound::Event { connection: id, name, args, ack: ack_id }) {
                close(&socket, id, "the signaling plugin is overloaded");
            }
        },
    );
    socket.on_disconnect(async move |reason: DisconnectReason| {
        adapter.disconnected(id, reason.to_string()).await;
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

/// An event's arguments as the client sent them (a JSON array without the event name), and its ack id.
struct RawArgs(String, Option<i64>);

#[derive(Debug, thiserror::Error)]
#[error("binary attachments are not supported by signaling plugins")]
struct BinaryArgs;

impl FromMessageParts<socketioxide::adapter::LocalAdapter> for RawArgs {
    type Error = BinaryArgs;

    fn from_message_parts(_: &Arc<Socket>, v: &mut Value, ack_id: &Option<i64>) -> Result<Self, BinaryArgs> {
        match v {
            Value::Str(text, None) => Ok(RawArgs(without_event_name(text), *ack_id)),
            _ => Err(BinaryArgs),
        }
    }
}

/// `["name", a, b]` -> `[a, b]`, re-serialized so the plugin gets compact, valid JSON whatever the client sent.
fn without_event_name(packet: &str) -> String {
    match serde_json::from_str::<Vec<&serde_json::value::RawValue>>(packet) {
        Ok(values) if !values.is_empty() => {
            let mut out = String::with_capacity(packet.len());
            out.push('[');
            for (i, v) in values[1..].iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(v.get());
            }
            out.push(']');
            out
        }
        _ => "[]".to_string(),
    }
}

/// One Socket.IO client, as the plugin host sends to it.
struct SioClient {
    mount: Arc<SioMount>,
    socket: SocketRef,
    /// Acknowledgements the client asked for and the plugin has not answered yet.
    acks: Mutex<HashMap<u64, AckSender>>,
    /// Messages sent while the socket was still connecting; `None` once connected.
    pending: Mutex<Option<Vec<Outgoing>>>,
}

/// Acks a client may leave waiting; older ones are dropped (their client gets no answer).
const MAX_PENDING_ACKS: usize = 256;

impl SioClient {
    fn keep_ack(&self, n: u64, ack: AckSender) {
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        if acks.len() >= MAX_PENDING_ACKS {
            acks.clear();
        }
        acks.insert(n, ack);
    }

    fn flush_pending(&self) {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner()).take();
        for message in pending.into_iter().flatten() {
            let _ = self.emit(&message);
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
                    return Err("too many messages before the client connected".into());
                }
                queue.push(message.clone());
                return Ok(());
            }
        }
        self.emit(message)
    }

    fn ack(&self, ack: u64, args: &str) -> Result<(), String> {
        let sender = self.acks.lock().unwrap_or_else(|p| p.into_inner()).remove(&ack);
        let sender = sender.ok_or_else(|| format!("no pending acknowledgement {ack}"))?;
        let args = parse_args(args)?;
        sender.send(&Args(&args)).map_err(|e| e.to_string())
    }

    fn close(&self, reason: &str) {
        tracing::debug!(reason, "disconnecting a Socket.IO client");
        let _ = self.socket.clone().disconnect();
    }

    fn restart(&self, _reason: &str) {
        self.mount.restart();
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
        assert_eq!(without_event_name(r#"["join-room", {"roomId": "a"}, 3]"#), r#"[{"roomId": "a"},3]"#);
        assert_eq!(without_event_name(r#"["ping"]"#), "[]");
        assert_eq!(without_event_name("not json"), "[]");
    }

    #[test]
    fn arguments_serialize_as_a_tuple() {
        let args = crate::plugin::signaling::parse_args(r#"[{"a":1}, 2]"#).expect("args");
        assert!(socketioxide_core::parser::is_ser_tuple(&Args(&args)));
        assert_eq!(serde_json::to_string(&Args(&args)).expect("json"), r#"[{"a":1},2]"#);
    }
}
