//! A worker node: runs its part of every workflow its master deploys,
//! exchanges records with the other workers, and goes when its master goes
//! (exit status 4) unless told to stay. What happens when is decided by
//! [`Lifecycle`], a state machine with no I/O; this is the I/O around it.

mod checkpoints;
mod lifecycle;
mod master_link;
mod peer;
mod remote;

pub use remote::DATA_CHUNK;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rhai::Dynamic;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dataflow::{self, Layout, Running};
use super::link;
use crate::net::framing::encode;
use crate::net::handshake;
use crate::net::{Authenticated, ControlMsg, Cookie, Identity, Role, WorkerInfo, WorkflowSpec};
use crate::runtime::checkpoint::output::{Outputs, Writes};
use crate::runtime::checkpoint::part::WorkerRestore;
use crate::script::host::Source;
use crate::script::{Code, EngineEnv};
use crate::workflow::{Plan, Status};
use lifecycle::{Action, Event, Lifecycle, Outcome, Report};
pub(crate) use master_link::rejoin_wait;
use master_link::Joining;
use remote::WorkerRemote;

/// How long data for a workflow may wait for that workflow's deploy to
/// arrive (the master sends it to every worker at once); past it, the
/// workflow fails.
pub(crate) const DEPLOY_WAIT: Duration = Duration::from_secs(10);
/// Data frames queued for the master before senders wait.
const MASTER_DATA_QUEUE: usize = 16;
/// How long a stopping worker waits, past the stop deadline, for its
/// workflows to drain and settle before it aborts them.
const LEAVE_SLACK: Duration = Duration::from_secs(5);
/// Settled parts kept waiting for their master's word to acknowledge.
const UNACKNOWLEDGED_KEPT: usize = 64;

pub struct WorkerConfig {
    pub name: String,
    pub tags: Vec<String>,
    pub slots: usize,
    pub cookie: Cookie,
    /// `host:port` of a master to dial.
    pub master: Option<String>,
    pub shutdown_with_master: bool,
    pub env: EngineEnv,
}

/// The links to the current master: control messages (small, few, never
/// behind data) and a bounded queue of data frames.
#[derive(Clone)]
struct MasterLink {
    control: mpsc::UnboundedSender<ControlMsg>,
    data: mpsc::Sender<Bytes>,
}

pub struct Worker {
    config: WorkerConfig,
    identity: Identity,
    addr: String,
    /// The links to the current master.
    master: Mutex<Option<MasterLink>>,
    /// Tracks the control link, so that a shutdown waits for its goodbye.
    master_link: TaskTracker,
    life: Mutex<Lifecycle>,
    /// This worker's parts of workflows: running, or ended and waiting for
    /// the master's word on their files.
    parts: Mutex<HashMap<u64, Arc<Running>>>,
    /// The cluster's workers, as the master last told us.
    peers: Mutex<Vec<WorkerInfo>>,
    /// What parts about to be deployed resume from, as it arrives.
    restores: Mutex<HashMap<u64, Vec<u8>>>,
    /// Parts whose files are named, until the master says the workflow's
    /// output is complete and what they read may be acknowledged.
    unacknowledged: Mutex<std::collections::VecDeque<(u64, Arc<Running>)>>,
    /// Notified when a part starts or is let go.
    changed: Notify,
    /// Cancelled once a stopping worker has settled every part.
    left: CancellationToken,
    /// Cancelled when the process should exit, with `exit_code`.
    pub exit: CancellationToken,
    exit_code: AtomicU8,
}

impl Worker {
    pub fn new(config: WorkerConfig, addr: String) -> Arc<Worker> {
        let identity = Identity::new(Role::Worker, config.name.clone(), &config.cookie);
        Arc::new(Worker {
            life: Mutex::new(Lifecycle::new(&config.name)),
            config,
            identity,
            addr,
            master: Mutex::new(None),
            master_link: TaskTracker::new(),
            parts: Mutex::new(HashMap::new()),
            peers: Mutex::new(Vec::new()),
            restores: Mutex::new(HashMap::new()),
            unacknowledged: Mutex::new(Default::default()),
            changed: Notify::new(),
            left: CancellationToken::new(),
            exit: CancellationToken::new(),
            exit_code: AtomicU8::new(0),
        })
    }

    pub fn exit_code(&self) -> u8 {
        self.exit_code.load(Ordering::Relaxed)
    }

    /// Makes the process exit with `code`.
    pub fn quit(&self, code: u8) {
        self.exit_code.store(code, Ordering::Relaxed);
        self.exit.cancel();
    }

    fn info(&self) -> WorkerInfo {
        WorkerInfo {
            name: self.config.name.clone(),
            addr: self.addr.clone(),
            tags: self.config.tags.clone(),
            slots: self.config.slots as u32,
        }
    }

    fn link(&self) -> Option<MasterLink> {
        self.master.lock().expect("master lock").clone()
    }

    /// Sends a control message to the master; without a master there is
    /// nobody to tell (its loss already failed every workflow).
    fn to_master(&self, msg: ControlMsg) {
        if let Some(link) = self.link() {
            // A closed queue: the link is ending, and its end fails the parts.
            let _ = link.control.send(msg);
        }
    }

    fn part(&self, id: u64) -> Option<Arc<Running>> {
        self.parts.lock().expect("parts lock").get(&id).cloned()
    }

    /// Feeds the lifecycle an event and carries out what it says.
    async fn step(&self, event: Event) {
        let actions = self.life.lock().expect("life lock").step(event);
        for action in actions {
            match action {
                Action::ToMaster(Report::Ended { id, outcome }) => self.report_end(id, outcome).await,
                Action::ToMaster(Report::Leaving) => self.to_master(ControlMsg::Leaving),
                Action::ToMaster(Report::Bye) => {
                    if let Some(link) = self.link() {
                        // After every report still queued as data.
                        link::drained(&link.data, link::tick()).await;
                        let _ = link.control.send(ControlMsg::Bye);
                    }
                }
                Action::StopPart { id, reason } => {
                    if let Some(r) = self.part(id) {
                        r.request_stop(reason);
                    }
                }
                Action::AbortPart { id, reason } => {
                    if let Some(r) = self.part(id) {
                        r.abort(reason);
                    }
                }
                Action::FailPart { id, reason } => {
                    if let Some(r) = self.part(id) {
                        r.fail(reason);
                    }
                }
                Action::Settle { id, commit } => self.settle(id, commit),
                Action::Left => self.left.cancel(),
            }
        }
    }

    /// Tells the master how a part ended, with its final counts, behind
    /// every record the part sent the master: the master must not see the
    /// end before the data.
    async fn report_end(&self, id: u64, outcome: Outcome) {
        let (Some(link), Some(r)) = (self.link(), self.part(id)) else { return };
        let end = match outcome {
            Outcome::Completed => ControlMsg::Done { id },
            Outcome::Failed(reason) => ControlMsg::Failed { id, reason },
            Outcome::Aborted(operators) => ControlMsg::Interrupted { id, operators },
        };
        for msg in [ControlMsg::Progress { id, nodes: r.nodes() }, end] {
            // A closed queue: the master is gone, and with it the workflow.
            let _ = link.data.send(Bytes::from(encode(&msg))).await;
        }
    }

    /// Names a part's files or keeps them as incomplete, and lets it go.
    /// What its sources read is acknowledged only once the master says the
    /// whole workflow's output is in place (`Committed`).
    fn settle(&self, id: u64, commit: bool) {
        let Some(r) = self.parts.lock().expect("parts lock").remove(&id) else { return };
        self.changed.notify_waiters();
        let error = match r.settle_files(commit) {
            Ok(note) => {
                if let Some(note) = note {
                    tracing::warn!(workflow = id, "{note}");
                }
                if commit {
                    let mut waiting = self.unacknowledged.lock().expect("unacknowledged lock");
                    // Never acknowledged: read again, which is safe.
                    while waiting.len() >= UNACKNOWLEDGED_KEPT {
                        waiting.pop_front();
                    }
                    waiting.push_back((id, r));
                }
                None
            }
            Err(e) => {
                tracing::error!(workflow = id, "{e}");
                Some(e)
            }
        };
        // The master publishes a complete workflow's status once its files are in place.
        self.to_master(ControlMsg::Settled { id, error });
    }

    /// Serves the listener and, if configured, dials the master. Returns
    /// when the worker should exit.
    pub async fn run(self: Arc<Self>, listener: TcpListener, consoles: Arc<super::console::Consoles>) {
        if let Some(addr) = self.config.master.clone() {
            let me = self.clone();
            tokio::spawn(async move {
                let mut lost = match handshake::dial(&addr, &me.identity).await {
                    Ok(auth) => me.clone().master_link(auth.into_link(link::tick()), Joining::Dialed).await.lost(),
                    Err(e) => {
                        tracing::error!("cannot join the master at {addr}: {e}");
                        eprintln!("error: cannot join the master at {addr}: {e}");
                        return me.quit(1);
                    }
                };
                while let Some(reason) = lost {
                    lost = me.clone().rejoin(&addr, reason).await;
                }
            });
        }
        let me = self.clone();
        let roles: &'static [Role] = &[Role::Master, Role::Peer, Role::Console];
        crate::net::gate::serve(listener, self.exit.clone(), self.identity.clone(), roles, move |auth: Authenticated| {
            let (me, consoles) = (me.clone(), consoles.clone());
            async move {
                match auth.peer_role {
                    Role::Console => consoles.serve(auth).await,
                    Role::Master => drop(me.master_link(auth.into_link(link::tick()), Joining::Dialing).await),
                    _ => me.peer_link(auth.into_link(link::tick())).await,
                }
            }
        })
        .await
    }

    /// Stops gracefully: with a master, asks it to stop (drain) the
    /// workflows this worker runs and waits until they are settled; then
    /// says goodbye. Whatever has not drained past the stop deadline is
    /// aborted.
    pub async fn shutdown(&self) {
        self.step(Event::LeaveRequested).await;
        if tokio::time::timeout(super::STOP_DEADLINE + LEAVE_SLACK, self.left.cancelled()).await.is_err() {
            self.step(Event::LeaveTimedOut).await;
            let _ = tokio::time::timeout(LEAVE_SLACK, self.left.cancelled()).await;
        }
        // The link ends once it has written the goodbye.
        self.master_link.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.master_link.wait()).await;
    }

    /// Aborts every part running here.
    pub fn abort_parts(&self, reason: &str) {
        for r in self.parts.lock().expect("parts lock").values() {
            r.abort(reason.to_string());
        }
    }

    async fn start_part(self: &Arc<Self>, id: u64, order: PartOrder) -> Result<(), String> {
        let PartOrder { spec, sources, workers, slots, placement, resume } = order;
        let me = workers.iter().position(|w| w.name == self.config.name).ok_or("this worker is not part of the placement")?;
        let plan = Plan::new(spec.into_graph()?);
        if placement.iter().any(|(&s, counts)| counts.len() != workers.len() || s >= plan.stages.len()) {
            return Err("the placement does not fit the workflow's stages and workers".into());
        }
        let layout = Layout::new(workers.len(), me, slots).with_placement(placement);
        let code =
            Code { ast: Default::default(), sources: Arc::new(sources.into_iter().map(|(name, text)| Source { name, text }).collect()) };
        let master = self.link().ok_or("no master")?;
        let remote = Arc::new(WorkerRemote {
            id,
            peers: workers,
            identity: Identity { role: Role::Peer, ..self.identity.clone() },
            links: Mutex::new(HashMap::new()),
            control: master.control.clone(),
            data: master.data.clone(),
            handle: tokio::runtime::Handle::current(),
        });
        let (checkpoints, outputs) = match &resume {
            Some(bytes) => {
                let restore: WorkerRestore = match bytes.is_empty() {
                    true => WorkerRestore::default(),
                    false => crate::net::value::decode_bounded(|| postcard::from_bytes(bytes))
                        .map_err(|e| format!("what this part resumes from does not read: {e}"))?,
                };
                // This worker's part files, cut back to where the checkpoint left them.
                let mut outputs = Outputs::of(&plan, &layout, &self.config.name, Writes::Parts);
                outputs.restore(&restore.outputs).map_err(|e| e.to_string())?;
                let states = restore.states.into_iter().map(|st| ((st.stage as usize, st.instance as usize), st)).collect();
                (Some(dataflow::Resume { states }), Some(outputs))
            }
            None => (None, None),
        };
        let names = Arc::new(crate::runtime::checkpoint::setup::stage_names(&plan));
        let part = dataflow::Part { layout, node: self.config.name.clone(), settle_here: false, checkpoints };
        let running = dataflow::start(plan, code, part, &self.config.env, Some(remote)).map_err(|e| e.to_string())?;
        if let Some(outputs) = outputs {
            tokio::spawn(checkpoints::drive(id, running.clone(), names, outputs, master.data.clone()));
        }
        self.parts.lock().expect("parts lock").insert(id, running.clone());
        // Started before its end can be seen.
        self.step(Event::PartStarted { id }).await;
        self.changed.notify_waiters();
        let me = self.clone();
        tokio::spawn(async move {
            let mut watch = running.subscribe();
            // The sender lives in `running`, held here: it cannot close first.
            let _ = watch.wait_for(|s| s.is_done()).await;
            let status = watch.borrow().clone();
            let outcome = match status {
                Status::Finished | Status::Stopped(_) => Outcome::Completed,
                Status::Failed(reason) => Outcome::Failed(reason),
                Status::Aborted(_) => Outcome::Aborted(running.interrupted_operators()),
                Status::Running | Status::Recovering(_) => unreachable!("waited until done"),
            };
            me.step(Event::PartEnded { id, outcome }).await;
        });
        Ok(())
    }
}

/// What the master's `Deploy` asks this worker to run.
struct PartOrder {
    spec: WorkflowSpec,
    sources: Vec<(String, String)>,
    workers: Vec<WorkerInfo>,
    slots: usize,
    placement: HashMap<usize, Vec<usize>>,
    /// Checkpoints on, with what the part's instances resume from (encoded).
    resume: Option<Vec<u8>>,
}

/// What a console on a worker can ask: about the worker itself; workflows
/// are deployed from its master.
impl crate::script::Host for Worker {
    fn node_name(&self) -> String {
        self.config.name.clone()
    }

    fn deploy(
        &self,
        _: &crate::workflow::Workflow,
        _: Code,
        _: Option<crate::script::Audience>,
        _: &crate::script::DeployOptions,
    ) -> Result<crate::script::WorkflowRef, String> {
        Err("this is a worker: deploy from its master".into())
    }

    fn checkpoint(&self, _: crate::script::WorkflowRef) -> Result<u64, String> {
        Err("this is a worker: ask its master".into())
    }

    fn checkpoints(&self, _: &str) -> Result<rhai::Array, String> {
        Err("this is a worker: checkpoints are kept by its master".into())
    }

    fn status(&self, r: crate::script::WorkflowRef) -> Result<Status, String> {
        self.parts
            .lock()
            .expect("parts lock")
            .get(&r.id)
            .map(|w| w.status())
            .ok_or_else(|| format!("no part of workflow #{} runs here", r.id))
    }

    fn stop(&self, _: crate::script::WorkflowRef, _: Duration) -> Result<Status, String> {
        Err("this is a worker: stop workflows from its master".into())
    }

    fn abort(&self, _: crate::script::WorkflowRef) -> Result<Status, String> {
        Err("this is a worker: abort workflows from its master".into())
    }

    /// The counts of this worker's part only.
    fn stats(&self, r: crate::script::WorkflowRef) -> Result<crate::workflow::Stats, String> {
        self.parts
            .lock()
            .expect("parts lock")
            .get(&r.id)
            .map(|w| w.stats())
            .ok_or_else(|| format!("no part of workflow #{} runs here", r.id))
    }

    fn wait(&self, r: crate::script::WorkflowRef) -> Result<Status, String> {
        self.status(r)
    }

    fn results(&self, _: crate::script::WorkflowRef, _: Option<&str>) -> Result<rhai::Array, String> {
        Err("results are gathered on the master".into())
    }

    fn workflows(&self) -> Vec<(crate::script::WorkflowRef, Status)> {
        self.parts.lock().expect("parts lock").iter().map(|(&id, w)| (crate::script::WorkflowRef { id }, w.status())).collect()
    }

    /// The cluster's workers, this one included, as the master announced them.
    fn workers(&self) -> rhai::Array {
        self.peers.lock().expect("peers lock").iter().map(WorkerInfo::to_dynamic).collect()
    }

    fn runtime_info(&self) -> rhai::Map {
        let mut m = rhai::Map::new();
        m.insert("mode".into(), "worker".into());
        m.insert("node".into(), self.config.name.clone().into());
        m.insert("addr".into(), self.addr.clone().into());
        m.insert("slots".into(), Dynamic::from_int(self.config.slots as i64));
        m.insert("tags".into(), Dynamic::from_array(self.config.tags.iter().map(|t| Dynamic::from(t.clone())).collect()));
        m.insert("has_master".into(), Dynamic::from_bool(self.master.lock().expect("master lock").is_some()));
        m.insert("version".into(), crate::VERSION.into());
        m
    }

    fn stop_all(&self) -> usize {
        0
    }
}
