//! Signaling: the transports apps already speak (Socket.IO, plain WebSocket JSON) on the HTTP listener, each
//! mount feeding one signaling plugin through its adapter.
//!
//! A `[plugins.NAME]` with `mount = "/socket.io/"` is served at that path. [`Signaling`] follows the runtime's
//! directory: a mount appears when its plugin loads, and a plugin replaced by a reload (new bytes or config) gets
//! a fresh adapter, its old clients disconnected (Socket.IO clients reconnect by themselves, to the new version).
//! [`dispatch`] sits in front of the HTTP router and hands requests under a mount to its transport.
//!
//! - `adapter.rs`: the thread that owns a plugin's instance and carries out what it asks for.
//! - `socketio.rs`, `websocket.rs`: the transports; `limits.rs`: message size and rate per client.

pub mod adapter;
pub mod limits;
pub mod socketio;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::ServiceExt as _;

use crate::auth::{Action, Credentials, Outcome, Protocol};
use crate::config::model::SignalTransport;
use crate::plugin::LoadedPlugin;
use crate::plugin::signaling::{Client, HttpRequest, Outbound};
use crate::runtime::{Directory, Runtime};
use crate::webrtc::WebRtc;
use adapter::{AdapterHandle, Services};

/// The signaling mounts of the router. Cheap to clone.
#[derive(Clone)]
pub struct Signaling {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Signaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mounts = self.mounts();
        f.debug_struct("Signaling").field("mounts", &mounts.iter().map(|m| &m.ctx.path).collect::<Vec<_>>()).finish()
    }
}

struct Inner {
    mounts: RwLock<Arc<Vec<Arc<Mount>>>>,
    services: Services,
    /// Client numbers, unique across every mount of this router.
    ids: Arc<AtomicU64>,
    /// The Socket.IO browser client, served under every Socket.IO mount.
    client_bundle: Option<&'static [u8]>,
}

/// One mounted plugin.
struct Mount {
    loaded: Arc<LoadedPlugin>,
    ctx: Arc<MountContext>,
    transport: MountTransport,
}

enum MountTransport {
    /// The service, and the server its handlers hold weakly (so it lives here, as long as the mount).
    SocketIo {
        service: socketio::Service,
        server: Arc<socketio::SioMount>,
    },
    WebSocket,
}

/// What a transport needs to admit a client into its mount.
#[derive(Debug)]
pub struct MountContext {
    pub path: String,
    /// The prefix of the plugin's own HTTP endpoints (no trailing '/').
    http: Option<String>,
    auth: Option<String>,
    adapter: AdapterHandle,
    services: Services,
    ids: Arc<AtomicU64>,
}

impl MountContext {
    /// Asks the mount's auth plugin (when it has one) about the client, then the signaling plugin.
    pub async fn connect(
        &self,
        mut client: Client,
        outbound: Arc<dyn Outbound>,
        credentials: Credentials,
    ) -> Result<(), String> {
        client.identity = self.authorize(&client.remote_ip, &client.query, &credentials).await?;
        self.adapter.connect(client, outbound, credentials).await
    }

    /// The mount's auth plugin's answer for a client: who it is (`None` when the mount has no auth plugin).
    async fn authorize(
        &self,
        remote_ip: &str,
        query: &[(String, String)],
        credentials: &Credentials,
    ) -> Result<Option<String>, String> {
        let Some(plugin) = &self.auth else { return Ok(None) };
        let request = crate::auth::request(
            Action::Read,
            Protocol::Http,
            "",
            self.path.clone(),
            remote_ip.parse().ok(),
            query.to_vec(),
            credentials.clone(),
        );
        match self.services.runtime.admission.authorize(Some(plugin), request).await {
            Outcome::Allowed { identity } => Ok(identity),
            refused => Err(refused.describe()),
        }
    }

    /// Serves a request to the plugin's HTTP endpoints.
    async fn serve_http(&self, request: Request) -> Response {
        let prefix = self.http.as_deref().unwrap_or_default();
        use axum::http::{Method, header};
        let cors = [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "Content-Type, Authorization"),
        ];
        if request.method() == Method::OPTIONS {
            return (StatusCode::NO_CONTENT, cors).into_response();
        }
        let remote_ip = client_ip(request.extensions());
        let (credentials, query) = crate::auth::http::credentials_and_query(request.headers(), request.uri());
        let identity = match self.authorize(&remote_ip, &query, &credentials).await {
            Ok(identity) => identity,
            Err(reason) => return refused(&reason),
        };
        let method = request.method().to_string();
        let path = request.uri().path().strip_prefix(prefix).unwrap_or("").to_string();
        let body = match axum::body::to_bytes(request.into_body(), MAX_HTTP_BODY).await {
            Ok(b) => b,
            Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the body exceeds 64 KiB"),
        };
        let Ok(body) = String::from_utf8(body.to_vec()) else {
            return error(StatusCode::BAD_REQUEST, "bad_body", "the body is not UTF-8");
        };
        let request = HttpRequest { method, path, query, body, remote_ip, identity };
        match self.adapter.http(request).await {
            Ok(response) => {
                let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let json = [(header::CONTENT_TYPE, "application/json")];
                (status, cors, json, response.body).into_response()
            }
            Err(reason) => error(StatusCode::SERVICE_UNAVAILABLE, "signaling_unavailable", &reason),
        }
    }

    pub fn adapter(&self) -> &AdapterHandle {
        &self.adapter
    }

    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

impl Signaling {
    /// Mounts the signaling plugins of the runtime's configuration and follows its reloads. `client_bundle` is the
    /// Socket.IO browser client (`web/vendor`), served at `MOUNT/socket.io.js`.
    pub fn start(runtime: Runtime, webrtc: WebRtc, client_bundle: Option<&'static [u8]>) -> Signaling {
        let services = Services { runtime: runtime.clone(), webrtc };
        let ids = Arc::new(AtomicU64::new(1));
        let signaling =
            Signaling { inner: Arc::new(Inner { mounts: RwLock::default(), services, ids, client_bundle }) };
        let mut directories = runtime.subscribe();
        signaling.sync(&directories.borrow_and_update());
        let weak = Arc::downgrade(&signaling.inner);
        tokio::spawn(async move {
            while directories.changed().await.is_ok() {
                let Some(inner) = weak.upgrade() else { return };
                let directory = Arc::clone(&directories.borrow_and_update());
                Signaling { inner }.sync(&directory);
            }
        });
        signaling
    }

    fn mounts(&self) -> Arc<Vec<Arc<Mount>>> {
        Arc::clone(&self.inner.mounts.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Brings the mounts in line with `directory`'s plugins: unchanged ones stay (with their clients), new and
    /// replaced ones start, the others stop.
    fn sync(&self, directory: &Directory) {
        let old = self.mounts();
        let mut mounts = Vec::new();
        for (name, loaded) in directory.plugins.iter() {
            let Some(mount) = &loaded.config.mount else { continue };
            if let Some(kept) = old.iter().find(|m| Arc::ptr_eq(&m.loaded, loaded)) {
                mounts.push(Arc::clone(kept));
                continue;
            }
            if loaded.plugin.as_signaling().is_none() {
                tracing::error!(plugin = %name, "`mount` is set but the plugin is not a signaling plugin; not mounted");
                continue;
            }
            let adapter = match adapter::start(Arc::clone(loaded), mount.path.clone(), self.inner.services.clone()) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(plugin = %name, error = %e, "cannot start the signaling plugin's thread");
                    continue;
                }
            };
            let ctx = Arc::new(MountContext {
                path: mount.path.clone(),
                http: mount.http.clone(),
                auth: mount.auth.clone(),
                adapter,
                services: self.inner.services.clone(),
                ids: Arc::clone(&self.inner.ids),
            });
            let transport = match mount.transport {
                SignalTransport::SocketIo => {
                    let (service, server) = socketio::serve(Arc::clone(&ctx));
                    MountTransport::SocketIo { service, server }
                }
                SignalTransport::WebSocket => MountTransport::WebSocket,
            };
            tracing::info!(plugin = %name, path = %mount.path, transport = ?mount.transport, "signaling mounted");
            mounts.push(Arc::new(Mount { loaded: Arc::clone(loaded), ctx, transport }));
        }
        for gone in old.iter().filter(|m| !mounts.iter().any(|n| Arc::ptr_eq(n, m))) {
            tracing::info!(path = %gone.ctx.path, "signaling mount replaced or removed; its clients are disconnected");
            gone.ctx.adapter.stop();
            if let MountTransport::SocketIo { server, .. } = &gone.transport {
                server.shut_down();
            }
        }
        *self.inner.mounts.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(mounts);
    }

    /// Each mount's plugin, path and connected clients (for `/metrics`).
    pub fn stats(&self) -> Vec<(String, String, usize)> {
        self.mounts()
            .iter()
            .map(|m| (m.loaded.config.name.clone(), m.ctx.path.clone(), m.ctx.adapter.clients()))
            .collect()
    }

    /// The mount a path belongs to, and whether it is under the mount's `http` prefix (else its transport's).
    fn mount_for(&self, path: &str) -> Option<(Arc<Mount>, bool)> {
        let under = |prefix: &str| path == prefix || path.strip_prefix(prefix).is_some_and(|r| r.starts_with('/'));
        self.mounts().iter().find_map(|m| {
            if m.ctx.http.as_deref().is_some_and(under) {
                return Some((Arc::clone(m), true));
            }
            under(m.ctx.path.trim_end_matches('/')).then(|| (Arc::clone(m), false))
        })
    }
}

/// Middleware: requests under a signaling mount go to its transport (or its plugin's HTTP endpoints); the rest on
/// to the router.
pub async fn dispatch(State(signaling): State<Signaling>, request: Request, next: Next) -> Response {
    let Some((mount, http)) = signaling.mount_for(request.uri().path()) else { return next.run(request).await };
    if http {
        return mount.ctx.serve_http(request).await;
    }
    match &mount.transport {
        // Node's Socket.IO server serves its browser client under the mount, and apps load it from there.
        MountTransport::SocketIo { .. }
            if let Some(js) = signaling.inner.client_bundle
                && ["socket.io.js", "socket.io.min.js"]
                    .iter()
                    .any(|f| request.uri().path().strip_prefix(mount.ctx.path.as_str()) == Some(f)) =>
        {
            ([(axum::http::header::CONTENT_TYPE, "text/javascript; charset=utf-8")], js).into_response()
        }
        MountTransport::SocketIo { service, .. } => match service.clone().oneshot(request).await {
            Ok(response) => response.map(Body::new),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("signaling failed: {e}\n")).into_response(),
        },
        MountTransport::WebSocket => websocket::serve(request, &mount.ctx).await,
    }
}

/// The client's address as plugins see it (`192.0.2.7`, an IPv4-mapped IPv6 address unmapped): the peer's, or
/// behind a trusted proxy the one it names (the listener put it in `ConnectInfo`).
pub fn client_ip(extensions: &axum::http::Extensions) -> String {
    let remote = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    remote.map(|ip| ip.to_canonical().to_string()).unwrap_or_default()
}

/// A client the mount refused: 403 with the reason (what a plain WebSocket client sees instead of an upgrade).
pub fn refused(reason: &str) -> Response {
    error(StatusCode::FORBIDDEN, "signaling_refused", reason)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": code, "message": message }))).into_response()
}

/// The largest body the plugin's HTTP endpoints take.
const MAX_HTTP_BODY: usize = 64 << 10;
