//! Apps: a directory with `skitter.toml`, scripts in `lib/` and data in `priv/`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The name of an app's configuration file; finding it marks an app's root.
pub const CONFIG_FILE: &str = "skitter.toml";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("no skitter app found in {0} or any directory above it (looked for {CONFIG_FILE}; create one with `skitter new PATH`, or pass --app DIR)")]
    NotFound(PathBuf),
    #[error("{path}: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// `skitter.toml`, as written by users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub name: String,
    #[serde(default = "default_version")]
    pub version: String,
    /// A Rhai expression returning the workflow to deploy at start.
    pub deploy: Option<String>,
    /// Worker slots in local mode (default: one per core).
    pub slots: Option<usize>,
    /// How a release's `bin/<app>` runs the node: local, master or worker.
    pub mode: Option<String>,
    /// Seconds of silence after which a peer counts as gone (default 10).
    pub tick_time: Option<f64>,
    /// Limits for script code.
    pub limits: Option<crate::settings::limits::ScriptLimits>,
    /// The level of the node's log file: error, warn, info, debug, trace or off.
    pub log_level: Option<String>,
    /// Milliseconds a record may wait for a batch to fill at each hop, and
    /// lines in a file sink's buffer (default 2).
    pub batch_deadline_ms: Option<f64>,
    /// Seconds between checkpoints (0: off; default: 1 for a workflow with
    /// an endless source, off otherwise).
    pub checkpoint_interval: Option<f64>,
    /// Where checkpoints are kept (default: the app's tmp/checkpoints).
    pub checkpoint_dir: Option<PathBuf>,
    /// Completed checkpoints kept per workflow (default 3).
    pub checkpoints_kept: Option<usize>,
    /// How often a failed workflow with checkpoints restarts (default 10
    /// within `restart_within`; 0: never).
    pub restart_attempts: Option<f64>,
    /// Seconds before the first restart (default 0.2; doubled for each next).
    pub restart_delay: Option<f64>,
    /// Seconds in which `restart_attempts` are counted (default 600).
    pub restart_within: Option<f64>,
    /// The environment these settings are for (dev, test, prod, ...).
    #[serde(skip)]
    pub env: String,
}

/// The user's state directory for skitter: `$XDG_STATE_HOME/skitter`, else
/// `~/.local/state/skitter`; `None` when neither is known. Shell history,
/// and the logs of nodes that run outside an app, live there.
pub fn user_state_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("skitter"))
}

/// The environment chosen when SKITTER_ENV (and a release's node.toml) say nothing.
pub const DEFAULT_ENV: &str = "dev";

/// A release's node arguments (skitter's `vm.args`): `releases/<vsn>/node.toml`.
pub const NODE_ARGS_FILE: &str = "node.toml";

/// Keys an `[env.NAME]` table (or node.toml) may not set: they name the app, not a node.
const FIXED_KEYS: &[&str] = &["name", "version", "env"];

/// SKITTER_ENV, when set: an environment's name.
pub fn env_from_var() -> Result<Option<String>, String> {
    match std::env::var("SKITTER_ENV") {
        Ok(v) if !v.trim().is_empty() => {
            let v = v.trim();
            if v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                Ok(Some(v.to_string()))
            } else {
                Err(format!("SKITTER_ENV={v:?}: an environment's name is letters, digits, `_` or `-`"))
            }
        }
        _ => Ok(None),
    }
}

impl Config {
    /// `skitter.toml`'s text with the table `[env.<env>]` laid over the
    /// common settings, then `node` (a release's node arguments) over both.
    pub fn parse(text: &str, env: &str, node: Option<&toml::Table>) -> Result<Config, String> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let envs = match table.remove("env") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err("`env` must be tables: [env.dev], [env.prod], ...".into()),
        };
        for (name, value) in &envs {
            let toml::Value::Table(over) = value else {
                return Err(format!("env.{name} must be a table ([env.{name}])"));
            };
            if let Some(k) = over.keys().find(|k| FIXED_KEYS.contains(&k.as_str())) {
                return Err(format!("[env.{name}] may not set `{k}`: it is the same in every environment"));
            }
        }
        if let Some(toml::Value::Table(over)) = envs.get(env) {
            merge(&mut table, over);
        }
        if let Some(node) = node {
            let mut node = node.clone();
            node.remove("env");
            if let Some(k) = node.keys().find(|k| FIXED_KEYS.contains(&k.as_str())) {
                return Err(format!("{NODE_ARGS_FILE} may not set `{k}`"));
            }
            merge(&mut table, &node);
        }
        let mut config: Config = table.try_into().map_err(|e: toml::de::Error| e.to_string())?;
        config.env = env.to_string();
        Ok(config)
    }

    /// The environments `[env.NAME]` defines.
    pub fn environments(text: &str) -> Vec<String> {
        let table: toml::Table = toml::from_str(text).unwrap_or_default();
        match table.get("env") {
            Some(toml::Value::Table(t)) => t.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

/// Lays `over` onto `base`, table into table.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

fn default_version() -> String {
    "0.1.0".into()
}

#[derive(Debug, Clone)]
pub struct App {
    pub root: PathBuf,
    pub config: Config,
    /// Whether this is a release (built by `skitter release`) rather than
    /// an app's source directory.
    pub release: bool,
}

/// The file naming a release's current version.
pub const START_DATA: &str = "releases/start_data";

/// The file naming the version that runs, in a deploy directory (beside
/// its `releases/<version>` directories).
pub const CURRENT_FILE: &str = "current";

/// What every configuration must hold, whatever its environment.
fn check(config: &Config, path: &Path) -> Result<(), AppError> {
    if config.name.is_empty() || !config.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(AppError::BadConfig {
            path: path.to_path_buf(),
            reason: format!("name `{}` must be letters, digits, `_` or `-`", config.name),
        });
    }
    if let Some(mode) = &config.mode {
        if !["local", "master", "worker"].contains(&mode.as_str()) {
            return Err(AppError::BadConfig { path: path.to_path_buf(), reason: format!("mode `{mode}` must be local, master or worker") });
        }
    }
    if config.slots == Some(0) {
        return Err(AppError::BadConfig { path: path.to_path_buf(), reason: "slots must be at least 1".into() });
    }
    if let Some(level) = &config.log_level {
        if !["error", "warn", "info", "debug", "trace", "off"].contains(&level.as_str()) {
            return Err(AppError::BadConfig {
                path: path.to_path_buf(),
                reason: format!("log_level `{level}` must be error, warn, info, debug, trace or off"),
            });
        }
    }
    Ok(())
}

impl App {
    /// The release this program belongs to: SKITTER_RELEASE_ROOT, or the
    /// release whose `bin/` holds this executable.
    pub fn current_release() -> Option<Result<App, AppError>> {
        if let Some(root) = std::env::var_os("SKITTER_RELEASE_ROOT").filter(|r| !r.is_empty()) {
            return Some(App::load_release(Path::new(&root)));
        }
        let exe = std::env::current_exe().ok()?;
        let bin = exe.parent()?;
        let root = bin.parent()?;
        (bin.file_name()? == "bin" && root.join(START_DATA).is_file()).then(|| App::load_release(root))
    }

    /// A release at `root`: its current version's configuration, its lib/ and priv/.
    pub fn load_release(root: &Path) -> Result<App, AppError> {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let start = root.join(START_DATA);
        let vsn = std::fs::read_to_string(&start).map_err(|source| AppError::Io { path: start.clone(), source })?;
        let vsn = vsn.split_whitespace().last().unwrap_or_default().to_string();
        let dir = root.join("releases").join(&vsn);
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| AppError::Io { path: path.clone(), source })?;
        // The node arguments: edited on the host, overridden by its environment.
        let args_path = dir.join(NODE_ARGS_FILE);
        let node: Option<toml::Table> = match std::fs::read_to_string(&args_path) {
            Ok(t) => Some(toml::from_str(&t).map_err(|e| AppError::BadConfig { path: args_path.clone(), reason: e.to_string() })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(AppError::Io { path: args_path, source }),
        };
        let recorded = node.as_ref().and_then(|n| n.get("env")).and_then(|e| e.as_str()).map(str::to_string);
        let env = env_from_var()
            .map_err(|reason| AppError::BadConfig { path: args_path.clone(), reason })?
            .or(recorded)
            .unwrap_or_else(|| DEFAULT_ENV.to_string());
        let config = Config::parse(&text, &env, node.as_ref()).map_err(|reason| AppError::BadConfig { path: path.clone(), reason })?;
        check(&config, &path)?;
        Ok(App { root, config, release: true })
    }

    /// The app whose root is `start` or the nearest directory above it.
    pub fn find(start: &Path) -> Result<App, AppError> {
        let start = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
        let mut dir = Some(start.as_path());
        while let Some(d) = dir {
            if d.join(CONFIG_FILE).is_file() {
                return App::load(d);
            }
            dir = d.parent();
        }
        Err(AppError::NotFound(start))
    }

    /// The app at exactly `root`.
    pub fn load(root: &Path) -> Result<App, AppError> {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let path = root.join(CONFIG_FILE);
        if !path.is_file() {
            return Err(AppError::NotFound(root));
        }
        let text = std::fs::read_to_string(&path).map_err(|source| AppError::Io { path: path.clone(), source })?;
        let env = env_from_var().map_err(|reason| AppError::BadConfig { path: path.clone(), reason })?;
        let config = Config::parse(&text, env.as_deref().unwrap_or(DEFAULT_ENV), None)
            .map_err(|reason| AppError::BadConfig { path: path.clone(), reason })?;
        check(&config, &path)?;
        Ok(App { root, config, release: false })
    }

    pub fn priv_dir(&self) -> PathBuf {
        self.root.join("priv")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        match std::env::var_os("SKITTER_TMP") {
            Some(dir) => PathBuf::from(dir),
            None => self.home().join("tmp"),
        }
    }

    /// Where the node's log files go.
    pub fn logs_dir(&self) -> PathBuf {
        self.home().join("logs")
    }

    /// The deploy directory holding this release among its versions
    /// (`DIR/releases/<vsn>`, with `DIR/current`), if it is installed in one.
    pub fn deploy_dir(&self) -> Option<PathBuf> {
        if !self.release {
            return None;
        }
        let releases = self.root.parent()?;
        let dir = releases.parent()?;
        (releases.file_name()? == "releases" && dir.join(CURRENT_FILE).is_file()).then(|| dir.to_path_buf())
    }

    /// Where node records and logs live: a deploy directory's, shared by
    /// its versions (so that one version finds the node another started),
    /// else the app's or release's own.
    fn home(&self) -> PathBuf {
        self.deploy_dir().unwrap_or_else(|| self.root.clone())
    }

    /// `lib/*.rhai`, in name order.
    pub fn lib_files(&self) -> Result<Vec<PathBuf>, AppError> {
        let lib = self.root.join("lib");
        let entries = match std::fs::read_dir(&lib) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(AppError::Io { path: lib, source }),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rhai") && p.is_file())
            .collect();
        files.sort();
        Ok(files)
    }

    /// A path relative to the app root, for messages.
    pub fn display_path(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).display().to_string()
    }
}
