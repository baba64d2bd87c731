//! The admin API's error contract: every failure becomes a response here,
//! once, as `{"status": <code>, "error": <message>}` with a stable code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// Every way an admin API call can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong bearer token.
    #[error("a valid admin bearer token is required")]
    Unauthorized,
    /// No such event, destination or dead letter.
    #[error("{0}")]
    NotFound(String),
    /// Malformed id, query or body.
    #[error("{0}")]
    BadRequest(String),
    /// The store failed; the message is the store's (never a secret).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking task failed (panicked or was cancelled).
    #[error("internal task failed")]
    Task,
}

impl ApiError {
    /// Stable machine-readable code, the `status` field of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Store(StoreError::Closed) => "unavailable",
            ApiError::Store(_) | ApiError::Task => "internal",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Store(StoreError::Closed) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) | ApiError::Task => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::Store(_) | ApiError::Task) {
            tracing::error!(error = %self, "admin api call failed");
        }
        let mut response = (
            self.status(),
            axum::Json(json!({"status": self.code(), "error": self.to_string()})),
        )
            .into_response();
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
