//! The plain WebSocket transport: one text message in is one `on-message`, one `text` out is one message. The
//! upgrade is answered only after the plugin accepted the client (a refusal is an HTTP 403 with its reason), so an
//! app sees a failed connection rather than one that opens and closes.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt as _, StreamExt as _};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::MountContext;
use super::adapter::{AdapterHandle, Inbound};
use super::limits::{EventBudget, MAX_MESSAGE_BYTES, WEBSOCKET_IDLE, WEBSOCKET_PING};
use crate::plugin::signaling::{Client, Outbound, Outgoing, Transport};

/// Messages waiting to go to one client; past this the client is too slow and is disconnected.
const CLIENT_QUEUE: usize = 1024;

/// Answers an upgrade request on a WebSocket mount.
pub async fn serve(mut request: axum::extract::Request, mount: &MountContext) -> Response {
    let key = match upgrade_key(request.method(), request.headers()) {
        Ok(key) => key,
        Err(why) => return (StatusCode::UPGRADE_REQUIRED, [(header::UPGRADE, "websocket")], why).into_response(),
    };
    let remote_ip = super::client_ip(request.extensions());
    let (credentials, query) = crate::auth::http::credentials_and_query(request.headers(), request.uri());
    let id = mount.next_id();
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
    let (closing, closed) = watch::channel(None);
    let client = Arc::new(WsClient { tx, closing: Mutex::new(Some(closing)) });
    let hello = Client {
        id,
        transport: Transport::Websocket,
        namespace: mount.path.clone(),
        query,
        auth: "{}".to_string(),
        remote_ip,
        identity: None,
    };
    if let Err(reason) = mount.connect(hello, client.clone(), credentials).await {
        return super::refused(&reason);
    }
    let upgrade = hyper::upgrade::on(&mut request);
    let adapter = mount.adapter().clone();
    tokio::spawn(async move {
        let reason = match upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(MAX_MESSAGE_BYTES))
                    .max_frame_size(Some(MAX_MESSAGE_BYTES));
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                run(ws, id, rx, closed, &adapter).await
            }
            Err(e) => format!("the upgrade failed: {e}"),
        };
        drop(client);
        adapter.disconnected(id, reason).await;
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    response
}

/// The client's `Sec-WebSocket-Key`, if this is a WebSocket upgrade (RFC 6455 4.2.1).
fn upgrade_key(method: &Method, headers: &HeaderMap) -> Result<String, &'static str> {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if method != Method::GET || !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
        return Err("this path takes WebSocket connections\n");
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) != Some("13") {
        return Err("WebSocket version 13 is required\n");
    }
    match headers.get(header::SEC_WEBSOCKET_KEY).and_then(|v| v.to_str().ok()) {
        Some(key) if !key.trim().is_empty() => Ok(key.trim().to_string()),
        _ => Err("Sec-WebSocket-Key is missing\n"),
    }
}

/// Reads and writes one client until it leaves, misbehaves or is closed; returns why it ended.
async fn run<S>(
    mut ws: WebSocketStream<S>,
    id: u64,
    mut outgoing: mpsc::Receiver<Message>,
    mut closed: watch::Receiver<Option<Closing>>,
    adapter: &AdapterHandle,
) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let budget = EventBudget::new();
    let mut ping = tokio::time::interval(WEBSOCKET_PING);
    ping.tick().await;
    let idle = tokio::time::sleep(WEBSOCKET_IDLE);
    tokio::pin!(idle);
    let (code, reason) = loop {
        tokio::select! {
            incoming = ws.next() => {
                idle.as_mut().reset(tokio::time::Instant::now() + WEBSOCKET_IDLE);
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if !budget.take() {
                            break (CloseCode::Policy, "too many messages: slow down".to_string());
                        }
                        let message = Inbound::Message { connection: id, text: text.as_str().to_string() };
                        if !adapter.offer(message) {
                            break (CloseCode::Again, "the signaling plugin is overloaded".to_string());
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        break (CloseCode::Unsupported, "this endpoint takes text messages".to_string());
                    }
                    Some(Ok(Message::Close(_))) | None => return "the client closed the connection".to_string(),
                    Some(Ok(_)) => {} // pings are answered by the protocol layer; pongs only count as life
                    Some(Err(e)) => return format!("the connection failed: {e}"),
                }
            }
            message = outgoing.recv() => match message {
                Some(m) => if let Err(e) = ws.send(m).await {
                    return format!("the connection failed: {e}");
                },
                None => break (CloseCode::Normal, "closing".to_string()),
            },
            changed = closed.changed() => {
                let close = if changed.is_ok() { closed.borrow().clone() } else { None };
                break close.unwrap_or_else(|| (CloseCode::Normal, "closing".to_string()));
            }
            _ = ping.tick() => if ws.send(Message::Ping(Default::default())).await.is_err() {
                return "the connection failed".to_string();
            },
            () = &mut idle => break (CloseCode::Away, "no message or pong for 60 s".to_string()),
        }
    };
    // A close reason fits in a control frame (125 bytes, 2 of them the code).
    let mut cut = reason.len().min(120);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let frame = CloseFrame { code, reason: reason[..cut].to_string().into() };
    let _ = tokio::time::timeout(WEBSOCKET_PING, ws.close(Some(frame))).await;
    reason
}

/// Why the router closes a connection: the close frame's code and reason.
type Closing = (CloseCode, String);

/// One plain WebSocket client, as the plugin host sends to it.
struct WsClient {
    tx: mpsc::Sender<Message>,
    /// Tells the connection's task to close, with a code and a reason; taken by the first close.
    closing: Mutex<Option<watch::Sender<Option<Closing>>>>,
}

impl WsClient {
    fn close_with(&self, code: CloseCode, reason: &str) {
        if let Some(closing) = self.closing.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = closing.send(Some((code, reason.to_string())));
        }
    }
}

impl Outbound for WsClient {
    fn transport(&self) -> Transport {
        Transport::Websocket
    }

    fn send(&self, message: &Outgoing) -> Result<(), String> {
        let Outgoing::Text(text) = message else { return Err("a WebSocket client takes text".into()) };
        match self.tx.try_send(Message::text(text.as_str())) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close("the client is not reading");
                Err("the client is not reading: disconnected".into())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err("the client is gone".into()),
        }
    }

    fn ack(&self, _ack: u64, _args: &str) -> Result<(), String> {
        Err("plain WebSocket clients have no acknowledgements".into())
    }

    fn close(&self, reason: &str) {
        self.close_with(CloseCode::Normal, reason);
    }

    fn restart(&self, reason: &str) {
        self.close_with(CloseCode::Restart, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_websocket_upgrades_are_taken() {
        let mut h = HeaderMap::new();
        assert!(upgrade_key(&Method::GET, &h).is_err());
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        assert_eq!(upgrade_key(&Method::GET, &h), Err("Sec-WebSocket-Key is missing\n"));
        h.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(upgrade_key(&Method::GET, &h), Ok("dGhlIHNhbXBsZSBub25jZQ==".to_string()));
        assert!(upgrade_key(&Method::POST, &h).is_err());
        // RFC 6455's example key and answer.
        assert_eq!(derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
