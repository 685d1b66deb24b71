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

use super::dataflow::{self, Layout, Msg, Remote, Running};
use crate::net::message::DataMsg;
use crate::net::{Authenticated, Connection, Identity, Message, NetError, Role, Value, WorkerInfo, WorkflowSpec};
use crate::script::host::Source;
use crate::script::{Code, EngineEnv};
use crate::workflow::key::Key;
use crate::workflow::{Plan, Status};

/// How often a link says it is alive, and how long silence means it is not.
pub const HEARTBEAT: Duration = Duration::from_millis(400);
pub const SILENCE: Duration = Duration::from_millis(1500);
/// How long data for a workflow may wait for that workflow's deploy to arrive.
const DEPLOY_WAIT: Duration = Duration::from_secs(5);
/// Frames of data queued per link to a peer before senders wait.
const LINK_QUEUE: usize = 64;

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
    /// The control link to the current master.
    master: Mutex<Option<mpsc::UnboundedSender<Message>>>,
    /// Tracks the control link, so that a shutdown waits for its goodbye.
    master_link: TaskTracker,
    workflows: Mutex<HashMap<u64, Arc<Running>>>,
    /// The cluster's workers, as the master last told us.
    peers: Mutex<Vec<WorkerInfo>>,
    appeared: Notify,
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
            peers: Mutex::new(Vec::new()),
            appeared: Notify::new(),
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

    fn to_master(&self, msg: Message) {
        if let Some(tx) = self.master.lock().expect("master lock").as_ref() {
            let _ = tx.send(msg);
        }
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

    /// Stops every workflow part gracefully and says goodbye to the master.
    pub async fn shutdown(&self) {
        let running: Vec<Arc<Running>> = self.workflows.lock().expect("workflows lock").values().cloned().collect();
        for r in &running {
            r.request_stop();
        }
        for r in running {
            let mut watch = r.subscribe();
            let _ = tokio::time::timeout(Duration::from_secs(30), watch.wait_for(|s| s.is_done())).await;
        }
        self.to_master(Message::Bye);
        // The link ends once it has written the goodbye.
        self.master_link.close();
        let _ = tokio::time::timeout(Duration::from_millis(200), self.master_link.wait()).await;
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
        {
            let mut slot = self.master.lock().expect("master lock");
            if slot.is_some() {
                return;
            }
            *slot = Some(tx.clone());
        }
        tracing::info!("joined master {master} at {}", auth.peer_addr);
        let mut ticker = tokio::time::interval(HEARTBEAT);
        let mut heard = tokio::time::Instant::now();
        let reason = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(heard + SILENCE) => break Some(format!("silent for {SILENCE:?}")),
                _ = self.exit.cancelled() => break None,
                _ = ticker.tick() => {
                    if auth.writer.write(&Message::Heartbeat).await.is_err() {
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
            }
        };
        *self.master.lock().expect("master lock") = None;
        let Some(reason) = reason else { return };
        tracing::warn!("master {master} went away: {reason}");
        for r in self.workflows.lock().expect("workflows lock").drain().map(|(_, r)| r) {
            r.fail(format!("the master went away: {reason}"));
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
                    r.request_stop();
                }
            }
            Message::Abort { id, reason } => {
                if let Some(r) = self.workflows.lock().expect("workflows lock").get(&id) {
                    r.fail(reason);
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
        let out = master.clone();
        let mut env = self.config.env.clone();
        env.output = Arc::new(move |text: &str| {
            let _ = out.send(Message::Output { text: text.to_string() });
        });
        let remote = Arc::new(WorkerRemote {
            id,
            peers: workers,
            identity: Identity { role: Role::Peer, ..self.identity.clone() },
            links: Mutex::new(HashMap::new()),
            master: master.clone(),
            handle: tokio::runtime::Handle::current(),
        });
        let running = dataflow::start(plan, code, layout, &env, Some(remote))?;
        self.workflows.lock().expect("workflows lock").insert(id, running.clone());
        self.appeared.notify_waiters();
        let me = self.clone();
        tokio::spawn(async move {
            let mut watch = running.subscribe();
            let _ = watch.wait_for(|s| s.is_done()).await;
            let status = watch.borrow().clone();
            match status {
                Status::Failed(reason) => me.to_master(Message::Failed { id, reason }),
                _ => me.to_master(Message::Done { id }),
            }
            me.workflows.lock().expect("workflows lock").remove(&id);
        });
        Ok(())
    }

    async fn running(&self, id: u64) -> Option<Arc<Running>> {
        let deadline = tokio::time::Instant::now() + DEPLOY_WAIT;
        loop {
            let notified = self.appeared.notified();
            if let Some(r) = self.workflows.lock().expect("workflows lock").get(&id) {
                return Some(r.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Records from another worker, into this worker's inboxes.
    async fn peer_link(self: Arc<Self>, mut auth: Authenticated) {
        let peer = auth.peer_name.clone();
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
            let Some(running) = self.running(id).await else {
                tracing::warn!(workflow = id, "data from {peer} for a workflow that is not running here");
                continue;
            };
            let Some(inbox) = running.inbox(stage as usize, instance as usize) else { continue };
            let _ = inbox.send(from_wire(msg)).await;
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

fn to_wire(msg: Msg) -> Result<Option<DataMsg>, String> {
    let plain = |v: &Dynamic| Value::from_dynamic(v).map_err(|e| e.to_string());
    Ok(Some(match msg {
        Msg::Records(records) => DataMsg::Records(records.iter().map(plain).collect::<Result<_, _>>()?),
        Msg::Keyed(pairs) => DataMsg::Keyed(pairs.iter().map(|(k, v)| Ok((plain(&k.value)?, plain(v)?))).collect::<Result<_, String>>()?),
        Msg::Counts(counts) => DataMsg::Counts(counts.iter().map(|(k, n)| Ok((plain(&k.value)?, *n))).collect::<Result<_, String>>()?),
        Msg::End => DataMsg::End,
        Msg::Abort => return Ok(None),
    }))
}

/// The network side of one workflow on one worker.
struct WorkerRemote {
    id: u64,
    peers: Vec<WorkerInfo>,
    identity: Identity,
    /// Encoded frames to each peer.
    links: Mutex<HashMap<usize, mpsc::Sender<bytes::Bytes>>>,
    master: mpsc::UnboundedSender<Message>,
    handle: tokio::runtime::Handle,
}

impl WorkerRemote {
    fn link(&self, worker: usize) -> Result<mpsc::Sender<bytes::Bytes>, String> {
        let mut links = self.links.lock().expect("links lock");
        if let Some(link) = links.get(&worker) {
            return Ok(link.clone());
        }
        let peer = self.peers.get(worker).ok_or_else(|| format!("no worker number {worker}"))?.clone();
        let (tx, mut rx) = mpsc::channel::<bytes::Bytes>(LINK_QUEUE);
        let identity = self.identity.clone();
        let master = self.master.clone();
        let id = self.id;
        self.handle.spawn(async move {
            let conn = match Connection::connect(&peer.addr).await {
                Ok(c) => c.dial(&identity).await,
                Err(e) => Err(e),
            };
            let mut auth = match conn {
                Ok(a) => a,
                Err(e) => {
                    let _ = master.send(Message::Failed { id, reason: format!("cannot reach worker {} at {}: {e}", peer.name, peer.addr) });
                    return;
                }
            };
            while let Some(msg) = rx.recv().await {
                let mut result = auth.writer.feed_encoded(msg).await;
                // Send everything queued in one flush.
                while result.is_ok() {
                    match rx.try_recv() {
                        Ok(more) => result = auth.writer.feed_encoded(more).await,
                        Err(_) => break,
                    }
                }
                if let Err(e) = result.and(auth.writer.flush().await) {
                    let _ = master.send(Message::Failed { id, reason: format!("lost the data link to worker {}: {e}", peer.name) });
                    return;
                }
            }
            let _: Result<(), NetError> = auth.writer.flush().await;
        });
        links.insert(worker, tx.clone());
        Ok(tx)
    }
}

impl Remote for WorkerRemote {
    fn send(&self, worker: usize, stage: usize, instance: usize, msg: Msg) -> Result<(), String> {
        let (stage, instance) = (stage as u32, instance as u32);
        let frame = match msg {
            Msg::Records(records) => {
                postcard::to_allocvec(&crate::net::message::RecordsFrame { id: self.id, stage, instance, records: &records }).map_err(
                    // The encoder keeps no message of its own errors: name
                    // the record that cannot travel, and why.
                    |e| records.iter().find_map(|r| Value::from_dynamic(r).err()).map_or_else(|| e.to_string(), |why| why.to_string()),
                )?
            }
            other => match to_wire(other)? {
                Some(data) => crate::net::connection::encode(&Message::Data { id: self.id, stage, instance, msg: data }),
                None => return Ok(()),
            },
        };
        let link = self.link(worker)?;
        link.blocking_send(bytes::Bytes::from(frame)).map_err(|_| format!("the data link to worker {} is closed", self.peers[worker].name))
    }

    fn collect(&self, sink: &str, records: &[Dynamic]) -> Result<(), String> {
        let values = crate::net::value::to_values(records).map_err(|e| e.to_string())?;
        self.master.send(Message::Collected { id: self.id, sink: sink.to_string(), values }).map_err(|_| "the master is gone".to_string())
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

    fn stop(&self, _: crate::script::WorkflowRef) -> Result<Status, String> {
        Err("this is a worker: stop workflows from its master".into())
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
