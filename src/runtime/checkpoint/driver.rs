//! Runs a workflow's checkpoints in one process (local mode): the
//! [`Coordinator`] says when, the instances hand in their states, this
//! writes them (off the runtime's threads) and then the output they cover,
//! and publishes the workflow's status once its last checkpoint is written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::coordinator::{Action, Coordinator, Event};
use super::output::Outputs;
use super::store::Store;
use super::write::Gathered;
use super::{Kind, Workflow};
use crate::net::value::Value;
use crate::runtime::dataflow::barriers::PartEvent;
use crate::runtime::dataflow::snapshot::InstanceTaken;
use crate::runtime::dataflow::Running;
use crate::workflow::stats::CheckpointStats;
use crate::workflow::Status;

/// How long a checkpoint may take before it is given up.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// An ask for a checkpoint now: answered with its id once it completed.
pub type Ask = oneshot::Sender<Result<u64, String>>;

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
        let period =
            if self.wf.interval.is_zero() { Duration::from_millis(100) } else { (self.wf.interval / 4).min(Duration::from_millis(100)) };
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
                    // What the instances handed in before they ended: a
                    // checkpoint they all passed is written before the last.
                    let mut actions = Vec::new();
                    while let Ok(event) = events.try_recv() {
                        match event {
                            PartEvent::Taken { id, instances } => {
                                gathered.insert(id, instances);
                                actions.extend(coordinator.step(Event::Taken { id, part: 0 }));
                            }
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
                    actions.extend(coordinator.step(Event::Ended));
                    actions
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
                            // A checkpoint given up hands its output on to this one.
                            let mut covered: Vec<u64> = gathered.keys().copied().filter(|&k| k <= id).collect();
                            covered.sort();
                            let instances = covered.iter().filter_map(|k| gathered.remove(k)).collect();
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
                            // What no checkpoint wrote goes before the ends.
                            let mut covered: Vec<u64> = gathered.keys().copied().collect();
                            covered.sort();
                            let mut instances: Vec<Vec<InstanceTaken>> = covered.iter().filter_map(|k| gathered.remove(k)).collect();
                            instances.push(last.take().unwrap_or_default());
                            let status = match self.write(id, kind, instances).await {
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

    /// Writes checkpoint `id` of what its instances handed in (after what
    /// earlier checkpoints, given up, took: their output is this one's);
    /// returns its size.
    async fn write(&self, id: u64, kind: Kind, taken: Vec<Vec<InstanceTaken>>) -> Result<Written, String> {
        let began = Instant::now();
        let taken_at_ms = super::now_ms();
        let (wf, store, outputs) = (self.wf.clone(), self.store.clone(), self.outputs.clone());
        let alignment = taken.last().into_iter().flatten().map(|t| t.alignment).max().unwrap_or_default();
        let written = tokio::task::spawn_blocking(move || -> Result<super::write::Written, String> {
            let gathered = taken.into_iter().map(|instances| Gathered::of(&wf.names, instances)).collect::<Result<Vec<_>, _>>()?;
            let mut outputs = outputs.lock().expect("outputs lock");
            super::write::write(&wf, store.as_ref(), &mut outputs, id, kind, taken_at_ms, began, Gathered::joined(gathered))
        })
        .await
        .map_err(|e| format!("the checkpoint writer panicked: {e}"))??;
        for (node, records) in written.collected {
            let records = records.into_iter().map(Value::into_dynamic).collect();
            self.running.commit_collected(&node, records).map_err(|e| e.to_string())?;
        }
        Ok(Written { bytes: written.bytes, alignment })
    }
}

fn answer(waiting: &mut Vec<Ask>, result: Result<u64, String>) {
    for ask in waiting.drain(..) {
        let _ = ask.send(result.clone());
    }
}
