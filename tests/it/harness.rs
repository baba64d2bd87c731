//! Test harness: the real gateway on 127.0.0.1:0 with sled in a temp dir,
//! recording downstream sinks, and polling helpers (never a bare sleep).

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hookgate::clock::Clock;
use hookgate::config::Config;
use hookgate::{AppState, Gateway, Listeners};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running in-process gateway.
pub struct Gw {
    pub ingress: SocketAddr,
    pub admin: SocketAddr,
    pub state: AppState,
    pub data: PathBuf,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Gw {
    /// Starts a gateway on `config` (TOML without `[storage] path`, which is set to `data`).
    pub async fn start(config: &str, data: &Path) -> Gw {
        Gw::start_with_clock(config, data, Clock::system()).await
    }

    pub async fn start_with_clock(config: &str, data: &Path, clock: Clock) -> Gw {
        let toml = with_storage_path(config, data);
        let config = Config::parse(&toml).unwrap_or_else(|e| panic!("config: {e}\n{toml}"));
        let gateway = open_when_unlocked(config, clock).await;
        let state = gateway.state().clone();
        let listeners = Listeners {
            ingress: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            admin: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        };
        let ingress = listeners.ingress.local_addr().expect("addr");
        let admin = listeners.admin.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(gateway.serve(listeners, shutdown.clone()));
        Gw {
            ingress,
            admin,
            state,
            data: data.to_path_buf(),
            shutdown,
            task: Some(task),
        }
    }

    pub fn url(&self, source: &str) -> String {
        format!("http://{}/hooks/{source}", self.ingress)
    }

    /// Graceful stop; returns what `serve` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(t) => t.await.expect("serve task"),
            None => Ok(()),
        }
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Opens the gateway, retrying while sled's lock is still held: after an
/// in-process restart the previous instance's last handles (a connection
/// task finishing its drop on another worker) can outlive `stop()` by a
/// moment. A new process never sees this; the lock dies with the old one.
async fn open_when_unlocked(config: Config, clock: Clock) -> Gateway {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Gateway::open(config.clone(), clock.clone()) {
            Ok(gateway) => return gateway,
            Err(e)
                if format!("{e}").contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("open gateway: {e:#}"),
        }
    }
}

/// Puts `[storage] path = data` into a config that may or may not have a
/// `[storage]` table.
pub fn with_storage_path(config: &str, data: &Path) -> String {
    let line = format!("path = {:?}\n", data.display().to_string());
    if config.contains("[storage]") {
        config.replacen("[storage]\n", &format!("[storage]\n{line}"), 1)
    } else {
        format!("[storage]\n{line}\n{config}")
    }
}

/// One request a sink received.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// What a sink answers; `delay` holds the response back (to simulate a slow app).
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::status(200)
    }
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: vec![],
            delay: Duration::ZERO,
        }
    }
}

type Behaviour = dyn Fn(&Received, usize) -> Reply + Send + Sync;

#[derive(Clone)]
struct SinkState {
    log: Arc<Mutex<Vec<Received>>>,
    /// Every request, including the ones answered with an error.
    all: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Behaviour>,
}

/// A downstream app on loopback that records what it receives. `received()`
/// holds only requests answered 2xx; `all()` holds every request.
pub struct Sink {
    pub addr: SocketAddr,
    state: SinkState,
    task: JoinHandle<()>,
}

impl Sink {
    pub async fn start(
        behaviour: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        Sink::start_on(listener, behaviour)
    }

    pub fn start_on(
        listener: TcpListener,
        behaviour: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> Sink {
        let addr = listener.local_addr().expect("addr");
        let state = SinkState {
            log: Arc::default(),
            all: Arc::default(),
            behaviour: Arc::new(behaviour),
        };
        let app = Router::new().fallback(record).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Sink { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/in", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.log.lock().expect("lock").clone()
    }

    pub fn all(&self) -> Vec<Received> {
        self.state.all.lock().expect("lock").clone()
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn record(State(s): State<SinkState>, headers: HeaderMap, body: Bytes) -> Response {
    let r = Received {
        at: Instant::now(),
        headers,
        body,
    };
    let n = {
        let mut all = s.all.lock().expect("lock");
        all.push(r.clone());
        all.len()
    };
    let reply = (s.behaviour)(&r, n);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if (200..300).contains(&reply.status) {
        s.log.lock().expect("lock").push(r);
    }
    let mut resp = StatusCode::from_u16(reply.status)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response();
    for (k, v) in reply.headers {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// Polls `cond` until it is true or `timeout` passes; panics with `what` then.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A shared HTTP client for tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

pub fn now_ms() -> i64 {
    Clock::system().now_ms()
}

/// Signs `body` as source `name` of the gateway's config would be signed by its provider.
pub fn sign(
    gw: &Gw,
    source: &str,
    body: &[u8],
    content_type: &str,
    id: &str,
) -> hookgate::verify::SignedRequest {
    gw.state.config.sources[source]
        .verifier
        .sign(body, content_type, now_ms(), id)
}

/// POSTs a signed body to the gateway; returns status and JSON.
pub async fn post_signed(gw: &Gw, source: &str, body: &[u8], id: &str) -> (u16, serde_json::Value) {
    let signed = sign(gw, source, body, "application/json", id);
    let mut url = gw.url(source);
    if let Some(q) = &signed.query {
        url = format!("{url}?{q}");
    }
    let mut req = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.expect("post");
    let status = resp.status().as_u16();
    let json = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}
