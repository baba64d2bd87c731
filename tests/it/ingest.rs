//! The receive side end to end: every provider preset, rejections, dedupe,
//! limits and hostile input.

use std::time::Duration;

use futures_util::future::join_all;
use hookgate::store::Seq;

use crate::harness::*;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One source per provider preset, as a provider dashboard would set it up.
pub fn all_providers_config() -> String {
    format!(
        r#"
[sources.stripe]
provider = "stripe"
secrets = ["whsec_test_secret"]
entity = "/data/object/id"

[sources.github]
provider = "github"
secrets = ["It's a Secret to Everybody"]
entity = "/repository/id"

[sources.standard]
provider = "standard"
secrets = ["{WHSEC}"]

[sources.svix]
provider = "svix"
secrets = ["{WHSEC}"]

[sources.slack]
provider = "slack"
secrets = ["8f742231b10e8888abcd99yyyzzz85a5"]

[sources.shopify]
provider = "shopify"
secrets = ["shpss_test_secret"]

[sources.workos]
provider = "workos"
secrets = ["wos_secret_test"]

[sources.gitlab]
provider = "gitlab"
secrets = ["gitlab-plain-token"]

[sources.gitlab_signed]
provider = "gitlab"
secrets = ["{WHSEC}"]

[sources.twilio]
provider = "twilio"
secrets = ["12345"]
public_url = "https://hooks.example.com/hooks/twilio"

[sources.paddle]
provider = "paddle"
secrets = ["pdl_ntfset_01hbpjmytsa32fhr36nqgc3kgb_secret"]

[sources.linear]
provider = "linear"
secrets = ["lin_wh_test_secret"]

[sources.acme]
provider = "hmac"
secrets = ["acme-secret"]
signature_header = "X-Acme-Signature"
algorithm = "sha256"
encoding = "hex"
prefix = "sha256="
timestamp_header = "X-Acme-Timestamp"
signed_payload = "{{timestamp}}.{{body}}"
event_id = "header:X-Acme-Delivery"
"#
    )
}

/// A body each provider would plausibly send, unique per `n`.
pub fn body_for(source: &str, n: u32) -> Vec<u8> {
    let now = now_ms();
    match source {
        "stripe" => format!(r#"{{"id":"evt_{n}","object":"event","created":{},"data":{{"object":{{"id":"cus_{n}"}}}}}}"#, now / 1000),
        "slack" => format!(r#"{{"type":"event_callback","event_id":"Ev{n}","event_time":{}}}"#, now / 1000),
        "workos" => format!(r#"{{"id":"event_{n}","event":"user.created","data":{{"id":"user_{n}"}}}}"#),
        "paddle" => format!(r#"{{"event_id":"evt_{n}","occurred_at":"2024-01-01T00:00:00Z","data":{{"id":"sub_{n}"}}}}"#),
        "linear" => format!(r#"{{"action":"create","type":"Issue","data":{{"id":"iss_{n}"}},"webhookTimestamp":{now}}}"#),
        "github" => format!(r#"{{"action":"opened","repository":{{"id":{n}}}}}"#),
        _ => format!(r#"{{"n":{n},"source":"{source}"}}"#),
    }
    .into_bytes()
}

/// Every source of [`all_providers_config`].
pub const SOURCES: &[&str] = &[
    "stripe",
    "github",
    "standard",
    "svix",
    "slack",
    "shopify",
    "workos",
    "gitlab",
    "gitlab_signed",
    "twilio",
    "paddle",
    "linear",
    "acme",
];

#[tokio::test]
async fn every_provider_preset_accepts_a_valid_request_and_stores_it_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(&all_providers_config(), dir.path()).await;
    for (i, source) in SOURCES.iter().enumerate() {
        let body = body_for(source, i as u32);
        let (status, json) = post_signed(&gw, source, &body, &format!("id-{source}")).await;
        assert_eq!(status, 200, "{source}: {json}");
        assert_eq!(json["status"], "accepted", "{source}: {json}");
        let seq = Seq::parse_event_id(json["id"].as_str().unwrap()).unwrap();
        let stored = gw.state.store.get(seq).unwrap().expect("stored");
        assert_eq!(stored.body, body, "{source}: body must be byte-exact");
        assert_eq!(stored.meta.source, *source);
    }
    // Stripe's entity and event id come from the body.
    gw.state.store.caught_up().await;
    let stored = gw.state.store.read_after(None, 1).unwrap();
    assert_eq!(stored[0].meta.provider_event_id.as_deref(), Some("evt_0"));
    assert_eq!(stored[0].meta.entity.as_deref(), Some("cus_0"));
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn tampered_missing_stale_and_future_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(&all_providers_config(), dir.path()).await;
    let c = client();
    for (i, source) in SOURCES.iter().enumerate() {
        let body = body_for(source, 100 + i as u32);
        let signed = sign(&gw, source, &body, "application/json", "x1");
        let url = match &signed.query {
            Some(q) => format!("{}?{q}", gw.url(source)),
            None => gw.url(source),
        };
        let with_headers = |mut req: reqwest::RequestBuilder| {
            for (k, v) in &signed.headers {
                req = req.header(k, v);
            }
            req.header("content-type", "application/json")
        };
        // Tampered body: one byte changed.
        let mut tampered = body.clone();
        tampered[1] ^= 0x01;
        // GitLab's token mode signs nothing: the token is the whole proof.
        if *source != "gitlab" {
            let r = with_headers(c.post(&url))
                .body(tampered)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{source} tampered");
            let j: serde_json::Value = r.json().await.unwrap();
            assert_eq!(j["status"], "invalid_signature", "{source}");
        }
        // No signature headers at all.
        let r = c
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{source} missing headers");
    }
    // Wrong secret: a verifier of the same provider with another secret signs.
    let wrong = hookgate::verify::Verifier::new(
        "stripe",
        vec![hookgate::secret::Secret::new("whsec_wrong")],
        &Default::default(),
    )
    .unwrap();
    let body = body_for("stripe", 7);
    let signed = wrong.sign(&body, "application/json", now_ms(), "x");
    let mut req = c.post(gw.url("stripe")).body(body.clone());
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 401);

    // Stale and future timestamps, with otherwise valid signatures.
    for (label, skew_ms) in [("stale", -600_000i64), ("future", 600_000)] {
        let v = &gw.state.config.sources["stripe"].verifier;
        let signed = v.sign(&body, "application/json", now_ms() + skew_ms, "x");
        let mut req = c.post(gw.url("stripe")).body(body.clone());
        for (k, val) in &signed.headers {
            req = req.header(k, val);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{label}");
        let j: serde_json::Value = r.json().await.unwrap();
        assert_eq!(j["status"], "stale_timestamp", "{label}");
    }
    assert!(
        gw.state.store.read_after(None, 10).unwrap().is_empty(),
        "nothing may be stored"
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn duplicates_are_answered_200_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(&all_providers_config(), dir.path()).await;
    let body = body_for("stripe", 1);
    let (s1, j1) = post_signed(&gw, "stripe", &body, "a").await;
    let (s2, j2) = post_signed(&gw, "stripe", &body, "a").await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(j1["status"], "accepted");
    assert_eq!(j2["status"], "duplicate");
    assert_eq!(j1["id"], j2["id"]);

    // A replayed capture of a GitHub request with a forged delivery id is
    // still a duplicate: the delivery header is not signed.
    let gh_body = body_for("github", 1);
    let signed = sign(&gw, "github", &gh_body, "application/json", "delivery-1");
    let c = client();
    let mut first = c.post(gw.url("github")).body(gh_body.clone());
    for (k, v) in &signed.headers {
        first = first.header(k, v);
    }
    let r: serde_json::Value = first.send().await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "accepted");
    let mut replay = c.post(gw.url("github")).body(gh_body.clone());
    for (k, v) in &signed.headers {
        let v = if k.eq_ignore_ascii_case("x-github-delivery") {
            "forged-2".to_string()
        } else {
            v.clone()
        };
        replay = replay.header(k, v);
    }
    let r: serde_json::Value = replay.send().await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "duplicate");

    // 50 concurrent copies of one new event: exactly one is accepted.
    let body = body_for("stripe", 2);
    let results = join_all((0..50).map(|_| post_signed(&gw, "stripe", &body, "b"))).await;
    let accepted = results
        .iter()
        .filter(|(s, j)| *s == 200 && j["status"] == "accepted")
        .count();
    let duplicate = results
        .iter()
        .filter(|(s, j)| *s == 200 && j["status"] == "duplicate")
        .count();
    assert_eq!((accepted, duplicate), (1, 49));
    gw.state.store.caught_up().await;
    let stored = gw.state.store.read_after(None, 100).unwrap();
    assert_eq!(stored.len(), 3, "stripe evt_1, github, stripe evt_2");
    // Stripe's id is read from the signed body: its marker alone refuses a
    // replay. GitHub's comes from an unsigned header: a replay marker too.
    let markers: Vec<usize> = stored.iter().map(|e| e.meta.markers.len()).collect();
    assert_eq!(markers, vec![1, 2, 1]);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn limits_unknown_routes_and_garbage_never_panic_or_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[server]\nmax_body = \"1KiB\"\n{}", all_providers_config());
    let gw = Gw::start(&config, dir.path()).await;
    let c = client();
    // Oversize with a Content-Length, and chunked without one.
    let big = vec![b'x'; 2048];
    let r = c
        .post(gw.url("stripe"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["status"], "payload_too_large");
    let stream = futures_util::stream::iter(
        big.chunks(100)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let r = c
        .post(gw.url("stripe"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Unknown source and unknown route.
    let r = c.post(gw.url("nope")).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["status"], "unknown_source");
    assert_eq!(
        c.get(format!("http://{}/", gw.ingress))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Garbage headers and non-UTF-8 bodies on every source.
    let junk_headers: &[(&str, &[u8])] = &[
        ("stripe-signature", b"t=,v1=zz,,,===="),
        ("stripe-signature", &[0xff, 0xfe, b't', b'=']),
        ("x-hub-signature-256", b"sha256="),
        ("webhook-signature", b"v1, v1,!!!! v2,abc"),
        ("webhook-timestamp", b"99999999999999999999999"),
        ("svix-timestamp", b"-1"),
        ("x-slack-request-timestamp", b"1e9"),
        ("workos-signature", b"t=1, v1"),
        ("paddle-signature", b";;;=;h1=;ts="),
        ("x-twilio-signature", b"%%%"),
        ("x-gitlab-token", &[0xc3, 0x28]),
        ("linear-signature", b"00"),
        ("x-acme-signature", b"sha256=nothex"),
        ("x-acme-timestamp", b"abc"),
    ];
    for source in SOURCES {
        for body in [
            &[0xff, 0xfe, 0x00, 0x80][..],
            b"",
            b"{\"id\":",
            b"not json at all",
        ] {
            let mut req = c.post(gw.url(source)).body(body.to_vec());
            for (k, v) in junk_headers {
                req = req.header(*k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
            }
            let r = req.send().await.unwrap();
            let s = r.status().as_u16();
            assert!((400..500).contains(&s), "{source}: got {s}");
        }
    }
    assert!(gw.state.store.read_after(None, 10).unwrap().is_empty());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn per_ip_rate_limit_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nper_ip_rate = \"5/s\"\n{}",
        all_providers_config()
    );
    let gw = Gw::start(&config, dir.path()).await;
    let c = client();
    let mut limited = None;
    for _ in 0..50 {
        let r = c.post(gw.url("nope")).body("{}").send().await.unwrap();
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a flood from one IP must hit 429");
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["status"], "rate_limited");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_poisoned_store_answers_503_and_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(&all_providers_config(), dir.path()).await;
    let c = client();
    let ready = c
        .get(format!("http://{}/readyz", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    // A keep-alive connection opened before the failure sees the 503 itself;
    // the poisoned store then shuts the listener so no new connection is taken.
    let (status, _) = post_signed(&gw, "stripe", &body_for("stripe", 8), "p").await;
    assert_eq!(status, 200);
    gw.state.store.caught_up().await;
    gw.state.store.poison_for_test();
    let body = body_for("stripe", 9);
    let signed = sign(&gw, "stripe", &body, "application/json", "p");
    let mut req = c.post(gw.url("stripe")).body(body.clone());
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    match req.send().await {
        Ok(r) => {
            assert_eq!(r.status(), 503);
            assert!(r.headers().contains_key("retry-after"));
            let j: serde_json::Value = r.json().await.unwrap();
            assert_eq!(j["status"], "unavailable");
        }
        Err(e) => assert!(e.is_connect() || e.is_request(), "{e}"),
    }
    assert_eq!(
        gw.state.store.read_after(None, 10).unwrap().len(),
        1,
        "nothing after the failure"
    );
    assert!(!gw.state.is_ready());
    let result = tokio::time::timeout(Duration::from_secs(20), gw.stop())
        .await
        .unwrap();
    assert!(result.is_err(), "serve must report the poisoned store");
}

#[tokio::test]
async fn graceful_shutdown_keeps_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(&all_providers_config(), dir.path()).await;
    let mut acked = Vec::new();
    for n in 0..20 {
        let (s, j) = post_signed(&gw, "stripe", &body_for("stripe", n), "g").await;
        assert_eq!(s, 200);
        acked.push(j["id"].as_str().unwrap().to_string());
    }
    gw.stop().await.unwrap();
    // Reopen on the same directory: every acked event is there.
    let gw = Gw::start(&all_providers_config(), dir.path()).await;
    for id in &acked {
        let seq = Seq::parse_event_id(id).unwrap();
        assert!(gw.state.store.get(seq).unwrap().is_some(), "{id} lost");
    }
    // New events continue the sequence.
    let (_, j) = post_signed(&gw, "stripe", &body_for("stripe", 99), "g").await;
    let last = Seq::parse_event_id(acked.last().unwrap()).unwrap();
    assert!(Seq::parse_event_id(j["id"].as_str().unwrap()).unwrap() > last);
    gw.stop().await.unwrap();
}
