//! Feeds arbitrary bytes to the frame decoder as a peer's stream:
//! `cargo +nightly fuzz run frame`. It must never panic or allocate without
//! bound; every input either decodes or is rejected with a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = skitter::net::connection::decode_stream(data);
});
