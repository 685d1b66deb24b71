//! A worker node: runs its part of every workflow its master deploys,
//! exchanges records with the other workers, and goes when its master goes
//! (exit status 4) unless told to stay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rhai::Dynamic;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod remote;

use std::collections::VecDeque;

use bytes::Bytes;

use super::dataflow::{self, Layout, Msg, Running};
use crate::net::message::DataMsg;
use crate::net::{Authenticated, Connection, Identity, Message, Role, WorkerInfo, WorkflowSpec};
use crate::script::host::Source;
use crate::script::{Code, EngineEnv};
use crate::workflow::key::Key;
use crate::workflow::{Plan, Status};
use remote::WorkerRemote;

/// How often a link says it is alive, and how long silence means it is not.
pub const HEARTBEAT: Duration = Duration::from_millis(400);
pub const SILENCE: Duration = Duration::from_millis(1500);
/// How long data for a workflow may wait for that workflow's deploy to
/// arrive (the master sends it to every worker at once); past it, the
/// workflow fails.
const DEPLOY_WAIT: Duration = Duration::from_secs(10);
/// Data frames queued for the master before senders wait.
const MASTER_DATA_QUEUE: usize = 16;
/// How many ended workflows a worker remembers, to refuse their late data.
const TOMBSTONES: usize = 4096;
/// How long a stopping worker waits, past the stop deadline, for its
/// workflows to drain and settle before it aborts them.
const LEAVE_SLACK: Duration = Duration::from_secs(5);

/// The links to the current master: control messages (small, few, never
/// behind data) and a bounded queue of data frames.
#[derive(Clone)]
struct MasterLink {
    control: mpsc::UnboundedSender<Message>,
    data: mpsc::Sender<Bytes>,
}

pub struct WorkerConfig {
    pub name: String,
    pub tags: Vec<String>,
    pub slots: usize,
    pub cookie: String,
    /// `host:port` of a master to dial.
    pub master: Option<String>,
    pub shutdown_with_master: bool,
    pub env: EngineEnv,
}

pub struct Worker {
    config: WorkerConfig,
    identity: Identity,
    addr: String,
    /// The links to the current master.
    master: Mutex<Option<MasterLink>>,
    /// Tracks the control link, so that a shutdown waits for its goodbye.
    master_link: TaskTracker,
    /// This worker's parts of workflows: running, or ended and waiting for
    /// the master's word on their files.
    workflows: Mutex<HashMap<u64, Arc<Running>>>,
    /// Workflows whose part here has ended: data for them is refused.
    ended: Mutex<VecDeque<u64>>,
    /// The cluster's workers, as the master last told us.
    peers: Mutex<Vec<WorkerInfo>>,
    /// Notified when a part starts or is let go.
    changed: Notify,
    /// Cancelled when the process should exit, with `exit_code`.
    pub exit: CancellationToken,
    exit_code: AtomicU8,
}

impl Worker {
    pub fn new(config: WorkerConfig, addr: String) -> Arc<Worker> {
        let identity = Identity { role: Role::Worker, name: config.name.clone(), cookie: config.cookie.clone() };
        Arc::new(Worker {
            config,
            identity,
            addr,
            master: Mutex::new(None),
            master_link: TaskTracker::new(),
            workflows: Mutex::new(HashMap::new()),
            ended: Mutex::new(VecDeque::new()),
            peers: Mutex::new(Vec::new()),
            changed: Notify::new(),
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

    /// Sends a control message to the master; without a master there is
    /// nobody to tell (its loss already failed every workflow).
    fn to_master(&self, msg: Message) {
        if let Some(link) = self.master.lock().expect("master lock").as_ref() {
            let _ = link.control.send(msg);
        }
    }

    fn parts(&self) -> Vec<(u64, Arc<Running>)> {
        self.workflows.lock().expect("workflows lock").iter().map(|(&id, r)| (id, r.clone())).collect()
    }

    fn has_ended(&self, id: u64) -> bool {
        self.ended.lock().expect("ended lock").contains(&id)
    }

    /// Lets go of a part whose files are settled.
    fn release(&self, id: u64) {
        self.workflows.lock().expect("workflows lock").remove(&id);
        self.changed.notify_waiters();
    }

    /// Settles an ended part's files as the master says, and lets it go.
    fn settle(&self, id: u64, running: &Running, commit: bool) {
        match running.settle_files(commit) {
            Ok(None) => {}
            Ok(Some(note)) => tracing::warn!(workflow = id, "{note}"),
            Err(e) => {
                tracing::error!(workflow = id, "{e}");
                self.to_master(Message::Output { text: format!("error: worker {}: {e}\n", self.config.name) });
            }
        }
        self.release(id);
    }

    /// Serves the listener and, if configured, dials the master. Returns
    /// when the worker should exit.
    pub async fn run(self: Arc<Self>, listener: TcpListener, consoles: Arc<super::console::Consoles>) {
        if let Some(addr) = self.config.master.clone() {
            let me = self.clone();
            tokio::spawn(async move {
                match async { Connection::connect(&addr).await?.dial(&me.identity).await }.await {
                    Ok(auth) => me.clone().master_link(auth, true).await,
                    Err(e) => {
                        tracing::error!("cannot join the master at {addr}: {e}");
                        eprintln!("error: cannot join the master at {addr}: {e}");
                        me.quit(1);
                    }
                }
            });
        }
        let me = self.clone();
        let roles: &'static [Role] = &[Role::Master, Role::Peer, Role::Console];
        super::accept_each(listener, self.exit.clone(), self.identity.clone(), roles, move |auth: Authenticated| {
            let (me, consoles) = (me.clone(), consoles.clone());
            async move {
                match auth.peer_role {
                    Role::Console => consoles.serve(auth).await,
                    Role::Master => me.master_link(auth, false).await,
                    _ => me.peer_link(auth).await,
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
        let has_master = self.master.lock().expect("master lock").is_some();
        if !self.parts().is_empty() {
            if has_master {
                self.to_master(Message::Leaving);
            } else {
                for (_, r) in self.parts() {
                    r.request_stop(Some(format!("worker {} stopped", self.config.name)));
                }
            }
            if !self.parts_settled(super::STOP_DEADLINE + LEAVE_SLACK).await {
                for (_, r) in self.parts() {
                    r.abort(format!("worker {} stopped and its workflows did not drain in time", self.config.name));
                }
                self.parts_settled(LEAVE_SLACK).await;
            }
            // Without a master nobody settles what ended well: it is complete.
            for (id, r) in self.parts() {
                if r.status().is_done() {
                    let commit = matches!(r.status(), Status::Finished | Status::Stopped(_));
                    self.settle(id, &r, commit && !has_master);
                }
            }
        }
        self.to_master(Message::Bye);
        // The link ends once it has written the goodbye.
        self.master_link.close();
        let _ = tokio::time::timeout(Duration::from_millis(200), self.master_link.wait()).await;
    }

    /// Aborts every part running here.
    pub fn abort_parts(&self, reason: &str) {
        for (_, r) in self.parts() {
            r.abort(reason.to_string());
        }
    }

    /// Waits (at most `limit`) until every part has been let go.
    async fn parts_settled(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.changed.notified();
            if self.workflows.lock().expect("workflows lock").is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }

    async fn master_link(self: Arc<Self>, mut auth: Authenticated, dialed: bool) {
        let _open = self.master_link.token();
        let master = auth.peer_name.clone();
        if dialed {
            // We asked to join: introduce ourselves, then hear the verdict.
            if auth.writer.write(&Message::Register(self.info())).await.is_err() {
                return self.quit(1);
            }
            match tokio::time::timeout(SILENCE * 2, auth.reader.read()).await {
                Ok(Ok(Some(Message::Welcome))) => {}
                Ok(Ok(Some(Message::Refuse { reason }))) => {
                    tracing::error!("the master {master} refused this worker: {reason}");
                    eprintln!("error: the master {master} refused this worker: {reason}");
                    return self.quit(1);
                }
                other => {
                    tracing::error!("the master {master} did not welcome this worker: {other:?}");
                    return self.quit(1);
                }
            }
        } else {
            let busy = self.master.lock().expect("master lock").is_some();
            if busy {
                let reason = "worker already has a master".to_string();
                tracing::warn!("refused master {master}: {reason}");
                let _ = auth.writer.write(&Message::Refuse { reason }).await;
                return;
            }
            if auth.writer.write(&Message::Welcome).await.is_err() || auth.writer.write(&Message::Register(self.info())).await.is_err() {
                return;
            }
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (data_tx, mut data_rx) = mpsc::channel::<Bytes>(MASTER_DATA_QUEUE);
        {
            let mut slot = self.master.lock().expect("master lock");
            if slot.is_some() {
                return;
            }
            *slot = Some(MasterLink { control: tx.clone(), data: data_tx });
        }
        // Workflow ids are the master's: a new master starts them again.
        self.ended.lock().expect("ended lock").clear();
        tracing::info!("joined master {master} at {}", auth.peer_addr);
        let mut ticker = tokio::time::interval(HEARTBEAT);
        let mut heard = tokio::time::Instant::now();
        let reason = loop {
            tokio::select! {
                biased;
                _ = self.exit.cancelled() => break None,
                _ = tokio::time::sleep_until(heard + SILENCE) => break Some(format!("silent for {SILENCE:?}")),
                _ = ticker.tick() => {
                    if auth.writer.write(&Message::Heartbeat).await.is_err() {
                        break Some("connection lost".to_string());
                    }
                    // Live counts of what runs here.
                    for (id, r) in self.parts() {
                        if !r.status().is_done() && auth.writer.feed(&Message::Progress { id, counts: r.counts() }).await.is_err() {
                            break;
                        }
                    }
                    if auth.writer.flush().await.is_err() {
                        break Some("connection lost".to_string());
                    }
                }
                Some(msg) = rx.recv() => {
                    let bye = msg == Message::Bye;
                    if auth.writer.write(&msg).await.is_err() {
                        break Some("connection lost".to_string());
                    }
                    if bye {
                        break None;
                    }
                }
                read = auth.reader.read() => {
                    heard = tokio::time::Instant::now();
                    match read {
                        Ok(None) => break Some("connection closed".to_string()),
                        Err(e) => break Some(e.to_string()),
                        Ok(Some(Message::Bye)) => break Some("the master quit".to_string()),
                        Ok(Some(msg)) => self.on_master_message(msg).await,
                    }
                }
                Some(frame) = data_rx.recv() => {
                    let mut result = auth.writer.feed_encoded(frame).await;
                    while result.is_ok() {
                        match data_rx.try_recv() {
                            Ok(more) => result = auth.writer.feed_encoded(more).await,
                            Err(_) => break,
                        }
                    }
                    if result.and(auth.writer.flush().await).is_err() {
                        break Some("connection lost".to_string());
                    }
                }
            }
        };
        *self.master.lock().expect("master lock") = None;
        let Some(reason) = reason else { return };
        tracing::warn!("master {master} went away: {reason}");
        // Nobody is left to say the files are complete.
        for (id, r) in self.parts() {
            if r.status().is_done() {
                self.settle(id, &r, false);
            } else {
                r.fail(format!("the master went away: {reason}"));
            }
        }
        if self.config.shutdown_with_master {
            eprintln!("the master {master} went away ({reason}): shutting down");
            self.quit(4);
        } else {
            tracing::info!("waiting for a new master");
        }
    }

    async fn on_master_message(self: &Arc<Self>, msg: Message) {
        match msg {
            Message::Heartbeat => {}
            Message::Peers(peers) => *self.peers.lock().expect("peers lock") = peers,
            Message::Deploy { id, spec, sources, workers, slots } => match self.start_part(id, spec, sources, workers, slots as usize) {
                Ok(()) => self.to_master(Message::Started { id }),
                Err(reason) => {
                    tracing::error!(workflow = id, "cannot start: {reason}");
                    self.to_master(Message::Failed { id, reason });
                }
            },
            Message::Stop { id } => {
                if let Some(r) = self.workflows.lock().expect("workflows lock").get(&id) {
                    r.request_stop(None);
                }
            }
            Message::Abort { id, reason } => {
                if let Some(r) = self.workflows.lock().expect("workflows lock").get(&id) {
                    r.abort(reason);
                }
            }
            Message::Settle { id, commit } => {
                let Some(r) = self.workflows.lock().expect("workflows lock").get(&id).cloned() else { return };
                if r.status().is_done() {
                    self.settle(id, &r, commit);
                } else {
                    // Still running: the workflow failed elsewhere. Its part
                    // ends aborted and keeps its files as incomplete.
                    r.abort("the workflow failed on another node".into());
                }
            }
            other => tracing::warn!("unexpected {} from the master", other.kind()),
        }
    }

    fn start_part(
        self: &Arc<Self>,
        id: u64,
        spec: WorkflowSpec,
        sources: Vec<(String, String)>,
        workers: Vec<WorkerInfo>,
        slots: usize,
    ) -> Result<(), String> {
        let me = workers.iter().position(|w| w.name == self.config.name).ok_or("this worker is not part of the placement")?;
        let plan = Plan::new(spec.into_graph()?);
        let layout = Layout { workers: workers.len(), me, slots: slots.max(1) };
        let code =
            Code { ast: Default::default(), sources: Arc::new(sources.into_iter().map(|(name, text)| Source { name, text }).collect()) };
        let master = self.master.lock().expect("master lock").clone().ok_or("no master")?;
        let remote = Arc::new(WorkerRemote {
            id,
            peers: workers,
            identity: Identity { role: Role::Peer, ..self.identity.clone() },
            links: Mutex::new(HashMap::new()),
            control: master.control.clone(),
            data: master.data.clone(),
            handle: tokio::runtime::Handle::current(),
        });
        let part = dataflow::Part { layout, node: self.config.name.clone(), settle_here: false };
        let running = dataflow::start(plan, code, part, &self.config.env, Some(remote)).map_err(|e| e.to_string())?;
        self.workflows.lock().expect("workflows lock").insert(id, running.clone());
        self.changed.notify_waiters();
        let me = self.clone();
        tokio::spawn(async move {
            let mut watch = running.subscribe();
            let _ = watch.wait_for(|s| s.is_done()).await;
            let status = watch.borrow().clone();
            {
                let mut ended = me.ended.lock().expect("ended lock");
                ended.push_back(id);
                if ended.len() > TOMBSTONES {
                    ended.pop_front();
                }
            }
            // The counts, then the end, behind every record this part sent
            // the master on the same queue: the master must not see the end
            // before the data.
            let end = match &status {
                Status::Finished | Status::Stopped(_) => Message::Done { id },
                Status::Failed(reason) => Message::Failed { id, reason: reason.clone() },
                Status::Aborted(_) => Message::Interrupted { id, operators: running.interrupted_operators() },
                Status::Running => unreachable!("waited until done"),
            };
            let data = me.master.lock().expect("master lock").as_ref().map(|m| m.data.clone());
            if let Some(data) = data {
                for msg in [Message::Progress { id, counts: running.counts() }, end] {
                    // A closed queue: the master is gone, and with it the workflow.
                    let _ = data.send(Bytes::from(crate::net::connection::encode(&msg))).await;
                }
            }
            // A part that ended well is complete once the master says every
            // part is; one that did not keeps its files as incomplete now.
            if !matches!(status, Status::Finished | Status::Stopped(_)) {
                me.settle(id, &running, false);
            }
        });
        Ok(())
    }

    /// The part of workflow `id` that runs here, once it has started; data
    /// may arrive before its deploy does.
    async fn part(&self, id: u64) -> Option<Arc<Running>> {
        let deadline = tokio::time::Instant::now() + DEPLOY_WAIT;
        loop {
            let changed = self.changed.notified();
            if let Some(r) = self.workflows.lock().expect("workflows lock").get(&id) {
                return Some(r.clone());
            }
            if self.has_ended(id) || tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// Records from another worker, into this worker's inboxes. A link
    /// carries one workflow. Its data waits for the workflow's deploy (or
    /// fails it); data for a workflow that ended here is refused by closing
    /// the link, never by stalling it; every frame reaches its inbox or the
    /// workflow fails saying why.
    async fn peer_link(self: Arc<Self>, mut auth: Authenticated) {
        let peer = auth.peer_name.clone();
        let mut part: Option<(u64, Arc<Running>)> = None;
        loop {
            let msg = match auth.reader.read().await {
                Ok(Some(msg)) => msg,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("data link from {peer} closed: {e}");
                    return;
                }
            };
            let Message::Data { id, stage, instance, msg } = msg else {
                tracing::warn!("closing the link from {peer}: a peer link carries data, not {}", msg.kind());
                return;
            };
            let running = match &part {
                Some((known, r)) if *known == id => r.clone(),
                Some((known, r)) => {
                    r.fail(format!("the data link from {peer} for workflow #{known} carried data for workflow #{id}"));
                    return;
                }
                None => {
                    if self.has_ended(id) {
                        tracing::debug!(workflow = id, "refused data from {peer}: the workflow ended here");
                        return;
                    }
                    let Some(r) = self.part(id).await else {
                        if !self.has_ended(id) {
                            let reason = format!("data from {peer} arrived, but the workflow did not start here within {DEPLOY_WAIT:?}");
                            tracing::error!(workflow = id, "{reason}");
                            self.to_master(Message::Failed { id, reason });
                        }
                        return;
                    };
                    part = Some((id, r.clone()));
                    r
                }
            };
            let Some(inbox) = running.inbox(stage as usize, instance as usize) else {
                // Inboxes go when the part ends: a late frame of a failed
                // workflow. Anything else is a bug worth failing for.
                if !running.status().is_done() && running.inboxes_open() {
                    running.fail(format!("data from {peer} for stage {stage} instance {instance}, which does not run on this worker"));
                }
                return;
            };
            tokio::select! {
                biased;
                _ = running.ended().cancelled() => return,
                sent = inbox.send(from_wire(msg)) => {
                    if sent.is_err() && !running.ended().is_cancelled() {
                        running.fail(format!("an instance of stage {stage} ended before its input from {peer} did"));
                        return;
                    }
                }
            }
        }
    }
}

fn from_wire(msg: DataMsg) -> Msg {
    match msg {
        DataMsg::Records(values) => Msg::Records(crate::net::value::to_dynamics(values)),
        DataMsg::Keyed(pairs) => Msg::Keyed(pairs.into_iter().map(|(k, v)| (Key::new(k.into_dynamic()), v.into_dynamic())).collect()),
        DataMsg::Counts(counts) => Msg::Counts(counts.into_iter().map(|(k, n)| (Key::new(k.into_dynamic()), n)).collect()),
        DataMsg::End => Msg::End,
    }
}

/// What a console on a worker can ask: about the worker itself; workflows
/// are deployed from its master.
impl crate::script::Host for Worker {
    fn node_name(&self) -> String {
        self.config.name.clone()
    }

    fn deploy(&self, _: &crate::workflow::Workflow, _: Code) -> Result<crate::script::WorkflowRef, String> {
        Err("this is a worker: deploy from its master".into())
    }

    fn status(&self, r: crate::script::WorkflowRef) -> Result<Status, String> {
        self.workflows
            .lock()
            .expect("workflows lock")
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
    fn stats(&self, r: crate::script::WorkflowRef) -> Result<rhai::Map, String> {
        self.workflows
            .lock()
            .expect("workflows lock")
            .get(&r.id)
            .map(|w| w.stats().to_map())
            .ok_or_else(|| format!("no part of workflow #{} runs here", r.id))
    }

    fn wait(&self, r: crate::script::WorkflowRef) -> Result<Status, String> {
        self.status(r)
    }

    fn results(&self, _: crate::script::WorkflowRef, _: Option<&str>) -> Result<rhai::Array, String> {
        Err("results are gathered on the master".into())
    }

    fn workflows(&self) -> Vec<(crate::script::WorkflowRef, Status)> {
        self.workflows.lock().expect("workflows lock").iter().map(|(&id, w)| (crate::script::WorkflowRef { id }, w.status())).collect()
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
