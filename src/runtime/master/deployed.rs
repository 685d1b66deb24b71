//! What a master keeps of a deployed workflow, whatever run of it is
//! current: its status, results, counts, checkpoints and recovery.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rhai::Dynamic;
use tokio::sync::watch;

use super::checkpoints;
use super::recovery;
use super::Master;
use crate::runtime::dataflow::sink::FileSink;
use crate::script::WorkflowRef;
use crate::workflow::{NodeStats, Stats, Status};

pub(super) struct Deployed {
    /// Its id, the user's; the first run's.
    pub(super) id: u64,
    /// Its current run: messages of any other are refused.
    pub(super) run: AtomicU64,
    /// Stopped or aborted by the user: a failure then does not restart it.
    pub(super) ending: AtomicBool,
    pub(super) status: watch::Sender<Status>,
    pub(super) collected: Mutex<BTreeMap<String, Vec<Dynamic>>>,
    /// Encoded bytes of what `collect()` sinks gathered, against the cap.
    pub(super) collected_bytes: AtomicU64,
    /// The files of `write_lines` nodes, by node: written here, on the
    /// master's host, whatever worker the records come from.
    pub(super) files: HashMap<u32, Arc<FileSink>>,
    /// What each worker last reported of its part, and the workflow's nodes.
    pub(super) nodes: Mutex<HashMap<String, Vec<NodeStats>>>,
    /// What the workflow's runs before this one counted, and its nodes.
    pub(super) stats: Mutex<Stats>,
    pub(super) started: std::time::Instant,
    pub(super) ended_at: Mutex<Option<std::time::Instant>>,
    /// The remote console that deployed it, for what it prints; gone
    /// (None) once that console has detached.
    pub(super) audience: Mutex<Option<crate::script::Audience>>,
    /// The current run's checkpoints, when it takes them.
    pub(super) checkpoints: Mutex<Option<Arc<checkpoints::ClusterCheckpoints>>>,
    /// What runs it again after a failure (with checkpoints).
    pub(super) recovery: Option<recovery::Recovery>,
    /// Where the current run's nodes run: per node, workers and instances.
    pub(super) placement: Mutex<crate::script::host::Placement>,
}

impl Deployed {
    pub(super) fn run(&self) -> u64 {
        self.run.load(Ordering::Relaxed)
    }

    pub(super) fn checkpoints(&self) -> Option<Arc<checkpoints::ClusterCheckpoints>> {
        self.checkpoints.lock().expect("checkpoints lock").clone()
    }

    /// Records its sources read, in every run so far.
    pub(super) fn read(&self) -> u64 {
        let mut stats = self.stats.lock().expect("stats lock").clone();
        for nodes in self.nodes.lock().expect("nodes lock").values() {
            stats.add(nodes);
        }
        stats.read()
    }

    /// Adds what the workers of the run that ended counted to the
    /// workflow's counts, for the next run to count on.
    pub(super) fn fold_nodes(&self) {
        let nodes: Vec<Vec<NodeStats>> = self.nodes.lock().expect("nodes lock").drain().map(|(_, n)| n).collect();
        let mut stats = self.stats.lock().expect("stats lock");
        for n in &nodes {
            stats.add(n);
        }
    }
}

impl Master {
    /// The workflow run `run` belongs to, whatever run is current.
    pub(super) fn deployed_of(&self, run: u64) -> Option<Arc<Deployed>> {
        let id = self.runs.lock().expect("runs lock").get(&run).copied()?;
        self.workflows.lock().expect("workflows lock").get(&id).cloned()
    }

    /// The workflow whose current run is `run`; a message of an older run
    /// (fenced) finds none, and is counted.
    pub(super) fn current(&self, run: u64) -> Option<Arc<Deployed>> {
        let wf = self.deployed_of(run)?;
        if wf.run() == run {
            return Some(wf);
        }
        if let Some(r) = &wf.recovery {
            r.stats.lock().expect("recovery lock").fenced += 1;
        }
        tracing::debug!(workflow = wf.id, "refused a message of run {run}: the workflow runs as {} now", wf.run());
        None
    }

    /// The workflow not ended whose checkpoints are kept under `name`.
    pub(super) fn running_named(&self, name: &str) -> Option<WorkflowRef> {
        let workflows = self.workflows.lock().expect("workflows lock");
        workflows.values().find_map(|wf| {
            let same = wf.recovery.as_ref().is_some_and(|r| r.name.lock().expect("name lock").as_deref() == Some(name));
            (same && !wf.status.borrow().is_done()).then_some(WorkflowRef { id: wf.id })
        })
    }
}
