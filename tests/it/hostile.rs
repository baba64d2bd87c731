//! Hostile clients: slow-loris heads, idle connection floods, oversized
//! headers and a request flood from one address must not starve a
//! well-behaved sender.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

const CONFIG: &str = r#"
[server]
header_timeout = "1s"
per_ip_rate = "50/s"

[sources.stripe]
provider = "stripe"
secrets = ["whsec_test_secret"]
"#;

fn body(n: u32) -> Vec<u8> {
    format!(r#"{{"id":"evt_{n}","object":"event"}}"#).into_bytes()
}

/// Posts from 127.0.0.1 and checks the ack arrives within `bound`.
async fn well_behaved_ack(gw: &Gw, n: u32, bound: Duration) {
    let started = Instant::now();
    let (status, j) = post_signed(gw, "stripe", &body(n), "").await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{j}");
    assert!(took < bound, "a well-behaved ack took {took:?}");
}

/// Reads until EOF or error; true when the server closed the connection
/// within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_heads_are_cut_off_and_do_not_starve_others() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(CONFIG, dir.path()).await;
    let mut loris = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(gw.ingress).await.unwrap();
        s.write_all(b"POST /hooks/stripe HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        loris.push(s);
    }
    // Keep trickling bytes: a timeout per read would never fire.
    for s in &mut loris {
        let _ = s.write_all(b"a").await;
    }
    for n in 0..20 {
        well_behaved_ack(&gw, n, Duration::from_secs(2)).await;
    }
    // Every slow head is closed once header_timeout (1 s) has passed.
    for s in &mut loris {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "slow-loris connection still open"
        );
    }
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_do_not_starve_senders_and_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(CONFIG, dir.path()).await;
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(TcpStream::connect(gw.ingress).await.unwrap());
    }
    for n in 0..20 {
        well_behaved_ack(&gw, n, Duration::from_secs(2)).await;
    }
    for s in idle.iter_mut().take(100) {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "idle connection never closed"
        );
    }
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_with_431() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(CONFIG, dir.path()).await;
    let mut s = TcpStream::connect(gw.ingress).await.unwrap();
    let big = "a".repeat(200 * 1024);
    let req = format!(
        "POST /hooks/stripe HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    let _ = s.write_all(req.as_bytes()).await;
    let mut head = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut head))
        .await
        .unwrap()
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&head[..n]);
    assert!(text.starts_with("HTTP/1.1 431"), "got {text:?}");
    well_behaved_ack(&gw, 1, Duration::from_secs(2)).await;
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_is_limited_and_others_still_get_through() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(CONFIG, dir.path()).await;
    // The flooder sends from 127.0.0.2 (still loopback); the sender from 127.0.0.1.
    let flooder = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap();
    let url = gw.url("stripe");
    let flood = tokio::spawn(async move {
        let mut limited = 0;
        for _ in 0..400 {
            if let Ok(r) = flooder.post(&url).body("{}").send().await {
                if r.status() == 429 {
                    limited += 1;
                }
            }
        }
        limited
    });
    for n in 0..20 {
        well_behaved_ack(&gw, n, Duration::from_secs(2)).await;
    }
    let limited = flood.await.unwrap();
    assert!(
        limited > 200,
        "only {limited} of 400 flood requests were limited"
    );
    gw.stop().await.unwrap();
}
