//! How long a record may wait for company. Batches fill up to a size or
//! until the batch deadline, whichever comes first, at every hop: a source
//! hands over what it has when its input pauses, an outlet sends a partial
//! batch once its oldest record has waited the deadline (or at once when
//! its stage has nothing more to do), and a file sink's buffered lines
//! reach the file within the deadline even when no more come: a thread
//! writes out what sinks hold past it.

use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::Duration;

pub use crate::settings::deadline::{get, set, DEFAULT, MAX};

/// What the flushing thread needs of a sink: whether it still writes, and
/// to write out what waited past the deadline.
pub trait DueFlush: Send + Sync {
    fn is_settled(&self) -> bool;
    /// Writes out what has waited `deadline`; a failure is kept by the
    /// sink, whose next write reports it.
    fn flush_due(&self, deadline: Duration);
}

/// The file sinks of this process, for the thread that writes out what
/// they hold past the deadline.
struct Watched {
    sinks: Mutex<Vec<Weak<dyn DueFlush>>>,
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
pub fn watch(sink: Weak<dyn DueFlush>) {
    let w = watched();
    w.sinks.lock().expect("sinks lock").push(sink);
    w.added.notify_one();
}

fn flush_loop(w: &'static Watched) {
    let mut sinks = w.sinks.lock().expect("sinks lock");
    loop {
        // A settled sink writes no more (ended workflows are kept a while).
        let mut live: Vec<Arc<dyn DueFlush>> = Vec::new();
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
