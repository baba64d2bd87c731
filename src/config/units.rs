//! Human units in the config file: durations (`"5m"`), sizes (`"1MiB"`) and
//! rates (`"50/s"`).
//!
//! Kept strict on purpose: a typo such as `"5 min"` or `"1MB"` is an error
//! naming the key, not a silent default.

use std::num::NonZeroU32;
use std::time::Duration;

/// Parses `<integer><unit>` with unit `ms`, `s`, `m`, `h` or `d`; `"0"` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit; use ms, s, m, h or d (e.g. \"5m\")"))?;
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like \"5m\" or \"500ms\""))?;
    let ms_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "`{text}` has unknown unit `{unit}`; use ms, s, m, h or d"
            ))
        }
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses `<integer><unit>` with unit `B`, `KiB`, `MiB` or `GiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit; use B, KiB, MiB or GiB (e.g. \"1MiB\")"))?;
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size like \"1MiB\""))?;
    let mult: u64 = match unit {
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "`{text}` has unknown unit `{unit}`; use B, KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// A request rate: `count` per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period.
    pub count: NonZeroU32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// Time between two requests at exactly this rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count.get()
    }
}

/// Parses `"<n>/s"`, `"<n>/m"` or `"<n>/h"` with n ≥ 1.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let (n, unit) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not a rate like \"50/s\", \"100/m\" or \"1000/h\""))?;
    let count: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number"))?;
    let count =
        NonZeroU32::new(count).ok_or_else(|| format!("`{text}`: the rate must be at least 1"))?;
    let per = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => {
            return Err(format!(
                "`{text}` has unknown period `{other}`; use s, m or h"
            ))
        }
    };
    Ok(Rate { count, per })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in [
            "5",
            "5 min",
            "m",
            "",
            "-1s",
            "1.5s",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("100B").unwrap(), 100);
        for bad in ["1MB", "1", "MiB", "1.5MiB"] {
            assert!(parse_size(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn rates() {
        let r = parse_rate("50/s").unwrap();
        assert_eq!(r.count.get(), 50);
        assert_eq!(r.interval(), Duration::from_millis(20));
        assert_eq!(
            parse_rate("60/m").unwrap().interval(),
            Duration::from_secs(1)
        );
        for bad in ["0/s", "50", "50/d", "x/s"] {
            assert!(parse_rate(bad).is_err(), "{bad} should fail");
        }
    }
}
