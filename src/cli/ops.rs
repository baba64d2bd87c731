//! Operator commands: thin clients of the admin API (`events`,
//! `dead-letters`, `destinations`) and `send`, which signs a body as a
//! source's provider would and posts it to the gateway.
//!
//! They only speak HTTP: anything an operator can do here can be done with
//! curl against the same API, and the API stays the single place that
//! enforces auth and validation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use rand::Rng;
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::config::Config;

/// Default config file the operator commands read when given neither
/// `--config` nor `--admin`.
pub const DEFAULT_CONFIG: &str = "hookgate.toml";

/// How a command failed; mapped to an exit code once, in `cli`.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The config file is missing or invalid.
    #[error("{0}")]
    Config(String),
    /// Bad arguments or input files.
    #[error("{0}")]
    Usage(String),
    /// The gateway could not be reached.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The API answered with an error.
    #[error("{status}: {body}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's JSON error (or raw text).
        body: String,
    },
}

/// Where the admin API is and how to authenticate to it.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Config file to take `admin.listen` and `admin.token` from
    /// (default hookgate.toml when --admin is not given).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Admin API base URL, e.g. http://127.0.0.1:9090 (overrides the config).
    #[arg(long, env = "HOOKGATE_ADMIN_URL")]
    pub admin: Option<String>,
    /// Admin bearer token (overrides the config).
    #[arg(long, env = "HOOKGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `hookgate events ...`
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Search stored events (one page; pass --after NEXT for the next one).
    List {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// pending | delivered | dead_letter.
        #[arg(long)]
        status: Option<String>,
        /// Only this entity key.
        #[arg(long)]
        entity: Option<String>,
        /// Cursor: events after this gateway id.
        #[arg(long)]
        after: Option<String>,
        /// Page size (1..=1000).
        #[arg(long)]
        limit: Option<usize>,
        /// Received at or after, unix ms.
        #[arg(long)]
        since_ms: Option<i64>,
        /// Received before, unix ms.
        #[arg(long)]
        until_ms: Option<i64>,
    },
    /// One event: headers, body, delivery state and every attempt.
    Show {
        #[command(flatten)]
        admin: AdminArgs,
        /// Gateway event id (hg_...).
        id: String,
    },
    /// Deliver an event again to every destination it was routed to.
    Replay {
        #[command(flatten)]
        admin: AdminArgs,
        /// Gateway event id (hg_...).
        id: String,
    },
}

/// `hookgate dead-letters ...`
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only this destination.
        #[arg(long)]
        destination: Option<String>,
        /// At most this many (1..=1000).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Queue dead letters again: one (--destination + --id), a filter, or --all.
    Redrive {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only this destination.
        #[arg(long)]
        destination: Option<String>,
        /// Only this event.
        #[arg(long)]
        id: Option<String>,
        /// Dead-lettered at or after, unix ms.
        #[arg(long)]
        since_ms: Option<i64>,
        /// Dead-lettered before, unix ms.
        #[arg(long)]
        until_ms: Option<i64>,
        /// Every dead letter of every destination.
        #[arg(long)]
        all: bool,
    },
}

/// `hookgate destinations ...`
#[derive(Debug, Subcommand)]
pub enum DestinationsCommand {
    /// Destinations with their queue depth and pause state.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Stop starting deliveries to a destination (its queue keeps filling).
    Pause {
        #[command(flatten)]
        admin: AdminArgs,
        /// Destination name.
        name: String,
    },
    /// Release a paused destination's queue, in order.
    Resume {
        #[command(flatten)]
        admin: AdminArgs,
        /// Destination name.
        name: String,
    },
}

/// `hookgate send ...`
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Config file holding the source and its secret.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Source name (a `[sources.NAME]` table).
    #[arg(long)]
    pub source: String,
    /// File with the body to send, byte for byte.
    #[arg(long)]
    pub body: PathBuf,
    /// Gateway URL to post to (default http://<server.listen>/hooks/<source>).
    #[arg(long)]
    pub url: Option<String>,
    /// Content-Type of the body.
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
    /// Message id for schemes that carry one (default: random).
    #[arg(long)]
    pub id: Option<String>,
}

/// A resolved admin endpoint.
struct Admin {
    base: String,
    token: Option<String>,
    json: bool,
    client: reqwest::Client,
}

/// `0.0.0.0`/`::` are listen-anywhere addresses, not places to connect to.
fn connectable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

fn load_config(path: &std::path::Path) -> Result<Config, OpsError> {
    Config::load(path).map_err(|e| OpsError::Config(format!("{}: {e}", path.display())))
}

fn http_client() -> Result<reqwest::Client, OpsError> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?)
}

impl Admin {
    fn resolve(args: &AdminArgs) -> Result<Admin, OpsError> {
        let needs_config = args.admin.is_none() || (args.token.is_none() && args.config.is_some());
        let config = if needs_config {
            let path = args
                .config
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
            Some(load_config(&path)?)
        } else {
            None
        };
        let base = match (&args.admin, &config) {
            (Some(url), _) => url.trim_end_matches('/').to_string(),
            (None, Some(c)) => format!("http://{}", connectable(c.admin.listen)),
            (None, None) => {
                return Err(OpsError::Usage("give --admin URL or --config FILE".into()))
            }
        };
        let token = args.token.clone().or_else(|| {
            config
                .as_ref()
                .and_then(|c| c.admin.token.as_ref())
                .map(|t| t.expose().to_string())
        });
        Ok(Admin {
            base,
            token,
            json: args.json,
            client: http_client()?,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, OpsError> {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            return Err(OpsError::Api {
                status: status.as_u16(),
                body: text,
            });
        }
        serde_json::from_str(&text).map_err(|e| OpsError::Api {
            status: status.as_u16(),
            body: format!("not JSON ({e}): {text}"),
        })
    }

    async fn get(&self, path: &str) -> Result<Value, OpsError> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, OpsError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Prints `value` as JSON when asked, else with `table`.
    fn print(&self, value: &Value, table: impl FnOnce(&Value) -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            print!("{}", table(value));
        }
    }
}

/// Builds `?k=v&...` from the set pairs, URL-encoded.
fn query_string(pairs: &[(&str, Option<String>)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if q.is_empty() {
        q
    } else {
        format!("?{q}")
    }
}

/// Runs `hookgate events ...`.
pub async fn events(cmd: EventsCommand) -> Result<(), OpsError> {
    match cmd {
        EventsCommand::List {
            admin,
            source,
            status,
            entity,
            after,
            limit,
            since_ms,
            until_ms,
        } => {
            let admin = Admin::resolve(&admin)?;
            let q = query_string(&[
                ("source", source),
                ("status", status),
                ("entity", entity),
                ("after", after),
                ("limit", limit.map(|n| n.to_string())),
                ("since_ms", since_ms.map(|n| n.to_string())),
                ("until_ms", until_ms.map(|n| n.to_string())),
            ]);
            let page = admin.get(&format!("/api/events{q}")).await?;
            admin.print(&page, events_table);
        }
        EventsCommand::Show { admin, id } => {
            let admin = Admin::resolve(&admin)?;
            let event = admin
                .get(&format!("/api/events/{}", path_segment(&id)))
                .await?;
            admin.print(&event, event_detail);
        }
        EventsCommand::Replay { admin, id } => {
            let admin = Admin::resolve(&admin)?;
            let out = admin
                .post(
                    &format!("/api/events/{}/replay", path_segment(&id)),
                    json!({}),
                )
                .await?;
            admin.print(&out, |v| {
                format!(
                    "{} queued again for: {}\n",
                    text(&v["id"]),
                    list(&v["destinations"])
                )
            });
        }
    }
    Ok(())
}

/// Runs `hookgate dead-letters ...`.
pub async fn dead_letters(cmd: DeadLettersCommand) -> Result<(), OpsError> {
    match cmd {
        DeadLettersCommand::List {
            admin,
            destination,
            limit,
        } => {
            let admin = Admin::resolve(&admin)?;
            let q = query_string(&[
                ("destination", destination),
                ("limit", limit.map(|n| n.to_string())),
            ]);
            let out = admin.get(&format!("/api/dead-letters{q}")).await?;
            admin.print(&out, dead_letters_table);
        }
        DeadLettersCommand::Redrive {
            admin,
            destination,
            id,
            since_ms,
            until_ms,
            all,
        } => {
            let admin = Admin::resolve(&admin)?;
            let mut body = serde_json::Map::new();
            if let Some(d) = destination {
                body.insert("destination".into(), json!(d));
            }
            if let Some(i) = id {
                body.insert("id".into(), json!(i));
            }
            if let Some(t) = since_ms {
                body.insert("since_ms".into(), json!(t));
            }
            if let Some(t) = until_ms {
                body.insert("until_ms".into(), json!(t));
            }
            if all {
                body.insert("all".into(), json!(true));
            }
            let out = admin
                .post("/api/dead-letters/redrive", Value::Object(body))
                .await?;
            admin.print(&out, |v| {
                let more = if v["more"] == json!(true) {
                    " (more match: run again)"
                } else {
                    ""
                };
                format!("redriven: {}{more}\n", v["redriven"])
            });
        }
    }
    Ok(())
}

/// Runs `hookgate destinations ...`.
pub async fn destinations(cmd: DestinationsCommand) -> Result<(), OpsError> {
    let (admin, action) = match cmd {
        DestinationsCommand::List { admin } => {
            let admin = Admin::resolve(&admin)?;
            let out = admin.get("/api/destinations").await?;
            admin.print(&out, destinations_table);
            return Ok(());
        }
        DestinationsCommand::Pause { admin, name } => (admin, ("pause", name)),
        DestinationsCommand::Resume { admin, name } => (admin, ("resume", name)),
    };
    let admin = Admin::resolve(&admin)?;
    let (verb, name) = action;
    let out = admin
        .post(
            &format!("/api/destinations/{}/{verb}", path_segment(&name)),
            json!({}),
        )
        .await?;
    admin.print(&out, |v| {
        let state = if v["paused"] == json!(true) {
            "paused"
        } else {
            "running"
        };
        format!("{}: {state}\n", text(&v["destination"]))
    });
    Ok(())
}

/// Runs `hookgate send`: prints the gateway's status line and body; fails
/// when the gateway did not answer 2xx.
pub async fn send(args: SendArgs) -> Result<(), OpsError> {
    let config = load_config(&args.config)?;
    let source = config.sources.get(&args.source).ok_or_else(|| {
        let known: Vec<&str> = config.sources.keys().map(String::as_str).collect();
        OpsError::Usage(format!(
            "no source `{}` in {} (sources: {})",
            args.source,
            args.config.display(),
            known.join(", ")
        ))
    })?;
    let body = std::fs::read(&args.body)
        .map_err(|e| OpsError::Usage(format!("{}: {e}", args.body.display())))?;
    let id = args.id.unwrap_or_else(|| {
        let n: u64 = rand::rng().random();
        format!("msg_{n:016x}")
    });
    let signed = source
        .verifier
        .sign(&body, &args.content_type, Clock::system().now_ms(), &id);
    let mut url = args.url.unwrap_or_else(|| {
        format!(
            "http://{}/hooks/{}",
            connectable(config.server.listen),
            path_segment(&args.source)
        )
    });
    if let Some(q) = &signed.query {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(q);
    }
    let mut req = http_client()?
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, &args.content_type)
        .body(body);
    for (k, v) in &signed.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    println!("{}", status);
    println!("{text}");
    if status.is_success() {
        Ok(())
    } else {
        Err(OpsError::Api {
            status: status.as_u16(),
            body: "the gateway refused the request".into(),
        })
    }
}

/// Percent-encodes one path segment (ids and names are plain, but be safe).
fn path_segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A JSON value as table text: strings bare, null as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(text).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// Unix ms as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), without a date crate.
fn time(v: &Value) -> String {
    let Some(ms) = v.as_i64() else {
        return "-".into();
    };
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// Left-aligned columns sized to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
    out
}

fn events_table(page: &Value) -> String {
    let rows: Vec<Vec<String>> = page["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| {
                    vec![
                        text(&e["id"]),
                        time(&e["received_at_ms"]),
                        text(&e["source"]),
                        text(&e["status"]),
                        text(&e["entity"]),
                        text(&e["provider_event_id"]),
                        list(&e["destinations"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = table(
        &[
            "ID",
            "RECEIVED",
            "SOURCE",
            "STATUS",
            "ENTITY",
            "PROVIDER ID",
            "DESTINATIONS",
        ],
        &rows,
    );
    match page["next"].as_str() {
        Some(next) => out.push_str(&format!("more: --after {next}\n")),
        None => out.push_str("(end)\n"),
    }
    out
}

fn event_detail(e: &Value) -> String {
    let mut out = String::new();
    for (label, value) in [
        ("id", text(&e["id"])),
        ("source", text(&e["source"])),
        ("status", text(&e["status"])),
        ("provider event id", text(&e["provider_event_id"])),
        ("entity", text(&e["entity"])),
        ("received", time(&e["received_at_ms"])),
        ("provider time", time(&e["provider_time_ms"])),
        ("content type", text(&e["content_type"])),
    ] {
        out.push_str(&format!("{label:<18} {value}\n"));
    }
    out.push_str("headers:\n");
    for h in e["headers"].as_array().into_iter().flatten() {
        out.push_str(&format!("  {}: {}\n", text(&h["name"]), text(&h["value"])));
    }
    let encoding = if e["body_base64"] == json!(true) {
        " (base64)"
    } else {
        ""
    };
    out.push_str(&format!("body{encoding}:\n{}\n", text(&e["body"])));
    for d in e["delivery"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\ndestination {}: {}\n",
            text(&d["destination"]),
            text(&d["state"])
        ));
        if let Some(letter) = d["dead_letter"].as_object() {
            out.push_str(&format!(
                "dead letter: {} after {} attempts at {}\n",
                text(&letter["last_error"]),
                text(&letter["attempts"]),
                time(&letter["dead_at_ms"])
            ));
        }
        let rows: Vec<Vec<String>> = d["attempts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                vec![
                    text(&a["attempt"]),
                    time(&a["at_ms"]),
                    format!("{}ms", text(&a["duration_ms"])),
                    text(&a["status"]),
                    text(&a["outcome"]),
                    text(&a["error"]),
                ]
            })
            .collect();
        out.push_str(&table(
            &["#", "AT", "TOOK", "HTTP", "OUTCOME", "ERROR"],
            &rows,
        ));
    }
    out
}

fn dead_letters_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["dead_letters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            vec![
                text(&l["id"]),
                text(&l["destination"]),
                time(&l["dead_at_ms"]),
                text(&l["attempts"]),
                text(&l["entity"]),
                text(&l["last_error"]),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "DESTINATION",
            "DEAD AT",
            "ATTEMPTS",
            "ENTITY",
            "LAST ERROR",
        ],
        &rows,
    );
    if v["truncated"] == json!(true) {
        out.push_str("(more not shown: raise --limit or filter by --destination)\n");
    }
    out
}

fn destinations_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["destinations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            vec![
                text(&d["destination"]),
                if d["paused"] == json!(true) {
                    "paused".into()
                } else {
                    "running".into()
                },
                text(&d["pending"]),
                time(&d["oldest_pending_received_at_ms"]),
            ]
        })
        .collect();
    table(
        &["DESTINATION", "STATE", "PENDING", "OLDEST PENDING"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_as_utc() {
        assert_eq!(time(&json!(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            time(&json!(1_700_000_000_123i64)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(time(&json!(951_782_400_000i64)), "2000-02-29T00:00:00.000Z");
        assert_eq!(time(&Value::Null), "-");
    }

    #[test]
    fn listen_anywhere_becomes_loopback() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(connectable(any).to_string(), "127.0.0.1:8080");
        let v6: SocketAddr = "[::]:1".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(connectable(v6).to_string(), "[::1]:1");
    }

    #[test]
    fn tables_align_and_queries_encode() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
        assert_eq!(
            query_string(&[("entity", Some("a b&c".into())), ("x", None)]),
            "?entity=a+b%26c"
        );
        assert_eq!(query_string(&[("x", None)]), "");
    }
}
