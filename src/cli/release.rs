//! `skitter release [--path DIR] [--tar] [--overwrite]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::release::build::{build, Options, ReleaseError};
use crate::script::App;
use crate::{Error, Result};

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// Where to build the release (default: _release/ in the app).
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Also write <app>-<version>.tar.gz of the release.
    #[arg(long)]
    pub tar: bool,
    /// Replace an existing release (earlier versions in releases/ are kept).
    #[arg(long)]
    pub overwrite: bool,
    /// Write a cookie file (releases/COOKIE, mode 0600) into the release
    /// directory: SKITTER_COOKIE, or a random one. Never in the tarball.
    #[arg(long)]
    pub write_cookie: bool,
    /// The environment to build for: its [env.NAME] settings, recorded in
    /// the release's node.toml (default: SKITTER_ENV, else dev).
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
}

pub fn run(args: ReleaseArgs, app_dir: Option<&Path>) -> Result<ExitCode> {
    let app = match app_dir {
        Some(d) => App::load(d)?,
        None => App::find(&std::env::current_dir().map_err(|e| Error::Failed(format!("no current directory: {e}")))?)?,
    };
    let path = args.path.clone().unwrap_or_else(|| app.root.join("_release"));
    if let Some(env) = &args.env {
        if env.is_empty() || !env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(Error::Usage(format!("--env {env:?}: an environment's name is letters, digits, `_` or `-`")));
        }
    }
    let env = args.env.clone().unwrap_or_else(|| app.config.env.clone());
    let text = std::fs::read_to_string(app.root.join(crate::script::app::CONFIG_FILE)).unwrap_or_default();
    let known = crate::script::app::Config::environments(&text);
    if !known.contains(&env) && !["dev", "test", "prod"].contains(&env.as_str()) {
        return Err(Error::Usage(format!(
            "--env {env}: skitter.toml has no [env.{env}] (it has: {})",
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        )));
    }
    let opts = Options { tar: args.tar, overwrite: args.overwrite, write_cookie: args.write_cookie, env: Some(env.clone()) };
    let built = build(&app, &path, opts).map_err(|e| match e {
        ReleaseError::Exists(_) | ReleaseError::NotSource(_) => Error::Usage(e.to_string()),
        other => Error::Failed(other.to_string()),
    })?;
    println!("* release {} {} ({env}) at {}", app.config.name, app.config.version, built.path.display());
    if let Some(t) = built.tarball {
        let size = std::fs::metadata(&t).map(|m| m.len()).unwrap_or(0);
        println!("* tarball {} ({:.1} MB)", t.display(), size as f64 / 1e6);
    }
    println!("\nRun it with:\n\n    {}/bin/{} start\n", built.path.display(), app.config.name);
    Ok(ExitCode::SUCCESS)
}
