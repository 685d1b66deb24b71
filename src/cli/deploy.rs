//! `skitter deploy`: a worker on every host over ssh, all at once, then a
//! master here that connects to exactly those workers. If any host fails,
//! every worker already started is stopped and every failure is reported.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use colored::Colorize;

use super::find_app_optional;
use super::master::{DeployedBy, MasterArgs};
use super::node;
use super::node::NodeCommand;
use super::resolve::cookie as resolve_cookie;
use super::resolve::tmp_dir;
use crate::deploy::fleet::{self, Progress};
use crate::deploy::ssh::{self, ControlDir, Installed, LaunchPlan, SshOptions};
use crate::deploy::upgrade::Cluster;
use crate::deploy::WorkerSpec;
use crate::release::install::Tarball;
use crate::runtime::node::node_name;
use crate::script::App;
use crate::{Error, Result};

#[derive(Args, Debug, Clone)]
pub struct DeployArgs {
    /// A file of worker specs, one per line (`#` starts a comment).
    #[arg(short = 'f', long = "worker-file", value_name = "PATH")]
    pub worker_file: Option<PathBuf>,
    /// One summary line instead of progress per host.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// A Rhai expression returning the workflow the master deploys.
    #[arg(short = 'd', long, value_name = "EXPR")]
    pub deploy: Option<String>,
    /// How the master runs: start, start_iex, daemon or daemon_iex (s, S, d, D).
    #[arg(short = 'm', long, default_value = "start", value_parser = ["start", "start_iex", "daemon", "daemon_iex", "s", "S", "d", "D"])]
    pub mode: String,
    /// Stop the workers on these hosts instead.
    #[arg(short = 's', long)]
    pub stop: bool,
    /// The longest to wait for a host to answer and its worker to be ready.
    #[arg(long = "wait-time", value_name = "SECONDS", default_value_t = 10.0)]
    pub wait_time: f64,
    /// The cookie (shows in `ps`: prefer SKITTER_COOKIE or ~/.skitter.cookie).
    #[arg(short = 'c', long)]
    pub cookie: Option<String>,
    /// No log files, here or on the hosts.
    #[arg(long)]
    pub no_log: bool,
    /// Where the workers run on the hosts (default: skitter/<app> under the
    /// login's home when shipping a release, else the app's directory here).
    /// `%h` stands for the host, `%n` for the worker's node name.
    #[arg(long, value_name = "PATH")]
    pub working_dir: Option<PathBuf>,
    /// The master exits (status 4) when a worker goes away.
    #[arg(long)]
    pub shutdown_with_workers: bool,
    /// Serve the master's Prometheus metrics at http://ADDR:PORT/metrics
    /// (PORT alone: on 127.0.0.1; or SKITTER_METRICS).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// Serve a web view of the master, its workers and workflows at
    /// http://ADDR:PORT/ (PORT alone: on 127.0.0.1; or SKITTER_HTTP).
    #[arg(long, value_name = "ADDR:PORT")]
    pub http: Option<String>,
    /// Let the web view stop, abort and checkpoint workflows for requests
    /// that carry TOKEN (at least 16 characters; or SKITTER_HTTP_TOKEN).
    #[arg(long = "http-token", value_name = "TOKEN")]
    pub http_token: Option<String>,
    /// Workers keep running when the master goes (they still end with the deploy's ssh channel).
    #[arg(long)]
    pub no_shutdown_with_master: bool,
    /// Deploy again, each from its last checkpoint, the workflows the
    /// master ran when it was killed or exited.
    #[arg(long)]
    pub recover: bool,
    /// The ssh configuration file (users, ports, keys of the hosts).
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Trust a host key seen for the first time (and remember it); by
    /// default your ssh configuration decides, and unknown keys are refused.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Ship a release to the hosts first: this tarball, or (with no value,
    /// run from a release) the release itself. Workers run from
    /// <working-dir>/releases/<version>; a host that has it skips the copy.
    #[arg(long, value_name = "TARBALL", num_args = 0..=1, default_missing_value = "")]
    pub release: Option<String>,
    /// The master's node name (default skitter_master@<hostname>).
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// Worker specs: [name@]host[:tag1,tag2] or ssh://[user@]host[:port][#tags].
    pub workers: Vec<String>,
}

impl DeployArgs {
    fn start_args(&self) -> Vec<String> {
        let mut args = vec!["deploy".to_string(), "--mode".into(), "start".into()];
        let mut opt = |flag: &str, v: Option<String>| {
            if let Some(v) = v {
                args.extend([flag.to_string(), v]);
            }
        };
        opt("--worker-file", self.worker_file.as_ref().map(|p| p.display().to_string()));
        opt("--deploy", self.deploy.clone());
        opt("--working-dir", self.working_dir.as_ref().map(|p| p.display().to_string()));
        opt("--ssh-config", self.ssh_config.as_ref().map(|p| std::path::absolute(p).unwrap_or(p.clone()).display().to_string()));
        opt("--name", self.name.clone());
        args.extend(["--wait-time".into(), self.wait_time.to_string()]);
        for (flag, on) in [
            ("--quiet", self.quiet),
            ("--no-log", self.no_log),
            ("--shutdown-with-workers", self.shutdown_with_workers),
            ("--no-shutdown-with-master", self.no_shutdown_with_master),
            ("--recover", self.recover),
            ("--accept-new-host-keys", self.accept_new_host_keys),
        ] {
            if on {
                args.push(flag.into());
            }
        }
        args.extend(self.workers.iter().cloned());
        args
    }
}

fn specs(args: &DeployArgs) -> Result<Vec<WorkerSpec>> {
    let mut raw: Vec<String> = args.workers.clone();
    if let Some(file) = &args.worker_file {
        let text = std::fs::read_to_string(file).map_err(|e| Error::Usage(format!("cannot read {}: {e}", file.display())))?;
        raw.extend(text.lines().map(|l| l.split('#').next().unwrap_or_default().trim().to_string()).filter(|l| !l.is_empty()));
    }
    if raw.is_empty() {
        if let Ok(env) = std::env::var("SKITTER_WORKERS") {
            raw.extend(env.split([',', ' ']).filter(|w| !w.is_empty()).map(str::to_string));
        }
    }
    if raw.is_empty() {
        return Err(Error::Usage("no workers: give hosts ([name@]host[:tags]), --worker-file, or SKITTER_WORKERS".into()));
    }
    let specs = raw.iter().map(|s| WorkerSpec::parse(s)).collect::<std::result::Result<Vec<_>, _>>().map_err(Error::Usage)?;
    let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::Usage(format!("two workers would be named {}: give them names (name@host)", w[0])));
    }
    Ok(specs)
}

pub fn run(args: DeployArgs, app_dir: Option<&Path>) -> Result<ExitCode> {
    let app = find_app_optional(app_dir)?;
    let specs = specs(&args)?;
    if !(args.wait_time > 0.0 && args.wait_time.is_finite()) {
        return Err(Error::Usage(format!("--wait-time {}: give a positive number of seconds", args.wait_time)));
    }
    if let Some(config) = &args.ssh_config {
        if !config.is_file() {
            return Err(Error::Usage(format!("--ssh-config {}: no such file", config.display())));
        }
    }
    let master_name = node_name(args.name.as_deref(), "skitter_master");
    let mode = match args.mode.as_str() {
        "s" | "start" => "start",
        "S" | "start_iex" => "start_iex",
        "d" | "daemon" => "daemon",
        _ => "daemon_iex",
    };
    // Checked before anything starts, here or on a host.
    let tarball = match args.release.as_deref() {
        None => None,
        Some("") => Some(own_tarball(app.as_ref())?),
        Some(path) => Some(Tarball::open(Path::new(path)).map_err(|e| Error::Usage(e.to_string()))?),
    };
    if let (Some(t), Some(a)) = (&tarball, &app) {
        if a.release && a.config.name != t.name {
            return Err(Error::Usage(format!("{} is a release of {}, and this is {}", t.path.display(), t.name, a.config.name)));
        }
    }
    if !args.stop && mode.starts_with("daemon") {
        // The daemon owns the ssh channels: it runs the whole deploy.
        let mut start = args.start_args();
        if let Some(t) = &tarball {
            let path = std::path::absolute(&t.path).unwrap_or(t.path.clone());
            start.extend(["--release".into(), path.display().to_string()]);
        }
        if let Some(dir) = app_dir {
            start.extend(["--app".into(), dir.display().to_string()]);
        }
        // Its own steps are bounded (--wait-time); a copy takes what it takes.
        let ready_within = match &tarball {
            Some(_) => None,
            None => Some(node::DAEMON_READY + Duration::from_secs_f64(args.wait_time)),
        };
        return node::daemon(app.as_ref(), &master_name, start, args.cookie.as_deref(), ready_within);
    }
    let working_dir = match (&args.working_dir, &tarball, &app) {
        (Some(d), _, _) => d.display().to_string(),
        // Relative: under the ssh login's home on each host.
        (None, Some(t), _) => format!("skitter/{}", t.name),
        (None, None, Some(a)) => a.root.display().to_string(),
        (None, None, None) => std::env::current_dir().map_err(|e| Error::Failed(e.to_string()))?.display().to_string(),
    };
    let program = std::env::current_exe().map_err(|e| Error::Failed(format!("cannot find this program: {e}")))?.display().to_string();
    let cookie = resolve_cookie(args.cookie.as_deref())?;
    let plan = LaunchPlan {
        program,
        working_dir,
        cookie: cookie.clone(),
        no_log: args.no_log,
        shutdown_with_master: !args.no_shutdown_with_master,
        release: tarball.as_ref().map(|t| Installed { app: t.name.clone(), version: t.version.clone() }),
    };
    let control = ControlDir::create().map_err(|e| Error::Failed(format!("cannot make a directory for ssh's control sockets: {e}")))?;
    let opts = SshOptions {
        config: args.ssh_config.clone(),
        control_dir: control.path.clone(),
        wait: Duration::from_secs_f64(args.wait_time),
        quiet: args.quiet,
        accept_new_host_keys: args.accept_new_host_keys,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("cannot start the runtime: {e}")))?;
    let started = Instant::now();

    if args.stop {
        return stop(&rt, &specs, &plan, &opts, app.as_ref(), &master_name);
    }

    let progress = Progress::terminal(!args.quiet);
    let tmp = tmp_dir(app.as_ref());
    let local_dir = tmp.join("deploy");
    // The master runs the shipped release's code.
    let code_app = match &tarball {
        Some(t) => {
            let root = t.install(&local_dir).map_err(|e| Error::Failed(e.to_string()))?;
            Some(App::load_release(&root)?)
        }
        None => app.clone(),
    };
    let (launched, shipped) = rt
        .block_on(fleet::bring_up_all(&specs, &plan, &opts, tarball.as_ref(), &progress, vec![None; specs.len()]))
        .map_err(|(f, stopped)| {
            Error::Failed(format!(
                "{} of {} host(s) failed; the {stopped} worker(s) already started were stopped:\n  {f}",
                f.0.len(),
                specs.len(),
            ))
        })?;
    if let Some(summary) = shipped {
        eprintln!("{summary}");
    }
    if let Some(t) = &tarball {
        if let Err(f) = rt.block_on(fleet::set_current(&launched, &plan, &t.version)) {
            eprintln!("warning: could not record {} as current on:\n  {f}", t.version);
        }
    }
    let summary = format!("{} worker(s) ready in {:.2} s", launched.len(), started.elapsed().as_secs_f64());
    if args.quiet {
        eprintln!("{summary}");
    } else {
        eprintln!("{}", summary.bold());
    }
    let cluster = Arc::new(Cluster::new(specs, opts, progress, local_dir, plan, launched, rt.handle().clone()));
    let master = MasterArgs {
        command: Some(if mode == "start" { NodeCommand::Start } else { NodeCommand::StartIex }),
        deploy: args.deploy.clone(),
        name: args.name.clone(),
        cookie: None,
        fresh: false,
        recover: args.recover,
        no_log: args.no_log,
        tick_time: None,
        shutdown_with_workers: args.shutdown_with_workers,
        listen: "127.0.0.1:0".into(),
        metrics: args.metrics.clone(),
        http: args.http.clone(),
        http_token: args.http_token.clone(),
        wait_time: args.wait_time,
        workers: cluster.addresses(),
    };
    let deployed = DeployedBy {
        cluster: cluster.clone(),
        tmp,
        logs: app.as_ref().map(App::logs_dir),
        priv_dir: tarball.as_ref().map(|t| PathBuf::from(format!("releases/{}/priv", t.version))),
    };
    let code = super::master::start(master, code_app, master_name, mode == "start_iex", Some(cookie), Some(deployed));
    rt.block_on(cluster.stop());
    drop(control);
    code
}

/// `deploy --stop`: the workers on the hosts, then the master they had, if
/// it still runs here.
fn stop(
    rt: &tokio::runtime::Runtime,
    specs: &[WorkerSpec],
    plan: &LaunchPlan,
    opts: &SshOptions,
    app: Option<&App>,
    master_name: &str,
) -> Result<ExitCode> {
    let results = rt.block_on(async {
        let tasks: Vec<_> = specs.iter().map(|s| ssh::stop_remote(s, plan, opts)).collect();
        futures_util::future::join_all(tasks).await
    });
    let failed: Vec<String> = specs.iter().zip(results).filter_map(|(s, r)| r.err().map(|e| format!("{s}: {e}"))).collect();
    if !failed.is_empty() {
        return Err(Error::Failed(format!("could not stop every worker:\n  {}", failed.join("\n  "))));
    }
    println!("stopped the workers on {} host(s)", specs.len());
    if super::resolve::record(app, master_name).is_ok() {
        node::stop(app, master_name)?;
        println!("stopped the master {master_name}, left with no workers");
    }
    Ok(ExitCode::SUCCESS)
}

/// This release as a tarball, to ship: the one `release --tar` wrote
/// beside it, else one written now into tmp/.
fn own_tarball(app: Option<&App>) -> Result<Tarball> {
    let Some(app) = app.filter(|a| a.release) else {
        return Err(Error::Usage(
            "--release without a tarball ships the release this is run from: run bin/skitter of a release, or give a tarball".into(),
        ));
    };
    let name = format!("{}-{}.tar.gz", app.config.name, app.config.version);
    let beside = app.root.join(&name);
    let path = if beside.is_file() {
        beside
    } else {
        let tmp = tmp_dir(Some(app));
        std::fs::create_dir_all(&tmp).map_err(|e| Error::Failed(format!("cannot create {}: {e}", tmp.display())))?;
        let path = tmp.join(&name);
        crate::release::build::write_tarball(&app.root, &path).map_err(|e| Error::Failed(e.to_string()))?;
        path
    };
    Tarball::open(&path).map_err(|e| Error::Failed(e.to_string()))
}
