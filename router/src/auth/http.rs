//! Credentials as HTTP carries them (the API, WHIP/WHEP, signaling connections; RTSP's headers are the same):
//! `Authorization: Bearer` or `Basic`, or `?token=` in the URL.

use axum::http::{HeaderMap, Uri, header};
use base64::Engine as _;

use super::{BasicCredentials, Credentials};

/// The query's parameters, decoded, with a `token` moved out into the credentials when no header carried any.
pub fn credentials_and_query(headers: &HeaderMap, uri: &Uri) -> (Credentials, Vec<(String, String)>) {
    let mut query: Vec<(String, String)> =
        uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let mut credentials = from_header(headers);
    if let Some(i) = query.iter().position(|(k, _)| k == "token") {
        let (_, token) = query.remove(i);
        if credentials == Credentials::None {
            credentials = Credentials::Bearer(token);
        }
    }
    (credentials, query)
}

fn from_header(headers: &HeaderMap) -> Credentials {
    match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        Some(value) => from_authorization(value),
        None => Credentials::None,
    }
}

/// Credentials from an `Authorization` header's value (HTTP's and RTSP's are the same): Bearer or Basic.
pub fn from_authorization(value: &str) -> Credentials {
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Credentials::Bearer(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic")
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest)
        && let Ok(text) = String::from_utf8(decoded)
        && let Some((user, password)) = text.split_once(':')
    {
        return Credentials::Basic(BasicCredentials { user: user.to_string(), password: password.to_string() });
    }
    Credentials::None
}
