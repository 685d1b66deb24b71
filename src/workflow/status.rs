//! The life cycle of a deployed workflow.

use std::fmt;

/// Where a deployed workflow is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    /// A run failed (a worker was lost, an operator raised an error) and
    /// the workflow is starting again from its last checkpoint: which
    /// attempt, and why (`attempt 2, worker w1@h1 went away: ...`).
    Recovering(String),
    /// Every source was exhausted and every record was processed.
    Finished,
    /// Stopped on request before its sources ended; records already read
    /// were drained first. The reason says who asked when it was not the
    /// user (`worker w8 left`).
    Stopped(Option<String>),
    /// Stopped at once (on `abort`, or when a stop did not drain within its
    /// deadline): operator code was interrupted; records in flight are lost.
    /// The text says which operators were running.
    Aborted(String),
    /// An operator raised an error or a node went away; nothing more is processed.
    Failed(String),
}

impl Status {
    pub fn is_done(&self) -> bool {
        !matches!(self, Status::Running | Status::Recovering(_))
    }

    /// Whether the workflow ended before its sources did (stopped or aborted).
    pub fn is_cut_short(&self) -> bool {
        matches!(self, Status::Stopped(_) | Status::Aborted(_))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Running => f.write_str("running"),
            Status::Recovering(what) => write!(f, "recovering ({what})"),
            Status::Finished => f.write_str("finished"),
            Status::Stopped(None) => f.write_str("stopped"),
            Status::Stopped(Some(reason)) => write!(f, "stopped: {reason}"),
            Status::Aborted(detail) => write!(f, "aborted: {detail}"),
            Status::Failed(reason) => write!(f, "failed: {reason}"),
        }
    }
}
