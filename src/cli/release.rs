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
}

pub fn run(args: ReleaseArgs, app_dir: Option<&Path>) -> Result<ExitCode> {
    let app = match app_dir {
        Some(d) => App::load(d)?,
        None => App::find(&std::env::current_dir().map_err(|e| Error::Failed(format!("no current directory: {e}")))?)?,
    };
    let path = args.path.clone().unwrap_or_else(|| app.root.join("_release"));
    let opts = Options { tar: args.tar, overwrite: args.overwrite, write_cookie: args.write_cookie };
    let built = build(&app, &path, opts).map_err(|e| match e {
        ReleaseError::Exists(_) | ReleaseError::NotSource(_) => Error::Usage(e.to_string()),
        other => Error::Failed(other.to_string()),
    })?;
    println!("* release {} {} at {}", app.config.name, app.config.version, built.path.display());
    if let Some(t) = built.tarball {
        let size = std::fs::metadata(&t).map(|m| m.len()).unwrap_or(0);
        println!("* tarball {} ({:.1} MB)", t.display(), size as f64 / 1e6);
    }
    println!("\nRun it with:\n\n    {}/bin/{} start\n", built.path.display(), app.config.name);
    Ok(ExitCode::SUCCESS)
}
