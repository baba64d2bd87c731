//! Restoring provider order: the reorder window and the late-event policy.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hookgate::store::Seq;

use crate::harness::*;

/// The value of one counter series in the gateway's `/metrics` (0 if absent).
async fn counter(gw: &Gw, series: &str) -> f64 {
    let text = client()
        .get(format!("http://{}/metrics", gw.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

const REORDERED: &str = "hookgate_events_reordered_total{source=\"stripe\"}";
const LATE_DELIVERED: &str = "hookgate_late_events_total{source=\"stripe\",outcome=\"deliver\"}";

fn config(sink: &Sink, source_extra: &str) -> String {
    format!(
        r#"
[sources.stripe]
provider = "stripe"
secrets = ["whsec_test_secret"]
entity = "/data/object/id"
order_by = "/t"
forward_to = ["app"]
{source_extra}

[destinations.app]
url = "{}"
concurrency = 8
"#,
        sink.url()
    )
}

fn event(n: u32, entity: &str, t: i64) -> Vec<u8> {
    format!(r#"{{"id":"evt_{n}","t":{t},"data":{{"object":{{"id":"{entity}"}}}}}}"#).into_bytes()
}

fn t_of(r: &Received) -> i64 {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["t"].as_i64().unwrap()
}

/// Posts `events` (n, entity, provider time) from 16 concurrent tasks.
async fn post_concurrently(gw: &Gw, events: Vec<(u32, String, i64)>) {
    let chunks: Vec<Vec<_>> = events
        .chunks(events.len().div_ceil(16))
        .map(<[_]>::to_vec)
        .collect();
    join_all(chunks.into_iter().map(|chunk| async move {
        for (n, entity, t) in chunk {
            let (s, j) = post_signed(gw, "stripe", &event(n, &entity, t), "").await;
            assert_eq!(s, 200, "{j}");
        }
    }))
    .await;
}

/// A fixed permutation, so a failure reproduces.
fn shuffled<T>(mut v: Vec<T>) -> Vec<T> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for i in (1..v.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        v.swap(i, (state % (i as u64 + 1)) as usize);
    }
    v
}

fn assert_provider_order(got: &[Received]) -> usize {
    let mut per_entity: HashMap<String, Vec<i64>> = HashMap::new();
    for r in got {
        per_entity
            .entry(r.header("hookgate-entity").unwrap())
            .or_default()
            .push(t_of(r));
    }
    for (entity, ts) in &per_entity {
        assert!(
            ts.windows(2).all(|w| w[0] < w[1]),
            "{entity} not in provider order: {ts:?}"
        );
    }
    per_entity.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_arrivals_within_the_window_are_delivered_in_provider_order() {
    let sink = Sink::start(|_, _| Reply::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(&config(&sink, "reorder_window = \"6s\""), dir.path()).await;
    // 1,000 events for 50 entities; provider time rises with n.
    let events: Vec<_> = (0..1000u32)
        .map(|n| {
            (
                n,
                format!("cus_{}", n % 50),
                1_700_000_000_000 + i64::from(n) * 1000,
            )
        })
        .collect();
    let reordered_before = counter(&gw, REORDERED).await;
    let started = Instant::now();
    post_concurrently(&gw, shuffled(events)).await;
    let posting = started.elapsed();
    assert!(
        posting < Duration::from_secs(5),
        "posting took {posting:?}: longer than the window allows"
    );
    wait_for("1000 deliveries", Duration::from_secs(60), || async {
        sink.received().len() >= 1000
    })
    .await;
    assert_eq!(assert_provider_order(&sink.received()), 50);
    let reordered = counter(&gw, REORDERED).await - reordered_before;
    assert!(reordered > 100.0, "reorder counter moved by {reordered}");
    assert!(sink
        .received()
        .iter()
        .all(|r| r.header("hookgate-late").is_none()));
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_window_delivery_starts_at_once() {
    let sink = Sink::start(|_, _| Reply::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(&config(&sink, ""), dir.path()).await;
    let acked = Instant::now();
    let (s, _) = post_signed(&gw, "stripe", &event(1, "cus_1", 1), "").await;
    assert_eq!(s, 200);
    wait_for("delivery", Duration::from_secs(10), || async {
        !sink.received().is_empty()
    })
    .await;
    let lag = sink.received()[0].at.duration_since(acked);
    // Compare with the 2 s a window would hold it: no hold at all.
    assert!(lag < Duration::from_secs(1), "delivery waited {lag:?}");
    gw.stop().await.unwrap();
}

async fn late_event_run(policy: &str) -> (Gw, Sink, Seq, tempfile::TempDir) {
    let sink = Sink::start(|_, _| Reply::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("reorder_window = \"200ms\"\non_late = \"{policy}\"");
    let gw = Gw::start(&config(&sink, &extra), dir.path()).await;
    post_signed(&gw, "stripe", &event(2, "cus_a", 2000), "").await;
    wait_for("newer event delivered", Duration::from_secs(10), || async {
        sink.received().len() == 1
    })
    .await;
    let (_, j) = post_signed(&gw, "stripe", &event(1, "cus_a", 1000), "").await;
    let late = Seq::parse_event_id(j["id"].as_str().unwrap()).unwrap();
    // Another entity after it shows the worker got past the late event.
    post_signed(&gw, "stripe", &event(3, "cus_b", 500), "").await;
    wait_for(
        "later entity delivered",
        Duration::from_secs(10),
        || async { sink.received().iter().any(|r| t_of(r) == 500) },
    )
    .await;
    (gw, sink, late, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_is_delivered_flagged_by_default() {
    let (gw, sink, _, _dir) = late_event_run("deliver").await;
    wait_for("late delivery", Duration::from_secs(10), || async {
        sink.received().iter().any(|r| t_of(r) == 1000)
    })
    .await;
    assert!(
        counter(&gw, LATE_DELIVERED).await >= 1.0,
        "late counter did not move"
    );
    let late = sink
        .received()
        .into_iter()
        .find(|r| t_of(r) == 1000)
        .unwrap();
    assert_eq!(late.header("hookgate-late").as_deref(), Some("true"));
    let on_time = sink
        .received()
        .into_iter()
        .find(|r| t_of(r) == 2000)
        .unwrap();
    assert_eq!(on_time.header("hookgate-late"), None);
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_can_be_dead_lettered_or_dropped_and_stays_visible() {
    let (gw, sink, late, _dir) = late_event_run("dead_letter").await;
    wait_for("late dead letter", Duration::from_secs(10), || async {
        gw.state.store.dead_letter("app", late).unwrap().is_some()
    })
    .await;
    assert!(
        sink.received().iter().all(|r| t_of(r) != 1000),
        "a dead-lettered late event is not sent"
    );
    gw.stop().await.unwrap();

    let (gw, sink, late, _dir) = late_event_run("drop").await;
    // The attempt record is written just before the pending entry goes:
    // wait for both.
    wait_for("late drop recorded", Duration::from_secs(10), || async {
        gw.state
            .store
            .attempts("app", late)
            .unwrap()
            .iter()
            .any(|a| a.outcome == "dropped_late")
            && gw.state.store.pending_count("app") == 0
    })
    .await;
    assert!(
        sink.received().iter().all(|r| t_of(r) != 1000),
        "a dropped late event is not sent"
    );
    assert!(
        gw.state.store.get(late).unwrap().is_some(),
        "operators can still see it"
    );
    assert_eq!(gw.state.store.pending_count("app"), 0);
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_events_survive_a_restart_and_keep_provider_order() {
    let sink = Sink::start(|_, _| Reply::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sink, "reorder_window = \"3s\"");
    let gw = Gw::start(&cfg, dir.path()).await;
    let events: Vec<_> = (0..60u32)
        .map(|n| (n, format!("cus_{}", n % 6), 1_000_000 + i64::from(n)))
        .collect();
    post_concurrently(&gw, shuffled(events)).await;
    assert!(sink.received().is_empty(), "still held by the window");
    gw.stop().await.unwrap();
    let gw = Gw::start(&cfg, dir.path()).await;
    wait_for(
        "60 deliveries after restart",
        Duration::from_secs(30),
        || async { sink.received().len() >= 60 },
    )
    .await;
    assert_eq!(assert_provider_order(&sink.received()), 6);
    gw.stop().await.unwrap();
}
