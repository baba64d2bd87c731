//! The store's event-record decoder on arbitrary bytes (a torn or corrupt
//! record must be an error, never a panic), and encode→decode round trips.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hookgate::store::record::decode(data);
});
