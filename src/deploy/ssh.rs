//! The ssh launcher: one multiplexed ssh connection per host (openssh,
//! native mux, a control master that exits one second after its last
//! channel), a worker started through it, and its readiness read back from
//! the channel: no sleeping, no guessing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{quote, LaunchError, WorkerSpec};

/// Settings of this host that its workers take along (never the cookie).
const FORWARDED_ENV: &[&str] = &["SKITTER_LOG"];

pub struct SshOptions {
    pub config: Option<PathBuf>,
    /// Where the connections' control sockets go (see [`ControlDir`]).
    pub control_dir: PathBuf,
    /// A bound on reaching a host and on the worker becoming ready.
    pub wait: Duration,
    pub quiet: bool,
    /// Trust a host key seen for the first time (ssh's `accept-new`);
    /// otherwise the user's ssh configuration decides.
    pub accept_new_host_keys: bool,
}

/// What runs on each host.
#[derive(Clone)]
pub struct LaunchPlan {
    /// The skitter binary on the hosts (when no release is shipped).
    pub program: String,
    /// Where workers run; `%h` stands for the host, `%n` for the worker's
    /// node name (several workers on one machine, each with its own).
    pub working_dir: String,
    pub cookie: crate::net::Cookie,
    pub no_log: bool,
    pub shutdown_with_master: bool,
    /// The shipped release the workers run from: through its
    /// `<dir>/releases/<version>/bin/<app>`, so that its env.sh applies.
    pub release: Option<Installed>,
}

/// A release shipped to the hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub app: String,
    pub version: String,
}

impl LaunchPlan {
    /// The working directory on `spec`'s host.
    pub fn dir_for(&self, spec: &WorkerSpec) -> String {
        let host = spec.host.strip_prefix("ssh://").unwrap_or(&spec.host);
        let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
        let host = host.split([':', '#', '/']).next().unwrap_or(host);
        let mut out = String::new();
        let mut chars = self.working_dir.chars();
        while let Some(c) = chars.next() {
            match (c, chars.clone().next()) {
                ('%', Some('h')) => out.push_str(host),
                ('%', Some('n')) => out.push_str(&spec.name),
                ('%', Some('%')) => out.push('%'),
                _ => {
                    out.push(c);
                    continue;
                }
            }
            chars.next();
        }
        out
    }

    /// The command that starts a worker, as the command line in its directory names it.
    fn worker_start(&self) -> String {
        match &self.release {
            Some(r) => format!("SKITTER_MODE=worker releases/{}/bin/{} start", quote(&r.version), quote(&r.app)),
            None => format!("{} worker start", quote(&self.program)),
        }
    }
}

/// A worker running on a host, held by its ssh channel.
pub struct Launched {
    pub spec: WorkerSpec,
    pub addr: String,
    pub ready_after: Duration,
    child: openssh::Child<Arc<Session>>,
    stdin: Option<openssh::ChildStdin>,
    pub session: Arc<Session>,
}

impl Launched {
    /// Runs `line` on the worker's host, over its connection; its output.
    pub async fn run(&self, line: &str) -> Result<String, LaunchError> {
        let out = self.session.raw_command(line).output().await.map_err(|e| LaunchError::from_ssh(&e.to_string()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(LaunchError::CommandFailed(String::from_utf8_lossy(&out.stderr).trim().to_string()))
        }
    }

    /// Ends the worker: its input closes, it exits; waits for that.
    pub async fn stop(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        if let Ok(session) = Arc::try_unwrap(self.session) {
            let _ = session.close().await;
        }
    }
}

/// The directory of this deploy's ssh control sockets, removed when the
/// deploy ends, however it ends: a small watchdog process holds the read
/// end of a pipe whose write end only this process has; when the kernel
/// closes it (exit, crash or SIGKILL), the watchdog removes the directory.
pub struct ControlDir {
    pub path: PathBuf,
    _watchdog: std::process::ChildStdin,
}

impl ControlDir {
    pub fn create() -> std::io::Result<ControlDir> {
        use std::os::unix::fs::DirBuilderExt;
        use std::os::unix::process::CommandExt;
        let path = std::env::temp_dir().join(format!("skitter-ssh.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        let watchdog = std::process::Command::new("sh")
            .args(["-c", "cat >/dev/null; rm -rf \"$1\"", "skitter-ssh-cleanup"])
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own process group: a Ctrl-C meant for the deploy leaves it be.
            .process_group(0)
            .spawn();
        match watchdog {
            Ok(mut child) => {
                let stdin = child.stdin.take().expect("piped");
                // Not waited for: it outlives this process when it must.
                drop(child);
                Ok(ControlDir { path, _watchdog: stdin })
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&path);
                Err(e)
            }
        }
    }
}

/// Connects to a host.
pub async fn connect(host: &str, opts: &SshOptions) -> Result<Arc<Session>, LaunchError> {
    let mut builder = SessionBuilder::default();
    builder
        .connect_timeout(opts.wait)
        .known_hosts_check(tokio::task::block_in_place(|| host_key_policy(host, opts)))
        .control_persist(ControlPersist::IdleFor(std::num::NonZeroUsize::new(1).expect("one is not zero")))
        .server_alive_interval(Duration::from_secs(1));
    if let Some(config) = &opts.config {
        builder.config_file(config);
    }
    builder.control_directory(&opts.control_dir);
    match tokio::time::timeout(opts.wait, builder.connect_mux(host)).await {
        Err(_) => Err(LaunchError::TimedOut(format!("no answer within {:?}", opts.wait))),
        Ok(Err(e)) => {
            Err(LaunchError::from_ssh(&format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default())))
        }
        Ok(Ok(session)) => Ok(Arc::new(session)),
    }
}

/// How host keys are checked: `--accept-new-host-keys` trusts new ones;
/// otherwise the user's ssh configuration for the host decides (as `ssh
/// -G` resolves it), and strict checking when it says nothing else.
pub fn host_key_policy(host: &str, opts: &SshOptions) -> KnownHosts {
    if opts.accept_new_host_keys {
        return KnownHosts::Add;
    }
    let mut ssh = std::process::Command::new("ssh");
    if let Some(config) = &opts.config {
        ssh.arg("-F").arg(config);
    }
    let resolved = ssh.arg("-G").arg(host).stdin(std::process::Stdio::null()).output();
    match resolved {
        Ok(out) if out.status.success() => policy_from_config(&String::from_utf8_lossy(&out.stdout)),
        _ => KnownHosts::Strict,
    }
}

/// The policy `ssh -G`'s output states.
pub fn policy_from_config(resolved: &str) -> KnownHosts {
    let value = resolved.lines().find_map(|l| l.strip_prefix("stricthostkeychecking ")).map(|v| v.trim().to_lowercase());
    match value.as_deref() {
        Some("accept-new") => KnownHosts::Add,
        Some("no") | Some("off") | Some("false") => KnownHosts::Accept,
        // yes, ask (nobody is there to answer), or unset: strict.
        _ => KnownHosts::Strict,
    }
}

/// Starts a worker on `spec.host` and waits (at most `opts.wait`) until it
/// says where it listens; over `session` when one is open to the host.
pub async fn launch(
    spec: &WorkerSpec,
    plan: &LaunchPlan,
    opts: &SshOptions,
    session: Option<Arc<Session>>,
) -> Result<Launched, LaunchError> {
    let started = Instant::now();
    // The worker's environment is given explicitly: the remote login's own
    // is whatever that host has. Secrets go through the channel, not here.
    let env: String = FORWARDED_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()).map(|v| format!("{k}={} ", quote(&v))))
        .collect();
    let mut line = format!(
        "cd {} && exec env {env}{} --deployed -n {} --listen ssh",
        quote(&plan.dir_for(spec)),
        plan.worker_start(),
        quote(&spec.name)
    );
    if plan.no_log {
        line.push_str(" --no-log");
    }
    if !plan.shutdown_with_master {
        line.push_str(" --no-shutdown-with-master");
    }
    for tag in &spec.tags {
        line.push_str(&format!(" -t {}", quote(tag)));
    }
    // The control connection exits a second after it is idle: should that
    // happen before our command's channel opens (a loaded host), connect again.
    let mut attempt = 0;
    let mut open = session;
    let (session, mut child) = loop {
        attempt += 1;
        let session = match open.take() {
            Some(s) => s,
            None => connect(&spec.host, opts).await?,
        };
        let spawned =
            session.clone().arc_raw_command(&line).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().await;
        match spawned {
            Ok(child) => break (session, child),
            Err(e) if attempt < 3 && started.elapsed() < opts.wait => tracing::warn!("{}: {e}; connecting again", spec.host),
            Err(e) => return Err(LaunchError::from_ssh(&e.to_string())),
        }
    };
    // The cookie travels on the channel, never on a command line.
    let mut stdin = child.stdin().take().ok_or_else(|| LaunchError::CommandFailed("no input channel".into()))?;
    // A command that exits at once (a broken release) closes its input
    // before the cookie is written: its own last words, read below, say
    // why better than the broken pipe does.
    let wrote = match stdin.write_all(format!("{}\n", plan.cookie.expose()).as_bytes()).await {
        Ok(()) => stdin.flush().await,
        Err(e) => Err(e),
    };
    let unwritten = wrote.err().map(|e| e.to_string());
    let stderr = child.stderr().take().ok_or_else(|| LaunchError::CommandFailed("no error channel".into()))?;
    let stdout = child.stdout().take();
    let mut lines = BufReader::new(stderr).lines();
    let mut said = Vec::new();
    let deadline = tokio::time::Instant::now() + opts.wait.saturating_sub(started.elapsed());
    let addr = loop {
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Err(_) => return Err(LaunchError::NotReady(format!("no welcome within {:?}{}", opts.wait, last_words(&said)))),
            Ok(Err(e)) => return Err(LaunchError::CommandFailed(e.to_string())),
            Ok(Ok(None)) => {
                return Err(LaunchError::CommandFailed(match (said.is_empty(), &unwritten) {
                    (false, _) => said.join(" | "),
                    (true, Some(e)) => e.clone(),
                    (true, None) => "the worker exited".into(),
                }))
            }
            Ok(Ok(Some(line))) => {
                if let Some(rest) = line.split_once("Running in worker mode as ").map(|(_, r)| r) {
                    if let Some((_, addr)) = rest.split_once(" at ") {
                        break addr.trim().to_string();
                    }
                }
                said.push(line);
            }
        }
    };
    let host = spec.host.clone();
    let quiet = opts.quiet;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!("[{host}] {line}");
            if !quiet {
                eprintln!("[{host}] {line}");
            }
        }
    });
    if let Some(stdout) = stdout {
        let host = spec.host.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!("[{host}] {line}");
                if !quiet {
                    println!("[{host}] {line}");
                }
            }
        });
    }
    Ok(Launched { spec: spec.clone(), addr, ready_after: started.elapsed(), child, stdin: Some(stdin), session })
}

fn last_words(said: &[String]) -> String {
    match said.last() {
        Some(l) => format!(" (it said: {l})"),
        None => String::new(),
    }
}

/// Runs `skitter worker stop -n NAME` on the host (for `deploy --stop`):
/// the current shipped release's program when the directory has one.
pub async fn stop_remote(spec: &WorkerSpec, plan: &LaunchPlan, opts: &SshOptions) -> Result<(), LaunchError> {
    // A connection that drops while `worker stop` runs leaves it unknown
    // whether the worker stopped: ask again on a fresh one, where a worker
    // that is no longer running is a stopped one.
    for attempt in 0..2 {
        match stop_once(spec, plan, opts).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(stderr)) if attempt > 0 && stderr.contains("is running (no live record") => return Ok(()),
            Ok(Err(stderr)) => return Err(LaunchError::CommandFailed(stderr)),
            // Dropped mid-command (not unreachable, refused, ...: those stand).
            Err(e @ LaunchError::CommandFailed(_)) if attempt == 0 => tracing::warn!("{spec}: {e}; asking again"),
            Err(e) => return Err(e),
        }
    }
    unreachable!("the second attempt returns")
}

/// One `worker stop` over ssh: the transport's error, or the command's
/// outcome (its standard error when it failed).
async fn stop_once(spec: &WorkerSpec, plan: &LaunchPlan, opts: &SshOptions) -> Result<Result<(), String>, LaunchError> {
    let session = connect(&spec.host, opts).await?;
    let name = quote(&spec.name);
    let line = format!(
        "cd {} && if [ -f current ]; then read -r v < current && exec \"releases/$v/bin/skitter\" worker stop -n {name}; \
         else exec {} worker stop -n {name}; fi",
        quote(&plan.dir_for(spec)),
        quote(&plan.program),
    );
    let out = session.raw_command(&line).output().await.map_err(|e| LaunchError::from_ssh(&e.to_string()))?;
    if let Ok(session) = Arc::try_unwrap(session) {
        let _ = session.close().await;
    }
    Ok(if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_string()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_are_checked_as_the_ssh_configuration_says() {
        assert!(matches!(policy_from_config("user root\nstricthostkeychecking ask\n"), KnownHosts::Strict));
        assert!(matches!(policy_from_config("stricthostkeychecking true\n"), KnownHosts::Strict));
        assert!(matches!(policy_from_config("stricthostkeychecking accept-new\n"), KnownHosts::Add));
        assert!(matches!(policy_from_config("stricthostkeychecking false\n"), KnownHosts::Accept));
        assert!(matches!(policy_from_config(""), KnownHosts::Strict));
    }
}
