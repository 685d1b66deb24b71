//! Remote consoles: every node serves shells over its authenticated
//! listener. Each console gets its own session (scope, functions, `v(n)`)
//! on its own thread; the connection carries messages, not terminal bytes.
//! An interrupt goes straight to the running evaluation, never behind it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::net::message::{EvalError, Reply};
use crate::net::{Authenticated, ConsoleMsg, Link, LinkMessage};
use crate::script::complete::Completer;
use crate::script::session::ErrorKind;
use crate::script::shell_api::ShellState;
use crate::script::{App, EngineEnv, Host, Session};

/// What consoles on this node are made of.
pub struct Consoles {
    pub node: String,
    pub host: Option<Arc<dyn Host>>,
    /// The app new consoles load (an upgrade replaces it).
    pub app: std::sync::RwLock<Option<App>>,
    pub env: EngineEnv,
    /// Cancelled by a confirmed `halt()`: the node stops gracefully.
    pub halt: CancellationToken,
    /// What `upgrade(tarball, hosts)` calls: a deploy's master has one.
    pub upgrader: Option<Arc<dyn Upgrader>>,
    /// Evaluations asked for and not yet answered on their connection: an
    /// exiting node answers them first (an `rpc stop(..)` that ends a
    /// master's workflow gets its status, not a closed connection).
    owed: AtomicU64,
}

/// Moves a deployed cluster to a new release (see `deploy::upgrade`).
pub trait Upgrader: Send + Sync {
    /// Upgrades to the release in `tarball`; `hosts`, when not empty, must
    /// be the deploy's. `say` tells the caller's console how it goes.
    fn upgrade(&self, tarball: &std::path::Path, hosts: &[String], say: Arc<dyn Fn(&str) + Send + Sync>) -> Result<String, String>;
}

impl Consoles {
    pub fn new(node: String, host: Option<Arc<dyn Host>>, app: Option<App>, env: EngineEnv) -> Consoles {
        Consoles {
            node,
            host,
            app: std::sync::RwLock::new(app),
            env,
            halt: CancellationToken::new(),
            upgrader: None,
            owed: AtomicU64::new(0),
        }
    }

    pub fn app(&self) -> Option<App> {
        self.app.read().expect("app lock").clone()
    }

    /// Waits (at most `limit`) until every evaluation a console asked for
    /// has been answered: a node about to exit calls it.
    pub async fn answered(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.owed.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

enum Request {
    Eval { id: u64, code: String, timeout: Option<Duration>, script: Option<String> },
    Complete { id: u64, word: String, method: bool },
    Signature { id: u64, name: String },
}

impl Consoles {
    /// Serves one console until it detaches or its connection drops.
    pub async fn serve(self: Arc<Self>, auth: Authenticated) {
        let mut auth: Link<ConsoleMsg> = auth.into_link(super::link::tick());
        let peer = crate::net::handshake::quoted(&auth.peer_name);
        tracing::info!("console {peer} attached from {}", auth.peer_addr);
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ConsoleMsg>();
        let (req_tx, req_rx) = std_mpsc::channel::<Request>();
        let interrupt = Arc::new(AtomicBool::new(false));
        let me = self.clone();
        let flag = interrupt.clone();
        let replies = out_tx.clone();
        let (logs_tx, mut logs_rx) = mpsc::unbounded_channel::<bool>();
        let (shown_tx, mut shown_rx) = mpsc::channel::<String>(super::printer::QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let audience = audience(shown_tx, dropped.clone());
        let worker = std::thread::Builder::new()
            .name(format!("console:{peer}"))
            .spawn(move || me.session_loop(req_rx, replies, flag, logs_tx, audience));
        if let Err(e) = worker {
            tracing::error!("cannot start a console thread: {e}");
            return;
        }
        let mut logs: Option<tokio::sync::broadcast::Receiver<String>> = None;
        // This connection's share of `owed`, given back however it ends.
        let mut owed: u64 = 0;
        loop {
            tokio::select! {
                Some(on) = logs_rx.recv() => logs = on.then(super::log::subscribe),
                Some(msg) = out_rx.recv() => {
                    // What workflows printed before an evaluation ended comes before its result.
                    if matches!(msg, ConsoleMsg::Evaluated { .. }) {
                        while let Ok(text) = shown_rx.try_recv() {
                            if auth.writer.write(&ConsoleMsg::Printed { text }).await.is_err() {
                                break;
                            }
                        }
                    }
                    let answer = matches!(msg, ConsoleMsg::Evaluated { id, .. } if id != 0);
                    let written = auth.writer.write(&msg).await.is_ok();
                    if answer && owed > 0 {
                        owed -= 1;
                        self.owed.fetch_sub(1, Ordering::AcqRel);
                    }
                    if !written {
                        break;
                    }
                }
                Some(text) = shown_rx.recv() => {
                    if auth.writer.write(&ConsoleMsg::Printed { text }).await.is_err() {
                        break;
                    }
                    let lost = dropped.swap(0, Ordering::Relaxed);
                    if lost > 0 {
                        let text = super::printer::dropped_note(lost, "workflow output", "this console");
                        if auth.writer.write(&ConsoleMsg::Printed { text }).await.is_err() {
                            break;
                        }
                    }
                }
                line = async {
                    match logs.as_mut() {
                        Some(rx) => rx.recv().await.ok(),
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(line) = line {
                        let _ = auth.writer.write(&ConsoleMsg::Printed { text: line }).await;
                    }
                }
                read = auth.reader.read() => match read {
                    Ok(Some(ConsoleMsg::Eval { id, code, timeout_ms, script })) => {
                        owed += 1;
                        self.owed.fetch_add(1, Ordering::AcqRel);
                        let _ = req_tx.send(Request::Eval { id, code, timeout: timeout_ms.map(Duration::from_millis), script });
                    }
                    Ok(Some(ConsoleMsg::Complete { id, word, method })) => {
                        let _ = req_tx.send(Request::Complete { id, word, method });
                    }
                    Ok(Some(ConsoleMsg::Signature { id, name })) => {
                        let _ = req_tx.send(Request::Signature { id, name });
                    }
                    Ok(Some(ConsoleMsg::Interrupt)) => interrupt.store(true, Ordering::Relaxed),
                    Ok(Some(ConsoleMsg::Watch { id })) => {
                        let workflows = self.host.as_ref().map(|h| h.watch()).unwrap_or_default();
                        if auth.writer.write(&ConsoleMsg::Watching { id, workflows }).await.is_err() {
                            break;
                        }
                    }
                    Ok(Some(ConsoleMsg::Logs { on })) => logs = on.then(super::log::subscribe),
                    Ok(Some(ConsoleMsg::Halt { node })) => {
                        if node == self.node {
                            tracing::warn!("halted from the console {peer}");
                            let _ = auth.writer.write(&ConsoleMsg::Evaluated { id: 0, reply: Reply::Halted }).await;
                            self.halt.cancel();
                            break;
                        }
                        let reply = Reply::Error { kind: EvalError::Runtime, message: format!("not halted: `{node}` is not this node's name ({})", self.node), excerpt: None };
                        let _ = auth.writer.write(&ConsoleMsg::Evaluated { id: 0, reply }).await;
                    }
                    Ok(Some(ConsoleMsg::Bye)) | Ok(None) => break,
                    Ok(Some(ConsoleMsg::Heartbeat)) => {}
                    Ok(Some(other)) => {
                        tracing::warn!("closing console {peer}: unexpected {}", other.kind());
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("closing console {peer}: {e}");
                        break;
                    }
                }
            }
        }
        // Stops a running evaluation; the session thread ends when `req_tx` drops.
        interrupt.store(true, Ordering::Relaxed);
        // Nobody is left to answer.
        self.owed.fetch_sub(owed, Ordering::AcqRel);
        tracing::info!("console {peer} detached");
    }

    fn session_loop(
        &self,
        requests: std_mpsc::Receiver<Request>,
        out: mpsc::UnboundedSender<ConsoleMsg>,
        interrupt: Arc<AtomicBool>,
        logs: mpsc::UnboundedSender<bool>,
        audience: crate::script::Audience,
    ) {
        let printed = out.clone();
        let mut env = self.env.clone();
        env.audience = Some(audience);
        env.output = Arc::new(move |text: &str| {
            let _ = printed.send(ConsoleMsg::Printed { text: text.to_string() });
        });
        let interrupt_flag = interrupt.clone();
        env.abort = interrupt;
        let state = ShellState::default();
        let halt = Arc::new(AtomicBool::new(false));
        let mut session = match Session::new(env, self.host.clone(), self.app(), Some(state.clone())) {
            Ok(s) => s,
            Err(e) => {
                let _ = out.send(ConsoleMsg::Printed { text: format!("cannot load the app: {e}") });
                return;
            }
        };
        let flag = halt.clone();
        rhai::FuncRegistration::new("halt")
            .with_comments(["/// Stops this node (in a remote console): you are asked to type its\n/// name to confirm. `exit()` only detaches.\n///\n/// ```rhai\n/// let ask = \"halt()\";\n/// ```"])
            .register_into_engine(session.engine_mut(), move || flag.store(true, Ordering::Relaxed));
        rhai::FuncRegistration::new("logs")
            .with_comments(["/// In a remote console: `logs(true)` shows the node's log lines above\n/// the prompt as they are written, `logs(false)` stops.\n///\n/// ```rhai\n/// let show = \"logs(true)\";\n/// ```"])
            .with_params_info(["on: bool", "()"])
            .register_into_engine(session.engine_mut(), move |on: bool| {
                let _ = logs.send(on);
            });
        if let Some(upgrader) = self.upgrader.clone() {
            let say = out.clone();
            rhai::FuncRegistration::new("upgrade")
                .with_comments(["/// On a deploy's master: moves the cluster to the release in `tarball`\n/// (shipped to every host, workflows drained, workers restarted on it,\n/// workflows deployed again); `hosts` must be the deploy's, or empty.\n///\n/// ```rhai\n/// let ask = \"upgrade(\\\"app-0.2.0.tar.gz\\\", [])\";\n/// ```"])
                .with_params_info(["tarball: &str", "hosts: Array", "String"])
                .register_into_engine(
                    session.engine_mut(),
                    move |tarball: &str, hosts: rhai::Array| -> Result<String, Box<rhai::EvalAltResult>> {
                        let hosts: Vec<String> = hosts.into_iter().map(|h| h.to_string()).collect();
                        let say = say.clone();
                        // A caller that detached misses the news; the upgrade goes on.
                        let tell = Arc::new(move |text: &str| {
                            let _ = say.send(ConsoleMsg::Printed { text: text.to_string() });
                        });
                        upgrader.upgrade(std::path::Path::new(tarball), &hosts, tell).map_err(|e| e.into())
                    },
                );
        }
        let completer = Completer::default();
        while let Ok(request) = requests.recv() {
            let msg = match request {
                Request::Eval { id, code, timeout, script } => {
                    let watchdog = timeout.map(|limit| Watchdog::start(limit, interrupt_flag.clone()));
                    let mut result = match &script {
                        // A script shows what it prints, not its value.
                        Some(name) => session.eval_named(&code, name).map(|_| rhai::Dynamic::UNIT),
                        None => session.eval(&code),
                    };
                    if let (Some(dog), Err(e)) = (watchdog.map(Watchdog::finish), &mut result) {
                        if dog && e.kind == ErrorKind::Interrupted {
                            e.message = format!(
                                "interrupted: the evaluation took longer than its timeout of {}",
                                super::log::seconds(timeout.unwrap_or_default())
                            );
                        }
                    }
                    let reply = if halt.swap(false, Ordering::Relaxed) {
                        Reply::HaltRequested
                    } else if state.exit.swap(false, Ordering::Relaxed) {
                        Reply::Detach
                    } else {
                        match result {
                            Ok(v) if v.is_unit() => Reply::Unit,
                            Ok(v) => Reply::Value(crate::script::render::value(&v)),
                            Err(e) => Reply::Error {
                                kind: match e.kind {
                                    ErrorKind::Syntax => EvalError::Syntax,
                                    ErrorKind::Runtime => EvalError::Runtime,
                                    ErrorKind::Interrupted => EvalError::Interrupted,
                                },
                                message: e.message,
                                excerpt: e.excerpt,
                            },
                        }
                    };
                    ConsoleMsg::Evaluated { id, reply }
                }
                Request::Complete { id, word, method } => {
                    ConsoleMsg::Completions { id, names: completer.complete(&session, &word, method) }
                }
                Request::Signature { id, name } => ConsoleMsg::SignatureIs { id, signature: completer.signature(&session, &name) },
            };
            if out.send(msg).is_err() {
                return;
            }
        }
    }
}

/// Where the workflows a console deploys print: its connection, through a
/// bounded queue (a console that does not keep up loses lines, counted, and
/// never holds the runtime); gone once the console has detached.
fn audience(queue: mpsc::Sender<String>, dropped: Arc<AtomicU64>) -> crate::script::Audience {
    Arc::new(move |text: &str| match queue.try_send(text.to_string()) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            dropped.fetch_add(text.lines().count().max(1) as u64, Ordering::Relaxed);
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    })
}

/// Interrupts an evaluation that outlives its timeout (`rpc --timeout`).
struct Watchdog {
    done: std_mpsc::Sender<()>,
    fired: std::thread::JoinHandle<bool>,
}

impl Watchdog {
    fn start(limit: Duration, interrupt: Arc<AtomicBool>) -> Watchdog {
        let (done, finished) = std_mpsc::channel::<()>();
        let fired = std::thread::spawn(move || match finished.recv_timeout(limit) {
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                interrupt.store(true, Ordering::Relaxed);
                true
            }
            _ => false,
        });
        Watchdog { done, fired }
    }

    /// Whether it fired.
    fn finish(self) -> bool {
        let _ = self.done.send(());
        self.fired.join().unwrap_or(false)
    }
}

/// Serves consoles on `listener` (a local-mode node has nothing else to serve).
pub async fn serve_consoles(listener: tokio::net::TcpListener, identity: crate::net::Identity, consoles: Arc<Consoles>) {
    let stop = consoles.halt.clone();
    crate::net::gate::serve(listener, stop, identity, &[crate::net::Role::Console], move |auth| {
        let consoles = consoles.clone();
        async move { consoles.serve(auth).await }
    })
    .await
}
