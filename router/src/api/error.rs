//! The one error shape every endpoint returns: `{"error": {"status", "code", "message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable: clients branch on this, not on the message.
    pub code: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(axum::http::HeaderName, axum::http::HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: None, headers: Vec::new() }
    }

    pub fn route_not_found(name: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "route_not_found", format!("there is no route named \"{name}\""))
    }

    pub fn with_header(mut self, name: axum::http::HeaderName, value: &str) -> Self {
        if let Ok(v) = axum::http::HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "error": { "status": self.status.as_u16(), "code": self.code, "message": self.message }
        });
        if let Some(details) = self.details {
            body["error"]["details"] = details;
        }
        let mut response = (self.status, Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}
