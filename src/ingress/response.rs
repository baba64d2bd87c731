//! The ingress HTTP contract: every outcome becomes a response here, once.
//!
//! Bodies are `{"status": ..., "error": ...}` with the stable codes of
//! DESIGN.md. Messages come from typed errors whose text never contains a
//! secret or an expected signature.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::guard::GuardError;
use crate::store::StoreError;
use crate::verify::VerifyError;

/// Every way an ingress request can end other than "accepted"/"duplicate".
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// No source with that name.
    #[error("no source named `{0}`")]
    UnknownSource(String),
    /// Signature missing, malformed or wrong.
    #[error(transparent)]
    InvalidSignature(#[from] VerifyError),
    /// Signed timestamp outside tolerance.
    #[error(transparent)]
    Stale(#[from] GuardError),
    /// Body above `server.max_body`.
    #[error("body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    /// The request could not be read.
    #[error("{0}")]
    BadRequest(String),
    /// Per-IP rate exceeded.
    #[error("too many requests from this address")]
    RateLimited(Duration),
    /// Not accepting right now; the provider should retry later.
    #[error("{0}")]
    Unavailable(&'static str),
}

impl IngressError {
    /// Stable `status` code of the JSON body (also the metrics outcome label).
    pub fn code(&self) -> &'static str {
        match self {
            IngressError::UnknownSource(_) => "unknown_source",
            IngressError::InvalidSignature(_) => "invalid_signature",
            IngressError::Stale(_) => "stale_timestamp",
            IngressError::PayloadTooLarge(_) => "payload_too_large",
            IngressError::BadRequest(_) => "bad_request",
            IngressError::RateLimited(_) => "rate_limited",
            IngressError::Unavailable(_) => "unavailable",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            IngressError::UnknownSource(_) => StatusCode::NOT_FOUND,
            IngressError::InvalidSignature(_) | IngressError::Stale(_) => StatusCode::UNAUTHORIZED,
            IngressError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            IngressError::BadRequest(_) => StatusCode::BAD_REQUEST,
            IngressError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            IngressError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Maps a store failure: everything is "retry later" for the provider.
    pub fn from_store(e: &StoreError) -> IngressError {
        match e {
            StoreError::Full => IngressError::Unavailable("queue is full"),
            StoreError::Closed => IngressError::Unavailable("shutting down"),
            _ => IngressError::Unavailable("storage is failing"),
        }
    }
}

/// Seconds a provider should wait before retrying a 503.
const UNAVAILABLE_RETRY_AFTER_S: u64 = 5;

impl IntoResponse for IngressError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            IngressError::RateLimited(wait) => Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            IngressError::Unavailable(_) => Some(UNAVAILABLE_RETRY_AFTER_S),
            _ => None,
        };
        let body = json!({"status": self.code(), "error": self.to_string()});
        let mut response = (self.status(), axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A 200 answer: `accepted` with the gateway id, or `duplicate`.
pub fn ok(status: &'static str, id: &str) -> Response {
    /// Serialized straight from borrowed fields: `json!` built a map per
    /// request on the hottest path.
    #[derive(serde::Serialize)]
    struct Ok<'a> {
        status: &'static str,
        id: &'a str,
    }
    (StatusCode::OK, axum::Json(Ok { status, id })).into_response()
}
