//! `GET /v1/routes/{name}/frames`: an in-process reader streamed as newline-delimited JSON, one line per frame
//! (track, codec, pts, dts, keyframe, size). For debugging a route without a player, and for tests that check
//! what reaches readers. `?limit=N` ends the stream after N frames.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::media::Frame;
use crate::route::{ReaderKind, RouteError, RouteReader};

#[derive(Debug, Deserialize)]
pub struct TapQuery {
    pub limit: Option<u64>,
}

pub async fn frames(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<TapQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    let dir = state.runtime.directory();
    let (_, handle) = dir.route(&name).ok_or_else(|| ApiError::route_not_found(&name))?;
    let reader = handle.add_reader(ReaderKind::Api, Some("http tap".into())).await.map_err(|e| match e {
        RouteError::TooManyReaders { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too_many_readers", e.to_string())
        }
        e => ApiError::new(StatusCode::GONE, "route_ended", e.to_string()),
    })?;
    let limit = q.limit.unwrap_or(u64::MAX);
    let stream =
        futures_util::stream::unfold((reader, 0u64), move |(mut reader, sent): (RouteReader, u64)| async move {
            if sent >= limit {
                return None;
            }
            let frame = reader.recv().await?;
            Some((Ok::<Bytes, std::convert::Infallible>(frame_line(&frame)), (reader, sent + 1)))
        });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

pub fn frame_line(f: &Frame) -> Bytes {
    let mut line = serde_json::to_vec(&serde_json::json!({
        "track": f.track.id.0,
        "codec": f.track.codec,
        "clock_rate": f.track.clock_rate,
        "pts": f.pts,
        "dts": f.dts,
        "keyframe": f.keyframe,
        "size": f.data.len(),
        "wallclock": f.wallclock.and_then(|w| w.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs_f64()),
    }))
    .unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}
