//! The tick time: how long a peer may be silent (and a write may take)
//! before its link counts as lost, like Erlang's `net_ticktime`; and how
//! often links say they are alive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The default tick time: a process stopped for 3 s (a paused terminal, a
/// slow disk, a debugger, a VM migrating) stays in its cluster with room to
/// spare, while a host that is really gone is noticed within seconds. A
/// process that dies is noticed at once: its connections close.
pub const DEFAULT_TICK: Duration = Duration::from_secs(10);
/// The shortest tick time accepted.
pub const MIN_TICK: Duration = Duration::from_secs(2);
/// Heartbeats go at least this often, whatever the tick time: a peer with
/// a shorter tick time than ours still hears us in time.
const MAX_HEARTBEAT: Duration = Duration::from_millis(500);

static TICK_MS: AtomicU64 = AtomicU64::new(DEFAULT_TICK.as_millis() as u64);

/// Sets this process's tick time (from `skitter.toml`, SKITTER_TICK_TIME or `--tick-time`).
pub fn set_tick(tick: Duration) {
    TICK_MS.store(tick.max(MIN_TICK).as_millis() as u64, Ordering::Relaxed);
}

/// How long a peer may be silent (and a write may take) before its link is lost.
pub fn tick() -> Duration {
    Duration::from_millis(TICK_MS.load(Ordering::Relaxed))
}

/// How often a link says it is alive.
pub fn heartbeat() -> Duration {
    (tick() / 4).min(MAX_HEARTBEAT)
}
