//! `/v1` changes only from this router's own pages or from clients that are not browsers. A page of another site
//! open in an admin's browser could otherwise send a "simple" POST (no preflight: `text/plain`, a form) that rides
//! on what the browser holds for this origin (remembered Basic credentials) or on where it runs (a `localhost`
//! rule, a reverse proxy). Browsers say where a request comes from (`Sec-Fetch-Site`, `Origin`); other clients
//! send neither and are not affected.

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;

pub async fn same_origin_writes(request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) || !cross_site(&request) {
        return next.run(request).await;
    }
    axum::response::IntoResponse::into_response(ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_origin",
        "changes through /v1 are taken from this router's own pages or from non-browser clients, not from pages of other origins",
    ))
}

fn cross_site(request: &Request) -> bool {
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    // Older browsers: the Origin's host and port against the Host the request was sent to.
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return false };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    origin == "null" || !origin_host.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::builder().method(Method::POST).uri("/v1/reload");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).expect("request")
    }

    #[test]
    fn only_browsers_on_other_origins_are_refused() {
        assert!(!cross_site(&request(&[])), "curl, scripts");
        assert!(!cross_site(&request(&[("sec-fetch-site", "same-origin")])), "the router's own pages");
        assert!(cross_site(&request(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&request(&[("sec-fetch-site", "same-site")])), "another port of the same host");
        assert!(!cross_site(&request(&[("host", "cam:8889"), ("origin", "http://cam:8889")])));
        assert!(cross_site(&request(&[("host", "cam:8889"), ("origin", "http://evil.example")])));
        assert!(cross_site(&request(&[("host", "cam:8889"), ("origin", "null")])), "sandboxed frames, file: pages");
    }
}
