//! Local mode: master and worker in one process. Workflows run on this
//! process's tokio runtime with one slot per core (or as configured).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rhai::{Array, Dynamic, Map};
use tokio::runtime::Handle;

use tokio::sync::{mpsc, oneshot};

use super::checkpoint::{driver, setup};
use super::dataflow::{self, Running};
use crate::script::{Code, DeployOptions, EngineEnv, Host, Output, WorkflowRef};
use crate::workflow::{Plan, Status, Workflow};

pub struct LocalRuntime {
    handle: Handle,
    node: String,
    slots: usize,
    env: Mutex<EngineEnv>,
    /// Where to announce that a workflow finished or failed (the shell).
    notices: Mutex<Option<Output>>,
    next_id: AtomicU64,
    workflows: Mutex<BTreeMap<u64, Arc<Running>>>,
    /// Where a running workflow's checkpoint driver takes asks for a checkpoint now.
    asks: Mutex<BTreeMap<u64, mpsc::UnboundedSender<driver::Ask>>>,
    /// Where each workflow's nodes run: here, so many instances each.
    placements: Mutex<BTreeMap<u64, crate::script::host::Placement>>,
    /// How many ended workflows are kept for `status`, `results` and `stats`.
    keep: usize,
    expressions: crate::script::host::DeployExpressions,
}

impl LocalRuntime {
    pub fn new(handle: Handle, node: String, slots: usize, env: EngineEnv) -> Self {
        LocalRuntime {
            handle,
            node,
            slots: slots.max(1),
            env: Mutex::new(env),
            notices: Mutex::new(None),
            next_id: AtomicU64::new(1),
            workflows: Mutex::new(BTreeMap::new()),
            asks: Mutex::new(BTreeMap::new()),
            placements: Mutex::new(BTreeMap::new()),
            keep: super::keep_workflows(),
            expressions: Default::default(),
        }
    }

    fn get(&self, r: WorkflowRef) -> Result<Arc<Running>, String> {
        self.workflows.lock().expect("workflows lock").get(&r.id).cloned().ok_or_else(|| super::unknown_workflow(r, &self.node, self.keep))
    }

    /// Watches a workflow's status.
    pub fn subscribe(&self, r: WorkflowRef) -> Result<tokio::sync::watch::Receiver<Status>, String> {
        Ok(self.get(r)?.subscribe())
    }

    /// Asks a workflow to stop gracefully without waiting for it.
    pub fn request_stop(&self, r: WorkflowRef) -> Result<(), String> {
        self.get(r)?.request_stop(None);
        Ok(())
    }

    /// Aborts a workflow without waiting for it.
    pub fn request_abort(&self, r: WorkflowRef, reason: &str) -> Result<(), String> {
        self.get(r)?.abort(reason.to_string());
        Ok(())
    }

    /// Forgets the oldest ended workflows beyond the history's bound.
    fn trim_history(&self, workflows: &mut BTreeMap<u64, Arc<Running>>) {
        let ended: Vec<u64> = workflows.iter().filter(|(_, r)| r.status().is_done()).map(|(&id, _)| id).collect();
        let mut asks = self.asks.lock().expect("asks lock");
        asks.retain(|id, _| workflows.get(id).is_some_and(|r| !r.status().is_done()));
        for id in ended.iter().take(ended.len().saturating_sub(self.keep)) {
            workflows.remove(id);
        }
        self.placements.lock().expect("placements lock").retain(|id, _| workflows.contains_key(id));
    }

    /// Workflows still running.
    pub fn running(&self) -> Vec<WorkflowRef> {
        self.workflows
            .lock()
            .expect("workflows lock")
            .iter()
            .filter(|(_, r)| !r.status().is_done())
            .map(|(&id, _)| WorkflowRef { id })
            .collect()
    }
}

impl Host for LocalRuntime {
    fn expressions(&self) -> Option<&crate::script::host::DeployExpressions> {
        Some(&self.expressions)
    }

    fn node_name(&self) -> String {
        self.node.clone()
    }

    fn deploy(
        &self,
        wf: &Workflow,
        code: Code,
        audience: Option<crate::script::Audience>,
        options: &DeployOptions,
    ) -> Result<WorkflowRef, String> {
        wf.validate().map_err(|e| e.to_string())?;
        let plan = Plan::new(wf.flatten());
        let _guard = self.handle.enter();
        let mut env = self.env.lock().expect("env lock").clone();
        if let Some(to) = audience {
            env.output = to_audience(to, env.output);
        }
        let mut me = rhai::Map::new();
        me.insert("name".into(), self.node.clone().into());
        me.insert("tags".into(), rhai::Dynamic::from_array(Vec::new()));
        me.insert("slots".into(), rhai::Dynamic::from_int(self.slots as i64));
        let placement = dataflow::place(&plan, &code, &env, &[me], true).map_err(|e| e.to_string())?;
        let layout = dataflow::Layout::local(self.slots).with_placement(placement);
        let spread: crate::script::host::Placement =
            layout.spread(&plan).into_iter().map(|per| per.into_iter().map(|(_, n)| (self.node.clone(), n)).collect()).collect();
        let mut checkpoints = setup::prepare(&plan, &layout, &self.node, crate::runtime::checkpoint::output::Writes::All, options)?;
        let resume = checkpoints.as_mut().map(|c| std::mem::take(&mut c.resume));
        let part = dataflow::Part { layout, node: self.node.clone(), settle_here: true, checkpoints: resume };
        let running = dataflow::start(plan, code, part, &env, None).map_err(|e| e.to_string())?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.placements.lock().expect("placements lock").insert(id, spread);
        if let Some(c) = checkpoints {
            // A resume is news (for the shell, or on the node's standard
            // error); a start from scratch is not. What the workflow prints
            // stays its own.
            if c.resumed() {
                match self.notices.lock().expect("notices lock").clone() {
                    Some(notices) => notices(&c.note),
                    None => eprintln!("{}", c.note),
                }
            }
            tracing::info!(workflow = id, "{}", c.note);
            let driver = driver::Driver::new(c.workflow, c.store, c.outputs, running.clone());
            running.show_checkpoints(driver.stats());
            let (asks, asked) = mpsc::unbounded_channel();
            self.asks.lock().expect("asks lock").insert(id, asks);
            self.handle.spawn(driver.run(asked));
        }
        if let Some(notices) = self.notices.lock().expect("notices lock").clone() {
            let mut watch = running.subscribe();
            self.handle.spawn(async move {
                let _ = watch.wait_for(|s| s.is_done()).await;
                let status = watch.borrow().clone();
                if !matches!(status, Status::Stopped(_)) {
                    notices(&format!("#WorkflowRef<{id}> {status}"));
                }
            });
        }
        let mut workflows = self.workflows.lock().expect("workflows lock");
        workflows.insert(id, running);
        self.trim_history(&mut workflows);
        tracing::info!(workflow = id, "deployed");
        Ok(WorkflowRef { id })
    }

    fn status(&self, r: WorkflowRef) -> Result<Status, String> {
        Ok(self.get(r)?.status())
    }

    fn checkpoint(&self, r: WorkflowRef) -> Result<u64, String> {
        let running = self.get(r)?;
        let asks = self.asks.lock().expect("asks lock").get(&r.id).cloned();
        let Some(asks) = asks else { return Err(format!("workflow #{} runs without checkpoints (checkpoint_interval 0)", r.id)) };
        if running.status().is_done() {
            return Err(format!("workflow #{} has ended ({})", r.id, running.status()));
        }
        let (tx, rx) = oneshot::channel();
        asks.send(tx).map_err(|_| format!("workflow #{} has ended", r.id))?;
        let answer = if Handle::try_current().is_ok() { tokio::task::block_in_place(|| rx.blocking_recv()) } else { rx.blocking_recv() };
        answer.map_err(|_| format!("workflow #{} ended before its checkpoint completed", r.id))?
    }

    fn checkpoints(&self, name: &str) -> Result<Array, String> {
        setup::listed(name)
    }

    fn stop(&self, r: WorkflowRef, deadline: std::time::Duration) -> Result<Status, String> {
        let running = self.get(r)?;
        let status =
            super::stop_then_abort(&self.handle, running.subscribe(), deadline, || running.request_stop(None), |why| running.abort(why));
        tracing::info!(workflow = r.id, %status, "stopped");
        Ok(status)
    }

    fn abort(&self, r: WorkflowRef) -> Result<Status, String> {
        let running = self.get(r)?;
        running.abort("aborted by the user".into());
        let status = super::wait_until_done(&self.handle, running.subscribe());
        tracing::info!(workflow = r.id, %status, "aborted");
        Ok(status)
    }

    fn placement(&self, r: WorkflowRef) -> crate::script::host::Placement {
        self.placements.lock().expect("placements lock").get(&r.id).cloned().unwrap_or_default()
    }

    fn stats(&self, r: WorkflowRef) -> Result<crate::workflow::Stats, String> {
        Ok(self.get(r)?.stats())
    }

    fn wait(&self, r: WorkflowRef) -> Result<Status, String> {
        let running = self.get(r)?;
        Ok(super::wait_until_done(&self.handle, running.subscribe()))
    }

    fn results(&self, r: WorkflowRef, sink: Option<&str>) -> Result<Array, String> {
        self.get(r)?.results(sink)
    }

    fn workflows(&self) -> Vec<(WorkflowRef, Status)> {
        self.workflows.lock().expect("workflows lock").iter().map(|(&id, r)| (WorkflowRef { id }, r.status())).collect()
    }

    fn workers(&self) -> Array {
        let mut m = Map::new();
        m.insert("name".into(), self.node.clone().into());
        m.insert("slots".into(), Dynamic::from_int(self.slots as i64));
        m.insert("tags".into(), Dynamic::from_array(Array::new()));
        vec![Dynamic::from_map(m)]
    }

    fn set_output(&self, output: Output) {
        self.env.lock().expect("env lock").output = output;
    }

    fn set_notices(&self, output: Output) {
        *self.notices.lock().expect("notices lock") = Some(output);
    }

    fn runtime_info(&self) -> Map {
        let mut m = Map::new();
        m.insert("mode".into(), "local".into());
        m.insert("node".into(), self.node.clone().into());
        m.insert("slots".into(), Dynamic::from_int(self.slots as i64));
        m.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        let running = self.running().len() as i64;
        m.insert("running_workflows".into(), Dynamic::from_int(running));
        m
    }
}

/// Prints to `audience` while it is there, then to `otherwise`.
fn to_audience(audience: crate::script::Audience, otherwise: Output) -> Output {
    let there = std::sync::atomic::AtomicBool::new(true);
    Arc::new(move |text: &str| {
        if !(there.load(Ordering::Relaxed) && audience(text)) {
            there.store(false, Ordering::Relaxed);
            otherwise(text)
        }
    })
}
