//! Logging like Skitter's: a welcome line, then log lines to the node's file
//! `logs/<node>.log` (unless turned off, rotated by size) and warnings to
//! stderr, all written by a thread of their own.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// How large a log file grows before it is rotated (`SKITTER_LOG_MAX_MB`):
/// `<node>.log` becomes `<node>.log.1`, the one before `<node>.log.2`, and
/// [`LOG_KEEP`] old files are kept.
pub const LOG_MAX_MB: u64 = 10;
pub const LOG_KEEP: usize = 3;
/// Log lines queued for the writing thread before more are dropped (and counted).
const LOG_QUEUE: usize = 8192;

/// Sets up logging for a node. `SKITTER_LOG` (or `log_level` in the
/// node's configuration) sets the file's level (error, warn, info, debug,
/// trace; default info). Lines are written by a
/// thread of their own: a slow disk or a stalled terminal never holds the
/// runtime.
/// The target of events that the command reports on stderr itself (its
/// `error:` line): they go to the log file only, so nothing is said twice.
pub const REPORTED: &str = "reported";

pub fn init(node: &str, log_dir: Option<&Path>) -> Result<(), String> {
    let level = match std::env::var("SKITTER_LOG") {
        Ok(l) if !l.is_empty() => LevelFilter::from_str(&l)
            .map_err(|_| format!("SKITTER_LOG: `{l}` is not a log level (error, warn, info, debug, trace, off)"))?,
        // log_level of the node's configuration, checked when it was read.
        _ => crate::settings::node::get().and_then(|s| LevelFilter::from_str(&s.log_level).ok()).unwrap_or(LevelFilter::INFO),
    };
    let file = match log_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create log directory {}: {e}", dir.display()))?;
            let path = dir.join(format!("{node}.log"));
            let max = super::env_number("SKITTER_LOG_MAX_MB", LOG_MAX_MB).max(1) << 20;
            Some(RotatingFile::open(path, max)?)
        }
        None => None,
    };
    let (tx, rx) = sync_channel::<Line>(LOG_QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let counted = dropped.clone();
    std::thread::Builder::new()
        .name("skitter-log".into())
        .spawn(move || write_lines(rx, file, counted))
        .map_err(|e| format!("cannot start the log thread: {e}"))?;
    if QUEUE.set(tx.clone()).is_err() {
        // Set up already (tests that run several nodes in one process): keep the first.
        return Ok(());
    }
    let to_file = LineWriter { tx: tx.clone(), to: Dest::File, dropped: dropped.clone() };
    let to_stderr = LineWriter { tx, to: Dest::Stderr, dropped };
    // The Kafka client warns of every retry; what fails is reported by the
    // operator that gave up, so its warnings go to the log file only.
    let console = to_stderr
        .with_max_level(tracing::Level::WARN)
        .with_filter(|meta| meta.target() != REPORTED && !(meta.target().starts_with("rskafka") && *meta.level() > tracing::Level::ERROR));
    let result = match log_dir {
        Some(_) => {
            tracing_subscriber::fmt().with_writer(to_file.and(console).and(tap_writer)).with_ansi(false).with_max_level(level).try_init()
        }
        None => tracing_subscriber::fmt().with_writer(console.and(tap_writer)).with_ansi(false).with_max_level(level).try_init(),
    };
    // Already set (tests that run several nodes in one process): keep the first.
    let _ = result;
    Ok(())
}

#[derive(Clone, Copy)]
enum Dest {
    File,
    Stderr,
}

enum Line {
    Text(Dest, Vec<u8>),
    /// Answered once every line before it is written.
    Flush(std::sync::mpsc::Sender<()>),
}

/// The log thread's queue, once logging is set up.
static QUEUE: std::sync::OnceLock<SyncSender<Line>> = std::sync::OnceLock::new();

/// Waits (at most a second) until the log lines queued so far are written:
/// before the process exits.
pub fn flush() {
    if let Some(tx) = QUEUE.get() {
        let (done, written) = std::sync::mpsc::channel();
        if tx.send(Line::Flush(done)).is_ok() {
            let _ = written.recv_timeout(std::time::Duration::from_secs(1));
        }
    }
}

/// Hands formatted lines to the log thread; drops (and counts) them when
/// its queue is full.
#[derive(Clone)]
struct LineWriter {
    tx: SyncSender<Line>,
    to: Dest,
    dropped: Arc<AtomicU64>,
}

impl std::io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.tx.try_send(Line::Text(self.to, buf.to_vec())).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineWriter {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        self.clone()
    }
}

fn write_lines(rx: Receiver<Line>, mut file: Option<RotatingFile>, dropped: Arc<AtomicU64>) {
    use std::io::Write;
    while let Ok(cmd) = rx.recv() {
        let (to, line) = match cmd {
            Line::Text(to, line) => (to, line),
            Line::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        match (to, file.as_mut()) {
            (Dest::File, Some(f)) => f.write(&line),
            (Dest::File, None) => {}
            (Dest::Stderr, _) => {
                let _ = std::io::stderr().write_all(&line);
            }
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if let (true, Some(f)) = (lost > 0, file.as_mut()) {
            f.write(format!("({lost} log lines dropped: the log could not keep up)\n").as_bytes());
        }
    }
}

/// A log file that is rotated when it passes its size.
struct RotatingFile {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    max: u64,
}

impl RotatingFile {
    fn open(path: PathBuf, max: u64) -> Result<RotatingFile, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile { path, file, size, max })
    }

    fn write(&mut self, line: &[u8]) {
        use std::io::Write;
        if self.size + line.len() as u64 > self.max && self.size > 0 {
            self.rotate();
        }
        if self.file.write_all(line).is_ok() {
            self.size += line.len() as u64;
        }
    }

    fn rotate(&mut self) {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        for n in (1..LOG_KEEP).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        let _ = std::fs::rename(&self.path, numbered(1));
        if let Ok(f) = OpenOptions::new().create(true).append(true).open(&self.path) {
            self.file = f;
            self.size = 0;
        }
    }
}

/// The line a node greets with, as Skitter's does.
pub fn welcome(mode: &str, node: &str, detail: &str) -> String {
    format!("Welcome to skitter v{}! Running in {mode} mode as {node}{detail}", env!("CARGO_PKG_VERSION"))
}

/// Log lines for consoles that asked for them (`logs(true)`).
fn tap() -> &'static tokio::sync::broadcast::Sender<String> {
    static TAP: std::sync::OnceLock<tokio::sync::broadcast::Sender<String>> = std::sync::OnceLock::new();
    TAP.get_or_init(|| tokio::sync::broadcast::channel(256).0)
}

/// Receives this node's log lines from now on.
pub fn subscribe() -> tokio::sync::broadcast::Receiver<String> {
    tap().subscribe()
}

/// Writes log lines to the consoles listening, if any.
pub struct TapWriter;

impl std::io::Write for TapWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let tap = tap();
        if tap.receiver_count() > 0 {
            let _ = tap.send(String::from_utf8_lossy(buf).trim_end().to_string());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn tap_writer() -> TapWriter {
    TapWriter
}

pub use crate::settings::seconds;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_file_is_rotated_by_size_keeping_a_few() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.log");
        let mut f = RotatingFile::open(path.clone(), 100).unwrap();
        for i in 0..50 {
            f.write(format!("line {i:>20}\n").as_bytes());
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 100);
        for n in 1..=LOG_KEEP {
            assert!(dir.path().join(format!("n.log.{n}")).exists(), "n.log.{n}");
        }
        assert!(!dir.path().join(format!("n.log.{}", LOG_KEEP + 1)).exists());
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.contains("line                   49"), "{last}");
    }
}
