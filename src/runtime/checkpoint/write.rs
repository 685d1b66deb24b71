//! Writing one checkpoint, wherever its states were gathered: the states
//! to the store with the lines beside them, the manifest, then the output
//! the checkpoint covers. Blocking: run it off the runtime's threads.

use std::time::Instant;

use super::output::{Outputs, Parts};
use super::store::Store;
use super::Workflow;
use super::{Kind, Manifest};
use crate::net::value::Value;
use crate::runtime::dataflow::snapshot::{InstanceState, InstanceTaken, NodeState, Taken};

/// What a written checkpoint made.
pub struct Written {
    pub bytes: u64,
    /// What `collect()` sinks were given, by sink: results once durable.
    pub collected: Vec<(String, Vec<Value>)>,
}

/// Instances' states as plain data, and the lines their sinks were given
/// (moved out, not copied).
/// `names`: per stage, its nodes' names (for errors naming an operator).
pub fn split(names: &[Vec<String>], instances: Vec<InstanceTaken>) -> Result<(Vec<InstanceState>, Parts), String> {
    let mut parts = Parts::new();
    let mut states = Vec::with_capacity(instances.len());
    for mut taken in instances {
        for (pos, node) in taken.nodes.iter_mut().enumerate() {
            if let Taken::Lines(bytes) = node {
                parts.insert((taken.stage, taken.instance, pos), std::mem::take(bytes));
            }
        }
        let stage_names = names.get(taken.stage).cloned().unwrap_or_default();
        states.push(taken.into_state(&stage_names).map_err(|e| e.to_string())?);
    }
    Ok((states, parts))
}

/// Writes checkpoint `id` (taken at `taken_at_ms`, begun at `began`) of
/// `states` and `parts`, then its output.
#[allow(clippy::too_many_arguments)]
pub fn write(
    wf: &Workflow,
    store: &dyn Store,
    outputs: &mut Outputs,
    id: u64,
    kind: Kind,
    taken_at_ms: u64,
    began: Instant,
    mut states: Vec<InstanceState>,
    parts: Parts,
) -> Result<Written, String> {
    // Collected records become results; the checkpoint need not keep them.
    let mut collected = Vec::new();
    for st in &mut states {
        for (pos, node) in st.nodes.iter_mut().enumerate() {
            if let NodeState::Collected(values) = node {
                if !values.is_empty() {
                    let name = wf.names.get(st.stage as usize).and_then(|n| n.get(pos)).cloned().unwrap_or_default();
                    collected.push((name, std::mem::take(values)));
                }
            }
        }
    }
    states.sort_by_key(|s| (s.stage, s.instance));
    let data = postcard::to_allocvec(&states).map_err(|e| format!("cannot encode the states: {e}"))?;
    let (marks, saved) = outputs.marks(&parts);
    let manifest = Manifest {
        format: super::FORMAT,
        name: wf.name.clone(),
        id,
        kind,
        taken_at_ms,
        duration_ms: began.elapsed().as_millis() as u64,
        bytes: data.len() as u64,
        checksum: crc32fast::hash(&data),
        lines_bytes: saved.iter().map(|p| p.len() as u64).sum(),
        lines_checksum: super::store::checksum(&saved),
        graph: wf.graph.clone(),
        instances: wf.instances.clone(),
        outputs: marks.clone(),
    };
    store.put(&manifest, &data, &saved).map_err(|e| e.to_string())?;
    if let Err(e) = store.prune(&wf.name, wf.kept) {
        tracing::warn!("{e}");
    }
    // Durable: now its output may be seen.
    outputs.write_saved(&marks, &saved).map_err(|e| e.to_string())?;
    drop(saved);
    for (_, buffer) in parts {
        crate::runtime::dataflow::snapshot::give_back(buffer);
    }
    Ok(Written { bytes: data.len() as u64, collected })
}
