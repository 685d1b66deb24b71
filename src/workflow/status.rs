//! The life cycle of a deployed workflow.

use std::fmt;

/// Where a deployed workflow is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    /// Every source was exhausted and every record was processed.
    Finished,
    /// Stopped on request; records in flight were drained first.
    Stopped,
    /// An operator raised an error or a node went away; nothing more is processed.
    Failed(String),
}

impl Status {
    pub fn is_done(&self) -> bool {
        !matches!(self, Status::Running)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Running => f.write_str("running"),
            Status::Finished => f.write_str("finished"),
            Status::Stopped => f.write_str("stopped"),
            Status::Failed(reason) => write!(f, "failed: {reason}"),
        }
    }
}
