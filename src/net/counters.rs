//! Failures of this process's connections, counted for monitoring
//! (`--metrics`): they are logged too, but a log is not a rate.

use std::sync::atomic::{AtomicU64, Ordering};

/// Incoming connections refused before or during the handshake (wrong
/// cookie, too slow, malformed, paused address, evicted).
pub static HANDSHAKE_FAILURES: AtomicU64 = AtomicU64::new(0);
/// Established links lost (silent past the tick time, closed, broken) and
/// peers that could not be reached.
pub static CONNECTION_FAILURES: AtomicU64 = AtomicU64::new(0);

pub fn handshake_failed() {
    HANDSHAKE_FAILURES.fetch_add(1, Ordering::Relaxed);
}

pub fn connection_failed() {
    CONNECTION_FAILURES.fetch_add(1, Ordering::Relaxed);
}
