//! The batch deadline: how long a record may wait for company. Batches
//! fill up to a size or until this deadline, whichever comes first, at
//! every hop (a source, an outlet, a file sink's buffer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The default batch deadline: short against a person's patience, long
/// against a batch's worth of work (a full batch of 1024 records takes
/// ~1 ms on the word count), so throughput does not change.
pub const DEFAULT: Duration = Duration::from_millis(2);

/// The longest batch deadline a node takes: past it, a stream no longer
/// looks live.
pub const MAX: Duration = Duration::from_secs(10);

static DEADLINE_US: AtomicU64 = AtomicU64::new(DEFAULT.as_micros() as u64);

/// Sets this process's batch deadline (`batch_deadline_ms` in skitter.toml,
/// or SKITTER_BATCH_DEADLINE_MS).
pub fn set(deadline: Duration) {
    DEADLINE_US.store(deadline.min(MAX).as_micros() as u64, Ordering::Relaxed);
}

pub fn get() -> Duration {
    Duration::from_micros(DEADLINE_US.load(Ordering::Relaxed))
}
