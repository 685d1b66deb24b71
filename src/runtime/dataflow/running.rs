//! A workflow being run in this process, shared between the runtime and
//! its instance threads: its status, how it is asked to stop or abort, its
//! counts, and what its sinks hold.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rhai::Array;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::sink::{settle_all, settle_for, FileSink, Results};
use super::Msg;
use crate::workflow::{Counts, Stats, Status};

/// Why a workflow ends before its sources do, other than a graceful stop.
#[derive(Clone, Debug)]
enum Ending {
    Failed(String),
    Aborted(String),
}

#[derive(Default)]
struct Counter {
    records_in: AtomicU64,
    records_out: AtomicU64,
}

pub struct Running {
    status: watch::Sender<Status>,
    /// Cancelled to stop gracefully: sources stop, everything drains.
    stop: CancellationToken,
    stop_reason: Mutex<Option<String>>,
    /// Cancelled when the workflow fails or is aborted: instances stop, and
    /// threads waiting on a channel wake up.
    ended: CancellationToken,
    /// Set with `ended`, for script calls in progress to give up.
    abort_flag: Arc<AtomicBool>,
    ending: Mutex<Option<Ending>>,
    /// Operators whose code the abort interrupted.
    interrupted: Mutex<Vec<String>>,
    counters: Vec<Counter>,
    stats: Stats,
    pub(super) collected: Vec<(String, Arc<Results>)>,
    /// The inboxes of this process's instances, by (stage, instance), for
    /// records arriving from other workers; emptied when the workflow ends.
    pub(super) inboxes: Mutex<HashMap<(usize, usize), mpsc::Sender<Msg>>>,
    /// Files this process writes, settled when the workflow is.
    pub(super) files: Vec<Arc<FileSink>>,
    handle: Handle,
}

impl Running {
    pub(super) fn new(
        stats: Stats,
        collected: Vec<(String, Arc<Results>)>,
        files: Vec<Arc<FileSink>>,
        abort_flag: Arc<AtomicBool>,
        handle: Handle,
    ) -> Running {
        Running {
            status: watch::channel(Status::Running).0,
            stop: CancellationToken::new(),
            stop_reason: Mutex::new(None),
            ended: CancellationToken::new(),
            abort_flag,
            ending: Mutex::new(None),
            interrupted: Mutex::new(Vec::new()),
            counters: stats.counts.iter().map(|_| Counter::default()).collect(),
            stats,
            collected,
            inboxes: Mutex::new(HashMap::new()),
            files,
            handle,
        }
    }

    /// The inbox of a local instance, for records from the network.
    pub fn inbox(&self, stage: usize, instance: usize) -> Option<mpsc::Sender<Msg>> {
        self.inboxes.lock().expect("inboxes lock").get(&(stage, instance)).cloned()
    }

    /// Whether the instances here still take input (their inboxes go when
    /// they have all ended).
    pub fn inboxes_open(&self) -> bool {
        !self.inboxes.lock().expect("inboxes lock").is_empty()
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Asks for a graceful stop; the status becomes `stopped` once drained.
    pub fn request_stop(&self, reason: Option<String>) {
        let mut r = self.stop_reason.lock().expect("stop lock");
        if r.is_none() {
            *r = reason;
        }
        self.stop.cancel();
    }

    pub(super) fn stop_requested(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Cancelled when the workflow failed or was aborted.
    pub fn ended(&self) -> &CancellationToken {
        &self.ended
    }

    pub(super) fn has_ended(&self) -> bool {
        self.abort_flag.load(Ordering::Relaxed) || self.ended.is_cancelled()
    }

    pub(super) fn handle(&self) -> &Handle {
        &self.handle
    }

    fn end(&self, ending: Ending) {
        self.ending.lock().expect("ending lock").get_or_insert(ending);
        self.abort_flag.store(true, Ordering::Relaxed);
        self.ended.cancel();
    }

    /// Stops everything now; the workflow ends failed with `reason` (the
    /// first reason given wins: later ones are consequences).
    pub fn fail(&self, reason: String) {
        self.end(Ending::Failed(reason));
    }

    /// Stops everything now, interrupting operator code; the workflow ends
    /// aborted, naming the operators that were running.
    pub fn abort(&self, reason: String) {
        self.end(Ending::Aborted(reason));
    }

    pub(super) fn interrupted(&self, operator: String) {
        let mut ops = self.interrupted.lock().expect("interrupted lock");
        if !ops.contains(&operator) {
            ops.push(operator);
        }
    }

    /// The operators an abort interrupted, for the status.
    pub fn interrupted_operators(&self) -> Vec<String> {
        self.interrupted.lock().expect("interrupted lock").clone()
    }

    /// Counts `records_in` into and `records_out` out of flat node `node`.
    pub(super) fn count(&self, node: usize, records_in: usize, records_out: usize) {
        let c = &self.counters[node];
        if records_in > 0 {
            c.records_in.fetch_add(records_in as u64, Ordering::Relaxed);
        }
        if records_out > 0 {
            c.records_out.fetch_add(records_out as u64, Ordering::Relaxed);
        }
    }

    /// The counts so far, per flat node.
    pub fn counts(&self) -> Vec<Counts> {
        self.counters
            .iter()
            .map(|c| Counts { records_in: c.records_in.load(Ordering::Relaxed), records_out: c.records_out.load(Ordering::Relaxed) })
            .collect()
    }

    /// The counts so far, with the nodes' names.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.counts = self.counts();
        stats
    }

    /// What `collect()` sinks gathered: one sink, or the one named `sink`.
    pub fn results(&self, sink: Option<&str>) -> Result<Array, String> {
        let names: Vec<&str> = self.collected.iter().map(|(n, _)| n.as_str()).collect();
        let chosen = crate::runtime::choose_sink(&names, sink)?;
        Ok(self.collected[chosen].1.records())
    }

    /// The status this part ends with, once its instances have all ended.
    pub(super) fn outcome(&self) -> Status {
        match self.ending.lock().expect("ending lock").clone() {
            Some(Ending::Failed(reason)) => Status::Failed(reason),
            Some(Ending::Aborted(reason)) => Status::Aborted(format!("{reason}; {}", running_note(&self.interrupted_operators()))),
            None if self.stop.is_cancelled() => Status::Stopped(self.stop_reason.lock().expect("stop lock").clone()),
            None => Status::Finished,
        }
    }

    /// Gives this process's output files their names (`commit`) or keeps
    /// what they hold as incomplete; returns where partial output was kept.
    pub fn settle_files(&self, commit: bool) -> Result<Option<String>, String> {
        settle_all(self.files.iter().map(|f| &**f), commit)
    }

    /// Settles this process's files for the final `status` (local mode).
    pub(super) fn settle_for(&self, status: Status) -> Status {
        settle_for(self.files.iter().map(|f| &**f), status)
    }

    /// Publishes the final status.
    pub(super) fn finish(&self, status: Status) {
        self.status.send_if_modified(|s| {
            if s.is_done() {
                return false;
            }
            *s = status;
            true
        });
    }
}

/// "operator `m` was running", for an aborted workflow's status.
pub fn running_note(operators: &[String]) -> String {
    match operators {
        [] => "no operator code was running".into(),
        [one] => format!("operator `{one}` was running"),
        many => format!("operators {} were running", many.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")),
    }
}
