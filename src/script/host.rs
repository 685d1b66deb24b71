//! What a script can ask of the node it runs on. The runtime implements
//! [`Host`]; the script layer only sees this trait, so the same runtime API
//! works in local mode, on a master, or through a remote console.

use std::sync::Arc;

use rhai::{Array, Map, AST};

use crate::workflow::{Status, Workflow};

/// A script text and the name it goes by in messages (`lib/x.rhai`, `shell:3`).
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// The code a workflow's functions resolve against: every function the
/// deploying session knew (closures included), compiled, and the sources it
/// was compiled from. A Rhai AST cannot be serialized or deep-copied, so each
/// executor (a thread, another process) compiles its own from the sources.
#[derive(Clone, Default)]
pub struct Code {
    pub ast: Arc<AST>,
    pub sources: Arc<Vec<Source>>,
}

impl Code {
    /// Compiles the sources, in order, into one AST on `engine`.
    pub fn compile(&self, engine: &rhai::Engine) -> Result<AST, String> {
        let mut ast = AST::empty();
        for source in self.sources.iter() {
            let mut part = engine.compile(&source.text).map_err(|e| format!("{}: {e}", source.name))?;
            part.set_source(source.name.as_str());
            ast = ast.merge(&part.clone_functions_only());
        }
        Ok(ast)
    }
}

/// The expressions workflows were deployed from, by workflow id.
#[derive(Default)]
pub struct DeployExpressions(std::sync::Mutex<std::collections::BTreeMap<u64, String>>);

/// A handle on a deployed workflow, as scripts hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkflowRef {
    pub id: u64,
}

impl std::fmt::Display for WorkflowRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#WorkflowRef<{}>", self.id)
    }
}

/// How a workflow is deployed: `deploy(wf, #{ name, fresh, checkpoint_interval,
/// restart_attempts, restart_delay, restart_within })`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeployOptions {
    /// The name its checkpoints are kept under (by default derived from
    /// what it was deployed from).
    pub name: Option<String>,
    /// What the name is derived from when none is given: the deploy
    /// expression, when there is one.
    pub expression: Option<String>,
    /// Start over, not from its last checkpoint.
    pub fresh: bool,
    /// Seconds between checkpoints (0: off); `None`: the node's setting.
    pub checkpoint_interval: Option<f64>,
    /// How it restarts when a run fails; `None`: the node's settings.
    pub restart_attempts: Option<u32>,
    pub restart_delay: Option<std::time::Duration>,
    pub restart_within: Option<std::time::Duration>,
}

impl DeployOptions {
    /// The options a script gave as a map; an unknown key is refused.
    pub fn from_map(map: &rhai::Map) -> Result<DeployOptions, String> {
        let mut o = DeployOptions::default();
        for (k, v) in map {
            match k.as_str() {
                "name" => o.name = Some(v.clone().into_string().map_err(|t| format!("`name` must be a string, got {t}"))?),
                "fresh" => o.fresh = v.as_bool().map_err(|t| format!("`fresh` must be true or false, got {t}"))?,
                "checkpoint_interval" => {
                    let s = v
                        .as_float()
                        .or_else(|_| v.as_int().map(|i| i as f64))
                        .map_err(|t| format!("`checkpoint_interval` must be seconds, got {t}"))?;
                    crate::settings::checkpoint::interval(s)?;
                    o.checkpoint_interval = Some(s);
                }
                "restart_attempts" => o.restart_attempts = Some(crate::settings::restart::attempts(number(k, v)?)?),
                "restart_delay" => o.restart_delay = Some(crate::settings::restart::seconds("a restart_delay", number(k, v)?)?),
                "restart_within" => o.restart_within = Some(crate::settings::restart::seconds("a restart_within", number(k, v)?)?),
                other => {
                    return Err(format!(
                        "unknown deploy option `{other}` (options: name, fresh, checkpoint_interval, restart_attempts, restart_delay, \
                         restart_within)"
                    ))
                }
            }
        }
        Ok(o)
    }
}

/// A deploy option's number.
fn number(key: &str, v: &rhai::Dynamic) -> Result<f64, String> {
    v.as_float().or_else(|_| v.as_int().map(|i| i as f64)).map_err(|t| format!("`{key}` must be a number, got {t}"))
}

impl DeployOptions {
    /// How a workflow deployed with these options restarts.
    pub fn restart_policy(&self) -> crate::settings::restart::RestartPolicy {
        let node = crate::settings::restart::get();
        crate::settings::restart::RestartPolicy {
            attempts: self.restart_attempts.unwrap_or(node.attempts),
            within: self.restart_within.unwrap_or(node.within),
            delay: self.restart_delay.unwrap_or(node.delay),
        }
    }
}

/// Where a workflow's nodes run: per node, the workers its instances are
/// on and how many on each.
pub type Placement = Vec<Vec<(String, usize)>>;

/// How a worker is doing, as its master last heard.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerHealth {
    pub rss_bytes: u64,
    /// Seconds it has run.
    pub uptime: f64,
    /// Seconds since its master last heard from it.
    pub heard: f64,
}

pub trait Host: Send + Sync {
    /// The node's name, `name@host`.
    fn node_name(&self) -> String;
    /// Places and starts a validated workflow; what it prints goes to
    /// `audience` (the remote console that deployed it) while there is one.
    fn deploy(&self, wf: &Workflow, code: Code, audience: Option<super::Audience>, options: &DeployOptions) -> Result<WorkflowRef, String>;
    fn status(&self, r: WorkflowRef) -> Result<Status, String>;
    /// Takes a checkpoint of a running workflow now; its id once durable.
    fn checkpoint(&self, r: WorkflowRef) -> Result<u64, String>;
    /// The completed checkpoints kept for workflow `name`, oldest first.
    fn checkpoints(&self, name: &str) -> Result<Array, String>;
    /// Stops the workflow gracefully: sources stop, records in flight drain;
    /// what has not drained within `deadline` is aborted. Returns once it is done.
    fn stop(&self, r: WorkflowRef, deadline: std::time::Duration) -> Result<Status, String>;
    /// Stops the workflow at once, interrupting operator code. Returns once it is done.
    fn abort(&self, r: WorkflowRef) -> Result<Status, String>;
    /// Records in and out of every operator, read at the sources and written
    /// at the sinks: live while the workflow runs, final once it ended.
    fn stats(&self, r: WorkflowRef) -> Result<crate::workflow::Stats, String>;
    /// Where each of the workflow's nodes runs (in its current run): per
    /// node, the workers its instances are on and how many on each.
    fn placement(&self, r: WorkflowRef) -> Placement {
        let _ = r;
        Vec::new()
    }
    /// Blocks until the workflow is no longer running.
    fn wait(&self, r: WorkflowRef) -> Result<Status, String>;
    /// What the workflow's `collect()` sink gathered (`sink` names one when
    /// there are several).
    fn results(&self, r: WorkflowRef, sink: Option<&str>) -> Result<Array, String>;
    /// Every workflow deployed here, with its status.
    fn workflows(&self) -> Vec<(WorkflowRef, Status)>;
    /// The workers this node can place instances on.
    fn workers(&self) -> Array;
    /// How each worker is doing, by name (a master hears it with each
    /// heartbeat; a local node is its own worker and has none).
    fn worker_health(&self) -> std::collections::BTreeMap<String, WorkerHealth> {
        std::collections::BTreeMap::new()
    }
    /// The workers that have tag `tag`.
    fn with_tag(&self, tag: &str) -> Array {
        self.workers()
            .into_iter()
            .filter(|w| {
                w.read_lock::<rhai::Map>()
                    .and_then(|m| m.get("tags").and_then(|t| t.read_lock::<Array>().map(|a| a.iter().any(|x| x.to_string() == tag))))
                    .unwrap_or(false)
            })
            .collect()
    }
    /// Facts about the runtime: mode, node, slots, version.
    fn runtime_info(&self) -> Map;
    /// Where this node keeps the expressions its workflows were deployed
    /// from (none: it deploys nothing itself).
    fn expressions(&self) -> Option<&DeployExpressions> {
        None
    }
    /// Remembers that `r` was deployed from `expr`: an upgrade deploys it again.
    fn remember_expression(&self, r: WorkflowRef, expr: &str) {
        if let Some(e) = self.expressions() {
            e.0.lock().expect("expressions lock").insert(r.id, expr.to_string());
        }
    }
    /// The expressions of the running workflows deployed from one, oldest first.
    fn running_expressions(&self) -> Vec<(WorkflowRef, String)> {
        let Some(e) = self.expressions() else { return Vec::new() };
        let running: std::collections::BTreeSet<u64> =
            self.workflows().into_iter().filter(|(_, s)| !s.is_done()).map(|(r, _)| r.id).collect();
        let mut known = e.0.lock().expect("expressions lock");
        // Ended workflows are not deployed again: forget them.
        known.retain(|id, _| running.contains(id));
        known.iter().map(|(&id, expr)| (WorkflowRef { id }, expr.clone())).collect()
    }
    /// Sends what workflows print to `output` (the shell's printer).
    fn set_output(&self, output: super::Output) {
        let _ = output;
    }
    /// Announces on `output` when a workflow finishes or fails by itself.
    fn set_notices(&self, output: super::Output) {
        let _ = output;
    }
    /// The running workflows, each with its operators' stats, for `top()`.
    fn watch(&self) -> Vec<crate::workflow::watch::Watched> {
        let running = self.workflows().into_iter().filter(|(_, s)| !s.is_done());
        running
            .filter_map(|(r, status)| Some(crate::workflow::watch::Watched::new(r.id, status.to_string(), &self.stats(r).ok()?)))
            .collect()
    }
    /// Stops every running workflow gracefully; returns how many there were.
    fn stop_all(&self) -> usize {
        let running: Vec<WorkflowRef> = self.workflows().into_iter().filter(|(_, s)| !s.is_done()).map(|(r, _)| r).collect();
        for r in &running {
            // A workflow that ended meanwhile has nothing left to stop.
            let _ = self.stop(*r, crate::settings::STOP_DEADLINE);
        }
        running.len()
    }
}
