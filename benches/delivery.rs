//! Delivery benches, each a bounded phase that can run alone:
//!
//! - `e2e`: the in-process gateway ingests a fixed batch (50,000 signed 1 KiB
//!   Stripe events at 64 connections) while delivering to a fast local sink
//!   (200, no rate limit, concurrency 16). Reports ingest events/s, delivery
//!   events/s in the same run, their ratio, and this process's peak RSS.
//! - `pacing`: 35,000 events already queued, destination `rate = "1000/s"`,
//!   `burst = 1`; counts what the sink receives in the 30 s after the first
//!   delivery: delivered ÷ expected. Runs at `concurrency` 4 (the default)
//!   and 16, to tell pacer lateness from a starved pipeline.
//! - `memory`: 1,000,000 small events queued for one destination whose app
//!   answers `503` + `Retry-After: 3600`; the real `hookgate` binary serves
//!   that data dir; its RSS after ~20 s beside its idle RSS on an empty dir.
//!
//! ```text
//! cargo bench --bench delivery                 # all phases
//! cargo bench --bench delivery -- pacing       # one phase (or HG_PHASES=pacing)
//! cargo bench --bench delivery -- e2e --e2e-events 20000
//! ```
//!
//! Options (flag or `HG_*` env var): `phases`, `e2e-events` (batch, 50000),
//! `e2e-conns` (ingest connections, 64), `e2e-concurrency` (destination, 16),
//! `pace-prefill` (35000), `pace-window` (s, 30), `pace-concurrency` (list,
//! "4,16"), `mem-events` (1000000),
//! `mem-wait` (s, 20), `mem-idle-wait` (s, 10), `fill-tasks` (512),
//! `mem-data` (keep the filled store in this dir and reuse it next time),
//! `hookgate-bin` (path of the binary; default: the one cargo built).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use governor::clock::{Clock as _, DefaultClock, Reference as _};
use tokio::runtime::Runtime;

struct Ctx {
    s: Settings,
    /// Gateway runtime (like the binary: one worker per core).
    gw: Runtime,
    /// Load generator and sinks ("the outside world").
    world: Runtime,
    broken: Vec<String>,
}

fn main() {
    let s = Settings::from_env();
    let phases: Vec<String> = if !s.words.is_empty() {
        s.words.clone()
    } else {
        s.get("phases")
            .unwrap_or_else(|| "e2e,pacing,memory".into())
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    };
    let mut ctx = Ctx {
        gw: runtime("server", nproc()),
        world: runtime("loadgen", nproc()),
        s,
        broken: Vec::new(),
    };
    println!("### delivery — {}", machine_line());
    println!();
    for phase in &phases {
        let started = Instant::now();
        eprintln!("[delivery] phase {phase} …");
        match phase.as_str() {
            "e2e" => e2e(&mut ctx),
            "pacing" => pacing(&mut ctx),
            "memory" => memory(&mut ctx),
            other => panic!("unknown phase `{other}` (e2e, pacing, memory)"),
        }
        eprintln!(
            "[delivery] phase {phase} took {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    if !ctx.broken.is_empty() {
        for b in &ctx.broken {
            println!("BROKEN: {b}");
        }
        println!();
        std::process::exit(1);
    }
}

fn destination(url: &str, extra: &str) -> String {
    format!("\n[destinations.app]\nurl = \"{url}\"\nsigning_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n{extra}")
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------- e2e

fn e2e(ctx: &mut Ctx) {
    let events: u64 = ctx.s.parse("e2e-events", 50_000);
    let conns: usize = ctx.s.parse("e2e-conns", 64);
    let concurrency: usize = ctx.s.parse("e2e-concurrency", 16);
    let limit = ctx.s.secs("e2e-limit", 240.0);

    let sink = ctx
        .world
        .block_on(Sink::start(events as usize + 16, SinkReply::Ok, false));
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = gateway_toml(
        dir.path(),
        &format!(
            "{}{}",
            stripe_source(Some("app")),
            destination(&sink.url(), &format!("concurrency = {concurrency}\n"))
        ),
    );
    let gw = ctx.gw.block_on(InProcess::start(&toml));
    let ingest = ctx.world.block_on(run_load(LoadSpec {
        addr: gw.ingress,
        path: "/hooks/stripe".into(),
        conns,
        bound: Bound::Count {
            total: events,
            limit,
        },
        entities: 1000,
        id_base: run_tag() * 1_000_000_000_000,
    }));
    let ingest_end = Instant::now();
    let accepted = ingest.all.accepted;
    let st = sink.state.clone();
    let at_ingest_end = st.unique.load(Ordering::SeqCst);
    let drained = wait_until(limit, || st.unique.load(Ordering::SeqCst) >= accepted);
    let hwm = status_kib(None, "VmHWM");
    let rss = status_kib(None, "VmRSS");
    ctx.gw.block_on(gw.stop());
    sink.stop();

    let unique = st.unique.load(Ordering::SeqCst);
    let repeats = st.repeats.load(Ordering::SeqCst);
    let first = st.first().expect("no delivery at all");
    let last = st.last().expect("last delivery");
    let ingest_rate = accepted as f64 / ingest.window.as_secs_f64();
    let deliver_span = last.saturating_duration_since(first);
    let deliver_rate = unique as f64 / deliver_span.as_secs_f64().max(1e-9);
    let drain_rate = unique.saturating_sub(at_ingest_end) as f64
        / last
            .saturating_duration_since(ingest_end)
            .as_secs_f64()
            .max(1e-9);

    if !drained || ingest.all.errors > 0 || ingest.all.non200_total() > 0 || accepted != events {
        ctx.broken.push(format!(
            "e2e: {accepted} accepted of {events} posted ({} errors, {} non-200, first problem {:?}); {unique} delivered; drained = {drained}",
            ingest.all.errors,
            ingest.all.non200_total(),
            ingest.all.first_problem
        ));
    }

    println!("#### e2e: ingest {events} events at {conns} connections while delivering (no rate limit, concurrency {concurrency})");
    println!();
    println!("| metric | value |");
    println!("|---|---:|");
    println!("| events accepted (200 `accepted`) | {accepted} |");
    println!(
        "| ingest: events/s (first request → last ack, {:.1} s) | {ingest_rate:.0} |",
        ingest.window.as_secs_f64()
    );
    println!(
        "| ingest latency p50 / p99 / p99.9 ms | {:.2} / {:.2} / {:.2} |",
        ingest.ms(0.5),
        ingest.ms(0.99),
        ingest.ms(0.999)
    );
    println!(
        "| delivery: events/s (first → last delivery, {:.1} s) | {deliver_rate:.0} |",
        deliver_span.as_secs_f64()
    );
    println!(
        "| **delivery ÷ ingest** | **{:.3}** |",
        deliver_rate / ingest_rate.max(1e-9)
    );
    println!(
        "| delivered while ingest ran | {at_ingest_end} ({:.0} %) |",
        100.0 * at_ingest_end as f64 / accepted.max(1) as f64
    );
    println!("| delivery after ingest ended (drain), events/s | {drain_rate:.0} |");
    println!("| distinct events delivered / repeats | {unique} / {repeats} |");
    println!(
        "| peak RSS (VmHWM) of this process — gateway, load generator and sink together | {} MiB (VmRSS now {} MiB) |",
        mib(hwm),
        mib(rss)
    );
    println!();
}

// ---------------------------------------------------------------- fill

struct Filled {
    events: u64,
    took: Duration,
    bad: u64,
    bytes: u64,
}

/// Queues `n` events in the store of `toml` directly (see [`store_load`]).
fn fill(rt: &Runtime, toml: &str, n: u64, tasks: usize, small: bool) -> Filled {
    let started = Instant::now();
    let (report, path) = rt.block_on(store_load(
        toml,
        tasks,
        Bound::Count {
            total: n,
            limit: Duration::from_secs(900),
        },
        small,
    ));
    Filled {
        events: n,
        took: started.elapsed(),
        bad: n - report.all.accepted,
        bytes: dir_bytes(&path),
    }
}

// ---------------------------------------------------------------- pacing

fn pacing(ctx: &mut Ctx) {
    for concurrency in ctx.s.list("pace-concurrency", "4,16") {
        pacing_once(ctx, concurrency);
    }
}

fn pacing_once(ctx: &mut Ctx, concurrency: usize) {
    let prefill: u64 = ctx.s.parse("pace-prefill", 35_000);
    let window = ctx.s.secs("pace-window", 30.0);
    let rate = 1000.0;

    let sink = ctx
        .world
        .block_on(Sink::start(prefill as usize + 16, SinkReply::Ok, true));
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = gateway_toml(
        dir.path(),
        &format!(
            "{}{}",
            stripe_source(Some("app")),
            destination(
                &sink.url(),
                &format!("rate = \"1000/s\"\nburst = 1\nconcurrency = {concurrency}\n"),
            )
        ),
    );
    let filled = fill(&ctx.gw, &toml, prefill, 256, false);
    let gw = ctx.gw.block_on(InProcess::start(&toml));
    let st = sink.state.clone();
    let got_first = wait_until(Duration::from_secs(60), || st.first().is_some());
    assert!(got_first, "no delivery within 60 s");
    let first = st.first().expect("first");
    // The pacer's limiter reads governor's DefaultClock (quanta's calibrated
    // TSC, one calibration per process, so the same one as the gateway's
    // here). Compare its pace with CLOCK_MONOTONIC over the window.
    let gclock = DefaultClock::default();
    let (g0, i0) = (gclock.now(), Instant::now());
    let cpu0 = (
        process_cpu_ns(),
        thread_cpu_ns("loadgen"),
        thread_cpu_ns("pacer-"),
        Instant::now(),
    );
    let end = first + window;
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let cpu1 = (
        process_cpu_ns(),
        thread_cpu_ns("loadgen"),
        thread_cpu_ns("pacer-"),
        Instant::now(),
    );
    let (g1, i1) = (gclock.now(), Instant::now());
    let clock_ratio = Duration::from(g1.duration_since(g0)).as_secs_f64()
        / i1.duration_since(i0).as_secs_f64().max(1e-9);
    std::thread::sleep(Duration::from_millis(500));
    let times = st.times();
    ctx.gw.block_on(gw.stop());
    sink.stop();

    let in_window: Vec<Instant> = times.into_iter().filter(|t| *t < end).collect();
    let delivered = in_window.len() as u64;
    let expected = rate * window.as_secs_f64();
    let max_in = |span: Duration| {
        let mut best = 0;
        let mut j = 0;
        for i in 0..in_window.len() {
            while in_window[i].duration_since(in_window[j]) >= span {
                j += 1;
            }
            best = best.max(i - j + 1);
        }
        best
    };
    let mut gaps = new_hist();
    for w in in_window.windows(2) {
        gaps.saturating_record(
            u64::try_from(w[1].duration_since(w[0]).as_micros())
                .unwrap_or(0)
                .max(1),
        );
    }
    let wall = cpu1.3.duration_since(cpu0.3).as_secs_f64();
    let gateway_cpu = (cpu1.0 - cpu0.0).saturating_sub(cpu1.1 - cpu0.1) as f64 / 1e9 / wall;
    let pacer_cpu = (cpu1.2 - cpu0.2) as f64 / 1e9 / wall;
    if filled.bad > 0 || delivered == 0 {
        ctx.broken.push(format!(
            "pacing: {} fill appends not accepted; {delivered} delivered",
            filled.bad
        ));
    }

    println!(
        "#### pacing: `rate = \"1000/s\"`, `burst = 1`, `concurrency = {concurrency}`{}, {prefill} events queued before start",
        if concurrency == 4 { " (the default)" } else { "" }
    );
    println!();
    println!("| metric | value |");
    println!("|---|---:|");
    println!(
        "| queued before start (direct `Store::append`, {:.1} s) | {} |",
        filled.took.as_secs_f64(),
        filled.events - filled.bad
    );
    println!(
        "| delivered in the {:.0} s after the first delivery | {delivered} |",
        window.as_secs_f64()
    );
    println!("| expected (rate × window) | {expected:.0} |");
    println!(
        "| **delivered ÷ expected** (target 0.99–1.00) | **{:.4}** |",
        delivered as f64 / expected
    );
    println!(
        "| most in any 1 s / any 100 ms (limit 1000+1 / 100+1) | {} / {} |",
        max_in(Duration::from_secs(1)),
        max_in(Duration::from_millis(100))
    );
    println!(
        "| gap between deliveries p50 / p99 / p99.9 / max, ms | {:.3} / {:.3} / {:.3} / {:.3} |",
        gaps.value_at_quantile(0.5) as f64 / 1000.0,
        gaps.value_at_quantile(0.99) as f64 / 1000.0,
        gaps.value_at_quantile(0.999) as f64 / 1000.0,
        gaps.max() as f64 / 1000.0
    );
    println!(
        "| gateway CPU during the window (cores) / of which the pacer thread | {gateway_cpu:.2} / {pacer_cpu:.2} |"
    );
    println!(
        "| governor clock (quanta TSC) elapsed ÷ CLOCK_MONOTONIC elapsed over the window | {clock_ratio:.5} |"
    );
    println!();
}

// ---------------------------------------------------------------- memory

/// The real binary, started on a config file.
struct Proc {
    child: Child,
    started: Duration,
    admin: SocketAddr,
}

impl Proc {
    fn start(bin: &Path, config: &Path) -> Proc {
        let t = Instant::now();
        let mut child = Command::new(bin)
            .args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && line.contains("hookgate listening") {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                    let addr = |k: &str| {
                        v["fields"][k]
                            .as_str()
                            .and_then(|s| s.parse::<SocketAddr>().ok())
                    };
                    if let (Some(_), Some(admin)) = (addr("ingress_addr"), addr("admin_addr")) {
                        let _ = tx.send(admin);
                        sent = true;
                    }
                }
            }
        });
        let admin = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("hookgate did not report its listeners within 120 s");
        Proc {
            child,
            started: t.elapsed(),
            admin,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL after 20 s.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn hookgate_bin(s: &Settings) -> PathBuf {
    if let Some(p) = s.get("hookgate-bin") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_BIN_EXE_hookgate"))
}

struct Rss {
    rss: Option<u64>,
    hwm: Option<u64>,
    max_sampled: u64,
    /// (seconds since listening, VmRSS KiB) at 0, 1, 2, 5, 10, 20, 30… s.
    timeline: Vec<(u64, u64)>,
}

impl Rss {
    fn timeline(&self) -> String {
        self.timeline
            .iter()
            .map(|(s, k)| format!("{s} s: {:.0}", *k as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Samples the child's RSS every 250 ms for `wait`, then reads VmRSS/VmHWM.
fn watch_rss(pid: u32, wait: Duration) -> Rss {
    let start = Instant::now();
    let deadline = start + wait;
    let mut max_sampled = 0;
    let mut timeline = Vec::new();
    let marks = [0u64, 1, 2, 5, 10, 20, 30, 45, 60, 90, 120];
    loop {
        let rss = status_kib(Some(pid), "VmRSS").unwrap_or(0);
        max_sampled = max_sampled.max(rss);
        let secs = start.elapsed().as_secs();
        if let Some(&m) = marks.iter().rev().find(|m| **m <= secs) {
            if !matches!(timeline.last(), Some((last, _)) if *last >= m) {
                timeline.push((m, rss));
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Rss {
        rss: status_kib(Some(pid), "VmRSS"),
        hwm: status_kib(Some(pid), "VmHWM"),
        max_sampled,
        timeline,
    }
}

fn memory(ctx: &mut Ctx) {
    let n: u64 = ctx.s.parse("mem-events", 1_000_000);
    let wait = ctx.s.secs("mem-wait", 20.0);
    let idle_wait = ctx.s.secs("mem-idle-wait", 10.0);
    let tasks: usize = ctx.s.parse("fill-tasks", 512);
    let bin = hookgate_bin(&ctx.s);
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release --bin hookgate` (or pass --hookgate-bin)",
        bin.display()
    );

    let sink = ctx.world.block_on(Sink::start(
        n as usize + 16,
        SinkReply::Unavailable {
            retry_after_s: 3600,
        },
        false,
    ));
    let root = tempfile::tempdir().expect("tempdir");
    let write = |name: &str| {
        let data = root.path().join(name);
        let toml = gateway_toml(
            &data,
            &format!(
                "{}{}",
                stripe_source(Some("app")),
                destination(&sink.url(), "")
            ),
        );
        let path = root.path().join(format!("{name}.toml"));
        std::fs::write(&path, &toml).expect("write config");
        (toml, path)
    };

    // Idle: empty data dir.
    let (_, idle_config) = write("idle");
    let idle = Proc::start(&bin, &idle_config);
    let idle_started = idle.started;
    let idle_rss = watch_rss(idle.pid(), idle_wait);
    idle.stop();

    // Loaded: one million pending for one destination.
    // `--mem-data DIR` keeps the filled store in DIR and reuses it next time.
    let keep = ctx.s.get("mem-data").map(PathBuf::from);
    let (toml, loaded_config) = match &keep {
        Some(d) => {
            let toml = gateway_toml(
                &d.join("data"),
                &format!(
                    "{}{}",
                    stripe_source(Some("app")),
                    destination(&sink.url(), "")
                ),
            );
            let path = root.path().join("loaded.toml");
            std::fs::write(&path, &toml).expect("write config");
            (toml, path)
        }
        None => write("loaded"),
    };
    let marker = keep.as_ref().map(|d| d.join("filled"));
    let reused = marker
        .as_ref()
        .and_then(|m| std::fs::read_to_string(m).ok())
        .and_then(|t| t.trim().parse::<u64>().ok())
        .filter(|k| *k == n);
    let filled = match (reused, &keep) {
        (Some(_), Some(d)) => Filled {
            events: n,
            took: Duration::ZERO,
            bad: 0,
            bytes: dir_bytes(&d.join("data")),
        },
        _ => {
            let f = fill(&ctx.gw, &toml, n, tasks, true);
            if let Some(m) = &marker {
                std::fs::write(m, n.to_string()).expect("write marker");
            }
            f
        }
    };
    let attempts_before = sink.state.requests.load(Ordering::SeqCst);
    let loaded = Proc::start(&bin, &loaded_config);
    let loaded_started = loaded.started;
    let loaded_rss = watch_rss(loaded.pid(), wait);
    let cpu = cpu_ticks(&format!("/proc/{}/stat", loaded.pid()));
    let scrape = scrape_metrics(loaded.admin);
    let after_scrape = status_kib(Some(loaded.pid()), "VmRSS");
    let attempts = sink.state.requests.load(Ordering::SeqCst) - attempts_before;
    loaded.stop();
    sink.stop();
    if filled.bad > 0 {
        ctx.broken.push(format!(
            "memory: {} of {n} fill appends not accepted",
            filled.bad
        ));
    }
    let target_ok = loaded_rss.hwm.is_some_and(|k| k < 100 * 1024);

    println!(
        "#### memory: real binary (`{}`), one destination answering 503 + `Retry-After: 3600`",
        bin.display()
    );
    println!();
    println!("| | idle (empty data dir) | {n} pending |");
    println!("|---|---:|---:|");
    let fill_line = if filled.took.is_zero() {
        format!(
            "{} events reused from `--mem-data`, {:.0} MiB on disk",
            filled.events,
            filled.bytes as f64 / (1024.0 * 1024.0)
        )
    } else {
        format!(
            "{} events in {:.1} s ({:.0}/s), {:.0} MiB on disk",
            filled.events - filled.bad,
            filled.took.as_secs_f64(),
            (filled.events - filled.bad) as f64 / filled.took.as_secs_f64(),
            filled.bytes as f64 / (1024.0 * 1024.0)
        )
    };
    println!("| queue fill (direct `Store::append`, {tasks} tasks) | – | {fill_line} |");
    println!(
        "| start → `hookgate listening` | {:.2} s | {:.2} s |",
        idle_started.as_secs_f64(),
        loaded_started.as_secs_f64()
    );
    println!(
        "| observed for | {:.0} s | {:.0} s |",
        idle_wait.as_secs_f64(),
        wait.as_secs_f64()
    );
    println!(
        "| VmRSS at the end, MiB | {} | {} |",
        mib(idle_rss.rss),
        mib(loaded_rss.rss)
    );
    println!(
        "| max sampled VmRSS (every 250 ms), MiB | {} | {} |",
        mib(Some(idle_rss.max_sampled)),
        mib(Some(loaded_rss.max_sampled))
    );
    println!(
        "| **VmHWM (peak), MiB** (target < 100) | **{}** | **{}** {} |",
        mib(idle_rss.hwm),
        mib(loaded_rss.hwm),
        if target_ok { "✅" } else { "❌" }
    );
    println!(
        "| VmRSS (MiB) by seconds after `listening` | {} | {} |",
        idle_rss.timeline(),
        loaded_rss.timeline()
    );
    println!("| delivery attempts the sink saw (all answered 503) | – | {attempts} |");
    println!(
        "| CPU time of the loaded process (first {:.0} s) | – | {:.1} s |",
        wait.as_secs_f64(),
        cpu.unwrap_or(0) as f64 / clock_ticks_per_s()
    );
    println!(
        "| then one `GET /metrics` (admin): status, time; VmRSS after, MiB | – | {}; {} |",
        scrape,
        mib(after_scrape)
    );
    println!();
}

/// One `GET /metrics` on the admin listener (HTTP/1.1, `Connection: close`,
/// 120 s timeout): "HTTP status, seconds".
fn scrape_metrics(admin: SocketAddr) -> String {
    use std::io::{Read as _, Write as _};
    let t = Instant::now();
    let result = (|| -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        let head = String::from_utf8_lossy(&out[..out.len().min(64)]).to_string();
        Ok(head.split_whitespace().nth(1).unwrap_or("?").to_string())
    })();
    match result {
        Ok(status) => format!("HTTP {status}, {:.2} s", t.elapsed().as_secs_f64()),
        Err(e) => format!("failed after {:.2} s: {e}", t.elapsed().as_secs_f64()),
    }
}
