//! Store recovery: an append cut short by a crash is completed at open.

use std::time::Duration;

use super::*;

fn options(path: &Path) -> StoreOptions {
    StoreOptions {
        path: path.to_path_buf(),
        dedupe_window: Duration::from_secs(3600),
        max_queue_bytes: None,
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
    let store = Store::open(options(dir.path())).unwrap();
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
        .insert(keys::META_INDEXED_THROUGH, &1u64.to_be_bytes())
        .unwrap();
    store.tree().flush().unwrap();
    store.close().await.unwrap();
    drop(store);

    let store = Store::open(options(dir.path())).unwrap();
    assert!(
        store.tree().contains_key(&marker).unwrap(),
        "marker restored"
    );
    let pending = store.pending_after("app", None, 10).unwrap();
    assert_eq!(
        pending.iter().map(|(s, _)| s.0).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(pending[1].1.source, "stripe");
    // The restored marker makes a retry of evt_2 a duplicate, and the next
    // sequence continues after it.
    assert_eq!(
        store.append(event("evt_2"), 2_000).await.unwrap(),
        Appended::Duplicate(Seq(2))
    );
    assert_eq!(
        store.append(event("evt_3"), 2_000).await.unwrap(),
        Appended::Accepted(Seq(3))
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn recovery_does_not_resurrect_a_finished_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    store.append(event("evt_1"), 1_000).await.unwrap();
    let attempt = AttemptRecord {
        attempt: 1,
        at_ms: 1_000,
        duration_ms: 1,
        status: Some(200),
        error: None,
        outcome: "delivered".into(),
    };
    store
        .record_attempt("app", Seq(1), &attempt, &Transition::Delivered, 1_001)
        .unwrap();
    // Pretend no flush ever recorded evt_1 as complete.
    store.close().await.unwrap();
    store.tree().remove(keys::META_INDEXED_THROUGH).unwrap();
    store.tree().flush().unwrap();
    drop(store);
    let store = Store::open(options(dir.path())).unwrap();
    assert!(store.pending_after("app", None, 10).unwrap().is_empty());
    assert!(store.delivered_at("app", Seq(1)).unwrap().is_some());
    store.close().await.unwrap();
}

#[tokio::test]
async fn the_dedupe_sweep_removes_only_expired_markers_in_bounded_passes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).unwrap();
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
