//! The nodes and what runs on them, in rooms:
//!
//! - the drivers, one per mode: [`local`] (master and worker in one
//!   process), [`master`] (with its coordination: the [`master::coordinator`]
//!   state machine, `step(event) -> actions`, and [`master::succession`] of
//!   workflows across an upgrade) and [`worker`] (its lifecycle state
//!   machine, the data links it sends on, `worker/remote.rs`, and receives
//!   on, `worker/peer.rs`); [`node`] records a running node so that others
//!   find it by name;
//! - links between nodes: [`link`] drives a control link (heartbeats, the
//!   tick time, control before data, a goodbye that reaches the peer);
//! - the [`dataflow`] executor every driver runs a workflow's part with;
//! - consoles: [`console`] serves remote shells and `rpc` (and takes an
//!   upgrade through its `Upgrader` trait, which `deploy` implements),
//!   [`printer`] brings what workflows print to a terminal;
//! - watching: [`metrics`] (Prometheus) and [`log`].
//!
//! May use `net`, `script`, `workflow` and `settings`; what it needs from
//! above (the upgrade) comes in through traits.

pub mod checkpoint;
pub mod console;
pub mod dataflow;
pub mod http;
pub mod link;
pub mod local;
pub mod log;
pub mod master;
pub mod metrics;
pub mod node;
pub mod printer;
pub mod process;
pub mod restart;
pub mod web;

pub mod worker;

pub use local::LocalRuntime;

use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::workflow::Status;

/// How many ended workflows a node keeps (`SKITTER_KEEP_WORKFLOWS`), with
/// their status, counts and results; older ones are forgotten.
pub const KEEP_WORKFLOWS: usize = 100;

pub(crate) fn keep_workflows() -> usize {
    env_number("SKITTER_KEEP_WORKFLOWS", KEEP_WORKFLOWS as u64) as usize
}

/// How many bytes of `collect()` results a node holds per workflow
/// (`SKITTER_RESULTS_CAP_MB`): past it the workflow fails, saying so.
pub const RESULTS_CAP: u64 = 256 * 1024 * 1024;

pub(crate) fn results_cap() -> u64 {
    env_number("SKITTER_RESULTS_CAP_MB", RESULTS_CAP >> 20) << 20
}

/// A number from the environment variable `name`, or `default` when it is
/// unset; a value that is not a number is reported and not used.
pub(crate) fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            tracing::warn!("{name}={v:?} is not a number: using {default}");
            eprintln!("warning: {name}={v:?} is not a number: using {default}");
            default
        }),
    }
}

/// The error for a workflow a node does not know (any more).
pub(crate) fn unknown_workflow(r: crate::script::WorkflowRef, node: &str, keep: usize) -> String {
    format!("no workflow #{} on {node} (a node keeps the last {keep} ended workflows; SKITTER_KEEP_WORKFLOWS sets how many)", r.id)
}

/// How long `stop` lets a workflow drain before it aborts it.
pub use crate::settings::STOP_DEADLINE;

/// Blocks the calling thread until a workflow's status is final. A runtime
/// thread must not block on its runtime, so there the status is polled.
pub(crate) fn wait_until_done(handle: &Handle, status: watch::Receiver<Status>) -> Status {
    wait_at_most(handle, status, None).expect("no time limit")
}

/// [`wait_until_done`], giving up (`None`) after `limit`.
pub(crate) fn wait_at_most(handle: &Handle, mut status: watch::Receiver<Status>, limit: Option<Duration>) -> Option<Status> {
    let deadline = limit.map(|l| std::time::Instant::now() + l);
    if Handle::try_current().is_ok() {
        loop {
            let s = status.borrow().clone();
            if s.is_done() {
                return Some(s);
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    handle.block_on(async move {
        let done = status.wait_for(|s| s.is_done());
        match limit {
            Some(l) => tokio::time::timeout(l, done).await.ok()?.ok()?,
            None => done.await.ok()?,
        };
        let s = status.borrow().clone();
        Some(s)
    })
}

/// Stops a workflow: asks it to drain, waits at most `deadline`, then
/// aborts it and waits until it has ended.
pub(crate) fn stop_then_abort(
    handle: &Handle,
    status: watch::Receiver<Status>,
    deadline: Duration,
    request_stop: impl FnOnce(),
    abort: impl FnOnce(String),
) -> Status {
    request_stop();
    if let Some(s) = wait_at_most(handle, status.clone(), Some(deadline)) {
        return s;
    }
    abort(format!("the stop did not drain within {}", crate::settings::seconds(deadline)));
    wait_until_done(handle, status)
}

/// Which of a workflow's `collect()` sinks (`names`) `results(ref, sink)`
/// reads: the one named, or the only one.
pub(crate) fn choose_sink(names: &[&str], sink: Option<&str>) -> Result<usize, String> {
    match sink {
        Some(name) => {
            names.iter().position(|n| *n == name).ok_or_else(|| format!("no collect() sink named `{name}` (sinks: {})", names.join(", ")))
        }
        None if names.len() == 1 => Ok(0),
        None if names.is_empty() => Err("this workflow has no collect() sink".into()),
        None => Err(format!("this workflow has several collect() sinks ({}): name one with results(ref, name)", names.join(", "))),
    }
}
