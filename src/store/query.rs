//! Read-side queries for operators (the admin API) and the pause flag.
//!
//! Everything here reads the same tree as dispatch; replay and the pause flag
//! write through atomic batches (rare operator actions, where a batch's cost
//! does not matter), so a replayed event is in exactly one of pending,
//! delivered or dead for a destination.
//!
//! | key | value |
//! |---|---|
//! | `z` destination | pause flag: present = paused (value: paused at, unix ms BE) |
//!
//! Scans are bounded per call ([`SCAN_BUDGET`]) so an operator's filter over
//! a large log cannot stall the process; the caller gets a cursor to go on.

use serde::Serialize;

use super::keys;
use super::{AttemptRecord, DeadLetter, PendingState, Seq, Store, StoreError, StoredEvent};

/// Prefix of the per-destination pause flag.
pub const PAUSED: u8 = b'z';

/// Most events one search call examines, matching or not.
pub const SCAN_BUDGET: usize = 10_000;

fn paused_key(dest: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(dest.len() + 1);
    k.push(PAUSED);
    k.extend_from_slice(dest.as_bytes());
    k
}

/// `prefix` dest `\0` seq, the layout shared by every per-delivery record.
fn keyed(prefix: u8, dest: &str, seq: u64) -> Vec<u8> {
    let mut k = keys::pending(dest, seq);
    k[0] = prefix;
    k
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Where an event stands, over all its destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// At least one destination still has it queued (and none dead-lettered it).
    Pending,
    /// Every destination got it (or has nothing left to do for it).
    Delivered,
    /// At least one destination dead-lettered it: an operator should look.
    DeadLetter,
}

impl EventStatus {
    /// Parses the API's `status` filter.
    pub fn parse(text: &str) -> Option<EventStatus> {
        match text {
            "pending" => Some(EventStatus::Pending),
            "delivered" => Some(EventStatus::Delivered),
            "dead_letter" => Some(EventStatus::DeadLetter),
            _ => None,
        }
    }
}

/// One destination's view of an event.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationState {
    /// Destination name.
    pub destination: String,
    /// `pending`, `delivered`, `dead_letter` or `done` (dropped or expired).
    pub state: &'static str,
    /// When it was delivered, unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at_ms: Option<i64>,
    /// Next attempt time while pending, unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at_ms: Option<i64>,
    /// The dead letter, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetter>,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptRecord>,
}

/// What a search matches on; `None` = any.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Source name.
    pub source: Option<String>,
    /// Overall status.
    pub status: Option<EventStatus>,
    /// Exact entity key.
    pub entity: Option<String>,
    /// Received at or after, unix ms.
    pub since_ms: Option<i64>,
    /// Received before, unix ms.
    pub until_ms: Option<i64>,
}

/// A page of search results.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// Matching events in sequence order, each with its status.
    pub events: Vec<(StoredEvent, EventStatus)>,
    /// Cursor for the next call (the last sequence examined), or `None` when
    /// every durable event has been examined.
    pub next: Option<Seq>,
}

/// What a dead-letter redrive selects.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    /// Only this destination.
    pub destination: Option<String>,
    /// Only this event.
    pub seq: Option<Seq>,
    /// Dead-lettered at or after, unix ms.
    pub since_ms: Option<i64>,
    /// Dead-lettered before, unix ms.
    pub until_ms: Option<i64>,
}

impl DeadLetterFilter {
    fn matches(&self, letter: &DeadLetter) -> bool {
        self.destination
            .as_deref()
            .is_none_or(|d| d == letter.destination)
            && self.seq.is_none_or(|s| s.0 == letter.seq)
            && self.since_ms.is_none_or(|t| letter.dead_at_ms >= t)
            && self.until_ms.is_none_or(|t| letter.dead_at_ms < t)
    }
}

impl Store {
    /// True while an operator has paused `dest`: dispatch keeps its queue but
    /// starts no new attempt for it.
    pub fn is_paused(&self, dest: &str) -> Result<bool, StoreError> {
        Ok(self.tree().contains_key(paused_key(dest))?)
    }

    /// Pauses or resumes `dest`, persists the flag (waits for the flush, so
    /// a restart keeps it) and wakes dispatch so it takes effect now.
    pub async fn set_paused(
        &self,
        dest: &str,
        paused: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if paused {
            self.tree()
                .insert(paused_key(dest), now_ms.to_be_bytes().to_vec())?;
        } else {
            self.tree().remove(paused_key(dest))?;
        }
        self.sync().await?;
        self.notify_dispatch();
        Ok(())
    }

    /// Receive time of the oldest pending delivery of `dest` (for the
    /// oldest-pending-age gauge), or `None` when nothing is pending.
    pub fn oldest_pending_received_ms(&self, dest: &str) -> Result<Option<i64>, StoreError> {
        let Some(item) = self.tree().scan_prefix(keys::pending_prefix(dest)).next() else {
            return Ok(None);
        };
        let (k, _) = item?;
        let seq = keys::seq_from_pending_key(&k)?;
        Ok(self.get(seq)?.map(|e| e.meta.received_at_ms))
    }

    /// Per-destination state of an event; `with_attempts` also reads every
    /// attempt record (the detail view).
    pub fn destination_states(
        &self,
        event: &StoredEvent,
        with_attempts: bool,
    ) -> Result<Vec<DestinationState>, StoreError> {
        let seq = event.seq;
        let mut out = Vec::with_capacity(event.meta.destinations.len());
        for dest in &event.meta.destinations {
            let dead_letter = self.dead_letter(dest, seq)?;
            let pending: Option<PendingState> = match self.tree().get(keys::pending(dest, seq.0))? {
                Some(v) => Some(serde_json::from_slice(&v).map_err(corrupt)?),
                None => None,
            };
            let delivered_at_ms = self.delivered_at(dest, seq)?;
            let state = if dead_letter.is_some() {
                "dead_letter"
            } else if pending.is_some() {
                "pending"
            } else if delivered_at_ms.is_some() {
                "delivered"
            } else {
                "done"
            };
            let attempts = if with_attempts {
                self.attempts(dest, seq)?
            } else {
                Vec::new()
            };
            out.push(DestinationState {
                destination: dest.clone(),
                state,
                delivered_at_ms,
                next_attempt_at_ms: pending.map(|p| p.next_at_ms),
                dead_letter,
                attempts,
            });
        }
        Ok(out)
    }

    /// Overall status: dead letter wins (someone must act), then pending,
    /// else delivered.
    pub fn event_status(&self, event: &StoredEvent) -> Result<EventStatus, StoreError> {
        let mut status = EventStatus::Delivered;
        for dest in &event.meta.destinations {
            if self
                .tree()
                .contains_key(keyed(keys::DEAD, dest, event.seq.0))?
            {
                return Ok(EventStatus::DeadLetter);
            }
            if self.tree().contains_key(keys::pending(dest, event.seq.0))? {
                status = EventStatus::Pending;
            }
        }
        Ok(status)
    }

    /// Durable events after `after` that match `filter`, at most `limit`,
    /// examining at most `scan_budget` events. The cursor is the gateway
    /// sequence, which only grows, so paging stays complete and duplicate-free
    /// while new events arrive.
    pub fn search_events(
        &self,
        filter: &EventFilter,
        after: Option<Seq>,
        limit: usize,
        scan_budget: usize,
    ) -> Result<EventPage, StoreError> {
        let mut events = Vec::new();
        let mut cursor = after;
        let mut scanned = 0;
        let chunk = 256;
        while events.len() < limit && scanned < scan_budget {
            let batch = self.read_after(cursor, chunk.min(scan_budget - scanned))?;
            if batch.is_empty() {
                return Ok(EventPage { events, next: None });
            }
            for event in batch {
                scanned += 1;
                cursor = Some(event.seq);
                if !matches_meta(filter, &event) {
                    continue;
                }
                let status = self.event_status(&event)?;
                if filter.status.is_some_and(|s| s != status) {
                    continue;
                }
                events.push((event, status));
                if events.len() == limit {
                    break;
                }
            }
        }
        // Stopped on the limit or the budget: say "end" only if nothing is left.
        let more = match cursor {
            Some(c) => c < self.durable_seq(),
            None => false,
        };
        Ok(EventPage {
            events,
            next: if more { cursor } else { None },
        })
    }

    /// Queues `seq` again for every destination it was routed to and wakes
    /// dispatch. Attempt numbers continue after the recorded ones (history is
    /// kept; the retry budget counts them). A destination that still has
    /// it pending keeps its entry. Returns the destinations queued, or `None`
    /// when the event does not exist (or was expired by retention).
    pub fn replay(&self, seq: Seq) -> Result<Option<Vec<String>>, StoreError> {
        let Some(event) = self.get(seq)? else {
            return Ok(None);
        };
        if seq > self.durable_seq() {
            return Ok(None);
        }
        let mut batch = sled::Batch::default();
        let mut queued = Vec::new();
        for dest in &event.meta.destinations {
            let pkey = keys::pending(dest, seq.0);
            if self.tree().contains_key(&pkey)? {
                continue;
            }
            // A fresh attempt budget; attempt records are numbered on their
            // own, so the replay adds to the history instead of overwriting it.
            let Some(state) = self.fresh_pending(dest, seq)? else {
                continue;
            };
            batch.insert(pkey, serde_json::to_vec(&state).map_err(corrupt)?);
            // Keep "exactly one of pending, delivered, dead" per destination.
            batch.remove(keyed(keys::DELIVERED, dest, seq.0));
            batch.remove(keyed(keys::DEAD, dest, seq.0));
            queued.push(dest.clone());
        }
        self.tree().apply_batch(batch)?;
        for dest in &queued {
            self.count_pending(dest, 1);
        }
        self.request_flush();
        self.notify_dispatch();
        Ok(Some(queued))
    }

    /// Dead letters matching `filter`, oldest event first per destination,
    /// at most `limit`. Returns the letters and whether more matched.
    pub fn find_dead_letters(
        &self,
        filter: &DeadLetterFilter,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, bool), StoreError> {
        let prefix = match &filter.destination {
            Some(dest) => {
                let mut p = keys::pending_prefix(dest);
                p[0] = keys::DEAD;
                p
            }
            None => vec![keys::DEAD],
        };
        let mut out = Vec::new();
        for item in self.tree().scan_prefix(prefix) {
            let (_, v) = item?;
            let letter: DeadLetter = serde_json::from_slice(&v).map_err(corrupt)?;
            if !filter.matches(&letter) {
                continue;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(letter);
        }
        Ok((out, false))
    }
}

fn matches_meta(filter: &EventFilter, event: &StoredEvent) -> bool {
    let meta = &event.meta;
    filter.source.as_deref().is_none_or(|s| s == meta.source)
        && filter
            .entity
            .as_deref()
            .is_none_or(|e| meta.entity.as_deref() == Some(e))
        && filter.since_ms.is_none_or(|t| meta.received_at_ms >= t)
        && filter.until_ms.is_none_or(|t| meta.received_at_ms < t)
}
