//! A master node: knows its workers, places workflows on them, gathers what
//! they print and collect, and notices within two seconds when one goes.
//! The bookkeeping is the [`Coordinator`]; this is the I/O around it.

mod checkpoints;
pub mod coordinator;
mod deployed;
pub mod fence;
mod host;
mod prepare;
mod recovery;
mod reports;
mod run;
pub mod succession;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::coordinator::{Action, Coordinator, Event};
use self::deployed::Deployed;
use super::dataflow::sink;
use super::link::{self, LinkEnd, Outgoing};
use crate::net::handshake::{self, HANDSHAKE_TIMEOUT};
use crate::net::message::ControlRefusal;
use crate::net::{Authenticated, ControlMsg, Cookie, Identity, Link, LinkMessage, NetError, Role, WorkerInfo};
use crate::script::{Host, Output, WorkflowRef};
use crate::workflow::Status;

/// A worker to dial again: its name and the address it was dialed at.
type Redial = (String, String);

pub struct Master {
    /// Itself, for the tasks it starts.
    me: std::sync::Weak<Master>,
    name: String,
    identity: Identity,
    handle: Handle,
    coordinator: Mutex<Coordinator>,
    /// Which worker link may speak for which run.
    fence: Mutex<self::fence::Fence>,
    links: Mutex<HashMap<String, mpsc::UnboundedSender<ControlMsg>>>,
    workflows: Mutex<BTreeMap<u64, Arc<Deployed>>>,
    /// Each run: the workflow it runs.
    runs: Mutex<HashMap<u64, u64>>,
    /// What each worker last said of itself (memory, uptime in ms), and when.
    health: Mutex<HashMap<String, (u64, u64, std::time::Instant)>>,
    next_id: AtomicU64,
    /// Run ids, which workers know workflows by: unique to this master's
    /// life (its start time in their high bits), so that a worker that
    /// outlives one master never mistakes its runs for the next one's.
    next_run: AtomicU64,
    /// Stopping every workflow because the master is exiting: they stay
    /// recorded as running, for `--recover`.
    exiting: AtomicBool,
    output: Arc<Mutex<Output>>,
    /// What workers print, on its own thread: never behind a slow terminal.
    printer: super::printer::Printer,
    notices: Mutex<Option<Output>>,
    /// Cancelled when the process should exit, with `exit_code`.
    pub exit: CancellationToken,
    exit_code: AtomicU8,
    /// The links to workers, each tracked until it has said goodbye.
    link_tasks: TaskTracker,
    /// How many ended workflows are kept.
    keep: usize,
    /// Workers this master dialed and lost, to dial again (by `serve`).
    redials: (mpsc::UnboundedSender<Redial>, Mutex<Option<mpsc::UnboundedReceiver<Redial>>>),
    results_cap: u64,
    expressions: crate::script::host::DeployExpressions,
    /// What an upgrade replaced, for whoever watches a workflow.
    pub succession: self::succession::Succession,
}

/// The first run id of a master started now.
fn first_run() -> u64 {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    ((ms & 0xFFFF_FFFF_FFFF) << 16) + 1
}

impl Master {
    pub fn new(name: String, cookie: &Cookie, shutdown_with_workers: bool, handle: Handle, output: Output) -> Arc<Master> {
        let output = Arc::new(Mutex::new(output));
        Arc::new_cyclic(|me| Master {
            me: me.clone(),
            identity: Identity::new(Role::Master, name.clone(), cookie),
            name,
            handle,
            coordinator: Mutex::new(Coordinator::new(shutdown_with_workers)),
            fence: Mutex::new(self::fence::Fence::default()),
            links: Mutex::new(HashMap::new()),
            workflows: Mutex::new(BTreeMap::new()),
            runs: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            next_run: AtomicU64::new(first_run()),
            exiting: AtomicBool::new(false),
            printer: super::printer::Printer::start(output.clone()),
            output,
            notices: Mutex::new(None),
            exit: CancellationToken::new(),
            exit_code: AtomicU8::new(0),
            link_tasks: TaskTracker::new(),
            keep: super::keep_workflows(),
            redials: {
                let (tx, rx) = mpsc::unbounded_channel();
                (tx, Mutex::new(Some(rx)))
            },
            results_cap: super::results_cap(),
            expressions: Default::default(),
            succession: Default::default(),
        })
    }

    pub fn exit_code(&self) -> u8 {
        self.exit_code.load(Ordering::Relaxed)
    }

    /// Queues a control message for a worker. A link whose queue is closed
    /// is ending, and its end (a `WorkerLeft` event) settles what it ran.
    fn send(&self, worker: &str, msg: ControlMsg) {
        if let Some(tx) = self.links.lock().expect("links lock").get(worker) {
            let _ = tx.send(msg);
        }
    }

    fn step(&self, event: Event) {
        match &event {
            Event::WorkerJoined(info) => self.fence.lock().expect("fence lock").joined(&info.name),
            Event::Deployed { id, workers } => self.fence.lock().expect("fence lock").deployed(*id, workers),
            _ => {}
        }
        let actions = self.coordinator.lock().expect("coordinator lock").step(event);
        for action in actions {
            match action {
                Action::BroadcastPeers(peers) => {
                    let names: Vec<String> = self.links.lock().expect("links lock").keys().cloned().collect();
                    for name in names {
                        self.send(&name, ControlMsg::Peers(peers.clone()));
                    }
                }
                Action::Stop { worker, id } => self.send(&worker, ControlMsg::Stop { id }),
                Action::Abort { worker, id, reason } => self.send(&worker, ControlMsg::Abort { id, reason }),
                Action::Settle { worker, id, commit } => self.send(&worker, ControlMsg::Settle { id, commit }),
                Action::SetStatus { id, status } => self.set_status(id, status),
                Action::Exit { code, reason } => {
                    tracing::error!("shutting down: {reason}");
                    eprintln!("shutting down: {reason}");
                    self.exit_code.store(code, Ordering::Relaxed);
                    self.exit.cancel();
                }
                Action::Log(line) => tracing::info!("{line}"),
            }
        }
    }

    /// Run `run` ended. Settles the workflow's files here (under
    /// checkpoints: writes its last checkpoint), then publishes its final
    /// status; a failed run of a workflow that can recover runs again.
    fn set_status(&self, run: u64, status: Status) {
        let Some(wf) = self.deployed_of(run) else { return };
        if wf.run() != run {
            tracing::debug!(workflow = wf.id, "run {run} ended ({status}) after the workflow moved on to run {}", wf.run());
            return;
        }
        if let Status::Failed(reason) = status {
            if let Some(status) = self.recover(run, &wf, reason) {
                self.publish_status(run, &wf, status);
            }
            return;
        }
        match (wf.checkpoints(), self.me.upgrade()) {
            (Some(cp), Some(me)) if matches!(status, Status::Finished | Status::Stopped(_)) => {
                self.handle.spawn(async move {
                    let status = me.last_checkpoint(run, &cp, status).await;
                    me.publish_status(run, &wf, status);
                });
            }
            _ => self.publish_status(run, &wf, status),
        }
    }

    /// Publishes a workflow's final status and forgets the oldest ended
    /// workflows beyond the history's bound.
    fn publish_status(&self, run: u64, wf: &Deployed, status: Status) {
        let status = sink::settle_for(wf.files.values().map(|f| &**f), status);
        if wf.checkpoints().is_none() && matches!(status, Status::Finished | Status::Stopped(_)) {
            // Every file is in place, here and on every worker: what the
            // sources read may be acknowledged now, not before.
            let workers = self.coordinator.lock().expect("coordinator lock").workers_of(run);
            for w in workers {
                self.send(&w, ControlMsg::Committed { id: run, checkpoint: None });
            }
        }
        let id = wf.id;
        if let Some(r) = wf.recovery.as_ref().filter(|_| !self.exiting.load(Ordering::Relaxed)) {
            if let Some(name) = r.name.lock().expect("name lock").as_deref() {
                crate::runtime::checkpoint::running::remove(name);
            }
        }
        wf.ended_at.lock().expect("ended lock").get_or_insert_with(std::time::Instant::now);
        wf.status.send_replace(status.clone());
        match &status {
            // Reported by whoever deployed it (the command's `error:`, the
            // shell's notice, `status()`): logged to the file only.
            Status::Failed(reason) => tracing::error!(target: super::log::REPORTED, workflow = id, "failed: {reason}"),
            other => tracing::info!(workflow = id, "{other}"),
        }
        if let (Some(notices), false) = (self.notices.lock().expect("notices lock").clone(), matches!(status, Status::Stopped(None))) {
            notices(&format!("{} {status}", WorkflowRef { id }));
        }
        let mut workflows = self.workflows.lock().expect("workflows lock");
        let ended: Vec<u64> = workflows.iter().filter(|(_, w)| w.status.borrow().is_done()).map(|(&id, _)| id).collect();
        for old in ended.iter().take(ended.len().saturating_sub(self.keep)) {
            workflows.remove(old);
            let mut runs = self.runs.lock().expect("runs lock");
            let mut coordinator = self.coordinator.lock().expect("coordinator lock");
            coordinator.forget(*old);
            for (run, _) in runs.iter().filter(|(_, id)| *id == old) {
                coordinator.forget(*run);
            }
            runs.retain(|_, id| id != old);
        }
    }

    /// Accepts workers that dial in, and consoles.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, consoles: Arc<super::console::Consoles>) {
        if let Some(mut redials) = self.redials.1.lock().expect("redials lock").take() {
            let me = Arc::downgrade(&self);
            self.handle.spawn(async move {
                while let Some((name, addr)) = redials.recv().await {
                    let Some(master) = me.upgrade() else { return };
                    tokio::spawn(master.redial(name, addr));
                }
            });
        }
        let me = self.clone();
        crate::net::gate::serve(
            listener,
            self.exit.clone(),
            self.identity.clone(),
            &[Role::Worker, Role::Console],
            move |auth: Authenticated| {
                let (me, consoles) = (me.clone(), consoles.clone());
                async move {
                    match auth.peer_role {
                        Role::Console => consoles.serve(auth).await,
                        _ => me.worker_link_inner(auth.into_link(link::tick()), None, None).await,
                    }
                }
            },
        )
        .await
    }

    /// Dials a worker at `addr` and waits until it is registered. A worker
    /// that is not listening yet (still starting) or does not answer is
    /// tried again, with a backoff, until `wait` has passed; so is one that
    /// still has a master, whose link to it may not have ended on its side
    /// yet (a master killed and started again, one stopped until the
    /// worker's tick time passes). One that answers with any other refusal
    /// (another cookie, another version) is not.
    pub async fn dial(self: Arc<Self>, addr: String, wait: Duration) -> Result<(), String> {
        let transient = |e: &NetError| matches!(e, NetError::Io(_) | NetError::Timeout(_));
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(50);
        let auth = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let auth = handshake::dial_retrying(&addr, &self.identity, left, HANDSHAKE_TIMEOUT, transient).await.map_err(|e| {
                crate::net::counters::connection_failed();
                format!("cannot reach the worker at {addr}: {e}")
            })?;
            let mut auth: Link<ControlMsg> = auth.into_link(link::tick());
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, auth.reader.read()).await {
                Ok(Ok(Some(ControlMsg::Welcome))) => break auth,
                Ok(Ok(Some(ControlMsg::Refuse(ControlRefusal::HasMaster)))) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::info!("the worker at {addr} still has a master: trying again in {pause:?}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Ok(Ok(Some(ControlMsg::Refuse(why)))) => return Err(format!("the worker at {addr} refused: {why}")),
                Ok(Ok(Some(other))) => return Err(format!("the worker at {addr} answered {} instead of welcome", other.kind())),
                Ok(Ok(None)) => return Err(format!("the worker at {addr} closed the connection")),
                Ok(Err(e)) => return Err(format!("the worker at {addr}: {e}")),
                Err(_) => return Err(format!("the worker at {addr} did not answer within {}", super::log::seconds(HANDSHAKE_TIMEOUT))),
            }
        };
        let (registered_tx, registered_rx) = tokio::sync::oneshot::channel();
        let me = self.clone();
        let at = addr.clone();
        tokio::spawn(async move { me.worker_link_inner(auth, Some(registered_tx), Some(at)).await });
        registered_rx.await.map_err(|_| format!("the worker at {addr} left before registering"))?
    }

    /// Dials a lost worker again (every 0.1 s at first, every 2 s at most)
    /// for the rejoin wait, until it is back or this master exits.
    async fn redial(self: Arc<Self>, name: String, addr: String) {
        let deadline = tokio::time::Instant::now() + super::worker::rejoin_wait();
        let mut delay = Duration::from_millis(100);
        while tokio::time::Instant::now() < deadline && !self.exit.is_cancelled() {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            if self.worker_names().contains(&name) {
                return;
            }
            if self.clone().dial(addr.clone(), Duration::from_millis(500)).await.is_ok() {
                tracing::info!("worker {name} is back at {addr}");
                return;
            }
        }
    }

    /// Waits (at most `limit`) until what workers printed has reached the terminal.
    pub fn flush_output(&self, limit: Duration) {
        self.printer.flush(limit);
    }

    /// Once `exit` is cancelled: waits (at most `limit`) until every link
    /// has told its worker goodbye, so that workers hear "the master quit"
    /// rather than a dropped connection.
    pub async fn links_closed(&self, limit: Duration) {
        self.link_tasks.close();
        let _ = tokio::time::timeout(limit, self.link_tasks.wait()).await;
    }

    /// Serves a worker's link until it ends. `dialed`: the address this
    /// master dialed it at, to dial again if the link is lost.
    async fn worker_link_inner(
        self: Arc<Self>,
        mut auth: Link<ControlMsg>,
        registered: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
        dialed: Option<String>,
    ) {
        let _open = self.link_tasks.token();
        let info: WorkerInfo = match tokio::time::timeout(HANDSHAKE_TIMEOUT, auth.reader.read()).await {
            Ok(Ok(Some(ControlMsg::Register(info)))) => info,
            other => {
                let what = match other {
                    Ok(Ok(Some(msg))) => format!("it sent {}", msg.kind()),
                    Ok(Ok(None)) => "it closed the connection".into(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("nothing within {}", super::log::seconds(HANDSHAKE_TIMEOUT)),
                };
                let reason = format!("{} did not register: {what}", handshake::quoted(&auth.peer_name));
                tracing::warn!("{reason}");
                if let Some(tx) = registered {
                    let _ = tx.send(Err(reason));
                }
                return;
            }
        };
        // The name the worker proved in the handshake is its name.
        if info.name != auth.peer_name {
            let why =
                ControlRefusal::NameMismatch { registered: handshake::quoted(&info.name), handshake: handshake::quoted(&auth.peer_name) };
            tracing::warn!("refused a worker: {why}");
            let _ = auth.writer.write(&ControlMsg::Refuse(why.clone())).await;
            if let Some(tx) = registered {
                let _ = tx.send(Err(why.to_string()));
            }
            return;
        }
        let admitted = self.coordinator.lock().expect("coordinator lock").admit(&info);
        if let Err(e) = admitted {
            tracing::warn!("refused worker {}: {e}", handshake::quoted(&info.name));
            let _ = auth.writer.write(&ControlMsg::Refuse(ControlRefusal::NameTaken(info.name.clone()))).await;
            if let Some(tx) = registered {
                let _ = tx.send(Err(e.to_string()));
            }
            return;
        }
        if registered.is_none() && auth.writer.write(&ControlMsg::Welcome).await.is_err() {
            return;
        }
        let name = info.name.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        self.links.lock().expect("links lock").insert(name.clone(), tx);
        self.step(Event::WorkerJoined(info));
        if let Some(done) = registered {
            // The dialer may have given up waiting; the worker is registered either way.
            let _ = done.send(Ok(()));
        }
        let end = link::drive(
            &mut auth,
            Outgoing { control: rx, data: None },
            &self.exit,
            true,
            || vec![ControlMsg::Heartbeat],
            |msg| {
                match msg {
                    ControlMsg::Leaving => self.step(Event::WorkerLeaving { name: name.clone() }),
                    msg => self.on_worker_message(&name, msg),
                }
                std::future::ready(())
            },
        )
        .await;
        let (reason, lost) = match end {
            LinkEnd::Stopped | LinkEnd::SaidBye => ("the master quit".to_string(), false),
            LinkEnd::PeerSaidBye => ("it stopped".to_string(), false),
            LinkEnd::Lost(reason) => {
                tracing::warn!("closing the link to {name}: {reason}");
                (reason, true)
            }
        };
        self.links.lock().expect("links lock").remove(&name);
        let retiring = self.coordinator.lock().expect("coordinator lock").is_retiring(&name);
        self.step(Event::WorkerLeft { name: name.clone(), reason });
        if let (true, false, Some(addr)) = (lost, retiring, dialed) {
            // Cut off or stalled, it may come back: a worker started with
            // --no-shutdown-with-master waits to be dialed again.
            let _ = self.redials.0.send((name, addr));
        }
    }

    fn get(&self, r: WorkflowRef) -> Result<Arc<Deployed>, String> {
        self.workflows.lock().expect("workflows lock").get(&r.id).cloned().ok_or_else(|| super::unknown_workflow(r, &self.name, self.keep))
    }

    /// Watches a workflow's status.
    pub fn subscribe(&self, r: WorkflowRef) -> Result<watch::Receiver<Status>, String> {
        Ok(self.get(r)?.status.subscribe())
    }

    pub fn request_stop(&self, r: WorkflowRef) {
        let Ok(wf) = self.get(r) else { return };
        wf.ending.store(true, Ordering::Relaxed);
        self.step(Event::StopRequested { id: wf.run(), reason: None });
    }

    pub fn request_abort(&self, r: WorkflowRef, reason: &str) {
        let Ok(wf) = self.get(r) else { return };
        wf.ending.store(true, Ordering::Relaxed);
        self.step(Event::AbortRequested { id: wf.run(), reason: reason.to_string() });
    }

    /// Workflows still running.
    pub fn running(&self) -> Vec<WorkflowRef> {
        self.workflows().into_iter().filter(|(_, s)| !s.is_done()).map(|(r, _)| r).collect()
    }

    /// These workers are being replaced: their going fails nothing and
    /// shuts nothing down, and no new workflow is placed on them.
    pub fn retire(&self, names: Vec<String>) {
        self.step(Event::Retiring { names });
    }

    /// Names of the workers connected now.
    pub fn worker_names(&self) -> Vec<String> {
        self.coordinator.lock().expect("coordinator lock").workers().into_iter().map(|w| w.name).collect()
    }
}
