//! Ingest throughput and latency: the real gateway (stripe source, sled in a
//! temp dir, real fsync) against a no-op axum server, driven by the same load
//! generator (N keep-alive HTTP/1.1 connections, each request a fresh 1 KiB
//! Stripe event with a fresh `Stripe-Signature`).
//!
//! ```text
//! cargo bench --bench ingest                              # 64 connections
//! cargo bench --bench ingest -- --conns 16,64,256 --measure 10 --warmup 4
//! HG_CONNS=16,64,256 HG_MEASURE=10 cargo bench --bench ingest
//! ```
//!
//! Options (flag or `HG_*` env var): `conns` (list), `warmup` (seconds,
//! default 4: past the first 64 MiB log segment) and `measure` (seconds,
//! default 10), `rounds` (repeat each pair), `server-threads` (gateway / no-op
//! runtime, default nproc like the binary), `client-threads` (load generator
//! runtime, default nproc), `entities` (distinct entity keys, 1000),
//! `commit-interval` (the gateway's `storage.commit_interval`, e.g. `0` or
//! `4ms`; default: the config default), `log`
//! (`none`, `json` or `human`: the binary's per-request log line, written to
//! /dev/null).
//! Exits non-zero when the gateway run is broken (errors, non-200s, or 200s
//! that are not `"accepted"`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio_util::sync::CancellationToken;

struct Row {
    target: &'static str,
    report: LoadReport,
    baseline_rps: Option<f64>,
    /// Events per flush (gateway only).
    per_flush: Option<(f64, f64)>,
    stored: Option<u64>,
    /// CPU µs per response: (server side, load generator).
    cpu: (f64, f64),
    /// Host idle and steal shares over the run.
    host: (f64, f64),
    /// Bytes written to storage per accepted event.
    disk_per_event: Option<f64>,
}

fn main() {
    let s = Settings::from_env();
    let conns_list = s.list("conns", "64");
    // Long enough for the gateway's first log segment (64 MiB, the one after
    // a start grows as it is written) to roll to a zero-filled spare, so the
    // window measures the steady state (`store::segments`).
    let warmup = s.secs("warmup", 4.0);
    let measure = s.secs("measure", 10.0);
    let rounds: usize = s.parse("rounds", 1);
    let server_threads: usize = s.parse("server-threads", nproc());
    let client_threads: usize = s.parse("client-threads", nproc());
    let entities: u64 = s.parse("entities", 1000);
    let targets = s
        .get("targets")
        .unwrap_or_else(|| "noop,gateway,store".into());
    // The binary logs one line per request to stderr; `--log json|human`
    // makes the gateway here pay for that too (written to /dev/null).
    let log = s.get("log").unwrap_or_else(|| "none".into());
    let commit_interval = s.get("commit-interval");
    install_logging(&log);
    let run_store = targets.contains("store");
    let run_noop = targets.contains("noop");
    let run_gateway = targets.contains("gateway");

    let server_rt = runtime("server", server_threads);
    let client_rt = runtime("loadgen", client_threads);

    let probe_dir = tempfile::tempdir().expect("tempdir");
    let (fsync_p50, fsync_p99) = fdatasync_floor(probe_dir.path(), 200);

    println!("### ingest — {}", machine_line());
    println!();
    println!(
        "warm-up {:.0} s, measure {:.0} s per target; gateway runtime {server_threads} threads, \
         load generator {client_threads} threads (same process); 1 KiB Stripe events, fresh id \
         and signature each, {entities} entity keys; fdatasync floor of this disk: \
         p50 {fsync_p50:.2} ms, p99 {fsync_p99:.2} ms (4 KiB write + fdatasync)",
        warmup.as_secs_f64(),
        measure.as_secs_f64()
    );
    println!();

    let bound = Bound::Timed { warmup, measure };
    let mut rows = Vec::new();
    let mut broken = Vec::new();
    let tag = run_tag() * 1_000_000_000_000;
    for &conns in &conns_list {
        for round in 0..rounds {
            let mut base_rps = None;
            if run_noop {
                eprintln!("[ingest] conns={conns} round={round}: no-op …");
                let (addr, noop) = server_rt.block_on(start_noop());
                let cpu = CpuSnapshot::take();
                let base = client_rt.block_on(run_load(LoadSpec {
                    addr,
                    path: "/hooks/stripe".into(),
                    conns,
                    bound,
                    entities,
                    id_base: tag,
                }));
                let cpu = cpu.since();
                noop.abort();
                base_rps = Some(base.rps());
                if base.counted.errors > 0 || base.counted.non200_total() > 0 {
                    broken.push(format!(
                        "no-op conns={conns}: {} errors, {} non-200 ({:?})",
                        base.counted.errors,
                        base.counted.non200_total(),
                        base.counted.first_problem
                    ));
                }
                rows.push(Row {
                    target: "no-op axum",
                    cpu: cpu.per_request(base.all.ok200 + base.all.non200_total()),
                    host: (cpu.host_idle, cpu.host_steal),
                    report: base,
                    baseline_rps: None,
                    per_flush: None,
                    stored: None,
                    disk_per_event: None,
                });
            }
            if run_gateway {
                rows.push(run_gateway_target(
                    &server_rt,
                    &client_rt,
                    conns,
                    bound,
                    entities,
                    tag,
                    base_rps,
                    commit_interval.as_deref(),
                    &mut broken,
                ));
            }
            if run_store {
                eprintln!("[ingest] conns={conns} round={round}: store only …");
                let dir = tempfile::tempdir().expect("tempdir");
                let toml = storage_toml(dir.path(), commit_interval.as_deref());
                let cpu = CpuSnapshot::take();
                let written = io_write_bytes();
                let (report, _) = server_rt.block_on(store_load(&toml, conns, bound, false));
                let cpu = cpu.since();
                let stored = report.all.accepted;
                let written = io_write_bytes() - written;
                rows.push(Row {
                    target: "store only (no HTTP)",
                    disk_per_event: Some(written as f64 / stored.max(1) as f64),
                    cpu: cpu.per_request(report.all.ok200 + report.all.errors),
                    host: (cpu.host_idle, cpu.host_steal),
                    report,
                    baseline_rps: base_rps,
                    per_flush: None,
                    stored: Some(stored),
                });
            }
        }
    }

    println!("| target | conns | req/s | p50 ms | p99 ms | p99.9 ms | max ms | 200 | accepted | duplicate | non-200 | errors | vs no-op | events/flush | flushes/s | server CPU µs/req | loadgen CPU µs/req | disk KiB/event | host idle % | host steal % |");
    println!(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &rows {
        let p = &r.report;
        let c = &p.counted;
        let ratio = match (r.stored, r.baseline_rps) {
            (None, _) => "1 (baseline)".to_string(),
            (Some(_), Some(b)) => format!("{:.3}", p.rps() / b.max(1e-9)),
            (Some(_), None) => "n/a".to_string(),
        };
        let (epf, fps) = r
            .per_flush
            .map_or(("".to_string(), "".to_string()), |(e, f)| {
                (format!("{e:.1}"), format!("{f:.0}"))
            });
        let accepted = if r.stored.is_some() {
            c.accepted.to_string()
        } else {
            "n/a".into()
        };
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} | {:.0} | {:.0} |",
            r.target,
            p.conns,
            p.rps(),
            p.ms(0.5),
            p.ms(0.99),
            p.ms(0.999),
            p.hist.max() as f64 / 1000.0,
            c.ok200,
            accepted,
            if r.stored.is_some() { c.duplicate.to_string() } else { "n/a".into() },
            c.non200_total(),
            c.errors,
            ratio,
            epf,
            fps,
            r.cpu.0,
            r.cpu.1,
            r.disk_per_event
                .map_or(String::new(), |b| format!("{:.1}", b / 1024.0)),
            r.host.0 * 100.0,
            r.host.1 * 100.0,
        );
    }
    println!();
    println!(
        "Counts are responses completed inside the {:.0} s window. `vs no-op` = hookgate req/s ÷ no-op req/s \
         at the same connection count, measured just before it. `events/flush` = events accepted per \
         group-commit flush (log fdatasync, with a sled flush when one is due), over warm-up + window. CPU µs/req = CPU time of the \
         process over warm-up + window ÷ responses, split into the load generator's threads and everything \
         else (server runtime, sled's threads). `store only` appends the same events with \
         `Store::append` from as many tasks (verify + guard + store, no HTTP). disk KiB/event = bytes \
         this process sent to storage (`write_bytes` of /proc/self/io) during the run ÷ events stored. \
         host idle / steal % = shares of the whole machine's CPU time (/proc/stat) over the run that were idle \
         or taken by the hypervisor for other guests.",
        measure.as_secs_f64()
    );
    println!();
    if broken.is_empty() {
        println!("Check: every counted gateway response was 200 `accepted`, no errors, and every accepted event is in the store.");
    } else {
        for b in &broken {
            println!("BROKEN: {b}");
        }
        println!();
        std::process::exit(1);
    }
    println!();
    // Keep the runtimes' shutdown out of the measured part.
    server_rt.shutdown_timeout(Duration::from_secs(5));
    client_rt.shutdown_timeout(Duration::from_secs(5));
}

#[allow(clippy::too_many_arguments)]
fn run_gateway_target(
    server_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
    conns: usize,
    bound: Bound,
    entities: u64,
    tag: u64,
    base_rps: Option<f64>,
    commit_interval: Option<&str>,
    broken: &mut Vec<String>,
) -> Row {
    let Bound::Timed { warmup, measure } = bound else {
        unreachable!("ingest runs are timed")
    };
    eprintln!("[ingest] conns={conns}: gateway …");
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = storage_toml(dir.path(), commit_interval);
    let gw = server_rt.block_on(InProcess::start(&toml));
    let flush_stop = CancellationToken::new();
    let flushes = {
        let _g = server_rt.enter();
        count_flushes(&gw.state, flush_stop.clone())
    };
    let cpu = CpuSnapshot::take();
    let written = io_write_bytes();
    let report = client_rt.block_on(run_load(LoadSpec {
        addr: gw.ingress,
        path: "/hooks/stripe".into(),
        conns,
        bound,
        entities,
        id_base: tag + 1_000_000_000,
    }));
    let cpu = cpu.since();
    flush_stop.cancel();
    let flushes = server_rt.block_on(flushes).unwrap_or(0);
    // Every acknowledged event, indexed (the flusher indexes after the ack).
    server_rt.block_on(gw.state.store.caught_up());
    let stored = gw.state.store.durable_seq().0;
    let written = io_write_bytes() - written;
    server_rt.block_on(gw.stop());
    let total_time = warmup + measure;
    let per_flush = (flushes > 0).then(|| {
        (
            report.all.accepted as f64 / flushes as f64,
            flushes as f64 / total_time.as_secs_f64(),
        )
    });

    let c = &report.counted;
    if c.errors > 0
        || c.non200_total() > 0
        || c.accepted == 0
        || c.accepted != c.ok200
        || report.all.accepted != stored
    {
        broken.push(format!(
            "gateway conns={conns}: {} accepted of {} 200s in window, {} duplicate, {} non-200 {:?}, {} errors; {} accepted overall vs {} stored; first problem: {:?}",
            c.accepted,
            c.ok200,
            c.duplicate,
            c.non200_total(),
            c.non200,
            c.errors,
            report.all.accepted,
            stored,
            c.first_problem
        ));
    }
    Row {
        target: "hookgate",
        disk_per_event: Some(written as f64 / stored.max(1) as f64),
        cpu: cpu.per_request(report.all.ok200 + report.all.non200_total()),
        host: (cpu.host_idle, cpu.host_steal),
        report,
        baseline_rps: base_rps,
        per_flush,
        stored: Some(stored),
    }
}

/// Installs the binary's log format (info level) writing to /dev/null, so a
/// run can include the per-request log line's cost; `none` leaves logging off.
/// The stripe-source gateway config, with `storage.commit_interval` set
/// when the run asks for one.
fn storage_toml(dir: &std::path::Path, commit_interval: Option<&str>) -> String {
    let toml = gateway_toml(dir, &stripe_source(None));
    match commit_interval {
        Some(ci) => toml.replacen(
            "[storage]\n",
            &format!("[storage]\ncommit_interval = {ci:?}\n"),
            1,
        ),
        None => toml,
    }
}

fn install_logging(format: &str) {
    if format == "none" {
        return;
    }
    let sink = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::sync::Mutex::new(sink));
    match format {
        "json" => builder.json().init(),
        _ => builder.init(),
    }
}
