//! Stage 1: ingress. The public HTTP listener providers POST to.
//!
//! Invariants:
//! - Cheap refusals come first: shutdown, per-IP rate, unknown source and an
//!   oversize `Content-Length` are answered before the body is read.
//! - The body is read into memory once, bounded by `server.max_body`, and
//!   handed on as raw `Bytes`: nothing parses it before the signature is
//!   checked over those exact bytes.
//! - Every request holds a slot of a global concurrency cap and runs under
//!   `server.request_timeout`, so slow clients cannot pile up unbounded work.
//! - A 200 `accepted` is sent only after the store says the event is durable.
//! - Every answered request is observed once, by the outermost layer: one
//!   structured log line (source, outcome, gateway and provider event id,
//!   entity, latency; never the body or a header value) and the ingress
//!   metrics. Inner layers tag their response with an `Observed` extension
//!   saying how it ended.

mod response;
pub mod serve;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::LengthLimitError;
use tokio::sync::Semaphore;

pub use response::IngressError;

use crate::config::Rate;
use crate::guard;
use crate::metrics;
use crate::store::Appended;
use crate::verify::UnverifiedRequest;
use crate::AppState;

/// Builds the public router: `POST /hooks/{source}`, anything else 404.
pub fn router(state: AppState) -> Router {
    // One `Arc` per request instead of cloning every handle in `AppState`
    // (each an atomic on a line both cores share): measurable at 20k req/s.
    let state = Arc::new(state);
    let gate = Arc::new(Gate {
        limits: Limits::new(&state),
        state: state.clone(),
    });
    // One middleware layer, not one per concern: each `from_fn` layer boxes
    // the rest of the request's future and clones its state per request.
    Router::new()
        .route("/hooks/{source}", post(receive))
        .fallback(|| async { reject(IngressError::UnknownSource("(no route)".into())) })
        .layer(middleware::from_fn_with_state(gate, observe))
        .with_state(state)
}

/// What the outer layer needs: the state (for the source names) and the
/// admission limits.
struct Gate {
    state: Arc<AppState>,
    limits: Limits,
}

/// How a request ended, attached to its response for [`observe`].
#[derive(Debug, Clone, Default)]
struct Observed {
    /// Stable outcome code (`accepted`, `duplicate`, an [`IngressError::code`]).
    outcome: &'static str,
    /// Gateway event id, when stored or a duplicate of a stored one.
    id: Option<String>,
    /// The provider's event id, when known.
    provider_event_id: Option<String>,
    /// Entity key, when known.
    entity: Option<String>,
}

/// An error response tagged with its outcome.
fn reject(error: IngressError) -> Response {
    let outcome = error.code();
    let mut response = error.into_response();
    response.extensions_mut().insert(Observed {
        outcome,
        ..Observed::default()
    });
    response
}

/// The outer layer: admission limits, then one log line and the ingress
/// metrics per request.
async fn observe(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let source = request
        .uri()
        .path()
        .strip_prefix("/hooks/")
        .and_then(|name| gate.state.config.sources.get_key_value(name))
        .map_or(metrics::UNKNOWN_SOURCE, |(name, _)| name.as_str());
    let mut response = admit(&gate.limits, request, next).await;
    let took = started.elapsed();
    let observed = response
        .extensions_mut()
        .remove::<Observed>()
        .unwrap_or_else(|| Observed {
            // Only axum's own rejections (e.g. a wrong method) end up here.
            outcome: if response.status().is_server_error() {
                "unavailable"
            } else {
                "bad_request"
            },
            ..Observed::default()
        });
    metrics::ingress_request(source, observed.outcome, took);
    tracing::info!(
        source = %source,
        outcome = observed.outcome,
        status = response.status().as_u16(),
        id = observed.id.as_deref().unwrap_or(""),
        provider_event_id = observed.provider_event_id.as_deref().unwrap_or(""),
        entity = observed.entity.as_deref().unwrap_or(""),
        latency_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        "ingress request"
    );
    response
}

/// Admission limits shared by every request.
pub struct Limits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    slots: Semaphore,
    timeout: Duration,
    max_body: usize,
}

impl Limits {
    fn new(state: &AppState) -> Limits {
        let server = &state.config.server;
        Limits {
            per_ip: server.per_ip_rate.map(|r| RateLimiter::keyed(quota(r))),
            slots: Semaphore::new(server.max_concurrency),
            timeout: server.request_timeout,
            max_body: server.max_body,
        }
    }
}

/// GCRA quota: `count` per period, with a burst of `count`.
fn quota(rate: Rate) -> Quota {
    let per_request = rate.interval().max(Duration::from_nanos(1));
    Quota::with_period(per_request)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(rate.count)
}

/// Admission, cheapest refusal first: the per-IP rate, an oversize
/// `Content-Length`, then a slot of the concurrency cap, with the whole
/// request under the deadline.
async fn admit(limits: &Limits, request: Request, next: Next) -> Response {
    if let Some(refused) = limit_per_ip(limits, &request) {
        return refused;
    }
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body as u64) {
        return reject(IngressError::PayloadTooLarge(limits.max_body));
    }
    let work = async {
        let Ok(_slot) = limits.slots.acquire().await else {
            return reject(IngressError::Unavailable("shutting down"));
        };
        next.run(request).await
    };
    match tokio::time::timeout(limits.timeout, work).await {
        Ok(response) => response,
        Err(_) => reject(IngressError::Unavailable("request timed out")),
    }
}

/// 429 + `Retry-After` above `server.per_ip_rate` for the peer address.
fn limit_per_ip(limits: &Limits, request: &Request) -> Option<Response> {
    if let Some(limiter) = &limits.per_ip {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if let Some(ip) = peer {
            if let Err(not_until) = limiter.check_key(&ip) {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                return Some(reject(IngressError::RateLimited(wait)));
            }
            if limiter.len() > 100_000 {
                limiter.retain_recent();
            }
        }
    }
    None
}

/// `POST /hooks/{source}`: verify, guard, store durably, answer; the
/// response carries its [`Observed`] outcome.
async fn receive(
    State(state): State<Arc<AppState>>,
    Path(source_name): Path<String>,
    request: Request,
) -> Response {
    let mut observed = Observed::default();
    match admit_and_store(&state, source_name, request, &mut observed).await {
        Ok(response) => response,
        Err(error) => {
            let mut response = reject(error);
            if let Some(o) = response.extensions_mut().get_mut::<Observed>() {
                o.provider_event_id = observed.provider_event_id;
                o.entity = observed.entity;
            }
            response
        }
    }
}

/// The request path proper; fills in `observed` as it learns things.
async fn admit_and_store(
    state: &AppState,
    source_name: String,
    request: Request,
    observed: &mut Observed,
) -> Result<Response, IngressError> {
    if state.shutdown.is_cancelled() {
        return Err(IngressError::Unavailable("shutting down"));
    }
    let source = state
        .config
        .sources
        .get(&source_name)
        .cloned()
        .ok_or(IngressError::UnknownSource(source_name))?;
    let (parts, body) = request.into_parts();
    let body = read_body(body, state.config.server.max_body).await?;
    let unverified = UnverifiedRequest {
        headers: parts.headers,
        body,
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
    };
    let verified = source.verifier.verify(&unverified)?;
    let event = guard::admit(
        &source,
        &unverified.headers,
        unverified.body,
        &verified,
        &state.clock,
    )?;
    observed.provider_event_id = event.meta.provider_event_id.clone();
    observed.entity = event.meta.entity.clone();
    let appended = state
        .store
        .append(event, state.clock.now_ms())
        .await
        .map_err(|e| IngressError::from_store(&e))?;
    let (outcome, seq) = match appended {
        Appended::Accepted(seq) => ("accepted", seq),
        Appended::Duplicate(seq) => ("duplicate", seq),
    };
    let id = seq.to_event_id();
    let mut response = response::ok(outcome, &id);
    response.extensions_mut().insert(Observed {
        outcome,
        id: Some(id),
        provider_event_id: observed.provider_event_id.take(),
        entity: observed.entity.take(),
    });
    Ok(response)
}

/// Reads the whole body, refusing more than `max` bytes.
async fn read_body(body: Body, max: usize) -> Result<bytes::Bytes, IngressError> {
    axum::body::to_bytes(body, max).await.map_err(|e| {
        let inner = e.into_inner();
        if inner.downcast_ref::<LengthLimitError>().is_some() {
            IngressError::PayloadTooLarge(max)
        } else {
            IngressError::BadRequest("could not read the request body".into())
        }
    })
}
