//! Where a value lives in a request: a header or a JSON pointer into the body.
//!
//! Event ids, entity keys and provider times are configured the same way
//! (`"/data/object/id"` or `"header:X-Acme-Delivery"`), so one type parses and
//! extracts all of them.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

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

    /// The header's trimmed text, `None` when absent, empty or not text.
    fn header_text(name: &HeaderName, headers: &HeaderMap) -> Option<String> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }
}

/// Several fields of a request, prepared once (per source) and then read
/// from each request in one pass over its body.
///
/// Each comes out as a string: header text, or a JSON string/number/bool
/// rendered without quotes; `None` when absent, empty, not text, or an
/// object/array (those make poor ids), and for every pointer when the body
/// is not valid JSON. Only the values the pointers name are built: building
/// a whole `serde_json::Value` for a 1 KiB event allocated every key and
/// string and was most of the guard's CPU on the ingest path. The result is
/// what `Value::pointer` gives on the parsed body, duplicate keys included
/// (the last one wins).
#[derive(Debug, Clone)]
pub struct FieldSet<const N: usize> {
    /// The header of each slot that is one.
    headers: [Option<HeaderName>; N],
    /// The pointers, as a trie naming their slots.
    pointers: Node,
}

impl<const N: usize> FieldSet<N> {
    /// Prepares `fields` (a `None` slot always reads `None`).
    pub fn new(fields: [Option<&FieldRef>; N]) -> FieldSet<N> {
        let mut pointers = Node::default();
        let headers = std::array::from_fn(|slot| match fields[slot] {
            Some(FieldRef::Header(name)) => Some(name.clone()),
            Some(FieldRef::Pointer(ptr)) => {
                pointers.add(ptr, slot);
                None
            }
            None => None,
        });
        FieldSet { headers, pointers }
    }

    /// Reads every field from one request.
    pub fn extract(&self, headers: &HeaderMap, body: &[u8]) -> [Option<String>; N] {
        let mut out: [Option<String>; N] = std::array::from_fn(|slot| {
            self.headers[slot]
                .as_ref()
                .and_then(|name| FieldRef::header_text(name, headers))
        });
        if self.pointers.is_empty() {
            return out;
        }
        let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
        let mut reader = serde_json::Deserializer::from_slice(body);
        let parsed = Seek {
            node: &self.pointers,
            out: &mut found,
        }
        .deserialize(&mut reader)
        .and_then(|()| reader.end());
        if parsed.is_ok() {
            for (slot, value) in found.into_iter().enumerate() {
                if value.is_some() {
                    out[slot] = value;
                }
            }
        }
        out
    }
}

/// The pointers being looked for, as a trie of reference tokens.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Result slots of the pointers that end here.
    slots: Vec<usize>,
    /// (unescaped token, subtree) per next token.
    children: Vec<(String, Node)>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.children.is_empty()
    }

    /// Adds an RFC 6901 pointer (`/a/b~1c` = keys `a`, `b/c`).
    fn add(&mut self, pointer: &str, slot: usize) {
        let mut node = self;
        for raw in pointer.split('/').skip(1) {
            let token = raw.replace("~1", "/").replace("~0", "~");
            let at = match node.children.iter().position(|(t, _)| *t == token) {
                Some(at) => at,
                None => {
                    node.children.push((token, Node::default()));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[at].1;
        }
        node.slots.push(slot);
    }

    /// Forgets what an earlier value under this node set: with duplicate
    /// keys the last value replaces the whole subtree, as in a `Value`.
    fn clear(&self, out: &mut [Option<String>]) {
        for &slot in &self.slots {
            out[slot] = None;
        }
        for (_, child) in &self.children {
            child.clear(out);
        }
    }

    fn child_for_key(&self, key: &str) -> Option<&Node> {
        self.children
            .iter()
            .find(|(token, _)| token == key)
            .map(|(_, n)| n)
    }

    /// Array index tokens as `Value::pointer` reads them: digits, no
    /// leading zero.
    fn child_for_index(&self, index: usize) -> Option<&Node> {
        self.children
            .iter()
            .find(|(token, _)| {
                (token == "0" || !token.starts_with('0'))
                    && token.bytes().all(|b| b.is_ascii_digit())
                    && token.parse::<usize>().ok() == Some(index)
            })
            .map(|(_, n)| n)
    }
}

/// Walks one JSON value, descending only where a wanted pointer goes and
/// skipping everything else without building it.
struct Seek<'a> {
    node: &'a Node,
    out: &'a mut [Option<String>],
}

impl Seek<'_> {
    /// Renders the value only if a pointer ends here.
    fn found(self, text: impl FnOnce() -> String) {
        if let Some((&last, rest)) = self.node.slots.split_last() {
            let text = text();
            for &slot in rest {
                self.out[slot] = Some(text.clone());
            }
            self.out[last] = Some(text);
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.node.clear(self.out);
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.found(|| v.to_string());
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.found(|| v.to_string());
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.found(|| v.to_string());
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        if let Some(n) = serde_json::Number::from_f64(v) {
            self.found(|| n.to_string());
        }
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        if !v.is_empty() && !self.node.slots.is_empty() {
            self.found(|| v.to_string());
        }
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match self.node.child_for_key(&key.0) {
                Some(node) => map.next_value_seed(Seek {
                    node,
                    out: &mut *self.out,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let more = match self.node.child_for_index(index) {
                Some(node) => seq
                    .next_element_seed(Seek {
                        node,
                        out: &mut *self.out,
                    })?
                    .is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }
}

/// An object key, borrowed from the body unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
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
    use serde_json::Value;

    fn one(field: &str, headers: &HeaderMap, body: &str) -> Option<String> {
        let f = FieldRef::parse(field).unwrap();
        let [v] = FieldSet::new([Some(&f)]).extract(headers, body.as_bytes());
        v
    }

    #[test]
    fn parses_and_extracts_both_kinds() {
        let mut headers = HeaderMap::new();
        headers.insert("x-acme-delivery", "d-1".parse().unwrap());
        let body = r#"{"data": {"object": {"id": "cus_1", "n": 7}}}"#;
        assert_eq!(
            one("header:X-Acme-Delivery", &headers, body).as_deref(),
            Some("d-1")
        );
        assert_eq!(
            one("/data/object/id", &headers, body).as_deref(),
            Some("cus_1")
        );
        assert_eq!(one("/data/object/n", &headers, body).as_deref(), Some("7"));
        assert_eq!(one("/missing", &headers, body), None);
        assert!(FieldRef::parse("data.id").is_err());
        assert!(FieldRef::parse("header:bad name").is_err());
    }

    /// The single-pass reader must agree with `serde_json::Value::pointer`
    /// (what the guard used before) on every document and pointer here.
    #[test]
    fn agrees_with_value_pointer() {
        let docs = [
            r#"{"id":"evt_1","created":1700000000,"data":{"object":{"id":"cus_9","customer":"c"}}}"#,
            r#"{"a":{"b":1},"a":{"c":2}}"#,
            r#"{"a":"first","a":"second"}"#,
            r#"{"a":{"b":"x"},"a":3}"#,
            r#"{"list":[{"id":"zero"},{"id":"one"},[10,11]],"e":""}"#,
            r#"{"we/ird":"slash","ti~lde":"tilde","":"empty key","escaped":"k"}"#,
            r#"{"f":1.5,"g":-3,"h":true,"i":null,"j":1e300}"#,
            r#"{"big":18446744073709551615,"neg":-9223372036854775808,"exp":2.5e-3}"#,
            r#"[{"id":"top array"}]"#,
            r#""just a string""#,
            r#"{"unterminated": "#,
            r#"{"id":"x"} trailing"#,
            "not json at all",
            "",
        ];
        let pointers = [
            "/id",
            "/created",
            "/data/object/id",
            "/data/object",
            "/a",
            "/a/b",
            "/a/c",
            "/list/0/id",
            "/list/1/id",
            "/list/2/1",
            "/list/01/id",
            "/list/+1/id",
            "/e",
            "/we~1ird",
            "/ti~0lde",
            "/",
            "/escaped",
            "/f",
            "/g",
            "/h",
            "/i",
            "/j",
            "/big",
            "/neg",
            "/exp",
            "/0/id",
            "/missing/deeper",
        ];
        let headers = HeaderMap::new();
        for doc in docs {
            let value: Option<Value> = serde_json::from_slice(doc.as_bytes()).ok();
            for ptr in pointers {
                let expected = value.as_ref().and_then(|v| match v.pointer(ptr)? {
                    Value::String(s) if !s.is_empty() => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                });
                assert_eq!(one(ptr, &headers, doc), expected, "{ptr} in {doc}");
            }
        }
    }

    /// One difference, on purpose: a number too large for an `f64` that no
    /// pointer names is skipped, where `Value` refused the whole body.
    #[test]
    fn out_of_range_numbers_elsewhere_do_not_hide_the_id() {
        let body = r#"{"id":"evt_1","huge":1e400}"#;
        assert!(serde_json::from_str::<Value>(body).is_err());
        assert_eq!(
            one("/id", &HeaderMap::new(), body).as_deref(),
            Some("evt_1")
        );
        assert_eq!(one("/huge", &HeaderMap::new(), body), None);
    }

    #[test]
    fn several_fields_share_one_pass() {
        let headers = HeaderMap::new();
        let fields = [
            FieldRef::parse("/id").unwrap(),
            FieldRef::parse("/data/object/id").unwrap(),
            FieldRef::parse("/data/object/id").unwrap(),
        ];
        let body = br#"{"data":{"object":{"id":"cus_1"}},"id":"evt_1"}"#;
        let got = FieldSet::new([Some(&fields[0]), None, Some(&fields[1]), Some(&fields[2])])
            .extract(&headers, body);
        assert_eq!(
            got,
            [
                Some("evt_1".to_string()),
                None,
                Some("cus_1".to_string()),
                Some("cus_1".to_string())
            ]
        );
    }
}
