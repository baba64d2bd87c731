//! Store recovery: an append cut short by a crash is completed at open.

use std::time::Duration;

use super::*;

fn options(path: &Path) -> StoreOptions {
    StoreOptions {
        path: path.to_path_buf(),
        dedupe_window: Duration::from_secs(3600),
        max_queue_bytes: None,
        segment_bytes: 4096,
        commit_interval: DEFAULT_COMMIT_INTERVAL,
    }
}

/// Opens the store, waiting (with a deadline) for the previous handle's
/// sled threads to let go of the file lock: dropping the last handle
/// releases it from a background thread, a moment later.
async fn open(path: &Path) -> Store {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(options(path)) {
            Ok(store) => return store,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("open: {e}"),
        }
    }
}

fn event(id: &str) -> NewEvent {
    NewEvent {
        meta: EventMeta {
            source: "stripe".into(),
            provider_event_id: Some(id.into()),
            entity: Some("cus_1".into()),
            received_at_ms: 1_000,
            destinations: vec!["app".into()],
            ..EventMeta::default()
        },
        body: Bytes::from_static(b"{}"),
        dedupe: vec![DedupeKey::EventId(id.into())],
    }
}

#[tokio::test]
async fn an_append_cut_short_after_its_record_is_completed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    assert!(matches!(
        store.append(event("evt_1"), 1_000).await.unwrap(),
        Appended::Accepted(Seq(1))
    ));
    // Simulate a crash right after the second record was written: the record
    // is there, its marker and pending entry are not, and no flush recorded it.
    let marker = keys::dedupe("stripe", &DedupeKey::EventId("evt_2".into()));
    let mut meta = event("evt_2").meta;
    meta.markers = vec![hex::encode(&marker)];
    store
        .tree()
        .insert(keys::event(2), record::encode(&meta, b"{}").unwrap())
        .unwrap();
    store
        .tree()
        .insert(keys::META_WATERMARK, &keys::encode_watermark(1, 0))
        .unwrap();
    store.tree().flush().unwrap();
    store.close().await.unwrap();
    drop(store);

    let store = open(dir.path()).await;
    assert!(
        markers::lookup(store.tree(), &marker)
            .unwrap()
            .is_some_and(|m| m.seq == 2),
        "marker restored"
    );
    assert_eq!(pending_seqs(&store), vec![1, 2]);
    let restored = store.pending_after("app", Some(Seq(1)), 1).unwrap();
    assert_eq!(restored[0].1.source, "stripe");
    // The restored marker makes a retry of evt_2 a duplicate, and the next
    // sequence continues after it.
    assert_eq!(append(&store, "evt_2").await, Appended::Duplicate(Seq(2)));
    assert_eq!(append(&store, "evt_3").await, Appended::Accepted(Seq(3)));
    store.close().await.unwrap();
}

#[tokio::test]
async fn recovery_does_not_resurrect_a_finished_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.append(event("evt_1"), 1_000).await.unwrap();
    store.caught_up().await;
    delivered(&store, 1);
    // Pretend no flush ever recorded evt_1 as complete.
    let store = close_edit_reopen(store, dir.path(), |tree| {
        tree.remove(keys::META_WATERMARK).unwrap();
    })
    .await;
    assert!(store.pending_after("app", None, 10).unwrap().is_empty());
    assert!(store.delivered_at("app", Seq(1)).unwrap().is_some());
    store.close().await.unwrap();
}

#[tokio::test]
async fn the_dedupe_sweep_removes_only_expired_markers_in_bounded_passes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // Window is 1 h: five markers from t=0, five from t=2 h.
    for n in 0..5 {
        store.append(event(&format!("old_{n}")), 0).await.unwrap();
    }
    for n in 0..5 {
        store
            .append(event(&format!("new_{n}")), 7_200_000)
            .await
            .unwrap();
    }
    let now = 7_200_000 + 1;
    let mut cursor = None;
    let mut removed = 0;
    let mut passes = 0;
    loop {
        let (n, next) = store.sweep_dedupe(now, cursor, 3).unwrap();
        removed += n;
        passes += 1;
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(removed, 5);
    assert!(
        passes >= 4,
        "10 markers at 3 per pass take 4 passes, took {passes}"
    );
    // An expired id is new again; a live one is still a duplicate.
    assert!(matches!(
        store.append(event("old_0"), now).await.unwrap(),
        Appended::Accepted(_)
    ));
    assert!(matches!(
        store.append(event("new_0"), now).await.unwrap(),
        Appended::Duplicate(_)
    ));
    store.close().await.unwrap();
}

/// Sequences pending for the test destination, in order.
fn pending_seqs(store: &Store) -> Vec<u64> {
    let pending = store.pending_after("app", None, 100).unwrap();
    pending.iter().map(|(s, _)| s.0).collect()
}

/// Appends a small event at t = 2 s (after the fixtures' 1 s).
async fn append(store: &Store, id: &str) -> Appended {
    store.append(event(id), 2_000).await.unwrap()
}

fn event_with_body(id: &str, body_len: usize) -> NewEvent {
    let mut e = event(id);
    e.body = Bytes::from(vec![b'x'; body_len]);
    e
}

/// Appends `evt_1` ..= `evt_{count}` with bodies of `body_len` bytes at t = 1 s.
async fn append_many(store: &Store, count: u64, body_len: usize) {
    for n in 1..=count {
        store
            .append(event_with_body(&format!("evt_{n}"), body_len), 1_000)
            .await
            .unwrap();
    }
}

/// Closes the store, edits its tree as a crash or a test scenario would,
/// and opens it again.
async fn close_edit_reopen(store: Store, path: &Path, edit: impl FnOnce(&sled::Tree)) -> Store {
    store.close().await.unwrap();
    edit(store.tree());
    store.tree().flush().unwrap();
    drop(store);
    open(path).await
}

fn delivered(store: &Store, seq: u64) {
    let attempt = AttemptRecord {
        attempt: 1,
        at_ms: 1_000,
        duration_ms: 1,
        status: Some(200),
        error: None,
        outcome: "delivered".into(),
    };
    store
        .record_attempt("app", Seq(seq), &attempt, &Transition::Delivered, 1_001)
        .unwrap();
}

#[tokio::test]
async fn a_record_torn_by_a_crash_is_removed_with_its_marker_and_pending_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store
        .append(event_with_body("evt_1", 100), 1_000)
        .await
        .unwrap();
    store
        .append(event_with_body("evt_2", 100), 1_000)
        .await
        .unwrap();
    store.caught_up().await;
    let value = store.tree().get(keys::event(2)).unwrap().unwrap();
    let at = Locator::decode(&value).unwrap().unwrap();
    // As after power loss: sled kept evt_2's locator but its bytes are not
    // what was written, and no flush recorded evt_2 as complete.
    store.close().await.unwrap();
    store
        .tree()
        .insert(keys::META_WATERMARK, &keys::encode_watermark(1, 0))
        .unwrap();
    store.tree().flush().unwrap();
    drop(store);
    let path = dir
        .path()
        .join(segments::DIR)
        .join(format!("{:020}.seg", at.segment));
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"garbage", at.offset + 10).unwrap();
    drop(file);

    let store = open(dir.path()).await;
    assert!(store.get(Seq(1)).unwrap().is_some(), "evt_1 is intact");
    assert!(store.get(Seq(2)).unwrap().is_none(), "torn evt_2 is gone");
    assert_eq!(pending_seqs(&store), vec![1]);
    // Its marker went with it: the provider's retry is a new event, not a
    // duplicate of one that can never be delivered.
    assert_eq!(append(&store, "evt_2").await, Appended::Accepted(Seq(3)));
    assert_eq!(append(&store, "evt_1").await, Appended::Duplicate(Seq(1)));
    store.close().await.unwrap();
}

#[tokio::test]
async fn stored_bytes_survive_reopen_and_retention_gives_segments_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    append_many(&store, 20, 1_000).await;
    let stored = store.stored_bytes();
    assert!(stored > 20_000, "20 records of 1 KB: {stored}");
    // 4 KiB segments hold three or four such records each.
    assert!(store.inner.log.list().unwrap().len() >= 5);
    store.close().await.unwrap();
    drop(store);

    let store = open(dir.path()).await;
    assert_eq!(store.stored_bytes(), stored, "total recovered exactly");
    for seq in 1..=20 {
        assert_eq!(store.get(Seq(seq)).unwrap().unwrap().body.len(), 1_000);
        if seq <= 10 {
            delivered(&store, seq);
        }
    }
    store.sync().await.unwrap();
    assert_eq!(store.expire_delivered(10_000, 1_000).unwrap(), 10);
    store.sync().await.unwrap();
    let before = store.inner.log.list().unwrap().len();
    let reclaimed = store.reclaim_segments().unwrap();
    assert!(
        reclaimed >= 2,
        "segments of expired events deleted: {reclaimed}"
    );
    assert_eq!(store.inner.log.list().unwrap().len(), before - reclaimed);
    let left = store.stored_bytes();
    assert!(left < stored && left > stored / 3, "{left} of {stored}");
    // Every event still pending reads back whole.
    for seq in 11..=20 {
        assert_eq!(store.get(Seq(seq)).unwrap().unwrap().body.len(), 1_000);
    }
    store.close().await.unwrap();
    drop(store);

    let store = open(dir.path()).await;
    assert_eq!(store.stored_bytes(), left, "total after removal recovered");
    store.close().await.unwrap();
}

#[tokio::test]
async fn an_acknowledged_event_sled_lost_is_reindexed_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    append_many(&store, 3, 300).await;
    let stored = store.stored_bytes();
    // As after `kill -9` before sled's own flush: the log has all three
    // acknowledged records, sled only the first (the watermark says so).
    let store = close_edit_reopen(store, dir.path(), |tree| {
        for seq in [2u64, 3] {
            let marker = keys::dedupe("stripe", &DedupeKey::EventId(format!("evt_{seq}")));
            tree.remove(keys::event(seq)).unwrap();
            let slot = markers::Slot::of(&marker);
            let mut bucket = markers::Bucket::load(tree, &slot.bucket).unwrap();
            assert_eq!(bucket.remove_seq(seq), 1);
            bucket.store(tree, &slot.bucket).unwrap();
            tree.remove(keys::pending("app", seq)).unwrap();
        }
        let watermark = keys::encode_watermark(1, stored / 3);
        tree.insert(keys::META_WATERMARK, &watermark).unwrap();
    })
    .await;
    for seq in 1..=3 {
        let event = store.get(Seq(seq)).unwrap().expect("re-indexed");
        assert_eq!(event.body.len(), 300);
    }
    assert_eq!(pending_seqs(&store), vec![1, 2, 3]);
    assert_eq!(store.stored_bytes(), stored, "byte total recovered");
    assert_eq!(
        store.append(event("evt_3"), 2_000).await.unwrap(),
        Appended::Duplicate(Seq(3)),
        "the marker came back with the event"
    );
    assert_eq!(append(&store, "evt_4").await, Appended::Accepted(Seq(4)));
    store.close().await.unwrap();
}

#[tokio::test]
async fn pending_counts_follow_every_change_and_survive_clean_and_unclean_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for n in 1..=4 {
        store
            .append(event(&format!("evt_{n}")), 1_000)
            .await
            .unwrap();
    }
    store.caught_up().await;
    assert_eq!(store.pending_count("app"), 4);
    delivered(&store, 1);
    assert_eq!(store.pending_count("app"), 3);
    let attempt = AttemptRecord {
        attempt: 5,
        at_ms: 1_000,
        duration_ms: 1,
        status: Some(500),
        error: None,
        outcome: "dead_letter".into(),
    };
    let dead = Transition::Dead {
        letter: DeadLetter {
            seq: 2,
            destination: "app".into(),
            attempts: 5,
            last_error: "HTTP 500".into(),
            dead_at_ms: 1_000,
            entity: Some("cus_1".into()),
        },
        block: false,
        pending: PendingState::default(),
    };
    store
        .record_attempt("app", Seq(2), &attempt, &dead, 1_000)
        .unwrap();
    assert_eq!(
        store.pending_count("app"),
        2,
        "a skipped dead letter leaves"
    );
    assert!(store.redrive("app", Seq(2)).unwrap());
    assert_eq!(store.pending_count("app"), 3, "a redrive comes back");
    store.sync().await.unwrap();
    assert_eq!(store.replay(Seq(1)).unwrap().unwrap(), vec!["app"]);
    assert_eq!(store.pending_count("app"), 4, "a replay comes back");
    assert_eq!(store.pending_count("other"), 0);
    assert_eq!(pending_seqs(&store).len(), 4, "the count is the truth");
    store.close().await.unwrap();
    drop(store);

    // Clean close: the persisted counts are taken as they are, no scan (a
    // planted value shows which path open took).
    let store = open(dir.path()).await;
    assert_eq!(store.pending_count("app"), 4);
    let plant = |n: u32| {
        move |tree: &sled::Tree| {
            let counts = format!(r#"{{"app":{n}}}"#).into_bytes();
            tree.insert(keys::META_PENDING_COUNTS, counts).unwrap();
        }
    };
    let store = close_edit_reopen(store, dir.path(), plant(7)).await;
    assert_eq!(store.pending_count("app"), 7);
    let store = close_edit_reopen(store, dir.path(), plant(4)).await;
    delivered(&store, 3);
    // An unclean stop leaves no persisted counts: open counts again.
    let store = close_edit_reopen(store, dir.path(), |tree| {
        tree.remove(keys::META_PENDING_COUNTS).unwrap();
    })
    .await;
    assert_eq!(store.pending_count("app"), 3);
    assert_eq!(pending_seqs(&store).len(), 3);
    store.close().await.unwrap();
}

/// A store whose flusher paces flushes by `commit_interval`.
fn open_paced(path: &Path, commit_interval: Duration) -> Store {
    Store::open(StoreOptions {
        commit_interval,
        ..options(path)
    })
    .unwrap()
}

/// The commit interval paces flushes only while several writers share
/// them: a lone sequential writer never waits for it. With a 30 s interval
/// these appends would take a minute if it did.
#[tokio::test]
async fn a_lone_writer_does_not_wait_for_the_commit_interval() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_paced(dir.path(), Duration::from_secs(30));
    for i in 0..3 {
        let appended = tokio::time::timeout(
            Duration::from_secs(10),
            store.append(event(&format!("evt_{i}")), 1_000),
        )
        .await
        .expect("a lone append waited for the commit interval");
        assert!(matches!(appended.unwrap(), Appended::Accepted(_)));
    }
    store.close().await.unwrap();
}

/// Concurrent appends under a paced flusher are all acknowledged, each
/// only once durable, and the flusher stops at close.
#[tokio::test]
async fn concurrent_appends_share_paced_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_paced(dir.path(), Duration::from_millis(20));
    let appends = (0..64).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.append(event(&format!("evt_{i}")), 1_000).await })
    });
    for joined in futures_util::future::join_all(appends).await {
        let Appended::Accepted(seq) = joined.unwrap().unwrap() else {
            panic!("distinct ids are not duplicates");
        };
        assert!(
            store.acknowledged_seq() >= seq,
            "acknowledged before durable"
        );
        assert!(
            store.get(seq).unwrap().is_some(),
            "acknowledged but not readable"
        );
    }
    store.caught_up().await;
    assert_eq!(store.durable_seq(), Seq(64));
    store.close().await.unwrap();
}

/// Copies of one event racing the flusher: whether a copy meets the
/// original's marker among the not-yet-indexed ones or in its sled bucket,
/// exactly one is accepted and every other copy names it.
#[tokio::test]
async fn copies_racing_the_deferred_index_are_all_duplicates_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_paced(dir.path(), Duration::from_millis(5));
    for round in 0..5 {
        let copies = (0..32).map(|_| {
            let store = store.clone();
            let id = format!("evt_same_{round}");
            tokio::spawn(async move { store.append(event(&id), 1_000).await })
        });
        let outcomes: Vec<Appended> = futures_util::future::join_all(copies)
            .await
            .into_iter()
            .map(|joined| joined.unwrap().unwrap())
            .collect();
        let accepted: Vec<Seq> = outcomes
            .iter()
            .filter_map(|o| match o {
                Appended::Accepted(seq) => Some(*seq),
                Appended::Duplicate(_) => None,
            })
            .collect();
        assert_eq!(accepted.len(), 1, "round {round}: {outcomes:?}");
        assert!(outcomes.iter().all(|o| match o {
            Appended::Accepted(seq) | Appended::Duplicate(seq) => *seq == accepted[0],
        }));
    }
    store.caught_up().await;
    assert_eq!(store.durable_seq(), Seq(5));
    store.close().await.unwrap();
}

/// While the flusher is held back from indexing (the bucket lock it needs is
/// taken here), an append is still acknowledged once its log sync is done:
/// the event is readable by id and refuses a copy from memory, while scans
/// do not see it yet; `caught_up` returns once the group is indexed.
#[tokio::test]
#[allow(
    clippy::await_holding_lock,
    reason = "the held lock is what stalls the flusher thread"
)]
async fn an_event_is_acknowledged_before_its_index_and_readable_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let buckets = store.inner.buckets.lock().unwrap();
    let acked = tokio::time::timeout(Duration::from_secs(10), store.append(event("evt_1"), 1_000))
        .await
        .expect("the ack must not wait for the index");
    assert_eq!(acked.unwrap(), Appended::Accepted(Seq(1)));
    assert_eq!(store.acknowledged_seq(), Seq(1));
    assert_eq!(store.durable_seq(), Seq(0), "not indexed yet");
    assert!(store.tree().get(keys::event(1)).unwrap().is_none());
    assert!(store.read_after(None, 10).unwrap().is_empty());
    let read = store.get(Seq(1)).unwrap().expect("readable before indexed");
    assert_eq!(read.meta.provider_event_id.as_deref(), Some("evt_1"));
    assert_eq!(append(&store, "evt_1").await, Appended::Duplicate(Seq(1)));
    drop(buckets);
    tokio::time::timeout(Duration::from_secs(10), store.caught_up())
        .await
        .expect("the index catches up");
    assert_eq!(store.durable_seq(), Seq(1));
    assert!(store.tree().get(keys::event(1)).unwrap().is_some());
    assert_eq!(pending_seqs(&store), vec![1]);
    assert_eq!(store.get(Seq(1)).unwrap().unwrap().body, read.body);
    store.close().await.unwrap();
}

/// With no flush requested (only appends), sled is still flushed and the
/// watermark moves, by the periodic sled flush thread: it bounds what
/// recovery re-indexes after a crash.
#[tokio::test]
async fn the_watermark_follows_appends_without_any_requested_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    append_many(&store, 3, 2).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.indexed_through().unwrap() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no periodic sled flush moved the watermark"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let value = store.tree().get(keys::META_WATERMARK).unwrap().unwrap();
    assert_eq!(keys::decode_watermark(&value).unwrap().0, 3);
    store.close().await.unwrap();
}
