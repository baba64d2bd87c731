//! The operator API under `/api`: search and inspect events, replay, dead
//! letters and redrive, pause and resume. Handlers parse, call one store
//! query (scans run on the blocking pool) and shape JSON; errors go through
//! [`ApiError`] only.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use crate::store::query::{DeadLetterFilter, EventFilter, EventStatus, SCAN_BUDGET};
use crate::store::{DeadLetter, Seq, Store, StoreError, StoredEvent};
use crate::AppState;

/// Default page size of list endpoints.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size a caller may ask for.
pub const MAX_LIMIT: usize = 1000;
/// Most dead letters one redrive call moves (call again for the rest).
pub const MAX_REDRIVE: usize = 100_000;

/// The `/api` routes (authentication is layered on by the caller).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(list_events))
        .route("/events/{id}", get(show_event))
        .route("/events/{id}/replay", post(replay_event))
        .route("/dead-letters", get(list_dead_letters))
        .route("/dead-letters/redrive", post(redrive))
        .route("/destinations", get(list_destinations))
        .route("/destinations/{name}/pause", post(pause))
        .route("/destinations/{name}/resume", post(resume))
}

/// Runs a store call on the blocking pool (sled scans block).
async fn blocking<T, F>(store: &Store, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
{
    // Events acknowledged before this request are indexed before it reads.
    store.caught_up().await;
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|_| ApiError::Task)?
        .map_err(ApiError::from)
}

fn parse_id(id: &str) -> Result<Seq, ApiError> {
    Seq::parse_event_id(id)
        .ok_or_else(|| ApiError::BadRequest(format!("malformed event id `{id}`")))
}

fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        0 => Err(ApiError::BadRequest("limit must be at least 1".into())),
        n if n > MAX_LIMIT => Err(ApiError::BadRequest(format!(
            "limit must be at most {MAX_LIMIT}"
        ))),
        n => Ok(n),
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// Query of `GET /api/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    source: Option<String>,
    status: Option<String>,
    entity: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
}

fn summary(event: &StoredEvent, status: EventStatus) -> Value {
    json!({
        "id": event.seq.to_event_id(),
        "source": event.meta.source,
        "provider_event_id": event.meta.provider_event_id,
        "entity": event.meta.entity,
        "received_at_ms": event.meta.received_at_ms,
        "status": status,
        "destinations": event.meta.destinations,
    })
}

async fn list_events(
    State(state): State<AppState>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let limit = page_limit(q.limit)?;
    let after = q.after.as_deref().map(parse_id).transpose()?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(EventStatus::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status must be pending, delivered or dead_letter, not `{s}`"
            ))
        })?),
    };
    let filter = EventFilter {
        source: q.source.filter(|s| !s.is_empty()),
        status,
        entity: q.entity.filter(|s| !s.is_empty()),
        since_ms: q.since_ms,
        until_ms: q.until_ms,
    };
    let page = blocking(&state.store, move |s| {
        s.search_events(&filter, after, limit, SCAN_BUDGET)
    })
    .await?;
    let events: Vec<Value> = page.events.iter().map(|(e, s)| summary(e, *s)).collect();
    Ok(Json(json!({
        "events": events,
        "next": page.next.map(Seq::to_event_id),
    })))
}

async fn show_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let seq = parse_id(&id)?;
    let found = blocking(&state.store, move |s| {
        if seq > s.durable_seq() {
            return Ok(None);
        }
        let Some(event) = s.get(seq)? else {
            return Ok(None);
        };
        let status = s.event_status(&event)?;
        let dests = s.destination_states(&event, true)?;
        Ok(Some((event, status, dests)))
    })
    .await?;
    let (event, status, dests) =
        found.ok_or_else(|| ApiError::NotFound(format!("no event `{id}`")))?;
    let (body, base64) = match std::str::from_utf8(&event.body) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&event.body),
            true,
        ),
    };
    let headers: Vec<Value> = event
        .meta
        .headers
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let mut out = summary(&event, status);
    if let Value::Object(map) = &mut out {
        map.insert(
            "provider_time_ms".into(),
            json!(event.meta.provider_time_ms),
        );
        map.insert("content_type".into(), json!(event.meta.content_type));
        map.insert("headers".into(), json!(headers));
        map.insert("body".into(), json!(body));
        map.insert("body_base64".into(), json!(base64));
        map.insert("delivery".into(), json!(dests));
    }
    Ok(Json(out))
}

async fn replay_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let seq = parse_id(&id)?;
    let queued = blocking(&state.store, move |s| s.replay(seq))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no event `{id}`")))?;
    tracing::info!(id = %seq.to_event_id(), destinations = ?queued, "operator replayed an event");
    Ok(Json(json!({
        "status": "queued",
        "id": seq.to_event_id(),
        "destinations": queued,
    })))
}

fn letter_json(letter: &DeadLetter) -> Value {
    json!({
        "id": Seq(letter.seq).to_event_id(),
        "destination": letter.destination,
        "attempts": letter.attempts,
        "last_error": letter.last_error,
        "dead_at_ms": letter.dead_at_ms,
        "entity": letter.entity,
    })
}

/// Query of `GET /api/dead-letters`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLettersQuery {
    destination: Option<String>,
    limit: Option<usize>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
}

async fn list_dead_letters(
    State(state): State<AppState>,
    q: Result<Query<DeadLettersQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let limit = page_limit(q.limit)?;
    let filter = DeadLetterFilter {
        destination: q.destination.filter(|s| !s.is_empty()),
        seq: None,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
    };
    let (letters, truncated) =
        blocking(&state.store, move |s| s.find_dead_letters(&filter, limit)).await?;
    let letters: Vec<Value> = letters.iter().map(letter_json).collect();
    Ok(Json(
        json!({"dead_letters": letters, "truncated": truncated}),
    ))
}

/// Body of `POST /api/dead-letters/redrive`: one (`destination` + `id`), a
/// filter (`destination` and/or a `dead_at` time range), or `all: true`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    destination: Option<String>,
    id: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    #[serde(default)]
    all: bool,
}

async fn redrive(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let req: RedriveRequest = if body.is_empty() {
        RedriveRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid redrive request: {e}")))?
    };
    let seq = req.id.as_deref().map(parse_id).transpose()?;
    let selects = req.destination.is_some()
        || seq.is_some()
        || req.since_ms.is_some()
        || req.until_ms.is_some();
    if !selects && !req.all {
        return Err(ApiError::BadRequest(
            "say what to redrive: destination, id, since_ms/until_ms, or all: true".into(),
        ));
    }
    if let Some(dest) = &req.destination {
        known_destination(&state, dest)?;
    }
    let filter = DeadLetterFilter {
        destination: req.destination,
        seq,
        since_ms: req.since_ms,
        until_ms: req.until_ms,
    };
    let (moved, more) = blocking(&state.store, move |s| {
        let (letters, more) = s.find_dead_letters(&filter, MAX_REDRIVE)?;
        let mut moved = Vec::with_capacity(letters.len());
        for letter in letters {
            if s.redrive(&letter.destination, Seq(letter.seq))? {
                moved.push(letter);
            }
        }
        Ok((moved, more))
    })
    .await?;
    if seq.is_some() && moved.is_empty() {
        return Err(ApiError::NotFound("no matching dead letter".into()));
    }
    tracing::info!(count = moved.len(), "operator redrove dead letters");
    let ids: Vec<Value> = moved
        .iter()
        .map(|l| json!({"id": Seq(l.seq).to_event_id(), "destination": l.destination}))
        .collect();
    Ok(Json(json!({
        "status": "queued",
        "redriven": moved.len(),
        "items": ids,
        "more": more,
    })))
}

fn known_destination(state: &AppState, name: &str) -> Result<(), ApiError> {
    if state.config.destinations.contains_key(name) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("no destination `{name}`")))
    }
}

async fn list_destinations(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let names: Vec<String> = state.config.destinations.keys().cloned().collect();
    let rows = blocking(&state.store, move |s| {
        let mut rows = BTreeMap::new();
        for name in names {
            let paused = s.is_paused(&name)?;
            let pending = s.pending_count(&name);
            let oldest = s.oldest_pending_received_ms(&name)?;
            rows.insert(
                name,
                json!({"paused": paused, "pending": pending, "oldest_pending_received_at_ms": oldest}),
            );
        }
        Ok(rows)
    })
    .await?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|(name, mut v)| {
            if let Value::Object(m) = &mut v {
                m.insert("destination".into(), json!(name));
            }
            v
        })
        .collect();
    Ok(Json(json!({"destinations": list})))
}

async fn set_paused(state: &AppState, name: &str, paused: bool) -> Result<Json<Value>, ApiError> {
    known_destination(state, name)?;
    state
        .store
        .set_paused(name, paused, state.clock.now_ms())
        .await?;
    tracing::info!(destination = %name, paused, "operator changed destination pause");
    Ok(Json(json!({"destination": name, "paused": paused})))
}

async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(&state, &name, true).await
}

async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(&state, &name, false).await
}
