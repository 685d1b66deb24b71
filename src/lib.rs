//! skitter: a distributed stream-processing runtime whose workflows are Rhai
//! scripts.
//!
//! Layout (a module may use its own layer and the layers below it, never
//! one above; `tests/layers.rs` checks it):
//!
//! - [`cli`]: clap definitions, resolving arguments to config, one file per mode
//! - [`shell`]: the interactive shell (rustyline front end around `execute`)
//! - [`error`]: the errors a command ends with and their exit codes (for `cli` and `shell`)
//! - [`deploy`]: worker specs, the ssh launcher, shipping releases, the rolling upgrade
//! - [`release`]: `skitter new`, building and installing releases and their scripts
//! - [`runtime`]: the nodes (local, master, worker), their links and consoles, the
//!   coordinator, the dataflow executor, logging
//! - [`net`]: values, messages, frames, handshake, cookies
//! - [`script`]: Rhai engine set-up, apps, sessions, the packages scripts see
//! - [`workflow`]: the workflow model, operators, strategies, plans (no I/O)
//! - [`settings`]: what several layers share: tick time, deadlines, limits, the
//!   node's settings in force, how durations read
//!
//! `deploy` sits above `release` (DESIGN had them the other way round): it
//! ships and installs release tarballs, while building a release needs
//! nothing of deployment. `runtime` reaches `deploy` only through its
//! `Upgrader` trait, which `deploy` implements.
//!
//! A record's path through `runtime`: a source's instance (`dataflow/source.rs`,
//! brokers in `dataflow/{kafka,nats,redis}`) fills batches; a stage
//! (`dataflow/stage.rs`) runs the chained operators (`dataflow/operators.rs`,
//! user code through `dataflow/call.rs` and `native.rs`); an outlet
//! (`dataflow/exchange.rs`) sends each batch to the instance its strategy
//! picks — here through a channel, on another worker through that worker's
//! data link (`worker/remote.rs` sends, `worker/peer.rs` receives); sinks
//! (`dataflow/sink.rs`) write files or hand results to the master.

pub mod cli;
pub mod deploy;
pub mod error;
pub mod net;
pub mod release;
pub mod runtime;
pub mod script;
pub mod settings;
pub mod shell;
pub mod workflow;

pub use error::{Error, Result};

/// This build's version, as nodes tell each other.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
