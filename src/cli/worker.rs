//! `skitter worker`: a worker node.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use super::find_app_optional;
use super::node::{self, NodeCommand};
use super::resolve::{cookie as resolve_cookie, peer_addr, tmp_dir};
use crate::net::Cookie;
use crate::runtime::console::Consoles;
use crate::runtime::log;
use crate::runtime::node::{node_name, NodeFile};
use crate::runtime::worker::{Worker, WorkerConfig};
use crate::script::engine::stdout_output;
use crate::script::{App, EngineEnv};
use crate::{Error, Result};

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    #[command(subcommand)]
    pub command: Option<NodeCommand>,
    /// The node name (`name` or `name@host`; default skitter_worker@<hostname>).
    #[arg(short = 'n', long, global = true)]
    pub name: Option<String>,
    /// A tag for placement (repeatable): operators with the strategy
    /// `tagged(tag)` run on the workers that have it; `with_tag(tag)` lists them.
    #[arg(short = 't', long = "tag", global = true, value_name = "TAG")]
    pub tags: Vec<String>,
    /// The cookie (shows in `ps`: prefer SKITTER_COOKIE or ~/.skitter.cookie).
    #[arg(short = 'c', long, global = true)]
    pub cookie: Option<String>,
    /// Do not write the log file logs/<node>.log.
    #[arg(long, global = true)]
    pub no_log: bool,
    /// Seconds a peer may be silent before it counts as gone (default 10;
    /// or SKITTER_TICK_TIME, or tick_time in skitter.toml).
    #[arg(long, global = true, value_name = "SECS")]
    pub tick_time: Option<f64>,
    /// Keep running when the master goes away, and accept a new one.
    #[arg(long, global = true)]
    pub no_shutdown_with_master: bool,
    /// Where to listen for the master and other workers.
    #[arg(long, global = true, value_name = "ADDR:PORT", default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (PORT alone:
    /// on 127.0.0.1; or SKITTER_METRICS).
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// Worker slots: instances per parallel stage (default: one per core).
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub slots: Option<u16>,
    /// Started by `skitter deploy`: the cookie is the first line of standard
    /// input, and the worker exits when its input ends (the ssh channel closed).
    #[arg(long, global = true)]
    pub deployed: bool,
    /// The master to join: name@host:port or host:port (or SKITTER_MASTER).
    #[arg(global = true)]
    pub master: Option<String>,
}

impl WorkerArgs {
    /// The options, as `skitter worker start` takes them (for `daemon`).
    fn start_args(&self) -> Vec<String> {
        let mut args = vec!["worker".to_string(), "start".into()];
        if let Some(n) = &self.name {
            args.extend(["--name".into(), n.clone()]);
        }
        for t in &self.tags {
            args.extend(["--tag".into(), t.clone()]);
        }
        // Not the cookie: `daemon` passes it in the environment.
        if self.no_log {
            args.push("--no-log".into());
        }
        if let Some(t) = self.tick_time {
            args.extend(["--tick-time".into(), t.to_string()]);
        }
        if self.no_shutdown_with_master {
            args.push("--no-shutdown-with-master".into());
        }
        args.extend(["--listen".into(), self.listen.clone()]);
        if let Some(m) = &self.metrics {
            args.extend(["--metrics".into(), m.clone()]);
        }
        if let Some(s) = self.slots {
            args.extend(["--slots".into(), s.to_string()]);
        }
        if self.deployed {
            args.push("--deployed".into());
        }
        if let Some(m) = &self.master {
            args.push(m.clone());
        }
        args
    }
}

pub fn run(args: WorkerArgs, app_dir: Option<&Path>) -> Result<ExitCode> {
    let app = find_app_optional(app_dir)?;
    let name = node_name(args.name.as_deref().or(std::env::var("SKITTER_NODE").ok().as_deref()), "skitter_worker");
    let command = args.command.unwrap_or(NodeCommand::Start);
    if let Some(what) = command.manage() {
        return node::manage(what, app.as_ref(), app_dir, &name, args.cookie.as_deref(), args.start_args());
    }
    start(args, app, name, command == NodeCommand::StartIex)
}

/// `--listen ssh`: the address this ssh session came in on, which the
/// deploying host can reach (the third field of SSH_CONNECTION).
fn listen_addr(listen: &str) -> Result<String> {
    if listen != "ssh" {
        return Ok(listen.to_string());
    }
    let conn =
        std::env::var("SSH_CONNECTION").map_err(|_| Error::Usage("--listen ssh: not started over ssh (no SSH_CONNECTION)".into()))?;
    let server_ip =
        conn.split_whitespace().nth(2).ok_or_else(|| Error::Usage(format!("--listen ssh: cannot read SSH_CONNECTION `{conn}`")))?;
    Ok(if server_ip.contains(':') { format!("[{server_ip}]:0") } else { format!("{server_ip}:0") })
}

fn start(args: WorkerArgs, app: Option<App>, name: String, shell: bool) -> Result<ExitCode> {
    super::resolve::node_settings(args.tick_time, Some(super::resolve::slots(args.slots, app.as_ref())?), app.as_ref())?;
    let cookie = if args.deployed {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| Error::Failed(format!("cannot read the cookie from stdin: {e}")))?;
        if line.trim().is_empty() {
            return Err(Error::Usage("--deployed: no cookie on stdin".into()));
        }
        Cookie::new(&line, "stdin (--deployed)").map_err(|e| Error::Usage(e.to_string()))?
    } else {
        resolve_cookie(args.cookie.as_deref())?
    };
    let listen = listen_addr(&args.listen)?;
    let master = match args.master.clone().or_else(|| std::env::var("SKITTER_MASTER").ok().filter(|m| !m.is_empty())) {
        Some(m) => Some(peer_addr(&m)?),
        None => None,
    };
    let mut tags = args.tags.clone();
    if let Ok(env_tags) = std::env::var("SKITTER_TAGS") {
        tags.extend(env_tags.split([',', ' ']).filter(|t| !t.is_empty()).map(str::to_string));
    }
    let slots = super::resolve::slots(args.slots, app.as_ref())?;
    let log_dir = if args.no_log { None } else { super::resolve::log_dir(app.as_ref()) };
    log::init(&name, log_dir.as_deref()).map_err(Error::Usage)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("skitter-worker")
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("cannot start the runtime: {e}")))?;
    let listener =
        rt.block_on(tokio::net::TcpListener::bind(&listen)).map_err(|e| Error::Failed(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| Error::Failed(e.to_string()))?.to_string();
    let welcome = log::welcome("worker", &name, &format!(" at {addr}"));
    tracing::info!("{welcome}");
    if !shell {
        eprintln!("{welcome}");
    }
    let _record =
        NodeFile::write(&tmp_dir(app.as_ref()), &name, &addr).map_err(|e| Error::Failed(format!("cannot write the node file: {e}")))?;
    let env = EngineEnv::new(app.as_ref().map(App::priv_dir), stdout_output());
    let console_env = env.clone();
    let worker_name = name.clone();
    let config = WorkerConfig { name, tags, slots, cookie, master, shutdown_with_master: !args.no_shutdown_with_master, env };
    let worker = Worker::new(config, addr);
    let consoles = Arc::new(Consoles::new(worker_name, Some(worker.clone()), app.clone(), console_env.clone()));
    super::node::serve_metrics(&rt, args.metrics.as_deref(), worker.clone())?;
    if shell {
        // The worker serves in the background; the shell is in front.
        rt.spawn(worker.clone().run(listener, consoles.clone()));
        let gone = worker.clone();
        rt.spawn(async move {
            gone.exit.cancelled().await;
            crate::shell::leave_now(gone.exit_code() as i32, "the worker is shutting down");
        });
        let host: Arc<dyn crate::script::Host> = worker.clone();
        crate::shell::halt_on(rt.handle(), consoles.halt.clone(), host.clone());
        return crate::shell::run_local(rt, host, console_env, app, None, &welcome, None);
    }
    let code = rt.block_on(async {
        let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::Failed(format!("cannot handle signals: {e}")))?;
        let mut term = signal(SignalKind::terminate()).map_err(|e| Error::Failed(format!("cannot handle signals: {e}")))?;
        let serving = tokio::spawn(worker.clone().run(listener, consoles.clone()));
        if args.deployed {
            // The ssh channel that started us is our lifeline.
            let lifeline = worker.clone();
            std::thread::spawn(move || {
                let mut rest = Vec::new();
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut rest);
                tracing::warn!("the channel that started this worker closed: shutting down");
                lifeline.quit(4);
            });
        }
        let signalled = tokio::select! {
            _ = worker.exit.cancelled() => false,
            _ = consoles.halt.cancelled() => true,
            _ = int.recv() => true,
            _ = term.recv() => true,
        };
        if signalled {
            tracing::info!("stopping gracefully");
            eprintln!("stopping (running workflows are drained; signal again to abort them)");
            let shutdown = worker.shutdown();
            tokio::pin!(shutdown);
            let again = tokio::select! {
                _ = &mut shutdown => false,
                _ = int.recv() => true,
                _ = term.recv() => true,
            };
            if again {
                worker.abort_parts("aborted by a second signal");
                shutdown.await;
            }
            worker.exit.cancel();
        }
        let _ = serving.await;
        Ok::<u8, Error>(if signalled { 0 } else { worker.exit_code() })
    })?;
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(ExitCode::from(code))
}
