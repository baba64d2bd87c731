//! Wall-clock time, injected.
//!
//! Freshness checks and TTLs compare provider timestamps with "now"; tests
//! must be able to pin "now" (published vectors carry timestamps from years
//! ago) without touching the system clock. Elapsed-time waits use
//! `tokio::time` instead, so tests can pause and advance them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Source of wall-clock time in unix milliseconds. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// `None` reads the system clock; `Some` is a fixed, settable time.
    fixed: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The real system clock.
    pub fn system() -> Self {
        Clock { fixed: None }
    }

    /// A clock frozen at `unix_ms` until [`Clock::set_ms`] moves it; for tests.
    pub fn fixed(unix_ms: i64) -> Self {
        Clock {
            fixed: Some(Arc::new(AtomicI64::new(unix_ms))),
        }
    }

    /// Moves a fixed clock; a no-op on the system clock.
    pub fn set_ms(&self, unix_ms: i64) {
        if let Some(t) = &self.fixed {
            t.store(unix_ms, Ordering::SeqCst);
        }
    }

    /// Now, in unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &self.fixed {
            Some(t) => t.load(Ordering::SeqCst),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_moves_only_when_set() {
        let c = Clock::fixed(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.set_ms(2_000);
        assert_eq!(c.now_ms(), 2_000);
        assert!(Clock::system().now_ms() > 1_600_000_000_000);
    }
}
