//! The operator listener: health, readiness (and, as they land, metrics and
//! the operator API).
//!
//! Invariants:
//! - It listens on its own address (loopback by default), never on the
//!   public ingress port.
//! - `/readyz` is true only while the store is open and healthy, recovery is
//!   finished and the gateway is not shutting down; load balancers use it to
//!   stop sending traffic before a drain.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::AppState;

/// Builds the admin router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
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
