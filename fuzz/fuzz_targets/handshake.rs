//! Feeds arbitrary bytes to a listener as a stranger's first flight: the
//! only thing a node reads before the peer has proved the cookie. It must
//! never panic and never authenticate. `RUSTC_BOOTSTRAP=1 cargo fuzz run handshake`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cookie = skitter::net::cookie::Cookie::new("fuzz-cookie-0123456789abcdef0123456789abcdef", "the fuzz target").unwrap();
    assert!(skitter::net::handshake::open_first_flight(&cookie.psk(), data).is_err());
});
