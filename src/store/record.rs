//! The on-disk format of one stored event.
//!
//! `[FORMAT_VERSION: u8][meta_len: u32 BE][meta: JSON][body: raw bytes]`.
//! The body is kept outside the JSON so it is stored byte for byte, with no
//! escaping cost and no charset assumptions; the version byte lets a future
//! format be read beside this one.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// Format of event records written by this build.
pub const FORMAT_VERSION: u8 = 1;

/// Everything about an event except its body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventMeta {
    /// Source name the event arrived on.
    pub source: String,
    /// The provider's event id, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_event_id: Option<String>,
    /// Entity key from the source's `entity` pointer; same key => ordered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// When the gateway received it, unix ms.
    pub received_at_ms: i64,
    /// The provider's own event time, unix ms, when known (used for ordering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_time_ms: Option<i64>,
    /// The request's `Content-Type`, forwarded as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Request headers worth keeping for audit (never secrets-bearing ones).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Destinations this event is routed to.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// Not deliverable before this time, unix ms (the reorder window's hold).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub release_at_ms: i64,
    /// Lane sort key when the source restores provider order; `None` keeps
    /// arrival (sequence) order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_ms: Option<i64>,
    /// The dedupe marker keys written after this record (hex), so recovery
    /// can finish an append that a crash interrupted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub markers: Vec<String>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Encodes meta and body into one record.
pub fn encode(meta: &EventMeta, body: &[u8]) -> Result<Vec<u8>, StoreError> {
    let meta_json = serde_json::to_vec(meta).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let meta_len = u32::try_from(meta_json.len())
        .map_err(|_| StoreError::Corrupt("event metadata too large".into()))?;
    let mut out = Vec::with_capacity(5 + meta_json.len() + body.len());
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&meta_len.to_be_bytes());
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(body);
    Ok(out)
}

/// Decodes a record; `Corrupt` for anything this build cannot read.
pub fn decode(bytes: &[u8]) -> Result<(EventMeta, Bytes), StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("event record: {why}"));
    let (&version, rest) = bytes.split_first().ok_or_else(|| corrupt("empty"))?;
    if version != FORMAT_VERSION {
        return Err(corrupt(&format!("unknown format version {version}")));
    }
    if rest.len() < 4 {
        return Err(corrupt("truncated header"));
    }
    let (len_bytes, rest) = rest.split_at(4);
    let mut len = [0u8; 4];
    len.copy_from_slice(len_bytes);
    let meta_len = u32::from_be_bytes(len) as usize;
    if rest.len() < meta_len {
        return Err(corrupt("truncated metadata"));
    }
    let (meta_json, body) = rest.split_at(meta_len);
    let meta = serde_json::from_slice(meta_json).map_err(|e| corrupt(&e.to_string()))?;
    Ok((meta, Bytes::copy_from_slice(body)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn meta() -> EventMeta {
        EventMeta {
            source: "stripe".into(),
            provider_event_id: Some("evt_1".into()),
            entity: Some("cus_1".into()),
            received_at_ms: 1_700_000_000_000,
            provider_time_ms: None,
            content_type: Some("application/json".into()),
            headers: vec![("x-a".into(), "b".into())],
            destinations: vec!["billing".into()],
            release_at_ms: 5,
            order_ms: Some(7),
            markers: vec!["6400".into()],
        }
    }

    #[test]
    fn round_trips_any_body_bytes() {
        for body in [
            &b""[..],
            b"{}",
            &[0xff, 0x00, 0xfe][..],
            &vec![7u8; 100_000],
        ] {
            let enc = encode(&meta(), body).unwrap();
            let (m, b) = decode(&enc).unwrap();
            assert_eq!(m, meta());
            assert_eq!(&b[..], body);
        }
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        let good = encode(&meta(), b"x").unwrap();
        for cut in 0..good.len().min(40) {
            let _ = decode(&good[..cut]);
        }
        assert!(decode(&[2, 0, 0, 0, 0]).is_err());
        assert!(decode(&[1, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[]).is_err());
    }
}
