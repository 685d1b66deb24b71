//! The master as scripts, consoles and the web view see it: the [`Host`]
//! calls, answered from its coordinator and its deployed workflows.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rhai::{Array, Dynamic, Map};

use super::Master;
use crate::net::WorkerInfo;
use crate::script::{Code, Host, Output, WorkflowRef};
use crate::workflow::{Stats, Status, Workflow};

impl Host for Master {
    fn checkpoint(&self, r: WorkflowRef) -> Result<u64, String> {
        self.checkpoint_now(r)
    }

    fn checkpoints(&self, name: &str) -> Result<rhai::Array, String> {
        crate::runtime::checkpoint::setup::listed(name)
    }

    fn expressions(&self) -> Option<&crate::script::host::DeployExpressions> {
        Some(&self.expressions)
    }

    fn node_name(&self) -> String {
        self.name.clone()
    }

    fn deploy(
        &self,
        wf: &Workflow,
        code: Code,
        audience: Option<crate::script::Audience>,
        options: &crate::script::DeployOptions,
    ) -> Result<WorkflowRef, String> {
        wf.validate().map_err(|e| e.to_string())?;
        self.deploy_graph(wf.flatten(), code, audience, options)
    }

    /// The master exits: its workflows stop (each a savepoint), and stay
    /// recorded as running: a master started again with `--recover`
    /// resumes them.
    fn stop_all(&self) -> usize {
        self.exiting.store(true, Ordering::Relaxed);
        let running: Vec<WorkflowRef> = self.workflows().into_iter().filter(|(_, s)| !s.is_done()).map(|(r, _)| r).collect();
        for r in &running {
            let _ = self.stop(*r, crate::settings::STOP_DEADLINE);
        }
        running.len()
    }

    fn status(&self, r: WorkflowRef) -> Result<Status, String> {
        Ok(self.get(r)?.status.borrow().clone())
    }

    fn stop(&self, r: WorkflowRef, deadline: Duration) -> Result<Status, String> {
        let wf = self.get(r)?;
        Ok(crate::runtime::stop_then_abort(
            &self.handle,
            wf.status.subscribe(),
            deadline,
            || self.request_stop(r),
            |why| self.request_abort(r, &why),
        ))
    }

    fn abort(&self, r: WorkflowRef) -> Result<Status, String> {
        let wf = self.get(r)?;
        self.request_abort(r, "aborted by the user");
        Ok(crate::runtime::wait_until_done(&self.handle, wf.status.subscribe()))
    }

    fn worker_health(&self) -> BTreeMap<String, crate::script::host::WorkerHealth> {
        let names = self.worker_names();
        let mut health = self.health.lock().expect("health lock");
        // Workers gone are forgotten.
        health.retain(|name, _| names.contains(name));
        health
            .iter()
            .map(|(name, &(rss_bytes, uptime_ms, heard))| {
                let heard = heard.elapsed().as_secs_f64();
                // Uptime as of now, not as of the last report.
                let uptime = uptime_ms as f64 / 1000.0 + heard;
                (name.clone(), crate::script::host::WorkerHealth { rss_bytes, uptime, heard })
            })
            .collect()
    }

    fn placement(&self, r: WorkflowRef) -> crate::script::host::Placement {
        self.get(r).map(|wf| wf.placement.lock().expect("placement lock").clone()).unwrap_or_default()
    }

    fn stats(&self, r: WorkflowRef) -> Result<Stats, String> {
        let wf = self.get(r)?;
        let mut stats = wf.stats.lock().expect("stats lock").clone();
        for nodes in wf.nodes.lock().expect("nodes lock").values() {
            stats.add(nodes);
        }
        let end = wf.ended_at.lock().expect("ended lock").unwrap_or_else(std::time::Instant::now);
        stats.elapsed = end.duration_since(wf.started).as_secs_f64();
        stats.checkpoints = wf.checkpoints().map(|c| c.stats.lock().expect("stats lock").clone());
        stats.recovery = wf.recovery.as_ref().map(|r| r.stats.lock().expect("recovery lock").clone());
        Ok(stats)
    }

    fn wait(&self, r: WorkflowRef) -> Result<Status, String> {
        let wf = self.get(r)?;
        Ok(crate::runtime::wait_until_done(&self.handle, wf.status.subscribe()))
    }

    fn results(&self, r: WorkflowRef, sink: Option<&str>) -> Result<Array, String> {
        let wf = self.get(r)?;
        let collected = wf.collected.lock().expect("collected lock");
        let names: Vec<&str> = collected.keys().map(String::as_str).collect();
        let chosen = crate::runtime::choose_sink(&names, sink)?;
        Ok(collected.values().nth(chosen).cloned().unwrap_or_default())
    }

    fn workflows(&self) -> Vec<(WorkflowRef, Status)> {
        self.workflows.lock().expect("workflows lock").iter().map(|(&id, wf)| (WorkflowRef { id }, wf.status.borrow().clone())).collect()
    }

    fn workers(&self) -> Array {
        self.coordinator.lock().expect("coordinator lock").workers().iter().map(WorkerInfo::to_dynamic).collect()
    }

    fn with_tag(&self, tag: &str) -> Array {
        self.coordinator.lock().expect("coordinator lock").with_tag(tag).iter().map(WorkerInfo::to_dynamic).collect()
    }

    fn set_output(&self, output: Output) {
        *self.output.lock().expect("output lock") = output;
    }

    fn set_notices(&self, output: Output) {
        *self.notices.lock().expect("notices lock") = Some(output);
    }

    fn runtime_info(&self) -> Map {
        let mut m = Map::new();
        m.insert("mode".into(), "master".into());
        m.insert("node".into(), self.name.clone().into());
        m.insert("version".into(), crate::VERSION.into());
        m.insert("workers".into(), Dynamic::from_int(self.coordinator.lock().expect("coordinator lock").workers().len() as i64));
        m.insert("running_workflows".into(), Dynamic::from_int(self.running().len() as i64));
        m
    }
}
