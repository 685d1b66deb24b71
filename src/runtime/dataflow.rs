//! Running a planned workflow: one thread per stage instance, bounded
//! channels of batches between stages, explicit end-of-stream markers on every
//! edge. Instances are threads, not tokio tasks: they are CPU-bound loops, and
//! tokio's scheduler keeps a woken consumer on its producer's worker (its LIFO
//! slot), which left one of two cores idle in the word count. The channels are
//! tokio's, so network tasks can feed the same inboxes asynchronously.
//!
//! Inside a stage the nodes run batch by batch in one loop: a batch enters
//! the head node, each node's output is handed straight to the next node of
//! the stage (no channel) or buffered for an exchange to another stage.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rhai::{Array, Dynamic, Engine, FnPtr, ImmutableString, AST};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::script::{new_engine, Code, EngineEnv, Output};
use crate::workflow::key::{Key, KeyMap};
use crate::workflow::model::FlatEdge;
use crate::workflow::{Exchange, Func, Operator, Plan, SourceSpec, Status};

/// Records per batch: large enough to amortize a channel send, small enough
/// to keep latency and memory low.
pub const BATCH: usize = 1024;
/// Batches a stage instance's inbox holds before senders wait (back-pressure).
pub const INBOX_BATCHES: usize = 8;
/// Records a per-record function runs on before its output moves on.
const CHUNK: usize = 32;
/// The longest a source holds a partial batch: a slow generator's records
/// still flow within this bound.
const BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(20);
/// How often an idle `tcp_source` looks up to see whether it should stop.
const TCP_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// What travels on an edge between stages.
#[derive(Debug)]
pub enum Msg {
    Records(Vec<Dynamic>),
    /// Records routed by key, with the key computed once by the sender.
    Keyed(Vec<(Key, Dynamic)>),
    /// Partial counts per key, for a `count`: the sender combines records of
    /// the same key before they cross, so a word travels once per batch of
    /// counts rather than once per occurrence.
    Counts(Vec<(Key, i64)>),
    /// The sender of one edge has no more records.
    End,
    /// The workflow failed: stop at once.
    Abort,
}

/// Where this process's instances sit in the whole: `workers` processes,
/// this one is number `me`, each with `slots` instances of every parallel
/// stage. Sources run on worker 0. Local mode is one worker.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub workers: usize,
    pub me: usize,
    pub slots: usize,
}

impl Layout {
    pub fn local(slots: usize) -> Layout {
        Layout { workers: 1, me: 0, slots: slots.max(1) }
    }

    /// Instances of stage `s` in the whole cluster.
    pub fn instances(&self, plan: &Plan, s: usize) -> usize {
        if plan.stages[s].parallel {
            self.workers * self.slots
        } else {
            1
        }
    }

    /// The worker running instance `g` of stage `s`.
    pub fn worker_of(&self, plan: &Plan, s: usize, g: usize) -> usize {
        if plan.stages[s].parallel {
            g / self.slots
        } else {
            0
        }
    }

    /// The instances of stage `s` that run here.
    pub fn local_instances(&self, plan: &Plan, s: usize) -> std::ops::Range<usize> {
        match (plan.stages[s].parallel, self.me) {
            (true, me) => me * self.slots..(me + 1) * self.slots,
            (false, 0) => 0..1,
            (false, _) => 0..0,
        }
    }
}

/// How records leave this process: the cluster's data links and the path
/// to the master for collected results.
pub trait Remote: Send + Sync {
    /// Sends to instance `instance` of stage `stage` on worker `worker`;
    /// blocks while the link is full.
    fn send(&self, worker: usize, stage: usize, instance: usize, msg: Msg) -> Result<(), String>;
    /// Hands what a `collect()` sink received to the master.
    fn collect(&self, sink: &str, records: &[Dynamic]) -> Result<(), String>;
}

/// An instance's inbox, here or on another worker.
#[derive(Clone)]
enum Inbox {
    Local(mpsc::Sender<Msg>),
    Remote { worker: usize, stage: usize, instance: usize },
}

/// A workflow being run, shared between the runtime and its tasks.
pub struct Running {
    status: watch::Sender<Status>,
    /// Cancelled to stop gracefully: sources stop, everything drains.
    stop: CancellationToken,
    /// Set on failure: instances stop, and script calls in progress give up.
    abort_flag: Arc<AtomicBool>,
    collected: Vec<(String, Arc<Mutex<Vec<Dynamic>>>)>,
    /// The inboxes of this process's instances, by (stage, instance), for
    /// records arriving from other workers; emptied when the workflow ends.
    inboxes: Mutex<HashMap<(usize, usize), mpsc::Sender<Msg>>>,
}

impl Running {
    /// The inbox of a local instance, for records from the network.
    pub fn inbox(&self, stage: usize, instance: usize) -> Option<mpsc::Sender<Msg>> {
        self.inboxes.lock().expect("inboxes lock").get(&(stage, instance)).cloned()
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Asks for a graceful stop; the status becomes `stopped` once drained.
    pub fn request_stop(&self) {
        self.stop.cancel();
    }

    fn aborted(&self) -> bool {
        self.abort_flag.load(Ordering::Relaxed)
    }

    /// Stops everything now, marking the workflow failed with `reason`.
    pub fn fail(&self, reason: String) {
        self.status.send_if_modified(|s| {
            if s.is_done() {
                return false;
            }
            *s = Status::Failed(reason);
            true
        });
        self.abort_flag.store(true, Ordering::Relaxed);
        // Wake instances waiting for input; a full inbox's owner is busy and
        // sees the flag after its current batch.
        for inbox in self.inboxes.lock().expect("inboxes lock").values() {
            let _ = inbox.try_send(Msg::Abort);
        }
    }

    /// What `collect()` sinks gathered: one sink, or the one named `sink`.
    pub fn results(&self, sink: Option<&str>) -> Result<Array, String> {
        let names: Vec<&str> = self.collected.iter().map(|(n, _)| n.as_str()).collect();
        let chosen = super::choose_sink(&names, sink)?;
        Ok(self.collected[chosen].1.lock().expect("collect lock").clone())
    }
}

/// What every instance of a workflow starts from.
struct Common {
    code: Code,
    env: EngineEnv,
    running: Arc<Running>,
}

/// What one instance (one thread) runs with. Each has its own engine and its
/// own AST: calls through a shared one contend on its reference counts, which
/// cost the word count a third of its throughput on two cores.
struct Shared {
    engine: Engine,
    ast: AST,
    /// Script functions of `ast`: name to a bit set of their arities.
    scripts: HashMap<String, u64>,
    scope: std::cell::RefCell<rhai::Scope<'static>>,
    output: Output,
    running: Arc<Running>,
}

impl Shared {
    fn new(common: &Common) -> Result<Shared, String> {
        let engine = new_engine(&common.env);
        let ast = if common.code.sources.is_empty() { (*common.code.ast).clone() } else { common.code.compile(&engine)? };
        let mut scripts: HashMap<String, u64> = HashMap::new();
        for f in ast.iter_functions() {
            *scripts.entry(f.name.to_string()).or_default() |= arity_bit(f.params.len());
        }
        let scope = std::cell::RefCell::new(rhai::Scope::new());
        Ok(Shared { engine, ast, scripts, scope, output: common.env.output.clone(), running: common.running.clone() })
    }

    /// Calls `f` by name in this instance's own AST, captured values first:
    /// not through a `FnPtr`, whose closure definition would be shared
    /// between threads (and Rhai makes no pointer to an `anon$` function
    /// from its name).
    fn call<const N: usize>(&self, f: &Func, args: [Dynamic; N]) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        let arity = f.curry.len() + N;
        let all = CallArgs { curry: &f.curry, args };
        if self.scripts.get(f.name.as_str()).is_some_and(|arities| arities & arity_bit(arity) != 0) {
            let options = rhai::CallFnOptions::new().eval_ast(false).rewind_scope(true);
            return self.engine.call_fn_with_options(options, &mut self.scope.borrow_mut(), &self.ast, &f.name, all);
        }
        // A native function named with Fn("name").
        FnPtr::new(f.name.as_str())?.call::<Dynamic>(&self.engine, &self.ast, all)
    }
}

fn arity_bit(arity: usize) -> u64 {
    1 << arity.min(63)
}

/// A call's arguments, captured values first, handed to Rhai without
/// gathering them in a vector first (a call per record).
struct CallArgs<'a, const N: usize> {
    curry: &'a [Dynamic],
    args: [Dynamic; N],
}

impl<const N: usize> rhai::FuncArgs for CallArgs<'_, N> {
    fn parse<A: Extend<Dynamic>>(self, args: &mut A) {
        args.extend(self.curry.iter().cloned());
        args.extend(self.args);
    }
}

/// Starts this process's part of `plan`. Files that sinks write are created
/// here, so a bad path fails the deploy, not the run.
pub fn start(plan: Plan, code: Code, layout: Layout, env: &EngineEnv, remote: Option<Arc<dyn Remote>>) -> Result<Arc<Running>, String> {
    let abort_flag = Arc::new(AtomicBool::new(false));
    let mut engine_env = env.clone();
    engine_env.abort = abort_flag.clone();

    let mut files: HashMap<usize, Arc<Mutex<BufWriter<File>>>> = HashMap::new();
    let mut collected = Vec::new();
    let mut collect_of: HashMap<usize, Arc<Mutex<Vec<Dynamic>>>> = HashMap::new();
    for (i, node) in plan.graph.nodes.iter().enumerate() {
        match &node.op {
            Operator::WriteLines(path) => {
                let file = File::create(path).map_err(|e| format!("{}: cannot create {}: {e}", node.name, path.display()))?;
                files.insert(i, Arc::new(Mutex::new(BufWriter::with_capacity(64 * 1024, file))));
            }
            Operator::Collect => {
                let sink = Arc::new(Mutex::new(Vec::new()));
                collected.push((node.name.clone(), sink.clone()));
                collect_of.insert(i, sink);
            }
            Operator::Source(SourceSpec::Lines(path)) if !path.is_file() => {
                return Err(format!("{}: cannot read {}: no such file", node.name, path.display()));
            }
            _ => {}
        }
    }

    let (status, _) = watch::channel(Status::Running);
    let running = Arc::new(Running { status, stop: CancellationToken::new(), abort_flag, collected, inboxes: Mutex::new(HashMap::new()) });
    let common = Arc::new(Common { code, env: engine_env, running: running.clone() });

    // An inbox per instance of every stage, here or remote.
    let mut inboxes: Vec<Vec<Inbox>> = Vec::new();
    let mut receivers: HashMap<(usize, usize), mpsc::Receiver<Msg>> = HashMap::new();
    for s in 0..plan.stages.len() {
        let local = layout.local_instances(&plan, s);
        let mut stage_inboxes = Vec::new();
        for g in 0..layout.instances(&plan, s) {
            if local.contains(&g) {
                let (tx, rx) = mpsc::channel(INBOX_BATCHES);
                running.inboxes.lock().expect("inboxes lock").insert((s, g), tx.clone());
                receivers.insert((s, g), rx);
                stage_inboxes.push(Inbox::Local(tx));
            } else {
                stage_inboxes.push(Inbox::Remote { worker: layout.worker_of(&plan, s, g), stage: s, instance: g });
            }
        }
        inboxes.push(stage_inboxes);
    }
    if remote.is_none() && inboxes.iter().flatten().any(|i| matches!(i, Inbox::Remote { .. })) {
        return Err("internal: a remote instance without a network".into());
    }
    let sinks = Sinks { files: &files, collect_of: &collect_of, remote: remote.clone() };

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    for s in 0..plan.stages.len() {
        let expected_ends: usize = plan.inputs_of(s).map(|e| layout.instances(&plan, plan.stage_of[e.from])).sum();
        for instance in layout.local_instances(&plan, s) {
            let stage = StageRun::new(&plan, s, instance, &layout, &inboxes, &sinks);
            let inbox = receivers.remove(&(s, instance)).expect("one receiver per instance");
            let common = common.clone();
            let done = done_tx.clone();
            let name = format!("skitter:{}", plan.graph.nodes[plan.stages[s].nodes[0]].name);
            let spawned = std::thread::Builder::new().name(name).spawn(move || {
                lower_priority();
                let node = stage.names[0].clone();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let shared = Shared::new(&common)?;
                    stage.run(&shared, inbox, expected_ends)
                }))
                .unwrap_or_else(|_| Err(format!("operator `{node}` panicked")));
                let _ = done.send(result);
            });
            if let Err(e) = spawned {
                running.fail(format!("cannot start a thread: {e}"));
                return Err(format!("cannot start a thread: {e}"));
            }
        }
    }
    drop(done_tx);
    drop(inboxes);
    drop(sinks);

    let watcher = running.clone();
    tokio::spawn(async move {
        // A task that panicked drops its sender without a result.
        let mut failure = None;
        while let Some(result) = done_rx.recv().await {
            if let Err(reason) = result {
                if failure.is_none() {
                    watcher.fail(reason.clone());
                    failure = Some(reason);
                }
            }
        }
        watcher.inboxes.lock().expect("inboxes lock").clear();
        let mut flush_error = None;
        for (i, file) in &files {
            if let Err(e) = file.lock().expect("file lock").flush() {
                flush_error.get_or_insert(format!("{}: cannot write: {e}", plan.graph.nodes[*i].name));
            }
        }
        if let Some(reason) = flush_error {
            watcher.fail(reason);
        }
        let stopped = watcher.stop.is_cancelled();
        watcher.status.send_if_modified(|s| {
            if s.is_done() {
                return false;
            }
            *s = if stopped { Status::Stopped } else { Status::Finished };
            true
        });
    });
    Ok(running)
}

/// Where a node's output port goes.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// Another node of the same stage (index into the stage's nodes).
    Local(usize),
    /// An exchange to another stage (index into the outlets).
    Outlet(usize),
}

/// One node of a stage, with its state.
enum Step {
    Source(SourceSpec),
    Map(Func),
    FlatMap(Func),
    Filter(Func),
    KeyedReduce { reduce: Func, initial: Dynamic, state: KeyMap<Dynamic> },
    Count { counts: KeyMap<i64> },
    Print(String),
    WriteLines(Arc<Mutex<BufWriter<File>>>),
    Collect(CollectSink),
}

/// Where a `collect()` instance puts records: here, or with the master.
enum CollectSink {
    Local(Arc<Mutex<Vec<Dynamic>>>),
    Remote(Arc<dyn Remote>, String),
}

/// The shared sinks instances are built with.
struct Sinks<'a> {
    files: &'a HashMap<usize, Arc<Mutex<BufWriter<File>>>>,
    collect_of: &'a HashMap<usize, Arc<Mutex<Vec<Dynamic>>>>,
    remote: Option<Arc<dyn Remote>>,
}

/// The sending side of one edge to another stage.
struct Outlet {
    exchange: Exchange,
    /// For `Hash`: the key function (`None`: the record is its own key).
    key: Option<Func>,
    /// For `Hash`: whether the target needs the record beside its key
    /// (a count needs only the key, so the record is not copied).
    with_record: bool,
    /// For a `count` target: counts per key and target, combined here.
    partial: Option<Vec<KeyMap<i64>>>,
    targets: Vec<Inbox>,
    remote: Option<Arc<dyn Remote>>,
    records: Vec<Vec<Dynamic>>,
    keyed: Vec<Vec<(Key, Dynamic)>>,
    next: usize,
    instance: usize,
}

impl Outlet {
    fn push(&mut self, shared: &Shared, records: Vec<Dynamic>) -> Result<(), String> {
        match self.exchange {
            Exchange::Spread => self.records[0].extend(records),
            Exchange::Forward => {
                let i = self.instance % self.targets.len();
                self.records[i].extend(records)
            }
            Exchange::Hash => {
                let n = self.targets.len() as u64;
                for rec in records {
                    let (key, rec) = match (&self.key, self.with_record) {
                        (None, false) => (Key::new(rec), Dynamic::UNIT),
                        (None, true) => (Key::new(rec.clone()), rec),
                        (Some(f), keep) => {
                            let key = shared
                                .call(f, [rec.clone()])
                                .map_err(|e| format!("key function: {}", crate::script::session::eval_error(&e, None)))?;
                            (Key::new(key), if keep { rec } else { Dynamic::UNIT })
                        }
                    };
                    let target = (key.group() % n) as usize;
                    match &mut self.partial {
                        Some(partial) => *partial[target].entry(key).or_insert(0) += 1,
                        None => self.keyed[target].push((key, rec)),
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends every buffer holding at least `min` records.
    fn flush(&mut self, running: &Running, min: usize) -> Result<(), ()> {
        let min = min.max(1);
        for i in 0..self.records.len() {
            while self.records[i].len() >= min {
                let take = self.records[i].len().min(BATCH.max(min));
                let batch: Vec<Dynamic> = self.records[i].drain(..take).collect();
                let target = match self.exchange {
                    Exchange::Spread => {
                        self.next = (self.next + 1) % self.targets.len();
                        self.next
                    }
                    _ => i,
                };
                self.send(running, target, Msg::Records(batch))?;
            }
        }
        for i in 0..self.keyed.len() {
            if self.keyed[i].len() >= min {
                let batch = std::mem::take(&mut self.keyed[i]);
                self.send(running, i, Msg::Keyed(batch))?;
            }
        }
        let ready: Vec<(usize, Vec<(Key, i64)>)> = match &mut self.partial {
            Some(partial) => partial
                .iter_mut()
                .enumerate()
                .filter(|(_, counts)| counts.len() >= min)
                // Drained, not taken: the map keeps its table for the next batch.
                .map(|(i, counts)| (i, counts.drain().collect()))
                .collect(),
            None => Vec::new(),
        };
        for (i, batch) in ready {
            self.send(running, i, Msg::Counts(batch))?;
        }
        Ok(())
    }

    fn end(&mut self, running: &Running) -> Result<(), ()> {
        self.flush(running, 1)?;
        for t in 0..self.targets.len() {
            self.send(running, t, Msg::End)?;
        }
        Ok(())
    }

    fn send(&self, running: &Running, target: usize, msg: Msg) -> Result<(), ()> {
        if running.aborted() {
            return Err(());
        }
        match &self.targets[target] {
            Inbox::Local(to) => to.blocking_send(msg).map_err(|_| ()),
            Inbox::Remote { worker, stage, instance } => {
                let remote = self.remote.as_ref().ok_or(())?;
                remote.send(*worker, *stage, *instance, msg).map_err(|reason| running.fail(reason))
            }
        }
    }
}

/// One instance of one stage.
struct StageRun {
    names: Vec<String>,
    steps: Vec<Step>,
    /// Per node, per output port: where its records go.
    routes: Vec<Vec<Vec<Target>>>,
    outlets: Vec<Outlet>,
}

impl StageRun {
    fn new(plan: &Plan, s: usize, instance: usize, layout: &Layout, inboxes: &[Vec<Inbox>], sinks: &Sinks) -> StageRun {
        let stage = &plan.stages[s];
        let position = |n: usize| stage.nodes.iter().position(|&m| m == n);
        let mut outlets = Vec::new();
        let mut routes = Vec::new();
        let mut steps = Vec::new();
        let mut names = Vec::new();
        for &n in &stage.nodes {
            let node = &plan.graph.nodes[n];
            names.push(node.name.clone());
            steps.push(match &node.op {
                Operator::Source(spec) => Step::Source(spec.clone()),
                Operator::Map(f) => Step::Map(f.clone()),
                Operator::FlatMap(f) => Step::FlatMap(f.clone()),
                Operator::Filter(f) => Step::Filter(f.clone()),
                Operator::KeyedReduce { reduce, initial, .. } => {
                    Step::KeyedReduce { reduce: reduce.clone(), initial: initial.clone(), state: KeyMap::default() }
                }
                Operator::Count { .. } => Step::Count { counts: KeyMap::default() },
                Operator::Print(label) => Step::Print(if label.is_empty() { String::new() } else { format!("{label}: ") }),
                Operator::WriteLines(_) => Step::WriteLines(sinks.files[&n].clone()),
                Operator::Collect => Step::Collect(match &sinks.remote {
                    Some(remote) => CollectSink::Remote(remote.clone(), node.name.clone()),
                    None => CollectSink::Local(sinks.collect_of[&n].clone()),
                }),
            });
            let mut ports = vec![Vec::new(); node.op.out_ports().len()];
            for e in plan.graph.edges.iter().filter(|e| e.from == n) {
                ports[e.port].push(match position(e.to) {
                    Some(local) if plan.is_local(e) => Target::Local(local),
                    _ => {
                        outlets.push(outlet(plan, e, instance, layout, inboxes, sinks.remote.clone()));
                        Target::Outlet(outlets.len() - 1)
                    }
                });
            }
            routes.push(ports);
        }
        StageRun { names, steps, routes, outlets }
    }

    fn run(mut self, shared: &Shared, inbox: mpsc::Receiver<Msg>, expected_ends: usize) -> Result<(), String> {
        let running = shared.running.clone();
        let result =
            if matches!(self.steps[0], Step::Source(_)) { self.run_source(shared) } else { self.run_inbox(shared, inbox, expected_ends) };
        match result {
            Ok(()) => {
                self.finish(shared)?;
                self.flush(&running, 1)?;
                for o in &mut self.outlets {
                    o.end(&running).map_err(|_| aborted())?;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn run_inbox(&mut self, shared: &Shared, mut inbox: mpsc::Receiver<Msg>, expected_ends: usize) -> Result<(), String> {
        let running = shared.running.clone();
        let mut ends = 0;
        while ends < expected_ends {
            // On abort, upstream instances exit and drop their senders, so
            // this wakes up with `None` at the latest.
            let msg = inbox.blocking_recv();
            if running.aborted() {
                return Err(aborted());
            }
            match msg {
                Some(Msg::Records(records)) => self.process(shared, Input::Records(records))?,
                Some(Msg::Keyed(records)) => self.process(shared, Input::Keyed(records))?,
                Some(Msg::Counts(counts)) => self.add_counts(counts)?,
                Some(Msg::Abort) => return Err(aborted()),
                Some(Msg::End) => ends += 1,
                None => return Err(format!("{}: an upstream stage ended without an end-of-stream marker", self.names[0])),
            }
            // Hold records back only while more input is waiting: an idle
            // stage sends what it has, so a slow stream still flows.
            let min = if inbox.is_empty() { 1 } else { BATCH };
            self.flush(&running, min)?;
        }
        Ok(())
    }

    fn run_source(&mut self, shared: &Shared) -> Result<(), String> {
        let running = shared.running.clone();
        let Step::Source(spec) = &self.steps[0] else { unreachable!("checked by caller") };
        let mut reader = SourceReader::open(spec.clone(), &self.names[0])?;
        loop {
            if running.aborted() {
                return Err(aborted());
            }
            if running.stop.is_cancelled() {
                return Ok(());
            }
            let batch = reader.next_batch(shared, &running).map_err(|e| format!("{}: {e}", self.names[0]))?;
            let Some(batch) = batch else { return Ok(()) };
            let full = batch.len() >= BATCH;
            self.route(shared, 0, 0, batch)?;
            self.flush(&running, if full { BATCH } else { 1 })?;
        }
    }

    fn flush(&mut self, running: &Running, min: usize) -> Result<(), String> {
        for o in &mut self.outlets {
            o.flush(running, min).map_err(|_| aborted())?;
        }
        Ok(())
    }

    /// Runs one input batch through the stage's nodes, in order.
    fn process(&mut self, shared: &Shared, input: Input) -> Result<(), String> {
        let mut pending: Vec<Vec<Dynamic>> = vec![Vec::new(); self.steps.len()];
        match input {
            Input::Records(records) => pending[0] = records,
            Input::Keyed(pairs) if matches!(self.steps[0], Step::Count { .. } | Step::KeyedReduce { .. }) => {
                self.apply_keyed(shared, pairs)?
            }
            Input::Keyed(pairs) => pending[0] = pairs.into_iter().map(|(_, r)| r).collect(),
        }
        self.run_nodes(shared, 0, &mut pending)
    }

    /// Runs nodes `from..` of the stage on what is pending for them, in order.
    fn run_nodes(&mut self, shared: &Shared, from: usize, pending: &mut [Vec<Dynamic>]) -> Result<(), String> {
        for i in from..self.steps.len() {
            let batch = std::mem::take(&mut pending[i]);
            if batch.is_empty() {
                continue;
            }
            // A function's output goes on in small chunks, while the records
            // it made are still in the cache: keying or sending a whole
            // batch's output afterwards reads them all back from memory.
            // Other nodes take the batch as it is.
            let per_record = matches!(self.steps[i], Step::Map(_) | Step::FlatMap(_) | Step::Filter(_));
            if !per_record || batch.len() <= CHUNK {
                self.apply_and_deliver(shared, i, batch, pending)?;
                continue;
            }
            let mut records = batch.into_iter();
            while records.len() > 0 {
                let part: Vec<Dynamic> = records.by_ref().take(CHUNK).collect();
                self.apply_and_deliver(shared, i, part, pending)?;
            }
        }
        Ok(())
    }

    /// Runs node `i` on `batch` and sends its output on.
    fn apply_and_deliver(&mut self, shared: &Shared, i: usize, batch: Vec<Dynamic>, pending: &mut [Vec<Dynamic>]) -> Result<(), String> {
        let outputs = self.apply(shared, i, batch)?;
        for (port, records) in outputs.into_iter().enumerate() {
            self.deliver(shared, i, port, records, pending)?;
        }
        Ok(())
    }

    /// Sends a node's output on: to later nodes of the stage or to outlets.
    fn deliver(
        &mut self,
        shared: &Shared,
        node: usize,
        port: usize,
        records: Vec<Dynamic>,
        pending: &mut [Vec<Dynamic>],
    ) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        let targets = self.routes[node][port].clone();
        let mut records = Some(records);
        for (k, target) in targets.iter().enumerate() {
            let batch = if k + 1 == targets.len() {
                records.take().expect("moved only on the last target")
            } else {
                records.clone().expect("still here before the last target")
            };
            match *target {
                Target::Local(j) => pending[j].extend(batch),
                Target::Outlet(o) => self.outlets[o].push(shared, batch).map_err(|e| format!("{}: {e}", self.names[node]))?,
            }
        }
        Ok(())
    }

    /// Delivers a batch produced outside `process` (by a source or at the end).
    fn route(&mut self, shared: &Shared, node: usize, port: usize, records: Vec<Dynamic>) -> Result<(), String> {
        let mut pending: Vec<Vec<Dynamic>> = vec![Vec::new(); self.steps.len()];
        self.deliver(shared, node, port, records, &mut pending)?;
        self.run_nodes(shared, node + 1, &mut pending)
    }

    fn fail_at(&self, i: usize, record: &Dynamic, err: &rhai::EvalAltResult) -> String {
        let mut shown = format!("{record:?}");
        if shown.len() > 80 {
            let cut = (0..=77).rev().find(|&c| shown.is_char_boundary(c)).unwrap_or(0);
            shown.truncate(cut);
            shown.push_str("...");
        }
        let e = crate::script::session::eval_error(err, None);
        format!("operator `{}` failed on record {shown}: {}", self.names[i], e.message)
    }

    /// Runs node `i` on a batch; returns the records for each output port.
    fn apply(&mut self, shared: &Shared, i: usize, batch: Vec<Dynamic>) -> Result<Vec<Vec<Dynamic>>, String> {
        match &mut self.steps[i] {
            Step::Source(_) => Ok(vec![batch]),
            Step::Map(f) => {
                let mut out = Vec::with_capacity(batch.len());
                for rec in batch {
                    match shared.call(f, [rec.clone()]) {
                        Ok(v) => out.push(v),
                        Err(e) => return Err(self.fail_at(i, &rec, &e)),
                    }
                }
                Ok(vec![out])
            }
            Step::FlatMap(f) => {
                let mut out = Vec::with_capacity(batch.len() * 4);
                for rec in batch {
                    match shared.call(f, [rec.clone()]) {
                        Ok(v) => match v.try_cast::<Array>() {
                            Some(items) => out.extend(items),
                            None => {
                                return Err(format!(
                                    "operator `{}`: the function must return an array (records to emit), on record {rec:?}",
                                    self.names[i]
                                ))
                            }
                        },
                        Err(e) => return Err(self.fail_at(i, &rec, &e)),
                    }
                }
                Ok(vec![out])
            }
            Step::Filter(f) => {
                let (mut accept, mut reject) = (Vec::new(), Vec::new());
                for rec in batch {
                    match shared.call(f, [rec.clone()]) {
                        Ok(v) => match v.as_bool() {
                            Ok(true) => accept.push(rec),
                            Ok(false) => reject.push(rec),
                            Err(t) => {
                                return Err(format!(
                                    "operator `{}`: the function must return a bool, got {t} on record {rec:?}",
                                    self.names[i]
                                ))
                            }
                        },
                        Err(e) => return Err(self.fail_at(i, &rec, &e)),
                    }
                }
                Ok(vec![accept, reject])
            }
            Step::Print(prefix) => {
                let mut text = String::with_capacity(batch.len() * 24);
                for rec in &batch {
                    use std::fmt::Write as _;
                    let _ = writeln!(text, "{prefix}{rec:?}");
                }
                (shared.output)(&text);
                Ok(vec![batch])
            }
            Step::WriteLines(file) => {
                let mut text = String::with_capacity(batch.len() * 16);
                for rec in &batch {
                    use std::fmt::Write as _;
                    let _ = writeln!(text, "{rec}");
                }
                file.lock()
                    .expect("file lock")
                    .write_all(text.as_bytes())
                    .map_err(|e| format!("operator `{}`: cannot write: {e}", self.names[i]))?;
                Ok(Vec::new())
            }
            Step::Collect(CollectSink::Local(sink)) => {
                sink.lock().expect("collect lock").extend(batch);
                Ok(Vec::new())
            }
            Step::Collect(CollectSink::Remote(remote, name)) => {
                remote.collect(name, &batch).map_err(|e| format!("operator `{}`: {e}", self.names[i]))?;
                Ok(Vec::new())
            }
            Step::KeyedReduce { .. } | Step::Count { .. } => {
                // Keyed nodes are always stage heads and get keyed input.
                let pairs = batch.into_iter().map(|r| (Key::new(r.clone()), r)).collect();
                self.apply_keyed(shared, pairs)?;
                Ok(Vec::new())
            }
        }
    }

    /// Runs the keyed head node on records that come with their keys.
    fn apply_keyed(&mut self, shared: &Shared, pairs: Vec<(Key, Dynamic)>) -> Result<(), String> {
        let emitted = match &mut self.steps[0] {
            Step::Count { counts } => {
                for (key, _) in pairs {
                    *counts.entry(key).or_insert(0) += 1;
                }
                Vec::new()
            }
            Step::KeyedReduce { reduce, initial, state } => {
                let mut out = Vec::new();
                for (key, rec) in pairs {
                    let current = state.remove(&key).unwrap_or_else(|| initial.clone());
                    let result = match shared.call(reduce, [current, rec.clone()]) {
                        Ok(v) => v,
                        Err(e) => return Err(self.fail_at(0, &rec, &e)),
                    };
                    match result.try_cast::<Array>() {
                        Some(pair) if pair.len() == 2 => {
                            let mut pair = pair.into_iter();
                            state.insert(key, pair.next().expect("two"));
                            let emit = pair.next().expect("two");
                            if !emit.is_unit() {
                                out.push(emit);
                            }
                        }
                        _ => {
                            return Err(format!(
                                "operator `{}`: the reduce function must return [new_state, emitted], on record {rec:?}",
                                self.names[0]
                            ))
                        }
                    }
                }
                out
            }
            _ => return Err(format!("operator `{}` is not keyed but got keyed records", self.names[0])),
        };
        self.route(shared, 0, 0, emitted)
    }

    /// Adds partial counts to the head `count` node.
    fn add_counts(&mut self, partial: Vec<(Key, i64)>) -> Result<(), String> {
        let Step::Count { counts } = &mut self.steps[0] else {
            return Err(format!("operator `{}` is not a count but got counts", self.names[0]));
        };
        for (key, n) in partial {
            *counts.entry(key).or_insert(0) += n;
        }
        Ok(())
    }

    /// Emits what nodes hold until their input ends (counts).
    fn finish(&mut self, shared: &Shared) -> Result<(), String> {
        for i in 0..self.steps.len() {
            if let Step::Count { counts } = &mut self.steps[i] {
                let out: Vec<Dynamic> =
                    std::mem::take(counts).into_iter().map(|(k, n)| Dynamic::from_array(vec![k.value, Dynamic::from_int(n)])).collect();
                self.route(shared, i, 0, out)?;
            }
        }
        Ok(())
    }
}

enum Input {
    Records(Vec<Dynamic>),
    Keyed(Vec<(Key, Dynamic)>),
}

/// Data threads run at a lower priority than the runtime's threads, so that
/// control traffic (heartbeats, stop, abort) never waits behind records.
fn lower_priority() {
    // SAFETY: setpriority on this thread's own id; failure changes nothing.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, DATA_NICE);
    }
}

/// How much nicer data threads are than control threads.
const DATA_NICE: libc::c_int = 5;

fn aborted() -> String {
    "aborted".into()
}

fn outlet(plan: &Plan, e: &FlatEdge, instance: usize, layout: &Layout, inboxes: &[Vec<Inbox>], remote: Option<Arc<dyn Remote>>) -> Outlet {
    let target_stage = plan.stage_of[e.to];
    let targets = inboxes[target_stage].clone();
    let exchange = plan.exchange(e);
    let n = layout.instances(plan, target_stage);
    let target_op = &plan.graph.nodes[e.to].op;
    let key = target_op.key_func().cloned();
    let with_record = !matches!(target_op, Operator::Count { .. });
    let partial = (exchange == Exchange::Hash && !with_record).then(|| (0..n).map(|_| KeyMap::default()).collect());
    let (records, keyed) = match exchange {
        Exchange::Hash => (Vec::new(), vec![Vec::new(); n]),
        Exchange::Spread => (vec![Vec::new()], Vec::new()),
        Exchange::Forward => (vec![Vec::new(); n], Vec::new()),
    };
    Outlet { exchange, key, with_record, partial, targets, remote, records, keyed, next: instance, instance }
}

/// Reads a source batch by batch.
enum SourceReader {
    Items(std::vec::IntoIter<Dynamic>),
    Range {
        next: i64,
        end: i64,
        step: i64,
    },
    Generator {
        f: Func,
        n: i64,
    },
    Lines(BufReader<File>),
    /// A connection with a read timeout, so that a stop is noticed while idle.
    Tcp {
        reader: BufReader<std::net::TcpStream>,
        line: String,
    },
}

impl SourceReader {
    fn open(spec: SourceSpec, name: &str) -> Result<SourceReader, String> {
        Ok(match spec {
            SourceSpec::Items(items) => SourceReader::Items(items.into_iter()),
            SourceSpec::Range { start, end, step } => SourceReader::Range { next: start, end, step },
            SourceSpec::Generator(f) => SourceReader::Generator { f: f.clone(), n: 0 },
            SourceSpec::Lines(path) => {
                let file = File::open(&path).map_err(|e| format!("{name}: cannot read {}: {e}", path.display()))?;
                SourceReader::Lines(BufReader::with_capacity(256 * 1024, file))
            }
            SourceSpec::Tcp { host, port } => {
                let stream = std::net::TcpStream::connect((host.as_str(), port))
                    .map_err(|e| format!("{name}: cannot connect to {host}:{port}: {e}"))?;
                stream.set_read_timeout(Some(TCP_POLL)).map_err(|e| format!("{name}: cannot set up {host}:{port}: {e}"))?;
                SourceReader::Tcp { reader: BufReader::new(stream), line: String::new() }
            }
        })
    }

    fn next_batch(&mut self, shared: &Shared, running: &Running) -> Result<Option<Vec<Dynamic>>, String> {
        let mut batch = Vec::with_capacity(BATCH);
        match self {
            SourceReader::Items(items) => batch.extend(items.by_ref().take(BATCH)),
            SourceReader::Range { next, end, step } => {
                while batch.len() < BATCH && *next < *end {
                    batch.push(Dynamic::from_int(*next));
                    *next = next.saturating_add(*step);
                }
            }
            SourceReader::Generator { f, n } => {
                let started = std::time::Instant::now();
                while batch.len() < BATCH && started.elapsed() < BATCH_WAIT {
                    let v = shared.call(f, [Dynamic::from_int(*n)]).map_err(|e| crate::script::session::eval_error(&e, None).message)?;
                    if v.is_unit() {
                        *self = SourceReader::Items(Vec::new().into_iter());
                        break;
                    }
                    batch.push(v);
                    *n += 1;
                }
            }
            SourceReader::Lines(reader) => {
                let mut line = String::new();
                while batch.len() < BATCH {
                    line.clear();
                    if reader.read_line(&mut line).map_err(|e| format!("read error: {e}"))? == 0 {
                        break;
                    }
                    let text = line.strip_suffix('\n').unwrap_or(&line);
                    let text = text.strip_suffix('\r').unwrap_or(text);
                    batch.push(Dynamic::from(ImmutableString::from(text)));
                }
            }
            SourceReader::Tcp { reader, line } => {
                // Hand over what has arrived rather than wait for a full batch.
                loop {
                    match reader.read_line(line) {
                        Ok(0) => break,
                        Ok(_) => {
                            let text = line.strip_suffix('\n').unwrap_or(line);
                            batch.push(Dynamic::from(text.strip_suffix('\r').unwrap_or(text).to_string()));
                            line.clear();
                            if batch.len() >= BATCH || reader.buffer().is_empty() {
                                return Ok(Some(batch));
                            }
                        }
                        // A partial line stays in `line` until the rest arrives.
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                            if !batch.is_empty() || running.stop.is_cancelled() || running.aborted() {
                                return Ok(Some(batch));
                            }
                        }
                        Err(e) => return Err(format!("read error: {e}")),
                    }
                }
                if !line.is_empty() {
                    batch.push(Dynamic::from(std::mem::take(line)));
                }
            }
        }
        Ok((!batch.is_empty()).then_some(batch))
    }
}
