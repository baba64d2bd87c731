//! The event log: encoded event records ([`super::record`]) appended to
//! segment files beside sled, with sled keeping only a small locator per
//! event (`e` seq → segment, offset, length, CRC-32).
//!
//! Why not keep the records in sled: sled 0.34 rewrites a whole leaf on every
//! insert, so with 1 KiB values it wrote 9–12 KiB to disk and spent most of
//! the ingest CPU per event (measured, `bench/RESULTS.md`). A record written
//! once to an append-only file costs one `write(2)`; sled's leaves stay small.
//!
//! The log is the write-ahead log of the store: an event is acknowledged once
//! its segment is `fdatasync`ed, and sled (locator, markers, pending entry)
//! is flushed later. Each record is framed (`[seq u64][len u32][crc u32]`,
//! big-endian, CRC-32 over seq, len and record), so recovery can read the
//! log from the last sled watermark and re-index what sled lost
//! ([`SegmentLog::scan`]).
//!
//! Crash rules (see the store's durability contract):
//! - a record is written to its segment before its locator goes into sled,
//!   so after `kill -9` every locator sled recovers points at bytes the
//!   kernel already has, and every record sled lost is re-indexed;
//! - after power loss sled may hold a locator whose bytes did not reach the
//!   disk (sled writes in the background too). Such an event was never
//!   acknowledged; recovery finds it by its CRC and removes it with
//!   everything that refers to it ([`super::Store::open`]).
//!
//! A segment is named after the first sequence written to it, so segment
//! `n` holds sequences from `n` up to the next segment's name. Every open
//! starts a new segment (the previous tail may end in a torn write), and a
//! segment is deleted once sled holds no locator in its sequence range
//! (retention removed all its events): space comes back a segment at a time.
//!
//! Segments are zero-filled ahead of use when possible: once the active
//! segment is a quarter full, a background thread writes a *spare* file of
//! zeros (`spare`, fsynced, renamed into place when complete), and the next
//! segment is that file renamed. Why: an `fdatasync` after writing inside a
//! file's existing, written blocks does not change its size or extents, so
//! ext4 skips the journal commit that every `fdatasync` of a growing file
//! pays; here that measured ~210 µs against ~300–410 µs (p50, 18 KiB
//! writes, `bench/RESULTS.md`), on the flusher's path of every group. A
//! zeroed tail reads as a frame that fails its CRC, so a scan ends there as
//! at any torn tail. Cost: each segment file is full size from its start
//! (plus one spare), and the log is written twice (zeros, then records),
//! off the request path. Without a ready spare (the first segment after an
//! open, or a spare that is not finished) a segment grows as before.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use super::{keys, StoreError};

/// Name of the directory (inside `storage.path`) holding the segments.
pub const DIR: &str = "segments";

/// Segment size at which the log rolls to a new file. Large enough that
/// rolling (one directory fsync) is rare, small enough that retention gives
/// space back in useful steps.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// A frame claiming more than this is garbage, not a record (bodies are
/// bounded by `server.max_body`, far below).
const MAX_RECORD: u64 = 1 << 30;

/// Version byte that starts a locator value. Records stored inline by older
/// builds start with [`super::record::FORMAT_VERSION`] (1) and stay readable.
const LOCATOR_VERSION: u8 = 2;
const LOCATOR_LEN: usize = 1 + 8 + 8 + 4 + 4;
/// Frame header before each record: seq, len, CRC.
const FRAME_HEADER: usize = 8 + 4 + 4;

/// Where one record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locator {
    /// Segment name (its first sequence).
    pub segment: u64,
    /// Byte offset inside the segment.
    pub offset: u64,
    /// Record length in bytes.
    pub len: u32,
    /// The record's frame CRC (the one in its header, see [`FrameHeader`]),
    /// checked on every read.
    pub crc: u32,
}

impl Locator {
    /// The sled value for this locator.
    pub fn encode(&self) -> [u8; LOCATOR_LEN] {
        let mut out = [0u8; LOCATOR_LEN];
        out[0] = LOCATOR_VERSION;
        out[1..9].copy_from_slice(&self.segment.to_be_bytes());
        out[9..17].copy_from_slice(&self.offset.to_be_bytes());
        out[17..21].copy_from_slice(&self.len.to_be_bytes());
        out[21..25].copy_from_slice(&self.crc.to_be_bytes());
        out
    }

    /// Reads a locator value; `None` when the value is an inline record.
    pub fn decode(value: &[u8]) -> Result<Option<Locator>, StoreError> {
        match value.first() {
            Some(&LOCATOR_VERSION) if value.len() == LOCATOR_LEN => Ok(Some(Locator {
                segment: keys::be_u64(&value[1..9])?,
                offset: keys::be_u64(&value[9..17])?,
                len: keys::be_u32(&value[17..21])?,
                crc: keys::be_u32(&value[21..25])?,
            })),
            Some(&LOCATOR_VERSION) => Err(StoreError::Corrupt("event locator length".into())),
            _ => Ok(None),
        }
    }
}

/// The segment being appended to. Owned by the store's write state, so
/// appends are already serialised.
pub struct ActiveSegment {
    id: u64,
    file: Arc<File>,
    len: u64,
    /// Segments closed since the flusher last ran: they still need a sync.
    rolled: Vec<Arc<File>>,
    /// A spare for the next segment was asked for.
    spare_requested: bool,
}

impl ActiveSegment {
    /// Appends `record` (assigned sequence `seq`), rolling to a new segment
    /// first when this one is full. The bytes reach the kernel before this
    /// returns; they reach the disk at the next [`ActiveSegment::to_sync`]
    /// flush.
    pub fn append(
        &mut self,
        log: &SegmentLog,
        seq: u64,
        record: &[u8],
    ) -> Result<Locator, StoreError> {
        if self.len > 0 && self.len + record.len() as u64 > log.segment_bytes {
            let next = log.create(seq)?;
            let old = std::mem::replace(self, next);
            self.rolled = old.rolled;
            self.rolled.push(old.file);
        }
        let header = FrameHeader::new(seq, record)?;
        let mut frame = Vec::with_capacity(FRAME_HEADER + record.len());
        frame.extend_from_slice(&header.encode());
        frame.extend_from_slice(record);
        (&*self.file).write_all(&frame)?;
        let locator = header.locator(self.id, self.len);
        self.len += frame.len() as u64;
        if !self.spare_requested && self.len >= log.segment_bytes / 4 {
            self.spare_requested = true;
            log.prepare_spare();
        }
        Ok(locator)
    }

    /// Files the next flush must `fdatasync`: segments rolled since the last
    /// call, then the active one.
    pub fn to_sync(&mut self) -> Vec<Arc<File>> {
        let mut files = std::mem::take(&mut self.rolled);
        files.push(self.file.clone());
        files
    }

    /// Name of the segment being written.
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// The header before each record in a segment. Its CRC covers the sequence
/// and length too, so a torn or stale header is not taken for a record; the
/// locator carries the same CRC, so a read checks the record once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHeader {
    seq: u64,
    len: u32,
    crc: u32,
}

impl FrameHeader {
    fn new(seq: u64, record: &[u8]) -> Result<FrameHeader, StoreError> {
        let len = u32::try_from(record.len())
            .map_err(|_| StoreError::Corrupt("event record too large".into()))?;
        Ok(FrameHeader {
            seq,
            len,
            crc: frame_crc(seq, len, record),
        })
    }

    fn encode(&self) -> [u8; FRAME_HEADER] {
        let mut out = [0u8; FRAME_HEADER];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..12].copy_from_slice(&self.len.to_be_bytes());
        out[12..].copy_from_slice(&self.crc.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<FrameHeader, StoreError> {
        let field = |r: std::ops::Range<usize>| {
            bytes
                .get(r)
                .ok_or_else(|| StoreError::Corrupt("short frame header".into()))
        };
        Ok(FrameHeader {
            seq: keys::be_u64(field(0..8)?)?,
            len: keys::be_u32(field(8..12)?)?,
            crc: keys::be_u32(field(12..16)?)?,
        })
    }

    /// True when `record` is the one this header was written for.
    fn matches(&self, record: &[u8]) -> bool {
        frame_crc(self.seq, self.len, record) == self.crc
    }

    /// The locator of this frame's record, the frame starting at
    /// `frame_offset` of segment `segment`.
    fn locator(&self, segment: u64, frame_offset: u64) -> Locator {
        Locator {
            segment,
            offset: frame_offset + FRAME_HEADER as u64,
            len: self.len,
            crc: self.crc,
        }
    }
}

/// Writes `bytes` of zeros to the spare's part file, makes them durable and
/// renames the file to [`SPARE`]. Syncs every 1 MiB so the writeback comes
/// in steps instead of one burst in front of the log's own `fdatasync`.
///
/// The zeros go in page-sized writes on purpose: the page cache keeps a
/// file's pages in folios as large as the writes that made them, and a
/// record written later into a 1 MiB folio dirties all of it, so every
/// `fdatasync` wrote 1 MiB back (measured with `/proc/self/io`: 1.5 MB of
/// records cost 54 MB of writeback after 1 MiB zero writes, 1.7 MB after
/// 4 KiB ones, the same as a growing file).
fn write_spare(dir: &Path, bytes: u64) -> std::io::Result<()> {
    if dir.join(SPARE).exists() {
        return Ok(());
    }
    const CHUNK: usize = 4096;
    const SYNC_EVERY: u64 = 1 << 20;
    let part = dir.join(SPARE_PART);
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&part)?;
    let zeros = vec![0u8; CHUNK];
    let mut written = 0u64;
    while written < bytes {
        let n = usize::try_from(bytes - written).map_or(CHUNK, |left| left.min(CHUNK));
        file.write_all(&zeros[..n])?;
        written += n as u64;
        if written.is_multiple_of(SYNC_EVERY) {
            file.sync_data()?;
        }
    }
    file.sync_data()?;
    std::fs::rename(&part, dir.join(SPARE))?;
    super::sync_dir(dir)
}

fn frame_crc(seq: u64, len: u32, record: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_be_bytes());
    h.update(&len.to_be_bytes());
    h.update(record);
    h.finalize()
}

/// The frame reader behind [`SegmentLog::scan`], over any byte stream (so
/// the fuzzer can feed it bytes without files). A frame claiming more than
/// `max_record` bytes ends the scan like a bad CRC does.
pub fn scan_frames(
    segment: u64,
    mut reader: impl std::io::Read,
    max_record: u64,
    mut each: impl FnMut(u64, Locator, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut offset = 0u64;
    let mut header = [0u8; FRAME_HEADER];
    let mut record = Vec::new();
    loop {
        if reader.read_exact(&mut header).is_err() {
            return Ok(());
        }
        let frame = FrameHeader::decode(&header)?;
        if u64::from(frame.len) > max_record {
            return Ok(());
        }
        record.resize(frame.len as usize, 0);
        if reader.read_exact(&mut record).is_err() || !frame.matches(&record) {
            return Ok(());
        }
        each(frame.seq, frame.locator(segment, offset), &record)?;
        offset += (FRAME_HEADER + record.len()) as u64;
    }
}

/// Name of the zero-filled file the next segment is made from.
const SPARE: &str = "spare";
/// The spare while it is being written (renamed to [`SPARE`] when complete,
/// so a spare is never taken half-written).
const SPARE_PART: &str = "spare.part";

/// The segment directory: creates, reads and deletes segment files.
pub struct SegmentLog {
    dir: PathBuf,
    segment_bytes: u64,
    /// Read handles, opened on first use.
    readers: RwLock<BTreeMap<u64, Arc<File>>>,
    /// Set while a thread writes the spare, so only one does.
    preparing_spare: Arc<std::sync::atomic::AtomicBool>,
}

impl SegmentLog {
    /// Opens the directory (creating it) under the store path.
    pub fn open(store_path: &Path, segment_bytes: u64) -> Result<SegmentLog, StoreError> {
        let dir = store_path.join(DIR);
        std::fs::create_dir_all(&dir)?;
        super::sync_dir(store_path)?;
        Ok(SegmentLog {
            dir,
            segment_bytes: segment_bytes.max(1),
            readers: RwLock::new(BTreeMap::new()),
            preparing_spare: Arc::default(),
        })
    }

    fn path_of(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    /// Starts a new, empty segment whose first sequence is `first_seq`: the
    /// zero-filled spare renamed, when one is ready, else a new file.
    ///
    /// A file of that name can only exist if a previous run started it and
    /// no event of it reached sled (the next sequence never moved past it),
    /// so its bytes are unreferenced and it is replaced or truncated.
    pub fn create(&self, first_seq: u64) -> Result<ActiveSegment, StoreError> {
        let path = self.path_of(first_seq);
        let file = match std::fs::rename(self.dir.join(SPARE), &path) {
            Ok(()) => OpenOptions::new().write(true).open(&path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)?,
            Err(e) => return Err(e.into()),
        };
        super::sync_dir(&self.dir)?;
        if let Ok(mut readers) = self.readers.write() {
            readers.remove(&first_seq);
        }
        Ok(ActiveSegment {
            id: first_seq,
            file: Arc::new(file),
            len: 0,
            rolled: Vec::new(),
            spare_requested: false,
        })
    }

    /// Starts writing the spare on a background thread unless one is ready
    /// or being written. A failure only costs the speed-up: it is logged.
    fn prepare_spare(&self) {
        if self.preparing_spare.swap(true, Ordering::SeqCst) {
            return;
        }
        let dir = self.dir.clone();
        let bytes = self.segment_bytes;
        let flag = self.preparing_spare.clone();
        let spawned = std::thread::Builder::new()
            .name("hookgate-spare".into())
            .spawn(move || {
                if let Err(e) = write_spare(&dir, bytes) {
                    tracing::warn!(error = %e, "could not prepare a zero-filled segment; the next one grows as it is written");
                    let _ = std::fs::remove_file(dir.join(SPARE_PART));
                }
                flag.store(false, Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.preparing_spare.store(false, Ordering::SeqCst);
        }
    }

    fn reader(&self, id: u64) -> Result<Arc<File>, StoreError> {
        if let Some(f) = self.readers.read().ok().and_then(|r| r.get(&id).cloned()) {
            return Ok(f);
        }
        let file = Arc::new(File::open(self.path_of(id)).map_err(|e| {
            StoreError::Corrupt(format!(
                "segment {id} of a stored event cannot be opened: {e}"
            ))
        })?);
        if let Ok(mut readers) = self.readers.write() {
            readers.insert(id, file.clone());
        }
        Ok(file)
    }

    /// Reads the record a locator points at, with its frame header, and
    /// checks that the header is the locator's and the CRC holds.
    pub fn read(&self, at: &Locator) -> Result<Vec<u8>, StoreError> {
        let corrupt = |why: &str| {
            StoreError::Corrupt(format!(
                "segment {} offset {}: {why}",
                at.segment, at.offset
            ))
        };
        let start = at
            .offset
            .checked_sub(FRAME_HEADER as u64)
            .ok_or_else(|| corrupt("no room for a frame header"))?;
        let mut buf = vec![0u8; FRAME_HEADER + at.len as usize];
        self.reader(at.segment)?
            .read_exact_at(&mut buf, start)
            .map_err(|e| corrupt(&e.to_string()))?;
        let header = FrameHeader::decode(&buf)?;
        let record = &buf[FRAME_HEADER..];
        if header.len != at.len || header.crc != at.crc || !header.matches(record) {
            return Err(corrupt("checksum mismatch"));
        }
        buf.drain(..FRAME_HEADER);
        Ok(buf)
    }

    /// Reads segment `id` from the start and calls `each` with every intact
    /// record's sequence, locator and bytes, in order; stops at the first
    /// frame that is short or fails its CRC (a torn tail: nothing after it
    /// was acknowledged). Reads the file sequentially, one record at a time.
    pub fn scan(
        &self,
        id: u64,
        each: impl FnMut(u64, Locator, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let file = File::open(self.path_of(id))?;
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        scan_frames(id, reader, self.segment_bytes.max(MAX_RECORD), each)
    }

    /// Segment names on disk, ascending.
    pub fn list(&self) -> Result<Vec<u64>, StoreError> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let parsed = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = parsed {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// `fdatasync`s every segment: at open, records a crash left only in the
    /// page cache become durable before the events are treated as such.
    pub fn sync_all(&self) -> Result<(), StoreError> {
        for id in self.list()? {
            File::open(self.path_of(id))?.sync_data()?;
        }
        Ok(())
    }

    /// Deletes a segment nothing refers to any more.
    pub fn remove(&self, id: u64) -> Result<(), StoreError> {
        if let Ok(mut readers) = self.readers.write() {
            readers.remove(&id);
        }
        match std::fs::remove_file(self.path_of(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Bytes the segments use on disk.
    pub fn size_on_disk(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn locator_round_trips_and_inline_records_are_not_locators() {
        let at = Locator {
            segment: 7,
            offset: 1 << 40,
            len: 1234,
            crc: 0xdead_beef,
        };
        assert_eq!(Locator::decode(&at.encode()).unwrap(), Some(at));
        assert_eq!(Locator::decode(&[1, 0, 0, 0, 0]).unwrap(), None);
        assert!(Locator::decode(&[2, 0, 0]).is_err());
    }

    #[test]
    fn appends_roll_read_back_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 100).unwrap();
        let mut active = log.create(1).unwrap();
        let mut at = Vec::new();
        for seq in 1..=5u64 {
            at.push(active.append(&log, seq, &[seq as u8; 60]).unwrap());
        }
        // 60-byte records (76 framed) in 100-byte segments: one per segment.
        assert_eq!(log.list().unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(active.to_sync().len(), 5);
        assert_eq!(active.to_sync().len(), 1);
        for (i, loc) in at.iter().enumerate() {
            assert_eq!(log.read(loc).unwrap(), vec![i as u8 + 1; 60]);
        }
        let bad = Locator {
            crc: at[0].crc ^ 1,
            ..at[0]
        };
        assert!(matches!(log.read(&bad), Err(StoreError::Corrupt(_))));
        let short = Locator { len: 61, ..at[4] };
        assert!(log.read(&short).is_err());
        log.remove(2).unwrap();
        assert!(log.read(&at[1]).is_err());
        assert_eq!(log.list().unwrap(), vec![1, 3, 4, 5]);
    }

    /// Polls (with a deadline) until the background spare is ready.
    fn wait_for_spare(log: &SegmentLog) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !log.dir.join(SPARE).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "no spare was prepared"
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn segments_come_zero_filled_from_the_spare_and_scan_to_their_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 4096).unwrap();
        // No spare yet: the first segment grows as it is written.
        let mut active = log.create(1).unwrap();
        let size = |id: u64| std::fs::metadata(log.path_of(id)).unwrap().len();
        assert_eq!(size(1), 0);
        let mut at = Vec::new();
        let mut seq = 1u64;
        // 1000-byte records: the second passes a quarter of the segment,
        // which starts the spare; the fifth no longer fits and rolls.
        while active.id() == 1 {
            if seq == 3 {
                wait_for_spare(&log);
            }
            at.push(active.append(&log, seq, &[seq as u8; 1000]).unwrap());
            seq += 1;
        }
        assert_eq!(active.id(), 5);
        assert_eq!(size(5), 4096, "segment 5 is the zero-filled spare");
        assert!(!log.dir.join(SPARE).exists(), "the spare was taken");
        for n in 6..=7u64 {
            at.push(active.append(&log, n, &[n as u8; 1000]).unwrap());
        }
        assert_eq!(size(5), 4096, "records are written inside the file");
        for (i, loc) in at.iter().enumerate() {
            assert_eq!(log.read(loc).unwrap(), vec![i as u8 + 1; 1000]);
        }
        // The zeros after the last record end the scan like a torn tail.
        let mut seen = Vec::new();
        log.scan(5, |seq, _, _| {
            seen.push(seq);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![5, 6, 7]);
    }

    #[test]
    fn a_scan_returns_intact_records_and_stops_at_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 1 << 20).unwrap();
        let mut active = log.create(10).unwrap();
        let mut at = Vec::new();
        for seq in 10..15u64 {
            at.push(active.append(&log, seq, &[seq as u8; 100]).unwrap());
        }
        let scanned = |log: &SegmentLog| {
            let mut seen = Vec::new();
            log.scan(10, |seq, loc, bytes| {
                assert_eq!(bytes, &vec![seq as u8; 100][..]);
                seen.push((seq, loc));
                Ok(())
            })
            .unwrap();
            seen
        };
        let all = scanned(&log);
        assert_eq!(
            all.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![10, 11, 12, 13, 14]
        );
        assert_eq!(all.iter().map(|(_, l)| *l).collect::<Vec<_>>(), at);
        // Damage record 13: the scan keeps 10..=12 and stops there.
        let path = dir.path().join(DIR).join(format!("{:020}.seg", 10));
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"xx", at[3].offset + 5).unwrap();
        assert_eq!(scanned(&log).len(), 3);
        // A tail cut mid-header also ends the scan cleanly.
        file.set_len(at[1].offset - 3).unwrap();
        assert_eq!(scanned(&log).len(), 1);
    }
}
