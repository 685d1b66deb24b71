//! Logging like Skitter's: a welcome line, then log lines to the node's file
//! `logs/<node>.log` (unless turned off) and warnings to stderr.

use std::fs::OpenOptions;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// Sets up logging for a node. `SKITTER_LOG` sets the file's level
/// (error, warn, info, debug, trace; default info).
pub fn init(node: &str, log_dir: Option<&Path>) -> Result<(), String> {
    let level = match std::env::var("SKITTER_LOG") {
        Ok(l) if !l.is_empty() => LevelFilter::from_str(&l)
            .map_err(|_| format!("SKITTER_LOG: `{l}` is not a log level (error, warn, info, debug, trace, off)"))?,
        _ => LevelFilter::INFO,
    };
    let console = std::io::stderr.with_max_level(tracing::Level::WARN);
    let result = match log_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create log directory {}: {e}", dir.display()))?;
            let path = dir.join(format!("{node}.log"));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
            tracing_subscriber::fmt()
                .with_writer(Mutex::new(file).and(console).and(tap_writer))
                .with_ansi(false)
                .with_max_level(level)
                .try_init()
        }
        None => tracing_subscriber::fmt().with_writer(console.and(tap_writer)).with_ansi(false).with_max_level(level).try_init(),
    };
    // Already set (tests that run several nodes in one process): keep the first.
    let _ = result;
    Ok(())
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

/// A duration as people write it in messages: `1 s`, `2.5 s`, `300 ms`.
pub fn seconds(d: std::time::Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}
