//! Feeds arbitrary bytes to the frame decoder as an authenticated peer's
//! decrypted stream, for every link's message type. It must never panic,
//! overflow its stack or allocate without bound; every input either
//! decodes or is refused with a reason. `cargo +nightly fuzz run frame`, or
//! on a stable toolchain (AddressSanitizer included):
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run frame -- -max_len=200000`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skitter::net::framing::decode_stream;
use skitter::net::{ConsoleMsg, ControlMsg, DataLinkMsg};

fuzz_target!(|data: &[u8]| {
    let _ = decode_stream::<ControlMsg>(data);
    let _ = decode_stream::<DataLinkMsg>(data);
    let _ = decode_stream::<ConsoleMsg>(data);
});
