//! Checkpoint settings a node runs with: how often (`checkpoint_interval`;
//! by default every second when a workflow has an endless source, never
//! when all its sources end), where the checkpoints go (`checkpoint_dir`)
//! and how many completed ones are kept (`checkpoints_kept`). Resolved once
//! at start from SKITTER_CHECKPOINT_INTERVAL, SKITTER_CHECKPOINT_DIR,
//! SKITTER_CHECKPOINTS_KEPT and skitter.toml; a deploy may override them.

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

/// The interval when a workflow has an endless source and nothing says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Completed checkpoints kept per workflow.
pub const DEFAULT_KEPT: usize = 3;

/// The shortest interval taken: below it, checkpoints would be all a
/// workflow does.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckpointSettings {
    /// `None`: the default (by the workflow's sources); `Some(ZERO)`: off.
    pub interval: Option<Duration>,
    /// `None`: `tmp/checkpoints` of the app, or of the user's state directory.
    pub dir: Option<PathBuf>,
    /// `None`: [`DEFAULT_KEPT`].
    pub kept: Option<usize>,
}

static CURRENT: RwLock<Option<CheckpointSettings>> = RwLock::new(None);

pub fn set(settings: CheckpointSettings) {
    *CURRENT.write().expect("checkpoint settings lock") = Some(settings);
}

pub fn get() -> CheckpointSettings {
    CURRENT.read().expect("checkpoint settings lock").clone().unwrap_or_default()
}

/// An interval given in seconds: 0 turns checkpoints off; otherwise at
/// least [`MIN_INTERVAL`].
pub fn interval(seconds: f64) -> Result<Duration, String> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("a checkpoint interval of {seconds} s: give 0 (off) or a number of seconds"));
    }
    let d = Duration::from_secs_f64(seconds);
    if d > Duration::ZERO && d < MIN_INTERVAL {
        return Err(format!("a checkpoint interval of {seconds} s is below the shortest, {} ms", MIN_INTERVAL.as_millis()));
    }
    Ok(d)
}
