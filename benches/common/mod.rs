//! Shared pieces of the hookgate benches (`benches/ingest.rs`,
//! `benches/delivery.rs`): settings, Stripe-style bodies, the load generator,
//! the no-op server, recording sinks, the in-process gateway, `/proc` readers.
//!
//! Everything here talks to 127.0.0.1 only, and every loop is bounded in time
//! and in count.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use hdrhistogram::Histogram;
use hookgate::clock::Clock;
use hookgate::config::Config;
use hookgate::secret::Secret;
use hookgate::store::Seq;
use hookgate::verify::Verifier;
use hookgate::{AppState, Gateway, Listeners};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The Stripe endpoint secret every bench source uses.
pub const SECRET: &str = "whsec_hookgate_bench_secret";

/// Size of every ingest request body.
pub const BODY_LEN: usize = 1024;

/// A request (connect included) that takes longer than this is an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------- settings

/// Command-line `--key value` / `--key=value` pairs plus bare words, with
/// `HG_KEY` environment variables as the fallback. cargo passes `--bench`
/// to every bench binary; it is ignored.
pub struct Settings {
    flags: BTreeMap<String, String>,
    /// Bare words (phase names for the delivery bench).
    pub words: Vec<String>,
}

impl Settings {
    pub fn from_env() -> Settings {
        let mut flags = BTreeMap::new();
        let mut words = Vec::new();
        let mut args = std::env::args().skip(1).peekable();
        while let Some(a) = args.next() {
            if a == "--bench" || a == "--nocapture" {
                continue;
            }
            if let Some(flag) = a.strip_prefix("--") {
                if let Some((k, v)) = flag.split_once('=') {
                    flags.insert(k.to_string(), v.to_string());
                } else if let Some(v) = args.next_if(|n| !n.starts_with("--")) {
                    flags.insert(flag.to_string(), v);
                } else {
                    flags.insert(flag.to_string(), "true".to_string());
                }
            } else {
                words.push(a);
            }
        }
        Settings { flags, words }
    }

    /// `--name` on the command line, else `HG_NAME` (upper case, `-` → `_`).
    pub fn get(&self, name: &str) -> Option<String> {
        self.flags.get(name).cloned().or_else(|| {
            let env = format!("HG_{}", name.to_uppercase().replace('-', "_"));
            std::env::var(env).ok().filter(|v| !v.trim().is_empty())
        })
    }

    pub fn parse<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.get(name) {
            Some(v) => v
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("--{name}: cannot parse `{v}`")),
            None => default,
        }
    }

    pub fn secs(&self, name: &str, default: f64) -> Duration {
        Duration::from_secs_f64(self.parse(name, default))
    }

    pub fn list(&self, name: &str, default: &str) -> Vec<usize> {
        self.get(name)
            .unwrap_or_else(|| default.to_string())
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("--{name}: `{s}` is not a number"))
            })
            .collect()
    }
}

/// A multi-threaded tokio runtime with `threads` workers.
pub fn runtime(name: &str, threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A number that differs between runs, so event ids never repeat across them.
pub fn run_tag() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() % 100_000)
}

// ---------------------------------------------------------------- bodies

/// The Stripe signer/verifier for [`SECRET`]: `sign` gives exactly the
/// headers Stripe would send.
pub fn signer() -> Verifier {
    Verifier::new("stripe", vec![Secret::new(SECRET)], &Default::default()).expect("verifier")
}

/// A Stripe-style event of exactly [`BODY_LEN`] bytes; fixed-width fields
/// keep the size constant.
pub fn stripe_body(id: u64, entity: u64, created_s: i64) -> Vec<u8> {
    let head = format!(
        concat!(
            r#"{{"id":"evt_{id:020}","object":"event","api_version":"2024-06-20","#,
            r#""created":{created:010},"type":"customer.subscription.updated","livemode":false,"#,
            r#""pending_webhooks":1,"request":{{"id":null,"idempotency_key":null}},"#,
            r#""data":{{"object":{{"id":"cus_{entity:08}","object":"customer","#,
            r#""email":"bench@example.com","currency":"usd","delinquent":false,"metadata":{{"pad":""#
        ),
        id = id,
        created = created_s,
        entity = entity,
    );
    let tail = r#""}}}}"#;
    let pad = BODY_LEN.saturating_sub(head.len() + tail.len());
    let mut body = Vec::with_capacity(BODY_LEN);
    body.extend_from_slice(head.as_bytes());
    body.resize(head.len() + pad, b'x');
    body.extend_from_slice(tail.as_bytes());
    body
}

/// A small (~200 byte) Stripe-style event, for filling a queue.
pub fn small_body(id: u64, entity: u64, created_s: i64) -> Vec<u8> {
    format!(
        r#"{{"id":"evt_{id:020}","object":"event","created":{created_s},"type":"invoice.paid","data":{{"object":{{"id":"cus_{entity:08}","object":"invoice","amount_paid":1999}}}}}}"#
    )
    .into_bytes()
}

// ---------------------------------------------------------------- configs

/// `[sources.stripe]` with the bench secret, entity `/data/object/id`.
pub fn stripe_source(forward_to: Option<&str>) -> String {
    let mut s = format!(
        "[sources.stripe]\nprovider = \"stripe\"\nsecrets = [\"{SECRET}\"]\nentity = \"/data/object/id\"\n"
    );
    if let Some(dest) = forward_to {
        s.push_str(&format!("forward_to = [\"{dest}\"]\n"));
    }
    s
}

/// A full gateway config on 127.0.0.1:0 with sled in `data`.
pub fn gateway_toml(data: &Path, rest: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[storage]\npath = {:?}\n\n{rest}",
        data.display().to_string()
    )
}

// ---------------------------------------------------------------- gateway

/// The real gateway, in this process, on the runtime that starts it.
pub struct InProcess {
    pub ingress: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    /// Opens and serves; returns once `/readyz` would say ready.
    pub async fn start(toml: &str) -> InProcess {
        let config = Config::parse(toml).unwrap_or_else(|e| panic!("config: {e}\n{toml}"));
        let gateway = Gateway::open(config, Clock::system()).expect("open gateway");
        let state = gateway.state().clone();
        let listeners = Listeners {
            ingress: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            admin: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        };
        let ingress = listeners.ingress.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(gateway.serve(listeners, shutdown.clone()));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !state.is_ready() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(state.is_ready(), "gateway did not become ready");
        InProcess {
            ingress,
            state,
            shutdown,
            task,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(60), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("gateway stopped with an error: {e:#}"),
            Ok(Err(e)) => eprintln!("gateway task failed: {e}"),
            Err(_) => eprintln!("gateway did not stop within 60 s"),
        }
    }
}

/// Counts flushes (changes of the store's durability watch) until cancelled.
pub fn count_flushes(state: &AppState, stop: CancellationToken) -> JoinHandle<u64> {
    let mut rx = state.store.watch_durable();
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() { break; }
                    n += 1;
                }
                _ = stop.cancelled() => break,
            }
        }
        n
    })
}

// ---------------------------------------------------------------- no-op server

/// An axum server on 127.0.0.1:0 that reads the body and answers 200.
pub async fn start_noop() -> (SocketAddr, JoinHandle<()>) {
    async fn noop(body: Bytes) -> StatusCode {
        std::hint::black_box(body.len());
        StatusCode::OK
    }
    let app = Router::new().route("/hooks/{source}", post(noop));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

// ---------------------------------------------------------------- load generator

/// How long a load runs.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// Warm up, then count only what completes inside the measure window.
    Timed { warmup: Duration, measure: Duration },
    /// Send exactly `total` requests (or stop at `limit`); all are counted.
    Count { total: u64, limit: Duration },
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub path: String,
    pub conns: usize,
    pub bound: Bound,
    /// Distinct `data.object.id` values (entity keys).
    pub entities: u64,
    /// Added to every event id (kept distinct across runs on one store).
    pub id_base: u64,
}

/// Outcomes, by kind.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub ok200: u64,
    pub accepted: u64,
    pub duplicate: u64,
    pub non200: BTreeMap<u16, u64>,
    pub errors: u64,
    pub first_problem: Option<String>,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.ok200 += o.ok200;
        self.accepted += o.accepted;
        self.duplicate += o.duplicate;
        for (k, v) in &o.non200 {
            *self.non200.entry(*k).or_default() += v;
        }
        self.errors += o.errors;
        if self.first_problem.is_none() {
            self.first_problem.clone_from(&o.first_problem);
        }
    }

    pub fn non200_total(&self) -> u64 {
        self.non200.values().sum()
    }

    fn classify(&mut self, status: u16, body: &[u8]) {
        if status == 200 {
            self.ok200 += 1;
            if contains(body, br#""accepted""#) {
                self.accepted += 1;
            } else if contains(body, br#""duplicate""#) {
                self.duplicate += 1;
            }
        } else {
            *self.non200.entry(status).or_default() += 1;
            if self.first_problem.is_none() {
                self.first_problem = Some(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ));
            }
        }
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_problem.is_none() {
            self.first_problem = Some(what);
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// What a load run measured.
pub struct LoadReport {
    pub conns: usize,
    /// Length of the counted window.
    pub window: Duration,
    /// Outcomes completed inside the window.
    pub counted: Tally,
    /// Every outcome, warm-up included.
    pub all: Tally,
    /// Latency of the counted responses, µs.
    pub hist: Histogram<u64>,
}

impl LoadReport {
    /// Responses (any status) per second in the window.
    pub fn rps(&self) -> f64 {
        let n = self.counted.ok200 + self.counted.non200_total();
        n as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub fn accepted_per_s(&self) -> f64 {
        self.counted.accepted as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram")
}

struct Shared {
    spec: LoadSpec,
    host: HeaderValue,
    signer: Verifier,
    next: AtomicU64,
    start: Instant,
    window_start: Instant,
    window_end: Instant,
    /// Nothing new is sent after this.
    stop_sending: Instant,
    last_done: Mutex<Instant>,
}

impl Shared {
    /// The next event number, or `None` when the run is over.
    fn next(&self) -> Option<u64> {
        let now = Instant::now();
        if now >= self.stop_sending {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        match self.spec.bound {
            Bound::Count { total, .. } if n >= total => None,
            _ => Some(n),
        }
    }

    fn counted(&self, done: Instant) -> bool {
        done >= self.window_start && done < self.window_end
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One keep-alive connection sending signed requests back to back.
async fn connection(shared: Arc<Shared>) -> (Tally, Tally, Histogram<u64>) {
    let mut counted = Tally::default();
    let mut all = Tally::default();
    let mut hist = new_hist();
    'connect: loop {
        if all.errors > 1000 || Instant::now() >= shared.stop_sending {
            break;
        }
        let mut sender =
            match tokio::time::timeout(REQUEST_TIMEOUT, connect(shared.spec.addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    all.error(e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(_) => {
                    all.error("connect timed out".into());
                    continue;
                }
            };
        while let Some(n) = shared.next() {
            let now = now_ms();
            let body = stripe_body(
                shared.spec.id_base + n,
                n % shared.spec.entities.max(1),
                now / 1000,
            );
            let signed = shared.signer.sign(&body, "application/json", now, "");
            let mut req = http::Request::post(shared.spec.path.as_str())
                .header(http::header::HOST, shared.host.clone())
                .header(http::header::CONTENT_TYPE, "application/json");
            for (k, v) in &signed.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let req = req.body(Full::new(Bytes::from(body))).expect("request");
            let started = Instant::now();
            let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let status = resp.status().as_u16();
                let body = resp.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>((status, body))
            })
            .await;
            let done = Instant::now();
            let in_window = shared.counted(done);
            match result {
                Ok(Ok((status, body))) => {
                    all.classify(status, &body);
                    if in_window {
                        counted.classify(status, &body);
                        let us = u64::try_from((done - started).as_micros()).unwrap_or(u64::MAX);
                        hist.saturating_record(us.max(1));
                    }
                    if let Ok(mut last) = shared.last_done.lock() {
                        *last = (*last).max(done);
                    }
                }
                Ok(Err(e)) => {
                    all.error(format!("request: {e}"));
                    if in_window {
                        counted.error(format!("request: {e}"));
                    }
                    continue 'connect;
                }
                Err(_) => {
                    all.error("request timed out".into());
                    if in_window {
                        counted.error("request timed out".into());
                    }
                    continue 'connect;
                }
            }
        }
        break;
    }
    (counted, all, hist)
}

/// Drives `spec.conns` keep-alive HTTP/1.1 connections, each sending a fresh
/// 1 KiB Stripe event with a fresh signature, one request at a time.
pub async fn run_load(spec: LoadSpec) -> LoadReport {
    let start = Instant::now();
    let (window_start, window_end, stop_sending) = match spec.bound {
        Bound::Timed { warmup, measure } => (
            start + warmup,
            start + warmup + measure,
            start + warmup + measure,
        ),
        Bound::Count { limit, .. } => (start, start + limit, start + limit),
    };
    let shared = Arc::new(Shared {
        host: HeaderValue::from_str(&spec.addr.to_string()).expect("host"),
        spec: spec.clone(),
        signer: signer(),
        next: AtomicU64::new(0),
        start,
        window_start,
        window_end,
        stop_sending,
        last_done: Mutex::new(start),
    });
    let tasks: Vec<_> = (0..spec.conns)
        .map(|_| tokio::spawn(connection(shared.clone())))
        .collect();
    let mut counted = Tally::default();
    let mut all = Tally::default();
    let mut hist = new_hist();
    for t in tasks {
        let (c, a, h) = t.await.expect("connection task");
        counted.add(&c);
        all.add(&a);
        hist.add(&h).expect("merge histograms");
    }
    let window = match spec.bound {
        Bound::Timed { measure, .. } => measure,
        Bound::Count { .. } => {
            let last = *shared.last_done.lock().expect("lock");
            last.saturating_duration_since(start)
        }
    };
    LoadReport {
        conns: spec.conns,
        window,
        counted,
        all,
        hist,
    }
}

// ---------------------------------------------------------------- sink

/// What a sink answers.
#[derive(Debug, Clone, Copy)]
pub enum SinkReply {
    Ok,
    /// 503 with `Retry-After: secs`.
    Unavailable {
        retry_after_s: u64,
    },
}

/// A fast downstream app that counts deliveries by `webhook-id`.
pub struct SinkState {
    base: Instant,
    reply: SinkReply,
    /// Every request received.
    pub requests: AtomicU64,
    /// Distinct gateway event ids received.
    pub unique: AtomicU64,
    /// Requests for an id already received.
    pub repeats: AtomicU64,
    /// Requests without a parseable `webhook-id`.
    pub malformed: AtomicU64,
    seen: Vec<AtomicBool>,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    /// Arrival times (ns after `base`) when recording is on.
    times: Option<Mutex<Vec<u64>>>,
}

impl SinkState {
    pub fn first(&self) -> Option<Instant> {
        match self.first_ns.load(Ordering::SeqCst) {
            u64::MAX => None,
            ns => Some(self.base + Duration::from_nanos(ns)),
        }
    }

    pub fn last(&self) -> Option<Instant> {
        self.first()?;
        Some(self.base + Duration::from_nanos(self.last_ns.load(Ordering::SeqCst)))
    }

    /// Arrival times recorded so far.
    pub fn times(&self) -> Vec<Instant> {
        self.times
            .as_ref()
            .map(|t| {
                t.lock()
                    .expect("lock")
                    .iter()
                    .map(|ns| self.base + Duration::from_nanos(*ns))
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub struct Sink {
    pub addr: SocketAddr,
    pub state: Arc<SinkState>,
    task: JoinHandle<()>,
}

impl Sink {
    /// Starts a sink expecting gateway sequences below `max_seq`.
    pub async fn start(max_seq: usize, reply: SinkReply, record_times: bool) -> Sink {
        let state = Arc::new(SinkState {
            base: Instant::now(),
            reply,
            requests: AtomicU64::new(0),
            unique: AtomicU64::new(0),
            repeats: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            seen: (0..max_seq).map(|_| AtomicBool::new(false)).collect(),
            first_ns: AtomicU64::new(u64::MAX),
            last_ns: AtomicU64::new(0),
            times: record_times.then(|| Mutex::new(Vec::with_capacity(64 * 1024))),
        });
        let app = Router::new().fallback(sink).with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Sink { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/in", self.addr)
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn sink(State(s): State<Arc<SinkState>>, headers: HeaderMap, body: Bytes) -> Response {
    std::hint::black_box(body.len());
    let ns = u64::try_from(s.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
    s.requests.fetch_add(1, Ordering::SeqCst);
    let _ = s
        .first_ns
        .compare_exchange(u64::MAX, ns, Ordering::SeqCst, Ordering::SeqCst);
    s.last_ns.fetch_max(ns, Ordering::SeqCst);
    if let Some(t) = &s.times {
        t.lock().expect("lock").push(ns);
    }
    let seq = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .and_then(Seq::parse_event_id);
    match seq.and_then(|q| usize::try_from(q.0).ok()) {
        Some(i) if i < s.seen.len() => {
            if s.seen[i].swap(true, Ordering::SeqCst) {
                s.repeats.fetch_add(1, Ordering::SeqCst);
            } else {
                s.unique.fetch_add(1, Ordering::SeqCst);
            }
        }
        _ => {
            s.malformed.fetch_add(1, Ordering::SeqCst);
        }
    }
    match s.reply {
        SinkReply::Ok => StatusCode::OK.into_response(),
        SinkReply::Unavailable { retry_after_s } => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(http::header::RETRY_AFTER, retry_after_s.to_string())],
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------- /proc

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

pub fn mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

/// utime + stime of a `/proc/.../stat` file, in clock ticks.
pub fn cpu_ticks(stat_path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU ticks of this process's threads whose name starts with `prefix`.
pub fn thread_ticks(prefix: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .filter_map(|e| cpu_ticks(&e.path().join("stat").to_string_lossy()))
        .sum()
}

pub fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Bytes under `dir`, recursively.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// p50 and p99 of `n` 4 KiB write + `fdatasync` rounds in `dir`, in ms: the
/// disk's floor under one group commit.
pub fn fdatasync_floor(dir: &Path, n: usize) -> (f64, f64) {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).expect("probe file");
    let block = [7u8; 4096];
    let mut hist = new_hist();
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&block).expect("write");
        f.sync_data().expect("fdatasync");
        hist.saturating_record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    let _ = std::fs::remove_file(path);
    (
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
    )
}

/// One line of machine facts for the report header.
pub fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|x| x.1.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{} cpus ({cpu}), loadavg {}",
        nproc(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// CPU time of threads named `prefix*`, in ns (`/proc/self/task/*/schedstat`).
/// Threads that exited are not counted: use it for long-lived pools.
pub fn thread_cpu_ns(prefix: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .filter_map(|e| {
            std::fs::read_to_string(e.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Process CPU time in ns (exited threads included).
pub fn process_cpu_ns() -> u64 {
    let ticks = cpu_ticks("/proc/self/stat").unwrap_or(0);
    (ticks as f64 * 1e9 / clock_ticks_per_s()) as u64
}

/// CPU used by the whole process and by the load generator's threads.
pub struct CpuSnapshot {
    process_ns: u64,
    loadgen_ns: u64,
    host: HostTicks,
    at: Instant,
}

/// The machine's CPU time from `/proc/stat` (all CPUs), in ticks.
#[derive(Clone, Copy, Default)]
struct HostTicks {
    total: u64,
    idle: u64,
    steal: u64,
}

impl HostTicks {
    fn read() -> HostTicks {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = text
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let at = |i: usize| fields.get(i).copied().unwrap_or(0);
        HostTicks {
            // user nice system idle iowait irq softirq steal (guest time is
            // already inside user).
            total: (0..8).map(at).sum(),
            idle: at(3) + at(4),
            steal: at(7),
        }
    }
}

/// CPU used between a snapshot and `since`.
pub struct CpuUsed {
    /// Everything but the load generator (server runtime, sled threads...).
    pub server_ns: u64,
    /// The load generator (and sinks, when they run on its runtime).
    pub loadgen_ns: u64,
    pub wall: Duration,
    /// Share of the machine's CPU time that was idle, and that the
    /// hypervisor gave to other guests (steal), over the same span: a run
    /// with much steal measured a slower machine, not slower code.
    pub host_idle: f64,
    pub host_steal: f64,
}

impl CpuSnapshot {
    pub fn take() -> CpuSnapshot {
        CpuSnapshot {
            process_ns: process_cpu_ns(),
            loadgen_ns: thread_cpu_ns("loadgen"),
            host: HostTicks::read(),
            at: Instant::now(),
        }
    }

    pub fn since(&self) -> CpuUsed {
        let process = process_cpu_ns().saturating_sub(self.process_ns);
        let loadgen = thread_cpu_ns("loadgen").saturating_sub(self.loadgen_ns);
        let host = HostTicks::read();
        let total = host.total.saturating_sub(self.host.total).max(1) as f64;
        CpuUsed {
            server_ns: process.saturating_sub(loadgen),
            loadgen_ns: loadgen,
            wall: self.at.elapsed(),
            host_idle: host.idle.saturating_sub(self.host.idle) as f64 / total,
            host_steal: host.steal.saturating_sub(self.host.steal) as f64 / total,
        }
    }
}

impl CpuUsed {
    /// (server µs, load generator µs) per request.
    pub fn per_request(&self, n: u64) -> (f64, f64) {
        let n = n.max(1) as f64;
        (
            self.server_ns as f64 / 1000.0 / n,
            self.loadgen_ns as f64 / 1000.0 / n,
        )
    }
}

// ---------------------------------------------------------------- store only

/// Appends events straight into the store of `toml` (no HTTP) from `tasks`
/// concurrent tasks, each awaiting `Store::append` (so they share group
/// commits like concurrent requests do). Each body is signed, checked by the
/// source's real verifier and admitted by the real guard first. Counts go in
/// `LoadReport::{counted,all}.accepted`. Returns the store's path too.
pub async fn store_load(
    toml: &str,
    tasks: usize,
    bound: Bound,
    small: bool,
) -> (LoadReport, std::path::PathBuf) {
    use hookgate::store::{Appended, Store, StoreOptions};
    use hookgate::verify::UnverifiedRequest;

    let config = Config::parse(toml).unwrap_or_else(|e| panic!("config: {e}"));
    let source = config.sources.get("stripe").expect("stripe source").clone();
    let path = config.storage.path.clone();
    let store = Store::open(StoreOptions {
        path: path.clone(),
        dedupe_window: config.storage.dedupe_window,
        max_queue_bytes: None,
        segment_bytes: hookgate::store::DEFAULT_SEGMENT_BYTES,
        commit_interval: config.storage.commit_interval,
    })
    .expect("open store");
    let start = Instant::now();
    let (window_start, window_end) = match bound {
        Bound::Timed { warmup, measure } => (start + warmup, start + warmup + measure),
        Bound::Count { limit, .. } => (start, start + limit),
    };
    let next = Arc::new(AtomicU64::new(0));
    let last_done = Arc::new(Mutex::new(start));
    let signer = Arc::new(signer());
    let tag = run_tag() * 1_000_000_000_000 + 500_000_000_000;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (store, next, signer, source, last_done) = (
            store.clone(),
            next.clone(),
            signer.clone(),
            source.clone(),
            last_done.clone(),
        );
        set.spawn(async move {
            let clock = Clock::system();
            let mut counted = Tally::default();
            let mut all = Tally::default();
            let mut hist = new_hist();
            loop {
                if Instant::now() >= window_end {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if matches!(bound, Bound::Count { total, .. } if i >= total) {
                    break;
                }
                let now = clock.now_ms();
                let body = if small {
                    small_body(tag + i, i % 1000, now / 1000)
                } else {
                    stripe_body(tag + i, i % 1000, now / 1000)
                };
                let signed = signer.sign(&body, "application/json", now, "");
                let mut headers = http::HeaderMap::new();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                for (k, v) in &signed.headers {
                    headers.insert(
                        http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                        HeaderValue::from_str(v).expect("value"),
                    );
                }
                let req = UnverifiedRequest {
                    headers,
                    body: Bytes::from(body),
                    path_and_query: "/hooks/stripe".into(),
                };
                let started = Instant::now();
                let verified = source.verifier.verify(&req).expect("verify");
                let event =
                    hookgate::guard::admit(&source, &req.headers, req.body, &verified, &clock)
                        .expect("admit");
                let result = store.append(event, now).await;
                let done = Instant::now();
                let in_window = done >= window_start && done < window_end;
                let outcome = |t: &mut Tally| match &result {
                    Ok(Appended::Accepted(_)) => {
                        t.ok200 += 1;
                        t.accepted += 1;
                    }
                    Ok(Appended::Duplicate(_)) => {
                        t.ok200 += 1;
                        t.duplicate += 1;
                    }
                    Err(e) => t.error(format!("append: {e}")),
                };
                outcome(&mut all);
                if in_window {
                    outcome(&mut counted);
                    let us = u64::try_from((done - started).as_micros()).unwrap_or(u64::MAX);
                    hist.saturating_record(us.max(1));
                }
                if let Ok(mut last) = last_done.lock() {
                    *last = (*last).max(done);
                }
            }
            (counted, all, hist)
        });
    }
    let mut counted = Tally::default();
    let mut all = Tally::default();
    let mut hist = new_hist();
    while let Some(r) = set.join_next().await {
        let (c, a, h) = r.expect("append task");
        counted.add(&c);
        all.add(&a);
        hist.add(&h).expect("merge histograms");
    }
    store.close().await.expect("close store");
    let window = match bound {
        Bound::Timed { measure, .. } => measure,
        Bound::Count { .. } => last_done
            .lock()
            .expect("lock")
            .saturating_duration_since(start),
    };
    (
        LoadReport {
            conns: tasks,
            window,
            counted,
            all,
            hist,
        },
        path,
    )
}

/// Bytes this process caused to be sent to the storage layer
/// (`write_bytes` of `/proc/self/io`).
pub fn io_write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}
