//! Delivery state: what dispatch records about each (event, destination).
//!
//! Lives in the store's tree so it follows the same durability rules; but a
//! delivery-state write is not waited on: losing the last few of them in a
//! crash only means an event is delivered again (at-least-once, the
//! `webhook-id` lets the app dedupe), never that one is skipped. A
//! transition writes its outcome marker (delivered or dead) before it removes
//! the pending entry, so a crash in between leaves a pending entry beside its
//! marker: the event is attempted again, never lost. Dispatch moves a lane on
//! only once the transition is flushed, so a crash repeats at most the last
//! delivery of each lane.
//!
//! | key | value |
//! |---|---|
//! | `p` dest `\0` seq | [`PendingState`] (JSON) |
//! | `a` dest `\0` seq attempt (BE u32) | [`AttemptRecord`] (JSON) |
//! | `o` dest `\0` seq | delivered at, unix ms (BE) |
//! | `x` dest `\0` seq | [`DeadLetter`] (JSON) |
//! | `w` dest `\0` source `\0` entity | highest provider time delivered on the lane (BE) |

use serde::{Deserialize, Serialize};

use super::keys::{self, be_u64};
use super::{Seq, Store, StoreError};

/// A pending delivery: where it stands between attempts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingState {
    /// Entity key (copied from the event so lanes rebuild without reading bodies).
    #[serde(default, rename = "e", skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// Attempts made so far.
    #[serde(default, rename = "n")]
    pub attempts: u32,
    /// Earliest time of the next attempt, unix ms.
    #[serde(default, rename = "t")]
    pub next_at_ms: i64,
    /// The lane is stopped behind this dead letter (`on_dead_letter = "block"`).
    #[serde(default, rename = "b", skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
    /// Source name: lanes are per (source, entity).
    #[serde(default, rename = "s")]
    pub source: String,
    /// The provider's event time, unix ms, for late-event detection.
    #[serde(default, rename = "p", skip_serializing_if = "Option::is_none")]
    pub provider_time_ms: Option<i64>,
    /// Lane sort key (provider time) when the source has a reorder window.
    #[serde(default, rename = "o", skip_serializing_if = "Option::is_none")]
    pub order_ms: Option<i64>,
}

impl PendingState {
    /// The lane this delivery belongs to: `source \0 entity`, or none.
    pub fn lane(&self) -> Option<String> {
        self.entity
            .as_ref()
            .map(|e| format!("{}\0{e}", self.source))
    }
}

/// One delivery attempt and its result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// When it started, unix ms.
    pub at_ms: i64,
    /// How long it took, ms.
    pub duration_ms: u64,
    /// HTTP status, when a response arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Transport error or a short description of the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `delivered`, `retry` or `dead_letter`.
    pub outcome: String,
}

/// An event that used up its attempts for a destination.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeadLetter {
    /// The event.
    pub seq: u64,
    /// The destination.
    pub destination: String,
    /// Attempts made.
    pub attempts: u32,
    /// Last status or error.
    pub last_error: String,
    /// When it was dead-lettered, unix ms.
    pub dead_at_ms: i64,
    /// Entity key, for operators and for lane blocking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
}

/// How an attempt ended, as dispatch decided.
#[derive(Debug, Clone)]
pub enum Transition {
    /// 2xx: remove from pending, mark delivered.
    Delivered,
    /// Try again later.
    Retry(PendingState),
    /// A late event dropped by policy: no longer pending, kept for operators
    /// (its attempt record says `dropped_late`; it is marked finished like a
    /// delivery so nothing sends it again).
    Dropped,
    /// Out of attempts: dead-letter; `block` keeps the lane stopped.
    Dead {
        /// The dead-letter record.
        letter: DeadLetter,
        /// Keep a blocked pending entry so the lane waits for a redrive.
        block: bool,
        /// The pending state to keep when blocking.
        pending: PendingState,
    },
}

/// True when `dest` is done with `seq`: delivered (or dropped) or dead-lettered.
pub(crate) fn is_finished(tree: &sled::Tree, dest: &str, seq: Seq) -> Result<bool, StoreError> {
    Ok(tree.contains_key(keyed(keys::DELIVERED, dest, seq.0))?
        || tree.contains_key(keyed(keys::DEAD, dest, seq.0))?)
}

fn lane_mark_key(dest: &str, lane: &str) -> Vec<u8> {
    let mut k = keys::pending_prefix(dest);
    k[0] = keys::LANE_MARK;
    k.extend_from_slice(lane.as_bytes());
    k
}

fn keyed(prefix: u8, dest: &str, seq: u64) -> Vec<u8> {
    let mut k = keys::pending(dest, seq);
    k[0] = prefix;
    k
}

impl Store {
    /// Pending deliveries of `dest` with a sequence above `after`, up to the
    /// durable sequence, in order, at most `limit`.
    pub fn pending_after(
        &self,
        dest: &str,
        after: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<(Seq, PendingState)>, StoreError> {
        let durable = self.durable_seq().0;
        let start = after.map_or(0, |s| s.0.saturating_add(1));
        let mut out = Vec::new();
        if start > durable {
            return Ok(out);
        }
        let range = keys::pending(dest, start)..=keys::pending(dest, durable);
        for item in self.tree().range(range).take(limit) {
            let (k, v) = item?;
            let seq = keys::seq_from_pending_key(&k)?;
            let state =
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push((seq, state));
        }
        Ok(out)
    }

    /// Records an attempt and its transition, then asks the flusher to
    /// persist it (without waiting). Returns the flush generation that makes
    /// it durable.
    pub fn record_attempt(
        &self,
        dest: &str,
        seq: Seq,
        attempt: &AttemptRecord,
        transition: &Transition,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        // Ordered plain inserts (a sled batch costs ~10× more): the attempt,
        // then the outcome marker, then the pending change. A crash between
        // two of them leaves a state that only repeats work: a pending entry
        // beside its delivered or dead marker is simply attempted again.
        let json = |v: &dyn erased::Json| v.to_json();
        let tree = self.tree();
        // Records are numbered by their own counter, not by the attempt
        // number: a redrive restarts the attempt budget, and its attempt 1
        // must not overwrite the history of the first run.
        let prefix = keyed(keys::ATTEMPT, dest, seq.0);
        let next = match tree.scan_prefix(&prefix).keys().next_back() {
            Some(last) => {
                let last = last?;
                let tail: [u8; 4] = last[last.len() - 4..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("attempt key".into()))?;
                u32::from_be_bytes(tail).saturating_add(1)
            }
            None => 1,
        };
        let mut akey = prefix;
        akey.extend_from_slice(&next.to_be_bytes());
        tree.insert(akey, json(attempt)?)?;
        let pkey = keys::pending(dest, seq.0);
        match transition {
            Transition::Delivered | Transition::Dropped => {
                tree.insert(keyed(keys::DELIVERED, dest, seq.0), &now_ms.to_be_bytes())?;
                if tree.remove(pkey)?.is_some() {
                    self.count_pending(dest, -1);
                }
            }
            Transition::Retry(state) => {
                if tree.insert(pkey, json(state)?)?.is_none() {
                    self.count_pending(dest, 1);
                }
            }
            Transition::Dead {
                letter,
                block,
                pending,
            } => {
                tree.insert(keyed(keys::DEAD, dest, seq.0), json(letter)?)?;
                if *block {
                    if tree.insert(pkey, json(pending)?)?.is_none() {
                        self.count_pending(dest, 1);
                    }
                } else if tree.remove(pkey)?.is_some() {
                    self.count_pending(dest, -1);
                }
            }
        }
        Ok(self.request_flush())
    }

    /// A pending state for delivering `seq` to `dest` again from attempt 1:
    /// the existing entry (a blocked lane head) reset, or one rebuilt from the
    /// event record so it joins the right (source, entity) lane. `None` when
    /// the event is gone.
    pub fn fresh_pending(&self, dest: &str, seq: Seq) -> Result<Option<PendingState>, StoreError> {
        if let Some(v) = self.tree().get(keys::pending(dest, seq.0))? {
            let mut state: PendingState =
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            state.attempts = 0;
            state.blocked = false;
            state.next_at_ms = 0;
            return Ok(Some(state));
        }
        Ok(self.get(seq)?.map(|event| PendingState {
            entity: event.meta.entity,
            source: event.meta.source,
            provider_time_ms: event.meta.provider_time_ms,
            ..PendingState::default()
        }))
    }

    /// Highest provider time delivered so far on a lane (late-event detection).
    pub fn lane_mark(&self, dest: &str, lane: &str) -> Result<Option<i64>, StoreError> {
        match self.tree().get(lane_mark_key(dest, lane))? {
            Some(v) => Ok(Some(be_u64(&v)? as i64)),
            None => Ok(None),
        }
    }

    /// Raises a lane's delivered provider-time mark.
    pub fn set_lane_mark(
        &self,
        dest: &str,
        lane: &str,
        provider_time_ms: i64,
    ) -> Result<(), StoreError> {
        self.tree().insert(
            lane_mark_key(dest, lane),
            provider_time_ms.to_be_bytes().to_vec(),
        )?;
        Ok(())
    }

    /// Every attempt made to deliver `seq` to `dest`, in order.
    pub fn attempts(&self, dest: &str, seq: Seq) -> Result<Vec<AttemptRecord>, StoreError> {
        self.tree()
            .scan_prefix(keyed(keys::ATTEMPT, dest, seq.0))
            .map(|item| {
                let (_, v) = item?;
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    /// When `seq` was delivered to `dest`, if it was.
    pub fn delivered_at(&self, dest: &str, seq: Seq) -> Result<Option<i64>, StoreError> {
        match self.tree().get(keyed(keys::DELIVERED, dest, seq.0))? {
            Some(v) => Ok(Some(be_u64(&v)? as i64)),
            None => Ok(None),
        }
    }

    /// The dead letter of `seq` for `dest`, if any.
    pub fn dead_letter(&self, dest: &str, seq: Seq) -> Result<Option<DeadLetter>, StoreError> {
        match self.tree().get(keyed(keys::DEAD, dest, seq.0))? {
            Some(v) => Ok(Some(
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    /// All dead letters of `dest`, oldest first.
    pub fn dead_letters(&self, dest: &str) -> Result<Vec<DeadLetter>, StoreError> {
        let mut prefix = keys::pending_prefix(dest);
        prefix[0] = keys::DEAD;
        self.tree()
            .scan_prefix(prefix)
            .map(|item| {
                let (_, v) = item?;
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    /// Moves a dead letter back to pending with a fresh attempt budget.
    /// Returns false when there was no such dead letter.
    pub fn redrive(&self, dest: &str, seq: Seq) -> Result<bool, StoreError> {
        let Some(letter) = self.dead_letter(dest, seq)? else {
            return Ok(false);
        };
        let mut batch = sled::Batch::default();
        batch.remove(keyed(keys::DEAD, dest, seq.0));
        // A blocked lane's head is still pending; a skipped one is not.
        let was_pending = self.tree().contains_key(keys::pending(dest, seq.0))?;
        let state = self.fresh_pending(dest, seq)?.unwrap_or(PendingState {
            entity: letter.entity,
            ..PendingState::default()
        });
        batch.insert(keys::pending(dest, seq.0), erased::Json::to_json(&state)?);
        self.tree().apply_batch(batch)?;
        if !was_pending {
            self.count_pending(dest, 1);
        }
        self.request_flush();
        self.notify_dispatch();
        Ok(true)
    }

    /// Deletes events older than `retention` that have nothing left to do:
    /// no pending delivery and no dead letter for any destination. Their
    /// attempt records and delivered markers go with them. Returns how many
    /// events were deleted. Undelivered events are never deleted.
    pub fn expire_delivered(&self, now_ms: i64, retention_ms: i64) -> Result<usize, StoreError> {
        let cutoff = now_ms.saturating_sub(retention_ms);
        // Only events sled already holds durably: one above the watermark
        // would be re-indexed from the log after a crash (and its bytes are
        // not in the persisted total yet).
        let durable = self.indexed_through()?;
        let mut removed = 0;
        for item in self.tree().range(keys::event(0)..=keys::event(durable)) {
            let (k, v) = item?;
            let seq = keys::seq_from_event_key(&k)?;
            let (meta, _, record_len) = self.load_event(&v)?;
            if meta.received_at_ms > cutoff {
                break;
            }
            let mut busy = false;
            for dest in &meta.destinations {
                busy |= self.tree().contains_key(keys::pending(dest, seq.0))?
                    || self.tree().contains_key(keyed(keys::DEAD, dest, seq.0))?;
            }
            if busy {
                continue;
            }
            let mut batch = sled::Batch::default();
            batch.remove(k);
            for dest in &meta.destinations {
                batch.remove(keyed(keys::DELIVERED, dest, seq.0));
                for a in self
                    .tree()
                    .scan_prefix(keyed(keys::ATTEMPT, dest, seq.0))
                    .keys()
                {
                    batch.remove(a?);
                }
            }
            self.apply_removal(batch, record_len)?;
            removed += 1;
        }
        if removed > 0 {
            self.request_flush();
        }
        Ok(removed)
    }
}

mod erased {
    use super::StoreError;

    /// Object-safe "serialize to JSON bytes" so one closure handles every record type.
    pub trait Json {
        fn to_json(&self) -> Result<Vec<u8>, StoreError>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>, StoreError> {
            serde_json::to_vec(self).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
    }
}
