//! The errors a command ends with, and the one place they become exit
//! codes. Used by `cli` and `shell`, the layers that end commands; it sits
//! below them and above the layers whose errors it gathers (`script`,
//! `workflow`).

use std::process::ExitCode;

use colored::Colorize;

use crate::script::app::AppError;
use crate::script::ScriptError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command-line use, or bad configuration.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    App(#[from] AppError),
    #[error("{0}")]
    Script(#[from] ScriptError),
    #[error("workflow failed: {0}")]
    WorkflowFailed(String),
    /// The workflow was stopped or aborted before its sources ended: what
    /// it wrote is exact for what it read, but it did not read everything.
    #[error("workflow {0} before its sources ended")]
    CutShort(crate::workflow::Status),
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// Exit codes as Skitter's: 1 error, 2 usage or no app, 4 peer went
    /// away; and 3: the workflow was stopped before its sources ended.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::from(2),
            Error::App(AppError::NotFound(_)) | Error::App(AppError::BadConfig { .. }) => ExitCode::from(2),
            Error::App(_) | Error::Script(_) | Error::WorkflowFailed(_) | Error::Failed(_) => ExitCode::from(1),
            Error::CutShort(_) => ExitCode::from(3),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The red "error:" that starts every error message (plain when not on a terminal).
pub fn prefix() -> String {
    "error:".red().bold().to_string()
}
