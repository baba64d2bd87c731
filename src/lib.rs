//! hookgate: a hardened webhook receiver gateway.
//!
//! # Architecture
//!
//! Data flows one way through one module per stage:
//!
//! ```text
//! ingress ──UnverifiedRequest──▶ verify ──Verified──▶ guard ──NewEvent──▶ store
//!                                                                          │ (durable: flush + fsync,
//!                                                                          │  then the 2xx is sent)
//!                                                                          ▼
//!                                                          dispatch ──▶ internal apps
//! ```
//!
//! - [`ingress`]: axum on `server.listen`; bounds body, time, concurrency and
//!   per-IP rate; reads the raw body; maps every outcome to HTTP once.
//! - [`verify`]: one file per provider scheme; the only way to a [`verify::Verified`].
//! - [`guard`]: freshness (both directions), event id and replay markers,
//!   entity key; builds the [`store::NewEvent`].
//! - [`store`]: sled, group-committed and fsynced. **Durability happens here**:
//!   `Store::append` returns only when the event is on disk.
//! - [`dispatch`]: one worker per destination: pacing, per-entity lanes,
//!   retries, dead letters; state kept in the store.
//! - [`admin`]: health, readiness, operator API.
//! - [`config`] validates everything before a port is bound; [`clock`] injects
//!   wall time; [`secret`] keeps secrets out of logs.
//!
//! [`Gateway::open`] loads state (store, recovery) and [`Gateway::serve`] runs
//! the listeners until a [`CancellationToken`] fires; `main.rs` only wires
//! these together, and tests call the same functions on `127.0.0.1:0`.

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod field;
pub mod guard;
pub mod ingress;
pub mod metrics;
pub mod secret;
pub mod store;
pub mod verify;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::store::{Store, StoreOptions};

/// mimalloc instead of glibc's malloc: sled copies a leaf on every insert
/// and the ingest path allocates per request from many threads; under glibc
/// that showed up as ~20% of ingest CPU with arena-lock contention
/// (`bench/RESULTS.md`). Set here, not in `main.rs`, so the tests and the
/// benches run the allocator the binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (v2 and v3 alike;
/// the `-sys` crate has no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Runs `open` with mimalloc giving freed pages back to the OS at once, then
/// restores its purge delay. Opening a store with a large backlog allocates
/// and frees a lot (sled loads its page table from a snapshot); with the
/// delay that transient memory stayed resident: peak RSS with 1,000,000
/// pending went from 102 MiB to 91 MiB with the delay at 0. Outside the open
/// the delay stays: purging at once on every free cost the ingest path a
/// `madvise` (and a TLB shootdown on the other core) per freed page, ~5% of
/// its CPU and five page faults per request, measured (`bench/RESULTS.md`).
/// mimalloc reads `MIMALLOC_PURGE_DELAY` before `main`, so the variable
/// alone cannot do this; an operator's value is what gets restored.
#[allow(unsafe_code)]
fn with_prompt_purge<T>(open: impl FnOnce() -> T) -> T {
    // SAFETY: `mi_option_get`/`mi_option_set` only read and store a value in
    // mimalloc's option table (atomically); the id is a valid `mi_option_e`.
    let previous = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    let opened = open();
    // SAFETY: as above.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, previous) };
    opened
}

/// Shared state of the running gateway: a small `Clone` struct of cheap handles.
#[derive(Clone)]
pub struct AppState {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// The durable queue.
    pub store: Store,
    /// Wall clock (fixed in tests).
    pub clock: Clock,
    /// Cancelled when shutdown starts: ingress refuses new work from then on.
    pub shutdown: CancellationToken,
    /// Set once startup recovery is done.
    ready: Arc<AtomicBool>,
}

impl AppState {
    /// Ready = recovered, store healthy, not shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
            && self.store.is_healthy()
            && !self.shutdown.is_cancelled()
    }
}

/// The bound sockets the gateway serves on; bound by the caller so tests can
/// use ephemeral ports and `main` can fail before binding on bad config.
pub struct Listeners {
    /// Public ingress.
    pub ingress: TcpListener,
    /// Operator listener.
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds both listeners from the config's addresses.
    pub async fn bind(config: &Config) -> std::io::Result<Listeners> {
        Ok(Listeners {
            ingress: TcpListener::bind(config.server.listen).await?,
            admin: TcpListener::bind(config.admin.listen).await?,
        })
    }
}

/// A gateway whose state is loaded and recovered, ready to serve.
pub struct Gateway {
    state: AppState,
}

/// How long in-flight requests get to finish after shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl Gateway {
    /// Opens the store and recovers. Fails before any port is bound.
    pub fn open(config: Config, clock: Clock) -> anyhow::Result<Gateway> {
        let store = with_prompt_purge(|| {
            Store::open(StoreOptions {
                path: config.storage.path.clone(),
                dedupe_window: config.storage.dedupe_window,
                max_queue_bytes: config.storage.max_queue_bytes,
                segment_bytes: store::DEFAULT_SEGMENT_BYTES,
                commit_interval: config.storage.commit_interval,
            })
        })
        .map_err(|e| anyhow::anyhow!("storage.path {}: {e}", config.storage.path.display()))?;
        let state = AppState {
            config: Arc::new(config),
            store,
            clock,
            shutdown: CancellationToken::new(),
            ready: Arc::new(AtomicBool::new(false)),
        };
        Ok(Gateway { state })
    }

    /// The shared state (tests inspect the store through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled (or the store is poisoned), then
    /// drains: not ready → stop accepting → finish in-flight requests (bounded
    /// by [`SHUTDOWN_GRACE`]) → final flush.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let state = self.state;
        let poisoned = state.store.poisoned();
        let ingress_addr = listeners.ingress.local_addr()?;
        let admin_addr = listeners.admin.local_addr()?;
        tracing::info!(%ingress_addr, %admin_addr, "hookgate listening");

        let stop = state.shutdown.clone();
        let server = &state.config.server;
        let limits = ingress::serve::ConnLimits {
            max_connections: server.max_connections,
            header_timeout: server.header_timeout,
        };
        let ingress_task = tokio::spawn(ingress::serve::serve(
            listeners.ingress,
            ingress::router(state.clone()),
            limits,
            stop.clone(),
            SHUTDOWN_GRACE,
        ));
        // The admin listener outlives the drain, so probes see `/readyz`
        // answer 503 (not "connection refused") while ingress drains.
        let admin_stop = CancellationToken::new();
        let admin_task = tokio::spawn(ingress::serve::serve(
            listeners.admin,
            admin::router(state.clone()),
            ingress::serve::ConnLimits {
                max_connections: 256,
                ..limits
            },
            admin_stop.clone(),
            Duration::from_secs(1),
        ));
        let housekeeping = tokio::spawn(housekeeping(state.clone()));
        let dispatch_stop = CancellationToken::new();
        let dispatcher =
            dispatch::Dispatcher::start(&state.config, &state.store, &state.clock, &dispatch_stop)?;
        state.ready.store(true, Ordering::SeqCst);

        let reason = tokio::select! {
            _ = shutdown.cancelled() => "signal",
            _ = poisoned.cancelled() => "store poisoned",
        };
        tracing::info!(reason, "shutting down");
        stop.cancel();
        housekeeping.abort();
        // Awaited so no task holding the state outlives `serve`.
        let _ = housekeeping.await;
        // `serve` bounds its own drain by SHUTDOWN_GRACE.
        let _ = ingress_task.await;
        dispatch_stop.cancel();
        dispatcher.join().await;
        let flushed = state.store.close().await;
        admin_stop.cancel();
        let _ = admin_task.await;
        if poisoned.is_cancelled() {
            anyhow::bail!("store poisoned: exiting so a supervisor can restart hookgate");
        }
        flushed.map_err(|e| anyhow::anyhow!("final flush failed: {e}"))?;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Periodic upkeep that is not on any request path: expiring dedupe markers
/// and deleting delivered events past `storage.retention`.
async fn housekeeping(state: AppState) {
    // The first pass waits a period: startup (recovery) is busy enough.
    let start = tokio::time::Instant::now() + HOUSEKEEPING_EVERY;
    let mut tick = tokio::time::interval_at(start, HOUSEKEEPING_EVERY);
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        tick.tick().await;
        let store = state.store.clone();
        let now = state.clock.now_ms();
        let retention_ms =
            i64::try_from(state.config.storage.retention.as_millis()).unwrap_or(i64::MAX);
        let from = cursor.take();
        let swept = tokio::task::spawn_blocking(move || {
            let (markers, next) = store.sweep_dedupe(now, from, DEDUPE_SWEEP_KEYS)?;
            let events = store.expire_delivered(now, retention_ms)?;
            Ok::<_, store::StoreError>((markers, next, events))
        })
        .await;
        match swept {
            Ok(Ok((markers, next, events))) => {
                cursor = next;
                if markers + events > 0 {
                    tracing::info!(
                        markers,
                        events,
                        "expired dedupe markers and delivered events"
                    );
                }
                if events > 0 {
                    reclaim_segments(&state.store).await;
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "housekeeping failed"),
            Err(_) => {}
        }
    }
}

/// Deletes the event-log segments that expired events emptied, once those
/// deletions are durable (a crash must not revive a locator into a deleted
/// segment).
async fn reclaim_segments(store: &Store) {
    if let Err(e) = store.sync().await {
        tracing::warn!(error = %e, "housekeeping: flush before reclaiming segments failed");
        return;
    }
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.reclaim_segments()).await {
        Ok(Ok(segments)) if segments > 0 => {
            tracing::info!(segments, "deleted event-log segments emptied by retention");
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "housekeeping: reclaiming segments failed"),
        _ => {}
    }
}

/// Dedupe marker buckets visited per housekeeping pass (bounded work per minute).
pub const DEDUPE_SWEEP_KEYS: usize = 50_000;

/// How often housekeeping runs.
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);
