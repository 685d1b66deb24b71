//! Starting a run of a workflow: placed on the workers there are, its
//! checkpoints prepared (the run resumes from the last one), what each
//! worker's instances resume from sent before the deploy itself. A
//! workflow's first run starts at its deploy; later ones when it recovers.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::coordinator::Event;
use super::prepare::Prepared;
use super::{Deployed, Master};
use crate::net::ControlMsg;
use crate::script::Code;
use crate::workflow::{Plan, Workflow};

impl Master {
    /// Places run `run` of `deployed` on the workers there are and starts
    /// it (from its last checkpoint, when it has checkpoints); returns the
    /// checkpoint it resumed from.
    pub(super) fn start_run(
        &self,
        run: u64,
        deployed: &Arc<Deployed>,
        wf: &Workflow,
        code: Code,
        options: &crate::script::DeployOptions,
    ) -> Result<Option<u64>, String> {
        let Prepared { graph, workers, mut message } = self.prepare(wf, &code, run)?;
        let plan = Plan::new(graph);
        let ControlMsg::Deploy { slots, placement, checkpoints: on, .. } = &mut message else { unreachable!("prepare makes a deploy") };
        let placed = placement.iter().map(|(s, counts)| (*s as usize, counts.iter().map(|&n| n as usize).collect())).collect();
        let layout = crate::runtime::dataflow::Layout::new(workers.len(), 0, *slots as usize).with_placement(placed);
        // The run before it lets go of its files (the first run has none);
        // its checkpoints count on.
        let before = deployed.checkpoints.lock().expect("checkpoints lock").take().map(|cp| cp.stats.lock().expect("stats lock").clone());
        let before = before.or_else(|| deployed.recovery.as_ref().and_then(|r| r.carried.lock().expect("carried lock").take()));
        let checkpoints = self.prepare_checkpoints(run, &plan, &layout, &workers, options)?;
        *on = checkpoints.is_some();
        let resumed_from = checkpoints.as_ref().map(|(cp, _)| cp.wf.resumed_from).filter(|&n| n > 0);
        self.runs.lock().expect("runs lock").insert(run, deployed.id);
        if let (Some((cp, _)), Some(before)) = (&checkpoints, before) {
            *cp.stats.lock().expect("stats lock") = before;
        }
        deployed.run.store(run, Ordering::Relaxed);
        *deployed.checkpoints.lock().expect("checkpoints lock") = checkpoints.as_ref().map(|(cp, _)| cp.clone());
        self.workflows.lock().expect("workflows lock").insert(deployed.id, deployed.clone());
        self.step(Event::Deployed { id: run, workers: workers.iter().map(|w| w.name.clone()).collect() });
        for (i, w) in workers.iter().enumerate() {
            // What its instances resume from goes before its deploy.
            if let Some((_, restores)) = &checkpoints {
                for chunk in crate::runtime::checkpoint::part::pieces(&restores[i], crate::runtime::worker::DATA_CHUNK) {
                    self.send(&w.name, ControlMsg::Restore { id: run, chunk: chunk.to_vec() });
                }
            }
            self.send(&w.name, message.clone());
        }
        if let Some((cp, _)) = checkpoints {
            self.tick_checkpoints(run, cp, deployed);
        }
        tracing::info!(workflow = deployed.id, run, workers = workers.len(), "deployed");
        Ok(resumed_from)
    }
}
