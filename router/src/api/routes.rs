//! `/v1/status`, `/v1/reload` and `/v1/routes`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::config::model::{Output, RouteConfig};
use crate::egress::push::PushStatus;
use crate::route::{RouteHandle, RouteSnapshot, RouteState};
use crate::runtime::Directory;
use crate::runtime::{ReloadOutcome, ReloadResult, ReloadTrigger};
use crate::webrtc::SessionInfo;

#[derive(Debug, Serialize)]
pub struct RouteView {
    pub name: String,
    /// The template this route was made from (`live/*`), for routes made when first published to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    pub config: Arc<RouteConfig>,
    /// `None` only if the route ended between listing and asking (a reload removed it).
    pub live: Option<RouteSnapshot>,
    /// WHIP publisher and WHEP viewers of this route, with their traffic, loss and RTT.
    pub webrtc_sessions: Vec<SessionInfo>,
    /// Push outputs (`to = ["rtmp://..."]`): state, attempts, last error.
    pub pushes: Vec<PushStatus>,
    /// Recordings of this route (from `to` or started through the API).
    pub recordings: Vec<crate::egress::record::RecordingStatus>,
    /// What keeps readers of this route from getting what they expect, each with what to do about it; the viewer
    /// page and the UI show them.
    pub warnings: Vec<String>,
}

/// The warnings of a route, from its configuration, its live state and its recordings.
pub fn warnings(
    config: &RouteConfig,
    live: Option<&RouteSnapshot>,
    recordings: &[crate::egress::record::RecordingStatus],
) -> Vec<String> {
    let mut out = Vec::new();
    let whep = config.to.contains(&Output::Whep);
    if let Some(live) = live {
        if whep && live.reordered_video {
            out.push(
                "the video has B-frames (frames out of order), which WebRTC viewers cannot play: they freeze after a \
                 frame or two. Publish without B-frames (ffmpeg: -bf 0, or -profile:v baseline; OBS: profile \
                 \"baseline\" or B-frames 0)"
                    .to_string(),
            );
        }
        if whep && let Some(why) = live.tracks.iter().find_map(|t| t.opus_refusal.as_deref()) {
            out.push(format!(
                "the audio is AAC that cannot be transcoded to Opus for WebRTC: {why}. WHEP viewers get the video \
                 only; publish AAC-LC (mono or stereo) or Opus for sound in browsers. RTMP and RTSP players and \
                 recordings get the audio as it is"
            ));
        }
        out.extend(recordings_waiting(live, recordings));
    }
    out
}

/// What each recording that has not begun waits for, when the route has no media yet (nothing while it is live).
pub fn recordings_waiting(live: &RouteSnapshot, recordings: &[crate::egress::record::RecordingStatus]) -> Vec<String> {
    let why = match (live.state, &live.last_error) {
        (RouteState::Live, _) => return Vec::new(),
        (RouteState::Unavailable, Some(e)) => format!("the route is unavailable ({e}); it will not start"),
        (RouteState::Waiting, _) => {
            "the route has no media yet (no publisher, or the source is connecting)".to_string()
        }
        (state, Some(e)) => format!("the route is {} ({e})", state.as_str()),
        (state, None) => format!("the route is {}", state.as_str()),
    };
    recordings
        .iter()
        .filter(|r| r.state == "starting")
        .map(|r| format!("recording with \"{}\" starts at the route's first keyframe: {why}", r.plugin))
        .collect()
}

pub async fn view(
    dir: &Directory,
    config: &Arc<RouteConfig>,
    handle: &RouteHandle,
    sessions: &[SessionInfo],
) -> RouteView {
    let live = handle.snapshot().await.ok();
    let recordings: Vec<_> = dir
        .recordings
        .iter()
        .filter(|(r, _)| *r == config.name)
        .map(|(_, s)| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .collect();
    RouteView {
        warnings: warnings(config, live.as_ref(), &recordings),
        pushes: dir
            .pushes
            .iter()
            .filter(|(r, _)| *r == config.name)
            .filter_map(|(_, s)| s.lock().ok().map(|s| s.clone()))
            .collect(),
        recordings,
        name: config.name.to_string(),
        template: config.instance_of.as_ref().map(ToString::to_string),
        config: Arc::clone(config),
        live,
        webrtc_sessions: sessions.iter().filter(|s| s.route == config.name.as_str()).cloned().collect(),
    }
}

/// `GET /v1/routes`, with the routes file's `ETag` (what `If-Match` on a change names).
pub async fn list(State(state): State<AppState>) -> Response {
    let dir = state.runtime.directory();
    let sessions = state.webrtc.stats().await.sessions;
    let views = join_all(dir.routes.iter().map(|(c, h)| view(&dir, c, h, &sessions))).await;
    with_etag(&dir, Json(views).into_response()).await
}

pub async fn show(State(state): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let dir = state.runtime.directory();
    let (config, handle) = dir.route(&name).ok_or_else(|| ApiError::route_not_found(&name))?;
    let sessions = state.webrtc.stats().await.sessions;
    let view = view(&dir, config, handle, &sessions).await;
    Ok(with_etag(&dir, Json(view).into_response()).await)
}

async fn with_etag(dir: &Directory, mut response: Response) -> Response {
    if let Some(etag) = super::route_edits::current_etag(&dir.config_path).await {
        response.headers_mut().insert(axum::http::header::ETAG, etag);
    }
    response
}

pub async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    let dir = state.runtime.directory();
    let snapshots = join_all(dir.routes.iter().map(|(_, h)| h.snapshot())).await;
    let live = snapshots.iter().filter(|s| s.as_ref().is_ok_and(|s| s.state == crate::route::RouteState::Live)).count();
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "config_path": dir.config_path,
        "config_valid": dir.config_error.is_none(),
        "config_error": dir.config_error.as_ref().map(|e| serde_json::json!({ "message": e.to_string(), "errors": e })),
        "last_reload": dir.last_reload,
        "reloads": { "applied": dir.reloads_applied, "rejected": dir.reloads_rejected },
        "routes": { "total": dir.routes.len(), "live": live },
        "server": dir.table.server,
        // What a phone user compares with what their browser shows before accepting a self-signed certificate.
        "tls": state.tls.as_ref().map(|t| serde_json::json!({
            "fingerprint": t.fingerprint(),
            "self_signed": t.generated(),
            "cert": t.cert_path(),
        })),
    }))
}

/// `POST /v1/reload`: 200 with what changed, or 422 with the file's errors (the old configuration stays).
pub async fn reload(State(state): State<AppState>) -> Result<Json<ReloadOutcome>, ApiError> {
    let outcome = state.runtime.reload(ReloadTrigger::Api).await.ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the router is shutting down")
    })?;
    match &outcome.result {
        ReloadResult::Applied { .. } => Ok(Json(outcome)),
        ReloadResult::Rejected { errors, message } => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            format!("the routes file is invalid; still running the previous configuration:\n{message}"),
        )
        .with_details(serde_json::json!({ "errors": errors }))),
    }
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

pub async fn unknown_api(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no API endpoint {method} {}", uri.path()))
}
