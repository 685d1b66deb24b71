//! What a deploy decides before it starts anything: the workflow is
//! valid, there are workers, every strategy places its instances, and the
//! message fits a frame; and what an upgrade asks before it stops the
//! running version.

use std::sync::Arc;

use super::Master;
use crate::net::{ControlMsg, WorkerInfo, WorkflowSpec};
use crate::runtime::dataflow::sink;
use crate::script::Code;
use crate::workflow::{Operator, Plan, Workflow};

/// A workflow checked and placed, ready to send.
pub(super) struct Prepared {
    pub(super) graph: crate::workflow::FlatGraph,
    pub(super) workers: Vec<WorkerInfo>,
    pub(super) message: ControlMsg,
}

impl Master {
    /// Everything a deploy decides before it starts anything: the workflow
    /// is valid, there are workers, every strategy places its instances,
    /// and the message fits a frame. `id` names the deploy message.
    pub(super) fn prepare(&self, wf: &Workflow, code: &Code, id: u64) -> Result<Prepared, String> {
        wf.validate().map_err(|e| e.to_string())?;
        self.prepare_graph(wf.flatten(), code, id)
    }

    /// [`Master::prepare`] of a workflow validated and flattened before
    /// (a run after its first, a workflow recovered after a restart).
    pub(super) fn prepare_graph(&self, graph: crate::workflow::FlatGraph, code: &Code, id: u64) -> Result<Prepared, String> {
        let workers = self.coordinator.lock().expect("coordinator lock").place()?;
        let spec = WorkflowSpec::from_graph(&graph)?;
        // Checks the plan here, where errors reach the user.
        let plan = Plan::new(graph.clone());
        let slots = workers.iter().map(|w| w.slots).min().unwrap_or(1).max(1);
        let sources: Vec<(String, String)> = code.sources.iter().map(|s| (s.name.clone(), s.text.clone())).collect();
        // Where strategies of the user's put their instances: decided here, once.
        let infos: Vec<rhai::Map> = workers.iter().map(|w| w.to_dynamic().cast::<rhai::Map>()).collect();
        let env = crate::script::EngineEnv::new(None, Arc::new(|_: &str| {}));
        let placement = crate::runtime::dataflow::place(&plan, code, &env, &infos, false).map_err(|e| e.to_string())?;
        let placement = placement.into_iter().map(|(s, counts)| (s as u32, counts.into_iter().map(|n| n as u32).collect())).collect();
        let message = ControlMsg::Deploy { id, spec, sources, workers: workers.clone(), slots, placement, checkpoints: false };
        // A message too large for a frame would break the link to every
        // worker: refuse it here, saying why.
        let size = crate::net::value::encoded_len(&message);
        if size + 64 > crate::net::framing::MAX_FRAME {
            return Err(format!(
                "the workflow takes {} MiB to send and a frame holds {} MiB: read large inputs with read_lines rather than \
                 stream_source of an array",
                size >> 20,
                crate::net::framing::MAX_FRAME >> 20
            ));
        }
        Ok(Prepared { graph, workers, message })
    }

    /// What a deploy of `wf` would refuse, found without starting anything
    /// (an upgrade asks before it stops the running version).
    pub fn check_deploy(&self, wf: &Workflow, code: &Code) -> Result<(), String> {
        let Prepared { graph, .. } = self.prepare(wf, code, 0)?;
        for node in &graph.nodes {
            if let Operator::WriteLines(path) = node.op.base() {
                sink::check_path(&node.name, path).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}
