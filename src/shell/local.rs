//! The shell on a local runtime: the backend is a session in this process.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{history, input, render, Backend, Printer, Reply};
use crate::script::complete::Completer;
use crate::script::session::ErrorKind;
use crate::script::{App, EngineEnv, Host, ScriptError, Session};
use crate::Result;

pub struct LocalBackend {
    session: Session,
    host: Arc<dyn Host>,
    completer: Completer,
}

impl LocalBackend {
    pub fn new(session: Session, host: Arc<dyn Host>) -> Self {
        LocalBackend { session, host, completer: Completer::default() }
    }

    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

impl Backend for LocalBackend {
    fn node(&self) -> String {
        self.host.node_name()
    }

    fn eval(&mut self, entry: &str) -> Reply {
        match self.session.eval(entry) {
            Ok(v) if v.is_unit() => Reply::Unit,
            Ok(v) => Reply::Value(render::value(&v)),
            Err(e) => Reply::Error(e),
        }
    }

    fn run_script(&mut self, name: &str, text: &str) -> Reply {
        match self.session.eval_named(text, name) {
            Ok(_) => Reply::Unit,
            Err(e) => Reply::Error(e),
        }
    }

    fn watch(&mut self) -> std::result::Result<Vec<crate::workflow::watch::Watched>, String> {
        Ok(self.host.watch())
    }

    fn is_complete(&self, text: &str) -> bool {
        input::is_complete(self.session.engine(), text)
    }

    fn complete(&self, word: &str, method: bool) -> Vec<String> {
        self.completer.complete(&self.session, word, method)
    }

    fn signature(&self, name: &str) -> Option<String> {
        self.completer.signature(&self.session, name)
    }

    fn interrupter(&self) -> Arc<dyn Fn() + Send + Sync> {
        let flag = self.session.interrupt_flag();
        Arc::new(move || flag.store(true, Ordering::Relaxed))
    }

    fn exit_requested(&self) -> bool {
        self.session.exit_requested()
    }

    fn entries(&self) -> usize {
        self.session.entries()
    }

    fn leave(&mut self) -> Option<String> {
        let running = self.host.workflows().into_iter().filter(|(_, s)| !s.is_done()).count();
        if running == 0 {
            return None;
        }
        eprintln!("stopping {running} running workflow(s) gracefully...");
        self.host.stop_all();
        Some("all workflows stopped".into())
    }
}

/// `.skitter.rhai` in the current directory, else in the home directory.
fn startup_file() -> Option<PathBuf> {
    let here = PathBuf::from(".skitter.rhai");
    if here.is_file() {
        return Some(here);
    }
    let home = PathBuf::from(std::env::var_os("HOME")?).join(".skitter.rhai");
    home.is_file().then_some(home)
}

/// What the shell deploys before its first prompt: an expression, from
/// scratch (`fresh`) or from its last checkpoint.
pub struct FirstDeploy {
    pub expr: String,
    pub fresh: bool,
}

impl FirstDeploy {
    /// The first deploy, if an expression was given.
    pub fn of(expr: Option<String>, fresh: bool) -> Option<FirstDeploy> {
        expr.map(|expr| FirstDeploy { expr, fresh })
    }
}

/// Opens the shell on this node's runtime (local, or a master), deploying
/// `deploy` first if given; with a script (`--script`, or piped stdin),
/// runs it instead, then stops what it left running.
pub fn run_local(
    rt: tokio::runtime::Runtime,
    runtime: Arc<dyn Host>,
    env: EngineEnv,
    app: Option<App>,
    deploy: Option<FirstDeploy>,
    welcome: &str,
    script: Option<super::Script>,
) -> Result<ExitCode> {
    super::init_colors();
    let printer = Printer::default();
    let mut env = env;
    env.output = printer.output();
    runtime.set_output(env.output.clone());
    let history = history::path(app.as_ref().map(|a| a.config.name.as_str()));
    let session = Session::new(env, Some(runtime.clone()), app, Some(Default::default()))?;
    let mut backend = LocalBackend::new(session, runtime.clone());
    let interactive = script.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdin());
    if interactive {
        println!("{welcome}");
        runtime.set_notices(printer.output());
    } else {
        eprintln!("{welcome}");
    }
    // Like iex's .iex.exs: for people at a prompt, not for scripts.
    if let Some(file) = startup_file().filter(|_| interactive) {
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                if let Err(e) = backend.session_mut().eval_named(&text, &file.display().to_string()) {
                    eprintln!("{}", render::error(&e));
                }
            }
            Err(e) => eprintln!("cannot read {}: {e}", file.display()),
        }
    }
    if let Some(FirstDeploy { expr, fresh }) = deploy {
        match backend.session_mut().deploy_expr(runtime.as_ref(), &expr, fresh) {
            Ok(r) => println!("deployed `{expr}` as {}", render::value(&rhai::Dynamic::from(r))),
            Err(e) => eprintln!("{}", render::error(&ScriptError { kind: ErrorKind::Runtime, message: e, excerpt: None })),
        }
    }
    super::forward_interrupts(rt.handle(), backend.interrupter())?;
    let backend: Rc<RefCell<dyn Backend>> = Rc::new(RefCell::new(backend));
    let code = super::run(backend, &printer, history, script);
    drop(rt);
    code
}
