//! The operator listener: health, readiness, Prometheus metrics and the
//! operator API.
//!
//! Invariants:
//! - It listens on its own address (loopback by default), never on the
//!   public ingress port.
//! - `/readyz` is true only while the store is open and healthy, recovery is
//!   finished and the gateway is not shutting down; load balancers use it to
//!   stop sending traffic before a drain.
//! - Every `/api` route requires `Authorization: Bearer <admin.token>`,
//!   compared in constant time. With no token configured (config validation
//!   allows that only on a loopback listener) the API is open.
//! - `/healthz`, `/readyz` and `/metrics` need no token: probes and scrapers
//!   carry none, and they expose no event data.
//! - Errors are JSON with stable codes ([`error::ApiError`]).

pub mod api;
pub mod error;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use error::ApiError;

/// Builds the admin router.
pub fn router(state: AppState) -> Router {
    let api = api::routes().layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/api", api)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.is_ready() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready"})),
        )
    }
}

/// Prometheus text; the queue gauges are refreshed from the store first.
async fn metrics(State(state): State<AppState>) -> Response {
    // Queue gauges count every event acknowledged before the scrape.
    state.store.caught_up().await;
    let store = state.store.clone();
    let config = state.config.clone();
    let now = state.clock.now_ms();
    let text = tokio::task::spawn_blocking(move || {
        crate::metrics::refresh_queue_gauges(
            &store,
            config.destinations.keys().map(String::as_str),
            now,
        );
        crate::metrics::render()
    })
    .await;
    match text {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => ApiError::Task.into_response(),
    }
}

/// Lets the request through only with the configured bearer token.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.config.admin.token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !presented.is_some_and(|p| token_matches(p, token.expose())) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

/// Constant-time comparison that also hides the token's length: both sides
/// are hashed to fixed-size digests first.
fn token_matches(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn token_comparison_is_exact() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cre", "s3cret"));
        assert!(!token_matches("", "s3cret"));
        assert!(!token_matches("S3CRET", "s3cret"));
    }
}
