//! Feeds arbitrary bytes to the frame decoder as a peer's stream. It must
//! never panic, overflow its stack or allocate without bound; every input
//! either decodes or is refused with a reason. `cargo +nightly fuzz run
//! frame`, or on a stable toolchain (AddressSanitizer included):
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run frame -- -max_len=200000`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = skitter::net::connection::decode_stream(data);
});
