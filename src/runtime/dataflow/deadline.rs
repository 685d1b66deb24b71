//! How long a record may wait for company. Batches fill up to a size or
//! until the batch deadline, whichever comes first, at every hop: a source
//! hands over what it has when its input pauses, an outlet sends a partial
//! batch once its oldest record has waited the deadline (or at once when
//! its stage has nothing more to do), and a file sink's buffered lines
//! reach the file within the deadline even when no more come: a thread
//! writes out what sinks hold past it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::Duration;

use super::sink::FileSink;

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

/// The file sinks of this process, for the thread that writes out what
/// they hold past the deadline.
struct Watched {
    sinks: Mutex<Vec<Weak<FileSink>>>,
    added: Condvar,
}

fn watched() -> &'static Watched {
    static WATCHED: OnceLock<&'static Watched> = OnceLock::new();
    WATCHED.get_or_init(|| {
        let watched: &'static Watched = Box::leak(Box::new(Watched { sinks: Mutex::new(Vec::new()), added: Condvar::new() }));
        let started = std::thread::Builder::new().name("skitter-sinks".into()).spawn(move || flush_loop(watched));
        if let Err(e) = started {
            // Lines then reach the file when the buffer fills or the sink settles.
            tracing::error!("cannot start the thread that writes out sinks on their deadline: {e}");
        }
        watched
    })
}

/// Writes out `sink`'s buffered lines whenever they have waited the deadline,
/// until the sink is dropped.
pub fn watch(sink: &Arc<FileSink>) {
    let w = watched();
    w.sinks.lock().expect("sinks lock").push(Arc::downgrade(sink));
    w.added.notify_one();
}

fn flush_loop(w: &'static Watched) {
    let mut sinks = w.sinks.lock().expect("sinks lock");
    loop {
        // A settled sink writes no more (ended workflows are kept a while).
        let mut live: Vec<Arc<FileSink>> = Vec::new();
        sinks.retain(|s| match s.upgrade() {
            Some(sink) if !sink.is_settled() => {
                live.push(sink);
                true
            }
            _ => false,
        });
        if live.is_empty() {
            sinks = w.added.wait(sinks).expect("sinks lock");
            continue;
        }
        drop(sinks);
        let deadline = get();
        for sink in &live {
            // A failure is kept by the sink, whose next write reports it.
            sink.flush_due(deadline);
        }
        drop(live);
        std::thread::sleep(deadline.max(Duration::from_micros(500)));
        sinks = w.sinks.lock().expect("sinks lock");
    }
}
