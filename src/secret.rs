//! Secrets as a type that cannot leak by accident.
//!
//! Every signing secret and admin token passes through [`Secret`]: its `Debug`
//! and `Display` print `***`, so a secret can sit inside any config or error
//! struct that is logged without ever reaching a log line.

use std::fmt;

/// A secret value (signing secret, token). Redacted in `Debug`/`Display` so
/// that logging a config or an error can never print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps an already-resolved secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret's text. Callers use it only to derive key bytes or to
    /// compare in constant time, never to print.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("whsec_supersecret");
        assert!(!format!("{s:?}").contains("supersecret"));
        assert!(!format!("{s}").contains("supersecret"));
        assert_eq!(s.expose(), "whsec_supersecret");
    }
}
