//! What every mode resolves before it runs, in one place: the cookie, a
//! node's address, the tmp directory, the tick time and the script limits
//! (from flags, the environment and `skitter.toml`, in that order).

use std::path::PathBuf;
use std::time::Duration;

use colored::Colorize;

use crate::net::cookie::{self, Cookie};
use crate::runtime::dataflow::deadline;
use crate::runtime::link;
use crate::runtime::node::{alive, node_file_path, read_node_file, NodeRecord};
use crate::script::App;
use crate::settings::checkpoint::{self, CheckpointSettings};
use crate::settings::limits::{self, ScriptLimits};
use crate::settings::node::{self as settings, NodeSettings};
use crate::settings::restart::{self, RestartPolicy};
use crate::{Error, Result};

/// The cookie: `-c` (with a warning), else SKITTER_COOKIE, else a
/// release's `releases/COOKIE` when there is one, else the cookie file
/// `~/.skitter.cookie` (made on first use, mode 0600).
pub fn cookie(flag: Option<&str>) -> Result<Cookie> {
    cookie_for(flag, App::current_release().and_then(|r| r.ok()).as_ref())
}

/// [`cookie`] for a given app (a release may have its own cookie file).
pub fn cookie_for(flag: Option<&str>, app: Option<&App>) -> Result<Cookie> {
    if let Some(c) = flag {
        eprintln!("{} a cookie given with -c shows in `ps`; prefer SKITTER_COOKIE or the cookie file", "warning:".yellow().bold());
        if c.trim().is_empty() {
            return Err(Error::Usage("the cookie given with -c is empty".into()));
        }
        return Cookie::new(c, "-c").map_err(|e| Error::Usage(e.to_string()));
    }
    if let Some(c) = cookie::from_environment() {
        // Set but empty is a mistake (a variable that did not expand, a
        // secret that was not mounted): falling back to another cookie
        // would join or refuse the wrong cluster without saying why.
        if c.trim().is_empty() {
            return Err(Error::Usage(
                "SKITTER_COOKIE is set but empty: give it the cluster's cookie, or unset it to use the cookie file".into(),
            ));
        }
        return Cookie::new(c, "SKITTER_COOKIE").map_err(|e| Error::Usage(e.to_string()));
    }
    if let Some(app) = app.filter(|a| a.release) {
        let path = app.root.join(crate::release::build::COOKIE_FILE);
        if path.exists() {
            return cookie::read_file(&path).map_err(|e| Error::Usage(e.to_string()));
        }
    }
    let path =
        cookie::default_file().ok_or_else(|| Error::Usage("no cookie: set SKITTER_COOKIE or HOME (for ~/.skitter.cookie)".into()))?;
    cookie::read_or_create(&path).map_err(|e| Error::Usage(e.to_string()))
}

/// Where a node's log file goes: the app's `logs/`, else (outside an app)
/// `logs/` in the user's state directory, never the current directory;
/// `None` (no file) when there is neither.
pub fn log_dir(app: Option<&App>) -> Option<PathBuf> {
    match app {
        Some(a) => Some(a.logs_dir()),
        None => crate::script::app::user_state_dir().map(|d| d.join("logs")),
    }
}

/// Where node files and daemon output go: SKITTER_TMP, else the app's
/// `tmp/`, else (outside an app) `tmp/` in the user's state directory, so
/// that nodes started anywhere find each other and nothing is left in the
/// current directory; `./tmp` only when there is no home.
pub fn tmp_dir(app: Option<&App>) -> PathBuf {
    match (std::env::var_os("SKITTER_TMP"), app) {
        (Some(dir), _) if !dir.is_empty() => PathBuf::from(dir),
        (_, Some(app)) => app.tmp_dir(),
        _ => crate::script::app::user_state_dir().map(|d| d.join("tmp")).unwrap_or_else(|| PathBuf::from("tmp")),
    }
}

/// `name@host:port` or `host:port` -> `host:port`.
pub fn peer_addr(spec: &str) -> Result<String> {
    let addr = spec.rsplit_once('@').map(|(_, a)| a).unwrap_or(spec);
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(addr.to_string()),
        _ => Err(Error::Usage(format!("`{spec}` is not a node address: write name@host:port or host:port"))),
    }
}

/// The address of a node given as `name@host:port`, `host:port`, or a
/// name (`name` or `name@host`) that a running node recorded in `tmp/`.
pub fn node_addr(spec: &str, app: Option<&App>, default_name: &str) -> Result<String> {
    let after_at = spec.rsplit_once('@').map(|(_, a)| a).unwrap_or(spec);
    if after_at.contains(':') {
        return peer_addr(spec);
    }
    let name = crate::runtime::node::node_name(Some(spec).filter(|s| !s.is_empty()), default_name);
    Ok(record(app, &name)?.addr)
}

pub fn record(app: Option<&App>, node: &str) -> Result<NodeRecord> {
    let path = node_file_path(&tmp_dir(app), node);
    match read_node_file(&path) {
        Some(r) if alive(r.pid) => Ok(r),
        _ => Err(Error::Failed(format!("no node named {node} is running (no live record in {})", path.display()))),
    }
}

/// The pid of the running node `node`, if it runs.
pub fn pid_of(app: Option<&App>, node: &str) -> Option<u32> {
    record(app, node).ok().map(|r| r.pid)
}

/// The tick time (see [`link::DEFAULT_TICK`]): `--tick-time`, else
/// SKITTER_TICK_TIME, else `tick_time` in skitter.toml; applied to this process.
pub fn tick_time(flag: Option<f64>, app: Option<&App>) -> Result<Duration> {
    let (secs, from) = match (flag, std::env::var("SKITTER_TICK_TIME").ok().filter(|v| !v.trim().is_empty())) {
        (Some(s), _) => (s, "--tick-time".to_string()),
        (None, Some(v)) => (
            v.trim().parse().map_err(|_| Error::Usage(format!("SKITTER_TICK_TIME={v:?}: give a number of seconds")))?,
            "SKITTER_TICK_TIME".into(),
        ),
        (None, None) => match app.and_then(|a| a.config.tick_time) {
            Some(s) => (s, "tick_time in skitter.toml".into()),
            None => (link::DEFAULT_TICK.as_secs_f64(), String::new()),
        },
    };
    if !secs.is_finite() || secs < link::MIN_TICK.as_secs_f64() || secs > 3600.0 {
        return Err(Error::Usage(format!("{from}: a tick time of {secs} s; give {} to 3600 seconds", link::MIN_TICK.as_secs())));
    }
    let tick = Duration::from_secs_f64(secs);
    link::set_tick(tick);
    Ok(tick)
}

/// The script limits: `[limits]` in skitter.toml, overridden by the
/// environment; applied to this process's engines.
pub fn script_limits(app: Option<&App>) -> Result<ScriptLimits> {
    let base = app.and_then(|a| a.config.limits).unwrap_or_default();
    let limits = base.with_env().map_err(Error::Usage)?;
    limits::set(limits);
    Ok(limits)
}

/// Worker slots: `--slots`, else SKITTER_SLOTS, else `slots` in the
/// configuration, else one per core.
pub fn slots(flag: Option<u16>, app: Option<&App>) -> Result<usize> {
    let from_env = match std::env::var("SKITTER_SLOTS").ok().filter(|v| !v.trim().is_empty()) {
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Some(n),
            _ => return Err(Error::Usage(format!("SKITTER_SLOTS={v:?}: give a number of slots, at least 1"))),
        },
        None => None,
    };
    Ok(flag
        .map(usize::from)
        .or(from_env)
        .or(app.and_then(|a| a.config.slots))
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)))
}

/// The log file's level: SKITTER_LOG, else `log_level` in the configuration, else info.
pub fn log_level(app: Option<&App>) -> String {
    std::env::var("SKITTER_LOG")
        .ok()
        .filter(|l| !l.is_empty())
        .or_else(|| app.and_then(|a| a.config.log_level.clone()))
        .unwrap_or_else(|| "info".into())
}

/// The batch deadline (see [`deadline`]): SKITTER_BATCH_DEADLINE_MS, else
/// `batch_deadline_ms` in skitter.toml; applied to this process.
pub fn batch_deadline(app: Option<&App>) -> Result<Duration> {
    let (ms, from) = match std::env::var("SKITTER_BATCH_DEADLINE_MS").ok().filter(|v| !v.trim().is_empty()) {
        Some(v) => (
            v.trim().parse().map_err(|_| Error::Usage(format!("SKITTER_BATCH_DEADLINE_MS={v:?}: give a number of milliseconds")))?,
            "SKITTER_BATCH_DEADLINE_MS",
        ),
        None => match app.and_then(|a| a.config.batch_deadline_ms) {
            Some(ms) => (ms, "batch_deadline_ms in skitter.toml"),
            None => (deadline::DEFAULT.as_secs_f64() * 1000.0, "the default"),
        },
    };
    let max = deadline::MAX.as_secs_f64() * 1000.0;
    if !ms.is_finite() || !(0.0..=max).contains(&ms) {
        return Err(Error::Usage(format!("{from}: a batch deadline of {ms} ms; give 0 to {max} milliseconds")));
    }
    let d = Duration::from_secs_f64(ms / 1000.0);
    deadline::set(d);
    Ok(d)
}

/// Checkpoint settings: SKITTER_CHECKPOINT_INTERVAL, SKITTER_CHECKPOINT_DIR
/// and SKITTER_CHECKPOINTS_KEPT, else skitter.toml's `checkpoint_interval`,
/// `checkpoint_dir` (relative to the app) and `checkpoints_kept`; the
/// directory defaults to the app's tmp/checkpoints.
pub fn checkpoint_settings(app: Option<&App>) -> Result<CheckpointSettings> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let interval = match var("SKITTER_CHECKPOINT_INTERVAL") {
        Some(v) => {
            let s: f64 =
                v.trim().parse().map_err(|_| Error::Usage(format!("SKITTER_CHECKPOINT_INTERVAL={v:?}: give a number of seconds")))?;
            Some(checkpoint::interval(s).map_err(|e| Error::Usage(format!("SKITTER_CHECKPOINT_INTERVAL: {e}")))?)
        }
        None => match app.and_then(|a| a.config.checkpoint_interval) {
            Some(s) => Some(checkpoint::interval(s).map_err(|e| Error::Usage(format!("checkpoint_interval in skitter.toml: {e}")))?),
            None => None,
        },
    };
    let dir = var("SKITTER_CHECKPOINT_DIR")
        .map(PathBuf::from)
        .or_else(|| app.and_then(|a| a.config.checkpoint_dir.as_ref().map(|d| a.root.join(d))))
        .or_else(|| app.map(|a| a.root.join("tmp").join("checkpoints")));
    let kept = match var("SKITTER_CHECKPOINTS_KEPT") {
        Some(v) => Some(
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| Error::Usage(format!("SKITTER_CHECKPOINTS_KEPT={v:?}: give a number of checkpoints, 1 or more")))?,
        ),
        None => match app.and_then(|a| a.config.checkpoints_kept) {
            Some(0) => return Err(Error::Usage("checkpoints_kept in skitter.toml: keep 1 or more".into())),
            other => other,
        },
    };
    let settings = CheckpointSettings { interval, dir, kept };
    checkpoint::set(settings.clone());
    Ok(settings)
}

/// How failed workflows restart: SKITTER_RESTART_ATTEMPTS,
/// SKITTER_RESTART_DELAY and SKITTER_RESTART_WITHIN, else skitter.toml's
/// `restart_attempts`, `restart_delay` and `restart_within`.
pub fn restart_settings(app: Option<&App>) -> Result<RestartPolicy> {
    let setting = |var: &str, key: &str, from_app: Option<f64>| -> Result<Option<(f64, String)>> {
        match std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
            Some(v) => {
                let n = v.trim().parse::<f64>().map_err(|_| Error::Usage(format!("{var}={v:?}: give a number")))?;
                Ok(Some((n, var.to_string())))
            }
            None => Ok(from_app.map(|n| (n, format!("{key} in skitter.toml")))),
        }
    };
    let config = app.map(|a| &a.config);
    let mut policy = RestartPolicy::default();
    if let Some((n, from)) = setting("SKITTER_RESTART_ATTEMPTS", "restart_attempts", config.and_then(|c| c.restart_attempts))? {
        policy.attempts = restart::attempts(n).map_err(|e| Error::Usage(format!("{from}: {e}")))?;
    }
    if let Some((s, from)) = setting("SKITTER_RESTART_DELAY", "restart_delay", config.and_then(|c| c.restart_delay))? {
        policy.delay = restart::seconds("a restart delay", s).map_err(|e| Error::Usage(format!("{from}: {e}")))?;
    }
    if let Some((s, from)) = setting("SKITTER_RESTART_WITHIN", "restart_within", config.and_then(|c| c.restart_within))? {
        policy.within = restart::seconds("a restart window", s).map_err(|e| Error::Usage(format!("{from}: {e}")))?;
    }
    restart::set(policy);
    Ok(policy)
}

/// Resolves and applies what every node needs before it starts, and
/// records it for `runtime_info()`.
pub fn node_settings(tick: Option<f64>, slots: Option<usize>, app: Option<&App>) -> Result<()> {
    checkpoint_settings(app)?;
    restart_settings(app)?;
    let tick = tick_time(tick, app)?;
    let limits = script_limits(app)?;
    let batch_deadline = batch_deadline(app)?;
    settings::set(NodeSettings {
        env: app
            .map(|a| a.config.env.clone())
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| crate::script::app::env_from_var().ok().flatten().unwrap_or_else(|| crate::script::app::DEFAULT_ENV.into())),
        app: app.map(|a| a.config.name.clone()),
        app_version: app.map(|a| a.config.version.clone()),
        slots,
        tick_time: tick.as_secs_f64(),
        log_level: log_level(app),
        batch_deadline_ms: batch_deadline.as_secs_f64() * 1000.0,
        limits,
    });
    Ok(())
}
