//! One destination's delivery loop: pages pending deliveries from the store,
//! keeps per-entity lanes, and sends at the destination's pace.
//!
//! Scheduling rules (the ordering guarantee lives here):
//! - The window holds a contiguous run of the destination's pending
//!   deliveries, loaded in sequence order and bounded by [`WINDOW`]; a
//!   later page only ever holds higher sequences.
//! - A lane's order is sequence order, or, for a source with a reorder
//!   window, provider time then sequence: each event is held until its
//!   release time, and an event that sorts before a held head takes its
//!   place. An event older than what its lane already delivered is late and
//!   follows the source's `on_late`. Reordering works within the window:
//!   an event more than [`WINDOW`] deliveries behind is not seen in time.
//! - A lane (same source + entity key) has at most one delivery in flight,
//!   and only its head is ever scheduled. Events without an entity key have a
//!   lane of their own each, so they flow in parallel.
//! - A retry waits in a timer set; its lane waits with it; other lanes go on.
//! - In flight ≤ `concurrency`; each request first takes a pacer permit.
//! - The loop is woken by the store (new durable events), by completions, by
//!   the next retry deadline, or by cancellation; it never polls on a fixed
//!   sleep.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::outbound::Outbound;
use super::pacer::Pacer;
use super::retry::{decide, AttemptResult, Decision};
use crate::clock::Clock;
use crate::config::{DeadLetterPolicy, DestinationConfig, LatePolicy};
use crate::store::{AttemptRecord, DeadLetter, PendingState, Seq, Store, StoreError, Transition};

/// Most pending deliveries held in memory per destination.
pub const WINDOW: usize = 4096;

/// How long in-flight deliveries get to finish at shutdown.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

struct Slot {
    state: PendingState,
    lane: Option<String>,
    in_flight: bool,
}

/// One (source, entity) lane: its loaded deliveries in delivery order, the
/// one currently scheduled or in flight, and the newest provider time it
/// has delivered (for late-event detection).
#[derive(Default)]
struct Lane {
    queue: BTreeSet<(i64, Seq)>,
    active: Option<Seq>,
    mark: Option<Option<i64>>,
}

/// Delivery order inside a lane: provider time when the source restores it
/// (reorder window), then sequence; without a window, sequence alone.
fn lane_key(state: &PendingState, seq: Seq) -> (i64, Seq) {
    (state.order_ms.unwrap_or(i64::MIN), seq)
}

/// What an attempt task reports back.
struct Finished {
    seq: Seq,
    attempt: u32,
    started_ms: i64,
    result: AttemptResult,
    took: Duration,
}

/// The per-destination loop's state.
pub struct Worker {
    dest: Arc<DestinationConfig>,
    store: Store,
    clock: Clock,
    outbound: Outbound,
    pacer: Option<Arc<Pacer>>,
    window: BTreeMap<Seq, Slot>,
    lanes: HashMap<String, Lane>,
    late_policy: HashMap<String, LatePolicy>,
    ready: BTreeSet<Seq>,
    timers: BTreeSet<(i64, Seq)>,
    cursor: Option<Seq>,
    in_flight: JoinSet<Finished>,
    /// Finished deliveries waiting for their record to be flushed, in
    /// generation order.
    settling: VecDeque<(u64, Seq)>,
    /// An operator paused this destination: nothing new is started.
    paused: bool,
}

impl Worker {
    /// Prepares the worker (HTTP client, pacer thread).
    pub fn new(
        dest: Arc<DestinationConfig>,
        late_policy: HashMap<String, LatePolicy>,
        store: Store,
        clock: Clock,
    ) -> anyhow::Result<Worker> {
        let outbound = Outbound::new(&dest)?;
        let pacer = match dest.rate {
            Some(rate) => Some(Arc::new(Pacer::start(&dest.name, rate, dest.burst)?)),
            None => None,
        };
        Ok(Worker {
            dest,
            store,
            clock,
            outbound,
            pacer,
            window: BTreeMap::new(),
            lanes: HashMap::new(),
            late_policy,
            ready: BTreeSet::new(),
            timers: BTreeSet::new(),
            cursor: None,
            in_flight: JoinSet::new(),
            settling: VecDeque::new(),
            paused: false,
        })
    }

    /// Runs until `cancel`, then lets in-flight deliveries finish within
    /// [`DRAIN_GRACE`]; whatever does not finish stays pending in the store.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), StoreError> {
        let mut durable = self.store.watch_durable();
        let mut epoch = self.store.watch_dispatch();
        let mut reset = false;
        self.paused = self.store.is_paused(&self.dest.name)?;
        loop {
            // State changed behind our back (redrive, replay, resume): rebuild
            // the window from the store once nothing is in flight, so lanes
            // see the change in sequence order.
            self.finish_settled();
            if reset && self.in_flight.is_empty() && self.settling.is_empty() {
                self.window.clear();
                self.lanes.clear();
                self.ready.clear();
                self.timers.clear();
                self.cursor = None;
                // Pause and resume arrive as the same wake-up as a redrive.
                self.paused = self.store.is_paused(&self.dest.name)?;
                reset = false;
            }
            if self.window.len() < WINDOW / 2 && !reset {
                self.load()?;
            }
            self.promote_due();
            if !reset && !self.paused {
                self.start_ready();
            }
            let next_timer = self.timers.first().map(|(at, _)| *at);
            let sleep = next_timer.map(|at| {
                Duration::from_millis(u64::try_from(at - self.clock.now_ms()).unwrap_or(0))
            });
            tokio::select! {
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    if let Ok(done) = done {
                        self.finish(done)?;
                    }
                }
                _ = tokio::time::sleep(sleep.unwrap_or(Duration::ZERO)), if sleep.is_some() => {}
                changed = durable.changed() => {
                    if changed.is_err() || durable.borrow().poisoned {
                        break;
                    }
                }
                changed = epoch.changed() => {
                    if changed.is_ok() {
                        reset = true;
                    }
                }
                _ = cancel.cancelled() => break,
            }
        }
        let drain = async {
            while let Some(done) = self.in_flight.join_next().await {
                if let Ok(done) = done {
                    self.finish(done)?;
                }
            }
            Ok::<(), StoreError>(())
        };
        match tokio::time::timeout(DRAIN_GRACE, drain).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(destination = %self.dest.name, "deliveries still in flight at shutdown stay pending");
                Ok(())
            }
        }
    }

    /// Loads the next page of pending deliveries into the window.
    fn load(&mut self) -> Result<(), StoreError> {
        let room = WINDOW - self.window.len();
        let page = self
            .store
            .pending_after(&self.dest.name, self.cursor, room)?;
        for (seq, state) in page {
            self.cursor = Some(seq);
            let lane = state.lane();
            if let Some(key) = &lane {
                let order = lane_key(&state, seq);
                self.lanes
                    .entry(key.clone())
                    .or_default()
                    .queue
                    .insert(order);
            }
            self.window.insert(
                seq,
                Slot {
                    state,
                    lane: lane.clone(),
                    in_flight: false,
                },
            );
            match lane {
                Some(key) => self.refresh_lane(&key),
                None => self.schedule(seq),
            }
        }
        Ok(())
    }

    /// Makes the lane's first delivery the scheduled one. A newly loaded
    /// event that sorts before a held (not yet sent) head takes its place:
    /// that is the reorder window at work. An in-flight head is never
    /// preempted.
    fn refresh_lane(&mut self, key: &str) {
        let Some(lane) = self.lanes.get(key) else {
            return;
        };
        let head = lane.queue.first().map(|(_, s)| *s);
        let active = lane.active;
        match (active, head) {
            (Some(a), Some(h)) if a == h => {}
            (Some(a), _) if self.window.get(&a).is_some_and(|s| s.in_flight) => {}
            (_, None) => {
                if let Some(a) = active {
                    self.unschedule(a);
                }
                self.lanes.remove(key);
            }
            (previous, Some(h)) => {
                if let Some(a) = previous {
                    self.unschedule(a);
                    tracing::debug!(destination = %self.dest.name, held = a.0, first = h.0, "reordered by provider time");
                    if let Some(slot) = self.window.get(&h) {
                        crate::metrics::event_reordered(&slot.state.source);
                    }
                }
                if let Some(lane) = self.lanes.get_mut(key) {
                    lane.active = Some(h);
                }
                self.schedule(h);
            }
        }
    }

    fn unschedule(&mut self, seq: Seq) {
        self.ready.remove(&seq);
        if let Some(slot) = self.window.get(&seq) {
            self.timers.remove(&(slot.state.next_at_ms, seq));
        }
    }

    /// True when a newer provider time was already delivered on this lane.
    fn is_late(&mut self, seq: Seq) -> Result<bool, StoreError> {
        let Some(slot) = self.window.get(&seq) else {
            return Ok(false);
        };
        let (Some(key), Some(pt)) = (slot.lane.clone(), slot.state.provider_time_ms) else {
            return Ok(false);
        };
        let Some(lane) = self.lanes.get_mut(&key) else {
            return Ok(false);
        };
        if lane.mark.is_none() {
            lane.mark = Some(self.store.lane_mark(&self.dest.name, &key)?);
        }
        Ok(lane.mark.flatten().is_some_and(|mark| pt < mark))
    }

    /// Puts a lane head where it belongs: ready, waiting for a timer, or
    /// nowhere while its lane is blocked behind a dead letter.
    fn schedule(&mut self, seq: Seq) {
        let Some(slot) = self.window.get(&seq) else {
            return;
        };
        if slot.state.blocked {
            return;
        }
        if slot.state.next_at_ms <= self.clock.now_ms() {
            self.ready.insert(seq);
        } else {
            self.timers.insert((slot.state.next_at_ms, seq));
        }
    }

    fn promote_due(&mut self) {
        let now = self.clock.now_ms();
        while let Some(&(at, seq)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.ready.insert(seq);
        }
    }

    /// Starts attempts, lowest sequence first, up to `concurrency` in flight.
    fn start_ready(&mut self) {
        while self.in_flight.len() < self.dest.concurrency.get() {
            let Some(seq) = self.ready.pop_first() else {
                break;
            };
            let Some(slot) = self.window.get(&seq) else {
                continue;
            };
            let attempt = slot.state.attempts + 1;
            let source = slot.state.source.clone();
            let late = match self.is_late(seq) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(destination = %self.dest.name, error = %e, "cannot read lane mark");
                    false
                }
            };
            if late {
                let policy = self
                    .late_policy
                    .get(&source)
                    .copied()
                    .unwrap_or(LatePolicy::Deliver);
                crate::metrics::late_event(&source, policy.as_str());
                tracing::info!(destination = %self.dest.name, source = %source, seq = seq.0, ?policy, "late event");
                if policy != LatePolicy::Deliver {
                    if let Err(e) = self.settle_late(seq, attempt, policy) {
                        tracing::error!(destination = %self.dest.name, error = %e, "cannot record late event");
                    }
                    continue;
                }
            }
            let event = match self.store.get(seq) {
                Ok(Some(e)) => e,
                Ok(None) => {
                    // The event record is gone (should not happen: retention keeps
                    // undelivered events). Drop the orphan entry so the lane moves.
                    tracing::error!(destination = %self.dest.name, seq = seq.0, "pending delivery without its event; dropping it");
                    self.finish_slot(seq);
                    continue;
                }
                Err(e) => {
                    tracing::error!(destination = %self.dest.name, seq = seq.0, error = %e, "cannot read event; will retry");
                    self.timers.insert((self.clock.now_ms() + 1000, seq));
                    continue;
                }
            };
            if let Some(slot) = self.window.get_mut(&seq) {
                slot.in_flight = true;
            }
            let dest_name = self.dest.name.clone();
            let outbound = self.outbound.clone();
            let pacer = self.pacer.clone();
            let clock = self.clock.clone();
            self.in_flight.spawn(async move {
                if let Some(p) = &pacer {
                    let waited = p.acquire().await;
                    crate::metrics::rate_limit_waited(&dest_name, waited);
                }
                let started_ms = clock.now_ms();
                let (result, took) = outbound.send(&event, attempt, started_ms, late).await;
                Finished {
                    seq,
                    attempt,
                    started_ms,
                    result,
                    took,
                }
            });
        }
    }

    /// A late event under `dead_letter` or `drop`: recorded without sending.
    fn settle_late(
        &mut self,
        seq: Seq,
        attempt: u32,
        policy: LatePolicy,
    ) -> Result<(), StoreError> {
        let Some(slot) = self.window.get(&seq) else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let (outcome, transition) = match policy {
            LatePolicy::Drop => ("dropped_late", Transition::Dropped),
            _ => (
                "late_dead_letter",
                Transition::Dead {
                    letter: DeadLetter {
                        seq: seq.0,
                        destination: self.dest.name.clone(),
                        attempts: 0,
                        last_error: "late: its entity already delivered a newer event".into(),
                        dead_at_ms: now,
                        entity: slot.state.entity.clone(),
                    },
                    block: false,
                    pending: slot.state.clone(),
                },
            ),
        };
        let record = AttemptRecord {
            attempt,
            at_ms: now,
            duration_ms: 0,
            status: None,
            error: Some("late event".into()),
            outcome: outcome.into(),
        };
        let generation =
            self.store
                .record_attempt(&self.dest.name, seq, &record, &transition, now)?;
        crate::metrics::delivery_attempt(&self.dest.name, outcome, Duration::ZERO);
        self.settle(seq, generation);
        Ok(())
    }

    /// Records an attempt's outcome and moves the lane on (or not).
    fn finish(&mut self, done: Finished) -> Result<(), StoreError> {
        let Some(slot) = self.window.get(&done.seq) else {
            return Ok(());
        };
        let jitter: f64 = rand::rng().random();
        let decision = decide(
            &done.result,
            done.attempt,
            self.dest.max_attempts.get(),
            self.dest.backoff,
            jitter,
        );
        let (status, error) = match &done.result {
            AttemptResult::Response { status, .. } => (Some(*status), None),
            AttemptResult::Failed(e) => (None, Some(e.clone())),
        };
        let outcome = match decision {
            Decision::Delivered => "delivered",
            Decision::Retry(_) => "retry",
            Decision::GiveUp => "dead_letter",
        };
        let record = AttemptRecord {
            attempt: done.attempt,
            at_ms: done.started_ms,
            duration_ms: u64::try_from(done.took.as_millis()).unwrap_or(u64::MAX),
            status,
            error: error.clone(),
            outcome: outcome.to_string(),
        };
        tracing::info!(
            destination = %self.dest.name,
            id = %done.seq.to_event_id(),
            entity = slot.state.entity.as_deref().unwrap_or(""),
            attempt = done.attempt,
            ?status,
            error = error.as_deref().unwrap_or(""),
            outcome,
            latency_ms = u64::try_from(done.took.as_millis()).unwrap_or(u64::MAX),
            "delivery attempt"
        );
        let now = self.clock.now_ms();
        let slot_lane = slot.lane.clone();
        let provider_time = slot.state.provider_time_ms;
        let mut state = slot.state.clone();
        state.attempts = done.attempt;
        let transition = match decision {
            Decision::Delivered => Transition::Delivered,
            Decision::Retry(after) => {
                state.next_at_ms = now + i64::try_from(after.as_millis()).unwrap_or(i64::MAX / 2);
                Transition::Retry(state.clone())
            }
            Decision::GiveUp => {
                let block = self.dest.on_dead_letter == DeadLetterPolicy::Block;
                state.blocked = block;
                let last_error = match (status, &error) {
                    (Some(s), _) => format!("http status {s}"),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "unknown".into(),
                };
                tracing::warn!(destination = %self.dest.name, seq = done.seq.0, attempts = done.attempt, last_error, block, "dead letter");
                Transition::Dead {
                    letter: DeadLetter {
                        seq: done.seq.0,
                        destination: self.dest.name.clone(),
                        attempts: done.attempt,
                        last_error,
                        dead_at_ms: now,
                        entity: state.entity.clone(),
                    },
                    block,
                    pending: state.clone(),
                }
            }
        };
        let generation =
            self.store
                .record_attempt(&self.dest.name, done.seq, &record, &transition, now)?;
        crate::metrics::delivery_attempt(&self.dest.name, outcome, done.took);
        if let (Transition::Delivered, Some(key), Some(pt)) =
            (&transition, &slot_lane, provider_time)
        {
            let lane = self.lanes.entry(key.clone()).or_default();
            let newer = lane.mark.flatten().is_none_or(|m| pt > m);
            if newer {
                lane.mark = Some(Some(pt));
                self.store.set_lane_mark(&self.dest.name, key, pt)?;
            }
        }
        if let Some(slot) = self.window.get_mut(&done.seq) {
            slot.in_flight = false;
        }
        match transition {
            Transition::Delivered | Transition::Dropped | Transition::Dead { block: false, .. } => {
                self.settle(done.seq, generation)
            }
            Transition::Dead { block: true, .. } => {
                if let Some(slot) = self.window.get_mut(&done.seq) {
                    slot.state = state;
                }
            }
            Transition::Retry(_) => {
                if let Some(slot) = self.window.get_mut(&done.seq) {
                    slot.state = state;
                }
                self.schedule(done.seq);
            }
        }
        Ok(())
    }

    /// A lane moves on only once its finished delivery is on disk, so a crash
    /// can repeat at most the last delivery of each lane, never one before a
    /// later one. Laneless events move on at once.
    fn settle(&mut self, seq: Seq, generation: u64) {
        let laneless = self.window.get(&seq).is_some_and(|s| s.lane.is_none());
        if laneless || self.store.is_durable(generation) {
            self.finish_slot(seq);
        } else {
            self.settling.push_back((generation, seq));
        }
    }

    /// Finishes settled deliveries whose record has reached the disk.
    fn finish_settled(&mut self) {
        while let Some(&(generation, seq)) = self.settling.front() {
            if !self.store.is_durable(generation) {
                break;
            }
            self.settling.pop_front();
            self.finish_slot(seq);
        }
    }

    /// Removes a finished delivery and schedules its lane's next event.
    fn finish_slot(&mut self, seq: Seq) {
        self.unschedule(seq);
        let Some(slot) = self.window.remove(&seq) else {
            return;
        };
        let Some(key) = slot.lane else { return };
        if let Some(lane) = self.lanes.get_mut(&key) {
            lane.queue.remove(&lane_key(&slot.state, seq));
            if lane.active == Some(seq) {
                lane.active = None;
            }
        }
        self.refresh_lane(&key);
    }
}
