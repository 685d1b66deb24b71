//! Feeds arbitrary bytes to a listener as a stranger's first flight: the
//! only thing a node reads before the peer has proved the cookie. It must
//! never panic and never authenticate. `RUSTC_BOOTSTRAP=1 cargo fuzz run handshake`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert!(skitter::net::handshake::open_first_flight("fuzz-cookie", data).is_err());
});
