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
        Ok(l) if !l.is_empty() => LevelFilter::from_str(&l).map_err(|_| format!("SKITTER_LOG: `{l}` is not a log level (error, warn, info, debug, trace, off)"))?,
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
                .with_writer(Mutex::new(file).and(console))
                .with_ansi(false)
                .with_max_level(level)
                .try_init()
        }
        None => tracing_subscriber::fmt().with_writer(console).with_ansi(false).with_max_level(level).try_init(),
    };
    // Already set (tests that run several nodes in one process): keep the first.
    let _ = result;
    Ok(())
}

/// The line a node greets with, as Skitter's does.
pub fn welcome(mode: &str, node: &str, detail: &str) -> String {
    format!("Welcome to skitter v{}! Running in {mode} mode as {node}{detail}", env!("CARGO_PKG_VERSION"))
}
