//! Key layout of the store's tree, in one place. See the table in the
//! store's module doc.

use super::{DedupeKey, Seq, StoreError};

/// Prefix of event records.
pub const EVENT: u8 = b'e';
/// Prefix of dedupe markers.
pub const DEDUPE: u8 = b'd';
/// Prefix of pending deliveries.
pub const PENDING: u8 = b'p';
/// Prefix of delivery attempt records.
pub const ATTEMPT: u8 = b'a';
/// Prefix of delivered markers.
pub const DELIVERED: u8 = b'o';
/// Prefix of dead letters.
pub const DEAD: u8 = b'x';
/// Prefix of per-lane delivered provider-time marks.
pub const LANE_MARK: u8 = b'w';
/// Key of the flush watermark: the highest sequence known complete on disk
/// (recovery checks only the events after it) and the record bytes of the
/// events up to it, in one value so one insert moves both.
pub const META_WATERMARK: &[u8] = b"\x00mwatermark";
/// Pending deliveries per destination (JSON), written by a clean close and
/// removed at open.
pub const META_PENDING_COUNTS: &[u8] = b"\x00mpending_counts";
/// Older builds' keys, read when [`META_WATERMARK`] is absent.
pub const LEGACY_NEXT_SEQ: &[u8] = b"\x00mnext_seq";
/// See [`LEGACY_NEXT_SEQ`].
pub const LEGACY_INDEXED_THROUGH: &[u8] = b"\x00mindexed_through";

/// Value of [`META_WATERMARK`]: sequence, then bytes (both BE).
pub fn encode_watermark(seq: u64, bytes: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&seq.to_be_bytes());
    v[8..].copy_from_slice(&bytes.to_be_bytes());
    v
}

/// Reads [`encode_watermark`] output.
pub fn decode_watermark(v: &[u8]) -> Result<(u64, u64), StoreError> {
    if v.len() != 16 {
        return Err(StoreError::Corrupt("watermark".into()));
    }
    Ok((be_u64(&v[..8])?, be_u64(&v[8..])?))
}

/// `e` + seq (BE).
pub fn event(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = EVENT;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Reads the sequence out of an event key.
pub fn seq_from_event_key(key: &[u8]) -> Result<Seq, StoreError> {
    match key.split_first() {
        Some((&EVENT, rest)) => be_u64(rest).map(Seq),
        _ => Err(StoreError::Corrupt("event key".into())),
    }
}

/// `d` + source + `\0` + kind + value.
pub fn dedupe(source: &str, key: &DedupeKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + source.len() + 40);
    k.push(DEDUPE);
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    match key {
        DedupeKey::EventId(id) => {
            k.push(b'i');
            k.extend_from_slice(id.as_bytes());
        }
        DedupeKey::Replay(digest) => {
            k.push(b'r');
            k.extend_from_slice(digest);
        }
    }
    k
}

/// `p` + destination + `\0` + seq (BE): one destination's queue in order.
pub fn pending(destination: &str, seq: u64) -> Vec<u8> {
    let mut k = pending_prefix(destination);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `p` + destination + `\0`.
pub fn pending_prefix(destination: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(destination.len() + 10);
    k.push(PENDING);
    k.extend_from_slice(destination.as_bytes());
    k.push(0);
    k
}

/// Reads the sequence off the end of a pending key.
pub fn seq_from_pending_key(key: &[u8]) -> Result<Seq, StoreError> {
    if key.len() < 9 {
        return Err(StoreError::Corrupt("pending key".into()));
    }
    be_u64(&key[key.len() - 8..]).map(Seq)
}

/// Reads the destination out of a pending key (`p` destination `\0` seq).
pub fn destination_from_pending_key(key: &[u8]) -> Result<&str, StoreError> {
    key.get(1..key.len().saturating_sub(9))
        .and_then(|d| std::str::from_utf8(d).ok())
        .ok_or_else(|| StoreError::Corrupt("pending key".into()))
}

/// Big-endian u32 from exactly 4 bytes.
pub fn be_u32(b: &[u8]) -> Result<u32, StoreError> {
    let arr: [u8; 4] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt("expected 4 bytes".into()))?;
    Ok(u32::from_be_bytes(arr))
}

/// Big-endian u64 from exactly 8 bytes.
pub fn be_u64(b: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt("expected 8 bytes".into()))?;
    Ok(u64::from_be_bytes(arr))
}
