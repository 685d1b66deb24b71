//! The command line: clap definitions (plain records), then one file per mode
//! that resolves them to a configuration and runs it.
//!
//! May use every layer below it; only `main` uses it.

mod console;
mod deploy;
mod local;
mod master;
mod new;
mod node;
mod release;
mod resolve;
mod upgrade;
mod worker;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::script::App;
use crate::{Error, Result};

#[derive(Parser, Debug)]
#[command(
    name = "skitter",
    about = "A distributed stream-processing runtime whose workflows are Rhai scripts",
    disable_help_subcommand = true,
    disable_version_flag = true,
    after_help = "Run `skitter help MODE` for the options of a mode."
)]
pub struct Cli {
    /// Print "<app> <version>" of the app here and exit.
    #[arg(short = 'a', long = "application-version")]
    pub application_version: bool,
    /// Print "skitter <version>" and exit.
    #[arg(short = 'v', long = "skitter-version", visible_alias = "version")]
    pub skitter_version: bool,
    /// The app directory (default: found by walking up from the current directory).
    #[arg(long, global = true, value_name = "DIR")]
    pub app: Option<PathBuf>,
    /// Run the default mode (SKITTER_MODE, else `mode` in skitter.toml, else
    /// local) this way: start, start_iex, daemon or daemon_iex (s, S, d, D).
    #[arg(long = "mode", value_name = "HOW")]
    pub run_as: Option<String>,
    #[command(subcommand)]
    pub mode: Option<Mode>,
}

#[derive(Subcommand, Debug)]
pub enum Mode {
    /// Run master and worker in this process (`l`).
    #[command(visible_alias = "l")]
    Local(local::LocalArgs),
    /// Start a worker on every host over ssh, then a master here (`d`).
    #[command(visible_alias = "d")]
    Deploy(deploy::DeployArgs),
    /// Run a master: it places workflows on its workers (`m`).
    #[command(visible_alias = "m", subcommand_precedence_over_arg = true)]
    Master(master::MasterArgs),
    /// Run a worker: it runs its master's workflows (`w`).
    #[command(visible_alias = "w")]
    Worker(worker::WorkerArgs),
    /// Create a new app at PATH, with a working word count.
    New(new::NewArgs),
    /// Build a self-contained release of the app here (default: _release/).
    Release(release::ReleaseArgs),
    /// Attach a shell to a running node: name@host:port, host:port, or a
    /// node name recorded in tmp/ (`exit()` detaches; the node keeps running).
    Remote(console::RemoteArgs),
    /// Evaluate EXPR on a running node and print the result.
    Rpc(console::RpcArgs),
    /// Evaluate EXPR in a fresh local runtime with the app loaded, then exit.
    Eval(console::EvalArgs),
    /// Move a deployed cluster (or, with --node, one node) to a new release:
    /// shipped, drained, restarted, its workflows deployed again.
    Upgrade(upgrade::UpgradeArgs),
    /// List the releases installed in a deploy directory, and the current one.
    Versions(upgrade::VersionsArgs),
    /// Print a completion script for a shell: bash, zsh, fish, elvish or powershell.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Show help, for all modes or for one (`h`).
    #[command(visible_alias = "h")]
    Help {
        /// The mode to explain.
        mode: Option<String>,
    },
}

pub use crate::error::prefix as error_prefix;

/// Parses `args` and runs the command.
pub fn run(args: impl IntoIterator<Item = OsString>) -> Result<ExitCode> {
    if std::env::var_os("NO_COLOR").is_some() {
        colored::control::set_override(false);
    }
    let args = with_default_mode(args.into_iter().collect())?;
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return Ok(ExitCode::from(code));
        }
    };
    if cli.skitter_version {
        println!("skitter {}", env!("CARGO_PKG_VERSION"));
        return Ok(ExitCode::SUCCESS);
    }
    if cli.application_version {
        let app = find_app(cli.app.as_deref())?;
        println!("{} {}", app.config.name, app.config.version);
        return Ok(ExitCode::SUCCESS);
    }
    match cli.mode {
        None => {
            let _ = Cli::command().print_help();
            Ok(ExitCode::from(2))
        }
        Some(Mode::Help { mode }) => help(mode.as_deref()),
        Some(Mode::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "skitter", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Some(Mode::New(args)) => new::run(args),
        Some(Mode::Release(args)) => release::run(args, cli.app.as_deref()),
        Some(Mode::Remote(args)) => console::remote(args, cli.app.as_deref()),
        Some(Mode::Rpc(args)) => console::rpc(args, cli.app.as_deref()),
        Some(Mode::Eval(args)) => console::eval(args, cli.app.as_deref()),
        Some(Mode::Upgrade(args)) => upgrade::run(args, cli.app.as_deref()),
        Some(Mode::Versions(args)) => upgrade::versions(args, cli.app.as_deref()),
        Some(Mode::Local(args)) => local::run(args, cli.app.as_deref()),
        Some(Mode::Master(args)) => master::run(args, cli.app.as_deref()),
        Some(Mode::Deploy(args)) => deploy::run(args, cli.app.as_deref()),
        Some(Mode::Worker(args)) => worker::run(args, cli.app.as_deref()),
    }
}

fn help(mode: Option<&str>) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    // Built, a mode's usage line reads `skitter deploy`, not `deploy`.
    cmd.build();
    match mode {
        None => {
            let _ = cmd.print_help();
        }
        Some(name) => {
            let Some(sub) = cmd.find_subcommand_mut(name) else {
                let known: Vec<String> = Cli::command().get_subcommands().map(|s| s.get_name().to_string()).collect();
                return Err(Error::Usage(format!("no mode `{name}` (modes: {})", known.join(", "))));
            };
            let _ = sub.print_help();
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How a node may be run (`--mode`), long and short forms.
const RUN_AS: &[&str] = &["start", "start_iex", "daemon", "daemon_iex", "s", "S", "d", "D"];

/// `skitter --mode HOW [ARGS...]`, the form `mix`/`iex` users type: the
/// default mode run that way. The default mode is SKITTER_MODE, else `mode`
/// in skitter.toml, else local; so `skitter --mode start_iex` is
/// `skitter local start_iex`, and in a release of a master app,
/// `skitter master start_iex`.
fn with_default_mode(args: Vec<OsString>) -> Result<Vec<OsString>> {
    // `--mode` before any mode's name (after one, it is that mode's, as
    // `deploy --mode`); `--app DIR` may come first.
    let mut found = None;
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_str().unwrap_or_default();
        if a == "--app" {
            i += 2;
            continue;
        }
        if a == "--mode" || a.starts_with("--mode=") {
            found = Some(i);
            break;
        }
        if !a.starts_with('-') {
            return Ok(args);
        }
        i += 1;
    }
    let Some(at) = found else { return Ok(args) };
    let mut rest = args.clone();
    let flag = rest.remove(at).to_string_lossy().to_string();
    let how = match flag.strip_prefix("--mode=") {
        Some(how) => how.to_string(),
        None if at < rest.len() => rest.remove(at).to_string_lossy().to_string(),
        None => return Err(Error::Usage("--mode needs a value: start, start_iex, daemon or daemon_iex".into())),
    };
    if !RUN_AS.contains(&how.as_str()) {
        return Err(Error::Usage(format!("--mode {how}: give start, start_iex, daemon or daemon_iex (or s, S, d, D)")));
    }
    let app_dir = rest.iter().position(|a| a == "--app").and_then(|i| rest.get(i + 1)).map(std::path::PathBuf::from);
    let mode = match std::env::var("SKITTER_MODE").ok().filter(|m| !m.trim().is_empty()) {
        Some(m) => m.trim().to_string(),
        None => find_app_optional(app_dir.as_deref())?.and_then(|a| a.config.mode.clone()).unwrap_or_else(|| "local".into()),
    };
    if !["local", "master", "worker"].contains(&mode.as_str()) {
        return Err(Error::Usage(format!(
            "the default mode `{mode}` (SKITTER_MODE or mode in skitter.toml): give local, master or worker"
        )));
    }
    let mut out = vec![rest[0].clone(), mode.into(), how.into()];
    out.extend(rest[1..].iter().cloned());
    Ok(out)
}

/// The app given with `--app`, else the release this program is part of,
/// else the app around the current directory.
pub fn find_app(dir: Option<&std::path::Path>) -> Result<App> {
    if let Some(d) = dir {
        if d.join(crate::script::app::START_DATA).is_file() {
            return Ok(App::load_release(d)?);
        }
        return Ok(App::load(d)?);
    }
    if let Some(release) = App::current_release() {
        return Ok(release?);
    }
    Ok(App::find(&std::env::current_dir().map_err(|e| Error::Failed(format!("no current directory: {e}")))?)?)
}

/// Like [`find_app`], but no app is fine when none was asked for.
pub fn find_app_optional(dir: Option<&std::path::Path>) -> Result<Option<App>> {
    match find_app(dir) {
        Ok(app) => Ok(Some(app)),
        Err(Error::App(crate::script::app::AppError::NotFound(_))) if dir.is_none() => Ok(None),
        Err(e) => Err(e),
    }
}
