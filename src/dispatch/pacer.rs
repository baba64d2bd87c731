//! Pacing: at most `rate` requests per period with `burst`, by GCRA
//! (`governor`), held precisely even with `burst = 1`.
//!
//! Why a thread: GCRA gives back none of the time a waiter wakes up late, so
//! with burst 1 every late wake-up is lost rate. tokio's timer has millisecond
//! granularity; at 1000/s that alone loses a large share of the rate. The
//! pacer runs on its own OS thread, sleeps until just before the slot and
//! spins the last stretch, then hands a permit to the async side. The limiter
//! itself is governor's strict GCRA with the user's quota, so the rate and
//! burst are never exceeded.

use std::num::NonZeroU32;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{Quota, RateLimiter};
use tokio::sync::oneshot;

use crate::config::Rate;

/// How long before a slot the pacer stops sleeping and starts spinning.
const SPIN_WINDOW: Duration = Duration::from_micros(300);

/// Hands out send permits at the configured pace. Dropping it stops its thread.
#[derive(Debug)]
pub struct Pacer {
    requests: mpsc::Sender<oneshot::Sender<()>>,
}

impl Pacer {
    /// Starts the pacing thread for one destination.
    pub fn start(name: &str, rate: Rate, burst: NonZeroU32) -> std::io::Result<Pacer> {
        let (requests, rx) = mpsc::channel::<oneshot::Sender<()>>();
        let quota = Quota::with_period(rate.interval().max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        std::thread::Builder::new()
            .name(format!("pacer-{name}"))
            .spawn(move || {
                let limiter = RateLimiter::direct(quota);
                let clock = DefaultClock::default();
                while let Ok(reply) = rx.recv() {
                    loop {
                        match limiter.check() {
                            Ok(()) => break,
                            Err(not_until) => wait_precisely(not_until.wait_time_from(clock.now())),
                        }
                    }
                    // The requester may have gone (shutdown); the permit is then unused.
                    let _ = reply.send(());
                }
            })?;
        Ok(Pacer { requests })
    }

    /// Waits for the next permit. Returns how long it waited.
    pub async fn acquire(&self) -> Duration {
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        if self.requests.send(tx).is_ok() {
            let _ = rx.await;
        }
        started.elapsed()
    }
}

/// Sleeps most of `wait`, then spins until it has passed.
fn wait_precisely(wait: Duration) {
    let deadline = Instant::now() + wait;
    if wait > SPIN_WINDOW {
        std::thread::sleep(wait - SPIN_WINDOW);
    }
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}
