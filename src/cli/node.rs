//! The `daemon`, `pid`, `stop`, `restart` and `remote` commands that every
//! node mode has for managing a node by name.

use colored::Colorize;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use super::resolve::{pid_of, record, tmp_dir};
use crate::runtime::node::{alive, node_file_path, read_node_file};
use crate::script::App;
use crate::{Error, Result};

/// `pid`: prints the node's process id.
pub fn pid(app: Option<&App>, node: &str) -> Result<ExitCode> {
    println!("{}", record(app, node)?.pid);
    Ok(ExitCode::SUCCESS)
}

/// `stop`: asks the node to stop gracefully (SIGTERM) and waits until its
/// process is gone.
pub fn stop(app: Option<&App>, node: &str) -> Result<ExitCode> {
    let r = record(app, node)?;
    // SAFETY: kill(2) with a pid read from the node's own record.
    if unsafe { libc::kill(r.pid as libc::pid_t, libc::SIGTERM) } != 0 {
        return Err(Error::Failed(format!("cannot signal {node} (pid {}): {}", r.pid, std::io::Error::last_os_error())));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while alive(r.pid) {
        if Instant::now() > deadline {
            return Err(Error::Failed(format!("{node} (pid {}) did not stop within 60 s", r.pid)));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(ExitCode::SUCCESS)
}

/// How long a daemon node may take to be ready.
pub const DAEMON_READY: Duration = Duration::from_secs(10);

/// Set for a node started by `daemon`: it keeps serving after the workflow
/// it deployed at start has ended.
pub const DAEMON_ENV: &str = "SKITTER_DAEMON";

/// `daemon`: starts `args` (the same mode with `start`) detached, its output
/// in `<tmp>/<node>.out`, and returns once the node has written its record.
/// A cookie given with `-c` reaches it through its environment, never its
/// command line (which `ps` shows to everyone).
/// `ready_within` bounds the wait; `None` waits as long as the daemon
/// lives (a deploy that ships a release bounds its own steps). A daemon
/// not ready in time is stopped: nothing is left half-started.
pub fn daemon(app: Option<&App>, node: &str, args: Vec<String>, cookie: Option<&str>, ready_within: Option<Duration>) -> Result<ExitCode> {
    let tmp = tmp_dir(app);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::Failed(format!("cannot create {}: {e}", tmp.display())))?;
    if let Ok(r) = record(app, node) {
        return Err(Error::Failed(format!("{node} is already running (pid {})", r.pid)));
    }
    let out_path = tmp.join(format!("{node}.out"));
    let out = std::fs::File::create(&out_path).map_err(|e| Error::Failed(format!("cannot create {}: {e}", out_path.display())))?;
    let err = out.try_clone().map_err(|e| Error::Failed(e.to_string()))?;
    let exe = std::env::current_exe().map_err(|e| Error::Failed(format!("cannot find this program: {e}")))?;
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(exe);
    // The node's cookie: -c's, else the one this process was started with.
    let inherited = crate::net::cookie::from_environment();
    if let Some(c) = cookie.or(inherited) {
        command.env("SKITTER_COOKIE", c);
    }
    if let Some(t) = crate::runtime::web::token_from_environment() {
        command.env("SKITTER_HTTP_TOKEN", t);
    }
    let mut child = command
        .args(&args)
        .env("SKITTER_TMP", &tmp)
        .env(DAEMON_ENV, "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Failed(format!("cannot start the daemon: {e}")))?;
    let path = node_file_path(&tmp, node);
    let deadline = ready_within.map(|d| Instant::now() + d);
    loop {
        if let Some(r) = read_node_file(&path).filter(|r| r.pid == child.id()) {
            println!("{node} is running as a daemon (pid {}) at {}", r.pid, r.addr);
            return Ok(ExitCode::SUCCESS);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let output = std::fs::read_to_string(&out_path).unwrap_or_default();
            return Err(Error::Failed(format!("the daemon exited ({status}) before it was ready:\n{}", output.trim_end())));
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            // SAFETY: kill(2) of the process group of the daemon started here.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGTERM) };
            let _ = child.wait();
            return Err(Error::Failed(format!(
                "the daemon did not become ready within {} s, and was stopped; see {}",
                ready_within.unwrap_or_default().as_secs(),
                out_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The commands of every node mode (local, master, worker), with
/// Skitter's short forms.
#[derive(clap::Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCommand {
    /// Run in the foreground (`s`).
    #[command(visible_alias = "s")]
    Start,
    /// Run in the foreground with the shell on the node (`S`).
    #[command(name = "start_iex", visible_alias = "S")]
    StartIex,
    /// Run in the background; output in tmp/<node>.out (`d`).
    #[command(visible_alias = "d")]
    Daemon,
    /// Like daemon; attach a shell later with `remote` (`D`).
    #[command(name = "daemon_iex", visible_alias = "D")]
    DaemonIex,
    /// Stop the running node gracefully and wait until it is gone.
    Stop,
    /// Print the running node's process id.
    Pid,
    /// Stop the running node (if it runs) and start it again as a daemon.
    Restart,
    /// Attach a shell to the running node.
    Remote,
}

impl NodeCommand {
    /// What the command does to a node by name; `None` for `start` and
    /// `start_iex`, which run the node here.
    pub fn manage(self) -> Option<Manage> {
        match self {
            NodeCommand::Start | NodeCommand::StartIex => None,
            NodeCommand::Daemon | NodeCommand::DaemonIex => Some(Manage::Daemon),
            NodeCommand::Stop => Some(Manage::Stop),
            NodeCommand::Pid => Some(Manage::Pid),
            NodeCommand::Restart => Some(Manage::Restart),
            NodeCommand::Remote => Some(Manage::Remote),
        }
    }
}

/// The commands every node mode has for managing a node by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manage {
    Pid,
    Stop,
    Remote,
    Daemon,
    Restart,
}

/// Runs a management command on the node `name`. `start_args` are the
/// mode's options as `start` takes them, for `daemon` and `restart`.
pub fn manage(
    what: Manage,
    app: Option<&App>,
    app_dir: Option<&std::path::Path>,
    name: &str,
    cookie: Option<&str>,
    start_args: Vec<String>,
) -> Result<ExitCode> {
    match what {
        Manage::Pid => pid(app, name),
        Manage::Stop => stop(app, name),
        Manage::Remote => super::console::remote_mode(name, app, cookie),
        Manage::Daemon | Manage::Restart => {
            if matches!(what, Manage::Restart) && pid_of(app, name).is_some() {
                stop(app, name)?;
            }
            let mut start = start_args;
            if let Some(dir) = app_dir {
                start.extend(["--app".into(), dir.display().to_string()]);
            }
            daemon(app, name, start, cookie, Some(DAEMON_READY))
        }
    }
}

/// Serves `--metrics` (else SKITTER_METRICS) for `host` on `rt`, saying where.
pub fn serve_metrics(rt: &tokio::runtime::Runtime, flag: Option<&str>, host: std::sync::Arc<dyn crate::script::Host>) -> Result<()> {
    let env = std::env::var("SKITTER_METRICS").ok().filter(|m| !m.trim().is_empty());
    let Some(spec) = flag.map(str::to_string).or(env) else { return Ok(()) };
    let (listener, bound) = rt.block_on(crate::runtime::http::bind("--metrics", &spec)).map_err(Error::Usage)?;
    tracing::info!("metrics at http://{bound}/metrics");
    eprintln!("metrics at http://{bound}/metrics");
    rt.spawn(crate::runtime::metrics::serve(listener, host, tokio_util::sync::CancellationToken::new()));
    Ok(())
}

/// Serves `--http` (else SKITTER_HTTP), the web view, for `host` on `rt`,
/// saying where; with `--http-token` (else SKITTER_HTTP_TOKEN) it can act.
pub fn serve_http(
    rt: &tokio::runtime::Runtime,
    flag: Option<&str>,
    token: Option<&str>,
    host: std::sync::Arc<dyn crate::script::Host>,
) -> Result<()> {
    let env = std::env::var("SKITTER_HTTP").ok().filter(|m| !m.trim().is_empty());
    let Some(spec) = flag.map(str::to_string).or(env) else {
        if token.is_some() {
            return Err(Error::Usage("--http-token is for the web view: give --http ADDR:PORT too".into()));
        }
        return Ok(());
    };
    if token.is_some() {
        eprintln!("{} a token given with --http-token shows in `ps`; prefer SKITTER_HTTP_TOKEN", "warning:".yellow().bold());
    }
    let token = match token {
        Some(t) => Some(crate::runtime::web::Token::new(t, "--http-token")),
        None => crate::runtime::web::token_from_environment().map(|t| crate::runtime::web::Token::new(t, "SKITTER_HTTP_TOKEN")),
    }
    .transpose()
    .map_err(Error::Usage)?;
    let (listener, bound) = rt.block_on(crate::runtime::http::bind("--http", &spec)).map_err(Error::Usage)?;
    let acts = if token.is_some() { "stop, abort and checkpoint with the token" } else { "read-only" };
    tracing::info!("web view at http://{bound}/ ({acts})");
    eprintln!("web view at http://{bound}/ ({acts})");
    rt.spawn(crate::runtime::web::serve(listener, host, token, tokio_util::sync::CancellationToken::new()));
    Ok(())
}
