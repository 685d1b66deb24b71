//! The workers of one deploy: shipping a release to their hosts, starting
//! them all at once, and stopping them. Every step runs on every host in
//! parallel and reports each host; a step that fails on one host fails as
//! a whole, naming every host that failed, and undoes what it started.

use std::sync::Arc;
use std::time::Duration;

use colored::Colorize;
use openssh::Session;

use super::ship::{self, Shipped};
use super::ssh::{self, LaunchPlan, Launched, SshOptions};
use super::{quote, LaunchError, WorkerSpec};
use crate::release::install::Tarball;

/// Hosts that failed a step, each with its reason.
#[derive(Debug)]
pub struct Failures(pub Vec<(WorkerSpec, LaunchError)>);

impl std::fmt::Display for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (spec, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n  ")?;
            }
            write!(f, "{}: {e}", spec.host)?;
        }
        Ok(())
    }
}

/// Where progress lines go.
pub type Say = Arc<dyn Fn(&str) + Send + Sync>;

/// How progress is told: a line per host (to the terminal, or to `say`),
/// or nothing (then a summary).
#[derive(Clone)]
pub struct Progress {
    pub per_host: bool,
    pub say: Option<Say>,
}

impl Progress {
    pub fn terminal(per_host: bool) -> Progress {
        Progress { per_host, say: None }
    }

    /// The same, told to `say` instead of the terminal.
    pub fn to(&self, say: Say) -> Progress {
        Progress { per_host: self.per_host, say: Some(say) }
    }

    fn host(&self, host: &str, what: impl std::fmt::Display) {
        if self.per_host {
            let line = format!("{host:<12} {what}");
            match &self.say {
                Some(say) => say(&line),
                None => eprintln!("{line}"),
            }
        }
    }
}

/// Brings every host up on its own, all at once: connects (unless
/// `sessions` has a connection to it), ships `tarball` when given (once
/// per host and directory), starts the worker. A host does not wait for
/// the others' copies; when any host fails, the workers started are
/// stopped (and counted in the error). Returns the workers and, when
/// shipping, a summary of the copies.
pub async fn bring_up_all(
    specs: &[WorkerSpec],
    plan: &LaunchPlan,
    opts: &SshOptions,
    tarball: Option<&Tarball>,
    progress: &Progress,
    sessions: Vec<Option<Arc<Session>>>,
) -> Result<(Vec<Launched>, Option<String>), (Failures, usize)> {
    type Copy = tokio::sync::OnceCell<Result<Shipped, LaunchError>>;
    let copies: Vec<Arc<Copy>> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            // Two workers on one host and directory share one copy.
            let first = specs[..i].iter().position(|o| o.host == s.host && plan.dir_for(o) == plan.dir_for(s));
            first.unwrap_or(i)
        })
        .scan(Vec::<Arc<Copy>>::new(), |made, owner| {
            let cell = made.get(owner).cloned().unwrap_or_default();
            made.push(cell.clone());
            Some(cell)
        })
        .collect();
    let tasks = specs.iter().zip(&copies).zip(sessions).map(|((spec, copy), given)| async move {
        let mut session = match given {
            Some(s) => s,
            None => ssh::connect(&spec.host, opts).await?,
        };
        if let Some(t) = tarball {
            let mut used = None;
            let shipped = copy
                .get_or_init(|| async {
                    let (s, shipped) = ship::ship(&spec.host, session.clone(), opts, &plan.dir_for(spec), t).await?;
                    report_copy(progress, &spec.host, t, &shipped);
                    used = Some(s);
                    Ok(shipped)
                })
                .await;
            if let Some(s) = used {
                session = s;
            }
            if let Err(e) = shipped {
                return Err(e.clone());
            }
        }
        progress.host(&spec.host, format_args!("{} {}", "starting".dimmed(), spec.name));
        let r = ssh::launch(spec, plan, opts, Some(session)).await;
        if let Ok(l) = &r {
            progress.host(&spec.host, format_args!("{} in {:.2} s at {}", "ready".green(), l.ready_after.as_secs_f64(), l.addr));
        }
        r
    });
    let results = futures_util::future::join_all(tasks).await;
    let mut launched = Vec::new();
    let mut failures = Vec::new();
    for (spec, r) in specs.iter().zip(results) {
        match r {
            Ok(l) => launched.push(l),
            Err(e) => {
                progress.host(&spec.host, format_args!("{} {e}", "failed".red()));
                failures.push((spec.clone(), e));
            }
        }
    }
    if !failures.is_empty() {
        let started = launched.len();
        stop_all(launched).await;
        return Err((Failures(failures), started));
    }
    let summary = tarball.map(|t| {
        let mut seen: Vec<*const Copy> = Vec::new();
        let (mut copied, mut had) = (0, 0);
        for c in &copies {
            if seen.contains(&Arc::as_ptr(c)) {
                continue;
            }
            seen.push(Arc::as_ptr(c));
            match c.get() {
                Some(Ok(Shipped { copied: Some(_), .. })) => copied += 1,
                _ => had += 1,
            }
        }
        format!("{} {} on {} host(s): copied to {copied}, already on {had}", t.name, t.version, copied + had)
    });
    Ok((launched, summary))
}

/// One line for a host's copy.
fn report_copy(progress: &Progress, host: &str, t: &Tarball, shipped: &Shipped) {
    match shipped.copied {
        Some(bytes) => progress.host(
            host,
            format_args!("{} {} ({:.1} MB) in {:.2} s", "copied".green(), t.version, bytes as f64 / 1e6, shipped.took.as_secs_f64()),
        ),
        None => progress.host(host, format_args!("{} {} (same checksum): no copy", "has".green(), t.version)),
    }
}

/// Stops workers (their input closes; each exits) and waits for them.
pub async fn stop_all(launched: Vec<Launched>) {
    futures_util::future::join_all(launched.into_iter().map(Launched::stop)).await;
}

/// Records `version` as the current one in every worker's directory.
pub async fn set_current(launched: &[Launched], plan: &LaunchPlan, version: &str) -> Result<(), Failures> {
    let tasks = launched.iter().map(|l| {
        let dir = plan.dir_for(&l.spec);
        let line = format!("cd {} && printf '%s\\n' {} > .current.$$ && mv -f .current.$$ current", quote(&dir), quote(version));
        async move { l.run(&line).await }
    });
    let results = futures_util::future::join_all(tasks).await;
    let failures: Vec<_> = launched.iter().zip(results).filter_map(|(l, r)| r.err().map(|e| (l.spec.clone(), e))).collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failures(failures))
    }
}

/// Waits (at most `limit`) until `done` holds, looking every few milliseconds.
pub async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}
