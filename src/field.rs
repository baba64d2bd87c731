//! Where a value lives in a request: a header or a JSON pointer into the body.
//!
//! Event ids, entity keys and provider times are configured the same way
//! (`"/data/object/id"` or `"header:X-Acme-Delivery"`), so one type parses and
//! extracts all of them.

use http::{HeaderMap, HeaderName};
use serde_json::Value;

/// A reference to a value in an incoming request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldRef {
    /// A request header (case-insensitive, as on the wire).
    Header(HeaderName),
    /// An RFC 6901 JSON pointer into the body (which must then be JSON).
    Pointer(String),
}

impl FieldRef {
    /// Parses `header:NAME` or a JSON pointer starting with `/`.
    pub fn parse(text: &str) -> Result<FieldRef, String> {
        if let Some(name) = text.strip_prefix("header:") {
            let name = name.trim();
            HeaderName::from_bytes(name.as_bytes())
                .map(FieldRef::Header)
                .map_err(|_| format!("`{name}` is not a valid header name"))
        } else if text.starts_with('/') {
            Ok(FieldRef::Pointer(text.to_string()))
        } else {
            Err(format!(
                "`{text}` is neither a JSON pointer (starting with `/`) nor `header:NAME`"
            ))
        }
    }

    /// True when extracting needs the body parsed as JSON.
    pub fn needs_json(&self) -> bool {
        matches!(self, FieldRef::Pointer(_))
    }

    /// Extracts the value as a string: header text, or a JSON string/number/bool
    /// rendered without quotes. `None` when absent, empty, not text, or an
    /// object/array (those make poor ids).
    pub fn extract(&self, headers: &HeaderMap, json: Option<&Value>) -> Option<String> {
        match self {
            FieldRef::Header(name) => headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            FieldRef::Pointer(ptr) => match json?.pointer(ptr)? {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            },
        }
    }
}

impl std::fmt::Display for FieldRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldRef::Header(h) => write!(f, "header:{h}"),
            FieldRef::Pointer(p) => f.write_str(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_extracts_both_kinds() {
        let mut headers = HeaderMap::new();
        headers.insert("x-acme-delivery", "d-1".parse().unwrap());
        let json: Value = serde_json::json!({"data": {"object": {"id": "cus_1", "n": 7}}});
        let h = FieldRef::parse("header:X-Acme-Delivery").unwrap();
        assert_eq!(h.extract(&headers, None).as_deref(), Some("d-1"));
        let p = FieldRef::parse("/data/object/id").unwrap();
        assert_eq!(p.extract(&headers, Some(&json)).as_deref(), Some("cus_1"));
        let n = FieldRef::parse("/data/object/n").unwrap();
        assert_eq!(n.extract(&headers, Some(&json)).as_deref(), Some("7"));
        assert_eq!(
            FieldRef::parse("/missing")
                .unwrap()
                .extract(&headers, Some(&json)),
            None
        );
        assert!(FieldRef::parse("data.id").is_err());
        assert!(FieldRef::parse("header:bad name").is_err());
    }
}
