//! The errors a command ends with, and the one place they become exit codes.

use std::process::ExitCode;

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
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// Exit codes as Skitter's: 1 error, 2 usage or no app, 4 peer went away.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::from(2),
            Error::App(AppError::NotFound(_)) | Error::App(AppError::BadConfig { .. }) => ExitCode::from(2),
            Error::App(_) | Error::Script(_) | Error::WorkflowFailed(_) | Error::Failed(_) => ExitCode::from(1),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
