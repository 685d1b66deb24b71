//! Setting a deployed workflow's checkpoints up: whether it has them, its
//! name, its store, and where it starts — from its last checkpoint (its
//! files cut back to the lengths it recorded) or from scratch.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::output::{Outputs, Writes};
use super::resume::{self, Found};
use super::store::{DirStore, Store};
use super::{Manifest, Workflow};
use crate::runtime::dataflow::{Layout, Resume};
use crate::script::DeployOptions;
use crate::settings::checkpoint::{self as settings, DEFAULT_INTERVAL, DEFAULT_KEPT};
use crate::workflow::Plan;

/// A workflow's checkpoints, ready to start.
pub struct Prepared {
    pub workflow: Workflow,
    pub store: Arc<dyn Store>,
    pub outputs: Outputs,
    pub resume: Resume,
    /// The checkpoint it resumes from.
    pub from: Option<Manifest>,
    /// What to tell the user: where it starts.
    pub note: String,
}

/// Where checkpoints go when nothing says: the app's `tmp/checkpoints`,
/// set at start; else the user's state directory.
pub fn default_dir() -> PathBuf {
    crate::script::app::user_state_dir().unwrap_or_else(std::env::temp_dir).join("checkpoints")
}

/// The checkpoint interval a deploy asks for, the node's, or the default
/// (every second with an endless source, off otherwise).
pub fn interval_for(plan: &Plan, options: &DeployOptions) -> Result<Duration, String> {
    if let Some(s) = options.checkpoint_interval {
        return settings::interval(s);
    }
    Ok(settings::get().interval.unwrap_or(if super::has_endless_source(plan) { DEFAULT_INTERVAL } else { Duration::ZERO }))
}

/// The name a deployed workflow's checkpoints are kept under: given, or
/// derived from its deploy expression, or from everything it is (its
/// operators, their functions and their sources' and sinks' settings: two
/// workflows that differ only in a file, a group or a function are two).
pub fn name_for(plan: &Plan, options: &DeployOptions) -> Result<String, String> {
    match (&options.name, &options.expression) {
        (Some(name), _) => super::check_name(name).map(|()| name.clone()),
        (None, Some(expr)) => Ok(super::derived_name(expr)),
        (None, None) => {
            let spec = crate::net::message::WorkflowSpec::from_graph(&plan.graph)?;
            let bytes = postcard::to_allocvec(&spec).map_err(|e| format!("cannot name the workflow: {e}"))?;
            let digest = format!("{:08x}", crc32fast::hash(&bytes));
            Ok(super::derived_name(&format!("{}\n{digest}", super::shape(plan).join("\n"))))
        }
    }
}

/// The store of this node's checkpoints.
pub fn store() -> DirStore {
    DirStore::new(settings::get().dir.unwrap_or_else(default_dir))
}

/// Checkpoints for `plan` laid out as `layout` on node `node`, which
/// writes the files `writes` says: `None` when they are off.
pub fn prepare(plan: &Plan, layout: &Layout, node: &str, writes: Writes, options: &DeployOptions) -> Result<Option<Prepared>, String> {
    let interval = interval_for(plan, options)?;
    if interval.is_zero() {
        if options.name.is_some() || options.fresh {
            tracing::debug!("checkpoints are off: `name` and `fresh` change nothing");
        }
        return Ok(None);
    }
    let name = name_for(plan, options)?;
    let store = store();
    let graph = super::shape(plan);
    let instances: Vec<u32> = (0..plan.stages.len()).map(|s| layout.instances(plan, s) as u32).collect();
    let names = stage_names(plan);
    let mut outputs = Outputs::of(plan, layout, node, writes);
    let found = if options.fresh {
        Err(format!("starting `{name}` fresh"))
    } else {
        resume::find(&store, &name, &graph, &instances, &names).map_err(|e| e.to_string())?
    };
    let (resume, note, resumed_from, from) = match found {
        Ok(found) => {
            if writes == Writes::All {
                super::output::check_written(&found.manifest, outputs.paths())?;
            }
            // What a checkpoint that never completed appended goes.
            outputs.restore(&found.manifest.outputs).map_err(|e| e.to_string())?;
            let note = format!("resuming `{name}` from {}", found.describe());
            let (id, from) = (found.manifest.id, found.manifest.clone());
            (resume_from(found), note, id, Some(from))
        }
        Err(why) => (Resume::default(), why, 0, None),
    };
    let kept = settings::get().kept.unwrap_or(DEFAULT_KEPT);
    let workflow = Workflow { name, graph, instances, names, interval, kept, resumed_from };
    Ok(Some(Prepared { workflow, store: Arc::new(store), outputs, resume, from, note }))
}

/// Per stage, its nodes' names.
pub fn stage_names(plan: &Plan) -> Vec<Vec<String>> {
    plan.stages.iter().map(|st| st.nodes.iter().map(|&n| plan.graph.nodes[n].name.clone()).collect()).collect()
}

impl Prepared {
    /// Whether it resumes from a checkpoint.
    pub fn resumed(&self) -> bool {
        self.workflow.resumed_from > 0
    }
}

fn resume_from(found: Found) -> Resume {
    let mut states = HashMap::new();
    for st in found.into_states() {
        states.insert((st.stage as usize, st.instance as usize), st);
    }
    Resume { states }
}

/// `checkpoints(name)` for scripts: `#{ id, kind, taken, age_s, bytes, duration_ms }`, oldest first.
pub fn listed(name: &str) -> Result<rhai::Array, String> {
    super::check_name(name)?;
    let now = super::now_ms();
    Ok(store()
        .list(name)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|m| {
            let mut map = rhai::Map::new();
            map.insert("id".into(), rhai::Dynamic::from_int(m.id as i64));
            map.insert("kind".into(), m.kind.to_string().into());
            map.insert("taken".into(), rhai::Dynamic::from_int(m.taken_at_ms as i64));
            map.insert("age_s".into(), rhai::Dynamic::from_float(now.saturating_sub(m.taken_at_ms) as f64 / 1000.0));
            map.insert("bytes".into(), rhai::Dynamic::from_int(m.bytes as i64));
            map.insert("duration_ms".into(), rhai::Dynamic::from_int(m.duration_ms as i64));
            rhai::Dynamic::from_map(map)
        })
        .collect())
}
