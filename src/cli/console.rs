//! `skitter remote`, `skitter rpc` and `skitter eval`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::find_app_optional;
use super::resolve::{cookie as resolve_cookie, node_addr as resolve_node};
use crate::runtime::LocalRuntime;
use crate::script::engine::stdout_output;
use crate::script::{App, EngineEnv, Host, Session};
use crate::{Error, Result};

#[derive(Args, Debug)]
pub struct RemoteArgs {
    /// The node: name@host:port, host:port, or a name recorded in tmp/.
    pub node: String,
    /// The cookie (shows in `ps`: prefer SKITTER_COOKIE or ~/.skitter.cookie).
    #[arg(short = 'c', long)]
    pub cookie: Option<String>,
}

#[derive(Args, Debug)]
pub struct RpcArgs {
    /// The node: name@host:port, host:port, or a name recorded in tmp/.
    pub node: String,
    /// The Rhai expression to evaluate there (its value is printed).
    #[arg(required_unless_present = "file")]
    pub expr: Option<String>,
    /// Run FILE (`-`: standard input) there as a script, like an app's lib/
    /// file: what it prints is shown, not its value.
    #[arg(short = 'f', long, value_name = "FILE", conflicts_with = "expr")]
    pub file: Option<PathBuf>,
    /// The cookie (shows in `ps`: prefer SKITTER_COOKIE or ~/.skitter.cookie).
    #[arg(short = 'c', long)]
    pub cookie: Option<String>,
    /// Interrupt the evaluation on the node after SECS seconds (0: never).
    #[arg(long, value_name = "SECS", default_value_t = RPC_TIMEOUT)]
    pub timeout: f64,
}

/// `rpc --timeout`'s default: generous, for an `rpc` that waits for a workflow.
pub const RPC_TIMEOUT: f64 = 3600.0;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The Rhai expression to evaluate (its value is printed).
    #[arg(required_unless_present = "file")]
    pub expr: Option<String>,
    /// Run FILE (`-`: standard input) as a script, like an app's lib/ file:
    /// what it prints is shown, not its value.
    #[arg(short = 'f', long, value_name = "FILE", conflicts_with = "expr")]
    pub file: Option<PathBuf>,
}

pub fn remote(args: RemoteArgs, app_dir: Option<&Path>) -> Result<ExitCode> {
    let app = find_app_optional(app_dir)?;
    let addr = resolve_node(&args.node, app.as_ref(), "skitter_local")?;
    let cookie = resolve_cookie(args.cookie.as_deref())?;
    crate::shell::remote::attach(&addr, &cookie, None)
}

/// `skitter <mode> remote`: attaches to the node of that mode named with -n.
pub fn remote_mode(name: &str, app: Option<&App>, cookie: Option<&str>) -> Result<ExitCode> {
    let addr = resolve_node(name, app, name)?;
    let cookie = resolve_cookie(cookie)?;
    crate::shell::remote::attach(&addr, &cookie, None)
}

pub fn rpc(args: RpcArgs, app_dir: Option<&Path>) -> Result<ExitCode> {
    let app = find_app_optional(app_dir)?;
    let addr = resolve_node(&args.node, app.as_ref(), "skitter_local")?;
    let cookie = resolve_cookie(args.cookie.as_deref())?;
    if !(args.timeout.is_finite() && args.timeout >= 0.0) {
        return Err(Error::Usage(format!("--timeout {}: give a number of seconds (0 for none)", args.timeout)));
    }
    let timeout = (args.timeout > 0.0).then(|| std::time::Duration::from_secs_f64(args.timeout));
    let script = args.file.as_deref().map(crate::shell::Script::read).transpose()?;
    match (&script, &args.expr) {
        (Some(s), _) => crate::shell::remote::rpc(&addr, &cookie, &s.text, Some(&s.name), timeout),
        (None, Some(expr)) => crate::shell::remote::rpc(&addr, &cookie, expr, None, timeout),
        (None, None) => Err(Error::Usage("give an expression or --file FILE".into())),
    }
}

pub fn eval(args: EvalArgs, app_dir: Option<&Path>) -> Result<ExitCode> {
    let app = find_app_optional(app_dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("cannot start the runtime: {e}")))?;
    let slots = super::resolve::slots(None, app.as_ref())?;
    super::resolve::node_settings(None, Some(slots), app.as_ref())?;
    let env = EngineEnv::new(app.as_ref().map(App::priv_dir), stdout_output());
    let node = crate::runtime::node::node_name(None, "skitter_eval");
    let runtime = Arc::new(LocalRuntime::new(rt.handle().clone(), node, slots, env.clone()));
    let script = args.file.as_deref().map(crate::shell::Script::read).transpose()?;
    let mut session = Session::new(env, Some(runtime.clone()), app, None)?;
    let value = match (&script, &args.expr) {
        // A script shows what it prints, not its value.
        (Some(s), _) => session.eval_named(&s.text, &s.name).map(|_| rhai::Dynamic::UNIT),
        (None, Some(expr)) => session.eval(expr),
        (None, None) => return Err(Error::Usage("give an expression or --file FILE".into())),
    };
    runtime.stop_all();
    match value {
        Ok(v) if v.is_unit() => Ok(ExitCode::SUCCESS),
        Ok(v) => {
            println!("{}", crate::script::render::value(&v));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(Error::Script(e)),
    }
}
