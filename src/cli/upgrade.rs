//! `skitter upgrade TARBALL [HOSTS...]`: moves a deployed cluster to a new
//! release (its deploy's master does it; see `deploy::upgrade`), and
//! `skitter upgrade --node NAME VERSION|TARBALL` (`bin/<app> upgrade`): the
//! same for one node run from a release in a deploy directory. And
//! `skitter versions DIR`: what a deploy directory holds.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use super::find_app_optional;
use super::resolve::{cookie as resolve_cookie, node_addr, record};
use crate::net::message::Reply;
use crate::net::Cookie;
use crate::release::install::{self, Tarball};
use crate::runtime::node::node_name;
use crate::script::App;
use crate::shell::remote::Console;
use crate::shell::Printer;
use crate::{Error, Result};

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    /// The new release: its tarball; with --node, a version installed
    /// beside the running one will do.
    pub target: String,
    /// The deploy's hosts (optional: an upgrade moves all of them, and they
    /// are checked against the deploy's).
    pub hosts: Vec<String>,
    /// The deploy's master (default skitter_master@<hostname>).
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// Upgrade this single node, run from a release in a deploy directory
    /// (what `bin/<app> upgrade` does).
    #[arg(long, value_name = "NAME", conflicts_with = "name")]
    pub node: Option<String>,
    /// With --node: the node's mode (local, master or worker).
    #[arg(long, default_value = "local", value_parser = ["local", "master", "worker"])]
    pub mode: String,
    /// The cookie (shows in `ps`: prefer SKITTER_COOKIE or ~/.skitter.cookie).
    #[arg(short = 'c', long)]
    pub cookie: Option<String>,
}

pub fn run(args: UpgradeArgs, app_dir: Option<&Path>) -> Result<ExitCode> {
    let app = find_app_optional(app_dir)?;
    if let Some(node) = &args.node {
        return upgrade_node(&args, app, &node_name(Some(node), &format!("skitter_{}", args.mode)));
    }
    let path = std::path::absolute(&args.target).unwrap_or_else(|_| PathBuf::from(&args.target));
    // Checked here first: a bad tarball is a usage error, not a master's.
    Tarball::open(&path).map_err(|e| Error::Usage(e.to_string()))?;
    let master = node_name(args.name.as_deref(), "skitter_master");
    let addr = node_addr(&master, app.as_ref(), "skitter_master")
        .map_err(|e| Error::Failed(format!("{e}: upgrade moves a cluster started by `skitter deploy`, through its master")))?;
    let cookie = resolve_cookie(args.cookie.as_deref())?;
    let hosts: Vec<String> = args.hosts.iter().map(|h| rhai_string(h)).collect();
    let code = format!("upgrade({}, [{}])", rhai_string(&path.display().to_string()), hosts.join(", "));
    // What the master says as it goes is printed as it comes. No timeout:
    // an upgrade is never cut off half-way.
    let console = Console::connect(&addr, &cookie, Printer::default())?;
    let reply = console.eval(&code, None, None);
    console.close();
    match reply {
        Reply::Value(summary) => {
            let text = parse_strings(&format!("[{summary}]")).and_then(|v| v.into_iter().next()).unwrap_or(summary);
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Reply::Error { message, .. } => {
            // The message is the upgrade's own; where in `upgrade(...)` it arose says nothing.
            let message = message.rfind(" (line ").map(|i| &message[..i]).unwrap_or(&message);
            Err(Error::Failed(message.to_string()))
        }
        other => Err(Error::Failed(format!("the master answered {other:?}"))),
    }
}

/// A Rhai string literal of `s`.
fn rhai_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One node: drained and stopped, started from the new version, its
/// workflows deployed again; back on the old version if the new one
/// cannot start.
fn upgrade_node(args: &UpgradeArgs, app: Option<App>, node: &str) -> Result<ExitCode> {
    let app = app.filter(|a| a.release).ok_or_else(|| Error::Usage("upgrade --node runs from a release (bin/<app> upgrade)".into()))?;
    let dir = app.deploy_dir().ok_or_else(|| {
        Error::Usage(format!(
            "{} is not installed in a deploy directory (DIR/releases/<version> beside DIR/current, as `skitter deploy --release` \
             installs releases): unpack releases there to upgrade between them",
            app.root.display()
        ))
    })?;
    let from = app.config.version.clone();
    let target = Path::new(&args.target);
    let version = if target.is_file() {
        let t = Tarball::open(target).map_err(|e| Error::Usage(e.to_string()))?;
        if t.name != app.config.name {
            return Err(Error::Usage(format!("{} is a release of {}, and this is {}", target.display(), t.name, app.config.name)));
        }
        t.install(&dir).map_err(|e| Error::Failed(e.to_string()))?;
        t.version
    } else {
        let v = args.target.clone();
        if install::installed_checksum(&dir.join("releases").join(&v)).is_none() {
            return Err(Error::Usage(format!(
                "{v} is not installed in {} (installed: {}); give the new release's tarball",
                dir.display(),
                install::versions(&dir).join(", ")
            )));
        }
        v
    };
    if version == from {
        return Err(Error::Usage(format!("{node} runs {version} already")));
    }
    let cookie = resolve_cookie(args.cookie.as_deref())?;
    let addr = record(Some(&app), node)?.addr;
    let console = Console::connect(&addr, &cookie, Printer::default())?;
    let running = match console.eval("running_deploys()", Some(Duration::from_secs(30)), None) {
        Reply::Value(v) => parse_strings(&v).ok_or_else(|| Error::Failed(format!("{node} answered {v} for its running workflows")))?,
        other => return Err(Error::Failed(format!("cannot ask {node} for its running workflows: {other:?}"))),
    };
    console.close();
    eprintln!("upgrading {node} from {from} to {version}; {} workflow(s) to deploy again", running.len());
    let down = Instant::now();
    super::node::stop(Some(&app), node)?;
    let new_root = dir.join("releases").join(&version);
    match start_and_redeploy(&new_root, &app.config.name, args, node, &cookie, &running) {
        Ok(()) => {
            install::set_current(&dir, &version).map_err(|e| Error::Failed(format!("cannot record {version} as current: {e}")))?;
            println!("upgraded {node} from {from} to {version}; downtime {:.3} s", down.elapsed().as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            // Back to the version that ran.
            let back = start_and_redeploy(&app.root, &app.config.name, args, node, &cookie, &running);
            let now = match back {
                Ok(()) => format!("{node} runs {from} again"),
                Err(e) => format!("and {from} could not start again either: {e}"),
            };
            Err(Error::Failed(format!("{version} could not start: {why}; {now}")))
        }
    }
}

/// Starts the release at `root` as a daemon and deploys `expressions`
/// there (those it did not deploy itself at start).
fn start_and_redeploy(
    root: &Path,
    name: &str,
    args: &UpgradeArgs,
    node: &str,
    cookie: &Cookie,
    expressions: &[String],
) -> std::result::Result<(), String> {
    let mut command = Command::new(root.join("bin").join(name));
    // The cookie this process was started with, as the node would have
    // inherited it (it is out of this process's environment).
    if let Some(c) = crate::net::cookie::from_environment() {
        command.env("SKITTER_COOKIE", c);
    }
    let out = command
        .arg("daemon")
        .env("SKITTER_MODE", &args.mode)
        .env("SKITTER_NODE", node)
        .env_remove("SKITTER_RELEASE_ROOT")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", root.join("bin").join(name).display()))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(said.trim().lines().last().unwrap_or("it exited").to_string());
    }
    let app = App::load_release(root).map_err(|e| e.to_string())?;
    let addr = record(Some(&app), node).map_err(|e| e.to_string())?.addr;
    let console = Console::connect(&addr, cookie, Printer::default()).map_err(|e| e.to_string())?;
    let mut already = match console.eval("running_deploys()", Some(Duration::from_secs(30)), None) {
        Reply::Value(v) => parse_strings(&v).unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut failed = Vec::new();
    for expr in expressions {
        if let Some(i) = already.iter().position(|e| e == expr) {
            already.remove(i);
            continue;
        }
        match console.eval(&format!("deploy({})", rhai_string(expr)), Some(Duration::from_secs(60)), None) {
            Reply::Value(_) | Reply::Unit => eprintln!("deployed again: {expr}"),
            Reply::Error { message, .. } => failed.push(format!("`{expr}`: {message}")),
            other => failed.push(format!("`{expr}`: {other:?}")),
        }
    }
    console.close();
    if failed.is_empty() {
        return Ok(());
    }
    // Every workflow was tried; this release cannot run them all, so the
    // daemon started here goes (the version that ran comes back in its place).
    let stopped = match super::node::stop(Some(&app), node) {
        Ok(_) => String::new(),
        Err(e) => format!(" (and stopping it failed: {e})"),
    };
    Err(format!("{} of {} workflow(s) could not be deployed again{stopped}:\n  {}", failed.len(), expressions.len(), failed.join("\n  ")))
}

/// The strings of a rendered array of strings (`["a", "b\"c"]`).
fn parse_strings(text: &str) -> Option<Vec<String>> {
    let mut chars = text.trim().strip_prefix('[')?.strip_suffix(']')?.chars().peekable();
    let mut out = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        match chars.next() {
            None => return Some(out),
            Some('"') => {}
            Some(_) => return None,
        }
        let mut s = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => s.push('\n'),
                    't' => s.push('\t'),
                    'r' => s.push('\r'),
                    '0' => s.push('\0'),
                    'u' => {
                        chars.next().filter(|c| *c == '{')?;
                        let hex: String = chars.by_ref().take_while(|c| *c != '}').collect();
                        s.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    c => s.push(c),
                },
                c => s.push(c),
            }
        }
        out.push(s);
    }
}

#[derive(Args, Debug)]
pub struct VersionsArgs {
    /// A release (its deploy directory is read) or a deploy directory
    /// (default: the release this is run from).
    pub dir: Option<PathBuf>,
}

/// `skitter versions`: the versions installed, the current one marked.
pub fn versions(args: VersionsArgs, app_dir: Option<&Path>) -> Result<ExitCode> {
    let dir = match &args.dir {
        Some(d) if d.join(install::CURRENT_FILE).is_file() => d.clone(),
        Some(d) => App::load_release(d)?.deploy_dir().unwrap_or_else(|| d.clone()),
        None => match find_app_optional(app_dir)? {
            Some(app) => app.deploy_dir().unwrap_or(app.root),
            None => return Err(Error::Usage("no release here: give a deploy directory".into())),
        },
    };
    let current = install::current(&dir);
    let found = install::versions(&dir);
    if found.is_empty() {
        // A release built here: its earlier versions' configurations only.
        let start = std::fs::read_to_string(dir.join(crate::script::app::START_DATA))
            .map_err(|_| Error::Usage(format!("{} is neither a deploy directory nor a release", dir.display())))?;
        println!("* {} (current; built here, not installed in a deploy directory)", start.trim());
        return Ok(ExitCode::SUCCESS);
    }
    for v in found {
        if current.as_deref() == Some(v.as_str()) {
            println!("* {v} (current)");
        } else {
            println!("  {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_strings_read_back() {
        let exprs = vec!["word_count()".to_string(), "f(\"a\\b\", 'c')\nnext".to_string(), "ü → x".to_string()];
        let rendered = format!("{:?}", exprs);
        assert_eq!(parse_strings(&rendered), Some(exprs));
        assert_eq!(parse_strings("[]"), Some(vec![]));
        assert_eq!(parse_strings("42"), None);
        assert_eq!(rhai_string("a\"b\\c"), r#""a\"b\\c""#);
    }
}
