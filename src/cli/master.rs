//! `skitter master`: a master node, with or without a shell.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use tokio::signal::unix::{signal, SignalKind};

use super::find_app_optional;
use super::node::{self, NodeCommand};
use super::resolve::{cookie as resolve_cookie, peer_addr, tmp_dir};
use crate::deploy::upgrade::Cluster;
use crate::net::Cookie;
use crate::runtime::console::Consoles;
use crate::runtime::log;
use crate::runtime::master::Master;
use crate::runtime::node::{node_name, NodeFile};
use crate::script::engine::stdout_output;
use crate::script::{App, EngineEnv, Host, Session};
use crate::workflow::Status;
use crate::{Error, Result};

#[derive(Args, Debug, Clone)]
pub struct MasterArgs {
    #[command(subcommand)]
    pub command: Option<NodeCommand>,
    /// A Rhai expression returning the workflow to deploy once the workers
    /// given here have joined (overrides SKITTER_DEPLOY and skitter.toml).
    #[arg(short = 'd', long, global = true, value_name = "EXPR")]
    pub deploy: Option<String>,
    /// The node name (`name` or `name@host`; default skitter_master@<hostname>).
    #[arg(short = 'n', long, global = true)]
    pub name: Option<String>,
    /// The cookie (shows in `ps`: prefer SKITTER_COOKIE or ~/.skitter.cookie).
    #[arg(short = 'c', long, global = true)]
    pub cookie: Option<String>,
    /// Deploy the workflow from scratch, not from its last checkpoint.
    #[arg(long, global = true)]
    pub fresh: bool,
    /// Deploy again, each from its last checkpoint, the workflows this
    /// master ran when it was killed or exited (recorded in its checkpoint
    /// directory), once a worker is connected. `restart` does, unless
    /// given --fresh.
    #[arg(long, global = true)]
    pub recover: bool,
    /// Do not write the log file logs/<node>.log.
    #[arg(long, global = true)]
    pub no_log: bool,
    /// Seconds a peer may be silent before it counts as gone (default 10;
    /// or SKITTER_TICK_TIME, or tick_time in skitter.toml).
    #[arg(long, global = true, value_name = "SECS")]
    pub tick_time: Option<f64>,
    /// Exit (status 4) when a worker goes away, instead of failing only its workflows.
    #[arg(long, global = true)]
    pub shutdown_with_workers: bool,
    /// Where to listen for workers that join.
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
    /// Seconds to keep trying to reach the workers given here while they
    /// are still starting (not listening yet, or not answering).
    #[arg(long = "wait-time", global = true, value_name = "SECONDS", default_value_t = 10.0)]
    pub wait_time: f64,
    /// Workers to dial: name@host:port or host:port (or SKITTER_WORKERS).
    #[arg(global = true)]
    pub workers: Vec<String>,
}

impl MasterArgs {
    fn start_args(&self) -> Vec<String> {
        let mut args = vec!["master".to_string(), "start".into()];
        // Not the cookie: `daemon` passes it in the environment.
        for (flag, value) in [("--deploy", &self.deploy), ("--name", &self.name)] {
            if let Some(v) = value {
                args.extend([flag.to_string(), v.clone()]);
            }
        }
        if self.fresh {
            args.push("--fresh".into());
        }
        if self.recover {
            args.push("--recover".into());
        }
        if self.no_log {
            args.push("--no-log".into());
        }
        if let Some(t) = self.tick_time {
            args.extend(["--tick-time".into(), t.to_string()]);
        }
        if self.shutdown_with_workers {
            args.push("--shutdown-with-workers".into());
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
        args.extend(["--wait-time".into(), self.wait_time.to_string()]);
        args.extend(self.workers.iter().cloned());
        args
    }
}

/// How long an exiting master waits for the evaluations its consoles asked
/// for to be answered (a stop that ended its workflow returns at once).
pub(super) const CONSOLE_ANSWER: std::time::Duration = std::time::Duration::from_secs(2);

/// How long an exiting master waits for what workers printed to reach its terminal.
const OUTPUT_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

pub fn run(mut args: MasterArgs, app_dir: Option<&Path>) -> Result<ExitCode> {
    let app = find_app_optional(app_dir)?;
    let name = node_name(args.name.as_deref().or(std::env::var("SKITTER_NODE").ok().as_deref()), "skitter_master");
    let command = args.command.unwrap_or(NodeCommand::Start);
    if let Some(what) = command.manage() {
        // The same master again: it resumes what it ran (a stop keeps
        // its workflows recorded as running), unless told to start over.
        if what == node::Manage::Restart && !args.fresh {
            args.recover = true;
        }
        return node::manage(what, app.as_ref(), app_dir, &name, args.cookie.as_deref(), args.start_args());
    }
    start(args, app, name, command == NodeCommand::StartIex, None, None)
}

/// What `skitter deploy` gives the master it runs.
pub struct DeployedBy {
    /// The workers, for an upgrade to replace.
    pub cluster: Arc<Cluster>,
    /// Where the master records itself and logs: the deploy's app's (the
    /// code may come from a release installed elsewhere).
    pub tmp: PathBuf,
    pub logs: Option<PathBuf>,
    /// `priv_path` names files in the workers' release (relative to their directory).
    pub priv_dir: Option<PathBuf>,
}

/// Runs a master in the foreground (`shell`: with the shell on it).
/// `cookie`, when given, is used as is (`skitter deploy` resolved it).
pub fn start(
    args: MasterArgs,
    app: Option<App>,
    name: String,
    shell: bool,
    cookie: Option<Cookie>,
    deployed: Option<DeployedBy>,
) -> Result<ExitCode> {
    super::resolve::node_settings(args.tick_time, None, app.as_ref())?;
    let cookie = match cookie {
        Some(c) => c,
        None => resolve_cookie(args.cookie.as_deref())?,
    };
    let mut workers = args.workers.clone();
    if workers.is_empty() {
        if let Ok(env) = std::env::var("SKITTER_WORKERS") {
            workers = env.split([',', ' ']).filter(|w| !w.is_empty()).map(str::to_string).collect();
        }
    }
    let workers = workers.iter().map(|w| peer_addr(w)).collect::<Result<Vec<_>>>()?;
    if let Some(twice) = workers.iter().enumerate().find_map(|(i, w)| workers[..i].contains(w).then_some(w)) {
        return Err(Error::Usage(format!("the worker at {twice} is given twice: give each worker once")));
    }
    if !(args.wait_time > 0.0 && args.wait_time.is_finite()) {
        return Err(Error::Usage(format!("--wait-time {}: give a positive number of seconds", args.wait_time)));
    }
    let wait = std::time::Duration::from_secs_f64(args.wait_time);
    let explicit_deploy = args.deploy.clone().or_else(|| std::env::var("SKITTER_DEPLOY").ok().filter(|d| !d.trim().is_empty()));
    let deploy = if shell { explicit_deploy } else { explicit_deploy.or_else(|| app.as_ref().and_then(|a| a.config.deploy.clone())) };
    let log_dir = match &deployed {
        _ if args.no_log => None,
        Some(d) => d.logs.clone().or_else(|| super::resolve::log_dir(app.as_ref())),
        None => super::resolve::log_dir(app.as_ref()),
    };
    log::init(&name, log_dir.as_deref()).map_err(Error::Usage)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("skitter-master")
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("cannot start the runtime: {e}")))?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&args.listen))
        .map_err(|e| Error::Failed(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr().map_err(|e| Error::Failed(e.to_string()))?.to_string();
    let welcome = log::welcome("master", &name, &format!(" at {addr}"));
    tracing::info!("{welcome}");
    if !shell {
        eprintln!("{welcome}");
    }
    let master = Master::new(name.clone(), &cookie, args.shutdown_with_workers, rt.handle().clone(), stdout_output());
    let priv_dir = deployed.as_ref().and_then(|d| d.priv_dir.clone()).or_else(|| app.as_ref().map(App::priv_dir));
    let env = EngineEnv::new(priv_dir, stdout_output());
    let host: Arc<dyn Host> = master.clone();
    let mut consoles = Consoles::new(name.clone(), Some(host.clone()), app.clone(), env.clone());
    if let Some(d) = &deployed {
        consoles.upgrader = Some(d.cluster.clone());
    }
    let consoles = Arc::new(consoles);
    if let Some(d) = &deployed {
        d.cluster.attach(master.clone(), Arc::downgrade(&consoles), env.clone());
    }
    rt.spawn(master.clone().serve(listener, consoles.clone()));
    super::node::serve_metrics(&rt, args.metrics.as_deref(), host.clone())?;
    super::node::serve_http(&rt, args.http.as_deref(), args.http_token.as_deref(), host.clone())?;

    // Dial the workers given here, all at once; every failure is reported.
    let dials = rt.block_on(async {
        let tasks: Vec<_> = workers.iter().map(|w| tokio::spawn(master.clone().dial(w.clone(), wait))).collect();
        let mut failures = Vec::new();
        for t in tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(e.to_string()),
            }
        }
        failures
    });
    if !dials.is_empty() {
        master.exit.cancel();
        return Err(Error::Failed(format!("cannot connect to every worker:\n  {}", dials.join("\n  "))));
    }
    if !workers.is_empty() {
        tracing::info!("connected to {} workers", workers.len());
        eprintln!("connected to {} worker(s)", workers.len());
    }
    // Recorded once its workers are connected: `daemon` returns then, and
    // what finds the master by name finds its workers too.
    let tmp = deployed.as_ref().map(|d| d.tmp.clone()).unwrap_or_else(|| tmp_dir(app.as_ref()));
    let _record = NodeFile::write(&tmp, &name, &addr).map_err(|e| Error::Failed(format!("cannot write the node file: {e}")))?;

    let recovered = if args.recover { recover(&rt, &master, wait) } else { Vec::new() };
    // A workflow recovered is the one its expression would deploy: not twice.
    let recovered_deploy = deploy.as_deref().and_then(|expr| {
        let name = crate::runtime::checkpoint::derived_name(expr);
        recovered.iter().find_map(|(n, r)| match r {
            Ok(r) if *n == name => Some((name.clone(), *r)),
            _ => None,
        })
    });
    let deploy = match &recovered_deploy {
        Some((name, _)) => {
            eprintln!("`{name}` was recovered: --deploy does not deploy it again");
            None
        }
        None => deploy,
    };

    let code = if shell {
        crate::shell::halt_on(rt.handle(), consoles.halt.clone(), host.clone());
        crate::shell::run_local(rt, host, env, app, crate::shell::FirstDeploy::of(deploy, args.fresh), &welcome, None).inspect(|_| {
            master.flush_output(OUTPUT_FLUSH);
            master.exit.cancel();
        })
    } else {
        let mut session = Session::new(env, Some(host.clone()), app, None)?;
        let workflow = match (&deploy, &recovered_deploy) {
            (Some(expr), _) => Some(session.deploy_expr(host.as_ref(), expr, args.fresh).map_err(Error::Failed)?),
            (None, Some((_, r))) => Some(*r),
            (None, None) => None,
        };
        let status = rt.block_on(async {
            let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::Failed(format!("cannot handle signals: {e}")))?;
            let mut term = signal(SignalKind::terminate()).map_err(|e| Error::Failed(format!("cannot handle signals: {e}")))?;
            let mut watch = match workflow {
                Some(r) => Some(master.subscribe(r).map_err(Error::Failed)?),
                None => None,
            };
            // A daemon keeps serving (consoles, rpc) after its workflow ends.
            let serve_on = std::env::var_os(node::DAEMON_ENV).is_some();
            let done = async {
                match (watch.as_mut(), workflow) {
                    (Some(w), Some(first)) if !serve_on => {
                        // An upgrade stops the workflow and deploys it again: follow it.
                        let mut current = first;
                        loop {
                            let _ = w.wait_for(|s| s.is_done()).await;
                            master.succession.upgrade_done().await;
                            match master.succession.successor(first).and_then(|next| Some(next).filter(|n| *n != current)) {
                                Some(next) => match master.subscribe(next) {
                                    Ok(rx) => {
                                        *w = rx;
                                        current = next;
                                    }
                                    Err(_) => break,
                                },
                                None => break,
                            }
                        }
                    }
                    _ => std::future::pending::<()>().await,
                }
            };
            let signalled = tokio::select! {
                _ = done => false,
                _ = master.exit.cancelled() => false,
                _ = consoles.halt.cancelled() => true,
                _ = int.recv() => true,
                _ = term.recv() => true,
            };
            if signalled {
                eprintln!("stopping (running workflows are drained; signal again to abort them)");
                let host = host.clone();
                let mut stopping = tokio::task::spawn_blocking(move || host.stop_all());
                let again = tokio::select! {
                    _ = &mut stopping => false,
                    _ = int.recv() => true,
                    _ = term.recv() => true,
                };
                if again {
                    eprintln!("aborting (signal again to quit at once)");
                    for r in master.running() {
                        master.request_abort(r, "aborted by a second signal");
                    }
                    tokio::select! {
                        _ = stopping => {}
                        _ = int.recv() => std::process::exit(130),
                        _ = term.recv() => std::process::exit(143),
                    }
                }
            }
            Ok::<Option<Status>, Error>(watch.map(|w| w.borrow().clone()))
        })?;
        let code = master.exit_code();
        // An `rpc` whose evaluation ended the workflow (a stop) gets its answer.
        rt.block_on(consoles.answered(CONSOLE_ANSWER));
        master.exit.cancel();
        rt.block_on(master.links_closed(std::time::Duration::from_millis(200)));
        // What the workers printed last is on its way to the terminal.
        master.flush_output(OUTPUT_FLUSH);
        rt.shutdown_timeout(std::time::Duration::from_millis(100));
        if code != 0 {
            return Ok(ExitCode::from(code));
        }
        match status {
            Some(Status::Failed(reason)) => Err(Error::WorkflowFailed(reason)),
            Some(s) if s.is_cut_short() => Err(Error::CutShort(s)),
            _ => Ok(ExitCode::SUCCESS),
        }
    };
    code
}

/// `--recover`: once workers are connected — the first within `wait`, and
/// then as long as more keep joining (rejoining workers dial again every
/// 2 s at most) — deploys again the workflows the master ran before, and
/// says what became of each.
fn recover(
    rt: &tokio::runtime::Runtime,
    master: &Arc<Master>,
    wait: std::time::Duration,
) -> Vec<(String, std::result::Result<crate::script::WorkflowRef, String>)> {
    use std::time::{Duration, Instant};
    let records = crate::runtime::checkpoint::running::listed();
    if records.is_empty() {
        eprintln!("nothing to recover: no workflow was running");
        return Vec::new();
    }
    let deadline = Instant::now() + wait;
    let (mut seen, mut since) = (0, Instant::now());
    while Instant::now() < deadline {
        let now = master.worker_names().len();
        if now != seen {
            (seen, since) = (now, Instant::now());
        }
        if seen > 0 && since.elapsed() >= Duration::from_millis(2500) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let recovered = rt.block_on(async { tokio::task::block_in_place(|| master.recover_recorded(records)) });
    for (name, result) in &recovered {
        match result {
            Ok(r) => {
                tracing::info!("recovered `{name}` as {r}");
                eprintln!("recovered `{name}` as {r}");
            }
            Err(e) => {
                tracing::error!("cannot recover `{name}`: {e}");
                eprintln!("error: cannot recover `{name}`: {e}");
            }
        }
    }
    recovered
}
