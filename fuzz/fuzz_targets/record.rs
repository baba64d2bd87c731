//! The store's on-disk decoders on arbitrary bytes: an event record, a
//! locator, a dedupe-marker bucket, and a segment's frames as recovery scans
//! them. Torn or corrupt input must be an error (or the end of a scan),
//! never a panic.
#![no_main]

use hookgate::store::{markers, record, segments};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = record::decode(data);
    let _ = segments::Locator::decode(data);
    let _ = markers::Bucket::decode(data);
    let _ = segments::scan_frames(1, data, 1 << 20, |_, at, bytes| {
        assert_eq!(at.len as usize, bytes.len());
        Ok(())
    });
});
