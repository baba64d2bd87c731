//! Stage 3: guard. Decides whether a verified request is fresh and what
//! identifies it, and builds the [`NewEvent`] the store will keep.
//!
//! Invariants:
//! - A signed timestamp outside the source's tolerance, in the past *or* the
//!   future, is refused ([`GuardError::Stale`]) before anything is stored.
//! - A captured request cannot be replayed. When the event id comes from the
//!   body (a JSON pointer), the signature covers it, so the id's marker
//!   refuses the replay, and a provider retry with a fresh signature too.
//!   Otherwise (an id from a header such as GitHub's unsigned
//!   `X-GitHub-Delivery`, or no id) the event also carries a replay marker
//!   derived from its signature.
//! - Headers that carry credentials are never stored.
//! - "Now" comes from the injected [`Clock`], so tests can pin it.

use bytes::Bytes;
use http::HeaderMap;

use crate::clock::Clock;
use crate::config::SourceConfig;
use crate::field::FieldRef;
use crate::store::{DedupeKey, EventMeta, NewEvent};
use crate::verify::Verified;

/// Headers never written to the store: they carry credentials, or they are
/// per-connection details with no audit value.
const DROPPED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-gitlab-token",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
];

/// Upper bound on the bytes of headers kept per event.
const MAX_KEPT_HEADER_BYTES: usize = 16 * 1024;

/// Why a verified request is still refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    /// The signed timestamp is outside the tolerance.
    #[error("timestamp is {skew_s}s away from now; tolerance is {tolerance_s}s")]
    Stale {
        /// Signed time minus now, in seconds (negative = in the past).
        skew_s: i64,
        /// The source's tolerance in seconds.
        tolerance_s: u64,
    },
}

/// Admits a verified request: checks freshness, extracts ids, and builds the
/// event to store.
pub fn admit(
    source: &SourceConfig,
    headers: &HeaderMap,
    body: Bytes,
    verified: &Verified,
    clock: &Clock,
) -> Result<NewEvent, GuardError> {
    let now_ms = clock.now_ms();
    if let (Some(tolerance), Some(signed_at)) = (source.tolerance, verified.signed_at_ms) {
        let skew_ms = signed_at.saturating_sub(now_ms);
        let tolerance_ms = i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX);
        if skew_ms.unsigned_abs() > tolerance_ms.unsigned_abs() {
            return Err(GuardError::Stale {
                skew_s: skew_ms / 1000,
                tolerance_s: tolerance.as_secs(),
            });
        }
    }
    let [provider_event_id, entity, provider_time] = source.request_fields.extract(headers, &body);
    let provider_event_id = provider_event_id.filter(|id| id.len() <= 512);
    let entity = entity.filter(|e| e.len() <= 512);
    let provider_time_ms = provider_time.as_deref().and_then(provider_time_ms);

    let mut dedupe = Vec::with_capacity(2);
    // An id read from the (signed) body already refuses a replayed capture:
    // the replay carries the same body, so the same id. Only an id from a
    // header, or none at all, needs the signature-derived marker too. One
    // marker fewer is one sled read and write fewer per event.
    let id_is_signed = matches!(source.event_id, Some(FieldRef::Pointer(_)));
    if !(id_is_signed && provider_event_id.is_some()) {
        dedupe.push(DedupeKey::Replay(verified.replay_token));
    }
    if let Some(id) = &provider_event_id {
        dedupe.push(DedupeKey::EventId(id.clone()));
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(NewEvent {
        meta: EventMeta {
            source: source.name.clone(),
            provider_event_id,
            entity,
            received_at_ms: now_ms,
            provider_time_ms,
            content_type,
            headers: kept_headers(headers),
            destinations: source.forward_to.clone(),
            release_at_ms: now_ms.saturating_add(window_ms(source)),
            order_ms: (!source.reorder_window.is_zero())
                .then_some(provider_time_ms.unwrap_or(now_ms)),
            markers: Vec::new(),
        },
        body,
        dedupe,
    })
}

/// The source's reorder window in ms (0 = off).
fn window_ms(source: &SourceConfig) -> i64 {
    i64::try_from(source.reorder_window.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The provider's event time in unix ms: a number (seconds or milliseconds,
/// told apart by magnitude) or an RFC 3339 string.
pub fn provider_time_ms(text: &str) -> Option<i64> {
    if let Ok(n) = text.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        // Below 1e11 a value is seconds (year 5138 in seconds is 1e11 ms).
        let ms = if n < 1e11 { n * 1000.0 } else { n };
        return Some(ms as i64);
    }
    parse_rfc3339_ms(text)
}

/// Minimal RFC 3339 (`2023-11-14T22:13:20.000Z`, or with `+hh:mm`) to unix ms.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ms = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            return None;
        }
        let padded = format!("{digits:0<3}");
        frac_ms = padded.get(0..3)?.parse().ok()?;
        rest = &r[digits.len()..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 3600
                + o.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset_s) * 1000 + frac_ms)
}

/// Headers worth keeping for audit and for the events API, bounded in size.
fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    let mut bytes = 0;
    for (name, value) in headers {
        if DROPPED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        bytes += name.as_str().len() + value.len();
        if bytes > MAX_KEPT_HEADER_BYTES {
            break;
        }
        kept.push((name.as_str().to_string(), value.to_string()));
    }
    kept
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(
            parse_rfc3339_ms("2023-11-14T22:13:20.000Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2023-11-14T23:13:20.5+01:00"),
            Some(1_700_000_000_500)
        );
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        for bad in [
            "",
            "2023-13-01T00:00:00Z",
            "yesterday",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn provider_time_accepts_seconds_millis_and_strings() {
        assert_eq!(provider_time_ms("1700000000"), Some(1_700_000_000_000));
        assert_eq!(provider_time_ms("1700000000123"), Some(1_700_000_000_123));
        assert_eq!(
            provider_time_ms("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(provider_time_ms("-5"), None);
        assert_eq!(provider_time_ms("soon"), None);
    }

    #[test]
    fn credentials_are_not_kept() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer x".parse().unwrap());
        h.insert("x-gitlab-token", "tok".parse().unwrap());
        h.insert("x-github-event", "push".parse().unwrap());
        let kept = kept_headers(&h);
        assert_eq!(
            kept,
            vec![("x-github-event".to_string(), "push".to_string())]
        );
    }
}
