//! HTTP's side of access control: credentials from `Authorization` (Bearer or Basic) or `?token=`, the API guard
//! (`[server] api_auth`), and how refusals look (401 with `WWW-Authenticate`, 403, 429 with `Retry-After`, 503).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::admit::Refusal;
use crate::auth::{Action, Outcome, Protocol};

pub use crate::auth::http::credentials_and_query;

/// A refusal as HTTP. `schemes` are offered in `WWW-Authenticate` on 401.
pub fn refusal(outcome: &Outcome, schemes: &[&str]) -> ApiError {
    match outcome {
        Outcome::Allowed { .. } => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "allowed"),
        Outcome::Challenge { realm } => {
            let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "credentials required");
            for scheme in schemes {
                e = e.with_header(header::WWW_AUTHENTICATE, &format!("{scheme} realm=\"{realm}\""));
            }
            e
        }
        Outcome::Denied { reason } => ApiError::new(StatusCode::FORBIDDEN, "forbidden", reason.clone()),
        Outcome::TooManyFailures { retry_after } => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_failures", outcome.describe())
                .with_header(header::RETRY_AFTER, &retry_after.as_secs().max(1).to_string())
        }
        Outcome::Unavailable { reason } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "auth_unavailable", reason.clone())
        }
    }
}

/// Admits an HTTP request to publish into or read a live route (WHIP, WHEP, HLS), with the credentials it carries
/// (`Authorization` or `?token=`). A refusal offers Bearer and Basic: MediaMTX's clients and browsers answer Basic
/// (a user and password for auth-users, a JWT as the password for auth-jwt).
pub async fn admit_live(
    state: &AppState,
    route: &str,
    wants: crate::admit::Wants,
    protocol: Protocol,
    remote: SocketAddr,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
) -> Result<crate::admit::Admitted, ApiError> {
    let (credentials, query) = credentials_and_query(headers, uri);
    let ask = crate::admit::Ask {
        route: route.to_string(),
        wants,
        protocol,
        // As the client wrote it: a name's segments were joined with %2F only to route the request.
        target: uri.path().replace("%2F", "/"),
        remote: Some(remote.ip()),
        query,
        credentials,
        stream_key: None,
    };
    state.runtime.admission.admit(ask).await.map_err(|refusal| admission_error(&refusal, &["Bearer", "Basic"]))
}

/// A refusal from admission as an HTTP answer; `schemes` are the auth schemes a 401 offers.
pub fn admission_error(why: &Refusal, schemes: &[&str]) -> ApiError {
    match why {
        Refusal::NoRoute(name) => ApiError::route_not_found(name),
        Refusal::NotPublishable { .. } => ApiError::new(StatusCode::FORBIDDEN, "not_publishable", why.to_string()),
        Refusal::OutputNotAllowed { .. } => ApiError::new(StatusCode::FORBIDDEN, "output_not_allowed", why.to_string()),
        Refusal::Refused { outcome, .. } => refusal(outcome, schemes),
    }
}

/// Guards `/v1`: with `[server] api_auth` set, every call needs credentials that plugin accepts for action
/// `api` (route: the route the path names, if any) — except reading one route's recordings, which its handlers
/// authorize as `playback` on that route.
pub async fn require_api(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let Some(plugin) = state.runtime.directory().table.server.api_auth.clone() else {
        return next.run(request).await;
    };
    let path = request.uri().path().to_string();
    let (credentials, query) = credentials_and_query(request.headers(), request.uri());
    // One route's recordings are media: their handlers authorize `playback` on that route instead.
    if is_playback(request.method(), &path, &query) {
        return next.run(request).await;
    }
    // Decoded as the handlers' `Path` extractor decodes it, so the plugin judges the route that will be served.
    let route = path
        .strip_prefix("/v1/routes/")
        .and_then(|r| r.split('/').next())
        .map(|r| percent_encoding::percent_decode_str(r).decode_utf8_lossy().into_owned())
        .unwrap_or_default();
    let target = format!("{} {path}", request.method());
    let auth_request =
        crate::auth::request(Action::Api, Protocol::Http, &route, target, Some(remote.ip()), query, credentials);
    let outcome = state.runtime.admission.authorize(Some(&plugin), auth_request).await;
    if outcome.is_allowed() { next.run(request).await } else { refusal(&outcome, &["Bearer", "Basic"]).into_response() }
}

/// Whether a request reads one route's recordings (authorized by its handler, `playback` on that route) rather
/// than calling the API (authorized by the `/v1` guard). Decided from the path and query alone, before routing.
/// (Kept here, beside the guard that asks, so `recordings` depends on `auth` and not the other way round.)
pub fn is_playback(method: &axum::http::Method, path: &str, query: &[(String, String)]) -> bool {
    method == axum::http::Method::GET
        && match path.strip_prefix("/v1/recordings") {
            Some("") => query.iter().any(|(k, _)| k == "route"),
            Some("/download") => true,
            Some(rest) => {
                rest.strip_prefix('/').and_then(|r| r.strip_suffix("/file")).is_some_and(|id| !id.contains('/'))
            }
            None => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_one_routes_recordings_is_playback() {
        let get = axum::http::Method::GET;
        let route = [("route".to_string(), "cam".to_string())];
        assert!(is_playback(&get, "/v1/recordings", &route));
        assert!(!is_playback(&get, "/v1/recordings", &[]), "every route's recordings: an API call");
        assert!(is_playback(&get, "/v1/recordings/download", &route));
        assert!(is_playback(&get, "/v1/recordings/17/file", &[]));
        assert!(!is_playback(&get, "/v1/recordings/17/file/x", &[]));
        assert!(!is_playback(&get, "/v1/recordings/a/b/file", &[]));
        assert!(!is_playback(&get, "/v1/recordingsx", &route));
        assert!(!is_playback(&get, "/v1/routes/cam/record", &[]));
        assert!(!is_playback(&axum::http::Method::POST, "/v1/recordings/download", &route));
    }
}
