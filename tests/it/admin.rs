//! The operator surface end to end over real HTTP: bearer auth, every API
//! endpoint, pagination under concurrent ingest, replay, redrive, the pause
//! flag across a restart, `/metrics` and `hookgate send`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

const TOKEN: &str = "admin-test-token";

fn config(sink_url: &str, dest_extra: &str) -> String {
    format!(
        r#"
[admin]
token = "{TOKEN}"

[sources.stripe]
provider = "stripe"
secrets = ["whsec_test_secret"]
entity = "/data/object/id"
forward_to = ["app"]

[destinations.app]
url = "{sink_url}"
{dest_extra}
"#
    )
}

fn event(n: u32, entity: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"evt_{n}","object":"event","data":{{"object":{{"id":"{entity}","n":{n}}}}}}}"#
    )
    .into_bytes()
}

/// Admin GET with the token; returns status and JSON.
async fn get(gw: &Gw, path: &str) -> (u16, Value) {
    let resp = client()
        .get(format!("http://{}{path}", gw.admin))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin get");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Admin POST (JSON body) with the token; returns status and JSON.
async fn post(gw: &Gw, path: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .post(format!("http://{}{path}", gw.admin))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("admin post");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn accept(gw: &Gw, n: u32, entity: &str) -> String {
    let (s, j) = post_signed(gw, "stripe", &event(n, entity), "").await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["status"], "accepted", "{j}");
    j["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn api_requires_the_bearer_token_but_probes_and_metrics_do_not() {
    let sink = Sink::start(|_, _| Reply::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(&config(&sink.url(), ""), dir.path()).await;
    let base = format!("http://{}", gw.admin);
    for path in [
        "/api/events",
        "/api/events/hg_0000000000000001",
        "/api/dead-letters",
        "/api/destinations",
    ] {
        let none = client().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(none.status(), 401, "{path}");
        let body: Value = none.json().await.unwrap();
        assert_eq!(body["status"], "unauthorized");
        let wrong = client()
            .get(format!("{base}{path}"))
            .bearer_auth("admin-test-tokeN")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
    }
    for path in [
        "/api/events/hg_0000000000000001/replay",
        "/api/dead-letters/redrive",
        "/api/destinations/app/pause",
        "/api/destinations/app/resume",
    ] {
        let resp = client().post(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }
    // Nothing was paused by the refused calls.
    assert!(!gw.state.store.is_paused("app").unwrap());
    for path in ["/healthz", "/metrics"] {
        let resp = client().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let (s, _) = get(&gw, "/api/events").await;
    assert_eq!(s, 200);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn events_can_be_searched_and_shown_with_every_attempt() {
    let sink = Sink::start(|_, _| Reply::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(&config(&sink.url(), ""), dir.path()).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(accept(&gw, n, &format!("cus_{}", n % 2)).await);
    }
    wait_for("6 deliveries", Duration::from_secs(20), || async {
        sink.received().len() >= 6
    })
    .await;
    wait_for(
        "all delivered per the API",
        Duration::from_secs(10),
        || async {
            let (_, j) = get(&gw, "/api/events?status=delivered").await;
            j["events"].as_array().map_or(0, Vec::len) == 6
        },
    )
    .await;

    let (s, j) = get(&gw, "/api/events").await;
    assert_eq!(s, 200, "{j}");
    let listed: Vec<&str> = j["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(j["next"].is_null(), "{j}");

    let (_, j) = get(&gw, "/api/events?entity=cus_1").await;
    let events = j["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["entity"] == "cus_1"));
    let (_, j) = get(&gw, "/api/events?source=other").await;
    assert_eq!(j["events"].as_array().unwrap().len(), 0);
    let (_, j) = get(&gw, "/api/events?status=pending").await;
    assert_eq!(j["events"].as_array().unwrap().len(), 0);
    let (_, j) = get(&gw, "/api/events?limit=4").await;
    assert_eq!(j["events"].as_array().unwrap().len(), 4);
    assert_eq!(j["next"], ids[3].as_str());
    let (_, j) = get(&gw, &format!("/api/events?after={}", ids[3])).await;
    assert_eq!(j["events"].as_array().unwrap().len(), 2);

    let (s, j) = get(&gw, &format!("/api/events/{}", ids[0])).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["id"], ids[0].as_str());
    assert_eq!(j["source"], "stripe");
    assert_eq!(j["provider_event_id"], "evt_0");
    assert_eq!(j["entity"], "cus_0");
    assert_eq!(j["status"], "delivered");
    assert_eq!(j["body_base64"], false);
    assert_eq!(
        j["body"].as_str().unwrap().as_bytes(),
        &event(0, "cus_0")[..]
    );
    assert!(j["headers"].is_array());
    let delivery = &j["delivery"][0];
    assert_eq!(delivery["destination"], "app");
    assert_eq!(delivery["state"], "delivered");
    assert_eq!(delivery["attempts"][0]["outcome"], "delivered");
    assert_eq!(delivery["attempts"][0]["status"], 200);

    // Stable error codes.
    let (s, j) = get(&gw, "/api/events/hg_00000000000fffff").await;
    assert_eq!((s, j["status"].as_str()), (404, Some("not_found")));
    let (s, j) = get(&gw, "/api/events/nonsense").await;
    assert_eq!((s, j["status"].as_str()), (400, Some("bad_request")));
    for bad in [
        "/api/events?limit=0",
        "/api/events?limit=1001",
        "/api/events?status=lost",
        "/api/events?after=zz",
        "/api/events?unknown=1",
    ] {
        let (s, j) = get(&gw, bad).await;
        assert_eq!(
            (s, j["status"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
    let (s, j) = post(&gw, "/api/events/hg_00000000000fffff/replay", json!({})).await;
    assert_eq!((s, j["status"].as_str()), (404, Some("not_found")));
    let (s, j) = get(&gw, "/api/nothing-here").await;
    assert_eq!((s, j["status"].as_str()), (404, Some("not_found")));
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pagination_is_complete_and_duplicate_free_while_ingest_runs() {
    let sink = Sink::start(|_, _| Reply::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Arc::new(Gw::start(&config(&sink.url(), ""), dir.path()).await);
    let done = Arc::new(AtomicBool::new(false));
    let ingest = {
        let gw = gw.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..300 {
                ids.push(accept(&gw, n, &format!("cus_{}", n % 7)).await);
            }
            done.store(true, Ordering::SeqCst);
            ids
        })
    };
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let path = match &cursor {
            Some(c) => format!("/api/events?limit=7&after={c}"),
            None => "/api/events?limit=7".to_string(),
        };
        let (s, j) = get(&gw, &path).await;
        assert_eq!(s, 200, "{j}");
        for e in j["events"].as_array().unwrap() {
            seen.push(e["id"].as_str().unwrap().to_string());
        }
        if let Some(last) = seen.last() {
            cursor = Some(last.clone());
        }
        if let Some(next) = j["next"].as_str() {
            cursor = Some(next.to_string());
        } else if finished {
            // The page after ingest finished reached the end: nothing is left.
            break;
        }
    }
    let ingested = ingest.await.unwrap();
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a page repeated an event");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "pages out of order");
    assert_eq!(seen, ingested, "paging missed or invented events");
    if let Ok(gw) = Arc::try_unwrap(gw) {
        gw.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_delivers_an_event_again() {
    let sink = Sink::start(|_, _| Reply::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(&config(&sink.url(), ""), dir.path()).await;
    let id = accept(&gw, 1, "cus_1").await;
    wait_for("first delivery", Duration::from_secs(20), || async {
        sink.received().len() == 1
    })
    .await;
    let (s, j) = post(&gw, &format!("/api/events/{id}/replay"), json!({})).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["status"], "queued");
    assert_eq!(j["destinations"], json!(["app"]));
    wait_for("replayed delivery", Duration::from_secs(20), || async {
        sink.received().len() == 2
    })
    .await;
    let got = sink.received();
    assert_eq!(got[1].body, got[0].body);
    assert_eq!(got[1].header("webhook-id").as_deref(), Some(id.as_str()));
    wait_for("two attempts recorded", Duration::from_secs(10), || async {
        let (_, j) = get(&gw, &format!("/api/events/{id}")).await;
        j["delivery"][0]["attempts"].as_array().map_or(0, Vec::len) == 2
            && j["status"] == "delivered"
    })
    .await;
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_delivers_dead_letters_one_by_filter_and_all() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let sink = Sink::start(move |_, _| {
        if flag.load(Ordering::SeqCst) {
            Reply::ok()
        } else {
            Reply::status(500)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(&config(&sink.url(), "max_attempts = 1"), dir.path()).await;
    let a = accept(&gw, 1, "cus_a").await;
    let b = accept(&gw, 2, "cus_b").await;
    let c = accept(&gw, 3, "cus_c").await;
    wait_for("three dead letters", Duration::from_secs(20), || async {
        let (_, j) = get(&gw, "/api/dead-letters?destination=app").await;
        j["dead_letters"].as_array().map_or(0, Vec::len) == 3
    })
    .await;
    let (_, j) = get(&gw, "/api/dead-letters").await;
    let letter = &j["dead_letters"][0];
    assert_eq!(letter["id"], a.as_str());
    assert_eq!(letter["destination"], "app");
    assert_eq!(letter["attempts"], 1);
    assert_eq!(letter["last_error"], "http status 500");
    assert_eq!(j["truncated"], false);
    let (_, j) = get(&gw, "/api/events?status=dead_letter").await;
    assert_eq!(j["events"].as_array().unwrap().len(), 3);

    // Refusals: no selector, unknown destination, missing letter.
    let (s, j) = post(&gw, "/api/dead-letters/redrive", json!({})).await;
    assert_eq!((s, j["status"].as_str()), (400, Some("bad_request")));
    let (s, j) = post(
        &gw,
        "/api/dead-letters/redrive",
        json!({"destination": "nope"}),
    )
    .await;
    assert_eq!((s, j["status"].as_str()), (404, Some("not_found")));
    let (s, _) = post(
        &gw,
        "/api/dead-letters/redrive",
        json!({"destination": "app", "id": "hg_00000000000fffff"}),
    )
    .await;
    assert_eq!(s, 404);

    healthy.store(true, Ordering::SeqCst);
    // One.
    let (s, j) = post(
        &gw,
        "/api/dead-letters/redrive",
        json!({"destination": "app", "id": b}),
    )
    .await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["redriven"], 1);
    wait_for("redriven b delivered", Duration::from_secs(20), || async {
        sink.received().len() == 1
    })
    .await;
    assert_eq!(
        sink.received()[0].header("webhook-id").as_deref(),
        Some(b.as_str())
    );
    // A filter (this destination, dead-lettered since long ago) takes the rest.
    let (s, j) = post(
        &gw,
        "/api/dead-letters/redrive",
        json!({"destination": "app", "since_ms": 0}),
    )
    .await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["redriven"], 2);
    wait_for("all delivered", Duration::from_secs(20), || async {
        sink.received().len() == 3
    })
    .await;
    let ids: BTreeSet<String> = sink
        .received()
        .iter()
        .filter_map(|r| r.header("webhook-id"))
        .collect();
    assert_eq!(ids, BTreeSet::from([a, b, c]));
    let (_, j) = get(&gw, "/api/dead-letters").await;
    assert_eq!(j["dead_letters"].as_array().unwrap().len(), 0);
    // `all` with nothing left is fine.
    let (s, j) = post(&gw, "/api/dead-letters/redrive", json!({"all": true})).await;
    assert_eq!((s, &j["redriven"]), (200, &json!(0)));
    gw.stop().await.unwrap();
}

/// The store/API side of pause. That a paused destination holds deliveries
/// and releases them in order on resume is asserted once dispatch honours
/// `Store::is_paused` (wired by the dispatch owner).
#[tokio::test]
async fn pause_is_persisted_across_a_restart_and_resume_clears_it() {
    let sink = Sink::start(|_, _| Reply::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sink.url(), "");
    let gw = Gw::start(&cfg, dir.path()).await;
    let (s, j) = post(&gw, "/api/destinations/app/pause", json!({})).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j, json!({"destination": "app", "paused": true}));
    let (s, j) = post(&gw, "/api/destinations/nope/pause", json!({})).await;
    assert_eq!((s, j["status"].as_str()), (404, Some("not_found")));
    let (_, j) = get(&gw, "/api/destinations").await;
    assert_eq!(j["destinations"][0]["destination"], "app");
    assert_eq!(j["destinations"][0]["paused"], true);
    gw.stop().await.unwrap();

    let gw = Gw::start(&cfg, dir.path()).await;
    assert!(gw.state.store.is_paused("app").unwrap());
    let (_, j) = get(&gw, "/api/destinations").await;
    assert_eq!(j["destinations"][0]["paused"], true);
    let metrics = scrape(&gw).await;
    assert_eq!(
        sample(
            &metrics,
            "hookgate_destination_paused",
            "destination=\"app\""
        ),
        Some(1.0)
    );
    let (s, j) = post(&gw, "/api/destinations/app/resume", json!({})).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["paused"], false);
    gw.stop().await.unwrap();

    let gw = Gw::start(&cfg, dir.path()).await;
    assert!(!gw.state.store.is_paused("app").unwrap());
    gw.stop().await.unwrap();
}

async fn scrape(gw: &Gw) -> String {
    let resp = client()
        .get(format!("http://{}/metrics", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// Checks the Prometheus text format line by line: comments are `# HELP`,
/// `# TYPE`, `# UNIT` or `# EOF`; every other line is `name{labels} value`
/// with a metric name, well-formed `k="v"` labels and a float value.
fn assert_prometheus_text(text: &str) {
    assert!(!text.is_empty());
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            let kind = comment.split_whitespace().next().unwrap_or("");
            assert!(
                ["HELP", "TYPE", "UNIT", "EOF"].contains(&kind),
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "value not a float: {line}"
        );
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                Some(
                    rest.strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels: {line}")),
                ),
            ),
            None => (series, None),
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name: {line}"
        );
        if let Some(labels) = labels {
            for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label: {line}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name: {line}"
                );
                assert!(
                    !v.trim_end_matches('"').contains('"'),
                    "bad label value: {line}"
                );
            }
        }
    }
}

/// The value of the first sample of `name` whose labels contain `label`.
fn sample(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| l.contains(label))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_counters_move_with_traffic() {
    let sink = Sink::start(|_, _| Reply::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(&config(&sink.url(), ""), dir.path()).await;
    let before = scrape(&gw).await;
    assert_prometheus_text(&before);
    let accepted = "source=\"stripe\",outcome=\"accepted\"";
    let invalid = "source=\"stripe\",outcome=\"invalid_signature\"";
    let counter = "hookgate_ingress_requests_total";
    let base_ok = sample(&before, counter, accepted).unwrap_or(0.0);
    let base_bad = sample(&before, counter, invalid).unwrap_or(0.0);

    accept(&gw, 1, "cus_1").await;
    let refused = client()
        .post(gw.url("stripe"))
        .header("stripe-signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // An unknown source is counted under one fixed label, never its path.
    let unknown = client()
        .post(gw.url("made-up-source-name"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    wait_for("delivery", Duration::from_secs(20), || async {
        sink.received().len() == 1
    })
    .await;
    // The sink answers before dispatch records the outcome: wait for that
    // too, so the pending gauge below is not read mid-way.
    wait_for("delivery recorded", Duration::from_secs(10), || async {
        gw.state.store.pending_count("app") == 0
    })
    .await;

    let after = scrape(&gw).await;
    assert_prometheus_text(&after);
    assert!(sample(&after, counter, accepted).unwrap() >= base_ok + 1.0);
    assert!(sample(&after, counter, invalid).unwrap() >= base_bad + 1.0);
    assert!(sample(&after, counter, "outcome=\"unknown_source\"").is_some());
    assert!(!after.contains("made-up-source-name"));
    assert!(
        sample(
            &after,
            "hookgate_ingress_ack_seconds_count",
            "source=\"stripe\""
        )
        .unwrap()
            >= 2.0
    );
    assert_eq!(
        sample(&after, "hookgate_pending_events", "destination=\"app\""),
        Some(0.0)
    );
    assert!(after.contains("hookgate_oldest_pending_age_seconds{destination=\"app\"}"));
    assert!(!after.contains("evt_1") && !after.contains("cus_1"));
    gw.stop().await.unwrap();
}

async fn hookgate(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(args)
        .env_remove("HOOKGATE_ADMIN_URL")
        .env_remove("HOOKGATE_ADMIN_TOKEN")
        .output()
        .await
        .expect("run hookgate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hookgate_send_is_accepted_for_every_provider_preset() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = crate::ingest::all_providers_config();
    let gw = Gw::start(&cfg, &data).await;
    let config_file = dir.path().join("hookgate.toml");
    std::fs::write(&config_file, with_storage_path(&cfg, &data)).unwrap();
    let config_arg = config_file.to_str().unwrap();
    for source in crate::ingest::SOURCES {
        let body_file = dir.path().join(format!("{source}.json"));
        let body = crate::ingest::body_for(source, 1);
        std::fs::write(&body_file, &body).unwrap();
        let url = gw.url(source);
        let (ok, stdout, stderr) = hookgate(&[
            "send",
            "--config",
            config_arg,
            "--source",
            source,
            "--body",
            body_file.to_str().unwrap(),
            "--url",
            &url,
        ])
        .await;
        assert!(ok, "{source}: {stdout}{stderr}");
        assert!(stdout.starts_with("200"), "{source}: {stdout}");
        let answer: Value = serde_json::from_str(stdout.lines().nth(1).unwrap()).unwrap();
        assert_eq!(answer["status"], "accepted", "{source}: {stdout}");
        let seq = hookgate::store::Seq::parse_event_id(answer["id"].as_str().unwrap()).unwrap();
        let stored = gw.state.store.get(seq).unwrap().expect("stored");
        assert_eq!(stored.body, body, "{source}: byte-exact");
        assert_eq!(stored.meta.source, *source);
    }
    // A refused send fails the command and shows the gateway's answer.
    let body_file = dir.path().join("stripe.json");
    let (ok, stdout, _) = hookgate(&[
        "send",
        "--config",
        config_arg,
        "--source",
        "stripe",
        "--body",
        body_file.to_str().unwrap(),
        "--url",
        &gw.url("github"),
    ])
    .await;
    assert!(!ok);
    assert!(stdout.starts_with("401"), "{stdout}");
    let (ok, _, stderr) = hookgate(&[
        "send", "--config", config_arg, "--source", "nope", "--body", config_arg,
    ])
    .await;
    assert!(!ok && stderr.contains("no source `nope`"), "{stderr}");
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_cli_talks_to_the_admin_api() {
    let sink = Sink::start(|_, _| Reply::status(500)).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(&config(&sink.url(), "max_attempts = 1"), dir.path()).await;
    let id = accept(&gw, 7, "cus_7").await;
    wait_for("dead letter", Duration::from_secs(20), || async {
        !gw.state.store.dead_letters("app").unwrap().is_empty()
    })
    .await;
    let admin = format!("http://{}", gw.admin);
    let conn = ["--admin", admin.as_str(), "--token", TOKEN];
    let run = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(conn.iter().map(|s| s.to_string()));
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            hookgate(&refs).await
        }
    };

    let (ok, out, err) = run(&["events", "list"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("ID "), "{out}");
    assert!(
        out.contains(&id) && out.contains("dead_letter") && out.contains("cus_7"),
        "{out}"
    );
    let (ok, out, _) = run(&["events", "list", "--json", "--entity", "cus_7"]).await;
    assert!(ok);
    let page: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["events"][0]["id"], id.as_str());
    let (ok, out, _) = run(&["events", "show", &id]).await;
    assert!(ok);
    assert!(
        out.contains("evt_7") && out.contains("http status 500"),
        "{out}"
    );
    let (ok, out, _) = run(&["dead-letters", "list"]).await;
    assert!(ok);
    assert!(out.contains(&id) && out.contains("app"), "{out}");
    let (ok, out, _) = run(&["destinations", "pause", "app"]).await;
    assert!(ok);
    assert_eq!(out.trim(), "app: paused");
    let (ok, out, _) = run(&["destinations", "list"]).await;
    assert!(ok && out.contains("paused"), "{out}");
    let (ok, out, _) = run(&["destinations", "resume", "app"]).await;
    assert!(ok);
    assert_eq!(out.trim(), "app: running");
    let (ok, out, _) = run(&[
        "dead-letters",
        "redrive",
        "--destination",
        "app",
        "--id",
        &id,
    ])
    .await;
    assert!(ok);
    assert_eq!(out.trim(), "redriven: 1");
    let (ok, out, _) = run(&["events", "replay", &id]).await;
    assert!(ok, "{out}");
    // Errors: a wrong token and an unknown event fail with the API's answer.
    let (ok, _, err) = hookgate(&["events", "list", "--admin", &admin, "--token", "wrong"]).await;
    assert!(
        !ok && err.contains("401") && err.contains("unauthorized"),
        "{err}"
    );
    let (ok, _, err) = run(&["events", "show", "hg_00000000000fffff"]).await;
    assert!(!ok && err.contains("not_found"), "{err}");
    gw.stop().await.unwrap();
}
