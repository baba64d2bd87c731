//! Dedupe markers, packed many to a sled key.
//!
//! A marker says "this (source, event id) or this signature was seen, as
//! gateway event `seq`, at `at_ms`". There is one per accepted event (two
//! when the id is not signed) for the whole `dedupe_window`, so at a million
//! events a key per marker was a third of sled's keys. sled 0.34 keeps
//! per-page state in RAM for every leaf of at most 16 keys, about 33 bytes
//! per key (measured: `Db::open` of 3M keys took ~100 MiB RSS whatever the
//! cache size). So markers live in hash buckets: a key per
//! (source, 16-bit hash prefix), whose value lists `[fingerprint 8][seq 8]
//! [at_ms 8]` entries. 1M markers then take 65,536 keys, not 1M.
//!
//! The fingerprint is 8 more bytes of the same SHA-256 of the marker key, so
//! two different ids collide only with probability ~2⁻⁶⁴ per bucket entry.
//! Expired entries are dropped whenever their bucket is written, and by the
//! housekeeping sweep for buckets nobody writes.

use sha2::{Digest, Sha256};

use super::{keys, StoreError};

/// Bits of hash that pick a bucket: 65,536 buckets per source.
const BUCKET_BYTES: usize = 2;
const ENTRY: usize = 24;

/// Where one marker lives: its bucket key and fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slot {
    /// `d` + source + `\0` + hash prefix.
    pub bucket: Vec<u8>,
    /// The next 8 bytes of the hash.
    pub fingerprint: [u8; 8],
}

impl Slot {
    /// The slot of a marker key ([`keys::dedupe`]: `d` source `\0` kind id).
    pub fn of(marker_key: &[u8]) -> Slot {
        let digest = Sha256::digest(marker_key);
        let source_end = marker_key
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(marker_key.len());
        let mut bucket = Vec::with_capacity(source_end + 1 + BUCKET_BYTES);
        bucket.extend_from_slice(&marker_key[..source_end]);
        bucket.push(0);
        bucket.extend_from_slice(&digest[..BUCKET_BYTES]);
        let mut fingerprint = [0u8; 8];
        fingerprint.copy_from_slice(&digest[BUCKET_BYTES..BUCKET_BYTES + 8]);
        Slot {
            bucket,
            fingerprint,
        }
    }
}

/// One marker in a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Identifies the marker within the bucket.
    pub fingerprint: [u8; 8],
    /// The gateway sequence of the event that set it.
    pub seq: u64,
    /// When it was set (the event's receive time), unix ms.
    pub at_ms: i64,
}

/// The decoded value of one bucket key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Its markers, in insertion order.
    pub entries: Vec<Entry>,
}

impl Bucket {
    /// Reads a bucket (empty when the key is absent).
    pub fn load(tree: &sled::Tree, key: &[u8]) -> Result<Bucket, StoreError> {
        match tree.get(key)? {
            Some(v) => Bucket::decode(&v),
            None => Ok(Bucket::default()),
        }
    }

    /// Decodes a bucket value.
    pub fn decode(v: &[u8]) -> Result<Bucket, StoreError> {
        if !v.len().is_multiple_of(ENTRY) {
            return Err(StoreError::Corrupt("dedupe bucket length".into()));
        }
        let entries = v
            .chunks_exact(ENTRY)
            .map(|c| {
                let mut fingerprint = [0u8; 8];
                fingerprint.copy_from_slice(&c[..8]);
                Ok(Entry {
                    fingerprint,
                    seq: keys::be_u64(&c[8..16])?,
                    at_ms: keys::be_u64(&c[16..24])? as i64,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Bucket { entries })
    }

    /// The value to store.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * ENTRY);
        for e in &self.entries {
            out.extend_from_slice(&e.fingerprint);
            out.extend_from_slice(&e.seq.to_be_bytes());
            out.extend_from_slice(&e.at_ms.to_be_bytes());
        }
        out
    }

    /// The marker with this fingerprint, if any (expired or not).
    pub fn find(&self, fingerprint: &[u8; 8]) -> Option<Entry> {
        self.entries
            .iter()
            .find(|e| &e.fingerprint == fingerprint)
            .copied()
    }

    /// Sets a marker, replacing one with the same fingerprint.
    pub fn upsert(&mut self, fingerprint: [u8; 8], seq: u64, at_ms: i64) {
        let entry = Entry {
            fingerprint,
            seq,
            at_ms,
        };
        match self
            .entries
            .iter_mut()
            .find(|e| e.fingerprint == fingerprint)
        {
            Some(e) => *e = entry,
            None => self.entries.push(entry),
        }
    }

    /// Drops markers older than the window; returns how many.
    pub fn prune(&mut self, now_ms: i64, window_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|e| now_ms.saturating_sub(e.at_ms) < window_ms);
        before - self.entries.len()
    }

    /// Drops the markers of one event; returns how many.
    pub fn remove_seq(&mut self, seq: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| e.seq != seq);
        before - self.entries.len()
    }

    /// Writes the bucket back, removing the key when it is empty.
    pub fn store(&self, tree: &sled::Tree, key: &[u8]) -> Result<(), StoreError> {
        if self.entries.is_empty() {
            tree.remove(key)?;
        } else {
            tree.insert(key, self.encode())?;
        }
        Ok(())
    }
}

/// The marker for `marker_key`, if one is stored (expired or not).
pub fn lookup(tree: &sled::Tree, marker_key: &[u8]) -> Result<Option<Entry>, StoreError> {
    let slot = Slot::of(marker_key);
    Ok(Bucket::load(tree, &slot.bucket)?.find(&slot.fingerprint))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::DedupeKey;

    #[test]
    fn slots_keep_the_source_apart_and_are_stable() {
        let a = keys::dedupe("stripe", &DedupeKey::EventId("evt_1".into()));
        let b = keys::dedupe("github", &DedupeKey::EventId("evt_1".into()));
        let (sa, sb) = (Slot::of(&a), Slot::of(&b));
        assert_eq!(sa, Slot::of(&a));
        assert!(sa.bucket.starts_with(b"dstripe\0"));
        assert!(sb.bucket.starts_with(b"dgithub\0"));
        assert_eq!(sa.bucket.len(), b"dstripe\0".len() + BUCKET_BYTES);
        assert_ne!(sa.fingerprint, sb.fingerprint);
    }

    #[test]
    fn buckets_round_trip_upsert_prune_and_reject_garbage() {
        let mut b = Bucket::default();
        b.upsert([1; 8], 10, 1_000);
        b.upsert([2; 8], 11, 5_000);
        b.upsert([1; 8], 12, 6_000);
        assert_eq!(b.entries.len(), 2);
        assert_eq!(b.find(&[1; 8]).unwrap().seq, 12);
        let back = Bucket::decode(&b.encode()).unwrap();
        assert_eq!(back, b);
        // Window 2 s at t = 7 s: the 5 s marker is expired, the 6 s one not.
        assert_eq!(b.prune(7_000, 2_000), 1);
        assert_eq!(b.entries.len(), 1);
        assert_eq!(b.remove_seq(12), 1);
        assert!(b.entries.is_empty());
        assert!(Bucket::decode(&[0; 23]).is_err());
    }

    #[test]
    fn many_markers_share_few_keys() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        // 20,000 markers over 65,536 buckets land in ~17,250 keys.
        for n in 0..20_000u64 {
            let key = keys::dedupe("s", &DedupeKey::EventId(format!("evt_{n}")));
            let slot = Slot::of(&key);
            let mut bucket = Bucket::load(&tree, &slot.bucket).unwrap();
            bucket.upsert(slot.fingerprint, n, 0);
            bucket.store(&tree, &slot.bucket).unwrap();
        }
        for n in [0u64, 1_234, 19_999] {
            let key = keys::dedupe("s", &DedupeKey::EventId(format!("evt_{n}")));
            assert_eq!(lookup(&tree, &key).unwrap().unwrap().seq, n);
        }
        let missing = keys::dedupe("s", &DedupeKey::EventId("evt_x".into()));
        assert!(lookup(&tree, &missing).unwrap().is_none());
        let keys_used = tree.len();
        assert!(keys_used < 18_000, "{keys_used} keys for 20,000 markers");
    }
}
