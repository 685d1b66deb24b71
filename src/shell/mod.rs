//! The shell: a loop around a [`Backend`]'s `eval`. The backend is a local
//! session or (later) a remote node; line editing, history and deciding when
//! an entry is complete stay here. On a terminal it is an interactive prompt
//! with rustyline (on the calling thread; the runtime runs on tokio's); piped
//! stdin, or a file given with `--script`, is run as one script, like an
//! app's lib/ file: it shows what it prints, and an error ends it (status 1).
//!
//! May use `error` and the layers below (`runtime` for the local session, `net` for remote
//! consoles, `script`); never `cli`.

pub mod helper;
pub mod history;
pub mod input;
pub mod local;
pub mod remote;
pub mod render;
pub mod top;

use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use colored::Colorize;
use rustyline::error::ReadlineError;
use rustyline::{Config, Editor, ExternalPrinter};

use crate::script::ScriptError;
use crate::{Error, Result};

pub use local::{run_local, FirstDeploy};

/// What an entry gave.
pub enum Reply {
    Unit,
    /// The value, rendered.
    Value(String),
    Error(ScriptError),
}

/// Where entries are evaluated.
pub trait Backend {
    /// The node the shell is on, for the prompt.
    fn node(&self) -> String;
    /// Whether the prompt should mark the node as remote.
    fn is_remote(&self) -> bool {
        false
    }
    fn eval(&mut self, entry: &str) -> Reply;
    /// Runs `text` as the script `name`: like an app's lib/ file, its
    /// functions are known throughout and its value is not shown.
    fn run_script(&mut self, name: &str, text: &str) -> Reply;
    /// Whether `text` is a whole entry (see [`input::is_complete`]).
    fn is_complete(&self, text: &str) -> bool;
    /// Names that complete `word`: methods after a `.`, else functions,
    /// variables and keywords.
    fn complete(&self, word: &str, method: bool) -> Vec<String>;
    /// A function's signature, for hints.
    fn signature(&self, name: &str) -> Option<String>;
    /// The running workflows with their stats, for `top()`.
    fn watch(&mut self) -> std::result::Result<Vec<crate::workflow::watch::Watched>, String>;
    /// Asks the running evaluation to stop (Ctrl-C).
    fn interrupter(&self) -> Arc<dyn Fn() + Send + Sync>;
    /// Whether `exit()` was called.
    fn exit_requested(&self) -> bool;
    /// The number of entries evaluated so far.
    fn entries(&self) -> usize;
    /// Called once when the user leaves; returns what to tell them.
    fn leave(&mut self) -> Option<String>;
}

/// Where text printed while the user types goes: above the prompt through
/// rustyline's printer once the editor exists, straight to stdout before.
#[derive(Clone, Default)]
pub struct Printer {
    slot: Arc<Mutex<Option<Box<dyn ExternalPrinter + Send>>>>,
}

impl Printer {
    pub fn print(&self, text: &str) {
        let mut text = text.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let mut slot = self.slot.lock().expect("printer lock");
        if let Some(printer) = slot.as_mut() {
            if printer.print(text.clone()).is_ok() {
                return;
            }
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    fn attach(&self, printer: Box<dyn ExternalPrinter + Send>) {
        *self.slot.lock().expect("printer lock") = Some(printer);
    }

    fn detach(&self) {
        *self.slot.lock().expect("printer lock") = None;
    }

    /// An output function for scripts and workflows.
    pub fn output(&self) -> crate::script::Output {
        let printer = self.clone();
        Arc::new(move |text: &str| printer.print(text))
    }
}

/// Whether to use colors: not with NO_COLOR, not when stdout is no terminal.
pub fn init_colors() {
    if std::env::var_os("NO_COLOR").is_some() || !std::io::stdout().is_terminal() {
        colored::control::set_override(false);
    }
}

/// Lines gathered into one entry until Rhai's parser says it is whole.
#[derive(Default)]
struct Pending(String);

impl Pending {
    /// Adds a line; returns the entry once it is complete. `#break` on a
    /// line of its own drops what was gathered.
    fn add(&mut self, line: &str, backend: &dyn Backend) -> Option<String> {
        if line.trim() == input::BREAK {
            self.0.clear();
            return None;
        }
        self.0.push_str(line);
        self.0.push('\n');
        backend.is_complete(&self.0).then(|| std::mem::take(&mut self.0))
    }
}

fn show(reply: Reply) {
    let text = match reply {
        Reply::Unit => return,
        Reply::Value(v) => v,
        Reply::Error(e) => render::error(&e),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Runs `script` on `backend`, or else the shell until the user leaves;
/// piped stdin is a script.
pub fn run(backend: Rc<RefCell<dyn Backend>>, printer: &Printer, history: Option<PathBuf>, script: Option<Script>) -> Result<ExitCode> {
    let script = match script {
        Some(s) => Some(s),
        None if std::io::stdin().is_terminal() => None,
        None => Some(Script::stdin()?),
    };
    let result = match script {
        Some(script) => run_script(&backend, &script),
        None => interactive(backend.clone(), printer, history),
    };
    printer.detach();
    if let Some(message) = backend.borrow_mut().leave() {
        eprintln!("{message}");
    }
    result
}

/// A script to run instead of reading entries: its name in messages, and its text.
pub struct Script {
    pub name: String,
    pub text: String,
}

impl Script {
    /// The file at `path`, or standard input for `-`.
    pub fn read(path: &std::path::Path) -> Result<Script> {
        if path == std::path::Path::new("-") {
            return Script::stdin();
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::Usage(format!("cannot read the script {}: {e}", path.display())))?;
        Ok(Script { name: path.display().to_string(), text })
    }

    /// All of standard input.
    pub fn stdin() -> Result<Script> {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| Error::Failed(format!("cannot read stdin: {e}")))?;
        Ok(Script { name: "stdin".into(), text })
    }
}

/// Runs a script on the backend: what it prints is shown as it prints it;
/// an error is shown on stderr and the exit status is 1.
fn run_script(backend: &Rc<RefCell<dyn Backend>>, script: &Script) -> Result<ExitCode> {
    let reply = backend.borrow_mut().run_script(&script.name, &script.text);
    match reply {
        Reply::Error(e) => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{}", render::error(&e));
            Ok(ExitCode::from(1))
        }
        Reply::Unit | Reply::Value(_) => Ok(ExitCode::SUCCESS),
    }
}

fn prompts(node: &str, remote: bool, n: usize) -> ((String, String), (String, String)) {
    let raw = format!("skitter({node}){n}> ");
    let node_colored = if remote { node.magenta().bold() } else { node.cyan() };
    let styled = format!("{}{}{}{}", "skitter(".bold(), node_colored, format!("){n}>").bold(), " ");
    let cont_raw = format!("...({n})> ");
    let cont_styled = format!("{} ", format!("...({n})>").dimmed());
    ((raw, styled), (cont_raw, cont_styled))
}

fn interactive(backend: Rc<RefCell<dyn Backend>>, printer: &Printer, history: Option<PathBuf>) -> Result<ExitCode> {
    save_terminal();
    let config = Config::builder()
        .history_ignore_space(true)
        .history_ignore_dups(true)
        .map_err(|e| Error::Failed(format!("shell: {e}")))?
        .auto_add_history(false)
        .max_history_size(10_000)
        .map_err(|e| Error::Failed(format!("shell: {e}")))?
        .build();
    let mut rl: Editor<helper::ShellHelper, rustyline::history::DefaultHistory> =
        Editor::with_config(config).map_err(|e| Error::Failed(format!("cannot open the terminal: {e}")))?;
    rl.set_helper(Some(helper::ShellHelper { backend: backend.clone() }));
    if let Some(path) = &history {
        for entry in history::load(path) {
            let _ = rl.add_history_entry(entry);
        }
    }
    if let Ok(p) = rl.create_external_printer() {
        printer.attach(Box::new(p));
    }
    let node = backend.borrow().node();
    let remote = backend.borrow().is_remote();
    let mut pending = Pending::default();
    loop {
        let n = backend.borrow().entries() + 1;
        let (first, cont) = prompts(&node, remote, n);
        let prompt = if pending.0.is_empty() { first } else { cont };
        match rl.readline(&prompt) {
            Ok(line) => {
                let Some(text) = pending.add(&line, &*backend.borrow()) else { continue };
                let text = text.trim_end();
                if text.trim().is_empty() {
                    continue;
                }
                if !text.starts_with(' ') {
                    if let Ok(true) = rl.add_history_entry(text) {
                        if let Some(path) = &history {
                            if let Err(e) = history::append(path, text) {
                                eprintln!("{} cannot save history to {}: {e}", "warning:".yellow(), path.display());
                            }
                        }
                    }
                }
                if top::wanted(text) {
                    if let Err(e) = top::run(&mut *backend.borrow_mut()) {
                        eprintln!("{} {e}", crate::error::prefix());
                    }
                    continue;
                }
                let reply = backend.borrow_mut().eval(text);
                show(reply);
                if backend.borrow().exit_requested() {
                    break;
                }
            }
            // Ctrl-C at the prompt: drop what was typed, multi-line entry included.
            Err(ReadlineError::Interrupted) => pending.0.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Error::Failed(format!("shell: {e}"))),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Makes SIGINT interrupt the running entry instead of killing the process
/// (at the prompt, rustyline reads Ctrl-C as a key).
pub fn forward_interrupts(handle: &tokio::runtime::Handle, interrupt: Arc<dyn Fn() + Send + Sync>) -> Result<()> {
    let _guard = handle.enter();
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Error::Failed(format!("cannot handle Ctrl-C: {e}")))?;
    handle.spawn(async move {
        while sigint.recv().await.is_some() {
            interrupt();
        }
    });
    Ok(())
}

/// The terminal's settings from before the shell changed them.
static SAVED_TERMINAL: std::sync::OnceLock<libc::termios> = std::sync::OnceLock::new();

/// Remembers the terminal's settings, to restore them on an abrupt exit.
pub fn save_terminal() {
    // SAFETY: tcgetattr fills a termios we own; fd 0 may not be a terminal,
    // in which case nothing is saved.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::isatty(0) == 1 && libc::tcgetattr(0, &mut t) == 0 {
            let _ = SAVED_TERMINAL.set(t);
        }
    }
}

/// Leaves the process from any thread: the terminal is restored first, so
/// that a shell in raw mode does not leave it unusable.
pub fn leave_now(code: i32, message: &str) -> ! {
    if let Some(t) = SAVED_TERMINAL.get() {
        // SAFETY: restores settings read from the same descriptor.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, t);
        }
    }
    if top::DRAWING.load(std::sync::atomic::Ordering::Relaxed) {
        print!("{}", top::LEAVE);
        let _ = std::io::stdout().flush();
    }
    eprintln!("\r\n{message}");
    std::process::exit(code)
}

/// When `halt` is cancelled (a console confirmed `halt()`), stops the
/// node's workflows gracefully and ends the process, shell and all.
pub fn halt_on(handle: &tokio::runtime::Handle, halt: tokio_util::sync::CancellationToken, host: Arc<dyn crate::script::Host>) {
    handle.spawn(async move {
        halt.cancelled().await;
        let _ = tokio::task::spawn_blocking(move || host.stop_all()).await;
        leave_now(0, "this node was halted from a remote console");
    });
}
