//! The browser files from `web/`, embedded at build time (see `router/build.rs`).

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

pub fn asset(path: &str) -> Option<&'static [u8]> {
    WEB_ASSETS.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("webmanifest") => "application/manifest+json",
        _ => "text/plain; charset=utf-8",
    }
}

pub async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match asset(path) {
        Some(bytes) => {
            ([(header::CONTENT_TYPE, content_type(path)), (header::CACHE_CONTROL, "no-cache")], bytes).into_response()
        }
        None => ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("nothing at /{path}")).into_response(),
    }
}

/// An HTML page from `web/`, for routes that serve one page under many paths.
pub fn page(name: &str) -> Response {
    match asset(name) {
        Some(bytes) => {
            ([(header::CONTENT_TYPE, content_type(name)), (header::CACHE_CONTROL, "no-cache")], bytes).into_response()
        }
        None => ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{name} is missing from this build"))
            .into_response(),
    }
}
