//! Starting a run of a workflow: placed on the workers there are, its
//! checkpoints prepared (the run resumes from the last one), what each
//! worker's instances resume from sent before the deploy itself. A
//! workflow's first run starts at its deploy; later ones when it recovers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::coordinator::Event;
use super::prepare::Prepared;
use super::recovery::Recovery;
use super::{Deployed, Master};
use crate::net::ControlMsg;
use crate::runtime::checkpoint::running;
use crate::runtime::dataflow::sink::{self, FileSink};
use crate::script::Code;
use crate::script::WorkflowRef;
use crate::workflow::{FlatGraph, Plan};
use crate::workflow::{Operator, Stats, Status};

impl Master {
    /// Places run `run` of `deployed` on the workers there are and starts
    /// it (from its last checkpoint, when it has checkpoints); returns the
    /// checkpoint it resumed from.
    pub(super) fn start_run(
        &self,
        run: u64,
        deployed: &Arc<Deployed>,
        graph: &FlatGraph,
        code: Code,
        options: &crate::script::DeployOptions,
    ) -> Result<Option<u64>, String> {
        let Prepared { graph, workers, mut message } = self.prepare_graph(graph.clone(), &code, run)?;
        let plan = Plan::new(graph);
        let ControlMsg::Deploy { slots, placement, checkpoints: on, .. } = &mut message else { unreachable!("prepare makes a deploy") };
        let placed = placement.iter().map(|(s, counts)| (*s as usize, counts.iter().map(|&n| n as usize).collect())).collect();
        let layout = crate::runtime::dataflow::Layout::new(workers.len(), 0, *slots as usize).with_placement(placed);
        *deployed.placement.lock().expect("placement lock") =
            layout.spread(&plan).into_iter().map(|per| per.into_iter().map(|(w, n)| (workers[w].name.clone(), n)).collect()).collect();
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

    /// Deploys a validated, flattened workflow: its first run. One with
    /// checkpoints is recorded as running in its checkpoint directory,
    /// for a master that restarts (`--recover`), until it ends.
    pub(super) fn deploy_graph(
        &self,
        graph: FlatGraph,
        code: Code,
        audience: Option<crate::script::Audience>,
        options: &crate::script::DeployOptions,
    ) -> Result<WorkflowRef, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let run = self.next_run.fetch_add(1, Ordering::Relaxed);
        let sinks: Vec<String> = graph.nodes.iter().filter(|n| matches!(n.op.base(), Operator::Collect)).map(|n| n.name.clone()).collect();
        let plan = Plan::new(graph.clone());
        let checkpointed = crate::runtime::checkpoint::setup::interval_for(&plan, options)? > Duration::ZERO;
        if checkpointed {
            // Two runs of one name would write the same checkpoints and files.
            let name = crate::runtime::checkpoint::setup::name_for(&plan, options)?;
            if let Some(other) = self.running_named(&name) {
                return Err(format!(
                    "workflow `{name}` is already running here as {other}: stop it first, or deploy this one under another name"
                ));
            }
        }
        // Files of `write_lines` are written here: a bad path fails the
        // deploy. Under checkpoints they grow checkpoint by checkpoint.
        let mut files = HashMap::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            if let Operator::WriteLines(path) = node.op.base() {
                match checkpointed {
                    true => sink::check_path(&node.name, path).map_err(|e| e.to_string())?,
                    false => drop(files.insert(i as u32, FileSink::create(&node.name, path).map_err(|e| e.to_string())?)),
                }
            }
        }
        let (status, _) = watch::channel(Status::Running);
        let deployed = Arc::new(Deployed {
            id,
            run: AtomicU64::new(run),
            ending: AtomicBool::new(false),
            status,
            collected: Mutex::new(sinks.into_iter().map(|s| (s, Vec::new())).collect()),
            collected_bytes: AtomicU64::new(0),
            files,
            nodes: Mutex::new(HashMap::new()),
            stats: Mutex::new(Stats::new(&graph)),
            started: std::time::Instant::now(),
            ended_at: Mutex::new(None),
            audience: Mutex::new(audience),
            checkpoints: Mutex::new(None),
            recovery: checkpointed.then(|| Recovery::new(&graph, &code, options)),
            placement: Mutex::new(Vec::new()),
        });
        self.start_run(run, &deployed, &graph, code.clone(), options)?;
        if let (Some(cp), Some(r)) = (deployed.checkpoints(), &deployed.recovery) {
            *r.name.lock().expect("name lock") = Some(cp.wf.name.clone());
            let record = running::Running::of(&cp.wf.name, &graph, &code, options)?;
            if let Err(e) = running::write(&record) {
                tracing::warn!(workflow = id, "{e}: a master started again with --recover will not resume it");
            }
        }
        Ok(WorkflowRef { id })
    }
}
