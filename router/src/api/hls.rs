//! (LL-)HLS over HTTP: `/{route}/index.m3u8` (and `plain.m3u8`), the media playlist `stream.m3u8` with blocking
//! reloads, and the init segments, segments and parts it lists. Thin: admission, then lookups and waits on the
//! route's [`Stream`](crate::egress::hls::Stream).
//!
//! Access: `index.m3u8` is admitted like a WHEP offer (`?token=`, Bearer or Basic; `to` must list "hls") and opens
//! a viewer session; every URI in the playlists it leads to carries `?session=`, which is what later requests are
//! checked by. Every answer allows any origin (credentials travel in the URL or `Authorization`, never cookies).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::{ApiError, AppState};
use crate::admit::Wants;
use crate::auth::Protocol;
use crate::config::model::Output;
use crate::egress::hls::media::{Flavor, Lookup, Media};
use crate::egress::hls::{HlsError, Stream};

/// How long `index.m3u8` waits for the first segments of a route whose muxer has just started: two segments take
/// three keyframes, and cameras and encoders send one every 2 to 10 s.
const FIRST_SEGMENT_WAIT: Duration = Duration::from_secs(30);

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

/// `GET /{route}/index.m3u8` and `/{route}/plain.m3u8`: the multivariant playlist, whose one variant is the
/// viewer's media playlist.
pub async fn multivariant(
    State(state): State<AppState>,
    Path(route): Path<String>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    flavor: Flavor,
) -> Response {
    with_cors(match multivariant_inner(&state, &route, remote, &uri, &headers, flavor).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    })
}

async fn multivariant_inner(
    state: &AppState,
    route: &str,
    remote: SocketAddr,
    uri: &Uri,
    headers: &HeaderMap,
    flavor: Flavor,
) -> Result<Response, ApiError> {
    let wants = Wants::Read(Output::Hls);
    let admitted = super::auth::admit_live(state, route, wants, Protocol::Http, remote, uri, headers).await?;
    let stream = state.hls.stream(&admitted).await.map_err(hls_error)?;
    // Until two segments are made, or it is clear they will not be (no playable track, the muxer stopped).
    let ready = stream
        .wait_for(FIRST_SEGMENT_WAIT, |m| (m.ready() || m.ended || stream.problem().is_some()).then_some(m.ready()))
        .await
        .unwrap_or(false);
    if !ready {
        let why = stream.problem().unwrap_or_else(|| {
            format!("route \"{route}\" has no media yet (no publisher, or the source is connecting)")
        });
        return Err(hls_error(HlsError::NotReady(why)));
    }
    let session = stream.open_session().await.map_err(hls_error)?;
    let plain = if flavor == Flavor::Plain { "&plain" } else { "" };
    let body = stream.with_media(|m| m.multivariant(&format!("stream.m3u8?session={session}{plain}")));
    Ok(playlist_response(body))
}

/// `GET /{route}/stream.m3u8?session=...`: the media playlist; with `_HLS_msn` (and `_HLS_part`) it is held until
/// that segment (or part) is listed, up to three target durations.
pub async fn media_playlist(State(state): State<AppState>, Path(route): Path<String>, uri: Uri) -> Response {
    with_cors(match media_playlist_inner(&state, &route, &uri).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    })
}

async fn media_playlist_inner(state: &AppState, route: &str, uri: &Uri) -> Result<Response, ApiError> {
    let q = Query::parse(uri);
    let (stream, session) = viewer(state, route, &q)?;
    let flavor = if q.has("plain") { Flavor::Plain } else { Flavor::LowLatency };
    let msn = q.number("_HLS_msn")?;
    let part = q.number("_HLS_part")?.map(|p| u32::try_from(p).unwrap_or(u32::MAX));
    if part.is_some() && msn.is_none() {
        return Err(bad_request("_HLS_part needs _HLS_msn"));
    }
    if let Some(msn) = msn {
        let (last, hold) = stream.with_media(|m| (m.last_msn(), m.hold_limit()));
        // RFC 8216bis 6.2.5.2: a request more than two segments ahead is answered at once with 400.
        if last.is_some_and(|last| msn > last + 2) {
            return Err(bad_request(format!("_HLS_msn={msn} is more than two segments ahead of the playlist")));
        }
        let held = stream.wait_for(hold, |m| m.has(msn, part).then_some(())).await;
        // A held reload kept the viewer waiting, not gone.
        let _ = stream.touch(&session);
        if held.is_none() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "hls_not_ready",
                format!("segment {msn} was not made within {} s", hold.as_secs()),
            ));
        }
    }
    let query = format!("?session={session}");
    Ok(playlist_response(stream.with_media(|m| m.playlist(flavor, &query))))
}

/// `GET /{route}/{file}?session=...`: `init{N}.mp4`, `seg{MSN}.mp4` or `part{MSN}.{I}.mp4`; a part or segment
/// that is about to be made (a preload hint) is waited for.
pub async fn file(State(state): State<AppState>, Path((route, file)): Path<(String, String)>, uri: Uri) -> Response {
    // Two-segment paths that name no HLS file are the UI's (`/vendor/hls.light.min.js`).
    if File::parse(&file).is_none() {
        return super::web::serve(uri).await;
    }
    with_cors(match file_inner(&state, &route, &file, &uri).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    })
}

/// The files a playlist names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum File {
    Init(u32),
    Segment(u64),
    Part(u64, u32),
}

impl File {
    fn parse(name: &str) -> Option<File> {
        let stem = name.strip_suffix(".mp4")?;
        if let Some(n) = stem.strip_prefix("init") {
            return n.parse().ok().map(File::Init);
        }
        if let Some(n) = stem.strip_prefix("seg") {
            return n.parse().ok().map(File::Segment);
        }
        let (msn, index) = stem.strip_prefix("part")?.split_once('.')?;
        Some(File::Part(msn.parse().ok()?, index.parse().ok()?))
    }

    fn lookup(self, media: &Media) -> Lookup {
        match self {
            File::Init(id) => media.map(id),
            File::Segment(msn) => media.segment(msn),
            File::Part(msn, index) => media.part(msn, index),
        }
    }
}

async fn file_inner(state: &AppState, route: &str, name: &str, uri: &Uri) -> Result<Response, ApiError> {
    let Some(file) = File::parse(name) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("nothing at /{route}/{name}")));
    };
    let (stream, _) = viewer(state, route, &Query::parse(uri))?;
    let hold = stream.with_media(|m| m.hold_limit());
    let found = stream
        .wait_for(hold, |m| match file.lookup(m) {
            Lookup::Soon => None,
            other => Some(other),
        })
        .await;
    match found {
        Some(Lookup::Ready(bytes)) => Ok(mp4_response(bytes)),
        Some(Lookup::Gone) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("/{route}/{name} is no longer (or not yet) in the playlist"),
        )),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "hls_not_ready",
            format!("/{route}/{name} was not made in time"),
        )),
    }
}

/// `OPTIONS` on any HLS path: CORS preflight (players that send `Authorization`).
pub async fn options() -> Response {
    with_cors(StatusCode::NO_CONTENT.into_response())
}

/// The stream and session a playlist or file request names.
fn viewer(state: &AppState, route: &str, q: &Query) -> Result<(Arc<Stream>, String), ApiError> {
    let session = q.get("session").ok_or_else(|| hls_error(HlsError::NoSession))?;
    let stream = state.hls.running(route).ok_or_else(|| hls_error(HlsError::NoSession))?;
    stream.touch(session).map_err(hls_error)?;
    Ok((stream, session.to_string()))
}

fn hls_error(e: HlsError) -> ApiError {
    match e {
        HlsError::Route(e) => super::webrtc::route_error(e),
        HlsError::NotReady(why) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "hls_not_ready", why).with_header(header::RETRY_AFTER, "2")
        }
        HlsError::NoSession => ApiError::new(StatusCode::FORBIDDEN, "hls_session", e.to_string()),
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn playlist_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, PLAYLIST_TYPE), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

fn mp4_response(bytes: Bytes) -> Response {
    // A file's name never names other bytes while its session lives, so players and proxies may keep it.
    ([(header::CONTENT_TYPE, "video/mp4"), (header::CACHE_CONTROL, "private, max-age=60")], bytes).into_response()
}

fn with_cors(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Range"));
    response
}

/// A request's query as pairs.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(uri: &Uri) -> Query {
        Query(url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    fn number(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.get(key)
            .map(|v| v.parse().map_err(|_| bad_request(format!("{key} must be a whole number, not \"{v}\""))))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_parsed_strictly() {
        assert_eq!(File::parse("init1.mp4"), Some(File::Init(1)));
        assert_eq!(File::parse("seg42.mp4"), Some(File::Segment(42)));
        assert_eq!(File::parse("part42.3.mp4"), Some(File::Part(42, 3)));
        for bad in ["seg.mp4", "seg-1.mp4", "part4.mp4", "part4..mp4", "seg1.ts", "../seg1.mp4", "init99999999999.mp4"]
        {
            assert_eq!(File::parse(bad), None, "{bad}");
        }
    }
}
