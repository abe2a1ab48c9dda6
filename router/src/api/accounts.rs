//! `/api/auth/*` and `/api/cameras/*`: accounts, cameras and sessions over HTTP (`[accounts]` on).
//!
//! Calls other than register and login need a login: `Authorization: Bearer TOKEN` (or `?token=`). A user sees
//! and changes only his own cameras (an admin sees all); another user's camera answers 404, as a missing one does.
//! Failed logins count against the per-address failure limit every protocol shares.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::accounts::tokens::Claims;
use crate::accounts::{Accounts, AccountsError, Camera, Session, User};
use crate::auth::Credentials;
use crate::config::model::{Output, PublishProtocol};
use crate::media::wallclock::format_time;
use crate::route::RouteState;

#[derive(Debug, Deserialize)]
pub struct Register {
    username: String,
    email: String,
    password: String,
}

#[derive(Debug, Deserialize)]
pub struct Login {
    username: String,
    password: String,
}

#[derive(Debug, Deserialize)]
pub struct CameraBody {
    name: Option<String>,
    resolution: Option<String>,
}

pub async fn register(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let accounts = enabled(&state)?;
    let by = login_of(&accounts, request.headers(), request.uri());
    let body: Register = body(request, "{\"username\", \"email\", \"password\"}").await?;
    let user = accounts.register(&body.username, &body.email, &body.password, by.as_ref()).await.map_err(error)?;
    Ok((StatusCode::CREATED, Json(json!({ "user": user_view(&user) }))).into_response())
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    let accounts = enabled(&state)?;
    let body: Login = body(request, "{\"username\", \"password\"}").await?;
    let gate = state.runtime.admission.gate();
    // Already the client's address when it came through a trusted proxy (see serve.rs).
    let ip = remote.ip();
    let attempt = gate
        .begin_attempt(Some(ip))
        .map_err(|retry_after| super::auth::refusal(&crate::auth::Outcome::TooManyFailures { retry_after }, &[]))?;
    let result = accounts.login(&body.username, &body.password).await;
    attempt.finish(matches!(result, Err(AccountsError::WrongLogin))).await;
    let (token, expires_at, user) = result.map_err(error)?;
    Ok(Json(json!({
        "token": token,
        "expires_at": format_time(i64::try_from(expires_at).unwrap_or(i64::MAX / 1000) * 1000),
        "user": user_view(&user),
    }))
    .into_response())
}

pub async fn me(SignedIn(accounts, who): SignedIn) -> Result<Json<Value>, ApiError> {
    let user = accounts.user(who.user_id().unwrap_or(-1)).await.map_err(error)?;
    let user = user.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "this account is gone"))?;
    Ok(Json(json!({ "user": user_view(&user) })))
}

pub async fn list(State(state): State<AppState>, SignedIn(accounts, who): SignedIn) -> Result<Json<Value>, ApiError> {
    let cameras = accounts.cameras(&who).await.map_err(error)?;
    let mut out = Vec::with_capacity(cameras.len());
    for camera in &cameras {
        out.push(camera_view(&state, &accounts, camera).await);
    }
    Ok(Json(Value::Array(out)))
}

pub async fn create(
    State(state): State<AppState>,
    SignedIn(accounts, who): SignedIn,
    request: Request,
) -> Result<Response, ApiError> {
    let body: CameraBody = body(request, "{\"name\", \"resolution\": \"1280x720\" (optional)}").await?;
    let name = body.name.ok_or_else(|| bad_field("name", "missing"))?;
    let camera = accounts.add_camera(&who, &name, body.resolution.as_deref()).await.map_err(error)?;
    Ok((StatusCode::CREATED, Json(camera_view(&state, &accounts, &camera).await)).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedIn(accounts, who): SignedIn,
) -> Result<Json<Value>, ApiError> {
    let camera = accounts.camera(&who, camera_id(&id)?).await.map_err(error)?;
    Ok(Json(camera_view(&state, &accounts, &camera).await))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedIn(accounts, who): SignedIn,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let id = camera_id(&id)?;
    let body: CameraBody = body(request, "{\"name\", \"resolution\"} (either)").await?;
    let camera =
        accounts.update_camera(&who, id, body.name.as_deref(), body.resolution.as_deref()).await.map_err(error)?;
    Ok(Json(camera_view(&state, &accounts, &camera).await))
}

pub async fn delete(Path(id): Path<String>, SignedIn(accounts, who): SignedIn) -> Result<StatusCode, ApiError> {
    accounts.delete_camera(&who, camera_id(&id)?).await.map_err(error)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn new_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedIn(accounts, who): SignedIn,
) -> Result<Json<Value>, ApiError> {
    let camera = accounts.new_key(&who, camera_id(&id)?).await.map_err(error)?;
    Ok(Json(camera_view(&state, &accounts, &camera).await))
}

pub async fn sessions(Path(id): Path<String>, SignedIn(accounts, who): SignedIn) -> Result<Json<Value>, ApiError> {
    let sessions = accounts.sessions(&who, camera_id(&id)?).await.map_err(error)?;
    Ok(Json(Value::Array(sessions.iter().map(session_view).collect())))
}

/// `GET /api/cameras/{id}/stream`: ready-to-use URLs, as the client reached this server.
pub async fn stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedIn(accounts, who): SignedIn,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let camera = accounts.camera(&who, camera_id(&id)?).await.map_err(error)?;
    let route = accounts.route_of(camera.id).ok_or_else(no_template)?;
    let dir = state.runtime.directory();
    let template = accounts.config().cameras.and_then(|t| dir.table.routes.iter().find(|r| r.name == t).cloned());
    let template = template.ok_or_else(no_template)?;
    // The host the client used, without its port: RTMP and RTSP have their own.
    let http_host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_string();
    let host = match http_host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
        _ => http_host.clone(),
    };
    let server = &dir.table.server;
    let publishes = |p: PublishProtocol| template.from.takes(p);
    let key = &camera.stream_key;
    let url = |cond: bool, url: String| if cond { Value::String(url) } else { Value::Null };
    Ok(Json(json!({
        "route": route.to_string(),
        "whip": url(publishes(PublishProtocol::Whip), format!("http://{http_host}/{route}/whip")),
        "whep": url(template.to.contains(&Output::Whep), format!("http://{http_host}/{route}/whep")),
        "rtmp": url(publishes(PublishProtocol::Rtmp), format!("rtmp://{host}:{}/{route}/{key}", server.rtmp.port())),
        "rtsp": url(template.to.contains(&Output::Rtsp), format!("rtsp://{host}:{}/{route}", server.rtsp.port())),
        // Players send the login's token as ?token= or Bearer.
        "hls": url(template.to.contains(&Output::Hls), format!("http://{http_host}/{route}/index.m3u8")),
        "stream_key": key,
    })))
}

fn no_template() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "no_camera_template",
        "cameras have no routes: set `cameras = \"cameras/*\"` in [accounts] and add that template route",
    )
}

fn enabled(state: &AppState) -> Result<Accounts, ApiError> {
    state.accounts.clone().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "accounts_off", "accounts are off: add [accounts] to routes.toml")
    })
}

/// The login a request carries (`Authorization: Bearer` or `?token=`), if valid.
fn login_of(accounts: &Accounts, headers: &HeaderMap, uri: &Uri) -> Option<Claims> {
    match super::auth::credentials_and_query(headers, uri).0 {
        Credentials::Bearer(token) => accounts.verify(&token),
        _ => None,
    }
}

/// A request with a valid login: the accounts and who is calling. 404 when accounts are off, 401 without a login.
#[derive(Debug)]
pub struct SignedIn(Accounts, Claims);

impl axum::extract::FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, ApiError> {
        let accounts = enabled(state)?;
        let who = login_of(&accounts, &parts.headers, &parts.uri).ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "log in first: send `Authorization: Bearer TOKEN`")
                .with_header(header::WWW_AUTHENTICATE, "Bearer realm=\"sluice\"")
        })?;
        Ok(SignedIn(accounts, who))
    }
}

fn camera_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "camera_not_found", format!("there is no camera \"{id}\"")))
}

async fn body<T: DeserializeOwned>(request: Request, shape: &str) -> Result<T, ApiError> {
    let bytes: Result<Bytes, BytesRejection> =
        <Bytes as axum::extract::FromRequest<()>>::from_request(request, &()).await;
    let bytes = bytes.map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let field = e.to_string().split('`').nth(1).map(str::to_string);
        let mut err = ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("the body is not {shape}: {e}"));
        if let Some(field) = field {
            err = err.with_details(json!({ "field": field }));
        }
        err
    })
}

fn bad_field(field: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("`{field}`: {message}"))
        .with_details(json!({ "field": field }))
}

fn error(e: AccountsError) -> ApiError {
    match &e {
        AccountsError::BadInput { field, message } => bad_field(field, message),
        AccountsError::Taken(field) => {
            ApiError::new(StatusCode::CONFLICT, "taken", e.to_string()).with_details(json!({ "field": field }))
        }
        AccountsError::WrongLogin => ApiError::new(StatusCode::UNAUTHORIZED, "wrong_login", e.to_string()),
        AccountsError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
        AccountsError::NoCamera(_) => ApiError::new(StatusCode::NOT_FOUND, "camera_not_found", e.to_string()),
        AccountsError::Store(_) | AccountsError::Internal(_) => {
            tracing::error!(error = %e, "accounts");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the accounts could not answer; see the log")
        }
    }
}

fn user_view(u: &User) -> Value {
    json!({ "id": u.id, "username": u.username, "email": u.email, "admin": u.admin, "created_at": format_time(u.created_at) })
}

fn session_view(s: &Session) -> Value {
    json!({
        "id": s.id,
        "camera_id": s.camera_id,
        "start_time": format_time(s.start_time),
        "end_time": s.end_time.map(format_time),
        "status": s.status,
    })
}

/// A camera with its route and live status: `streaming` (media flowing), `online` (its route is up, waiting for
/// media), `offline`.
async fn camera_view(state: &AppState, accounts: &Accounts, c: &Camera) -> Value {
    let route = accounts.route_of(c.id);
    let status = match route.as_ref().and_then(|r| state.runtime.directory().route(r.as_str()).map(|(_, h)| h.clone()))
    {
        None => "offline",
        Some(handle) => match handle.snapshot().await {
            Ok(s) if s.state == RouteState::Live => "streaming",
            Ok(_) => "online",
            Err(_) => "offline",
        },
    };
    json!({
        "id": c.id,
        "name": c.name,
        "stream_key": c.stream_key,
        "status": status,
        "resolution": c.resolution,
        "created_at": format_time(c.created_at),
        "route": route.map(|r| r.to_string()),
        "owner": c.owner,
    })
}
