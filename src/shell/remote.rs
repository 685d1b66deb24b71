//! The shell attached to another node: line editing, history and deciding
//! when an entry is complete happen here; evaluation and completion happen
//! on the node, over an authenticated connection.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};

use colored::Colorize;
use rhai::Engine;
use tokio::sync::mpsc;

use super::{input, Backend, Printer, Reply as ShellReply};
use crate::net::message::{EvalError, Reply};
use crate::net::{handshake, ConsoleMsg, Cookie, Identity, Link, Role};
use crate::script::session::ErrorKind;
use crate::script::ScriptError;
use crate::{Error, Result};

/// A console connection: a writer task fed by a channel, a reader task that
/// prints what the node prints and hands replies to the caller.
pub struct Console {
    rt: tokio::runtime::Runtime,
    node: String,
    to_node: mpsc::UnboundedSender<ConsoleMsg>,
    replies: std_mpsc::Receiver<ConsoleMsg>,
    next_id: AtomicU64,
    /// Set when we say goodbye: the node closing the connection is expected.
    closing: Arc<std::sync::atomic::AtomicBool>,
    /// Set for a console that asks one thing (`rpc`): once its answer has
    /// arrived, the node may go (a master whose workflow that answer ended
    /// exits) without that being a lost connection.
    once: Arc<std::sync::atomic::AtomicBool>,
}

impl Console {
    /// Connects to `addr` and authenticates; what the node prints goes to `printer`.
    pub fn connect(addr: &str, cookie: &Cookie, printer: Printer) -> Result<Console> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| Error::Failed(format!("cannot start the runtime: {e}")))?;
        let me = format!("console_{}@{}", std::process::id(), crate::runtime::node::hostname());
        let identity = Identity::new(Role::Console, me, cookie);
        let auth: Link<ConsoleMsg> = rt
            .block_on(handshake::dial(addr, &identity))
            .map_err(|e| Error::Failed(format!("cannot attach to {addr}: {e}")))?
            .into_link(crate::settings::tick::tick());
        let node = auth.peer_name.clone();
        let (to_node, mut outgoing) = mpsc::unbounded_channel::<ConsoleMsg>();
        let (reply_tx, replies) = std_mpsc::channel();
        let mut writer = auth.writer;
        rt.spawn(async move {
            while let Some(msg) = outgoing.recv().await {
                if writer.write(&msg).await.is_err() {
                    return;
                }
            }
        });
        let mut reader = auth.reader;
        let lost_node = node.clone();
        let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let expected = closing.clone();
        let once = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let answered_once = once.clone();
        rt.spawn(async move {
            loop {
                let lost = match reader.read().await {
                    Ok(Some(ConsoleMsg::Printed { text })) => {
                        printer.print(&text);
                        continue;
                    }
                    Ok(Some(msg)) => {
                        if matches!(msg, ConsoleMsg::Evaluated { .. }) && answered_once.load(Ordering::Relaxed) {
                            expected.store(true, Ordering::Relaxed);
                        }
                        if reply_tx.send(msg).is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok(None) => "it closed the connection".to_string(),
                    Err(e) => e.to_string(),
                };
                if !expected.load(Ordering::Relaxed) {
                    super::leave_now(1, &format!("lost the connection to {lost_node}: {lost}"));
                }
                return;
            }
        });
        Ok(Console { rt, node, to_node, replies, next_id: AtomicU64::new(1), closing, once })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn send(&self, msg: ConsoleMsg) {
        let _ = self.to_node.send(msg);
    }

    /// Says goodbye; the node closing the connection is then no surprise.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.send(ConsoleMsg::Bye);
    }

    /// Waits for the reply with `id` (replies to abandoned requests are skipped).
    fn reply(&self, matches: impl Fn(&ConsoleMsg) -> bool) -> ConsoleMsg {
        loop {
            match self.replies.recv() {
                Ok(msg) if matches(&msg) => return msg,
                Ok(_) => continue,
                Err(_) => super::leave_now(1, &format!("lost the connection to {}", self.node)),
            }
        }
    }

    /// Evaluates `code` on the node: a shell entry, or with `script` the
    /// script of that name; past `timeout` the node interrupts it.
    pub fn eval(&self, code: &str, timeout: Option<std::time::Duration>, script: Option<&str>) -> Reply {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let timeout_ms = timeout.map(|t| t.as_millis() as u64);
        self.send(ConsoleMsg::Eval { id, code: code.to_string(), timeout_ms, script: script.map(str::to_string) });
        match self.reply(|m| matches!(m, ConsoleMsg::Evaluated { id: i, .. } if *i == id)) {
            ConsoleMsg::Evaluated { reply, .. } => reply,
            _ => unreachable!("matched above"),
        }
    }

    pub fn halt(&self, typed: &str) -> Reply {
        self.send(ConsoleMsg::Halt { node: typed.to_string() });
        match self.reply(|m| matches!(m, ConsoleMsg::Evaluated { id: 0, .. })) {
            ConsoleMsg::Evaluated { reply, .. } => reply,
            _ => unreachable!("matched above"),
        }
    }

    pub fn interrupter(&self) -> Arc<dyn Fn() + Send + Sync> {
        let tx = self.to_node.clone();
        Arc::new(move || {
            let _ = tx.send(ConsoleMsg::Interrupt);
        })
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.rt.handle()
    }
}

/// The shell's backend on a remote node.
pub struct RemoteBackend {
    console: Console,
    /// A local engine, only to decide when an entry is complete.
    parser: Engine,
    entries: usize,
    detach: bool,
}

impl RemoteBackend {
    pub fn new(console: Console) -> Self {
        let mut parser = Engine::new_raw();
        parser.set_max_expr_depths(256, 128);
        RemoteBackend { console, parser, entries: 0, detach: false }
    }

    /// Evaluates an entry, or the script `script`, on the node.
    fn evaluate(&mut self, code: &str, script: Option<&str>) -> ShellReply {
        match self.console.eval(code, None, script) {
            Reply::Unit => {
                self.entries += 1;
                ShellReply::Unit
            }
            Reply::Value(v) => {
                self.entries += 1;
                ShellReply::Value(v)
            }
            Reply::Error { kind, message, excerpt } => ShellReply::Error(script_error(kind, message, excerpt)),
            Reply::Detach => {
                self.detach = true;
                ShellReply::Unit
            }
            Reply::Halted => ShellReply::Unit,
            Reply::HaltRequested => {
                let node = self.node();
                eprint!("{} type the node's name ({}) to halt it, anything else to keep it: ", "halt:".red().bold(), node.bold());
                let mut typed = String::new();
                let _ = std::io::stdin().read_line(&mut typed);
                self.console.closing.store(true, Ordering::Relaxed);
                let reply = self.console.halt(typed.trim());
                if !matches!(reply, Reply::Halted) {
                    self.console.closing.store(false, Ordering::Relaxed);
                }
                match reply {
                    Reply::Halted => {
                        self.detach = true;
                        ShellReply::Value(format!("{node} is halting"))
                    }
                    Reply::Error { kind, message, excerpt } => ShellReply::Error(script_error(kind, message, excerpt)),
                    _ => ShellReply::Unit,
                }
            }
        }
    }
}

pub fn script_error(kind: EvalError, message: String, excerpt: Option<String>) -> ScriptError {
    let kind = match kind {
        EvalError::Syntax => ErrorKind::Syntax,
        EvalError::Interrupted => ErrorKind::Interrupted,
        EvalError::Runtime => ErrorKind::Runtime,
    };
    ScriptError { kind, message, excerpt }
}

impl Backend for RemoteBackend {
    fn node(&self) -> String {
        self.console.node().to_string()
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn eval(&mut self, entry: &str) -> ShellReply {
        self.evaluate(entry, None)
    }

    fn run_script(&mut self, name: &str, text: &str) -> ShellReply {
        self.evaluate(text, Some(name))
    }

    fn watch(&mut self) -> std::result::Result<Vec<crate::workflow::watch::Watched>, String> {
        let id = self.console.next_id.fetch_add(1, Ordering::Relaxed);
        self.console.send(ConsoleMsg::Watch { id });
        match self.console.reply(|m| matches!(m, ConsoleMsg::Watching { id: i, .. } if *i == id)) {
            ConsoleMsg::Watching { workflows, .. } => Ok(workflows),
            _ => unreachable!("matched above"),
        }
    }

    fn is_complete(&self, text: &str) -> bool {
        input::is_complete(&self.parser, text)
    }

    fn complete(&self, word: &str, method: bool) -> Vec<String> {
        let id = self.console.next_id.fetch_add(1, Ordering::Relaxed);
        self.console.send(ConsoleMsg::Complete { id, word: word.to_string(), method });
        match self.console.reply(|m| matches!(m, ConsoleMsg::Completions { id: i, .. } if *i == id)) {
            ConsoleMsg::Completions { names, .. } => names,
            _ => Vec::new(),
        }
    }

    fn signature(&self, name: &str) -> Option<String> {
        let id = self.console.next_id.fetch_add(1, Ordering::Relaxed);
        self.console.send(ConsoleMsg::Signature { id, name: name.to_string() });
        match self.console.reply(|m| matches!(m, ConsoleMsg::SignatureIs { id: i, .. } if *i == id)) {
            ConsoleMsg::SignatureIs { signature, .. } => signature,
            _ => None,
        }
    }

    fn interrupter(&self) -> Arc<dyn Fn() + Send + Sync> {
        self.console.interrupter()
    }

    fn exit_requested(&self) -> bool {
        self.detach
    }

    fn entries(&self) -> usize {
        self.entries
    }

    fn leave(&mut self) -> Option<String> {
        self.console.close();
        Some(format!("detached from {} (it keeps running)", self.console.node()))
    }
}

/// `skitter remote NODE`: the shell on another node.
pub fn attach(addr: &str, cookie: &Cookie, history_name: Option<&str>) -> Result<ExitCode> {
    super::init_colors();
    let printer = Printer::default();
    let console = Console::connect(addr, cookie, printer.clone())?;
    let interrupter = console.interrupter();
    let handle = console.handle().clone();
    super::forward_interrupts(&handle, interrupter)?;
    let node = console.node().to_string();
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        println!("Attached to {} ({addr}). exit() or Ctrl-D detaches; the node keeps running.", node.magenta().bold());
    }
    let backend: std::rc::Rc<std::cell::RefCell<dyn Backend>> = std::rc::Rc::new(std::cell::RefCell::new(RemoteBackend::new(console)));
    let history = super::history::path(history_name.or(Some(&format!("remote-{}", node.replace(['@', '/'], "_")))));
    super::run(backend, &printer, history, None)
}

/// `skitter rpc NODE EXPR`: evaluates on the node and prints the result;
/// the node interrupts an evaluation that takes longer than `timeout`.
pub fn rpc(addr: &str, cookie: &Cookie, code: &str, script: Option<&str>, timeout: Option<std::time::Duration>) -> Result<ExitCode> {
    super::init_colors();
    let printer = Printer::default();
    let console = Console::connect(addr, cookie, printer)?;
    console.once.store(true, Ordering::Relaxed);
    let reply = console.eval(code, timeout, script);
    console.close();
    match reply {
        Reply::Unit | Reply::Detach | Reply::Halted => Ok(ExitCode::SUCCESS),
        Reply::Value(v) => {
            println!("{v}");
            Ok(ExitCode::SUCCESS)
        }
        Reply::HaltRequested => Err(Error::Failed("halt() needs a confirmation: use `skitter remote` to halt a node".into())),
        Reply::Error { kind, message, excerpt } => Err(Error::Script(script_error(kind, message, excerpt))),
    }
}
