//! Telemetry: the gateway's Prometheus metrics, in one place.
//!
//! Invariants:
//! - Every metric name is a constant in [`names`]; dashboards and alerts
//!   depend on them, so a rename is a visible diff here.
//! - Labels are low-cardinality only: `source`, `destination`, `outcome`.
//!   Never an event id or an entity key. A source name taken from the request
//!   path is replaced by [`UNKNOWN_SOURCE`] unless it is configured, so a
//!   scanner cannot create series at will.
//! - One process-wide registry ([`global`]): ingress and dispatch record into
//!   it without a handle being threaded through every call, and `/metrics`
//!   renders it. Several gateways in one process (tests) share it, so tests
//!   assert on counters moving, not on absolute values.
//! - Gauges that describe the queue (pending events, oldest pending age,
//!   paused flag) are computed from the store at scrape time, so they are
//!   right after a restart without any bookkeeping.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::Store;

/// Metric names (without the `_total` suffix the text format adds to counters).
pub mod names {
    /// Counter: ingress requests by `source` and `outcome`.
    pub const INGRESS_REQUESTS: &str = "hookgate_ingress_requests";
    /// Histogram: seconds from request start to the answer, by `source`.
    pub const INGRESS_ACK_SECONDS: &str = "hookgate_ingress_ack_seconds";
    /// Gauge: pending deliveries per `destination` (scrape time).
    pub const PENDING_EVENTS: &str = "hookgate_pending_events";
    /// Gauge: age in seconds of the oldest pending delivery per `destination`.
    pub const OLDEST_PENDING_AGE_SECONDS: &str = "hookgate_oldest_pending_age_seconds";
    /// Gauge: 1 while a `destination` is paused by an operator.
    pub const DESTINATION_PAUSED: &str = "hookgate_destination_paused";
    /// Counter: delivery attempts by `destination` and `outcome`.
    pub const DELIVERIES: &str = "hookgate_deliveries";
    /// Histogram: seconds one delivery attempt took, by `destination`.
    pub const DELIVERY_SECONDS: &str = "hookgate_delivery_seconds";
    /// Counter: attempts that ended in a scheduled retry, by `destination`.
    pub const DELIVERY_RETRIES: &str = "hookgate_delivery_retries";
    /// Counter: deliveries moved to the dead-letter list, by `destination`.
    pub const DEAD_LETTERS: &str = "hookgate_dead_letters";
    /// Histogram: seconds spent waiting for a pacer permit, by `destination`.
    pub const RATE_LIMIT_WAIT_SECONDS: &str = "hookgate_rate_limit_wait_seconds";
    /// Counter: events released ahead of an earlier arrival by the reorder
    /// window, by `source`.
    pub const EVENTS_REORDERED: &str = "hookgate_events_reordered";
    /// Counter: late events (older than what their lane delivered), by
    /// `source` and `outcome` (the `on_late` policy applied).
    pub const LATE_EVENTS: &str = "hookgate_late_events";
}

/// Ingress outcomes used as the `outcome` label (the stable response codes).
pub const INGRESS_OUTCOMES: [&str; 9] = [
    "accepted",
    "duplicate",
    "invalid_signature",
    "stale_timestamp",
    "payload_too_large",
    "unknown_source",
    "rate_limited",
    "unavailable",
    "bad_request",
];

/// The `source` label of requests to a source that is not configured.
pub const UNKNOWN_SOURCE: &str = "(unknown)";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceOutcome {
    source: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestLabel {
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestOutcome {
    destination: String,
    outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets: 1 ms to ~65 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric the gateway exports, registered in one registry.
pub struct Metrics {
    registry: Registry,
    ingress: Family<SourceOutcome, Counter>,
    ack: HistogramFamily<SourceLabel>,
    pending: Family<DestLabel, Gauge>,
    oldest_age: Family<DestLabel, Gauge>,
    paused: Family<DestLabel, Gauge>,
    deliveries: Family<DestOutcome, Counter>,
    delivery_latency: HistogramFamily<DestLabel>,
    retries: Family<DestLabel, Counter>,
    dead_letters: Family<DestLabel, Counter>,
    rate_wait: HistogramFamily<DestLabel>,
    reordered: Family<SourceLabel, Counter>,
    late: Family<SourceOutcome, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let ingress = Family::<SourceOutcome, Counter>::default();
        let ack = HistogramFamily::<SourceLabel>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let pending = Family::<DestLabel, Gauge>::default();
        let oldest_age = Family::<DestLabel, Gauge>::default();
        let paused = Family::<DestLabel, Gauge>::default();
        let deliveries = Family::<DestOutcome, Counter>::default();
        let delivery_latency = HistogramFamily::<DestLabel>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let retries = Family::<DestLabel, Counter>::default();
        let dead_letters = Family::<DestLabel, Counter>::default();
        let rate_wait = HistogramFamily::<DestLabel>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            names::INGRESS_REQUESTS,
            "Ingress requests by source and outcome",
            ingress.clone(),
        );
        registry.register(
            names::INGRESS_ACK_SECONDS,
            "Time from request start to the provider's answer",
            ack.clone(),
        );
        registry.register(
            names::PENDING_EVENTS,
            "Deliveries waiting per destination",
            pending.clone(),
        );
        registry.register(
            names::OLDEST_PENDING_AGE_SECONDS,
            "Age of the oldest waiting delivery per destination",
            oldest_age.clone(),
        );
        registry.register(
            names::DESTINATION_PAUSED,
            "1 while an operator has paused the destination",
            paused.clone(),
        );
        registry.register(
            names::DELIVERIES,
            "Delivery attempts by destination and outcome",
            deliveries.clone(),
        );
        registry.register(
            names::DELIVERY_SECONDS,
            "Duration of one delivery attempt",
            delivery_latency.clone(),
        );
        registry.register(
            names::DELIVERY_RETRIES,
            "Delivery attempts that ended in a scheduled retry",
            retries.clone(),
        );
        registry.register(
            names::DEAD_LETTERS,
            "Deliveries moved to the dead-letter list",
            dead_letters.clone(),
        );
        registry.register(
            names::RATE_LIMIT_WAIT_SECONDS,
            "Time a delivery waited for its destination's rate limit",
            rate_wait.clone(),
        );
        let reordered = Family::<SourceLabel, Counter>::default();
        registry.register(
            names::EVENTS_REORDERED,
            "Events the reorder window released ahead of an earlier arrival",
            reordered.clone(),
        );
        let late = Family::<SourceOutcome, Counter>::default();
        registry.register(
            names::LATE_EVENTS,
            "Late events by the on_late policy applied",
            late.clone(),
        );
        Metrics {
            registry,
            ingress,
            ack,
            pending,
            oldest_age,
            paused,
            deliveries,
            delivery_latency,
            retries,
            dead_letters,
            rate_wait,
            reordered,
            late,
        }
    }
}

/// The process-wide metrics (created on first use).
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Records one answered ingress request. `source` must already be a
/// configured source name or [`UNKNOWN_SOURCE`] (see the module invariants).
pub fn ingress_request(source: &str, outcome: &str, took: Duration) {
    let m = global();
    m.ingress
        .get_or_create(&SourceOutcome {
            source: source.to_string(),
            outcome: outcome.to_string(),
        })
        .inc();
    m.ack
        .get_or_create(&SourceLabel {
            source: source.to_string(),
        })
        .observe(took.as_secs_f64());
}

/// Records one finished delivery attempt, as dispatch classified it:
/// `outcome` is the attempt record's (`delivered`, `retry`, `dead_letter`,
/// `dropped_late`, `late_dead_letter`).
/// A `retry` also counts in the retries counter and a `dead_letter` in the
/// dead-letters counter, so dispatch makes exactly one call per attempt.
pub fn delivery_attempt(destination: &str, outcome: &str, took: Duration) {
    let m = global();
    let dest = DestLabel {
        destination: destination.to_string(),
    };
    m.deliveries
        .get_or_create(&DestOutcome {
            destination: destination.to_string(),
            outcome: outcome.to_string(),
        })
        .inc();
    m.delivery_latency
        .get_or_create(&dest)
        .observe(took.as_secs_f64());
    match outcome {
        "retry" => {
            m.retries.get_or_create(&dest).inc();
        }
        "dead_letter" | "late_dead_letter" => {
            m.dead_letters.get_or_create(&dest).inc();
        }
        _ => {}
    }
}

/// Counts an event the reorder window moved ahead of an earlier arrival.
pub fn event_reordered(source: &str) {
    global()
        .reordered
        .get_or_create(&SourceLabel {
            source: source.to_string(),
        })
        .inc();
}

/// Counts a late event and the `on_late` policy applied to it.
pub fn late_event(source: &str, policy: &str) {
    global()
        .late
        .get_or_create(&SourceOutcome {
            source: source.to_string(),
            outcome: policy.to_string(),
        })
        .inc();
}

/// Records how long a delivery waited for its destination's pacer permit.
pub fn rate_limit_waited(destination: &str, waited: Duration) {
    global()
        .rate_wait
        .get_or_create(&DestLabel {
            destination: destination.to_string(),
        })
        .observe(waited.as_secs_f64());
}

/// Refreshes the queue gauges from the store for `destinations`. A scan per
/// destination: called at scrape time, never on a request path.
pub fn refresh_queue_gauges<'a>(
    store: &Store,
    destinations: impl IntoIterator<Item = &'a str>,
    now_ms: i64,
) {
    let m = global();
    for name in destinations {
        let dest = DestLabel {
            destination: name.to_string(),
        };
        let count = i64::try_from(store.pending_count(name)).unwrap_or(i64::MAX);
        m.pending.get_or_create(&dest).set(count);
        let age_s = match store.oldest_pending_received_ms(name) {
            Ok(Some(at)) => now_ms.saturating_sub(at).max(0) / 1000,
            _ => 0,
        };
        m.oldest_age.get_or_create(&dest).set(age_s);
        let paused = i64::from(store.is_paused(name).unwrap_or(false));
        m.paused.get_or_create(&dest).set(paused);
    }
}

/// The registry in Prometheus text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &global().registry).is_err() {
        tracing::error!("cannot encode metrics");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_labels_and_total_suffix() {
        ingress_request("unit_src", "accepted", Duration::from_millis(3));
        delivery_attempt("unit_dest", "retry", Duration::from_millis(5));
        delivery_attempt("unit_dest", "dead_letter", Duration::from_millis(5));
        rate_limit_waited("unit_dest", Duration::from_millis(1));
        let text = render();
        assert!(text
            .contains("hookgate_ingress_requests_total{source=\"unit_src\",outcome=\"accepted\"}"));
        assert!(text.contains("hookgate_delivery_retries_total{destination=\"unit_dest\"}"));
        assert!(text.contains("hookgate_dead_letters_total{destination=\"unit_dest\"}"));
        assert!(text.contains("hookgate_rate_limit_wait_seconds_bucket"));
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
