//! `skitter local`: master and worker in this process, with or without a shell.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use super::find_app_optional;
use super::node::NodeCommand;
use crate::net::{Identity, Role};
use crate::runtime::console::Consoles;
use crate::runtime::node::NodeFile;
use crate::runtime::{log, node, LocalRuntime};
use crate::script::engine::stdout_output;
use crate::script::{App, EngineEnv, Session, WorkflowRef};
use crate::workflow::Status;
use crate::{Error, Result};

#[derive(Args, Debug)]
pub struct LocalArgs {
    #[command(subcommand)]
    pub command: Option<NodeCommand>,
    /// A Rhai expression returning the workflow to deploy at start
    /// (overrides SKITTER_DEPLOY and the app's `deploy` key).
    #[arg(short = 'd', long, global = true, value_name = "EXPR")]
    pub deploy: Option<String>,
    /// Deploy the workflow from scratch, not from its last checkpoint.
    #[arg(long, global = true)]
    pub fresh: bool,
    /// Do not write the log file logs/<node>.log.
    #[arg(long, global = true)]
    pub no_log: bool,
    /// Where consoles (`skitter remote`, `rpc`) reach this node.
    #[arg(long, global = true, value_name = "ADDR:PORT", default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (PORT alone:
    /// on 127.0.0.1; or SKITTER_METRICS).
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// Serve a web view of this node and its workflows at http://ADDR:PORT/
    /// (PORT alone: on 127.0.0.1; or SKITTER_HTTP), with /metrics beside it.
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    pub http: Option<String>,
    /// Let the web view stop, abort and checkpoint workflows for requests
    /// that carry TOKEN (at least 16 characters; or SKITTER_HTTP_TOKEN).
    #[arg(long = "http-token", global = true, value_name = "TOKEN")]
    pub http_token: Option<String>,
    /// Worker slots (default: the app's `slots`, else one per core).
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub slots: Option<u16>,
    /// Run FILE (`-`: standard input) as a script, like an app's lib/ file,
    /// then stop the workflows it left running and exit (1 if it failed).
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
}

impl LocalArgs {
    /// The options, as `skitter local start` takes them (for `daemon`).
    fn start_args(&self) -> Vec<String> {
        let mut args = vec!["local".to_string(), "start".into()];
        if let Some(d) = &self.deploy {
            args.extend(["--deploy".into(), d.clone()]);
        }
        if self.fresh {
            args.push("--fresh".into());
        }
        if self.no_log {
            args.push("--no-log".into());
        }
        args.extend(["--listen".into(), self.listen.clone()]);
        if let Some(m) = &self.metrics {
            args.extend(["--metrics".into(), m.clone()]);
        }
        if let Some(h) = &self.http {
            args.extend(["--http".into(), h.clone()]);
        }
        if let Some(t) = &self.http_token {
            args.extend(["--http-token".into(), t.clone()]);
        }
        if let Some(s) = self.slots {
            args.extend(["--slots".into(), s.to_string()]);
        }
        args
    }
}

/// What `skitter local` runs with, resolved from arguments, environment and app.
pub struct LocalConfig {
    pub app: Option<App>,
    pub deploy: Option<String>,
    /// What the shell deploys before its first prompt: only what was asked
    /// for explicitly (`--deploy`, SKITTER_DEPLOY), not the config's key.
    pub shell_deploy: Option<String>,
    pub slots: usize,
    pub node: String,
    pub log_dir: Option<PathBuf>,
}

fn resolve(args: &LocalArgs, app_dir: Option<&Path>) -> Result<LocalConfig> {
    let app = find_app_optional(app_dir)?;
    let shell_deploy = args.deploy.clone().or_else(|| std::env::var("SKITTER_DEPLOY").ok().filter(|d| !d.trim().is_empty()));
    let deploy = shell_deploy.clone().or_else(|| app.as_ref().and_then(|a| a.config.deploy.clone()));
    let slots = super::resolve::slots(args.slots, app.as_ref())?;
    let node = node::node_name(std::env::var("SKITTER_NODE").ok().as_deref(), "skitter_local");
    let log_dir = if args.no_log { None } else { super::resolve::log_dir(app.as_ref()) };
    Ok(LocalConfig { app, deploy, shell_deploy, slots, node, log_dir })
}

pub fn run(args: LocalArgs, app_dir: Option<&Path>) -> Result<ExitCode> {
    let config = resolve(&args, app_dir)?;
    if args.script.is_some() && args.command.is_some() {
        return Err(Error::Usage("--script runs a script in this process: give no mode (start, daemon, ...) with it".into()));
    }
    let script = args.script.as_deref().map(crate::shell::Script::read).transpose()?;
    let command = args.command.unwrap_or(NodeCommand::StartIex);
    if let Some(what) = command.manage() {
        return super::node::manage(what, config.app.as_ref(), app_dir, &config.node, None, args.start_args());
    }
    super::resolve::node_settings(None, Some(config.slots), config.app.as_ref())?;
    log::init(&config.node, config.log_dir.as_deref()).map_err(Error::Usage)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.slots)
        .thread_name("skitter")
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("cannot start the runtime: {e}")))?;
    let env = EngineEnv::new(config.app.as_ref().map(App::priv_dir), stdout_output());
    let runtime = Arc::new(LocalRuntime::new(rt.handle().clone(), config.node.clone(), config.slots, env.clone()));
    let consoles = Arc::new(Consoles::new(config.node.clone(), Some(runtime.clone()), config.app.clone(), env.clone()));
    let record = serve_consoles(&rt, &args.listen, &config, consoles.clone())?;
    super::node::serve_metrics(&rt, args.metrics.as_deref(), runtime.clone())?;
    super::node::serve_http(&rt, args.http.as_deref(), args.http_token.as_deref(), runtime.clone())?;
    let at = record.as_ref().map(|(_, addr)| format!(" at {addr}")).unwrap_or_default();
    let welcome = log::welcome("local", &config.node, &format!("{at} with {} slots", config.slots));
    tracing::info!("{welcome}");
    if command == NodeCommand::StartIex {
        crate::shell::halt_on(rt.handle(), consoles.halt.clone(), runtime.clone());
        return crate::shell::run_local(
            rt,
            runtime,
            env,
            config.app,
            crate::shell::FirstDeploy::of(config.shell_deploy, args.fresh),
            &welcome,
            script,
        );
    }
    eprintln!("{welcome}");
    let mut session = Session::new(env, Some(runtime.clone()), config.app.clone(), None)?;
    let code = start(&rt, &runtime, &mut session, config.deploy.as_deref(), args.fresh, &consoles.halt);
    // An `rpc` whose evaluation ended the workflow (a stop) gets its answer.
    rt.block_on(consoles.answered(super::master::CONSOLE_ANSWER));
    code
}

/// Listens for consoles and records the node's address, so that
/// `skitter remote` and `rpc` find it by name. Without a cookie there is
/// no listener (and a warning).
fn serve_consoles(
    rt: &tokio::runtime::Runtime,
    listen: &str,
    config: &LocalConfig,
    consoles: Arc<Consoles>,
) -> Result<Option<(Option<NodeFile>, String)>> {
    let cookie = match super::resolve::cookie(None) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("no remote consoles: {e}");
            return Ok(None);
        }
    };
    let listener =
        rt.block_on(tokio::net::TcpListener::bind(listen)).map_err(|e| Error::Failed(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| Error::Failed(e.to_string()))?.to_string();
    let identity = Identity::new(Role::Local, config.node.clone(), &cookie);
    rt.spawn(crate::runtime::console::serve_consoles(listener, identity, consoles));
    // Without the record, `remote NODE-NAME` cannot find this node; an
    // address still works, so this is worth a warning, not a failure.
    let record = match NodeFile::write(&super::resolve::tmp_dir(config.app.as_ref()), &config.node, &addr) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!("cannot write the node file: {e}");
            None
        }
    };
    Ok(Some((record, addr)))
}

/// `local start`: deploy, then wait for the workflow to end; a signal stops it
/// gracefully, a second one exits at once.
fn start(
    rt: &tokio::runtime::Runtime,
    runtime: &Arc<LocalRuntime>,
    session: &mut Session,
    deploy: Option<&str>,
    fresh: bool,
    halt: &CancellationToken,
) -> Result<ExitCode> {
    let workflow = match deploy {
        Some(expr) => Some(session.deploy_expr(runtime.as_ref(), expr, fresh).map_err(Error::Failed)?),
        None => None,
    };
    let status = rt.block_on(async {
        let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::Failed(format!("cannot handle signals: {e}")))?;
        let mut term = signal(SignalKind::terminate()).map_err(|e| Error::Failed(format!("cannot handle signals: {e}")))?;
        let Some(r) = workflow else {
            eprintln!("no workflow to deploy (give --deploy EXPR, SKITTER_DEPLOY or `deploy` in skitter.toml); running until stopped");
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {}, _ = halt.cancelled() => {} }
            return Ok(Status::Finished);
        };
        let mut watch = runtime.subscribe(r).map_err(Error::Failed)?;
        // A daemon keeps serving (consoles, rpc) after its workflow ends.
        let serve_on = std::env::var_os(super::node::DAEMON_ENV).is_some();
        let mut finished = watch.clone();
        let done = async move {
            if serve_on {
                std::future::pending::<()>().await;
            }
            let _ = finished.wait_for(|s: &Status| s.is_done()).await;
        };
        let signalled = tokio::select! {
            _ = done => false,
            _ = halt.cancelled() => true,
            _ = int.recv() => true,
            _ = term.recv() => true,
        };
        if signalled {
            stop_on_signal(runtime, r, &mut watch, &mut int, &mut term).await?;
        }
        let status = watch.borrow().clone();
        Ok::<Status, Error>(status)
    })?;
    match status {
        Status::Failed(reason) => {
            tracing::error!(target: crate::runtime::log::REPORTED, "workflow failed: {reason}");
            Err(Error::WorkflowFailed(reason))
        }
        s if s.is_cut_short() => {
            tracing::warn!(target: crate::runtime::log::REPORTED, "workflow {s} before its sources ended");
            Err(Error::CutShort(s))
        }
        other => {
            tracing::info!("workflow {other}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A first signal stops the workflow (drain, then abort past the stop
/// deadline); a second aborts it at once; a third exits without waiting.
async fn stop_on_signal(
    runtime: &LocalRuntime,
    r: WorkflowRef,
    watch: &mut tokio::sync::watch::Receiver<Status>,
    int: &mut tokio::signal::unix::Signal,
    term: &mut tokio::signal::unix::Signal,
) -> Result<()> {
    eprintln!("stopping the workflow (records in flight are drained; signal again to abort)");
    tracing::info!("signal received: stopping workflow {}", r.id);
    runtime.request_stop(r).map_err(Error::Failed)?;
    let deadline = tokio::time::sleep(crate::settings::STOP_DEADLINE);
    tokio::select! {
        _ = watch.wait_for(|s: &Status| s.is_done()) => return Ok(()),
        _ = deadline => runtime.request_abort(r, "the stop did not drain in time").map_err(Error::Failed)?,
        _ = int.recv() => runtime.request_abort(r, "aborted by a second signal").map_err(Error::Failed)?,
        _ = term.recv() => runtime.request_abort(r, "aborted by a second signal").map_err(Error::Failed)?,
    }
    eprintln!("aborting the workflow (signal again to quit at once)");
    tokio::select! {
        _ = watch.wait_for(|s: &Status| s.is_done()) => Ok(()),
        _ = int.recv() => std::process::exit(130),
        _ = term.recv() => std::process::exit(143),
    }
}
