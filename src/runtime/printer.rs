//! Output that must never stall a node: what workers print, written to the
//! master's terminal by a thread of its own. A terminal that does not keep
//! up (paused, piped into a slow reader) gets the output it can take; the
//! rest waits in a bounded queue, then is dropped and counted: "1,234
//! lines of output dropped".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use crate::script::Output;

/// Pieces of text queued before more are dropped.
pub const QUEUE: usize = 4096;

pub struct Printer {
    queue: SyncSender<Item>,
    dropped: Arc<AtomicU64>,
}

enum Item {
    Text(String),
    /// Answered once everything queued before it is printed.
    Flush(std::sync::mpsc::Sender<()>),
}

impl Printer {
    /// Starts the printing thread; it writes to whatever `output` holds when
    /// it writes (the shell may swap it).
    pub fn start(output: Arc<Mutex<Output>>) -> Printer {
        let (queue, texts) = sync_channel::<Item>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        let spawned = std::thread::Builder::new().name("skitter-printer".into()).spawn(move || {
            while let Ok(item) = texts.recv() {
                let text = match item {
                    Item::Text(text) => text,
                    Item::Flush(done) => {
                        let _ = done.send(());
                        continue;
                    }
                };
                let out = output.lock().expect("output lock").clone();
                out(&text);
                let lost = counted.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    out(&dropped_note(lost, "output", "the terminal"));
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!("cannot start the output thread: {e}");
        }
        Printer { queue, dropped }
    }

    /// Queues text to print; drops it (counting its lines) when the queue is full.
    pub fn print(&self, text: String) {
        let lines = text.lines().count().max(1) as u64;
        match self.queue.try_send(Item::Text(text)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(lines, Ordering::Relaxed);
            }
        }
    }

    /// Waits (at most `limit`) until what is queued has been printed:
    /// before the process exits, so that the last lines are not lost.
    pub fn flush(&self, limit: std::time::Duration) {
        let (done, printed) = std::sync::mpsc::channel();
        let deadline = std::time::Instant::now() + limit;
        // The queue may be full: wait for room, within the limit.
        let mut item = Item::Flush(done);
        loop {
            match self.queue.try_send(item) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(_) => return,
            }
        }
        let _ = printed.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
    }

    /// Lines dropped and not yet reported.
    #[cfg(test)]
    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// "(1,234 lines of output dropped: the terminal did not keep up)".
pub fn dropped_note(lines: u64, what: &str, reader: &str) -> String {
    format!("({} line{} of {what} dropped: {reader} did not keep up)", thousands(lines), plural(lines))
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_output_drops_and_counts_never_blocks() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let (g, s) = (gate.clone(), seen.clone());
        let output: Output = Arc::new(move |text: &str| {
            let _wait = g.lock().unwrap();
            s.lock().unwrap().push(text.to_string());
        });
        let printer = Printer::start(Arc::new(Mutex::new(output)));
        // The output is stuck: printing still returns at once.
        for i in 0..QUEUE + 1000 {
            printer.print(format!("line {i}\n"));
        }
        assert!(printer.dropped() >= 999, "{}", printer.dropped());
        drop(held);
        printer.flush(std::time::Duration::from_secs(10));
        assert_eq!(seen.lock().unwrap().first().map(String::as_str), Some("line 0\n"), "flushed: what was queued is printed");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !seen.lock().unwrap().iter().any(|l| l.contains("of output dropped")) {
            assert!(std::time::Instant::now() < deadline, "the drop was never reported");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0], "line 0\n");
        assert!(seen.iter().any(|l| l.contains("lines of output dropped")));
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234), "1,234");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
