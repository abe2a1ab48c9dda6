//! WHIP (RFC 9725) and WHEP endpoints: `POST /{route}/whip|whep` with an SDP offer, `PATCH` for trickle ICE,
//! `DELETE` to end, `OPTIONS` for CORS and the ICE servers; and the viewer/publisher pages.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::admit::Wants;
use crate::auth::Protocol;
use crate::config::model::{Output, PublishProtocol};
use crate::egress::whep;
use crate::ingest::whip;
use crate::route::RouteError;
use crate::webrtc::session::RoleKind;
use crate::webrtc::{MAX_SDP_BYTES, SessionRef, WebRtcError};

/// Which side of WebRTC an endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Whip,
    Whep,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Whip => "whip",
            Side::Whep => "whep",
        }
    }
}

const CORS_METHODS: &str = "OPTIONS, POST, PATCH, DELETE";
const CORS_HEADERS: &str = "Content-Type, Authorization, If-Match";
const CORS_EXPOSE: &str = "Location, ETag, Link, Accept-Post";

fn cors(headers: &mut HeaderMap) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(CORS_METHODS));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(CORS_HEADERS));
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(CORS_EXPOSE));
}

fn with_cors(mut response: Response) -> Response {
    cors(response.headers_mut());
    response
}

/// `Link: <stun:...>; rel="ice-server"` per configured STUN/TURN server (RFC 9725 4.6).
fn ice_server_links(state: &AppState, headers: &mut HeaderMap) {
    for s in &state.runtime.directory().table.server.webrtc.ice_servers {
        let mut link = format!("<{}>; rel=\"ice-server\"", s.url);
        if let (Some(user), Some(cred)) = (&s.username, &s.credential) {
            link.push_str(&format!("; username=\"{user}\"; credential=\"{cred}\"; credential-type=\"password\""));
        }
        if let Ok(v) = HeaderValue::from_str(&link) {
            headers.append(header::LINK, v);
        }
    }
}

fn webrtc_error(e: WebRtcError) -> ApiError {
    match e {
        WebRtcError::BadOffer(_) => ApiError::new(StatusCode::BAD_REQUEST, "bad_sdp", e.to_string()),
        WebRtcError::NoCommonCodec(_) => ApiError::new(StatusCode::NOT_ACCEPTABLE, "no_common_codec", e.to_string()),
        WebRtcError::SessionNotFound => ApiError::new(StatusCode::NOT_FOUND, "session_not_found", e.to_string()),
        WebRtcError::IceRestart => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "ice_restart_unsupported", e.to_string())
        }
        WebRtcError::Unavailable => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "webrtc_unavailable", e.to_string()),
        WebRtcError::TooManySessions(_) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_sessions", e.to_string())
        }
        WebRtcError::Route(r) => route_error(r),
    }
}

pub fn route_error(e: RouteError) -> ApiError {
    match e {
        RouteError::Ended(name) => ApiError::route_not_found(name.as_str()),
        RouteError::TooManyReaders { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too_many_readers", e.to_string())
        }
        RouteError::OutputNotAllowed { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "output_not_allowed", e.to_string())
        }
        RouteError::PublisherBusy(_) => ApiError::new(StatusCode::CONFLICT, "publisher_exists", e.to_string()),
        RouteError::NotPublishable { .. } => ApiError::new(StatusCode::FORBIDDEN, "not_publishable", e.to_string()),
    }
}

/// The SDP body, checked for type and size.
fn sdp_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>, expected: &str) -> Result<String, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case(expected) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the body as Content-Type: {expected} (got \"{content_type}\")"),
        ));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body exceeds {MAX_SDP_BYTES} bytes"),
            )
        } else {
            ApiError::new(e.status(), "bad_body", e.body_text())
        }
    })?;
    if body.len() > MAX_SDP_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body exceeds {MAX_SDP_BYTES} bytes"),
        ));
    }
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_sdp", "the SDP is not UTF-8"))
}

pub async fn offer(
    state: State<AppState>,
    side: Side,
    route_name: String,
    remote: SocketAddr,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    with_cors(match offer_inner(&state, side, &route_name, remote, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    })
}

async fn offer_inner(
    state: &AppState,
    side: Side,
    route_name: &str,
    remote: SocketAddr,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (wants, protocol) = match side {
        Side::Whep => (Wants::Read(Output::Whep), Protocol::Whep),
        Side::Whip => (Wants::Publish(PublishProtocol::Whip), Protocol::Whip),
    };
    let admitted = super::auth::admit_live(state, route_name, wants, protocol, remote, uri, headers).await?;
    let dir = state.runtime.directory();
    let sdp = sdp_body(headers, body, "application/sdp")?;
    let per_ip = dir.table.server.limits.webrtc_sessions_per_ip;
    let slot = state.webrtc.reserve(remote.ip(), per_ip).map_err(webrtc_error)?;
    let answer = match side {
        Side::Whep => whep::view(&state.webrtc, &admitted.route, &sdp, Some(remote), slot).await,
        Side::Whip => whip::publish(&state.webrtc, &admitted, &sdp, Some(remote), slot).await,
    }
    .map_err(webrtc_error)?;
    let location = format!("/{route_name}/{}/{}", side.as_str(), answer.session_id);
    let mut response = (StatusCode::CREATED, answer.sdp).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", answer.session_id)) {
        h.insert(header::ETAG, v);
    }
    ice_server_links(state, h);
    Ok(response)
}

pub async fn options(State(state): State<AppState>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    cors(h);
    h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    ice_server_links(&state, h);
    response
}

/// The session a `/{route}/{whip|whep}/{id}` URL names.
fn session_ref(route: String, side: &str, id: String) -> Result<SessionRef, ApiError> {
    let role = match side {
        "whep" => RoleKind::Viewer,
        "whip" => RoleKind::Publisher,
        _ => return Err(webrtc_error(WebRtcError::SessionNotFound)),
    };
    Ok(SessionRef { route, role, id })
}

pub async fn patch(
    State(state): State<AppState>,
    Path((route, side, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        // The ETag we handed out is the session id; a PATCH meant for another ICE session is refused
        // (RFC 9725 4.3.1).
        if let Some(tag) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
            && tag != "*"
            && tag != format!("\"{id}\"")
        {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "etag_mismatch",
                "If-Match does not match this session's ETag",
            ));
        }
        let session = session_ref(route, &side, id)?;
        let fragment = sdp_body(&headers, body, "application/trickle-ice-sdpfrag")?;
        state.webrtc.trickle(session, &fragment).await.map_err(webrtc_error)?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    with_cors(result.unwrap_or_else(IntoResponse::into_response))
}

pub async fn delete(
    State(state): State<AppState>,
    Path((route, side, id)): Path<(String, String, String)>,
) -> Response {
    let session = match session_ref(route, &side, id) {
        Ok(s) => s,
        Err(e) => return with_cors(e.into_response()),
    };
    with_cors(match state.webrtc.end(session).await {
        Ok(true) => StatusCode::OK.into_response(),
        Ok(false) => webrtc_error(WebRtcError::SessionNotFound).into_response(),
        Err(e) => webrtc_error(e).into_response(),
    })
}

/// `GET /{route}`: an embedded asset of that name, else the viewer page of that route.
pub async fn route_page(State(state): State<AppState>, Path(name): Path<String>, uri: Uri) -> Response {
    if super::web::asset(&name).is_some() {
        return super::web::serve(uri).await;
    }
    if !known(&state, &name) {
        return ApiError::route_not_found(&name).into_response();
    }
    super::web::page("viewer.html")
}

/// `GET /{route}/publish`: the browser publisher page.
pub async fn publish_page(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    if !known(&state, &name) {
        return ApiError::route_not_found(&name).into_response();
    }
    super::web::page("publisher.html")
}

/// A route, or a name a template makes a route of when published to: its pages exist.
fn known(state: &AppState, name: &str) -> bool {
    let dir = state.runtime.directory();
    dir.route(name).is_some() || dir.table.template_for(name).is_some()
}
