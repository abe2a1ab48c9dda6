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
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let route = object(body, "a route, e.g. {\"name\": \"door\", \"from\": \"whip\", \"to\": [\"whep\"]}")?;
    let name = match route.get("name") {
        Some(Value::String(name)) => name.clone(),
        _ => return Err(bad_request("the route needs a \"name\" (a string)")),
    };
    let mut response = apply(&state, &headers, vec![RouteEdit::Add { route }], StatusCode::CREATED).await?;
    if let Ok(location) = header::HeaderValue::from_str(&format!("/v1/routes/{name}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `PATCH /v1/routes/{name}`: the keys to set; `null` removes one (the route takes `[defaults]` again).
pub async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let set = object(body, "the keys to change, e.g. {\"to\": [\"whep\", \"rtmp\"], \"max_readers\": null}")?;
    apply(&state, &headers, vec![RouteEdit::Update { name, set }], StatusCode::OK).await
}

/// `DELETE /v1/routes/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    apply(&state, &headers, vec![RouteEdit::Delete { name }], StatusCode::OK).await
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
    headers: HeaderMap,
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
    apply(&state, &headers, batch.changes, StatusCode::OK).await
}

/// The routes file's current ETag, for `GET /v1/routes` (a client reads it there and sends it back).
pub async fn current_etag(path: &std::path::Path) -> Option<header::HeaderValue> {
    let path = path.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(path)).await.ok()?.ok()?;
    header::HeaderValue::from_str(&crate::config::edit::etag(&bytes)).ok()
}

async fn apply(
    state: &AppState,
    headers: &HeaderMap,
    edits: Vec<RouteEdit>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string);
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
