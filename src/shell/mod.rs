//! The shell: a loop around [`Session::eval`]. On a terminal it is an
//! interactive prompt; with piped stdin it reads entries, prints each result
//! and exits at end of input, so it can be scripted.

pub mod input;
pub mod render;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use crate::runtime::LocalRuntime;
use crate::script::{App, EngineEnv, Session};
use crate::Result;

/// Opens the shell on a local runtime, deploying `deploy` first if given.
pub fn run_local(
    rt: tokio::runtime::Runtime,
    runtime: Arc<LocalRuntime>,
    env: EngineEnv,
    app: Option<App>,
    deploy: Option<String>,
    welcome: &str,
) -> Result<ExitCode> {
    let mut session = Session::new(env, Some(runtime.clone()), app)?;
    if let Some(expr) = deploy {
        let r = crate::cli::local_deploy(&runtime, &mut session, &expr)?;
        eprintln!("deployed {expr} as {}", render::value(&rhai::Dynamic::from(r)));
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("{welcome}");
    }
    piped(&mut session)?;
    let running = runtime.running();
    if !running.is_empty() {
        eprintln!("stopping {} running workflow(s) gracefully", running.len());
        runtime.stop_all();
    }
    drop(rt);
    Ok(ExitCode::SUCCESS)
}

/// Reads entries from stdin until it ends, printing each result.
fn piped(session: &mut Session) -> Result<()> {
    let stdin = std::io::stdin();
    let mut entry = String::new();
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| crate::Error::Failed(format!("cannot read stdin: {e}")))?;
        if line.trim() == input::BREAK {
            entry.clear();
            continue;
        }
        entry.push_str(&line);
        entry.push('\n');
        if !input::is_complete(session.engine(), &entry) {
            continue;
        }
        execute(session, &entry);
        entry.clear();
    }
    if !entry.trim().is_empty() {
        execute(session, &entry);
    }
    Ok(())
}

/// Evaluates one entry and prints its result or error.
fn execute(session: &mut Session, entry: &str) {
    if entry.trim().is_empty() {
        return;
    }
    let shown = match session.eval(entry) {
        Ok(v) if v.is_unit() => None,
        Ok(v) => Some(render::value(&v)),
        Err(e) => Some(render::error(&e)),
    };
    if let Some(text) = shown {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}
