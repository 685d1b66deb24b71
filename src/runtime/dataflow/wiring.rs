//! Wiring a workflow's part in this process: an inbox per instance (here or
//! on another worker), the sinks' files, one thread per local instance, and
//! a task that settles the workflow once every instance has ended.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::barriers::Barriers;
use super::call::{Callee, Calls};
use super::error::FlowError;
use super::exchange::{Forward, Hash, Inbox, Outlet, Pusher, Route, Spread};
use super::layout::Layout;
use super::operators::{CollectSink, LineSink, Printer, Step};
use super::running::Running;
use super::sink::{part_path, FileSink, Results};
use super::snapshot::{InstanceState, NodeState};
use super::stage::{StageRun, Target};
use super::user_op::UserStep;
use super::{Remote, INBOX_BATCHES};
use crate::script::{Code, EngineEnv};
use crate::workflow::key::KeyMap;
use crate::workflow::model::FlatEdge;
use crate::workflow::{Exchange, KafkaSink, KafkaSource, Operator, Plan, SourceSpec, Stats};

/// This process's part of a workflow.
pub struct Part {
    pub layout: Layout,
    /// This node's name, for the names of part files.
    pub node: String,
    /// Whether this process alone decides that its files are complete
    /// (local mode); a worker's files wait for its master's word.
    pub settle_here: bool,
    /// Checkpoints on (with what to restore), or off.
    pub checkpoints: Option<Resume>,
}

/// What instances here start from: their states in the checkpoint a
/// workflow resumes from (none for a fresh start).
#[derive(Default, Debug)]
pub struct Resume {
    pub states: HashMap<(usize, usize), InstanceState>,
}

/// What instances are built with, besides the plan.
struct Sinks {
    /// `write_lines` files this process writes, by node.
    files: HashMap<usize, Arc<FileSink>>,
    /// `write_parts` files, by (node, instance).
    parts: HashMap<(usize, usize), Arc<FileSink>>,
    collect_of: HashMap<usize, Arc<Results>>,
    remote: Option<Arc<dyn Remote>>,
    /// Sinks hold what they are given until a checkpoint takes it.
    checkpoints: bool,
    env: EngineEnv,
    /// The runtime, for the brokers' asynchronous clients.
    handle: tokio::runtime::Handle,
}

/// Starts this process's part of `plan`. Files that sinks write are created
/// here, so a bad path fails the deploy, not the run.
pub fn start(plan: Plan, code: Code, part: Part, env: &EngineEnv, remote: Option<Arc<dyn Remote>>) -> Result<Arc<Running>, FlowError> {
    let layout = part.layout;
    let abort_flag = Arc::new(AtomicBool::new(false));
    let mut engine_env = env.clone();
    engine_env.abort = abort_flag.clone();
    let mut info = rhai::Map::new();
    info.insert("node".into(), part.node.clone().into());
    info.insert("mode".into(), if remote.is_some() { "worker" } else { "local" }.into());
    engine_env.operator_info = Some(info);

    let mut sinks = Sinks {
        files: HashMap::new(),
        parts: HashMap::new(),
        collect_of: HashMap::new(),
        remote: remote.clone(),
        checkpoints: part.checkpoints.is_some(),
        env: engine_env,
        handle: tokio::runtime::Handle::current(),
    };
    let mut collected = Vec::new();
    for (i, node) in plan.graph.nodes.iter().enumerate() {
        let here = layout.local_instances(&plan, plan.stage_of[i]);
        match node.op.base() {
            // Under checkpoints, the driver writes what checkpoints took.
            Operator::WriteLines(path) if sinks.checkpoints => super::sink::check_path(&node.name, path)?,
            Operator::WriteLines(path) if remote.is_none() => {
                sinks.files.insert(i, FileSink::create(&node.name, path)?);
            }
            Operator::WriteParts(dir) if !here.is_empty() => {
                std::fs::create_dir_all(dir).map_err(|e| FlowError::File {
                    operator: node.name.clone(),
                    action: "create the directory",
                    path: dir.clone(),
                    error: e.to_string(),
                })?;
                // Under checkpoints, the driver writes what checkpoints took.
                for instance in here.filter(|_| !sinks.checkpoints) {
                    let file = FileSink::create(&node.name, &part_path(dir, &part.node, instance))?;
                    sinks.parts.insert((i, instance), file);
                }
            }
            // A broker that does not answer fails the deploy, naming it.
            Operator::Source(SourceSpec::Redis { url, .. }) | Operator::RedisSink { url, .. } if !here.is_empty() => {
                super::redis::check(&node.name, url)?;
            }
            Operator::Source(SourceSpec::Nats { url, .. }) | Operator::NatsSink { url, .. } if !here.is_empty() => {
                super::nats::check(&sinks.handle, &node.name, url)?;
            }
            Operator::Source(SourceSpec::Kafka(KafkaSource { brokers, topic, .. }))
            | Operator::KafkaSink(KafkaSink { brokers, topic, .. })
                if !here.is_empty() =>
            {
                super::kafka::check(&sinks.handle, &node.name, brokers, topic)?;
            }
            Operator::Collect => {
                let sink = Arc::new(Results::new(crate::runtime::results_cap()));
                collected.push((node.name.clone(), sink.clone()));
                sinks.collect_of.insert(i, sink);
            }
            Operator::Source(SourceSpec::Lines { path, .. }) if !here.is_empty() && !path.is_file() => {
                return Err(FlowError::File {
                    operator: node.name.clone(),
                    action: "read",
                    path: path.clone(),
                    error: "no such file".into(),
                });
            }
            _ => {}
        }
    }
    let files = sinks.files.values().chain(sinks.parts.values()).cloned().collect();
    // A source's stage has an inbox that nothing sends to: no queue to show.
    let heads =
        plan.stages.iter().map(|s| Some(s.nodes[0]).filter(|&n| !matches!(plan.graph.nodes[n].op.base(), Operator::Source(_)))).collect();
    let here: usize = (0..plan.stages.len()).map(|s| layout.local_instances(&plan, s).len()).sum();
    let mut running = Running::new(Stats::new(&plan.graph), heads, collected, files, abort_flag, tokio::runtime::Handle::current());
    let mut barriers = None;
    if part.checkpoints.is_some() {
        let (b, events) = Barriers::new(here);
        let b = Arc::new(b);
        barriers = Some(b.clone());
        running = running.with_checkpoints(b, events);
    }
    let running = Arc::new(running);
    let mut resume = part.checkpoints.unwrap_or_default();

    // An inbox per instance of every stage, here or remote.
    let mut inboxes: Vec<Vec<Inbox>> = Vec::new();
    let mut receivers: HashMap<(usize, usize), mpsc::Receiver<super::Delivery>> = HashMap::new();
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
        return Err(FlowError::Internal("a remote instance without a network".into()));
    }

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<(), FlowError>>();
    let code = Arc::new(code);
    for s in 0..plan.stages.len() {
        let expected_ends: usize = plan.inputs_of(s).map(|e| layout.instances(&plan, plan.stage_of[e.from])).sum();
        for instance in layout.local_instances(&plan, s) {
            let mut stage = stage_run(&plan, s, instance, &layout, &inboxes, &sinks);
            stage.barriers = barriers.clone();
            if let Some(state) = resume.states.remove(&(s, instance)) {
                if let Err(e) = restore(&mut stage, state) {
                    running.fail(e.to_string());
                    return Err(e);
                }
            }
            let inbox = receivers.remove(&(s, instance)).expect("one receiver per instance");
            let (running_here, done, code, env) = (running.clone(), done_tx.clone(), code.clone(), sinks.env.clone());
            let name = format!("skitter:{}", stage.names[0]);
            let spawned = std::thread::Builder::new().name(name).spawn(move || {
                lower_priority();
                let node = stage.names[0].clone();
                let mut inbox = inbox;
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let calls = Calls::new(&code, &env)?;
                    stage.run(&calls, &running_here, &mut inbox, expected_ends)
                }))
                .unwrap_or_else(|panic| {
                    let what = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
                    let reason = format!("panicked: {}", what.unwrap_or_else(|| "(no message)".into()));
                    Err(FlowError::Operator { operator: node, reason })
                });
                // The cause is recorded before the inbox closes: a sender that
                // then finds it closed ends as a consequence, not a cause.
                if let Err(cause) = &result {
                    if !matches!(cause, FlowError::Ended | FlowError::Interrupted { .. }) {
                        if let Some(operator) = cause.operator() {
                            running_here.error_in(operator);
                        }
                        running_here.fail(cause.to_string());
                    }
                }
                drop(inbox);
                // The receiver lives until every sender is gone.
                let _ = done.send(result);
            });
            if let Err(e) = spawned {
                let reason = format!("cannot start a thread: {e}");
                running.fail(reason.clone());
                return Err(FlowError::Internal(reason));
            }
        }
    }
    drop(done_tx);
    drop(inboxes);
    let settle_here = part.settle_here;

    let watcher = running.clone();
    tokio::spawn(async move {
        // A thread that panicked past catch_unwind drops its sender without a result.
        while let Some(result) = done_rx.recv().await {
            match result {
                Ok(()) => {}
                // Consequences of an end that has its own reason.
                Err(FlowError::Interrupted { operator }) if watcher.has_ended() => watcher.interrupted(operator),
                Err(FlowError::Ended) if watcher.has_ended() => {}
                Err(cause) => watcher.fail(cause.to_string()),
            }
        }
        watcher.inboxes.lock().expect("inboxes lock").clear();
        if !watcher.has_ended() {
            for file in &watcher.files {
                if let Err(e) = file.flush() {
                    watcher.fail(e.to_string());
                    break;
                }
            }
        }
        let mut status = watcher.outcome();
        if settle_here {
            status = watcher.settle_for(status);
        }
        // Under checkpoints, the driver publishes the status once the last
        // checkpoint is written.
        if let Some(status) = watcher.hand_over(status) {
            watcher.finish(status);
        }
    });
    Ok(running)
}

/// Builds instance `instance` of stage `s`: its steps, routes and outlets.
fn stage_run(plan: &Plan, s: usize, instance: usize, layout: &Layout, inboxes: &[Vec<Inbox>], sinks: &Sinks) -> StageRun {
    let stage = &plan.stages[s];
    let position = |n: usize| stage.nodes.iter().position(|&m| m == n);
    let (mut outlets, mut routes, mut steps, mut names) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // A node fused into a stage has one input edge, from inside it.
    let ports =
        stage.nodes.iter().map(|&n| plan.graph.edges.iter().find(|e| e.to == n && plan.is_local(e)).map_or(0, |e| e.to_port)).collect();
    for &n in &stage.nodes {
        let node = &plan.graph.nodes[n];
        names.push(node.name.clone());
        steps.push(step(&node.op, n, instance, &node.name, sinks));
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
    let calls = vec![0; steps.len()];
    let instances = layout.instances(plan, s);
    let makes_time = steps.iter().any(|s| matches!(s, Step::EventTime(_)));
    let channels: usize = plan.inputs_of(s).map(|e| layout.instances(plan, plan.stage_of[e.from])).sum();
    StageRun {
        time: super::event_time::Watermarks::new(channels),
        makes_time,
        names,
        nodes: stage.nodes.clone(),
        ports,
        steps,
        routes,
        outlets,
        calls,
        stage: s,
        instance,
        instances,
        barriers: None,
        at: None,
        done: false,
    }
}

/// Puts an instance back as a checkpoint saved it.
fn restore(stage: &mut StageRun, state: InstanceState) -> Result<(), FlowError> {
    stage.done = state.done;
    for (i, node) in state.nodes.into_iter().enumerate() {
        let Some(step) = stage.steps.get_mut(i) else {
            return Err(FlowError::Internal(format!("{}: the checkpoint holds more nodes than the stage has", stage.names[0])));
        };
        match node {
            NodeState::Position(at) if i == 0 => stage.at = Some(at),
            other => step.restore(&stage.names[i], other)?,
        }
    }
    Ok(())
}

/// The number of the first of an edge's input channels at its target: the
/// target's inputs are numbered edge by edge, an upstream instance each.
fn channel_base(plan: &Plan, layout: &Layout, edge: &FlatEdge) -> u32 {
    let target = plan.stage_of[edge.to];
    plan.inputs_of(target).take_while(|e| !std::ptr::eq(*e, edge)).map(|e| layout.instances(plan, plan.stage_of[e.from]) as u32).sum()
}

fn step(op: &Operator, n: usize, instance: usize, name: &str, sinks: &Sinks) -> Step {
    match op {
        Operator::With(w) => step(&w.op, n, instance, name, sinks),
        Operator::Source(spec) => Step::Source(spec.clone()),
        Operator::Map(f) => Step::Map(Callee::new(f.clone(), 1)),
        Operator::FlatMap(f) => Step::FlatMap(Callee::new(f.clone(), 1)),
        Operator::Filter(f) => Step::Filter(Callee::new(f.clone(), 1)),
        Operator::KeyedReduce { reduce, initial, .. } => {
            Step::KeyedReduce { reduce: Callee::new(reduce.clone(), 2), initial: initial.clone(), state: KeyMap::default() }
        }
        Operator::Count { .. } => Step::Count { counts: KeyMap::default() },
        Operator::Print(label) => Step::Print {
            prefix: if label.is_empty() { String::new() } else { format!("{label}: ") },
            printer: match &sinks.remote {
                Some(remote) => Printer::Remote(remote.clone()),
                None => Printer::Local(sinks.env.output.clone()),
            },
        },
        Operator::WriteLines(_) | Operator::WriteParts(_) if sinks.checkpoints => Step::WriteLines(LineSink::Pending(Vec::new())),
        Operator::Collect if sinks.checkpoints => Step::Collect(CollectSink::Pending(Vec::new())),
        Operator::WriteLines(_) => Step::WriteLines(match (&sinks.remote, sinks.files.get(&n)) {
            (_, Some(file)) => LineSink::File(file.clone()),
            (Some(remote), None) => LineSink::Remote(remote.clone(), n),
            (None, None) => unreachable!("a local write_lines has its file"),
        }),
        Operator::WriteParts(_) => Step::WriteLines(LineSink::File(sinks.parts[&(n, instance)].clone())),
        Operator::Collect => Step::Collect(match &sinks.remote {
            Some(remote) => CollectSink::Remote(remote.clone(), name.to_string()),
            None => CollectSink::Local(sinks.collect_of[&n].clone()),
        }),
        Operator::RedisSink { url, stream } => Step::RedisSink(super::redis::Writer::new(url, stream)),
        Operator::NatsSink { url, subject } => Step::NatsSink(super::nats::Writer::new(&sinks.handle, url, subject)),
        Operator::KafkaSink(spec) => Step::KafkaSink(super::kafka::Writer::new(&sinks.handle, spec)),
        Operator::User(op) => Step::User(UserStep::new(op)),
        Operator::EventTime(e) => {
            Step::EventTime(super::event_time::EventTimeStep::new(Callee::new(e.ts.clone(), 1), e.out_of_order, e.idle))
        }
        Operator::Window(w) => {
            let folding = match &w.fold {
                None => super::window::Folding::Count,
                Some(f) => super::window::Folding::Fold(Box::new(super::window::FoldFns {
                    init: Callee::new(f.init.clone(), 0),
                    fold: Callee::new(f.fold.clone(), 2),
                    merge: f.merge.clone().map(|m| Callee::new(m, 2)),
                })),
            };
            let ts = w.ts.clone().map(|f| Callee::new(f, 1));
            Step::Window(Box::new(super::window::WindowStep::new(w.spec, folding, ts, w.lateness)))
        }
    }
}

fn outlet(plan: &Plan, e: &FlatEdge, instance: usize, layout: &Layout, inboxes: &[Vec<Inbox>], remote: Option<Arc<dyn Remote>>) -> Outlet {
    let target_stage = plan.stage_of[e.to];
    let n = layout.instances(plan, target_stage);
    let target = &plan.graph.nodes[e.to];
    let pusher = match plan.exchange(e) {
        Exchange::Hash => Pusher::Hash(Hash::new(n, target.op.key_func().cloned(), matches!(target.op.base(), Operator::Count { .. }))),
        Exchange::Spread => Pusher::Spread(Spread::new(n, instance)),
        Exchange::Forward => Pusher::Forward(Forward::new(n, instance)),
        Exchange::Route => {
            let route = target.op.route().cloned().expect("a route exchange has its function");
            Pusher::Route(Route::new(n, route, target.op.in_ports()[e.to_port]))
        }
    };
    Outlet {
        pusher,
        target_name: target.name.clone(),
        targets: inboxes[target_stage].clone(),
        port: e.to_port as u32,
        from: channel_base(plan, layout, e) + instance as u32,
        remote,
        held_since: None,
    }
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

#[cfg(test)]
mod tests {
    //! A worker's part against a fake remote: what it sends to the other
    //! worker and to the master is exactly what it read, ends included.

    use super::*;
    use crate::runtime::dataflow::Msg;
    use crate::workflow::model::{Body, Workflow};
    use crate::workflow::{SourceSpec, Status};
    use rhai::Dynamic;
    use std::sync::Mutex;
    use tokio_util::sync::CancellationToken;

    #[derive(Default)]
    struct FakeRemote {
        /// (worker, stage, instance, records or usize::MAX for an end).
        sent: Mutex<Vec<(usize, usize, usize, usize)>>,
        collected: Mutex<usize>,
        refuse: bool,
    }

    impl Remote for FakeRemote {
        fn send(&self, worker: usize, stage: usize, instance: usize, _: u32, msg: Msg, _: &CancellationToken) -> Result<(), FlowError> {
            if self.refuse {
                return Err(FlowError::Remote("the data link to worker w1 is closed".into()));
            }
            let n = match msg {
                Msg::Records(_, r) => r.len(),
                Msg::Lines(_, l) => l.len(),
                Msg::End => usize::MAX,
                _ => 0,
            };
            self.sent.lock().unwrap().push((worker, stage, instance, n));
            Ok(())
        }
        fn collect(&self, _: &str, records: &[Dynamic], _: &CancellationToken) -> Result<(), FlowError> {
            *self.collected.lock().unwrap() += records.len();
            Ok(())
        }
        fn write_lines(&self, _: usize, _: String, _: &CancellationToken) -> Result<(), FlowError> {
            Ok(())
        }
        fn print(&self, _: String, _: &CancellationToken) -> Result<(), FlowError> {
            Ok(())
        }
    }

    fn plan() -> Plan {
        let items = (1..=5000).map(Dynamic::from_int).collect();
        let wf = Workflow::new()
            .chain(Body::Op(Operator::Source(SourceSpec::Items(items))))
            .unwrap()
            .chain(Body::Op(Operator::Collect))
            .unwrap();
        Plan::new(wf.flatten())
    }

    fn run(remote: Arc<FakeRemote>) -> (Status, Arc<Running>) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let env = EngineEnv::new(None, Arc::new(|_: &str| {}));
        let part = Part { layout: Layout::new(2, 0, 1), node: "w0".into(), settle_here: false, checkpoints: None };
        let running = rt.block_on(async { start(plan(), Code::default(), part, &env, Some(remote)).unwrap() });
        let status = crate::runtime::wait_until_done(rt.handle(), running.subscribe());
        (status, running)
    }

    #[test]
    fn every_record_read_goes_to_an_instance_here_or_to_the_other_worker_and_every_edge_ends() {
        let remote = Arc::new(FakeRemote::default());
        let (status, running) = run(remote.clone());
        assert_eq!(status, Status::Finished);
        let sent = remote.sent.lock().unwrap().clone();
        let to_w1: usize = sent.iter().filter(|s| s.0 == 1 && s.3 != usize::MAX).map(|s| s.3).sum();
        assert_eq!(to_w1 + *remote.collected.lock().unwrap(), 5000);
        assert_eq!(sent.iter().filter(|s| s.3 == usize::MAX).count(), 1, "one end marker for the instance on worker 1");
        let stats = running.stats();
        assert_eq!(stats.read(), 5000);
        assert_eq!(stats.written(), *remote.collected.lock().unwrap() as u64, "this worker counts what its sink took");
    }

    #[test]
    fn a_data_link_that_refuses_fails_the_workflow_with_its_reason() {
        let remote = Arc::new(FakeRemote { refuse: true, ..Default::default() });
        let (status, _) = run(remote);
        assert_eq!(status, Status::Failed("the data link to worker w1 is closed".into()));
    }
}
