//! Shared, panic-free parsing of signature headers: exactly-one-value header
//! lookup with a size cap, integer timestamps, and `k=v` lists such as
//! Stripe's `t=…,v1=…`, WorkOS's `t=…, v1=…` and Paddle's `ts=…;h1=…`.
//!
//! Everything here treats the header as hostile: non-UTF-8 bytes, empty or
//! huge values, repeated headers, missing `=` and non-digit timestamps all
//! become a [`VerifyError`], never a panic.

use http::HeaderMap;

use super::VerifyError;

/// Longest signature-header value we parse. Real headers are < 1 KiB even
/// during a secret roll; anything larger is refused before any work.
pub(crate) const MAX_HEADER_LEN: usize = 8 * 1024;

/// Most signatures considered from one header; the rest are ignored so that
/// a hostile header cannot multiply the comparison work.
pub(crate) const MAX_SIGNATURES: usize = 32;

/// Whether the header is present at all (to pick between header sets).
pub(crate) fn present(headers: &HeaderMap, name: &str) -> bool {
    headers.contains_key(name)
}

/// The raw bytes of a header that must appear exactly once.
///
/// A repeated security header is refused as malformed: which copy a proxy or
/// the dedup stage would read is ambiguous, and ambiguity is where smuggling
/// lives.
pub(crate) fn bytes<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a [u8], VerifyError> {
    let mut all = headers.get_all(name).iter();
    let first = all
        .next()
        .ok_or_else(|| VerifyError::MissingHeader(name.to_string()))?;
    if all.next().is_some() || first.len() > MAX_HEADER_LEN || first.is_empty() {
        return Err(VerifyError::Malformed(name.to_string()));
    }
    Ok(first.as_bytes())
}

/// A header that must appear exactly once, as trimmed, non-empty visible
/// ASCII text.
pub(crate) fn text<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    let raw = bytes(headers, name)?;
    let malformed = || VerifyError::Malformed(name.to_string());
    let s = std::str::from_utf8(raw).map_err(|_| malformed())?;
    if !s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        return Err(malformed());
    }
    let s = s.trim();
    if s.is_empty() {
        return Err(malformed());
    }
    Ok(s)
}

/// Parses a non-negative decimal integer made only of ASCII digits (no sign,
/// no spaces, at most 18 digits so it fits an `i64` with room for ×1000).
pub(crate) fn parse_int(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Unix seconds as text → unix milliseconds; `Malformed(what)` otherwise.
pub(crate) fn seconds_to_ms(text: &str, what: &str) -> Result<i64, VerifyError> {
    parse_int(text)
        .and_then(|s| s.checked_mul(1000))
        .ok_or_else(|| VerifyError::Malformed(what.to_string()))
}

/// Unix milliseconds as text → unix milliseconds; `Malformed(what)` otherwise.
pub(crate) fn millis(text: &str, what: &str) -> Result<i64, VerifyError> {
    parse_int(text).ok_or_else(|| VerifyError::Malformed(what.to_string()))
}

/// A `k=v` list holding one timestamp and any number of signatures.
#[derive(Debug)]
pub(crate) struct TimestampedList<'a> {
    /// The timestamp exactly as sent (it is part of the signed bytes).
    pub(crate) timestamp: &'a str,
    /// The values of the configured signature key, at most [`MAX_SIGNATURES`].
    pub(crate) signatures: Vec<&'a str>,
}

/// Splits `value` on `sep`, each item on its first `=`, trimming optional
/// whitespace (WorkOS sends `t=…, v1=…`). Empty items are skipped; a
/// non-empty item without `=` or a missing/repeated timestamp key is
/// malformed. Keys other than `ts_key`/`sig_key` (e.g. Stripe's `v0`) are
/// ignored: never a downgrade path.
pub(crate) fn timestamped_list<'a>(
    value: &'a str,
    sep: char,
    ts_key: &str,
    sig_key: &str,
    header: &str,
) -> Result<TimestampedList<'a>, VerifyError> {
    let malformed = || VerifyError::Malformed(header.to_string());
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in value.split(sep) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (k, v) = item.split_once('=').ok_or_else(malformed)?;
        let (k, v) = (k.trim(), v.trim());
        if k == ts_key {
            if timestamp.replace(v).is_some() {
                return Err(malformed());
            }
        } else if k == sig_key && signatures.len() < MAX_SIGNATURES {
            signatures.push(v);
        }
    }
    let timestamp = timestamp.filter(|t| !t.is_empty()).ok_or_else(malformed)?;
    Ok(TimestampedList {
        timestamp,
        signatures,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn header_text_rules() {
        let mut h = HeaderMap::new();
        assert_eq!(
            text(&h, "x-a"),
            Err(VerifyError::MissingHeader("x-a".into()))
        );
        h.insert("x-a", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        assert_eq!(text(&h, "x-a"), Err(VerifyError::Malformed("x-a".into())));
        h.insert("x-a", HeaderValue::from_static(""));
        assert!(text(&h, "x-a").is_err());
        h.insert("x-a", HeaderValue::from_static("  "));
        assert!(text(&h, "x-a").is_err());
        h.insert("x-a", HeaderValue::from_str(&"a".repeat(100_000)).unwrap());
        assert!(text(&h, "x-a").is_err());
        h.insert("x-a", HeaderValue::from_static(" ok "));
        assert_eq!(text(&h, "X-A"), Ok("ok"));
        h.append("x-a", HeaderValue::from_static("again"));
        assert_eq!(text(&h, "x-a"), Err(VerifyError::Malformed("x-a".into())));
    }

    #[test]
    fn integers_are_digits_only() {
        assert_eq!(parse_int("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_int("007"), Some(7));
        for bad in [
            "",
            "abc",
            "-1",
            "+1",
            "1.5",
            " 1",
            "1e9",
            "9999999999999999999",
        ] {
            assert_eq!(parse_int(bad), None, "{bad}");
        }
        assert!(seconds_to_ms("999999999999999999", "t").is_err());
        assert_eq!(seconds_to_ms("2", "t"), Ok(2000));
        assert_eq!(millis("2", "t"), Ok(2));
    }

    #[test]
    fn lists_parse_leniently_but_safely() {
        let l = timestamped_list("t=1, v1=aa ,v0=bb,,v1=cc", ',', "t", "v1", "h").unwrap();
        assert_eq!(l.timestamp, "1");
        assert_eq!(l.signatures, vec!["aa", "cc"]);
        assert!(timestamped_list("v1=aa", ',', "t", "v1", "h").is_err());
        assert!(timestamped_list("t=1,t=2,v1=aa", ',', "t", "v1", "h").is_err());
        assert!(timestamped_list("t=1,garbage", ',', "t", "v1", "h").is_err());
        assert!(timestamped_list("t=,v1=aa", ',', "t", "v1", "h").is_err());
        let many = format!("t=1{}", ",v1=aa".repeat(100));
        let l = timestamped_list(&many, ',', "t", "v1", "h").unwrap();
        assert_eq!(l.signatures.len(), MAX_SIGNATURES);
    }
}
