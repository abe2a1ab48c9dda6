//! `POST /v1/routes`, `PATCH /v1/routes/{name}`, `DELETE /v1/routes/{name}` and `PATCH /v1/routes` (many changes
//! at once): route changes written into routes.toml and applied like a reload (see [`crate::config::edit`]).
//!
//! Every answer carries the file's new `ETag`; a client that sends it back as `If-Match` gets 409 instead of
//! overwriting a change made meanwhile (by hand or by another client).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{ApiError, AppState};
use crate::config::edit::RouteEdit;
use crate::runtime::EditRefusal;

/// `POST /v1/routes`: a new route, e.g. `{"name": "door", "from": "rtsp://...", "to": ["whep"]}`.
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let route = object(body, "a route, e.g. {\"name\": \"door\", \"from\": \"whip\", \"to\": [\"whep\"]}")?;
    let name = match route.get("name") {
        Some(Value::String(name)) => name.clone(),
        _ => return Err(bad_request("the route needs a \"name\" (a string)")),
    };
    let mut response = apply(&state, &caller, vec![RouteEdit::Add { route }], StatusCode::CREATED).await?;
    // A name's '/' is one path segment in /v1: written as %2F.
    if let Ok(location) = header::HeaderValue::from_str(&format!("/v1/routes/{}", name.replace('/', "%2F"))) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `PATCH /v1/routes/{name}`: the keys to set; `null` removes one (the route takes `[defaults]` again).
pub async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let set = object(body, "the keys to change, e.g. {\"to\": [\"whep\", \"rtmp\"], \"max_readers\": null}")?;
    apply(&state, &caller, vec![RouteEdit::Update { name, set }], StatusCode::OK).await
}

/// `DELETE /v1/routes/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Caller,
) -> Result<Response, ApiError> {
    apply(&state, &caller, vec![RouteEdit::Delete { name }], StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    changes: Vec<RouteEdit>,
}

/// `PATCH /v1/routes`: `{"changes": [{"op": "add", "route": {...}}, {"op": "update", "name", "set": {...}},
/// {"op": "delete", "name"}]}`, applied together or not at all.
pub async fn batch(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))?;
    let batch: Batch = serde_json::from_slice(&body).map_err(|e| {
        bad_request(format!(
            "the body is not {{\"changes\": [{{\"op\": \"add\", \"route\": {{...}}}}, {{\"op\": \"update\", \"name\": \
             \"...\", \"set\": {{...}}}}, {{\"op\": \"delete\", \"name\": \"...\"}}]}}: {e}"
        ))
    })?;
    if batch.changes.is_empty() {
        return Err(bad_request("\"changes\" is empty"));
    }
    apply(&state, &caller, batch.changes, StatusCode::OK).await
}

/// The routes file's current ETag, for `GET /v1/routes` (a client reads it there and sends it back).
pub async fn current_etag(path: &std::path::Path) -> Option<header::HeaderValue> {
    let path = path.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(path)).await.ok()?.ok()?;
    header::HeaderValue::from_str(&crate::config::edit::etag(&bytes)).ok()
}

/// Who asks for a change: what the `api_auth` plugin judges each route it touches by.
#[derive(Debug)]
pub struct Caller {
    method: axum::http::Method,
    remote: std::net::SocketAddr,
    headers: HeaderMap,
    uri: axum::http::Uri,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let remote = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
        Ok(Caller { method: parts.method.clone(), remote, headers: parts.headers.clone(), uri: parts.uri.clone() })
    }
}

/// The routes `edits` touch, by every name they have before and after: the API guard judged only the one in the
/// path, and a rename or an added route must be allowed under its new name too.
fn touched(edits: &[RouteEdit]) -> Vec<String> {
    let mut names = Vec::new();
    for edit in edits {
        match edit {
            RouteEdit::Add { route } => names.extend(route.get("name").and_then(Value::as_str).map(str::to_string)),
            RouteEdit::Update { name, set } => {
                names.push(name.clone());
                names.extend(set.get("name").and_then(Value::as_str).map(str::to_string));
            }
            RouteEdit::Delete { name } => names.push(name.clone()),
        }
    }
    names.sort();
    names.dedup();
    names
}

async fn apply(
    state: &AppState,
    caller: &Caller,
    edits: Vec<RouteEdit>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    if let Some(plugin) = state.runtime.directory().table.server.api_auth.clone() {
        let (credentials, query) = super::auth::credentials_and_query(&caller.headers, &caller.uri);
        let target = format!("{} {}", caller.method, caller.uri.path());
        for name in touched(&edits) {
            let request = crate::auth::request(
                crate::auth::Action::Api,
                crate::auth::Protocol::Http,
                &name,
                target.clone(),
                Some(caller.remote.ip()),
                query.clone(),
                credentials.clone(),
            );
            let outcome = state.runtime.admission.authorize(Some(&plugin), request).await;
            if !outcome.is_allowed() {
                return Err(super::auth::refusal(&outcome, &["Bearer", "Basic"]));
            }
        }
    }
    // Every `If-Match` line, as one list; a value that is not text cannot match anything.
    let mut if_match: Option<String> = None;
    for value in caller.headers.get_all(header::IF_MATCH) {
        let text = value.to_str().map_err(|_| bad_request("If-Match is not text"))?;
        if_match = Some(match if_match {
            Some(list) => format!("{list}, {text}"),
            None => text.to_string(),
        });
    }
    let edited = state.runtime.edit_routes(edits, if_match).await.map_err(refusal)?;
    let mut response = (status, Json(&edited)).into_response();
    if let Ok(etag) = header::HeaderValue::from_str(&edited.etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

fn refusal(why: EditRefusal) -> ApiError {
    match why {
        EditRefusal::Changed { etag } => ApiError::new(
            StatusCode::CONFLICT,
            "file_changed",
            format!(
                "the routes file changed since it was read (If-Match does not match its ETag {etag}): read the \
                 routes again and make the change on what is there now"
            ),
        )
        .with_header(header::ETAG, &etag)
        .with_details(serde_json::json!({ "etag": etag })),
        EditRefusal::NoRoute(name) => ApiError::route_not_found(&name),
        EditRefusal::Invalid(why) => bad_request(why),
        EditRefusal::Rejected(errors) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            format!("the change would make the routes file invalid; nothing was changed:\n{errors}"),
        )
        .with_details(serde_json::json!({ "errors": errors })),
        EditRefusal::Io(why) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "file_error", why),
        EditRefusal::ShuttingDown => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the router is shutting down")
        }
    }
}

/// The body as a JSON object; `what` says what it should have been.
fn object(body: Result<Bytes, BytesRejection>, what: &str) -> Result<Map<String, Value>, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad_request(format!("the body is not a JSON object: send {what}"))),
        Err(e) => Err(bad_request(format!("the body is not JSON ({e}): send {what}"))),
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}
