//! Retry decisions as data: a pure function from an attempt's result to what
//! happens next, so the policy is unit-testable without a network.

use std::time::Duration;

use crate::config::Backoff;

/// Longest `Retry-After` honoured; a larger value is clamped so one bad header
/// cannot park a lane for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What an attempt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// A response arrived.
    Response {
        /// HTTP status.
        status: u16,
        /// Parsed `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// No response: connection error or timeout (the text says which).
    Failed(String),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The app has it.
    Delivered,
    /// Try again after this delay.
    Retry(Duration),
    /// Out of attempts: dead-letter it.
    GiveUp,
}

/// Decides after attempt number `attempt` (from 1). `jitter` is a uniform
/// sample in `[0, 1)`, injected so tests are deterministic.
pub fn decide(
    result: &AttemptResult,
    attempt: u32,
    max_attempts: u32,
    backoff: Backoff,
    jitter: f64,
) -> Decision {
    let retry_after = match result {
        AttemptResult::Response { status, .. } if (200..300).contains(status) => {
            return Decision::Delivered
        }
        AttemptResult::Response {
            status: 429 | 503,
            retry_after,
        } => *retry_after,
        _ => None,
    };
    if attempt >= max_attempts {
        return Decision::GiveUp;
    }
    match retry_after {
        Some(wait) => Decision::Retry(wait.min(MAX_RETRY_AFTER)),
        None => Decision::Retry(full_jitter(backoff, attempt, jitter)),
    }
}

/// Exponential backoff with full jitter: uniform in `[0, min(max, initial·2^(attempt-1))]`.
pub fn full_jitter(backoff: Backoff, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(40);
    let cap = backoff
        .initial
        .checked_mul(1u32 << exp.min(31))
        .unwrap_or(backoff.max)
        .min(backoff.max);
    cap.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Parses `Retry-After` as delay-seconds (HTTP-date is rare for webhooks and
/// is treated as absent, which falls back to backoff).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(600),
    };

    fn resp(status: u16) -> AttemptResult {
        AttemptResult::Response {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn two_hundreds_are_delivered_even_on_the_last_attempt() {
        for s in [200, 201, 204, 299] {
            assert_eq!(decide(&resp(s), 12, 12, B, 0.5), Decision::Delivered);
        }
    }

    #[test]
    fn failures_retry_until_the_budget_is_spent() {
        for r in [
            resp(500),
            resp(404),
            resp(302),
            AttemptResult::Failed("timeout".into()),
        ] {
            assert!(matches!(decide(&r, 1, 3, B, 0.5), Decision::Retry(_)));
            assert!(matches!(decide(&r, 2, 3, B, 0.5), Decision::Retry(_)));
            assert_eq!(decide(&r, 3, 3, B, 0.5), Decision::GiveUp);
        }
        assert_eq!(decide(&resp(500), 1, 1, B, 0.5), Decision::GiveUp);
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_only() {
        let with = |status| AttemptResult::Response {
            status,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            decide(&with(429), 1, 5, B, 0.0),
            Decision::Retry(Duration::from_secs(7))
        );
        assert_eq!(
            decide(&with(503), 1, 5, B, 0.0),
            Decision::Retry(Duration::from_secs(7))
        );
        assert_eq!(
            decide(&with(500), 1, 5, B, 0.0),
            Decision::Retry(Duration::ZERO)
        );
        let huge = AttemptResult::Response {
            status: 429,
            retry_after: Some(Duration::from_secs(1 << 30)),
        };
        assert_eq!(
            decide(&huge, 1, 5, B, 0.0),
            Decision::Retry(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        assert_eq!(full_jitter(B, 1, 1.0), Duration::from_secs(1));
        assert_eq!(full_jitter(B, 2, 1.0), Duration::from_secs(2));
        assert_eq!(full_jitter(B, 5, 1.0), Duration::from_secs(16));
        assert_eq!(full_jitter(B, 11, 1.0), Duration::from_secs(600));
        assert_eq!(full_jitter(B, 400, 1.0), Duration::from_secs(600));
        assert_eq!(full_jitter(B, 5, 0.0), Duration::ZERO);
        assert_eq!(full_jitter(B, 5, 0.5), Duration::from_secs(8));
    }

    #[test]
    fn full_jitter_stays_within_bounds_for_any_sample() {
        // A cheap property test over a grid of attempts and samples.
        for attempt in 1..64 {
            for i in 0..=20 {
                let j = f64::from(i) / 20.0;
                let d = full_jitter(B, attempt, j);
                assert!(d <= B.max, "attempt {attempt} jitter {j}: {d:?}");
            }
        }
    }

    #[test]
    fn retry_after_parsing() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
