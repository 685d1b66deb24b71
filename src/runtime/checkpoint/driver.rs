//! Runs a workflow's checkpoints in one process (local mode): the
//! [`Coordinator`] says when, the instances hand in their states, this
//! writes them (off the runtime's threads) and then the output they cover,
//! and publishes the workflow's status once its last checkpoint is written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::coordinator::{Action, Coordinator, Event};
use super::output::{Outputs, Parts};
use super::store::Store;
use super::{Kind, Manifest};
use crate::runtime::dataflow::barriers::PartEvent;
use crate::runtime::dataflow::snapshot::{InstanceState, InstanceTaken, Taken};
use crate::runtime::dataflow::Running;
use crate::workflow::stats::CheckpointStats;
use crate::workflow::Status;

/// How long a checkpoint may take before it is given up.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// An ask for a checkpoint now: answered with its id once it completed.
pub type Ask = oneshot::Sender<Result<u64, String>>;

/// What the driver needs to know of its workflow.
pub struct Workflow {
    pub name: String,
    pub graph: Vec<String>,
    pub instances: Vec<u32>,
    /// Per stage, its nodes' names (for errors naming an operator).
    pub names: Vec<Vec<String>>,
    pub interval: Duration,
    pub kept: usize,
    /// The checkpoint it resumed from (0: none).
    pub resumed_from: u64,
}

pub struct Driver {
    wf: Arc<Workflow>,
    store: Arc<dyn Store>,
    outputs: Arc<Mutex<Outputs>>,
    running: Arc<Running>,
    stats: Arc<Mutex<CheckpointStats>>,
}

/// What writing one checkpoint made.
struct Written {
    bytes: u64,
    alignment: Duration,
}

impl Driver {
    pub fn new(wf: Workflow, store: Arc<dyn Store>, outputs: Outputs, running: Arc<Running>) -> Driver {
        let stats = Arc::new(Mutex::new(CheckpointStats { name: wf.name.clone(), ..Default::default() }));
        Driver { wf: Arc::new(wf), store, outputs: Arc::new(Mutex::new(outputs)), running, stats }
    }

    /// What `stats(r)` and `top()` show of the checkpoints.
    pub fn stats(&self) -> Arc<Mutex<CheckpointStats>> {
        self.stats.clone()
    }

    pub async fn run(self, mut asks: mpsc::UnboundedReceiver<Ask>) {
        let Some(ends) = self.running.driver_ends() else { return };
        let (mut events, mut outcome_rx) = (ends.events, ends.outcome);
        let mut coordinator = Coordinator::new(self.wf.interval, TIMEOUT, 1, self.wf.resumed_from + 1, Instant::now());
        let period = if self.wf.interval.is_zero() { Duration::from_millis(100) } else { (self.wf.interval / 4).min(Duration::from_millis(100)) };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut gathered: HashMap<u64, Vec<InstanceTaken>> = HashMap::new();
        let mut last: Option<Vec<InstanceTaken>> = None;
        let mut waiting: Vec<Ask> = Vec::new();
        let mut outcome: Option<Status> = None;
        loop {
            let mut actions = tokio::select! {
                _ = tick.tick() => coordinator.step(Event::Tick(Instant::now())),
                Some(ask) = asks.recv() => {
                    waiting.push(ask);
                    coordinator.step(Event::Asked(Instant::now()))
                }
                Some(event) = events.recv() => match event {
                    PartEvent::Taken { id, instances } => {
                        gathered.insert(id, instances);
                        coordinator.step(Event::Taken { id, part: 0 })
                    }
                    PartEvent::Ended { instances } => {
                        last = Some(instances);
                        Vec::new()
                    }
                },
                status = &mut outcome_rx, if outcome.is_none() => {
                    let status = status.unwrap_or_else(|_| Status::Failed("the workflow's part ended without a status".into()));
                    // What the instances handed in before they ended.
                    while let Ok(event) = events.try_recv() {
                        match event {
                            PartEvent::Taken { id, instances } => { gathered.insert(id, instances); }
                            PartEvent::Ended { instances } => last = Some(instances),
                        }
                    }
                    let clean = matches!(status, Status::Finished | Status::Stopped(_));
                    outcome = Some(status.clone());
                    if !(clean && last.is_some()) {
                        // A failed run keeps what its last checkpoint holds.
                        answer(&mut waiting, Err(format!("the workflow ended: {status}")));
                        self.running.finish(status);
                        return;
                    }
                    coordinator.step(Event::Ended)
                }
            };
            while !actions.is_empty() {
                let mut next = Vec::new();
                for action in actions {
                    match action {
                        Action::Start(id) => {
                            if let Some(b) = self.running.barriers() {
                                b.request(id)
                            }
                        }
                        Action::Store(id) => {
                            let instances = gathered.remove(&id).unwrap_or_default();
                            gathered.retain(|&k, _| k > id);
                            match self.write(id, Kind::Periodic, instances).await {
                                Ok(w) => {
                                    let mut stats = self.stats.lock().expect("stats lock");
                                    (stats.bytes, stats.alignment_ms) = (w.bytes, w.alignment.as_millis() as u64);
                                    drop(stats);
                                    self.running.acknowledge_to(id);
                                    next.extend(coordinator.step(Event::Stored { id, at: Instant::now() }));
                                }
                                Err(reason) => {
                                    let reason = format!("checkpoint {id} of `{}`: {reason}", self.wf.name);
                                    self.stats.lock().expect("stats lock").failed(id, &reason);
                                    answer(&mut waiting, Err(reason.clone()));
                                    self.running.fail(reason);
                                }
                            }
                        }
                        Action::Completed { id, took } => {
                            self.stats.lock().expect("stats lock").completed(id, took);
                            tracing::debug!(workflow = %self.wf.name, "checkpoint {id} completed in {took:?}");
                            answer(&mut waiting, Ok(id));
                        }
                        Action::GiveUp { id, reason } => {
                            tracing::warn!(workflow = %self.wf.name, "checkpoint {id} given up: {reason}");
                            self.stats.lock().expect("stats lock").failed(id, &reason);
                        }
                        Action::StoreLast(id) => {
                            let status = outcome.clone().unwrap_or(Status::Finished);
                            let kind = if matches!(status, Status::Finished) { Kind::Finished } else { Kind::Savepoint };
                            let began = Instant::now();
                            let status = match self.write(id, kind, last.take().unwrap_or_default()).await {
                                Ok(w) => {
                                    self.running.acknowledge_all();
                                    let mut stats = self.stats.lock().expect("stats lock");
                                    (stats.bytes, stats.alignment_ms) = (w.bytes, w.alignment.as_millis() as u64);
                                    drop(stats);
                                    self.stats.lock().expect("stats lock").completed(id, began.elapsed());
                                    answer(&mut waiting, Ok(id));
                                    status
                                }
                                Err(reason) => {
                                    let reason = format!("the last checkpoint ({id}) of `{}`: {reason}", self.wf.name);
                                    answer(&mut waiting, Err(reason.clone()));
                                    Status::Failed(reason)
                                }
                            };
                            self.running.finish(status);
                            return;
                        }
                    }
                }
                actions = next;
            }
        }
    }

    /// Writes checkpoint `id` and then the output it covers; returns its size.
    async fn write(&self, id: u64, kind: Kind, instances: Vec<InstanceTaken>) -> Result<Written, String> {
        let began = Instant::now();
        let taken_at_ms = super::now_ms();
        let (wf, store, outputs) = (self.wf.clone(), self.store.clone(), self.outputs.clone());
        let collected = collected_of(&wf, &instances);
        let alignment = instances.iter().map(|t| t.alignment).max().unwrap_or_default();
        let written = tokio::task::spawn_blocking(move || -> Result<Written, String> {
            let (instances, parts) = lines_of(instances);
            let mut states: Vec<InstanceState> = Vec::with_capacity(instances.len());
            for taken in instances {
                let names = wf.names.get(taken.stage).cloned().unwrap_or_default();
                states.push(taken.into_state(&names).map_err(|e| e.to_string())?);
            }
            states.sort_by_key(|s| (s.stage, s.instance));
            let data = postcard::to_allocvec(&states).map_err(|e| format!("cannot encode the states: {e}"))?;
            let mut outputs = outputs.lock().expect("outputs lock");
            let (marks, saved) = outputs.marks(&parts);
            let manifest = Manifest {
                format: super::FORMAT,
                name: wf.name.clone(),
                id,
                kind,
                taken_at_ms,
                duration_ms: began.elapsed().as_millis() as u64,
                bytes: data.len() as u64,
                checksum: crc32fast::hash(&data),
                lines_bytes: saved.iter().map(|p| p.len() as u64).sum(),
                lines_checksum: super::store::checksum(&saved),
                graph: wf.graph.clone(),
                instances: wf.instances.clone(),
                outputs: marks.clone(),
            };
            store.put(&manifest, &data, &saved).map_err(|e| e.to_string())?;
            if let Err(e) = store.prune(&wf.name, wf.kept) {
                tracing::warn!("{e}");
            }
            // Durable: now its output may be seen.
            outputs.write_saved(&marks, &saved).map_err(|e| e.to_string())?;
            drop(saved);
            for (_, buffer) in parts {
                crate::runtime::dataflow::snapshot::give_back(buffer);
            }
            Ok(Written { bytes: data.len() as u64, alignment })
        })
        .await
        .map_err(|e| format!("the checkpoint writer panicked: {e}"))??;
        for (node, records) in collected {
            self.running.commit_collected(&node, records).map_err(|e| e.to_string())?;
        }
        Ok(written)
    }
}

/// The lines sinks were given, moved out of what the instances took.
fn lines_of(mut instances: Vec<InstanceTaken>) -> (Vec<InstanceTaken>, Parts) {
    let mut parts = Parts::new();
    for taken in &mut instances {
        for (pos, node) in taken.nodes.iter_mut().enumerate() {
            if let Taken::Lines(bytes) = node {
                parts.insert((taken.stage, taken.instance, pos), std::mem::take(bytes));
            }
        }
    }
    (instances, parts)
}

/// What `collect()` sinks were given, by sink, to add to the results once
/// the checkpoint is durable.
fn collected_of(wf: &Workflow, instances: &[InstanceTaken]) -> Vec<(String, Vec<rhai::Dynamic>)> {
    let mut out = Vec::new();
    for taken in instances {
        for (pos, node) in taken.nodes.iter().enumerate() {
            if let Taken::Collected(records) = node {
                if !records.is_empty() {
                    let name = wf.names.get(taken.stage).and_then(|n| n.get(pos)).cloned().unwrap_or_default();
                    out.push((name, records.clone()));
                }
            }
        }
    }
    out
}

fn answer(waiting: &mut Vec<Ask>, result: Result<u64, String>) {
    for ask in waiting.drain(..) {
        let _ = ask.send(result.clone());
    }
}
