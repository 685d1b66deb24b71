//! Why a part of a workflow stopped, as data: the operator, the record or
//! the file it concerns are fields, so the runtime can tell a cause from a
//! consequence (an instance that ended because another failed).

use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// A script function failed on a record.
    #[error("operator `{operator}` failed on record {record}: {message}")]
    Record { operator: String, record: String, message: String },
    /// An operator was misused or returned the wrong kind of value.
    #[error("operator `{operator}`: {reason}")]
    Operator { operator: String, reason: String },
    /// Operator code was interrupted by an abort.
    #[error("operator `{operator}` was interrupted")]
    Interrupted { operator: String },
    /// A source or sink could not use its file or connection.
    #[error("operator `{operator}`: cannot {action} {path}: {error}")]
    File { operator: String, action: &'static str, path: PathBuf, error: String },
    /// A line longer than a source takes.
    #[error("operator `{operator}`: line {line} is longer than {max} bytes (raise it with #{{ max_line: BYTES }})")]
    LineTooLong { operator: String, line: u64, max: usize },
    /// Records could not leave this process (a data link, the master).
    #[error("{0}")]
    Remote(String),
    /// The workflow ended (failed or aborted elsewhere): not a cause.
    #[error("the workflow ended")]
    Ended,
    #[error("internal error: {0}")]
    Internal(String),
}

impl FlowError {
    /// A broker at `url` that the operator could not use.
    pub fn broker(operator: &str, action: &'static str, url: &str, error: String) -> FlowError {
        FlowError::File { operator: operator.to_string(), action, path: url.into(), error }
    }

    /// The operator whose code or file failed, if that is what it is.
    pub fn operator(&self) -> Option<&str> {
        match self {
            FlowError::Record { operator, .. }
            | FlowError::Operator { operator, .. }
            | FlowError::File { operator, .. }
            | FlowError::LineTooLong { operator, .. } => Some(operator),
            _ => None,
        }
    }
}

/// The error a script call ended with, as a `FlowError` of `operator`.
pub(super) fn script_error(operator: &str, record: Option<&rhai::Dynamic>, err: &rhai::EvalAltResult) -> FlowError {
    if matches!(err, rhai::EvalAltResult::ErrorTerminated(..)) {
        return FlowError::Interrupted { operator: operator.to_string() };
    }
    let message = crate::script::session::eval_error(err, None).message;
    match record {
        Some(record) => FlowError::Record { operator: operator.to_string(), record: shown(record), message },
        None => FlowError::Operator { operator: operator.to_string(), reason: message },
    }
}

/// A record as an error shows it: at most 80 characters.
pub(super) fn shown(record: &rhai::Dynamic) -> String {
    let mut shown = format!("{record:?}");
    if shown.len() > 80 {
        let cut = (0..=77).rev().find(|&c| shown.is_char_boundary(c)).unwrap_or(0);
        shown.truncate(cut);
        shown.push_str("...");
    }
    shown
}
