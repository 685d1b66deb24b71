//! A cluster workflow's checkpoints, run by its master: the coordinator
//! says when; workers are told to start one (`Checkpoint`), send their
//! parts back in pieces (`Snapshot`); once every worker's part is in, the
//! master writes the checkpoint to its store, then the `write_lines`
//! output it covers, and tells the workers (`Committed`) so that their
//! sources acknowledge what they read. When the workflow ends, the parts
//! the workers sent at their end make the last checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Deployed, Event as MasterEvent, Master};
use crate::net::value::Value;
use crate::net::ControlMsg;
use crate::net::WorkerInfo;
use crate::runtime::checkpoint::coordinator::{Action, Coordinator, Event};
use crate::runtime::checkpoint::driver::TIMEOUT;
use crate::runtime::checkpoint::output::{check_written, Outputs, Writes};
use crate::runtime::checkpoint::part::{WorkerPart, WorkerRestore};
use crate::runtime::checkpoint::setup::Prepared;
use crate::runtime::checkpoint::store::Store;
use crate::runtime::checkpoint::write::Gathered;
use crate::runtime::checkpoint::Workflow;
use crate::runtime::checkpoint::{now_ms, Kind};
use crate::runtime::dataflow::Layout;
use crate::script::{DeployOptions, WorkflowRef};
use crate::workflow::stats::CheckpointStats;
use crate::workflow::Plan;
use crate::workflow::Status;

/// What each worker's instances resume from, encoded, in the workers' order.
type Restores = Vec<Vec<u8>>;

/// What `collect()` sinks were given, by sink.
type Collected = Vec<(String, Vec<Value>)>;

pub struct ClusterCheckpoints {
    pub wf: Arc<Workflow>,
    store: Arc<dyn Store>,
    outputs: Arc<Mutex<Outputs>>,
    /// The workers of the workflow, in layout order.
    workers: Vec<String>,
    inner: Mutex<Inner>,
    pub stats: Arc<Mutex<CheckpointStats>>,
    /// One checkpoint is written at a time.
    writing: tokio::sync::Mutex<()>,
    /// Records read when each checkpoint started, in all runs so far.
    pub read_at: Mutex<BTreeMap<u64, u64>>,
}

struct Inner {
    coordinator: Coordinator,
    /// Pieces arriving, by (checkpoint, worker); `None`: the parts' ends.
    arriving: HashMap<(Option<u64>, usize), Vec<u8>>,
    /// Complete parts, by checkpoint and worker.
    complete: HashMap<Option<u64>, BTreeMap<usize, Vec<u8>>>,
    /// When each checkpoint started (for its manifest).
    started: HashMap<u64, (u64, Instant)>,
    /// The last checkpoint is written: nothing is written after it.
    ended: bool,
}

impl ClusterCheckpoints {
    pub fn new(prepared: Prepared, workers: Vec<String>) -> ClusterCheckpoints {
        let wf = prepared.workflow;
        let coordinator = Coordinator::new(wf.interval, TIMEOUT, workers.len(), wf.resumed_from + 1, Instant::now());
        ClusterCheckpoints {
            stats: Arc::new(Mutex::new(CheckpointStats { name: wf.name.clone(), ..Default::default() })),
            wf: Arc::new(wf),
            store: prepared.store,
            outputs: Arc::new(Mutex::new(prepared.outputs)),
            workers,
            inner: Mutex::new(Inner {
                coordinator,
                arriving: HashMap::new(),
                complete: HashMap::new(),
                started: HashMap::new(),
                ended: false,
            }),
            writing: tokio::sync::Mutex::new(()),
            read_at: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn workers(&self) -> &[String] {
        &self.workers
    }

    /// Time passes (or someone asked for one now).
    pub fn step(&self, event: Event) -> Vec<Action> {
        let mut inner = self.inner.lock().expect("checkpoints lock");
        let actions = inner.coordinator.step(event);
        for a in &actions {
            if let Action::Start(id) = a {
                inner.started.insert(*id, (now_ms(), Instant::now()));
            }
        }
        actions
    }

    /// A piece of `worker`'s part of `checkpoint` (`None`: its end).
    pub fn piece(&self, worker: &str, checkpoint: Option<u64>, chunk: Vec<u8>, last: bool) -> Vec<Action> {
        let Some(w) = self.workers.iter().position(|n| n == worker) else { return Vec::new() };
        let mut inner = self.inner.lock().expect("checkpoints lock");
        inner.arriving.entry((checkpoint, w)).or_default().extend_from_slice(&chunk);
        if !last {
            return Vec::new();
        }
        let part = inner.arriving.remove(&(checkpoint, w)).unwrap_or_default();
        inner.complete.entry(checkpoint).or_default().insert(w, part);
        match checkpoint {
            Some(id) => inner.coordinator.step(Event::Taken { id, part: w }),
            None => Vec::new(),
        }
    }

    /// The checkpoint an ask for one now waits for: the one in flight
    /// took its states before the ask, so the next.
    pub fn ask_target(&self) -> u64 {
        let inner = self.inner.lock().expect("checkpoints lock");
        inner.coordinator.in_flight().map_or(0, |n| n + 1)
    }

    /// Whether every worker has sent what its instances held at their end.
    pub fn ends_in(&self) -> bool {
        let inner = self.inner.lock().expect("checkpoints lock");
        inner.complete.get(&None).is_some_and(|parts| parts.len() == self.workers.len())
    }

    /// Writes checkpoint `id` (`None`: the last, of the parts' ends, as
    /// `kind`) and the output it covers; returns its number and what
    /// `collect()` sinks were given, by sink, or `None` when the last
    /// checkpoint was written first and took this one's parts in.
    pub async fn write(&self, id: Option<u64>, kind: Kind) -> Result<Option<(u64, Collected)>, String> {
        let _one = self.writing.lock().await;
        let (number, parts, (taken_at_ms, began)) = {
            let mut inner = self.inner.lock().expect("checkpoints lock");
            if inner.ended {
                return Ok(None);
            }
            // The parts of this checkpoint and of those before it not
            // written (given up, or in flight at the end), in order: a
            // worker's lines before a barrier are only in its part of that
            // checkpoint. The last one takes the parts' ends too.
            let mut covered: Vec<Option<u64>> =
                inner.complete.keys().copied().filter(|k| k.is_some() && (id.is_none() || *k <= id)).collect();
            covered.sort();
            let (number, started) = match id {
                Some(n) => (n, inner.started.remove(&n).unwrap_or((now_ms(), Instant::now()))),
                None => {
                    inner.ended = true;
                    covered.push(None);
                    (inner.coordinator.finish(), (now_ms(), Instant::now()))
                }
            };
            let mut by_worker: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
            for key in covered {
                for (w, bytes) in inner.complete.remove(&key).unwrap_or_default() {
                    by_worker.entry(w).or_default().push(bytes);
                }
            }
            (number, by_worker, started)
        };
        // Every worker's part of the checkpoint itself (or its end) is in.
        if parts.len() != self.workers.len() {
            return Err(format!("checkpoint {number}: {} of {} workers sent their part", parts.len(), self.workers.len()));
        }
        let (wf, store, outputs) = (self.wf.clone(), self.store.clone(), self.outputs.clone());
        let written = tokio::task::spawn_blocking(move || -> Result<(u64, u64, Collected), String> {
            let (mut gathered, mut alignment_ms) = (Gathered::default(), 0);
            for (w, pieces) in parts {
                // A worker's parts in order: the states of the last, the output of all.
                let mut merged = Vec::new();
                for bytes in pieces {
                    let part = WorkerPart::decode(&bytes).map_err(|e| format!("the part of worker {w} does not read: {e}"))?;
                    alignment_ms = alignment_ms.max(part.alignment_ms);
                    merged.push(part.into_gathered(&wf.names));
                }
                gathered.add(Gathered::joined(merged));
            }
            let mut outputs = outputs.lock().expect("outputs lock");
            let w =
                crate::runtime::checkpoint::write::write(&wf, store.as_ref(), &mut outputs, number, kind, taken_at_ms, began, gathered)?;
            Ok((w.bytes, alignment_ms, w.collected))
        })
        .await
        .map_err(|e| format!("the checkpoint writer panicked: {e}"))?
        .map_err(|e| format!("checkpoint {number} of `{}`: {e}", self.wf.name))?;
        let (bytes, alignment_ms, collected) = written;
        let mut stats = self.stats.lock().expect("stats lock");
        (stats.bytes, stats.alignment_ms) = (bytes, alignment_ms);
        if id.is_none() {
            stats.completed(number, began.elapsed());
        }
        Ok(Some((number, collected)))
    }
}

impl Master {
    /// A cluster deploy's checkpoints (`None`: off), with what each worker's
    /// instances resume from, encoded, in the workers' order.
    pub(super) fn prepare_checkpoints(
        &self,
        id: u64,
        plan: &Plan,
        layout: &Layout,
        workers: &[WorkerInfo],
        options: &DeployOptions,
    ) -> Result<Option<(Arc<ClusterCheckpoints>, Restores)>, String> {
        let Some(mut prepared) = crate::runtime::checkpoint::setup::prepare(plan, layout, &self.name, Writes::Lines, options)? else {
            return Ok(None);
        };
        // The master writes the `write_lines` files, each worker its parts.
        let mut paths: Vec<PathBuf> = prepared.outputs.paths().map(PathBuf::from).collect();
        for (i, w) in workers.iter().enumerate() {
            let here = Layout { me: i, ..layout.clone() };
            paths.extend(Outputs::of(plan, &here, &w.name, Writes::Parts).paths().map(PathBuf::from));
        }
        let restored = prepared.from.as_ref().map(|m| m.outputs.clone()).unwrap_or_default();
        if let Some(m) = &prepared.from {
            check_written(m, paths.iter().map(PathBuf::as_path))?;
        }
        let mut restores: Vec<WorkerRestore> =
            (0..workers.len()).map(|_| WorkerRestore { states: Vec::new(), outputs: restored.clone() }).collect();
        for (_, st) in std::mem::take(&mut prepared.resume.states) {
            restores[layout.worker_of(plan, st.stage as usize, st.instance as usize)].states.push(st);
        }
        let restores = restores
            .iter()
            .zip(workers)
            .map(|(r, w)| postcard::to_allocvec(r).map_err(|e| format!("cannot encode what {} resumes from: {e}", w.name)))
            .collect::<Result<Vec<_>, _>>()?;
        if prepared.resumed() {
            match self.notices.lock().expect("notices lock").clone() {
                Some(notices) => notices(&prepared.note),
                None => eprintln!("{}", prepared.note),
            }
        }
        tracing::info!(workflow = id, "{}", prepared.note);
        let names = workers.iter().map(|w| w.name.clone()).collect();
        Ok(Some((Arc::new(ClusterCheckpoints::new(prepared, names)), restores)))
    }

    /// Carries out what a workflow's checkpoints call for.
    pub(super) fn checkpoint_actions(&self, id: u64, cp: &Arc<ClusterCheckpoints>, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Start(n) => {
                    // What was read when its barriers left: what a restart
                    // from it reads again is what was read since.
                    if let Some(wf) = self.current(id) {
                        cp.read_at.lock().expect("read lock").insert(n, wf.read());
                    }
                    for w in cp.workers() {
                        self.send(w, ControlMsg::Checkpoint { id, checkpoint: n });
                    }
                }
                Action::Store(n) => {
                    let (Some(me), cp) = (self.me.upgrade(), cp.clone()) else { return };
                    self.handle.spawn(async move {
                        match cp.write(Some(n), crate::runtime::checkpoint::Kind::Periodic).await {
                            // The last checkpoint took it in.
                            Ok(None) => {}
                            Ok(Some((_, collected))) => {
                                for (sink, values) in collected {
                                    // Durable: results, even if the run has failed since.
                                    if let Some(wf) = me.deployed_of(id) {
                                        me.collected(id, &wf, sink, values);
                                    }
                                }
                                for w in cp.workers() {
                                    me.send(w, ControlMsg::Committed { id, checkpoint: Some(n) });
                                }
                                let more = cp.step(Event::Stored { id: n, at: std::time::Instant::now() });
                                me.checkpoint_actions(id, &cp, more);
                            }
                            Err(reason) => {
                                cp.stats.lock().expect("stats lock").failed(n, &reason);
                                me.step(MasterEvent::WorkerFailed { id, worker: me.name.clone(), reason });
                            }
                        }
                    });
                }
                Action::Completed { id: n, took } => cp.stats.lock().expect("stats lock").completed(n, took),
                Action::GiveUp { id: n, reason } => {
                    tracing::warn!(workflow = id, "checkpoint {n} given up: {reason}");
                    cp.stats.lock().expect("stats lock").failed(n, &reason);
                }
                // The master writes the last one when the workflow ends (`set_status`).
                Action::StoreLast(_) => {}
            }
        }
    }

    /// The workflow ended well: its workers' parts make its last
    /// checkpoint (a savepoint when it was stopped); the status it ends with.
    pub(super) async fn last_checkpoint(&self, id: u64, cp: &ClusterCheckpoints, status: Status) -> Status {
        // Every worker sends its part's end before it reports its end.
        let deadline = tokio::time::Instant::now() + crate::settings::STOP_DEADLINE;
        while !cp.ends_in() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let kind = if matches!(status, Status::Finished) {
            crate::runtime::checkpoint::Kind::Finished
        } else {
            crate::runtime::checkpoint::Kind::Savepoint
        };
        match cp.write(None, kind).await {
            Ok(None) => status,
            Ok(Some((_, collected))) => {
                for (sink, values) in collected {
                    if let Some(wf) = self.deployed_of(id) {
                        self.collected(id, &wf, sink, values);
                    }
                }
                for w in cp.workers() {
                    self.send(w, ControlMsg::Committed { id, checkpoint: None });
                }
                status
            }
            Err(reason) => Status::Failed(format!("the last checkpoint: {reason}")),
        }
    }

    /// Ticks a workflow's checkpoints until it has ended.
    pub(super) fn tick_checkpoints(&self, id: u64, cp: Arc<ClusterCheckpoints>, deployed: &Arc<Deployed>) {
        let (Some(me), deployed) = (self.me.upgrade(), deployed.clone()) else { return };
        self.handle.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let mut status = deployed.status.subscribe();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = status.wait_for(|s| s.is_done()) => return,
                }
                if !deployed.checkpoints().is_some_and(|c| Arc::ptr_eq(&c, &cp)) {
                    // Its run failed: it recovers with other checkpoints.
                    return;
                }
                let actions = cp.step(Event::Tick(std::time::Instant::now()));
                me.checkpoint_actions(id, &cp, actions);
            }
        });
    }

    /// `checkpoint(r)`: one now; its id once it is durable.
    pub(super) fn checkpoint_now(&self, r: WorkflowRef) -> Result<u64, String> {
        let wf = self.get(r)?;
        let Some(cp) = wf.checkpoints() else {
            return Err(format!("workflow #{} runs without checkpoints (checkpoint_interval 0)", r.id));
        };
        let status = wf.status.borrow().clone();
        if status.is_done() {
            return Err(format!("workflow #{} has ended ({status})", r.id));
        }
        let before = cp.stats.lock().expect("stats lock").last_id.unwrap_or(0);
        let target = cp.ask_target();
        let actions = cp.step(Event::Asked(std::time::Instant::now()));
        self.checkpoint_actions(wf.run(), &cp, actions);
        let deadline = std::time::Instant::now() + crate::runtime::checkpoint::driver::TIMEOUT;
        loop {
            let stats = cp.stats.lock().expect("stats lock").clone();
            match stats.last_id {
                Some(done) if done >= target && done > before => return Ok(done),
                _ => {}
            }
            if wf.status.borrow().is_done() {
                return Err(format!("workflow #{} ended before its checkpoint completed", r.id));
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "no checkpoint completed within {}",
                    crate::settings::seconds(crate::runtime::checkpoint::driver::TIMEOUT)
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
