//! MediaMTX's read-only v3 API, for the dashboards and scripts people already have (`[server] mediamtx_api`, on
//! its own port as MediaMTX's 9997): `/v3/paths/list`, `/v3/paths/get/{name}`, `/v3/config/global/get` and
//! `/v3/recordings/list`, in MediaMTX's JSON shapes, made from Sluice's own state. A route is a path; readers and
//! sources get MediaMTX's type names. Writes answer 405 and point to `/v1`, where Sluice's routes are edited.
//! Guarded like `/v1` (`[server] api_auth`).

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::config::model::{Output, RouteConfig, Source};
use crate::media::Codec;
use crate::route::{ReaderKind, RouteHandle, RouteState};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v3/paths/list", get(paths_list))
        .route("/v3/paths/get/{*name}", get(paths_get))
        .route("/v3/config/global/get", get(global))
        .route("/v3/recordings/list", get(recordings_list))
        .route("/v3/{*rest}", any(not_here))
        .fallback(any(not_here))
        .layer(axum::middleware::from_fn_with_state(state.clone(), super::auth::require_api))
        .layer(axum::middleware::from_fn(cors))
        .with_state(state)
}

/// Dashboards are pages of other origins: MediaMTX answers them with `Access-Control-Allow-Origin: *` (its
/// `apiAllowOrigin` default), preflights before any credentials are asked for. A wildcard origin never carries
/// cookies or a browser's remembered credentials: a page must send `Authorization` itself to get past auth.
async fn cors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::{HeaderValue, header};
    let preflight = request.method() == axum::http::Method::OPTIONS;
    let mut response = if preflight { StatusCode::NO_CONTENT.into_response() } else { next.run(request).await };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    if preflight {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("OPTIONS, GET"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type"));
    }
    response
}

/// MediaMTX's paging: `page` from 0, `itemsPerPage` (100 by default).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    page: Option<usize>,
    items_per_page: Option<usize>,
}

fn paged(items: Vec<Value>, page: &Page) -> Value {
    let per = page.items_per_page.unwrap_or(100).clamp(1, 10_000);
    let count = items.len();
    let page_count = count.div_ceil(per);
    let items: Vec<Value> = items.into_iter().skip(page.page.unwrap_or(0).saturating_mul(per)).take(per).collect();
    json!({ "pageCount": page_count, "itemCount": count, "items": items })
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn paths_list(State(state): State<AppState>, Query(page): Query<Page>) -> Response {
    let dir = state.runtime.directory();
    let mut items = Vec::with_capacity(dir.routes.len());
    for (config, handle) in &dir.routes {
        items.push(path(config, handle).await);
    }
    Json(paged(items, &page)).into_response()
}

async fn paths_get(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let dir = state.runtime.directory();
    match dir.routes.iter().find(|(c, _)| c.name.as_str() == name) {
        Some((config, handle)) => Json(path(config, handle).await).into_response(),
        None => error(StatusCode::NOT_FOUND, "path not found"),
    }
}

/// A route as a MediaMTX path.
async fn path(config: &RouteConfig, handle: &RouteHandle) -> Value {
    let Ok(live) = handle.snapshot().await else {
        return json!({ "name": config.name.as_str(), "confName": conf_name(config), "source": null, "ready": false,
            "readyTime": null, "tracks": [], "bytesReceived": 0, "bytesSent": 0, "readers": [] });
    };
    let ready = live.state == RouteState::Live;
    let ready_time = live.uptime_seconds.filter(|_| ready).map(|up| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        crate::media::wallclock::format_time(now.as_millis() as i64 - (up * 1000.0) as i64)
    });
    let source = live.source_running.then(|| json!({ "type": source_type(&config.from), "id": "" }));
    let readers: Vec<Value> = live
        .readers
        .iter()
        .flat_map(|r| {
            // A WebRTC reader fans out to its viewers: MediaMTX lists each session.
            let n = if r.kind == ReaderKind::Whep { r.viewers.max(1) } else { 1 };
            (0..n).map(move |i| json!({ "type": reader_type(r.kind), "id": format!("{}-{i}", r.id) }))
        })
        .collect();
    json!({
        "name": config.name.as_str(),
        "confName": conf_name(config),
        "source": source,
        "ready": ready,
        "readyTime": ready_time,
        "tracks": live.tracks.iter().map(|t| track_name(t.codec)).collect::<Vec<_>>(),
        "bytesReceived": live.bytes_in,
        "bytesSent": live.bytes_out,
        "readers": readers,
    })
}

/// The configuration entry a path comes from: its template for a route made from one.
fn conf_name(config: &RouteConfig) -> String {
    config.instance_of.as_ref().unwrap_or(&config.name).to_string()
}

fn source_type(from: &Source) -> &'static str {
    match from {
        Source::Demo => "sluiceDemo",
        Source::Publish { protocol } => match protocol.as_str() {
            "whip" => "webRTCSession",
            "rtmp" => "rtmpConn",
            "rtsp" => "rtspSession",
            _ => "publisher",
        },
        Source::Pull { url } if url.0.scheme().starts_with("rtsp") => "rtspSource",
        Source::Pull { .. } => "rtmpSource",
    }
}

fn reader_type(kind: ReaderKind) -> &'static str {
    match kind {
        ReaderKind::Whep => "webRTCSession",
        ReaderKind::Hls => "hlsMuxer",
        ReaderKind::Rtsp => "rtspSession",
        ReaderKind::Rtmp => "rtmpConn",
        ReaderKind::Record => "recorder",
        ReaderKind::Push => "push",
        ReaderKind::Api => "api",
    }
}

/// MediaMTX's track names.
fn track_name(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 => "H264",
        Codec::H265 => "H265",
        Codec::Vp8 => "VP8",
        Codec::Opus => "Opus",
        Codec::Aac => "MPEG-4 Audio",
        Codec::Pcmu | Codec::Pcma => "G711",
    }
}

async fn global(State(state): State<AppState>) -> Response {
    let dir = state.runtime.directory();
    let server = &dir.table.server;
    let routes = &dir.routes;
    let port = |a: std::net::SocketAddr| format!(":{}", a.port());
    let mut config = BTreeMap::new();
    config.insert("logLevel", json!("info"));
    config.insert("api", json!(true));
    config.insert("apiAddress", json!(server.mediamtx_api.map(port).unwrap_or_default()));
    config.insert("metrics", json!(true));
    config.insert("metricsAddress", json!(port(server.http)));
    config.insert("rtsp", json!(true));
    config.insert("rtspAddress", json!(port(server.rtsp)));
    config.insert("protocols", json!(["tcp", "udp"]));
    config.insert("rtmp", json!(true));
    config.insert("rtmpAddress", json!(port(server.rtmp)));
    config.insert("webrtc", json!(true));
    config.insert("webrtcAddress", json!(port(server.http)));
    config.insert("webrtcLocalUDPAddress", json!(port(server.webrtc.udp)));
    config.insert("hls", json!(false));
    config.insert("srt", json!(false));
    // Recordings play back through /v1/recordings, not MediaMTX's playback server.
    config.insert("playback", json!(false));
    let records = routes.iter().any(|(c, _)| c.to.iter().any(|o| matches!(o, Output::Record { .. })));
    config.insert("record", json!(records));
    config.insert(
        "sluice",
        json!({ "api": "/v1", "note": "a read-only view of Sluice's configuration in MediaMTX's shape" }),
    );
    Json(config).into_response()
}

async fn recordings_list(State(state): State<AppState>, Query(page): Query<Page>) -> Response {
    let recordings = match state.runtime.index.query(None, None, None).await {
        Ok(r) => r,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &format!("recordings index: {e}")),
    };
    let mut by_route: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in recordings {
        by_route
            .entry(r.route.clone())
            .or_default()
            .push(json!({ "start": crate::media::wallclock::format_time(r.start_ms) }));
    }
    let items = by_route.into_iter().map(|(name, segments)| json!({ "name": name, "segments": segments })).collect();
    Json(paged(items, &page)).into_response()
}

/// Everything else: writes (`/v3/config/...`, kicks) and calls this view does not answer.
async fn not_here(method: axum::http::Method) -> Response {
    let (status, message) = if method == axum::http::Method::GET {
        (StatusCode::NOT_FOUND, "not available in Sluice's MediaMTX view: see /v1 on the HTTP port")
    } else {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "read-only: Sluice's MediaMTX view does not change anything; edit routes through /v1/routes on the HTTP port or in routes.toml",
        )
    };
    error(status, message)
}
