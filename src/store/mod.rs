//! Stage 4: store. The durable queue every accepted event is written to
//! before the provider gets its 2xx.
//!
//! # Durability contract
//!
//! - [`Store::append`] returns `Ok` only after the event's record is in the
//!   event log ([`segments`]) **and** the log's segment files are
//!   `fdatasync`ed. The log is the write-ahead log: the record carries
//!   everything sled derives from it (locator, dedupe markers, pending
//!   entries). So an acknowledged event survives `kill -9` and power loss.
//! - sled is flushed (`Db::flush()`, which on Linux issues
//!   `sync_file_range`, not an fsync — sled#1452 — followed by `fdatasync` of
//!   its `db` file and of any new file under `blobs/` plus the `blobs/`
//!   directory) when a writer of delivery state asks for it
//!   ([`Store::request_flush`], [`Store::sync`]; the flusher does it in
//!   the flush that covers the request) and, by a thread of its own, every
//!   [`SLED_FLUSH_EVERY`] while events arrive. Only index entries of
//!   records the log already synced are ever in sled, so sled is never
//!   durable ahead of the log. After each such flush the
//!   *watermark* (`keys::META_WATERMARK`: the highest sequence sled holds
//!   durably, with the byte total up to it) moves; `Store::open` re-indexes
//!   the log's records after it that sled lost. Retention deletes only events
//!   at or below the watermark, so recovery never revives a deleted event.
//! - Group commit: one flusher thread owns every flush. Appends bump a write
//!   generation and wait until a flush that started after their write has
//!   finished. Concurrent requests therefore share one `fdatasync`. A single
//!   flusher also avoids sled 0.34.7's deadlock with concurrent `flush_async`
//!   (sled#1308): it calls the blocking `flush()` itself. It is an OS thread,
//!   not a runtime task, so the next flush starts the moment the last one
//!   ends instead of queueing behind the request tasks it is flushing for.
//! - An append checks for duplicates and writes the record to the log under
//!   the write lock; its sled entries (locator, dedupe markers, pending
//!   entries) are written by the flusher, for the whole group, right after
//!   the log sync that acknowledges it (so the next group waits for one
//!   group's indexing, not for its indexing plus its sync: median 0.225 →
//!   0.250 of the no-op server over 8 alternating runs each at 64
//!   connections, `bench/RESULTS.md`). Until then its markers and its
//!   locator sit in memory (the write state), read before sled by the
//!   duplicate check and by [`Store::get`]; each leaves only after it is in
//!   sled, so no duplicate slips between the two and an acknowledged event
//!   is readable at once. Scans (dispatch, queries, pending counts) see an
//!   event once its group is indexed: [`Store::watch_durable`] and
//!   [`Store::durable_seq`] move only then, and [`Store::caught_up`] waits
//!   for that (the admin API calls it before every query). A crash between
//!   the acknowledgement and the indexing loses nothing: the record is in
//!   the synced log, after the watermark, and `Store::open` re-indexes it.
//!   Within sled the locator is written first, then the markers and
//!   pending entries, as plain inserts (a `sled::Batch` costs ~10× more CPU
//!   per event, measured). sled recovers a prefix of its log, so a crash can
//!   only cut an append short after its locator; `Store::open` completes such
//!   appends for the events after the watermark from their records. So after
//!   recovery no event lacks its marker or delivery state.
//! - If a write or a flush fails, the store is **poisoned**: every waiting and
//!   future append fails (ingress answers 503), readiness goes false, and the
//!   process is asked to exit so its supervisor can restart it. Nothing that
//!   was not flushed is acknowledged.
//! - After power loss sled may hold a locator whose record did not reach the
//!   disk (that event was never acknowledged); `Store::open` finds it by its
//!   CRC and removes it with its marker and pending entries, so a provider's
//!   retry is accepted again. At open every recovered record is fsynced
//!   before dispatch may read it.
//! - Readers (dispatch, the events API) see only events up to the durable
//!   (and indexed) sequence, so nothing is delivered or paged out that a
//!   crash could take back and hand to another event.
//! - A crash can lose only events that were never acknowledged; the provider
//!   retries those.
//!
//! # Layout (format version [`record::FORMAT_VERSION`])
//!
//! One sled tree, [`TREE`], with one-byte key prefixes (see [`keys`]); sequence
//! numbers are big-endian `u64` so sled's byte order is sequence order:
//!
//! | key | value |
//! |---|---|
//! | `e` seq | locator of the event record ([`record`]) in the log ([`segments`]) |
//! | `d` source `\0` hash prefix | dedupe marker bucket ([`markers`]): fingerprint, seq, received_at per marker |
//! | `p` destination `\0` seq | pending delivery state (JSON) |
//! | `a`, `o`, `x`, `w` destination `\0` ... | attempts, delivered markers, dead letters, lane marks ([`delivery`]) |
//! | `\0m` name | store metadata (the flush watermark) |
//!
//! Sequences are assigned under the write lock that also writes the event,
//! so sequence order is commit order.
//!
//! This module is the narrow interface a distributed engine could stand behind
//! later: append (with dedupe), read from a cursor, and delivery-state records.

pub mod delivery;
pub mod keys;
pub mod markers;
pub mod query;
pub mod record;
pub mod segments;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use delivery::{AttemptRecord, DeadLetter, PendingState, Transition};
pub use record::EventMeta;
pub use segments::DEFAULT_SEGMENT_BYTES;

use segments::{ActiveSegment, Locator, SegmentLog};

/// Name of the sled tree holding everything.
pub const TREE: &str = "hookgate";

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error.
    #[error("storage engine: {0}")]
    Sled(#[from] sled::Error),
    /// A filesystem call (fsync, directory read) failed.
    #[error("storage i/o: {0}")]
    Io(#[from] std::io::Error),
    /// An earlier write or flush failed; nothing more is accepted.
    #[error("store is poisoned after a failed write or flush")]
    Poisoned,
    /// `storage.max_queue_bytes` is reached.
    #[error("queue is full")]
    Full,
    /// The store is closing.
    #[error("store is shutting down")]
    Closed,
    /// A record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// A gateway sequence number: the gateway's event id, strictly increasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

impl Seq {
    /// The public form of the id (`hg_` + 16 hex digits): fixed width so it
    /// sorts like the sequence, with no `.` (Standard Webhooks forbids it).
    pub fn to_event_id(self) -> String {
        format!("hg_{:016x}", self.0)
    }

    /// Parses [`Seq::to_event_id`] output (or a bare decimal sequence).
    pub fn parse_event_id(text: &str) -> Option<Seq> {
        match text.strip_prefix("hg_") {
            Some(hex) if hex.len() == 16 => u64::from_str_radix(hex, 16).ok().map(Seq),
            Some(_) => None,
            None => text.parse().ok().map(Seq),
        }
    }
}

/// What kind of key a dedupe marker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupeKey {
    /// The provider's event id.
    EventId(String),
    /// A digest of the signature: refuses a replayed capture.
    Replay([u8; 32]),
}

/// An event ready to be stored (already verified and guarded).
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Everything but the body.
    pub meta: EventMeta,
    /// The raw body.
    pub body: Bytes,
    /// Markers that make a later copy a duplicate.
    pub dedupe: Vec<DedupeKey>,
}

/// An event read back from the store.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its sequence (gateway event id).
    pub seq: Seq,
    /// Everything but the body.
    pub meta: EventMeta,
    /// The raw body, byte for byte.
    pub body: Bytes,
}

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored and durable under this sequence.
    Accepted(Seq),
    /// A marker for this event already exists (the original is durable too).
    Duplicate(Seq),
}

/// How far the flusher has got. Published on two watch channels: when the
/// log is synced (what acknowledges appends) and when the group is also
/// indexed in sled (what readers and dispatch wait for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Durability {
    /// Every write with a generation ≤ this is on disk (and, on the
    /// channel of [`Store::watch_durable`], indexed).
    pub generation: u64,
    /// Every event with a sequence ≤ this is on disk (and, on the channel
    /// of [`Store::watch_durable`], indexed).
    pub seq: u64,
    /// A write or flush failed: nothing further will become durable.
    pub poisoned: bool,
}

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// sled directory.
    pub path: PathBuf,
    /// How long dedupe markers count.
    pub dedupe_window: Duration,
    /// Above this many bytes on disk appends fail with [`StoreError::Full`].
    pub max_queue_bytes: Option<u64>,
    /// Size at which the event log rolls to a new segment file
    /// ([`DEFAULT_SEGMENT_BYTES`]; tests use small ones to see rolling).
    pub segment_bytes: u64,
    /// The least time between the starts of two log flushes while appends
    /// arrive concurrently. Each `fdatasync` costs the same kernel CPU
    /// whether it covers 5 events or 40, so waiting this long for a group to
    /// fill buys throughput with at most this much added latency. A lone
    /// writer never waits: the wait applies only after a flush that covered
    /// more than one write.
    pub commit_interval: Duration,
}

/// Handle to the durable queue. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    tree: sled::Tree,
    /// The event records themselves; sled holds their locators.
    log: SegmentLog,
    options: StoreOptions,
    /// Serialises sequence assignment with the writes that use it.
    write: Mutex<WriteState>,
    /// Highest write generation applied to sled (durable or not).
    written_generation: AtomicU64,
    /// Progress of log syncs: appends are acknowledged from it.
    logged: watch::Sender<Durability>,
    /// Progress of log syncs whose group is indexed too: readers see events
    /// up to its `seq`, and `sync` waits on it.
    durable: watch::Sender<Durability>,
    /// The flusher thread, unparked when there is something to flush.
    flusher: Worker,
    /// Serialises sled flushes (the flusher's requested ones and the
    /// periodic ones of [`sled_flusher`]); holds the blob files already
    /// fsynced.
    sled_flush: Mutex<std::collections::HashSet<std::ffi::OsString>>,
    /// The periodic sled flush thread ([`sled_flusher`]), unparked at close.
    sled_flusher: Worker,
    /// Serialises marker-bucket read-modify-writes (flusher and sweep).
    buckets: Mutex<()>,
    /// Set by writers whose sled writes must be durable (delivery state);
    /// appends do not set it: their log record is what makes them durable.
    sled_flush_requested: AtomicBool,
    poisoned: AtomicBool,
    /// Bytes of event records currently stored (what `max_queue_bytes` bounds).
    stored_bytes: AtomicU64,
    closing: CancellationToken,
    /// Cancelled when the store is poisoned, so the process can exit.
    poison_token: CancellationToken,
    /// Bumped when delivery state changes behind dispatch's back (redrive,
    /// replay, resume), so workers rebuild their window from the store.
    dispatch_epoch: watch::Sender<u64>,
    /// Pending deliveries per destination, kept exact as entries come and
    /// go, so metrics and the admin API never scan (a scan of 1M entries took
    /// ~1 s and ~70 MiB of sled cache per scrape). Persisted at a clean
    /// close; recounted once at open after an unclean stop.
    pending_counts: Mutex<std::collections::HashMap<String, u64>>,
    /// What `Store::open` had to repair.
    recovered: RecoveryReport,
}

/// What [`Store::open`] found and repaired; all zero after a clean stop.
/// Logged at open, and kept so tests and operators can tell a crash
/// recovery happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Acknowledged events whose index sled lost, re-indexed from the log.
    pub reindexed: usize,
    /// Events whose dedupe markers or pending entries were completed.
    pub repaired: usize,
    /// Never-acknowledged events removed because their record was torn.
    pub torn: usize,
}

struct WriteState {
    next_seq: u64,
    /// The segment new records go to.
    active: ActiveSegment,
    /// Authoritative copy of `stored_bytes` (every stored event).
    stored_bytes: u64,
    /// The watermark's sequence (`keys::META_WATERMARK`) as last written:
    /// sled holds every event up to it durably.
    indexed_through: u64,
    /// Bytes of the stored events up to `indexed_through`: the watermark's
    /// byte total. Persisted per sled flush and per removal, not per append;
    /// recovery adds the events after `indexed_through`, which it visits
    /// anyway.
    indexed_bytes: u64,
    /// Appended events whose sled index entries the flusher has yet to
    /// write (see [`index_group`]).
    unindexed: Vec<IndexJob>,
    /// Their dedupe markers, checked before sled's buckets: a marker leaves
    /// this map only after the flusher wrote it to its bucket, so a marker
    /// missing here is in sled already.
    unindexed_markers: std::collections::HashMap<markers::Slot, markers::Entry>,
    /// Locators of the events after `sled_seq` (sled does not have them
    /// yet: the flusher indexes a group after acknowledging it), in order,
    /// so [`Store::get`] finds an acknowledged event at once. Same rule as
    /// the markers: a locator leaves only after it is in sled.
    unindexed_at: std::collections::VecDeque<Locator>,
    /// Highest sequence whose index entries are written to sled (flushed
    /// or not): what the next sled flush lets the watermark move to. The
    /// front of `unindexed_at` is the event after it.
    sled_seq: u64,
    /// Bytes of the events after `indexed_through` up to `sled_seq`: what
    /// the next sled flush adds to the watermark's byte total.
    sled_bytes_ahead: u64,
}

/// An appended event's sled index entries, written by the flusher right
/// after the log sync that acknowledges it.
struct IndexJob {
    seq: u64,
    /// Record bytes (what `stored_bytes` counts for it).
    len: u64,
    at: Locator,
    meta: EventMeta,
    slots: Vec<markers::Slot>,
    now_ms: i64,
}

/// One of the store's background threads. It holds only a weak reference
/// to the store, so a store dropped without [`Store::close`] (as tests do)
/// lets go of sled at once; `close` unparks and joins it.
#[derive(Default)]
struct Worker {
    thread: std::sync::OnceLock<std::thread::Thread>,
    handle: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Worker {
    fn start(
        &self,
        name: &str,
        inner: &Arc<Inner>,
        run: fn(std::sync::Weak<Inner>),
    ) -> Result<(), StoreError> {
        let weak = Arc::downgrade(inner);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(weak))?;
        let _ = self.thread.set(handle.thread().clone());
        if let Ok(mut slot) = self.handle.lock() {
            *slot = Some(handle);
        }
        Ok(())
    }

    /// Wakes the thread from `park` (an atomic store unless it sleeps).
    fn unpark(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    fn take_handle(&self) -> Option<std::thread::JoinHandle<()>> {
        self.handle.lock().ok().and_then(|mut h| h.take())
    }
}

impl Inner {
    /// `dedupe_window` in ms, as marker times are kept.
    fn dedupe_window_ms(&self) -> i64 {
        i64::try_from(self.options.dedupe_window.as_millis()).unwrap_or(i64::MAX)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.options.path)
            .finish()
    }
}

impl Store {
    /// Opens (or creates) the store, recovers the sequence and starts the
    /// flusher thread.
    pub fn open(options: StoreOptions) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(&options.path)
            // sled's cache overshoots its nominal size about 3× under scans
            // (measured): keep it small, the hot set is the queue's tail.
            .cache_capacity(16 << 20)
            // The flusher flushes sled when needed (see the module doc);
            // sled's own timer would only add flushes nobody waits for.
            .flush_every_ms(None)
            .open()?;
        let tree = db.open_tree(TREE)?;
        let log = SegmentLog::open(&options.path, options.segment_bytes)?;
        let watermark = read_watermark(&tree)?;
        let indexed_through = watermark.seq;
        let reindexed = reindex_from_log(&tree, &log, indexed_through)?;
        if reindexed > 0 {
            tracing::info!(
                reindexed,
                "re-indexed acknowledged events from the event log after an unclean stop"
            );
        }
        let recovery = complete_interrupted_appends(&tree, &log, indexed_through)?;
        if recovery.repaired > 0 {
            tracing::info!(
                repaired = recovery.repaired,
                "restored dedupe markers and pending deliveries of events written after sled's last flush"
            );
        }
        if recovery.torn > 0 {
            tracing::warn!(
                torn = recovery.torn,
                "removed events whose record did not reach the disk before a crash (none was acknowledged)"
            );
        }
        let next_seq = recover_next_seq(&tree, &watermark)?.max(recovery.next_seq);
        let indexed_bytes = match watermark.bytes {
            Some(bytes) => bytes,
            None => bytes_through(&tree, &log, indexed_through)?,
        };
        let stored_bytes = indexed_bytes + recovery.bytes_after;
        sync_dir(&options.path)?;
        let active = log.create(next_seq)?;
        // Counts a clean close left are right only if recovery changed
        // nothing; otherwise count.
        let untouched = reindexed == 0 && recovery.repaired == 0 && recovery.torn == 0;
        let pending_counts = load_pending_counts(&tree, untouched)?;
        let start = Durability {
            generation: 0,
            seq: next_seq.saturating_sub(1),
            poisoned: false,
        };
        let (logged, _) = watch::channel(start);
        let (durable, _) = watch::channel(start);
        let inner = Arc::new(Inner {
            db,
            tree,
            log,
            options,
            write: Mutex::new(WriteState {
                next_seq,
                active,
                stored_bytes,
                indexed_through,
                indexed_bytes,
                unindexed: Vec::new(),
                unindexed_markers: std::collections::HashMap::new(),
                unindexed_at: std::collections::VecDeque::new(),
                sled_seq: next_seq.saturating_sub(1),
                sled_bytes_ahead: 0,
            }),
            written_generation: AtomicU64::new(0),
            logged,
            durable,
            flusher: Worker::default(),
            sled_flush: Mutex::new(std::collections::HashSet::new()),
            sled_flusher: Worker::default(),
            buckets: Mutex::new(()),
            sled_flush_requested: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            stored_bytes: AtomicU64::new(stored_bytes),
            closing: CancellationToken::new(),
            poison_token: CancellationToken::new(),
            dispatch_epoch: watch::channel(0).0,
            pending_counts: Mutex::new(pending_counts),
            recovered: RecoveryReport {
                reindexed,
                repaired: recovery.repaired,
                torn: recovery.torn,
            },
        });
        let store = Store { inner };
        // Recovered events count as durable from here on (dispatch reads
        // them), so make them so: after `kill -9` their records may be only
        // in the page cache.
        store.inner.log.sync_all()?;
        store.flush_sled_now()?;
        store.advance_watermark(next_seq.saturating_sub(1), recovery.bytes_after)?;
        store.reclaim_segments()?;
        let inner = &store.inner;
        inner.flusher.start("hookgate-flush", inner, flusher)?;
        inner
            .sled_flusher
            .start("hookgate-sled", inner, sled_flusher)?;
        Ok(store)
    }

    /// The sled tree, for sibling modules that keep their own records
    /// (delivery state) under the same durability rules.
    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.inner.tree
    }

    /// Appends an event unless one of its dedupe keys was seen within the
    /// window, and waits until it is durable. See the module contract.
    pub async fn append(&self, event: NewEvent, now_ms: i64) -> Result<Appended, StoreError> {
        self.check_writable()?;
        let source = event.meta.source.clone();
        let marker_keys: Vec<Vec<u8>> = event
            .dedupe
            .iter()
            .map(|k| keys::dedupe(&source, k))
            .collect();
        let window_ms = self.inner.dedupe_window_ms();
        let slots: Vec<markers::Slot> = marker_keys.iter().map(|k| markers::Slot::of(k)).collect();
        let outcome = {
            let mut state = self.inner.write.lock().map_err(|_| StoreError::Poisoned)?;
            let mut duplicate_of = None;
            for slot in &slots {
                // The unindexed markers first: one that is not there any
                // more was written to its bucket before it left.
                let found = match state.unindexed_markers.get(slot) {
                    Some(entry) => Some(*entry),
                    None => markers::Bucket::load(&self.inner.tree, &slot.bucket)?
                        .find(&slot.fingerprint),
                };
                if let Some(found) = found {
                    if now_ms.saturating_sub(found.at_ms) < window_ms {
                        duplicate_of = Some(found.seq);
                        break;
                    }
                }
            }
            match duplicate_of {
                Some(seq) => Appended::Duplicate(Seq(seq)),
                None => {
                    let seq = state.next_seq;
                    let mut meta = event.meta;
                    meta.markers = marker_keys.iter().map(hex::encode).collect();
                    let record = record::encode(&meta, &event.body)?;
                    let record_len = record.len() as u64;
                    let stored = state.stored_bytes + record_len;
                    let at = match state.active.append(&self.inner.log, seq, &record) {
                        Ok(at) => at,
                        Err(e) => {
                            self.poison(&e.to_string());
                            return Err(e);
                        }
                    };
                    for slot in &slots {
                        state.unindexed_markers.insert(
                            slot.clone(),
                            markers::Entry {
                                fingerprint: slot.fingerprint,
                                seq,
                                at_ms: now_ms,
                            },
                        );
                    }
                    state.unindexed_at.push_back(at);
                    state.unindexed.push(IndexJob {
                        seq,
                        len: record_len,
                        at,
                        meta,
                        slots,
                        now_ms,
                    });
                    state.next_seq = seq + 1;
                    state.stored_bytes = stored;
                    self.inner.stored_bytes.store(stored, Ordering::Relaxed);
                    // Bumped under the lock, so a duplicate that finds this
                    // event's marker also sees a generation covering it.
                    self.inner.written_generation.fetch_add(1, Ordering::SeqCst);
                    Appended::Accepted(Seq(seq))
                }
            }
        };
        // A duplicate waits too, for the generation that covers its original
        // (usually already durable, so no flush is needed for it).
        let generation = self.inner.written_generation.load(Ordering::SeqCst);
        if matches!(outcome, Appended::Accepted(_)) {
            self.wake_flusher();
        }
        wait_for_generation(&self.inner.logged, generation).await?;
        Ok(outcome)
    }

    /// Waits until every write up to `generation` is flushed, fsynced and
    /// indexed.
    async fn wait_durable(&self, generation: u64) -> Result<(), StoreError> {
        wait_for_generation(&self.inner.durable, generation).await
    }

    /// Waits until sled has indexed every event acknowledged so far, so a
    /// query made after an acknowledgement sees that event (its status, its
    /// pending deliveries). The flusher indexes a group right after
    /// acknowledging it, so this is at most one group's indexing. Returns
    /// at once when the store is poisoned or closed.
    pub async fn caught_up(&self) {
        let target = self.inner.logged.borrow().seq;
        let mut rx = self.inner.durable.subscribe();
        let _ = rx.wait_for(|d| d.poisoned || d.seq >= target).await;
    }

    /// Highest sequence an append has been acknowledged for: its record is
    /// synced, though maybe not indexed yet ([`Store::durable_seq`]).
    pub fn acknowledged_seq(&self) -> Seq {
        Seq(self.inner.logged.borrow().seq)
    }

    /// Reads `seq`'s locator from the write state if sled does not have it
    /// yet; `None` if it is not there (indexed already, or no such event).
    fn unindexed_locator(&self, seq: Seq) -> Result<Option<Locator>, StoreError> {
        let state = self.inner.write.lock().map_err(|_| StoreError::Poisoned)?;
        let Some(index) = seq.0.checked_sub(state.sled_seq + 1) else {
            return Ok(None);
        };
        Ok(usize::try_from(index)
            .ok()
            .and_then(|i| state.unindexed_at.get(i))
            .copied())
    }

    /// Asks the flusher to persist recent writes (sled's included) without
    /// waiting for it. Returns the generation that flush will cover, for
    /// [`Store::is_durable`].
    pub fn request_flush(&self) -> u64 {
        // Flag before generation: a flush that covers the generation read
        // it after the flag was set (see `flusher`).
        self.inner
            .sled_flush_requested
            .store(true, Ordering::SeqCst);
        let generation = self.inner.written_generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake_flusher();
        generation
    }

    /// Unparks the flusher thread (an atomic store unless it sleeps).
    fn wake_flusher(&self) {
        self.inner.flusher.unpark();
    }

    /// True once every write up to `generation` is on disk.
    pub fn is_durable(&self, generation: u64) -> bool {
        self.inner.durable.borrow().generation >= generation
    }

    /// Requests a flush of whatever was written so far and waits for it.
    /// Used by delivery-state writers at shutdown and by tests.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let generation = self.request_flush();
        self.wait_durable(generation).await
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.inner.poisoned.load(Ordering::SeqCst) {
            return Err(StoreError::Poisoned);
        }
        if self.inner.closing.is_cancelled() {
            return Err(StoreError::Closed);
        }
        if self.is_full() {
            return Err(StoreError::Full);
        }
        Ok(())
    }

    /// Reads one event (durable or not; acknowledged ones at once, even
    /// before the flusher indexed them).
    pub fn get(&self, seq: Seq) -> Result<Option<StoredEvent>, StoreError> {
        // The write state first: a locator leaves it only after it is in
        // sled, so checking sled second cannot miss one that moves between.
        if seq > self.durable_seq() {
            if let Some(at) = self.unindexed_locator(seq)? {
                let (meta, body) = record::decode(&self.inner.log.read(&at)?)?;
                return Ok(Some(StoredEvent { seq, meta, body }));
            }
        }
        match self.inner.tree.get(keys::event(seq.0))? {
            None => Ok(None),
            Some(v) => {
                let (meta, body, _) = load_event(&self.inner.log, &v)?;
                Ok(Some(StoredEvent { seq, meta, body }))
            }
        }
    }

    /// Durable events with a sequence greater than `after`, in order, at most
    /// `limit`. Never returns an event a crash could still take back.
    pub fn read_after(
        &self,
        after: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let durable = self.durable_seq();
        let start = after.map_or(0, |s| s.0.saturating_add(1));
        let mut out = Vec::new();
        if start > durable.0 || limit == 0 {
            return Ok(out);
        }
        for item in self
            .inner
            .tree
            .range(keys::event(start)..=keys::event(durable.0))
            .take(limit)
        {
            let (k, v) = item?;
            let seq = keys::seq_from_event_key(&k)?;
            let (meta, body, _) = load_event(&self.inner.log, &v)?;
            out.push(StoredEvent { seq, meta, body });
        }
        Ok(out)
    }

    /// Highest sequence known to be on disk.
    pub fn durable_seq(&self) -> Seq {
        Seq(self.inner.durable.borrow().seq)
    }

    /// A receiver that changes whenever more events become durable; dispatch
    /// and the events API wake on it instead of polling.
    pub fn watch_durable(&self) -> watch::Receiver<Durability> {
        self.inner.durable.subscribe()
    }

    /// Tells dispatch workers that pending state changed outside their loop.
    pub fn notify_dispatch(&self) {
        self.inner.dispatch_epoch.send_modify(|e| *e += 1);
    }

    /// Receiver of [`Store::notify_dispatch`] signals.
    pub fn watch_dispatch(&self) -> watch::Receiver<u64> {
        self.inner.dispatch_epoch.subscribe()
    }

    /// True while the store accepts writes (readiness).
    pub fn is_healthy(&self) -> bool {
        !self.inner.poisoned.load(Ordering::SeqCst) && !self.inner.closing.is_cancelled()
    }

    /// True when `max_queue_bytes` is reached.
    pub fn is_full(&self) -> bool {
        self.inner
            .options
            .max_queue_bytes
            .is_some_and(|limit| self.stored_bytes() >= limit)
    }

    /// Bytes of event records stored now (events leave with retention).
    pub fn stored_bytes(&self) -> u64 {
        self.inner.stored_bytes.load(Ordering::Relaxed)
    }

    /// Subtracts the bytes of deleted events, persisting the new total in the
    /// same batch as the deletions. Only durable events are deleted, and they
    /// are all at or below `indexed_through`, so both totals shrink.
    pub(crate) fn apply_removal(
        &self,
        mut batch: sled::Batch,
        freed: u64,
    ) -> Result<(), StoreError> {
        let mut state = self.inner.write.lock().map_err(|_| StoreError::Poisoned)?;
        let indexed = state.indexed_bytes.saturating_sub(freed);
        batch.insert(
            keys::META_WATERMARK,
            &keys::encode_watermark(state.indexed_through, indexed),
        );
        self.inner.tree.apply_batch(batch)?;
        state.indexed_bytes = indexed;
        state.stored_bytes = state.stored_bytes.saturating_sub(freed);
        self.inner
            .stored_bytes
            .store(state.stored_bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Cancelled when the store becomes poisoned; `run` exits on it.
    pub fn poisoned(&self) -> CancellationToken {
        self.inner.poison_token.clone()
    }

    /// Bytes the store uses on disk: sled plus the event log.
    pub fn size_on_disk(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0) + self.inner.log.size_on_disk()
    }

    /// Reads an event's record from the value of its `e` key.
    pub(crate) fn load_event(&self, value: &[u8]) -> Result<(EventMeta, Bytes, u64), StoreError> {
        load_event(&self.inner.log, value)
    }

    /// Every event up to this sequence is durable in sled itself, not only
    /// in the log (the watermark).
    pub(crate) fn indexed_through(&self) -> Result<u64, StoreError> {
        let state = self.inner.write.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(state.indexed_through)
    }

    /// Records that every event up to `seq` is complete on disk, with the
    /// byte count recovery starts from: one insert per flush (a
    /// `sled::Batch` per flush cost a measurable share of ingest CPU), under
    /// the write lock so no removal interleaves with the byte count.
    fn advance_watermark(&self, seq: u64, newly_indexed: u64) -> Result<(), StoreError> {
        let mut state = self.inner.write.lock().map_err(|_| StoreError::Poisoned)?;
        if seq <= state.indexed_through && newly_indexed == 0 {
            return Ok(());
        }
        let indexed_bytes = state.indexed_bytes + newly_indexed;
        self.inner.tree.insert(
            keys::META_WATERMARK,
            &keys::encode_watermark(seq, indexed_bytes),
        )?;
        state.indexed_through = seq;
        state.indexed_bytes = indexed_bytes;
        state.sled_bytes_ahead = state.sled_bytes_ahead.saturating_sub(newly_indexed);
        Ok(())
    }

    /// Flushes sled (with the real fsync) and moves the watermark to what
    /// sled held before the flush began. Every index entry in sled is for a
    /// record the log already synced (groups are indexed after their sync),
    /// so sled is never durable ahead of the log.
    fn flush_sled_and_advance(&self) -> Result<(), StoreError> {
        let mut synced_blobs = self
            .inner
            .sled_flush
            .lock()
            .map_err(|_| StoreError::Poisoned)?;
        let (seq, ahead) = {
            let w = self.inner.write.lock().map_err(|_| StoreError::Poisoned)?;
            (w.sled_seq, w.sled_bytes_ahead)
        };
        *synced_blobs = flush_and_fsync(
            &self.inner.db,
            &self.inner.options.path,
            std::mem::take(&mut *synced_blobs),
        )?;
        // The watermark itself is persisted by the next sled flush.
        self.advance_watermark(seq, ahead)
    }

    /// Deletes event-log segments that no stored event refers to any more,
    /// so the disk space retention freed comes back. Call only after the
    /// deletions that emptied them are durable ([`Store::sync`]): a crash
    /// must not bring back a locator into a deleted segment. Returns how
    /// many segments were deleted.
    pub fn reclaim_segments(&self) -> Result<usize, StoreError> {
        let active = {
            let state = self.inner.write.lock().map_err(|_| StoreError::Poisoned)?;
            state.active.id()
        };
        let ids = self.inner.log.list()?;
        let mut removed = 0;
        for (i, &id) in ids.iter().enumerate() {
            if id >= active {
                break;
            }
            // Segment `id` holds sequences up to the next segment's name.
            let end = ids.get(i + 1).copied().unwrap_or(active).saturating_sub(1);
            let referenced = end >= id
                && self
                    .inner
                    .tree
                    .range(keys::event(id)..=keys::event(end))
                    .next()
                    .transpose()?
                    .is_some();
            if !referenced {
                self.inner.log.remove(id)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn poison(&self, why: &str) {
        if !self.inner.poisoned.swap(true, Ordering::SeqCst) {
            tracing::error!(error = why, "store poisoned: refusing further writes");
        }
        self.inner.logged.send_modify(|d| d.poisoned = true);
        self.inner.durable.send_modify(|d| d.poisoned = true);
        self.inner.poison_token.cancel();
    }

    /// Test hook: poisons the store as a failed flush would.
    #[doc(hidden)]
    pub fn poison_for_test(&self) {
        self.poison("poisoned by test");
    }

    /// Stops accepting appends, performs a final flush and stops the flusher.
    /// Call it after dispatch has stopped: the pending counts it persists
    /// are trusted at the next open only if nothing changes after it.
    pub async fn close(&self) -> Result<(), StoreError> {
        // Flush what is there before refusing new writes, so in-flight appends
        // still waiting for their flush complete.
        let result = self.sync().await;
        self.inner.closing.cancel();
        for worker in [&self.inner.flusher, &self.inner.sled_flusher] {
            worker.unpark();
            if let Some(h) = worker.take_handle() {
                let _ = tokio::task::spawn_blocking(move || h.join()).await;
            }
        }
        result?;
        if self.inner.poisoned.load(Ordering::SeqCst) {
            return Err(StoreError::Poisoned);
        }
        let counts = self
            .inner
            .pending_counts
            .lock()
            .map_err(|_| StoreError::Poisoned)?
            .clone();
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let json =
                serde_json::to_vec(&counts).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            store.inner.tree.insert(keys::META_PENDING_COUNTS, json)?;
            store.flush_sled_now()
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("close task failed: {e}")))?
    }

    /// Flushes and fsyncs sled outside the flusher, when it is not running
    /// (at open, and at close after it stopped).
    fn flush_sled_now(&self) -> Result<(), StoreError> {
        flush_and_fsync(&self.inner.db, &self.inner.options.path, Default::default()).map(|_| ())
    }

    /// What this open recovered (see [`RecoveryReport`]).
    pub fn recovery_report(&self) -> RecoveryReport {
        self.inner.recovered
    }

    /// Adds `delta` to the pending count of `dest` (see `pending_counts`).
    pub(crate) fn count_pending(&self, dest: &str, delta: i64) {
        if let Ok(mut counts) = self.inner.pending_counts.lock() {
            add_count(&mut counts, dest, delta);
        }
    }

    /// Number of pending deliveries for `dest`, without a scan.
    pub fn pending_count(&self, dest: &str) -> usize {
        self.inner
            .pending_counts
            .lock()
            .ok()
            .and_then(|c| c.get(dest).copied())
            .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Deletes dedupe markers older than the window, visiting at most
    /// `max_keys` marker buckets ([`markers`]) from `cursor` (exclusive;
    /// `None` = the start). Returns how many markers were removed and where
    /// the next pass resumes (`None` once the end was reached). Bounded so
    /// that a large dedupe set never costs one long scan; expired markers are
    /// already ignored on read and dropped whenever their bucket is written,
    /// so the sweep only reclaims the space of quiet buckets.
    pub fn sweep_dedupe(
        &self,
        now_ms: i64,
        cursor: Option<Vec<u8>>,
        max_keys: usize,
    ) -> Result<(usize, Option<Vec<u8>>), StoreError> {
        let window_ms = self.inner.dedupe_window_ms();
        let start = cursor.map_or(
            std::ops::Bound::Included(vec![keys::DEDUPE]),
            std::ops::Bound::Excluded,
        );
        let end = std::ops::Bound::Excluded(vec![keys::DEDUPE + 1]);
        let mut removed = 0;
        let mut visited = 0;
        let mut last = None;
        for item in self
            .inner
            .tree
            .range::<Vec<u8>, _>((start, end))
            .take(max_keys)
        {
            visited += 1;
            let (k, v) = item?;
            if markers::Bucket::decode(&v)?.prune(now_ms, window_ms) > 0 {
                // Re-read under the bucket lock: the flusher may have
                // written this bucket since the scan read it.
                let _buckets = self
                    .inner
                    .buckets
                    .lock()
                    .map_err(|_| StoreError::Poisoned)?;
                let mut bucket = markers::Bucket::load(&self.inner.tree, &k)?;
                removed += bucket.prune(now_ms, window_ms);
                bucket.store(&self.inner.tree, &k)?;
            }
            last = Some(k.to_vec());
        }
        // Fewer than asked means the end was reached: start over next time.
        Ok((removed, if visited == max_keys { last } else { None }))
    }
}

/// How [`write_derived`] runs: for an append or for recovery.
struct Derive<'a> {
    /// Recovery: no pending entry for a destination that finished the event.
    recovering: bool,
    /// Where the event's markers go (`meta.markers`, hashed once).
    slots: &'a [markers::Slot],
    /// Drop markers older than this from each bucket written.
    prune_window_ms: Option<i64>,
    /// Called for each pending entry that did not exist before.
    on_new_pending: &'a mut dyn FnMut(&str),
}

/// The dedupe markers and pending entries of an event. Idempotent, so
/// recovery can run it again; when `recovering`, no pending entry is
/// recreated for a destination that already finished the event.
fn write_derived(
    tree: &sled::Tree,
    seq: u64,
    meta: &EventMeta,
    now_ms: i64,
    how: Derive<'_>,
) -> Result<(), StoreError> {
    let Derive {
        recovering,
        slots,
        prune_window_ms,
        on_new_pending,
    } = how;
    let mut buckets = Buckets::default();
    for slot in slots {
        buckets
            .get(tree, &slot.bucket)?
            .upsert(slot.fingerprint, seq, now_ms);
    }
    // Every bucket held was read for one of these slots: write each once.
    for (key, bucket) in &mut buckets.0 {
        if let Some(window_ms) = prune_window_ms {
            bucket.prune(now_ms, window_ms);
        }
        bucket.store(tree, key)?;
    }
    let pending = serde_json::to_vec(&PendingState {
        entity: meta.entity.clone(),
        source: meta.source.clone(),
        provider_time_ms: meta.provider_time_ms,
        order_ms: meta.order_ms,
        next_at_ms: meta.release_at_ms,
        ..PendingState::default()
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    for dest in &meta.destinations {
        if recovering && delivery::is_finished(tree, dest, Seq(seq))? {
            continue;
        }
        if tree
            .insert(keys::pending(dest, seq), pending.as_slice())?
            .is_none()
        {
            on_new_pending(dest);
        }
    }
    Ok(())
}

/// The marker slots of a stored event (its record lists the marker keys).
fn marker_slots(meta: &EventMeta) -> Result<Vec<markers::Slot>, StoreError> {
    meta.markers
        .iter()
        .map(|m| {
            hex::decode(m)
                .map(|key| markers::Slot::of(&key))
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .collect()
}

/// Reads an event's record from the value of its `e` key (a locator into
/// the log, or an inline record written by an older build), and returns it
/// with the record's length (what `max_queue_bytes` counts).
fn load_event(log: &SegmentLog, value: &[u8]) -> Result<(EventMeta, Bytes, u64), StoreError> {
    match Locator::decode(value)? {
        Some(at) => {
            let bytes = log.read(&at)?;
            let (meta, body) = record::decode(&bytes)?;
            Ok((meta, body, u64::from(at.len)))
        }
        None => {
            let (meta, body) = record::decode(value)?;
            Ok((meta, body, value.len() as u64))
        }
    }
}

/// What [`complete_interrupted_appends`] did.
struct Recovery {
    /// Events whose markers or pending entries were completed.
    repaired: usize,
    /// Events removed because their record never reached the disk.
    torn: usize,
    /// Record bytes of the (intact) events after the watermark.
    bytes_after: u64,
    /// One past the highest sequence seen, torn ones included: a torn
    /// event's sequence is not handed out again.
    next_seq: u64,
}

/// Completes appends a crash interrupted: for events after the last flush
/// known to have finished, writes any missing marker or pending entry, and
/// removes events whose record is not intact in the log (only possible
/// after power loss, for events that were never acknowledged).
fn complete_interrupted_appends(
    tree: &sled::Tree,
    log: &SegmentLog,
    indexed_through: u64,
) -> Result<Recovery, StoreError> {
    let from = indexed_through.saturating_add(1);
    let mut recovery = Recovery {
        repaired: 0,
        torn: 0,
        bytes_after: 0,
        next_seq: 1,
    };
    for item in tree.range(keys::event(from)..=keys::event(u64::MAX)) {
        let (k, v) = item?;
        let seq = keys::seq_from_event_key(&k)?;
        recovery.next_seq = recovery.next_seq.max(seq.0.saturating_add(1));
        let meta = match load_event(log, &v) {
            Ok((meta, _, len)) => {
                recovery.bytes_after += len;
                meta
            }
            Err(StoreError::Corrupt(why)) => {
                tracing::warn!(seq = seq.0, error = %why, "event record lost in a crash");
                remove_torn_event(tree, seq.0)?;
                recovery.torn += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let slots = marker_slots(&meta)?;
        let complete = slots.iter().all(|slot| {
            markers::Bucket::load(tree, &slot.bucket)
                .ok()
                .and_then(|b| b.find(&slot.fingerprint))
                .is_some_and(|found| found.seq == seq.0)
        }) && meta.destinations.iter().all(|d| {
            tree.contains_key(keys::pending(d, seq.0)).unwrap_or(false)
                || delivery::is_finished(tree, d, seq).unwrap_or(false)
        });
        if !complete {
            write_derived(
                tree,
                seq.0,
                &meta,
                meta.received_at_ms,
                Derive {
                    recovering: true,
                    slots: &slots,
                    prune_window_ms: None,
                    on_new_pending: &mut |_| {},
                },
            )?;
            recovery.repaired += 1;
        }
    }
    Ok(recovery)
}

/// Removes an event whose record is gone, with every key that names its
/// sequence: without it a provider's retry would be answered `duplicate`
/// by a marker whose event cannot be delivered. Scans all markers and
/// pending entries; it runs only at open, and only after a torn write.
fn remove_torn_event(tree: &sled::Tree, seq: u64) -> Result<(), StoreError> {
    tree.remove(keys::event(seq))?;
    for key in tree.scan_prefix([keys::PENDING]).keys() {
        let key = key?;
        if keys::seq_from_pending_key(&key)? == Seq(seq) {
            tree.remove(key)?;
        }
    }
    for item in tree.scan_prefix([keys::DEDUPE]) {
        let (k, v) = item?;
        let mut bucket = markers::Bucket::decode(&v)?;
        if bucket.remove_seq(seq) > 0 {
            bucket.store(tree, &k)?;
        }
    }
    Ok(())
}

/// Pending counts at open: the ones a clean close persisted (always removed,
/// so a crash from here on is noticed) when `trust_persisted`, or a count of
/// every pending entry.
fn load_pending_counts(
    tree: &sled::Tree,
    trust_persisted: bool,
) -> Result<std::collections::HashMap<String, u64>, StoreError> {
    if let Some(v) = tree.remove(keys::META_PENDING_COUNTS)? {
        if let (true, Ok(counts)) = (trust_persisted, serde_json::from_slice(&v)) {
            return Ok(counts);
        }
    }
    let started = std::time::Instant::now();
    let mut counts = std::collections::HashMap::<String, u64>::new();
    for key in tree.scan_prefix([keys::PENDING]).keys() {
        let key = key?;
        add_count(&mut counts, keys::destination_from_pending_key(&key)?, 1);
    }
    if !counts.is_empty() {
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            pending = counts.values().sum::<u64>(),
            "counted pending deliveries (no counts saved by a clean shutdown)"
        );
    }
    Ok(counts)
}

/// Adds `delta` to `dest`'s count, allocating the name only the first time
/// (this runs per appended event).
fn add_count(counts: &mut std::collections::HashMap<String, u64>, dest: &str, delta: i64) {
    match counts.get_mut(dest) {
        Some(n) => *n = n.saturating_add_signed(delta),
        None => {
            counts.insert(dest.to_string(), u64::try_from(delta).unwrap_or(0));
        }
    }
}

/// Marker buckets read during one append, so each is read once and written
/// once with all of the event's markers (two markers may share a bucket).
#[derive(Default)]
struct Buckets(Vec<(Vec<u8>, markers::Bucket)>);

impl Buckets {
    fn get(&mut self, tree: &sled::Tree, key: &[u8]) -> Result<&mut markers::Bucket, StoreError> {
        let index = match self.0.iter().position(|(k, _)| k == key) {
            Some(i) => i,
            None => {
                self.0
                    .push((key.to_vec(), markers::Bucket::load(tree, key)?));
                self.0.len() - 1
            }
        };
        Ok(&mut self.0[index].1)
    }
}

/// The next sequence: one past both the watermark and the last event.
fn recover_next_seq(tree: &sled::Tree, watermark: &Watermark) -> Result<u64, StoreError> {
    // Retention deletes only events at or below the watermark, so past it
    // no sequence was ever handed out.
    let from_legacy = match tree.get(keys::LEGACY_NEXT_SEQ)? {
        Some(v) => keys::be_u64(&v)?,
        None => 1,
    };
    let from_events = match tree.scan_prefix([keys::EVENT]).next_back() {
        Some(item) => keys::seq_from_event_key(&item?.0)?.0 + 1,
        None => 1,
    };
    Ok(from_legacy
        .max(from_events)
        .max(watermark.seq.saturating_add(1)))
}

/// The persisted flush watermark.
struct Watermark {
    /// Every event up to this sequence was complete on disk.
    seq: u64,
    /// Record bytes of the events up to `seq`, when known.
    bytes: Option<u64>,
}

/// Reads the watermark, or what an older build persisted instead (its byte
/// total then counted every event, so it is not reused: one scan instead).
fn read_watermark(tree: &sled::Tree) -> Result<Watermark, StoreError> {
    if let Some(v) = tree.get(keys::META_WATERMARK)? {
        let (seq, bytes) = keys::decode_watermark(&v)?;
        return Ok(Watermark {
            seq,
            bytes: Some(bytes),
        });
    }
    let seq = match tree.get(keys::LEGACY_INDEXED_THROUGH)? {
        Some(v) => keys::be_u64(&v)?,
        None => 0,
    };
    Ok(Watermark { seq, bytes: None })
}

/// Record bytes of the stored events up to `seq`, by a scan: only for a
/// store without a watermark.
fn bytes_through(tree: &sled::Tree, log: &SegmentLog, seq: u64) -> Result<u64, StoreError> {
    let mut total = 0u64;
    for item in tree.range(keys::event(0)..=keys::event(seq)) {
        total += load_event(log, &item?.1)?.2;
    }
    Ok(total)
}

/// fsyncs a directory so newly created files in it survive power loss.
pub(crate) fn sync_dir(path: &Path) -> Result<(), std::io::Error> {
    File::open(path)?.sync_all()
}

/// Waits on a flusher progress channel until `generation` is reached.
async fn wait_for_generation(
    channel: &watch::Sender<Durability>,
    generation: u64,
) -> Result<(), StoreError> {
    let mut rx = channel.subscribe();
    let state = rx
        .wait_for(|d| d.poisoned || d.generation >= generation)
        .await
        .map_err(|_| StoreError::Closed)?;
    if state.poisoned {
        Err(StoreError::Poisoned)
    } else {
        Ok(())
    }
}

/// Writes the sled index entries of a group of appended events (their
/// records are already in the log), each locator first, then takes their
/// markers and locators out of the write state. Runs on the flusher thread
/// right after the log sync that acknowledges the group: the request path
/// only checks for duplicates and appends to the log, and this work runs
/// beside the requests instead of inside their lock or their wait.
///
/// Plain ordered inserts, not a `sled::Batch`: sled 0.34's batch costs
/// ~10× a plain insert (measured: 105 µs vs 32 µs for a whole append).
/// Atomicity comes from the order instead: sled recovers a prefix of its
/// log, and the record (written first) names every key written after it,
/// so [`Store::open`] completes an append that a crash cut short, and
/// re-indexes from the log an acknowledged group whose indexing a crash
/// interrupted.
fn index_group(store: &Store, jobs: Vec<IndexJob>) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let inner = &store.inner;
    let window_ms = inner.dedupe_window_ms();
    {
        // Bucket read-modify-writes here and in the dedupe sweep exclude
        // each other; appends only read buckets.
        let _buckets = inner.buckets.lock().map_err(|_| StoreError::Poisoned)?;
        for job in &jobs {
            inner.tree.insert(keys::event(job.seq), &job.at.encode())?;
            let derive = Derive {
                recovering: false,
                slots: &job.slots,
                prune_window_ms: Some(window_ms),
                on_new_pending: &mut |dest| store.count_pending(dest, 1),
            };
            write_derived(&inner.tree, job.seq, &job.meta, job.now_ms, derive)?;
        }
    }
    let mut state = inner.write.lock().map_err(|_| StoreError::Poisoned)?;
    for job in &jobs {
        // Jobs come in sequence order and are the oldest unindexed events.
        state.unindexed_at.pop_front();
        state.sled_seq = job.seq;
        state.sled_bytes_ahead += job.len;
        for slot in &job.slots {
            // A later event may hold the slot now (same marker after the
            // window expired); its entry stays.
            if state.unindexed_markers.get(slot).map(|e| e.seq) == Some(job.seq) {
                state.unindexed_markers.remove(slot);
            }
        }
    }
    Ok(())
}

/// How long the idle flusher sleeps before it checks whether the store is
/// still in use (it holds only a weak reference, so a store dropped without
/// [`Store::close`], as tests do, lets go of sled's lock at once).
const FLUSHER_IDLE_CHECK: Duration = Duration::from_millis(200);

/// The group-commit loop, on its own thread: one flush at a time, covering
/// every write made before it started.
fn flusher(inner: std::sync::Weak<Inner>) {
    let mut last_flush_start = std::time::Instant::now();
    // Writes the last flush covered: 1 means a lone writer, who should not
    // wait for company that is not coming.
    let mut last_group = 0;
    loop {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let store = Store { inner };
        let inner = &store.inner;
        let target_gen = inner.written_generation.load(Ordering::SeqCst);
        let current = *inner.durable.borrow();
        if target_gen <= current.generation {
            if inner.closing.is_cancelled() || current.poisoned {
                return;
            }
            drop(store);
            // A wake between the check above and this park is not lost:
            // `unpark` leaves a token that makes `park` return at once.
            std::thread::park_timeout(FLUSHER_IDLE_CHECK);
            continue;
        }
        let since = last_flush_start.elapsed();
        let interval = inner.options.commit_interval;
        if last_group > 1 && since < interval {
            drop(store);
            std::thread::sleep(interval - since);
            last_group = 0;
            continue;
        }
        last_flush_start = std::time::Instant::now();
        last_group = target_gen - current.generation;
        // Every event assigned before this point is covered by this flush.
        let (target_seq, segments, jobs) = match inner.write.lock() {
            Ok(mut w) => (
                w.next_seq.saturating_sub(1),
                w.active.to_sync(),
                std::mem::take(&mut w.unindexed),
            ),
            Err(_) => {
                store.poison("write lock poisoned");
                return;
            }
        };
        // Read after the generation: a requester sets the flag before it
        // bumps the generation, so a flush covering that generation either
        // sees the flag or follows one that did and flushed sled.
        // Only requested sled flushes run here; the periodic one runs on
        // its own thread so that it never holds up a group's log sync.
        let flush_sled = inner.sled_flush_requested.swap(false, Ordering::SeqCst);
        let flushed = (|| -> Result<(), StoreError> {
            // The log first: sled must never be durable ahead of it.
            for file in &segments {
                file.sync_data()?;
            }
            // The group is durable: acknowledge it before indexing it, so
            // its requests are answered while this thread works on sled
            // (the next group's wait is this group's indexing, not its
            // indexing plus its sync).
            inner.logged.send_modify(|d| {
                d.generation = d.generation.max(target_gen);
                d.seq = d.seq.max(target_seq);
            });
            index_group(&store, jobs)?;
            if flush_sled {
                store.flush_sled_and_advance()?;
            }
            Ok(())
        })();
        if let Err(e) = flushed {
            store.poison(&e.to_string());
            return;
        }
        inner.durable.send_modify(|d| {
            d.generation = d.generation.max(target_gen);
            d.seq = d.seq.max(target_seq);
        });
    }
}

/// The periodic sled flush, on its own thread: every [`SLED_FLUSH_EVERY`]
/// while sled holds index entries after the watermark. It used to run on
/// the flusher thread, where its 3–13 ms (measured at ~17k events/s) held
/// up the next group's log sync once a second.
fn sled_flusher(inner: std::sync::Weak<Inner>) {
    loop {
        // An unpark (at close) ends the wait early.
        std::thread::park_timeout(SLED_FLUSH_EVERY);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let store = Store { inner };
        if store.inner.closing.is_cancelled() || store.inner.poisoned.load(Ordering::SeqCst) {
            return;
        }
        let behind = match store.inner.write.lock() {
            Ok(w) => w.sled_seq > w.indexed_through,
            Err(_) => {
                store.poison("write lock poisoned");
                return;
            }
        };
        if behind {
            if let Err(e) = store.flush_sled_and_advance() {
                store.poison(&e.to_string());
                return;
            }
        }
    }
}

/// `storage.commit_interval` when the config leaves it out (and what tests
/// and benches open stores with): no pacing, each flush starts as soon as
/// the previous one ends. Pacing trades latency for fewer `fdatasync`s, and
/// senders with bounded concurrency (providers, the benches' connections)
/// then get less throughput, not more: at 16 connections 2 ms halved it;
/// at 64 it was even; only at 256 did it gain (`bench/RESULTS.md`).
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::ZERO;

/// How stale sled may get behind the log while only events arrive: bounds
/// what recovery has to re-index from the log after a crash.
pub const SLED_FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Puts back the locators of records the log has after the watermark but
/// sled lost (it is flushed after the acknowledgement, see the module doc).
/// Their markers and pending entries are then completed by
/// [`complete_interrupted_appends`], which visits every event after the
/// watermark. Returns how many locators were restored.
fn reindex_from_log(
    tree: &sled::Tree,
    log: &SegmentLog,
    watermark: u64,
) -> Result<usize, StoreError> {
    let ids = log.list()?;
    // The segment holding watermark + 1 is the last one named at or below it.
    let first = ids
        .iter()
        .rposition(|&id| id <= watermark.saturating_add(1))
        .unwrap_or(0);
    let mut restored = 0;
    for &id in &ids[first..] {
        log.scan(id, |seq, at, _| {
            if seq > watermark && !tree.contains_key(keys::event(seq))? {
                tree.insert(keys::event(seq), &at.encode())?;
                restored += 1;
            }
            Ok(())
        })?;
    }
    Ok(restored)
}

/// sled's flush, then a real fsync of its data files (see the module doc).
fn flush_and_fsync(
    db: &sled::Db,
    path: &Path,
    mut synced_blobs: std::collections::HashSet<std::ffi::OsString>,
) -> Result<std::collections::HashSet<std::ffi::OsString>, StoreError> {
    db.flush()?;
    File::open(path.join("db"))?.sync_data()?;
    let blobs_dir = path.join("blobs");
    let mut new_blob = false;
    if let Ok(entries) = std::fs::read_dir(&blobs_dir) {
        let mut present = std::collections::HashSet::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !synced_blobs.contains(&name) {
                File::open(entry.path())?.sync_data()?;
                new_blob = true;
            }
            present.insert(name);
        }
        // Forget blobs sled has removed so the set stays bounded.
        synced_blobs = present;
    }
    if new_blob {
        sync_dir(&blobs_dir)?;
    }
    Ok(synced_blobs)
}
