//! The forward side end to end: pacing, per-entity order under failures,
//! retries, dead letters, signatures, timeouts and restarts, against real
//! recording sinks on loopback.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookgate::store::Seq;
use hookgate::verify::{UnverifiedRequest, Verifier};

use crate::harness::*;

const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config(sink: &Sink, dest_extra: &str) -> String {
    format!(
        r#"
[sources.stripe]
provider = "stripe"
secrets = ["whsec_test_secret"]
entity = "/data/object/id"
forward_to = ["app"]

[destinations.app]
url = "{}"
signing_secret = "{SIGNING}"
{dest_extra}
"#,
        sink.url()
    )
}

fn event(n: u32, entity: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"evt_{n}","object":"event","data":{{"object":{{"id":"{entity}","n":{n}}}}}}}"#
    )
    .into_bytes()
}

/// The `n` of a delivered body.
fn n_of(r: &Received) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json body");
    v["data"]["object"]["n"].as_u64().expect("n")
}

fn entity_of(r: &Received) -> String {
    r.header("hookgate-entity").expect("entity header")
}

fn seq_of(r: &Received) -> Seq {
    Seq::parse_event_id(&r.header("webhook-id").expect("webhook-id")).expect("id")
}

async fn post_all(gw: &Gw, events: &[(u32, String)]) {
    for (n, entity) in events {
        let (s, j) = post_signed(gw, "stripe", &event(*n, entity), "").await;
        assert_eq!(s, 200, "{j}");
        assert_eq!(j["status"], "accepted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_is_paced_by_gcra_with_burst_one() {
    let sink = Sink::start(|_, _| Reply::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(
        &config(&sink, "rate = \"20/s\"\nburst = 1\nconcurrency = 8"),
        dir.path(),
    )
    .await;
    let events: Vec<_> = (0..100).map(|n| (n, format!("cus_{n}"))).collect();
    post_all(&gw, &events).await;
    wait_for("100 deliveries", Duration::from_secs(30), || async {
        sink.received().len() >= 100
    })
    .await;
    let got = sink.received();
    let first = got[0].at;
    let span = got[99].at.duration_since(first);
    // 100 events at 20/s with burst 1: the 100th leaves 99 intervals after the first.
    assert!(
        span >= Duration::from_millis(4_850),
        "100 events took only {span:?}"
    );
    // No one-second window holds more than the GCRA bound: burst + rate·window.
    for (i, a) in got.iter().enumerate() {
        let in_window = got[i..]
            .iter()
            .take_while(|b| b.at.duration_since(a.at) < Duration::from_secs(1))
            .count();
        assert!(in_window <= 21, "{in_window} deliveries within one second");
    }
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_entity_order_holds_when_the_app_fails_30_percent_at_random() {
    // Deterministic "random" failures so a failure reproduces.
    let sink = Sink::start(|r, n| {
        let h = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ r.body.len() as u64;
        if h % 10 < 3 {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let extra =
        "concurrency = 8\nmax_attempts = 100\nbackoff = { initial = \"5ms\", max = \"50ms\" }";
    let gw = Gw::start(&config(&sink, extra), dir.path()).await;
    // 20 entities × 50 events, interleaved.
    let events: Vec<_> = (0..1000u32)
        .map(|n| (n, format!("cus_{}", n % 20)))
        .collect();
    post_all(&gw, &events).await;
    wait_for("1000 deliveries", Duration::from_secs(60), || async {
        sink.received().len() >= 1000
    })
    .await;
    let mut per_entity: HashMap<String, Vec<u64>> = HashMap::new();
    for r in sink.received() {
        per_entity.entry(entity_of(&r)).or_default().push(n_of(&r));
    }
    assert_eq!(per_entity.len(), 20);
    for (entity, ns) in &per_entity {
        let expected: Vec<u64> = (0..1000u64)
            .filter(|n| format!("cus_{}", n % 20) == *entity)
            .collect();
        assert_eq!(ns, &expected, "{entity} out of order or incomplete");
    }
    let failed = sink.all().len() - 1000;
    assert!(
        failed > 100,
        "the sink should have failed ~30%, failed {failed}"
    );
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_entity_does_not_stall_the_others_and_retry_after_is_honoured() {
    // cus_slow gets 429 + Retry-After: 1 on its first attempt.
    let first_slow = Arc::new(Mutex::new(None::<Instant>));
    let fs = first_slow.clone();
    let sink = Sink::start(move |r, _| {
        if r.header("hookgate-entity").as_deref() == Some("cus_slow")
            && r.header("hookgate-attempt").as_deref() == Some("1")
        {
            fs.lock().unwrap().get_or_insert(r.at);
            Reply {
                status: 429,
                headers: vec![("retry-after", "1".into())],
                delay: Duration::ZERO,
            }
        } else {
            Reply::ok()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(
        &config(&sink, "backoff = { initial = \"1ms\", max = \"2ms\" }"),
        dir.path(),
    )
    .await;
    let mut events = vec![(0, "cus_slow".to_string()), (1, "cus_slow".to_string())];
    events.extend((2..12).map(|n| (n, format!("cus_{n}"))));
    post_all(&gw, &events).await;
    wait_for("12 deliveries", Duration::from_secs(20), || async {
        sink.received().len() >= 12
    })
    .await;
    let got = sink.received();
    let pos = |n: u64| got.iter().position(|r| n_of(r) == n).unwrap();
    // Every other entity went through while cus_slow waited out its Retry-After.
    for n in 2..12 {
        assert!(pos(n) < pos(0), "event {n} waited behind another entity");
    }
    assert!(pos(0) < pos(1), "cus_slow out of order");
    let retried_at = got[pos(0)].at;
    let first = first_slow.lock().unwrap().unwrap();
    assert!(
        retried_at.duration_since(first) >= Duration::from_millis(950),
        "Retry-After ignored"
    );
    assert_eq!(got[pos(0)].header("hookgate-attempt").as_deref(), Some("2"));
    gw.stop().await.unwrap();
}

async fn dead_letter_run(
    policy: &str,
    heal: Arc<AtomicBool>,
) -> (Gw, Sink, String, tempfile::TempDir) {
    let sink = Sink::start(move |r, _| {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        if v["data"]["object"]["n"] == 0 && !heal.load(Ordering::SeqCst) {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("max_attempts = 3\nbackoff = {{ initial = \"1ms\", max = \"5ms\" }}\non_dead_letter = \"{policy}\"");
    let cfg = config(&sink, &extra);
    let gw = Gw::start(&cfg, dir.path()).await;
    post_all(
        &gw,
        &[
            (0, "cus_a".into()),
            (1, "cus_a".into()),
            (2, "cus_b".into()),
        ],
    )
    .await;
    (gw, sink, cfg, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_after_max_attempts_then_the_lane_skips_by_default() {
    let (gw, sink, _, _dir) = dead_letter_run("skip", Arc::default()).await;
    wait_for("lane moves on", Duration::from_secs(20), || async {
        sink.received().len() >= 2
    })
    .await;
    let store = &gw.state.store;
    let dead = store.dead_letters("app").unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].last_error, "http status 500");
    let attempts = store.attempts("app", Seq(dead[0].seq)).unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(attempts.iter().all(|a| a.status == Some(500)));
    assert_eq!(attempts[2].outcome, "dead_letter");
    assert_eq!(sink.all().len(), 5, "3 failed attempts + 2 deliveries");
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_dead_letter_block_stops_the_lane_across_restarts_until_redriven() {
    let heal = Arc::new(AtomicBool::new(false));
    let (gw, sink, cfg, dir) = dead_letter_run("block", heal.clone()).await;
    // Settled: the dead letter is recorded and cus_b's delivery is recorded
    // (the sink sees a request before the gateway records its answer).
    wait_for("dead letter", Duration::from_secs(20), || async {
        gw.state.store.dead_letters("app").unwrap().len() == 1
            && !sink.received().is_empty()
            && gw.state.store.pending_count("app") == 2
    })
    .await;
    // cus_b flowed; cus_a's second event is held behind the dead letter.
    let got: Vec<u64> = sink.received().iter().map(n_of).collect();
    assert_eq!(got, vec![2]);
    assert_eq!(
        gw.state.store.pending_count("app"),
        2,
        "blocked head + the held event"
    );
    gw.stop().await.unwrap();

    // After a restart the lane is rebuilt from the store, still blocked.
    let gw = Gw::start(&cfg, dir.path()).await;
    let dead = gw.state.store.dead_letters("app").unwrap();
    assert_eq!(dead.len(), 1);
    heal.store(true, Ordering::SeqCst);
    let attempts_before = sink.all().len();
    assert!(gw.state.store.redrive("app", Seq(dead[0].seq)).unwrap());
    wait_for("redriven lane drains", Duration::from_secs(20), || async {
        sink.received().len() >= 3
    })
    .await;
    let got: Vec<u64> = sink.received().iter().map(n_of).collect();
    assert_eq!(got, vec![2, 0, 1], "the blocked lane resumes in order");
    assert_eq!(
        sink.all().len(),
        attempts_before + 2,
        "nothing was sent while blocked"
    );
    assert!(gw.state.store.dead_letters("app").unwrap().is_empty());
    // The redrive's attempt adds to the history instead of overwriting it.
    let history = gw.state.store.attempts("app", Seq(dead[0].seq)).unwrap();
    let outcomes: Vec<_> = history
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (1, "retry"),
            (2, "retry"),
            (3, "dead_letter"),
            (1, "delivered")
        ]
    );
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_carry_a_valid_standard_webhooks_signature_and_the_contract_headers() {
    let sink = Sink::start(|_, _| Reply::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(&config(&sink, ""), dir.path()).await;
    let body = event(1, "cus_sig");
    let (_, j) = post_signed(&gw, "stripe", &body, "").await;
    wait_for("delivery", Duration::from_secs(10), || async {
        !sink.received().is_empty()
    })
    .await;
    let r = &sink.received()[0];
    assert_eq!(r.body, body, "body byte-exact");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.header("webhook-id").as_deref(), j["id"].as_str());
    assert_eq!(r.header("hookgate-source").as_deref(), Some("stripe"));
    assert_eq!(r.header("hookgate-event-id").as_deref(), Some("evt_1"));
    assert_eq!(r.header("hookgate-entity").as_deref(), Some("cus_sig"));
    assert_eq!(r.header("hookgate-attempt").as_deref(), Some("1"));
    // The app verifies with a Standard Webhooks verifier and the shared secret.
    let app = Verifier::new(
        "standard",
        vec![hookgate::secret::Secret::new(SIGNING)],
        &Default::default(),
    )
    .unwrap();
    let req = UnverifiedRequest {
        headers: r.headers.clone(),
        body: r.body.clone(),
        path_and_query: "/in".into(),
    };
    let proof = app.verify(&req).expect("signature must verify");
    assert!((proof.signed_at_ms.unwrap() - now_ms()).abs() < 60_000);
    let mut tampered = req.clone();
    tampered.body = b"{}".to_vec().into();
    assert!(app.verify(&tampered).is_err());
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_app_times_out_and_is_retried_without_stalling_other_lanes() {
    let sink = Sink::start(|r, _| {
        let hang = r.header("hookgate-entity").as_deref() == Some("cus_hang")
            && r.header("hookgate-attempt").as_deref() == Some("1");
        Reply {
            status: 200,
            headers: vec![],
            delay: if hang {
                Duration::from_secs(30)
            } else {
                Duration::ZERO
            },
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(
        &config(
            &sink,
            "timeout = \"300ms\"\nbackoff = { initial = \"1ms\", max = \"5ms\" }",
        ),
        dir.path(),
    )
    .await;
    let mut events = vec![(0, "cus_hang".to_string())];
    events.extend((1..10).map(|n| (n, format!("cus_{n}"))));
    post_all(&gw, &events).await;
    wait_for("all delivered", Duration::from_secs(20), || async {
        sink.received().iter().any(|r| n_of(r) == 0) && sink.received().len() >= 10
    })
    .await;
    let got = sink.received();
    let hang = got.iter().find(|r| n_of(r) == 0).unwrap();
    assert_eq!(hang.header("hookgate-attempt").as_deref(), Some("2"));
    let attempts = gw.state.store.attempts("app", seq_of(hang)).unwrap();
    assert_eq!(attempts[0].error.as_deref(), Some("timeout"));
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_delivery_loses_nothing_and_keeps_entity_order() {
    let slow = Sink::start(|_, _| Reply {
        status: 200,
        headers: vec![],
        delay: Duration::from_millis(5),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&slow, "concurrency = 4\nrate = \"100/s\"");
    let gw = Gw::start(&cfg, dir.path()).await;
    let events: Vec<_> = (0..300u32).map(|n| (n, format!("cus_{}", n % 7))).collect();
    post_all(&gw, &events).await;
    wait_for("some deliveries", Duration::from_secs(20), || async {
        slow.received().len() >= 50
    })
    .await;
    gw.stop().await.unwrap();
    let delivered_before = slow.received().len();
    assert!(
        delivered_before < 300,
        "the restart must happen mid-delivery"
    );
    let gw = Gw::start(&cfg, dir.path()).await;
    wait_for(
        "everything delivered after restart",
        Duration::from_secs(30),
        || async {
            let mut ns: Vec<u64> = slow.received().iter().map(n_of).collect();
            ns.sort_unstable();
            ns.dedup();
            ns.len() == 300
        },
    )
    .await;
    assert_order_per_entity(&slow.received());
    gw.stop().await.unwrap();
}

/// Per entity, deliveries never go backwards in sequence (a redelivery after a
/// crash may repeat the last one).
pub fn assert_order_per_entity(got: &[Received]) {
    let mut last: BTreeMap<String, Seq> = BTreeMap::new();
    for r in got {
        let (e, s) = (entity_of(r), seq_of(r));
        if let Some(prev) = last.get(&e) {
            assert!(s >= *prev, "entity {e}: {s:?} delivered after {prev:?}");
        }
        last.insert(e, s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_only_events_with_nothing_left_to_do() {
    let sink = Sink::start(|r, _| match n_of(r) {
        0 => Reply::status(500),
        2 => Reply {
            status: 200,
            headers: vec![],
            delay: Duration::from_secs(30),
        },
        _ => Reply::ok(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(
        &config(&sink, "max_attempts = 1\ntimeout = \"60s\""),
        dir.path(),
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..3u32 {
        let (_, j) = post_signed(&gw, "stripe", &event(n, &format!("cus_{n}")), "").await;
        ids.push(Seq::parse_event_id(j["id"].as_str().unwrap()).unwrap());
    }
    wait_for(
        "dead letter and a delivery",
        Duration::from_secs(20),
        || async {
            gw.state.store.dead_letters("app").unwrap().len() == 1
                && sink.received().iter().any(|r| n_of(r) == 1)
                && sink.all().iter().any(|r| n_of(r) == 2)
        },
    )
    .await;
    let store = &gw.state.store;
    // Retention deletes only what sled holds durably (the watermark).
    store.sync().await.unwrap();
    // Nothing is younger than a 1-hour retention.
    assert_eq!(store.expire_delivered(now_ms(), 3_600_000).unwrap(), 0);
    // With zero retention only the delivered event goes; the dead letter and
    // the in-flight delivery stay.
    assert_eq!(store.expire_delivered(now_ms() + 1, 0).unwrap(), 1);
    assert!(store.get(ids[1]).unwrap().is_none());
    assert!(store.attempts("app", ids[1]).unwrap().is_empty());
    assert!(
        store.get(ids[0]).unwrap().is_some(),
        "dead letters are kept"
    );
    assert!(
        store.get(ids[2]).unwrap().is_some(),
        "pending events are kept"
    );
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_destination_keeps_queueing_and_resume_releases_in_order() {
    let sink = Sink::start(|_, _| Reply::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sink, "concurrency = 4");
    let gw = Gw::start(&cfg, dir.path()).await;
    gw.state
        .store
        .set_paused("app", true, now_ms())
        .await
        .unwrap();
    let events: Vec<_> = (0..40u32).map(|n| (n, format!("cus_{}", n % 4))).collect();
    post_all(&gw, &events).await;
    // Ingest goes on; nothing leaves while paused, across a restart too.
    gw.state.store.caught_up().await;
    assert_eq!(gw.state.store.pending_count("app"), 40);
    gw.stop().await.unwrap();
    let gw = Gw::start(&cfg, dir.path()).await;
    let probe = post_signed(&gw, "stripe", &event(99, "cus_probe"), "").await;
    assert_eq!(probe.0, 200);
    wait_for("the probe is stored", Duration::from_secs(5), || async {
        gw.state.store.pending_count("app") == 41
    })
    .await;
    assert!(
        sink.all().is_empty(),
        "a paused destination received a request"
    );
    gw.state
        .store
        .set_paused("app", false, now_ms())
        .await
        .unwrap();
    wait_for("all released", Duration::from_secs(20), || async {
        sink.received().len() >= 41
    })
    .await;
    assert_order_per_entity(&sink.received());
    gw.stop().await.unwrap();
}
