//! `skitter release`: one self-contained directory (and tarball) that runs
//! on a host with nothing installed. Built in a staging directory and moved
//! into place, so a failed build leaves no half-written release.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::net::cookie;
use crate::script::app::{App, START_DATA};
use crate::script::engine::stdout_output;
use crate::script::session::compile_file;
use crate::script::{new_engine, EngineEnv};

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{0} exists: pass --overwrite to replace it")]
    Exists(PathBuf),
    #[error("{0}")]
    Script(String),
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{0} is itself a release: build releases from an app's source")]
    NotSource(PathBuf),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ReleaseError + '_ {
    move |e| ReleaseError::Io { path: path.to_path_buf(), reason: e.to_string() }
}

pub struct Built {
    pub path: PathBuf,
    pub tarball: Option<PathBuf>,
}

/// How a release is built.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Also write `<app>-<version>.tar.gz` (never with a cookie in it).
    pub tar: bool,
    pub overwrite: bool,
    /// Write a cookie file into the release directory (kept out of the tarball).
    pub write_cookie: bool,
    /// The environment the release is for (recorded in its node.toml).
    pub env: Option<String>,
}

/// Builds the release of `app` at `path`.
pub fn build(app: &App, path: &Path, opts: Options) -> Result<Built, ReleaseError> {
    let Options { tar, overwrite, write_cookie, env } = opts;
    if app.release {
        return Err(ReleaseError::NotSource(app.root.clone()));
    }
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let is_release = path.join(START_DATA).is_file();
    let occupied = path.exists() && std::fs::read_dir(&path).map(|mut d| d.next().is_some()).unwrap_or(true);
    if occupied && !overwrite {
        return Err(ReleaseError::Exists(path));
    }
    // Every script compiles, or nothing is written.
    let engine = new_engine(&EngineEnv::new(Some(app.priv_dir()), stdout_output()));
    let files = app.lib_files().map_err(|e| ReleaseError::Script(e.to_string()))?;
    for file in &files {
        compile_file(&engine, file, &app.display_path(file)).map_err(|e| ReleaseError::Script(e.to_string()))?;
    }
    let name = &app.config.name;
    let vsn = &app.config.version;
    let parent = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let staging =
        parent.join(format!(".{}.staging-{}", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(), std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let env = env.unwrap_or_else(|| app.config.env.clone());
    let result = write_release(app, &path, &staging, &files, is_release, write_cookie, &env);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    if path.exists() {
        std::fs::remove_dir_all(&path).map_err(io(&path))?;
    }
    std::fs::rename(&staging, &path).map_err(io(&path))?;
    let tarball = if tar {
        let file = path.join(format!("{name}-{vsn}.tar.gz"));
        write_tarball(&path, &file)?;
        Some(file)
    } else {
        None
    };
    Ok(Built { path, tarball })
}

fn write_release(
    app: &App,
    old: &Path,
    dir: &Path,
    files: &[PathBuf],
    old_is_release: bool,
    write_cookie: bool,
    env: &str,
) -> Result<(), ReleaseError> {
    let name = &app.config.name;
    let vsn = &app.config.version;
    for sub in ["bin", "lib", "priv", "releases"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(io(dir))?;
    }
    // The skitter binary itself: the deploy tool and every mode.
    let exe = std::env::current_exe().map_err(|e| ReleaseError::Io { path: "skitter".into(), reason: e.to_string() })?;
    let bin = dir.join("bin/skitter");
    std::fs::copy(&exe, &bin).map_err(io(&bin))?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).map_err(io(&bin))?;
    let mode = app.config.mode.as_deref().unwrap_or("local");
    let script = include_str!("templates/app.sh").replace("{{name}}", name).replace("{{vsn}}", vsn).replace("{{mode}}", mode);
    let script_path = dir.join("bin").join(name);
    std::fs::write(&script_path, script).map_err(io(&script_path))?;
    std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o755)).map_err(io(&script_path))?;
    for file in files {
        let target = dir.join("lib").join(file.file_name().expect("a lib file has a name"));
        std::fs::copy(file, &target).map_err(io(&target))?;
    }
    copy_tree(&app.priv_dir(), &dir.join("priv"))?;
    // Earlier versions stay side by side; the cookie stays stable.
    if old_is_release {
        for entry in std::fs::read_dir(old.join("releases")).map_err(io(old))?.flatten() {
            let p = entry.path();
            if p.is_dir() {
                copy_tree(&p, &dir.join("releases").join(entry.file_name()))?;
            }
        }
    }
    let release = dir.join("releases").join(vsn);
    std::fs::create_dir_all(&release).map_err(io(&release))?;
    let config = app.root.join(crate::script::app::CONFIG_FILE);
    std::fs::copy(&config, release.join("skitter.toml")).map_err(io(&config))?;
    let env_sh = release.join("env.sh");
    if !env_sh.exists() {
        std::fs::write(&env_sh, include_str!("templates/env.sh").replace("{{name}}", name)).map_err(io(&env_sh))?;
    }
    let node_args = release.join(crate::script::app::NODE_ARGS_FILE);
    std::fs::write(&node_args, node_args_text(app, env)?).map_err(io(&node_args))?;
    // A cookie file only when asked for (or already there): the cookie
    // otherwise comes from the hosts (SKITTER_COOKIE, ~/.skitter.cookie).
    let kept = old_is_release.then(|| cookie::read_file(&old.join(COOKIE_FILE)).ok()).flatten();
    let cookie_value = match cookie::from_environment().filter(|c| !c.trim().is_empty()) {
        Some(c) if write_cookie => Some(cookie::Cookie::new(c, "SKITTER_COOKIE").map_err(|e| ReleaseError::Script(e.to_string()))?),
        _ => kept.or_else(|| write_cookie.then(cookie::Cookie::random)),
    };
    if let Some(value) = cookie_value {
        let cookie_path = dir.join(COOKIE_FILE);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&cookie_path).map_err(io(&cookie_path))?;
        f.write_all(value.expose().as_bytes()).map_err(io(&cookie_path))?;
    }
    let start_data = dir.join(START_DATA);
    std::fs::write(&start_data, format!("{vsn}\n")).map_err(io(&start_data))?;
    Ok(())
}

/// The release's node arguments: the environment it was built for, and
/// the runtime settings, commented out with the values in force for that
/// environment. Uncommented on a host, a setting there beats skitter.toml;
/// the host's environment variable (named on the right) beats both.
fn node_args_text(app: &App, env: &str) -> Result<String, ReleaseError> {
    let text = std::fs::read_to_string(app.root.join(crate::script::app::CONFIG_FILE)).map_err(io(&app.root))?;
    let c = crate::script::app::Config::parse(&text, env, None).map_err(ReleaseError::Script)?;
    let limits = c.limits.unwrap_or_default();
    let line = |key: &str, value: String, var: &str| format!("# {key} = {value}    # {var}\n");
    let mut out = format!(
        "# Node arguments of {} {} (skitter's vm.args). Uncomment a setting to\n\
         # change it on this host; an environment variable of the host (named on\n\
         # the right) beats it. The values shown are those of [env.{env}].\n\
         env = {env:?}    # SKITTER_ENV\n",
        c.name, c.version
    );
    out += &line("slots", c.slots.map(|s| s.to_string()).unwrap_or_else(|| "4  (default: one per core)".into()), "SKITTER_SLOTS");
    out += &line("tick_time", c.tick_time.unwrap_or(crate::settings::tick::DEFAULT_TICK.as_secs_f64()).to_string(), "SKITTER_TICK_TIME");
    out += &line("log_level", format!("{:?}", c.log_level.as_deref().unwrap_or("info")), "SKITTER_LOG");
    let deadline = c.batch_deadline_ms.unwrap_or(crate::settings::deadline::DEFAULT.as_secs_f64() * 1000.0);
    out += &line("batch_deadline_ms", deadline.to_string(), "SKITTER_BATCH_DEADLINE_MS");
    out += &format!(
        "\n# [limits]\n# max_memory_mb = {}    # SKITTER_MAX_MEMORY_MB (0: three quarters of the host's memory)\n\
         # max_call_depth = {}    # SKITTER_MAX_CALL_DEPTH\n",
        limits.max_memory_mb, limits.max_call_depth
    );
    Ok(out)
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), ReleaseError> {
    if !from.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))?.flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(io(&src))?;
        }
    }
    Ok(())
}

/// A release's cookie file: in its directory when asked for, never in its tarball.
pub const COOKIE_FILE: &str = "releases/COOKIE";

/// `<app>-<vsn>.tar.gz` of the release's contents (without itself, and
/// without a cookie: a tarball is copied around, to hosts and stores).
pub fn write_tarball(dir: &Path, file: &Path) -> Result<(), ReleaseError> {
    let out = std::fs::File::create(file).map_err(io(file))?;
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    for entry in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let p = entry.path();
        let name = entry.file_name();
        // Not itself, nor what a node made while running from here.
        let made_here = ["tmp", "logs", crate::release::install::CHECKSUM_FILE].iter().any(|n| name == *n)
            || name.to_string_lossy().ends_with(".tar.gz");
        if p == file || made_here {
            continue;
        }
        let result = if p.is_dir() { append_dir(&mut tar, dir, &p) } else { tar.append_path_with_name(&p, &name) };
        result.map_err(io(&p))?;
    }
    tar.into_inner().and_then(|gz| gz.finish()).map_err(io(file))?;
    Ok(())
}

/// Adds a directory's tree, leaving out the cookie file.
fn append_dir<W: std::io::Write>(tar: &mut tar::Builder<W>, root: &Path, dir: &Path) -> std::io::Result<()> {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    tar.append_dir(rel, dir)?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let rel = p.strip_prefix(root).unwrap_or(&p);
        if rel == Path::new(COOKIE_FILE) {
            continue;
        }
        if p.is_dir() {
            append_dir(tar, root, &p)?;
        } else {
            tar.append_path_with_name(&p, rel)?;
        }
    }
    Ok(())
}
