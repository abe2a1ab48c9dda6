//! The HTTP side: `/v1` REST API, `/metrics`, `/healthz` and the embedded browser UI.
//!
//! Handlers are thin: they read the runtime's [`Directory`](crate::runtime::Directory) or message a route actor,
//! and every error leaves as [`ApiError`]'s one JSON shape.

pub mod accounts;
pub mod auth;
pub mod error;
pub mod forwarded;
pub mod hls;
pub mod mediamtx;
pub mod metrics;
pub mod origin;
pub mod recordings;
pub mod route_edits;
pub mod route_paths;
pub mod routes;
pub mod serve;
pub mod tap;
pub mod tls;
pub mod web;
pub mod webrtc;

use std::time::Instant;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path};
use axum::routing::{get, patch, post};

pub use error::ApiError;

use crate::egress::hls::media::Flavor;
use crate::runtime::Runtime;
use crate::webrtc::WebRtc;
use webrtc::Side;

#[derive(Debug, Clone)]
pub struct AppState {
    pub runtime: Runtime,
    pub webrtc: WebRtc,
    pub started: Instant,
    /// The TCP connection caps every listener shares (for /metrics).
    pub connections: std::sync::Arc<crate::connections::Connections>,
    /// The signaling mounts (Socket.IO and WebSocket paths served by signaling plugins).
    pub signaling: crate::signal::Signaling,
    /// Users, cameras and sessions, when routes.toml has `[accounts]` (at start).
    pub accounts: Option<crate::accounts::Accounts>,
    /// The HTTPS listener's certificate, when `[server] https` is set (its fingerprint is shown in /v1/status).
    pub tls: Option<std::sync::Arc<tls::Tls>>,
    /// Every route's HLS muxer.
    pub hls: crate::egress::hls::Hls,
}

pub fn router(state: AppState) -> Router {
    // `[server] api_auth` guards the REST API; WHIP/WHEP check their route's own auth.
    let api = Router::new()
        .route("/v1/status", get(routes::status))
        .route("/v1/reload", post(routes::reload))
        .route("/v1/routes", get(routes::list).post(route_edits::add).patch(route_edits::batch))
        .route("/v1/routes/{name}", get(routes::show).patch(route_edits::update).delete(route_edits::delete))
        .route("/v1/routes/{name}/frames", get(tap::frames))
        .route("/v1/routes/{name}/record", post(recordings::record))
        .route("/v1/recordings", get(recordings::list))
        .route("/v1/recordings/download", get(recordings::download))
        .route("/v1/recordings/{id}/file", get(recordings::file))
        .route("/v1/{*rest}", axum::routing::any(routes::unknown_api))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_api))
        .route_layer(axum::middleware::from_fn(origin::same_origin_writes));
    // Accounts, cameras and sessions (`[accounts]`): their own logins, not `api_auth`.
    let accounts = Router::new()
        .route("/api/auth/register", post(accounts::register))
        .route("/api/auth/login", post(accounts::login))
        .route("/api/auth/me", get(accounts::me))
        .route("/api/cameras", get(accounts::list).post(accounts::create))
        .route("/api/cameras/{id}", get(accounts::show).put(accounts::update).delete(accounts::delete))
        .route("/api/cameras/{id}/stream", get(accounts::stream))
        .route("/api/cameras/{id}/key", post(accounts::new_key))
        .route("/api/cameras/{id}/sessions", get(accounts::sessions));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(accounts)
        .route("/metrics", get(metrics::metrics))
        .merge(api)
        .route(
            "/{route}/whep",
            post(|s, Path(r): Path<String>, ConnectInfo(a): ConnectInfo<SocketAddr>, u, h, b| {
                webrtc::offer(s, Side::Whep, r, a, u, h, b)
            })
            .options(webrtc::options),
        )
        .route(
            "/{route}/whip",
            post(|s, Path(r): Path<String>, ConnectInfo(a): ConnectInfo<SocketAddr>, u, h, b| {
                webrtc::offer(s, Side::Whip, r, a, u, h, b)
            })
            .options(webrtc::options),
        )
        .route(
            "/{route}/index.m3u8",
            get(|s, r, c, u, h| hls::multivariant(s, r, c, u, h, Flavor::LowLatency)).options(hls::options),
        )
        .route(
            "/{route}/plain.m3u8",
            get(|s, r, c, u, h| hls::multivariant(s, r, c, u, h, Flavor::Plain)).options(hls::options),
        )
        .route("/{route}/stream.m3u8", get(hls::media_playlist).options(hls::options))
        .route("/{route}/{file}", get(hls::file).options(hls::options))
        .route("/{route}/{side}/{id}", patch(webrtc::patch).delete(webrtc::delete).options(webrtc::options))
        .route("/{route}", get(webrtc::route_page))
        .route("/{route}/publish", get(webrtc::publish_page))
        .layer(DefaultBodyLimit::max(crate::webrtc::MAX_SDP_BYTES))
        .fallback(web::serve)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state.clone());
    // Route names with segments are joined before `app` routes (a layer on `app` would run after its routing).
    // Signaling mounts come first, with their paths as sent: they are the plugins', whatever a route would match.
    Router::new()
        .fallback_service(tower::ServiceExt::map_request(app, route_paths::rewrite))
        .layer(axum::middleware::from_fn_with_state(state.signaling.clone(), crate::signal::dispatch))
        .layer(axum::middleware::from_fn_with_state(state.clone(), serve::limit_body_time))
}
