//! Remote consoles: every node serves shells over its authenticated
//! listener. Each console gets its own session (scope, functions, `v(n)`)
//! on its own thread; the connection carries messages, not terminal bytes.
//! An interrupt goes straight to the running evaluation, never behind it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::net::message::Reply;
use crate::net::{Authenticated, Message};
use crate::script::complete::Completer;
use crate::script::session::ErrorKind;
use crate::script::shell_api::ShellState;
use crate::script::{App, EngineEnv, Host, Session};

/// What consoles on this node are made of.
pub struct Consoles {
    pub node: String,
    pub host: Option<Arc<dyn Host>>,
    pub app: Option<App>,
    pub env: EngineEnv,
    /// Cancelled by a confirmed `halt()`: the node stops gracefully.
    pub halt: CancellationToken,
}

enum Request {
    Eval { id: u64, code: String },
    Complete { id: u64, word: String, method: bool },
    Signature { id: u64, name: String },
}

impl Consoles {
    /// Serves one console until it detaches or its connection drops.
    pub async fn serve(self: Arc<Self>, mut auth: Authenticated) {
        let peer = auth.peer_name.clone();
        tracing::info!("console {peer} attached from {}", auth.peer_addr);
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (req_tx, req_rx) = std_mpsc::channel::<Request>();
        let interrupt = Arc::new(AtomicBool::new(false));
        let me = self.clone();
        let flag = interrupt.clone();
        let replies = out_tx.clone();
        let (logs_tx, mut logs_rx) = mpsc::unbounded_channel::<bool>();
        let worker =
            std::thread::Builder::new().name(format!("console:{peer}")).spawn(move || me.session_loop(req_rx, replies, flag, logs_tx));
        if let Err(e) = worker {
            tracing::error!("cannot start a console thread: {e}");
            return;
        }
        let mut logs: Option<tokio::sync::broadcast::Receiver<String>> = None;
        loop {
            tokio::select! {
                Some(on) = logs_rx.recv() => logs = on.then(super::log::subscribe),
                Some(msg) = out_rx.recv() => {
                    if auth.writer.write(&msg).await.is_err() {
                        break;
                    }
                }
                line = async {
                    match logs.as_mut() {
                        Some(rx) => rx.recv().await.ok(),
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(line) = line {
                        let _ = auth.writer.write(&Message::Printed { text: line }).await;
                    }
                }
                read = auth.reader.read() => match read {
                    Ok(Some(Message::Eval { id, code })) => {
                        let _ = req_tx.send(Request::Eval { id, code });
                    }
                    Ok(Some(Message::Complete { id, word, method })) => {
                        let _ = req_tx.send(Request::Complete { id, word, method });
                    }
                    Ok(Some(Message::Signature { id, name })) => {
                        let _ = req_tx.send(Request::Signature { id, name });
                    }
                    Ok(Some(Message::Interrupt)) => interrupt.store(true, Ordering::Relaxed),
                    Ok(Some(Message::Logs { on })) => logs = on.then(super::log::subscribe),
                    Ok(Some(Message::Halt { node })) => {
                        if node == self.node {
                            tracing::warn!("halted from the console {peer}");
                            let _ = auth.writer.write(&Message::Evaluated { id: 0, reply: Reply::Halted }).await;
                            self.halt.cancel();
                            break;
                        }
                        let reply = Reply::Error { kind: 1, message: format!("not halted: `{node}` is not this node's name ({})", self.node), excerpt: None };
                        let _ = auth.writer.write(&Message::Evaluated { id: 0, reply }).await;
                    }
                    Ok(Some(Message::Bye)) | Ok(None) => break,
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
        tracing::info!("console {peer} detached");
    }

    fn session_loop(
        &self,
        requests: std_mpsc::Receiver<Request>,
        out: mpsc::UnboundedSender<Message>,
        interrupt: Arc<AtomicBool>,
        logs: mpsc::UnboundedSender<bool>,
    ) {
        let printed = out.clone();
        let mut env = self.env.clone();
        env.output = Arc::new(move |text: &str| {
            let _ = printed.send(Message::Printed { text: text.to_string() });
        });
        env.abort = interrupt;
        let state = ShellState::default();
        let halt = Arc::new(AtomicBool::new(false));
        let mut session = match Session::new(env, self.host.clone(), self.app.clone(), Some(state.clone())) {
            Ok(s) => s,
            Err(e) => {
                let _ = out.send(Message::Printed { text: format!("cannot load the app: {e}") });
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
        let completer = Completer::default();
        while let Ok(request) = requests.recv() {
            let msg = match request {
                Request::Eval { id, code } => {
                    let result = session.eval(&code);
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
                                    ErrorKind::Syntax => 0,
                                    ErrorKind::Runtime => 1,
                                    ErrorKind::Interrupted => 2,
                                },
                                message: e.message,
                                excerpt: e.excerpt,
                            },
                        }
                    };
                    Message::Evaluated { id, reply }
                }
                Request::Complete { id, word, method } => Message::Completions { id, names: completer.complete(&session, &word, method) },
                Request::Signature { id, name } => Message::SignatureIs { id, signature: completer.signature(&session, &name) },
            };
            if out.send(msg).is_err() {
                return;
            }
        }
    }
}

/// Serves consoles on `listener` (a local-mode node has nothing else to serve).
pub async fn serve_consoles(listener: tokio::net::TcpListener, identity: crate::net::Identity, consoles: Arc<Consoles>) {
    let stop = consoles.halt.clone();
    super::accept_each(listener, stop, identity, &[crate::net::Role::Console], move |auth| {
        let consoles = consoles.clone();
        async move { consoles.serve(auth).await }
    })
    .await
}
