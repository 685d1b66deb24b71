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
    pub limits: Option<super::limits::ScriptLimits>,
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
        let path = root.join("releases").join(&vsn).join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| AppError::Io { path: path.clone(), source })?;
        let config: Config = toml::from_str(&text).map_err(|e| AppError::BadConfig { path: path.clone(), reason: e.to_string() })?;
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
        let config: Config = toml::from_str(&text).map_err(|e| AppError::BadConfig { path: path.clone(), reason: e.to_string() })?;
        if config.name.is_empty() || !config.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(AppError::BadConfig { path, reason: format!("name `{}` must be letters, digits, `_` or `-`", config.name) });
        }
        if let Some(mode) = &config.mode {
            if !["local", "master", "worker"].contains(&mode.as_str()) {
                return Err(AppError::BadConfig { path, reason: format!("mode `{mode}` must be local, master or worker") });
            }
        }
        if config.slots == Some(0) {
            return Err(AppError::BadConfig { path, reason: "slots must be at least 1".into() });
        }
        Ok(App { root, config, release: false })
    }

    pub fn priv_dir(&self) -> PathBuf {
        self.root.join("priv")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        match std::env::var_os("SKITTER_TMP") {
            Some(dir) => PathBuf::from(dir),
            None => self.root.join("tmp"),
        }
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
