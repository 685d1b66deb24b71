//! skitter: a distributed stream-processing runtime whose workflows are Rhai
//! scripts.
//!
//! Layout (dependencies point down this list only):
//!
//! - [`cli`]: clap definitions, resolving arguments to config, one file per mode
//! - [`shell`]: the interactive shell (rustyline front end around `execute`)
//! - [`release`]: `skitter new`, releases and their scripts
//! - [`deploy`]: worker specs and the ssh launcher
//! - [`runtime`]: local runtime, dataflow executor, logging, node identity
//! - [`net`]: values, messages, frames, handshake, cookies
//! - [`script`]: Rhai engine set-up, apps, sessions, the packages scripts see
//! - [`workflow`]: the workflow model, operators, strategies, plans (no I/O)
//! - [`error`]: error types and their exit codes

pub mod cli;
pub mod deploy;
pub mod error;
pub mod net;
pub mod release;
pub mod runtime;
pub mod script;
pub mod shell;
pub mod workflow;

pub use error::{Error, Result};

/// This build's version, as nodes tell each other.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
