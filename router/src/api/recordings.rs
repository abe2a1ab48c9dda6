//! Recordings over HTTP: start/stop (`POST /v1/routes/{name}/record`), the index (`GET /v1/recordings`), one file
//! with HTTP Range so a `<video>` tag can seek (`GET /v1/recordings/{id}/file`), and a time span stitched across
//! segments (`GET /v1/recordings/download`).
//!
//! Reading recordings is watching media, so it is authorized like watching live: action `playback` on the
//! recording's route, decided by that route's `auth` (or `[defaults] anonymous` when it has none) — a viewer's
//! token for the route is enough, and a route's protection covers its recordings even when the API is open.
//! Recordings of a route no longer in routes.toml fall back to `[server] api_auth`. Only listing every route's
//! recordings at once (`GET /v1/recordings` without `route`) is an API call (`api_auth`, action `api`).

use crate::media::wallclock::format_time;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::admit::{Ask, Wants};
use crate::auth::Protocol;
use crate::egress::record::RecordingStatus;
use crate::recording::index::Recording;
use crate::recording::stitch::{self, Piece, StitchError};
use crate::runtime::RecordError;

/// The longest span one download stitches (its fragment headers are prepared in memory before sending).
const MAX_DOWNLOAD_MS: i64 = 24 * 3600 * 1000;
/// Bytes read from disk per chunk of a response.
const CHUNK: usize = 256 << 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordBody {
    /// "start" or "stop".
    pub action: String,
    /// The sink plugin; defaults to the route's `record:` output or the only sink plugin.
    pub plugin: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RecordReply {
    pub route: String,
    pub plugin: String,
    pub recording: bool,
    pub status: Option<RecordingStatus>,
    /// Set when the route has no media yet: what the recording waits for.
    pub waiting_for: Option<String>,
}

/// `POST /v1/routes/{name}/record`: starts or stops a recording without touching the route's other outputs.
pub async fn record(
    State(state): State<AppState>,
    Path(route): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<RecordReply>, ApiError> {
    // Read as JSON whatever the Content-Type says: `curl -d '{"action":"start"}'` sends form encoding's type.
    let body = body.map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))?;
    let body: RecordBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body is not {{\"action\": \"start\"|\"stop\", \"plugin\": \"NAME\"}}: {e}"),
        )
    })?;
    let on = match body.action.as_str() {
        "start" => true,
        "stop" => false,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("`action` is \"start\" or \"stop\", not \"{other}\""),
            ));
        }
    };
    match state.runtime.record(&route, body.plugin, on).await {
        Ok((plugin, status)) => {
            // A recording of a route with no media yet starts when it comes: say what it waits for.
            let dir = state.runtime.directory();
            let waiting_for = match (dir.route(&route), &status) {
                (Some((_, handle)), Some(s)) if on => match handle.snapshot().await {
                    Ok(live) => super::routes::recordings_waiting(&live, std::slice::from_ref(s)).pop(),
                    Err(_) => None,
                },
                _ => None,
            };
            Ok(Json(RecordReply { route, plugin, recording: on, status, waiting_for }))
        }
        Err(RecordError::NoRoute) => Err(ApiError::route_not_found(&route)),
        Err(RecordError::Ambiguous(m)) => Err(ApiError::new(StatusCode::BAD_REQUEST, "plugin_required", m)),
        Err(RecordError::NotASink(p)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_a_sink",
            format!("there is no sink plugin named \"{p}\" to record with"),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanQuery {
    pub route: Option<String>,
    /// RFC 3339 (`2026-11-21T10:00:00Z`) or Unix seconds.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Accepted here so `?token=` (for `<video>` tags) does not trip `deny_unknown_fields`.
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RecordingView {
    #[serde(flatten)]
    pub recording: Recording,
    /// RFC 3339, UTC.
    pub start: String,
    pub end: String,
    /// Where to fetch the file (supports Range).
    pub url: String,
}

fn bad_time(which: &str, e: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("`{which}`: {e}"))
}

fn span(q: &SpanQuery) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let from = q.from.as_deref().map(parse_time).transpose().map_err(|e| bad_time("from", e))?;
    let to = q.to.as_deref().map(parse_time).transpose().map_err(|e| bad_time("to", e))?;
    if let (Some(f), Some(t)) = (from, to)
        && t <= f
    {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "`to` must be after `from`"));
    }
    Ok((from, to))
}

async fn query(
    state: &AppState,
    route: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Vec<Recording>, ApiError> {
    state.runtime.index.query(route, from, to).await.map_err(index_error)
}

fn index_error(e: crate::recording::index::IndexError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "index_error", e.to_string())
}

/// Action `playback` on `route`: its auth plugin decides, as for a live viewer; a route no longer configured
/// falls back to `[server] api_auth`.
async fn authorize_playback(
    state: &AppState,
    route: &str,
    remote: SocketAddr,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(), ApiError> {
    let (credentials, query) = super::auth::credentials_and_query(headers, uri);
    let ask = Ask {
        route: route.to_string(),
        wants: Wants::Playback,
        protocol: Protocol::Http,
        target: format!("GET {}", uri.path()),
        remote: Some(remote.ip()),
        query,
        credentials,
        stream_key: None,
    };
    state
        .runtime
        .admission
        .admit_playback(ask)
        .await
        .map_err(|refusal| super::auth::admission_error(&refusal, &["Bearer", "Basic"]))
}

/// `GET /v1/recordings?route=&from=&to=`: recordings overlapping the span, oldest first.
pub async fn list(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<SpanQuery>,
) -> Result<Response, ApiError> {
    if let Some(route) = &q.route {
        authorize_playback(&state, route, remote, &headers, &uri).await?;
    }
    let (from, to) = span(&q)?;
    let recordings = query(&state, q.route.clone(), from, to).await?;
    let views: Vec<RecordingView> = recordings
        .into_iter()
        .map(|r| RecordingView {
            start: format_time(r.start_ms),
            end: format_time(r.end_ms()),
            url: format!("/v1/recordings/{}/file", r.id),
            recording: r,
        })
        .collect();
    Ok(Json(serde_json::json!({ "recordings": views })).into_response())
}

/// `GET /v1/recordings/{id}/file`: the file, with single-range `Range` support.
pub async fn file(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let not_found =
        || ApiError::new(StatusCode::NOT_FOUND, "recording_not_found", format!("there is no recording {id}"));
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let recording = state.runtime.index.get(id).await.map_err(index_error)?.ok_or_else(not_found)?;
    authorize_playback(&state, &recording.route, remote, &headers, &uri).await?;
    let path = recording.file();
    let size = std::fs::metadata(&path).map_err(|_| not_found())?.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|v| parse_range(v, size));
    let (status, offset, len) = match range {
        None | Some(RangeRequest::Ignore) => (StatusCode::OK, 0, size),
        Some(RangeRequest::Unsatisfiable) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}")), (header::ACCEPT_RANGES, "bytes".to_string())],
            )
                .into_response());
        }
        Some(RangeRequest::Bytes(start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
    };
    let mut response = stream(vec![Piece::File { path, offset, len }], len);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {offset}-{}/{size}", offset + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

/// `GET /v1/recordings/download?route=&from=&to=`: the span as one MP4, stitched across segments.
pub async fn download(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<SpanQuery>,
) -> Result<Response, ApiError> {
    let required = || ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "`route`, `from` and `to` are required");
    let route = q.route.clone().ok_or_else(required)?;
    authorize_playback(&state, &route, remote, &headers, &uri).await?;
    let (Some(from), Some(to)) = span(&q)? else { return Err(required()) };
    if to - from > MAX_DOWNLOAD_MS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "span_too_long",
            "a download spans at most 24 hours: fetch longer periods in parts, or the segments one by one",
        ));
    }
    let recordings = query(&state, Some(route.clone()), Some(from), Some(to)).await?;
    let pieces = tokio::task::spawn_blocking(move || stitch::plan(&recordings, from, to))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "stitch_failed", e.to_string()))?
        .map_err(|e| match e {
            StitchError::Empty => ApiError::new(StatusCode::NOT_FOUND, "no_recording", e.to_string()),
            // A file the index lists that cannot be read back is the server's problem, not the request's.
            e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "recording_unreadable", e.to_string()),
        })?;
    let len = pieces.iter().map(Piece::len).sum();
    let mut response = stream(pieces, len);
    let name = format!("{}_{}.mp4", route.replace(['/', '"'], "_"), format_time(from).replace(':', "-"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// A `video/mp4` response streaming `pieces` (`len` bytes in all), read from disk in chunks off the async threads.
fn stream(pieces: Vec<Piece>, len: u64) -> Response {
    struct Cursor {
        pieces: std::vec::IntoIter<Piece>,
        current: Option<(PathBuf, u64, u64)>,
    }
    let start = Cursor { pieces: pieces.into_iter(), current: None };
    let body = futures_util::stream::unfold(start, |mut c| async move {
        loop {
            if let Some((path, offset, left)) = c.current.take() {
                if left == 0 {
                    continue;
                }
                let n = left.min(CHUNK as u64);
                let p = path.clone();
                let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                    use std::os::unix::fs::FileExt as _;
                    let mut buf = vec![0; n as usize];
                    std::fs::File::open(&p)?.read_exact_at(&mut buf, offset)?;
                    Ok(buf)
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                return match read {
                    Ok(buf) => {
                        c.current = Some((path, offset + n, left - n));
                        Some((Ok(Bytes::from(buf)), c))
                    }
                    // The file went (retention) or broke mid-response: end the body with an error.
                    Err(e) => Some((Err(e), Cursor { pieces: Vec::new().into_iter(), current: None })),
                };
            }
            match c.pieces.next()? {
                Piece::Bytes(b) => return Some((Ok(Bytes::from(b)), c)),
                Piece::File { path, offset, len } => c.current = Some((path, offset, len)),
            }
        }
    });
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// Inclusive byte range.
    Bytes(u64, u64),
    Unsatisfiable,
    /// Not a single byte range we serve: the whole file is sent (RFC 9110 allows ignoring Range).
    Ignore,
}

fn parse_range(value: &str, size: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return RangeRequest::Ignore };
    if spec.contains(',') {
        return RangeRequest::Ignore;
    }
    let Some((a, b)) = spec.split_once('-') else { return RangeRequest::Ignore };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        // bytes=-N: the last N bytes.
        (Err(_), Ok(n)) if a.is_empty() => {
            if n == 0 {
                return RangeRequest::Unsatisfiable;
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (Ok(s), Err(_)) if b.is_empty() => (s, size.saturating_sub(1)),
        (Ok(s), Ok(e)) if e >= s => (s, e.min(size.saturating_sub(1))),
        _ => return RangeRequest::Ignore,
    };
    if size == 0 || range.0 >= size { RangeRequest::Unsatisfiable } else { RangeRequest::Bytes(range.0, range.1) }
}

/// Parses RFC 3339 (`2026-11-21T10:00:00Z`, `...+01:00`, fractions allowed) or Unix seconds; ms since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    // Years 0 to 9999 either way: times outside them are mistakes, and arithmetic on them could overflow.
    const MAX_SECS: i64 = 253_402_300_799;
    const MIN_SECS: i64 = -62_167_219_200;
    if let Ok(secs) = s.parse::<i64>() {
        if !(MIN_SECS..=MAX_SECS).contains(&secs) {
            return Err(format!("\"{s}\" is out of range"));
        }
        return Ok(secs * 1000);
    }
    let bad = || format!("\"{s}\" is neither RFC 3339 (2026-11-21T10:00:00Z) nor Unix seconds");
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|v| v.parse::<i64>().ok()).ok_or_else(bad);
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut rest = &s[19..];
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        ms = padded.parse::<i64>().map_err(|_| bad())?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && o.as_bytes()[3] == b':' => {
            let part = |r: std::ops::Range<usize>| o.get(r).and_then(|v| v.parse::<i64>().ok()).ok_or_else(bad);
            let (oh, om) = (part(1..3)?, part(4..6)?);
            let m = oh * 60 + om;
            if o.starts_with('-') { -m } else { m }
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(y, mo, d);
    Ok(((days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60) * 1000) + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), RangeRequest::Bytes(0, 99));
        assert_eq!(parse_range("bytes=900-", 1000), RangeRequest::Bytes(900, 999));
        assert_eq!(parse_range("bytes=-100", 1000), RangeRequest::Bytes(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), RangeRequest::Bytes(0, 999));
        assert_eq!(parse_range("bytes=500-5000", 1000), RangeRequest::Bytes(500, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), RangeRequest::Ignore);
        assert_eq!(parse_range("bytes=9-1", 1000), RangeRequest::Ignore);
        assert_eq!(parse_range("items=0-1", 1000), RangeRequest::Ignore);
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("2026-11-21T00:00:00Z"), Ok(1_795_219_200_000));
        assert_eq!(parse_time("2026-11-21T01:00:00.5+01:00"), Ok(1_795_219_200_500));
        assert_eq!(parse_time("1795219200"), Ok(1_795_219_200_000));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("2024-02-29T12:00:00Z"), Ok(1_709_208_000_000));
        assert!(parse_time("2026-13-01T00:00:00Z").is_err());
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-11-21T10:00:00+0\u{e9}0").is_err(), "non-ASCII offset: an error, not a panic");
        assert!(parse_time("-9223372036854775808").is_err());
        assert_eq!(format_time(1_795_219_200_500), "2026-11-21T00:00:00.500Z");
        assert_eq!(format_time(1_709_208_000_000), "2024-02-29T12:00:00.000Z");
        for ms in [0, 951_782_400_000, 4_102_444_800_123] {
            assert_eq!(parse_time(&format_time(ms)), Ok(ms));
        }
    }
}
