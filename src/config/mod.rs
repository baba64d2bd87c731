//! Configuration: one TOML file, parsed raw, then validated into typed values.
//!
//! Invariants:
//! - Unknown keys are rejected (`deny_unknown_fields`), so a typo never turns
//!   into a silent default.
//! - Validation collects every problem at once, each prefixed with its dotted
//!   key (`sources.stripe.secrets[0]: env var STRIPE_WEBHOOK_SECRET is not set`),
//!   and happens before any port is bound or any file is opened.
//! - Secrets are resolved here (`env:NAME`, `file:PATH` or a literal) into
//!   [`Secret`], whose `Debug` is redacted; no problem message contains one.

mod units;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

pub use units::{parse_duration, parse_rate, parse_size, Rate};

#[cfg(test)]
mod tests;

use crate::field::{FieldRef, FieldSet};
use crate::secret::Secret;
use crate::verify::{SchemeOptions, Verifier};

/// Why the configuration cannot be used: every problem found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .problems.join("\n  "))]
pub struct ConfigError {
    /// Each problem as `dotted.key: what is wrong`.
    pub problems: Vec<String>,
}

/// The validated configuration the gateway runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// Public ingress listener settings.
    pub server: ServerConfig,
    /// Operator listener settings.
    pub admin: AdminConfig,
    /// Queue location and lifetimes.
    pub storage: StorageConfig,
    /// Sources by name (the `{source}` in `/hooks/{source}`).
    pub sources: BTreeMap<String, Arc<SourceConfig>>,
    /// Destinations by name.
    pub destinations: BTreeMap<String, Arc<DestinationConfig>>,
}

/// `[server]`: the public ingress.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where providers connect.
    pub listen: SocketAddr,
    /// Largest accepted body in bytes; larger is 413.
    pub max_body: usize,
    /// Whole-request deadline (reading the body included); bounds slow clients.
    pub request_timeout: Duration,
    /// Optional per-client-IP rate; above it 429 + `Retry-After`.
    pub per_ip_rate: Option<Rate>,
    /// Requests processed at once; more wait in line (bounded by the timeout).
    pub max_concurrency: usize,
    /// Most open connections; more are closed at once (bounds idle floods).
    pub max_connections: usize,
    /// Time a client gets to send its request head; also the keep-alive
    /// idle limit (bounds slow-loris clients).
    pub header_timeout: Duration,
}

/// `[admin]`: the operator listener.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where the operator API, `/metrics` and health checks listen.
    pub listen: SocketAddr,
    /// Bearer token for `/api` routes; required off loopback.
    pub token: Option<Secret>,
}

/// `[storage]`: the durable queue.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The sled directory.
    pub path: PathBuf,
    /// How long an event id is remembered to refuse duplicates.
    pub dedupe_window: Duration,
    /// How long delivered events are kept for audit and replay.
    pub retention: Duration,
    /// Above this many stored bytes ingress answers 503.
    pub max_queue_bytes: Option<u64>,
    /// Group commit: under concurrent load, the least time between the
    /// starts of two log flushes (see `StoreOptions::commit_interval`).
    pub commit_interval: Duration,
}

/// What a source does when a late event arrives (see the reorder window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatePolicy {
    /// Deliver it anyway, flagged `hookgate-late: true`.
    Deliver,
    /// Put it in the dead-letter queue.
    DeadLetter,
    /// Keep it for operators, but do not deliver.
    Drop,
}

impl LatePolicy {
    /// The config spelling, also the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            LatePolicy::Deliver => "deliver",
            LatePolicy::DeadLetter => "dead_letter",
            LatePolicy::Drop => "drop",
        }
    }
}

/// `[sources.NAME]`: one provider endpoint.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The source name, as in the URL.
    pub name: String,
    /// Provider preset name (`stripe`, `github`, ...).
    pub provider: String,
    /// Signature verifier with the source's secrets.
    pub verifier: Verifier,
    /// Timestamp freshness, both directions; `None` when the scheme signs no time.
    pub tolerance: Option<Duration>,
    /// Where the entity key lives; same value => ordered delivery.
    pub entity: Option<FieldRef>,
    /// Where the provider's event id lives; `None` => only replay protection.
    pub event_id: Option<FieldRef>,
    /// Where the provider's event time lives (for the reorder window).
    pub order_by: Option<FieldRef>,
    /// `event_id`, `entity` and `order_by`, in that order, prepared once so
    /// each request reads them in one pass (the guard's hot path).
    pub request_fields: FieldSet<3>,
    /// How long to hold events to restore provider order; zero = off.
    pub reorder_window: Duration,
    /// What to do with an event older than one already delivered.
    pub on_late: LatePolicy,
    /// Destinations every accepted event goes to.
    pub forward_to: Vec<String>,
}

/// What a destination's entity lane does after a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterPolicy {
    /// The lane moves on to the next event.
    Skip,
    /// The lane stops until the dead letter is redriven or discarded.
    Block,
}

/// Exponential backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First retry delay cap.
    pub initial: Duration,
    /// Largest retry delay cap.
    pub max: Duration,
}

/// `[destinations.NAME]`: an internal app.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    /// The destination name.
    pub name: String,
    /// Where events are POSTed.
    pub url: url::Url,
    /// Optional pace; `None` = not rate-limited.
    pub rate: Option<Rate>,
    /// GCRA burst.
    pub burst: NonZeroU32,
    /// Most requests in flight at once.
    pub concurrency: NonZeroUsize,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Attempts before the dead-letter queue.
    pub max_attempts: NonZeroU32,
    /// Retry delays.
    pub backoff: Backoff,
    /// Standard Webhooks secret used to re-sign for the app.
    pub signing_secret: Option<Secret>,
    /// Lane behaviour after a dead letter.
    pub on_dead_letter: DeadLetterPolicy,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
    #[serde(default)]
    destinations: BTreeMap<String, RawDestination>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    max_body: Option<String>,
    request_timeout: Option<String>,
    per_ip_rate: Option<String>,
    max_concurrency: Option<usize>,
    max_connections: Option<usize>,
    header_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: Option<String>,
    dedupe_window: Option<String>,
    retention: Option<String>,
    max_queue_bytes: Option<String>,
    commit_interval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    provider: String,
    #[serde(default)]
    secrets: Vec<String>,
    tolerance: Option<String>,
    entity: Option<String>,
    event_id: Option<String>,
    order_by: Option<String>,
    reorder_window: Option<String>,
    on_late: Option<LatePolicy>,
    #[serde(default)]
    forward_to: Vec<String>,
    public_url: Option<String>,
    signature_header: Option<String>,
    algorithm: Option<String>,
    encoding: Option<String>,
    prefix: Option<String>,
    timestamp_header: Option<String>,
    signed_payload: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    initial: Option<String>,
    max: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    url: String,
    rate: Option<String>,
    burst: Option<u32>,
    concurrency: Option<usize>,
    timeout: Option<String>,
    max_attempts: Option<u32>,
    backoff: Option<RawBackoff>,
    signing_secret: Option<String>,
    on_dead_letter: Option<DeadLetterPolicy>,
}

/// Collects problems while validating, each under its dotted key.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: &str, message: impl std::fmt::Display) {
        self.0.push(format!("{key}: {message}"));
    }

    /// Runs a parser on an optional value, recording a failure under `key`.
    fn parse<T>(
        &mut self,
        key: &str,
        value: Option<&str>,
        default: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(value.unwrap_or(default)) {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(key, e);
                None
            }
        }
    }
}

/// Resolves `env:NAME`, `file:PATH` or a literal into a [`Secret`].
pub fn resolve_secret(spec: &str) -> Result<Secret, String> {
    if let Some(name) = spec.strip_prefix("env:") {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
            Ok(_) => Err(format!("env var {name} is empty")),
            Err(_) => Err(format!("env var {name} is not set")),
        }
    } else if let Some(path) = spec.strip_prefix("file:") {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read secret file {path}: {e}"))?;
        let trimmed = text.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            return Err(format!("secret file {path} is empty"));
        }
        Ok(Secret::new(trimmed))
    } else if spec.is_empty() {
        Err("secret is empty".to_string())
    } else {
        Ok(Secret::new(spec))
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![format!("{}: cannot read: {e}", path.display())],
        })?;
        Config::parse(&text)
    }

    /// Validates config text; every problem is reported, not just the first.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            problems: vec![e.to_string().trim().replace('\n', "\n  ")],
        })?;
        let mut p = Problems::default();
        let server = validate_server(&raw.server, &mut p);
        let admin = validate_admin(&raw.admin, &mut p);
        let storage = validate_storage(&raw.storage, &mut p);
        let destinations: BTreeMap<_, _> = raw
            .destinations
            .iter()
            .filter_map(|(name, d)| {
                validate_destination(name, d, &mut p).map(|d| (name.clone(), Arc::new(d)))
            })
            .collect();
        let mut sources = BTreeMap::new();
        for (name, s) in &raw.sources {
            if let Some(src) = validate_source(name, s, &raw.destinations, &mut p) {
                sources.insert(name.clone(), Arc::new(src));
            }
        }
        match (server, admin, storage) {
            (Some(server), Some(admin), Some(storage)) if p.0.is_empty() => Ok(Config {
                server,
                admin,
                storage,
                sources,
                destinations,
            }),
            _ => Err(ConfigError { problems: p.0 }),
        }
    }
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not an address like \"0.0.0.0:8080\""))
}

fn validate_server(raw: &RawServer, p: &mut Problems) -> Option<ServerConfig> {
    let listen = p.parse(
        "server.listen",
        raw.listen.as_deref(),
        "0.0.0.0:8080",
        parse_addr,
    );
    let max_body = p.parse(
        "server.max_body",
        raw.max_body.as_deref(),
        "1MiB",
        parse_size,
    );
    let request_timeout = p.parse(
        "server.request_timeout",
        raw.request_timeout.as_deref(),
        "10s",
        parse_duration,
    );
    let per_ip_rate = match raw.per_ip_rate.as_deref() {
        None => Some(None),
        Some(r) => p
            .parse("server.per_ip_rate", Some(r), "", parse_rate)
            .map(Some),
    };
    if max_body == Some(0) {
        p.add("server.max_body", "must be larger than zero");
    }
    if request_timeout == Some(Duration::ZERO) {
        p.add("server.request_timeout", "must be larger than zero");
    }
    let max_concurrency = raw.max_concurrency.unwrap_or(1024);
    if max_concurrency == 0 {
        p.add("server.max_concurrency", "must be at least 1");
    }
    let max_connections = raw.max_connections.unwrap_or(10_000);
    if max_connections == 0 {
        p.add("server.max_connections", "must be at least 1");
    }
    let header_timeout = p.parse(
        "server.header_timeout",
        raw.header_timeout.as_deref(),
        "10s",
        parse_duration,
    );
    if header_timeout == Some(Duration::ZERO) {
        p.add("server.header_timeout", "must be larger than zero");
    }
    Some(ServerConfig {
        listen: listen?,
        max_body: usize::try_from(max_body?).unwrap_or(usize::MAX),
        request_timeout: request_timeout?,
        per_ip_rate: per_ip_rate?,
        max_concurrency,
        max_connections,
        header_timeout: header_timeout?,
    })
}

fn validate_admin(raw: &RawAdmin, p: &mut Problems) -> Option<AdminConfig> {
    let listen = p.parse(
        "admin.listen",
        raw.listen.as_deref(),
        "127.0.0.1:9090",
        parse_addr,
    )?;
    let token = match raw.token.as_deref() {
        None => None,
        Some(spec) => match resolve_secret(spec) {
            Ok(s) => Some(s),
            Err(e) => {
                p.add("admin.token", e);
                return None;
            }
        },
    };
    if token.is_none() && !listen.ip().is_loopback() {
        p.add(
            "admin.token",
            format!("required when admin.listen ({listen}) is not a loopback address"),
        );
    }
    Some(AdminConfig { listen, token })
}

fn validate_storage(raw: &RawStorage, p: &mut Problems) -> Option<StorageConfig> {
    let dedupe_window = p.parse(
        "storage.dedupe_window",
        raw.dedupe_window.as_deref(),
        "7d",
        parse_duration,
    );
    let retention = p.parse(
        "storage.retention",
        raw.retention.as_deref(),
        "7d",
        parse_duration,
    );
    let max_queue_bytes = match raw.max_queue_bytes.as_deref() {
        None => Some(None),
        Some(s) => p
            .parse("storage.max_queue_bytes", Some(s), "", parse_size)
            .map(Some),
    };
    let commit_interval = p
        .parse(
            "storage.commit_interval",
            raw.commit_interval.as_deref(),
            "0",
            parse_duration,
        )
        .and_then(|d| {
            if d > MAX_COMMIT_INTERVAL {
                p.add(
                    "storage.commit_interval",
                    format!(
                        "{} ms is longer than the {} ms allowed: every acknowledgement under load may wait this long",
                        d.as_millis(),
                        MAX_COMMIT_INTERVAL.as_millis()
                    ),
                );
                None
            } else {
                Some(d)
            }
        });
    Some(StorageConfig {
        path: PathBuf::from(raw.path.as_deref().unwrap_or("./data")),
        dedupe_window: dedupe_window?,
        retention: retention?,
        max_queue_bytes: max_queue_bytes?,
        commit_interval: commit_interval?,
    })
}

/// Upper bound of `storage.commit_interval`: past it the wait would show in
/// every provider's delivery latency for a saving that no longer grows.
const MAX_COMMIT_INTERVAL: Duration = Duration::from_millis(100);

fn validate_source(
    name: &str,
    raw: &RawSource,
    destinations: &BTreeMap<String, RawDestination>,
    p: &mut Problems,
) -> Option<SourceConfig> {
    let key = |k: &str| format!("sources.{name}.{k}");
    if !valid_name(name) {
        p.add(
            &format!("sources.{name}"),
            "name may contain only letters, digits, `-` and `_`",
        );
    }
    let mut secrets = Vec::new();
    if raw.secrets.is_empty() {
        p.add(&key("secrets"), "at least one secret is required");
    }
    for (i, spec) in raw.secrets.iter().enumerate() {
        match resolve_secret(spec) {
            Ok(s) => secrets.push(s),
            Err(e) => p.add(&key(&format!("secrets[{i}]")), e),
        }
    }
    let options = SchemeOptions {
        signature_header: raw.signature_header.clone(),
        algorithm: raw.algorithm.clone(),
        encoding: raw.encoding.clone(),
        prefix: raw.prefix.clone(),
        timestamp_header: raw.timestamp_header.clone(),
        signed_payload: raw.signed_payload.clone(),
        public_url: raw.public_url.clone(),
    };
    // When a secret failed to resolve, the verifier sees fewer secrets than
    // the file lists, so its `secrets[i]` indexes would point at the wrong
    // entry: those problems are already reported above by their real index.
    let all_resolved = secrets.len() == raw.secrets.len();
    let verifier = match Verifier::new(&raw.provider, secrets, &options) {
        Ok(v) => Some(v),
        Err(problems) => {
            for pr in problems {
                if !all_resolved && pr.key.starts_with("secrets") {
                    continue;
                }
                p.add(&key(&pr.key), pr.message);
            }
            None
        }
    };
    let verifier = verifier.filter(|_| all_resolved);
    let field = |p: &mut Problems, k: &str, v: &Option<String>| match v {
        None => Some(None),
        Some(text) => p.parse(&key(k), Some(text), "", FieldRef::parse).map(Some),
    };
    let entity = field(p, "entity", &raw.entity);
    let event_id = field(p, "event_id", &raw.event_id);
    let order_by = field(p, "order_by", &raw.order_by);
    let tolerance = match raw.tolerance.as_deref() {
        None => Some(None),
        Some(t) => p
            .parse(&key("tolerance"), Some(t), "", parse_duration)
            .map(Some),
    };
    let reorder_window = p.parse(
        &key("reorder_window"),
        raw.reorder_window.as_deref(),
        "0",
        parse_duration,
    );
    if raw.forward_to.is_empty() {
        tracing::debug!(
            source = name,
            "source forwards nowhere; events are kept for the events API"
        );
    }
    for (i, dest) in raw.forward_to.iter().enumerate() {
        if !destinations.contains_key(dest) {
            p.add(
                &key(&format!("forward_to[{i}]")),
                format!("no destination named `{dest}` (define [destinations.{dest}])"),
            );
        }
    }
    let verifier = verifier?;
    let tolerance = match tolerance? {
        Some(t) => {
            if verifier.default_tolerance().is_none() {
                p.add(
                    &key("tolerance"),
                    format!(
                        "provider `{}` signs no timestamp, so a tolerance cannot apply",
                        raw.provider
                    ),
                );
            }
            Some(t).filter(|t| !t.is_zero())
        }
        None => verifier.default_tolerance(),
    };
    let event_id = event_id?.or_else(|| verifier.default_event_id());
    let order_by = order_by?.or_else(|| verifier.default_order_by());
    let entity = entity?;
    let request_fields = FieldSet::new([event_id.as_ref(), entity.as_ref(), order_by.as_ref()]);
    Some(SourceConfig {
        name: name.to_string(),
        provider: raw.provider.clone(),
        tolerance,
        entity,
        event_id,
        order_by,
        request_fields,
        reorder_window: reorder_window?,
        on_late: raw.on_late.unwrap_or(LatePolicy::Deliver),
        forward_to: raw.forward_to.clone(),
        verifier,
    })
}

fn validate_destination(
    name: &str,
    raw: &RawDestination,
    p: &mut Problems,
) -> Option<DestinationConfig> {
    let key = |k: &str| format!("destinations.{name}.{k}");
    if !valid_name(name) {
        p.add(
            &format!("destinations.{name}"),
            "name may contain only letters, digits, `-` and `_`",
        );
    }
    let url = match url::Url::parse(&raw.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
        Ok(u) => {
            p.add(
                &key("url"),
                format!("scheme `{}` is not http or https", u.scheme()),
            );
            None
        }
        Err(e) => {
            p.add(&key("url"), format!("`{}` is not a URL: {e}", raw.url));
            None
        }
    };
    let rate = match raw.rate.as_deref() {
        None => Some(None),
        Some(r) => p.parse(&key("rate"), Some(r), "", parse_rate).map(Some),
    };
    let burst = NonZeroU32::new(raw.burst.unwrap_or(1));
    if burst.is_none() {
        p.add(&key("burst"), "must be at least 1");
    }
    let concurrency = NonZeroUsize::new(raw.concurrency.unwrap_or(4));
    if concurrency.is_none() {
        p.add(&key("concurrency"), "must be at least 1");
    }
    let max_attempts = NonZeroU32::new(raw.max_attempts.unwrap_or(12));
    if max_attempts.is_none() {
        p.add(&key("max_attempts"), "must be at least 1");
    }
    let timeout = p.parse(
        &key("timeout"),
        raw.timeout.as_deref(),
        "10s",
        parse_duration,
    );
    if timeout == Some(Duration::ZERO) {
        p.add(&key("timeout"), "must be larger than zero");
    }
    let (initial, max) = match &raw.backoff {
        Some(b) => (b.initial.as_deref(), b.max.as_deref()),
        None => (None, None),
    };
    let initial = p.parse(&key("backoff.initial"), initial, "1s", parse_duration);
    let max = p.parse(&key("backoff.max"), max, "10m", parse_duration);
    if let (Some(i), Some(m)) = (initial, max) {
        if i > m {
            p.add(&key("backoff"), "initial must not exceed max");
        }
    }
    let signing_secret = match raw.signing_secret.as_deref() {
        None => Some(None),
        Some(spec) => match resolve_secret(spec) {
            Ok(s) => Some(Some(s)),
            Err(e) => {
                p.add(&key("signing_secret"), e);
                None
            }
        },
    };
    Some(DestinationConfig {
        name: name.to_string(),
        url: url?,
        rate: rate?,
        burst: burst?,
        concurrency: concurrency?,
        timeout: timeout?,
        max_attempts: max_attempts?,
        backoff: Backoff {
            initial: initial?,
            max: max?,
        },
        signing_secret: signing_secret?,
        on_dead_letter: raw.on_dead_letter.unwrap_or(DeadLetterPolicy::Skip),
    })
}

/// Names appear in URLs, metric labels and sled keys: keep them plain.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
