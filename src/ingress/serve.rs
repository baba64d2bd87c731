//! The HTTP/1.1 accept loop both listeners run on, with the bounds that
//! `axum::serve` does not offer.
//!
//! Why not `axum::serve`: it sets no timer, so a client that sends half a
//! request header (slow-loris) or idles on a keep-alive connection holds
//! it forever, and it accepts connections without limit. Here:
//! - every connection must deliver a complete request head within
//!   `header_timeout`, and an idle keep-alive connection is closed after it;
//! - at most `max_connections` are open at once; beyond that a new connection
//!   is closed at once, before it costs anything;
//! - request heads are bounded (`MAX_HEADER_BYTES`; hyper answers 431);
//! - shutdown stops accepting, lets in-flight requests finish within the
//!   grace period, then closes what is left.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Largest request head (request line + headers) accepted, in bytes.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Connection-level bounds of a listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time to send a complete request head; also the keep-alive idle limit.
    pub header_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown`, then drains within `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection limit reached; closing new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = connection_service(router.clone(), peer);
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Errors here are per-connection (client went away, bad request
            // head, header timeout): nothing to do but close.
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period are closed");
    }
}

/// Hands each request to the router with the peer address attached (the
/// per-IP limiter reads it as `ConnectInfo`).
fn connection_service(
    router: Router,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request.map(axum::body::Body::new))
    })
}
