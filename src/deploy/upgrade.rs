//! A deployed cluster and its rolling upgrade. The deploy's master owns
//! the workers (their ssh channels hold them), so the upgrade runs here,
//! asked for through the master's console (`skitter upgrade` calls
//! `upgrade(tarball, hosts)` there):
//!
//! 1. the new release is checked, installed here and its scripts loaded
//!    (a release that does not compile stops here);
//! 2. it is shipped to every host, and new workers start from it beside
//!    the old ones (not yet joined), while the old version keeps running;
//!    a host where the copy or the start fails fails the upgrade, the new
//!    workers are stopped and nothing else changed;
//! 4. the downtime starts: the running workflows are stopped, drained;
//! 5. the old workers are retired and stopped, the new ones joined;
//! 6. the master loads the new release's code and deploys the workflows'
//!    expressions again; the downtime ends; `current` names the new
//!    version on every host.
//!
//! Before step 4 every running workflow's expression is evaluated with the
//! new code and checked as a deploy would check it (placement, tags,
//! paths), so what the master can refuse is refused while nothing has
//! stopped. After it, every workflow is tried and each failure named; if
//! the new workers cannot join or a workflow cannot be deployed again, the
//! old version comes back on every host with its workflows. What the
//! cluster's state says (version, workers) is what runs, on every path.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::fleet::{self, Failures, Progress, Say};
use super::ssh::{Installed, LaunchPlan, Launched, SshOptions};
use super::WorkerSpec;
use crate::release::install::Tarball;
use crate::runtime::console::{Consoles, Upgrader};
use crate::runtime::master::Master;
use crate::script::{App, EngineEnv, Host, Session};

/// How long the master keeps trying to reach a new worker that was started
/// (it may not listen yet).
const JOIN_WAIT: Duration = Duration::from_secs(10);

/// The workers of a running deploy, and what it needs to replace them.
pub struct Cluster {
    pub specs: Vec<WorkerSpec>,
    pub opts: SshOptions,
    pub progress: Progress,
    /// Where releases are installed here, for the master's code.
    pub local_dir: PathBuf,
    /// How long running workflows may take to drain before they are aborted.
    pub drain: Duration,
    handle: Handle,
    state: std::sync::Mutex<State>,
    /// One upgrade at a time.
    busy: std::sync::Mutex<()>,
    attached: OnceLock<(Arc<Master>, Weak<Consoles>, EngineEnv)>,
}

struct State {
    plan: LaunchPlan,
    launched: Vec<Launched>,
    /// The release running now, if one was shipped.
    version: Option<String>,
}

impl Cluster {
    pub fn new(
        specs: Vec<WorkerSpec>,
        opts: SshOptions,
        progress: Progress,
        local_dir: PathBuf,
        plan: LaunchPlan,
        launched: Vec<Launched>,
        handle: Handle,
    ) -> Cluster {
        let version = plan.release.as_ref().map(|r| r.version.clone());
        Cluster {
            specs,
            opts,
            progress,
            local_dir,
            drain: crate::settings::STOP_DEADLINE,
            handle,
            state: std::sync::Mutex::new(State { plan, launched, version }),
            busy: std::sync::Mutex::new(()),
            attached: OnceLock::new(),
        }
    }

    /// The master whose workers these are, its consoles, and its engines' environment.
    pub fn attach(&self, master: Arc<Master>, consoles: Weak<Consoles>, env: EngineEnv) {
        let _ = self.attached.set((master, consoles, env));
    }

    /// Where workers are now: `name@addr` each.
    pub fn addresses(&self) -> Vec<String> {
        self.state.lock().expect("state lock").launched.iter().map(|l| format!("{}@{}", l.spec.name, l.addr)).collect()
    }

    /// Stops every worker (the deploy ends).
    pub async fn stop(&self) {
        let launched = std::mem::take(&mut self.state.lock().expect("state lock").launched);
        fleet::stop_all(launched).await;
    }

    fn upgrade_inner(&self, path: &Path, hosts: &[String], say: Say) -> Result<String, String> {
        let progress = self.progress.to(say.clone());
        let _one = self.busy.try_lock().map_err(|_| "an upgrade is already under way".to_string())?;
        let (master, consoles, env) = self.attached.get().cloned().ok_or("this deploy's master is not running yet")?;
        if !hosts.is_empty() {
            let mut given: Vec<&str> = hosts.iter().map(String::as_str).collect();
            let mut ours: Vec<&str> = self.specs.iter().map(|s| s.host.as_str()).collect();
            given.sort();
            ours.sort();
            if given != ours {
                return Err(format!("this deploy runs on {}; an upgrade moves all of them (give those hosts, or none)", ours.join(", ")));
            }
        }
        let tarball = Tarball::open(path).map_err(|e| e.to_string())?;
        let old_app = consoles.upgrade().and_then(|c| c.app());
        let (old_plan, old_version) = {
            let s = self.state.lock().expect("state lock");
            (s.plan.clone(), s.version.clone())
        };
        if let Some(app) = &old_app {
            if app.config.name != tarball.name {
                return Err(format!("{} is a release of {}, and this cluster runs {}", path.display(), tarball.name, app.config.name));
            }
        }
        if old_version.is_none() {
            return Err("this deploy did not ship a release (it was started without --release): an upgrade moves a cluster \
                        deployed with `skitter deploy --release`"
                .into());
        }
        if old_version.as_deref() == Some(tarball.version.as_str()) {
            return Err(format!("the cluster runs {} {} already", tarball.name, tarball.version));
        }
        let from = old_version.clone().unwrap_or_default();
        // 1. Here first: the master runs the new code, which must load.
        let root = tarball.install(&self.local_dir).map_err(|e| e.to_string())?;
        let new_app = App::load_release(&root).map_err(|e| format!("the new release: {e}"))?;
        let mut new_env = env.clone();
        new_env.priv_dir = Some(PathBuf::from(format!("releases/{}/priv", tarball.version)));
        let mut new_plan = old_plan.clone();
        new_plan.release = Some(Installed { app: tarball.name.clone(), version: tarball.version.clone() });
        let old_side = Side { plan: old_plan.clone(), app: old_app.clone(), env: env.clone() };
        let new_side = Side { plan: new_plan.clone(), app: Some(new_app.clone()), env: new_env };
        preflight(&master, &new_side)?;

        // 2 and 3. Shipped, and new workers started beside the old ones.
        say(&format!("shipping {} {} to {} host(s)", tarball.name, tarball.version, self.specs.len()));
        let sessions: Vec<_> = {
            let s = self.state.lock().expect("state lock");
            self.specs.iter().map(|spec| s.launched.iter().find(|l| l.spec == *spec).map(|l| l.session.clone())).collect()
        };
        let (new_workers, shipped) = self
            .handle
            .block_on(fleet::bring_up_all(&self.specs, &new_plan, &self.opts, Some(&tarball), &progress, sessions))
            .map_err(|(f, _)| rolled_back(&tarball.version, &from, &f))?;
        if let Some(shipped) = shipped {
            say(&shipped);
        }
        say(&format!("{} new worker(s) ready", new_workers.len()));

        // 4. The downtime starts: workflows drain.
        let down = Instant::now();
        master.succession.set_upgrading(true);
        let result = self.switch(&master, new_workers, &old_side, &new_side, say.as_ref());
        master.succession.set_upgrading(false);
        let downtime = down.elapsed();
        let (outcome, skipped) = match result {
            Switched::Done(n, skipped) => (Ok(n), skipped),
            Switched::RolledBack(why) => return Err(format!("upgrading to {} failed: {why}", tarball.version)),
            Switched::Stranded(why) => {
                // Neither version's workers are joined: the state says so.
                return Err(format!("upgrading to {} failed: {why}; the cluster has no workers now and stays on {from}", tarball.version));
            }
            Switched::Failed(why) => (Err(why), Vec::new()),
        };
        // The new version runs on every host from here on.
        {
            let mut s = self.state.lock().expect("state lock");
            s.plan = new_plan.clone();
            s.version = Some(tarball.version.clone());
        }
        if let Some(c) = consoles.upgrade() {
            *c.app.write().expect("app lock") = Some(new_app.clone());
        }
        crate::settings::node::set_app(&new_app.config.name, &new_app.config.version);
        let committed = {
            let s = self.state.lock().expect("state lock");
            self.handle.block_on(fleet::set_current(&s.launched, &new_plan, &tarball.version))
        };
        if let Err(f) = committed {
            say(&format!("warning: could not record {} as current on:\n  {f}", tarball.version));
        }
        let redeployed = outcome
            .map_err(|why| format!("the cluster runs {} now, but a workflow could not be deployed again: {why}", tarball.version))?;
        let mut summary = format!(
            "upgraded {} from {from} to {} on {} host(s); {redeployed} workflow(s) deployed again; downtime {:.3} s",
            tarball.name,
            tarball.version,
            self.specs.len(),
            downtime.as_secs_f64()
        );
        if !skipped.is_empty() {
            summary += &format!(
                "\nnot deployed again (deployed without an expression; use deploy(\"expr\")): {}",
                skipped.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
            );
        }
        tracing::info!("{summary}");
        Ok(summary)
    }

    /// Steps 4 to 6: drain, swap the workers, deploy again. Returns how many
    /// workflows were deployed again and which could not be. When the new
    /// workers cannot join, or a workflow cannot be deployed again on them,
    /// the old version comes back: its workers start again and every
    /// workflow is deployed again with its code. Every workflow is tried,
    /// and each one that fails is named with its reason.
    fn switch(
        &self,
        master: &Arc<Master>,
        new_workers: Vec<Launched>,
        old: &Side,
        new: &Side,
        say: &(dyn Fn(&str) + Send + Sync),
    ) -> Switched {
        let expressions = master.running_expressions();
        let running = master.running();
        for r in &running {
            match master.stop(*r, self.drain) {
                Ok(status) => say(&format!("{r} {status}")),
                Err(e) => say(&format!("{r}: {e}")),
            }
        }
        let skipped: Vec<_> = running.iter().filter(|r| !expressions.iter().any(|(e, _)| e == *r)).copied().collect();
        let why = match self.swap_workers(master, new_workers) {
            Err(why) => why,
            Ok(()) => match redeploy(master, new, &expressions, say) {
                Ok(n) => return Switched::Done(n, skipped),
                Err(failed) => {
                    // The new version runs some of them: stop those too.
                    for r in master.running() {
                        let _ = master.stop(r, self.drain);
                    }
                    failed
                }
            },
        };
        self.go_back(master, old, &expressions, why, say)
    }

    /// Brings the old version back on every host and deploys its workflows
    /// again, after the new version failed for `why`.
    fn go_back(
        &self,
        master: &Arc<Master>,
        old: &Side,
        expressions: &[(crate::script::WorkflowRef, String)],
        why: String,
        say: &(dyn Fn(&str) + Send + Sync),
    ) -> Switched {
        say(&format!("{why}; going back to the old version"));
        let sessions = {
            let s = self.state.lock().expect("state lock");
            self.specs.iter().map(|spec| s.launched.iter().find(|l| l.spec == *spec).map(|l| l.session.clone())).collect()
        };
        let restarted =
            self.handle.block_on(fleet::bring_up_all(&self.specs, &old.plan, &self.opts, None, &Progress::terminal(false), sessions));
        let old_workers = match restarted {
            Ok((workers, _)) => workers,
            Err((f, _)) => {
                // The new workers still run (joined, or not): the cluster
                // is on the new version's workers with nothing deployed.
                return Switched::Failed(format!("{why}; going back to the old version failed too, its workers could not start:\n  {f}"));
            }
        };
        if let Err(e) = self.swap_workers(master, old_workers) {
            // Neither version's workers joined: stop what was started, so
            // nothing runs that the state does not name.
            let left = std::mem::take(&mut self.state.lock().expect("state lock").launched);
            self.handle.block_on(fleet::stop_all(left));
            return Switched::Stranded(format!("{why}; and the old version's workers could not join either: {e}"));
        }
        match redeploy(master, old, expressions, say) {
            Ok(_) => Switched::RolledBack(format!("{why}; every host is back on the old version, its workflows deployed again")),
            Err(e) => Switched::RolledBack(format!("{why}; every host is back on the old version, but {e}")),
        }
    }

    /// Retires the workers running now, stops them, and joins `workers` to the master.
    fn swap_workers(&self, master: &Arc<Master>, workers: Vec<Launched>) -> Result<(), String> {
        let old: Vec<Launched> = std::mem::take(&mut self.state.lock().expect("state lock").launched);
        let old_names: Vec<String> = old.iter().map(|l| l.spec.name.clone()).collect();
        master.retire(old_names.clone());
        let gone = self.handle.block_on(async {
            fleet::stop_all(old).await;
            fleet::until(Duration::from_secs(10), || !master.worker_names().iter().any(|n| old_names.contains(n))).await
        });
        if !gone {
            tracing::warn!("the old workers had not all left the master within 10 s");
        }
        let dials = self.handle.block_on(async {
            let tasks: Vec<_> = workers.iter().map(|l| tokio::spawn(master.clone().dial(l.addr.clone(), JOIN_WAIT))).collect();
            let mut failures = Vec::new();
            for (t, l) in tasks.into_iter().zip(&workers) {
                match t.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.push(format!("{}: {e}", l.spec.host)),
                    Err(e) => failures.push(format!("{}: {e}", l.spec.host)),
                }
            }
            failures
        });
        self.state.lock().expect("state lock").launched = workers;
        if dials.is_empty() {
            Ok(())
        } else {
            Err(format!("the master could not join the new workers:\n  {}", dials.join("\n  ")))
        }
    }
}

/// One version's side of an upgrade: how its workers start, its code.
struct Side {
    plan: LaunchPlan,
    app: Option<App>,
    env: EngineEnv,
}

enum Switched {
    /// Workflows deployed again, and those without an expression.
    Done(usize, Vec<crate::script::WorkflowRef>),
    /// The new version failed; the old version's workers run again (its
    /// workflows deployed again, or the reason they were not).
    RolledBack(String),
    /// The new version failed and the old one could not start again: the
    /// new version's workers are what runs.
    Failed(String),
    /// Neither version's workers could join: none run.
    Stranded(String),
}

/// Deploys `expressions` again on `master` with `side`'s code: every one
/// is tried. Returns how many were deployed, or every failure, each named.
fn redeploy(
    master: &Arc<Master>,
    side: &Side,
    expressions: &[(crate::script::WorkflowRef, String)],
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<usize, String> {
    let host: Arc<dyn Host> = master.clone();
    let mut session = Session::new(side.env.clone(), Some(host.clone()), side.app.clone(), None).map_err(|e| e.to_string())?;
    let mut failed = Vec::new();
    for (old, expr) in expressions {
        match session.deploy_expr(host.as_ref(), expr, false) {
            Ok(new) => {
                master.succession.replace(*old, new);
                say(&format!("{old} deployed again as {new}: {expr}"));
            }
            Err(e) => {
                say(&format!("{old} could not be deployed again: {e}"));
                failed.push(format!("{old} `{expr}`: {e}"));
            }
        }
    }
    match failed.len() {
        0 => Ok(expressions.len()),
        n => Err(format!("{n} of {} workflow(s) could not be deployed again:\n  {}", expressions.len(), failed.join("\n  "))),
    }
}

/// Checks, before anything stops, that every running workflow's
/// expression still gives a valid workflow with the new code.
fn preflight(master: &Arc<Master>, new: &Side) -> Result<(), String> {
    let mut session = Session::new(new.env.clone(), None, new.app.clone(), None).map_err(|e| format!("the new release's scripts: {e}"))?;
    for (r, expr) in master.running_expressions() {
        let value = session.eval(expr.as_str()).map_err(|e| format!("nothing changed: {r}'s `{expr}` fails with the new release: {e}"))?;
        match value.try_cast::<crate::workflow::Workflow>() {
            // Everything a deploy decides on the master: placement, tags, paths.
            Some(wf) => master
                .check_deploy(&wf, &session.code())
                .map_err(|e| format!("nothing changed: {r}'s `{expr}` with the new release: {e}"))?,
            None => return Err(format!("nothing changed: {r}'s `{expr}` gives no workflow with the new release")),
        }
    }
    Ok(())
}

/// The message of an upgrade that could not start the new version somewhere.
fn rolled_back(version: &str, from: &str, f: &Failures) -> String {
    format!("{version} could not start on {} host(s), so every host stays on {from} and the workflows kept running:\n  {f}", f.0.len())
}

impl Upgrader for Cluster {
    fn upgrade(&self, tarball: &Path, hosts: &[String], say: Say) -> Result<String, String> {
        self.upgrade_inner(tarball, hosts, say)
    }
}
