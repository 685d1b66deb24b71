//! A workflow being run in this process, shared between the runtime and
//! its instance threads: its status, how it is asked to stop or abort, its
//! meters, and what its sinks hold.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::Array;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::barriers::{Barriers, PartEvent};
use super::meter::Meter;
use super::sink::{settle_all, settle_for, FileSink, Results};
use super::Delivery;
use crate::workflow::stats::CheckpointStats;
use crate::workflow::{NodeStats, Stats, Status};

/// Why a workflow ends before its sources do, other than a graceful stop.
#[derive(Clone, Debug)]
enum Ending {
    Failed(String),
    Aborted(String),
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
    meters: Vec<Meter>,
    stats: Stats,
    /// The head node of each stage: where its inboxes' fill is shown
    /// (none for a source's stage).
    heads: Vec<Option<usize>>,
    started: Instant,
    ended_at: Mutex<Option<Instant>>,
    pub(super) collected: Vec<(String, Arc<Results>)>,
    /// The inboxes of this process's instances, by (stage, instance), for
    /// records arriving from other workers; emptied when the workflow ends.
    pub(super) inboxes: Mutex<HashMap<(usize, usize), mpsc::Sender<Delivery>>>,
    /// Files this process writes, settled when the workflow is.
    pub(super) files: Vec<Arc<FileSink>>,
    /// What sources here read and acknowledge once the sinks have settled.
    acks: Mutex<Vec<Arc<dyn super::Acknowledge>>>,
    handle: Handle,
    /// Checkpoints: where instances hand in what they took (none: off).
    barriers: Option<Arc<Barriers>>,
    /// For the checkpoint driver: what the instances hand in, and the
    /// status the part ends with (the driver publishes it).
    driver: Mutex<Option<DriverEnds>>,
    outcome_to: Mutex<Option<oneshot::Sender<Status>>>,
    /// What the checkpoint driver reports, for the stats.
    checkpoint_stats: Mutex<Option<Arc<Mutex<CheckpointStats>>>>,
}

/// What a checkpoint driver takes from a running part.
pub struct DriverEnds {
    pub events: mpsc::UnboundedReceiver<PartEvent>,
    /// The status the part's instances ended with; the driver publishes
    /// it (`finish`) after the last checkpoint.
    pub outcome: oneshot::Receiver<Status>,
}

impl Running {
    pub(super) fn new(
        stats: Stats,
        heads: Vec<Option<usize>>,
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
            meters: stats.nodes.iter().map(|_| Meter::default()).collect(),
            stats,
            heads,
            started: Instant::now(),
            ended_at: Mutex::new(None),
            collected,
            inboxes: Mutex::new(HashMap::new()),
            files,
            acks: Mutex::new(Vec::new()),
            handle,
            barriers: None,
            driver: Mutex::new(None),
            outcome_to: Mutex::new(None),
            checkpoint_stats: Mutex::new(None),
        }
    }

    /// Where the checkpoint driver keeps its figures.
    pub fn show_checkpoints(&self, stats: Arc<Mutex<CheckpointStats>>) {
        *self.checkpoint_stats.lock().expect("checkpoint stats lock") = Some(stats);
    }

    /// Records a `collect()` sink was given, once the checkpoint that
    /// covers them is durable.
    pub fn commit_collected(&self, sink: &str, records: Vec<rhai::Dynamic>) -> Result<(), super::FlowError> {
        match self.collected.iter().find(|(n, _)| n == sink) {
            Some((_, results)) => results.extend(sink, records),
            None => Err(super::FlowError::Internal(format!("no collect() sink named `{sink}` here"))),
        }
    }

    /// Turns checkpoints on: instances hand in to `barriers`, and a driver
    /// takes what they hand in (see [`Running::driver_ends`]).
    pub(super) fn with_checkpoints(mut self, barriers: Arc<Barriers>, events: mpsc::UnboundedReceiver<PartEvent>) -> Running {
        let (tx, rx) = oneshot::channel();
        self.barriers = Some(barriers);
        self.driver = Mutex::new(Some(DriverEnds { events, outcome: rx }));
        self.outcome_to = Mutex::new(Some(tx));
        self
    }

    /// Where checkpoints are requested (none: checkpoints are off).
    pub fn barriers(&self) -> Option<&Arc<Barriers>> {
        self.barriers.as_ref()
    }

    /// What the checkpoint driver needs, once.
    pub fn driver_ends(&self) -> Option<DriverEnds> {
        self.driver.lock().expect("driver lock").take()
    }

    /// The part's final status: to the checkpoint driver, which publishes
    /// it after the last checkpoint, or back (`Some`) to publish now.
    pub(super) fn hand_over(&self, status: Status) -> Option<Status> {
        match self.outcome_to.lock().expect("outcome lock").take() {
            Some(to) => to.send(status).err(),
            None => Some(status),
        }
    }

    /// The inbox of a local instance, for records from the network.
    pub fn inbox(&self, stage: usize, instance: usize) -> Option<mpsc::Sender<Delivery>> {
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
        self.meters[node].count(records_in, records_out);
    }

    /// Instance `instance` of flat node `node` is at watermark `wm`.
    pub(super) fn watermark(&self, node: usize, instance: usize, wm: f64) {
        self.meters[node].watermark(instance, wm);
    }

    /// Counts records flat node `node` found too late for their windows.
    pub(super) fn late(&self, node: usize, records: usize) {
        if records > 0 {
            self.meters[node].late(records);
        }
    }

    /// Records the time per record of a call of flat node `node`.
    pub(super) fn time(&self, node: usize, per_record: Duration) {
        self.meters[node].time(per_record);
    }

    /// Counts a failure of the code of the node named `operator`.
    pub(super) fn error_in(&self, operator: &str) {
        if let Some(i) = self.stats.names().position(|n| n == operator) {
            self.meters[i].error();
        }
    }

    /// What every flat node did so far here, with its inboxes' fill.
    pub fn nodes(&self) -> Vec<NodeStats> {
        let mut nodes: Vec<NodeStats> = self.meters.iter().map(Meter::read).collect();
        for (&(stage, _), inbox) in self.inboxes.lock().expect("inboxes lock").iter() {
            let Some(head) = self.heads[stage] else { continue };
            let node = &mut nodes[head];
            node.capacity += inbox.max_capacity() as u64;
            node.queued += (inbox.max_capacity() - inbox.capacity()) as u64;
        }
        nodes
    }

    /// Seconds it has run: until now, or until it ended.
    pub fn elapsed(&self) -> f64 {
        let end = self.ended_at.lock().expect("ended lock").unwrap_or_else(Instant::now);
        end.duration_since(self.started).as_secs_f64()
    }

    /// The stats so far, with the graph.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.nodes = self.nodes();
        stats.elapsed = self.elapsed();
        stats.checkpoints =
            self.checkpoint_stats.lock().expect("checkpoint stats lock").as_ref().map(|c| c.lock().expect("stats lock").clone());
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

    /// A source's reads, acknowledged when the workflow's sinks settle.
    pub(super) fn acknowledge_on_settle(&self, acks: Arc<dyn super::Acknowledge>) {
        self.acks.lock().expect("acks lock").push(acks);
    }

    /// Acknowledges what the sources here read (the output is in place);
    /// a failure is reported, not fatal: those entries are read again.
    fn acknowledge(&self) {
        for acks in self.acks.lock().expect("acks lock").iter() {
            if let Err(e) = acks.commit() {
                tracing::error!("{e}");
            }
        }
    }

    /// Acknowledges what the sources here read up to checkpoint `id`
    /// (durable now); a failure is reported, not fatal: those entries are
    /// read again.
    pub fn acknowledge_to(&self, id: u64) {
        for acks in self.acks.lock().expect("acks lock").iter() {
            if let Err(e) = acks.commit_to(id) {
                tracing::error!("{e}");
            }
        }
    }

    /// Acknowledges everything the sources here read (the last checkpoint,
    /// taken once they stopped, is durable).
    pub fn acknowledge_all(&self) {
        self.acknowledge();
    }

    /// Gives this process's output files their names (`commit`) or keeps
    /// what they hold as incomplete; returns where partial output was kept.
    /// What the sources read is acknowledged later, once the whole
    /// workflow's output is in place ([`Running::acknowledge_all`]).
    pub fn settle_files(&self, commit: bool) -> Result<Option<String>, String> {
        settle_all(self.files.iter().map(|f| &**f), commit)
    }

    /// Settles this process's files for the final `status` (local mode),
    /// then acknowledges what the sources read if the output is complete.
    pub(super) fn settle_for(&self, status: Status) -> Status {
        let status = settle_for(self.files.iter().map(|f| &**f), status);
        // Under checkpoints, what was read is acknowledged once the last
        // checkpoint is durable, by the driver.
        if matches!(status, Status::Finished | Status::Stopped(_)) && self.barriers.is_none() {
            self.acknowledge();
        }
        status
    }

    /// Publishes the final status.
    pub fn finish(&self, status: Status) {
        self.ended_at.lock().expect("ended lock").get_or_insert_with(Instant::now);
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
