//! Crash tests with the real binary: `kill -9` while events are being
//! acknowledged, restart on the same data directory, and check that every
//! acknowledged event survived (and, with a sink, was delivered).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookgate::store::{Seq, Store, StoreOptions};

use crate::harness::*;

/// The real `hookgate` binary, started on a config file.
pub struct Proc {
    pub child: Child,
    pub ingress: SocketAddr,
    #[allow(dead_code)]
    pub admin: SocketAddr,
}

impl Proc {
    /// Starts `hookgate serve` and waits for its "listening" line.
    pub fn start(config_path: &Path) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hookgate");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && line.contains("hookgate listening") {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                    let f = &v["fields"];
                    let parse = |k: &str| f[k].as_str().and_then(|s| s.parse::<SocketAddr>().ok());
                    if let (Some(i), Some(a)) = (parse("ingress_addr"), parse("admin_addr")) {
                        let _ = tx.send((i, a));
                        sent = true;
                    }
                }
            }
        });
        let (ingress, admin) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("hookgate did not report its listeners");
        Proc {
            child,
            ingress,
            admin,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL on unix
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let data = dir.join("data");
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        with_storage_path(body, &data)
    );
    let path = dir.join("hookgate.toml");
    std::fs::write(&path, toml).expect("write config");
    path
}

const STRIPE_SOURCE: &str = r#"
[sources.stripe]
provider = "stripe"
secrets = ["whsec_crash"]
entity = "/data/object/id"
"#;

fn stripe_signer() -> hookgate::verify::Verifier {
    hookgate::verify::Verifier::new(
        "stripe",
        vec![hookgate::secret::Secret::new("whsec_crash")],
        &Default::default(),
    )
    .expect("verifier")
}

/// Posts signed Stripe events from `workers` tasks until `stop`; returns
/// every acknowledgement as gateway id → body.
pub async fn post_until(
    ingress: SocketAddr,
    workers: usize,
    entities: u32,
    stop: tokio_util::sync::CancellationToken,
    acked: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    id_base: u64,
) {
    let signer = Arc::new(stripe_signer());
    let mut tasks = Vec::new();
    for w in 0..workers {
        let stop = stop.clone();
        let acked = acked.clone();
        let signer = signer.clone();
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
            let mut n = 0u64;
            while !stop.is_cancelled() {
                n += 1;
                let id = id_base + (w as u64) * 1_000_000 + n;
                let entity = id % u64::from(entities.max(1));
                let body = format!(
                    r#"{{"id":"evt_{id}","object":"event","data":{{"object":{{"id":"cus_{entity}","n":{id}}}}}}}"#
                )
                .into_bytes();
                let signed = signer.sign(&body, "application/json", now_ms(), "");
                let mut req = c
                    .post(format!("http://{ingress}/hooks/stripe"))
                    .header("content-type", "application/json")
                    .body(body.clone());
                for (k, v) in &signed.headers {
                    req = req.header(k, v);
                }
                match req.send().await {
                    Ok(r) if r.status() == 200 => {
                        if let Ok(j) = r.json::<serde_json::Value>().await {
                            if j["status"] == "accepted" {
                                if let Some(gid) = j["id"].as_str() {
                                    acked.lock().expect("lock").insert(gid.to_string(), body);
                                }
                            }
                        }
                    }
                    // Connection reset by the kill, or a 503: not acknowledged.
                    _ => {}
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Runs `rounds` rounds of: start the real binary, post from `workers`
/// tasks over `entities` entities, await `before_kill(round)`, `kill -9`.
/// Returns every acknowledgement (gateway id → body).
pub async fn kill_rounds<F, Fut>(
    config: &Path,
    rounds: u64,
    workers: usize,
    entities: u32,
    mut before_kill: F,
) -> BTreeMap<String, Vec<u8>>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    for round in 0..rounds {
        let mut proc = Proc::start(config);
        let stop = tokio_util::sync::CancellationToken::new();
        let poster = tokio::spawn(post_until(
            proc.ingress,
            workers,
            entities,
            stop.clone(),
            acked.clone(),
            round * 100_000_000,
        ));
        before_kill(round).await;
        proc.kill9();
        stop.cancel();
        poster.await.expect("poster");
    }
    let acked = acked.lock().expect("lock").clone();
    acked
}

/// Waits until `sink` has received every acknowledged gateway id.
pub async fn wait_all_delivered(sink: &Sink, acked: &BTreeMap<String, Vec<u8>>, timeout: Duration) {
    let want: HashSet<String> = acked.keys().cloned().collect();
    wait_for("every acknowledged event delivered", timeout, || async {
        let got: HashSet<String> = sink
            .received()
            .iter()
            .filter_map(|r| r.header("webhook-id"))
            .collect();
        want.is_subset(&got)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_concurrent_ingest_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), STRIPE_SOURCE);
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    for round in 0..3u64 {
        let mut proc = Proc::start(&config);
        let stop = tokio_util::sync::CancellationToken::new();
        let poster = tokio::spawn(post_until(
            proc.ingress,
            16,
            50,
            stop.clone(),
            acked.clone(),
            round * 100_000_000,
        ));
        // Kill once a few hundred more events are acknowledged, mid-stream.
        let before = acked.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked.lock().unwrap().len() < before + 300 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        proc.kill9();
        stop.cancel();
        poster.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "crash test: {} acknowledged events checked after 3 kill -9",
        acked.len()
    );
    assert!(acked.len() >= 900, "only {} acks", acked.len());
    // Open the data directory directly and check every acknowledged event.
    let store = Store::open(StoreOptions {
        path: dir.path().join("data"),
        dedupe_window: Duration::from_secs(3600),
        max_queue_bytes: None,
        segment_bytes: hookgate::store::DEFAULT_SEGMENT_BYTES,
        commit_interval: hookgate::store::DEFAULT_COMMIT_INTERVAL,
    })
    .unwrap();
    // The kill came mid-stream, after sled's last flush: the newest
    // acknowledged events were only in the log and had to be re-indexed.
    let report = store.recovery_report();
    assert!(report.reindexed > 0, "nothing re-indexed: {report:?}");
    assert_eq!(report.torn, 0, "kill -9 cannot tear an acknowledged record");
    let mut seen = HashSet::new();
    for (gid, body) in &acked {
        let seq = Seq::parse_event_id(gid).unwrap();
        let ev = store
            .get(seq)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {gid} lost"));
        assert_eq!(&ev.body[..], &body[..], "{gid} has another event's body");
        assert!(seen.insert(seq));
    }
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_delivers_every_acknowledged_event_in_entity_order() {
    let sink = Sink::start(|_, _| Reply::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "{STRIPE_SOURCE}forward_to = [\"app\"]\n\n[destinations.app]\nurl = \"{}\"\nrate = \"400/s\"\nconcurrency = 8\n",
            sink.url()
        ),
    );
    // Kill while deliveries are flowing and a backlog is pending.
    let acked = kill_rounds(&config, 2, 8, 20, |_| {
        let before = sink.received().len();
        let sink = &sink;
        async move {
            wait_for("deliveries under way", Duration::from_secs(30), || async {
                sink.received().len() >= before + 200
            })
            .await;
        }
    })
    .await;
    assert!(
        acked.len() > sink.received().len(),
        "the kill must leave a backlog"
    );
    // Restart and let it drain.
    let _proc = Proc::start(&config);
    wait_all_delivered(&sink, &acked, Duration::from_secs(60)).await;
    // Per entity, never backwards (a redelivery after the crash may repeat).
    crate::delivery::assert_order_per_entity(&sink.received());
    eprintln!(
        "kill -9 mid-delivery: {} acknowledged, {} deliveries received",
        acked.len(),
        sink.received().len()
    );
}
