//! Where a deployed workflow starts: the newest completed checkpoint of
//! its name, when there is one, it is not the record of a finished run,
//! and the workflow has the shape it had; otherwise from scratch.

use super::store::Store;
use super::{Kind, Manifest, StoreError};
use crate::runtime::dataflow::snapshot::{InstanceState, NodeState};

/// Why a workflow cannot resume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    #[error(
        "workflow `{name}` changed since its checkpoint {id}: {change}; deploy with `fresh: true` (or --fresh) to start it over, or deploy it under another name"
    )]
    Changed { name: String, id: u64, change: String },
    #[error("workflow `{name}`: {error}")]
    Store { name: String, error: StoreError },
    #[error(
        "workflow `{name}`: checkpoint {id} was written by another version of skitter (checkpoint format {found}, this one reads {reads}); \
         deploy with `fresh: true` (or --fresh) to start it over"
    )]
    Format { name: String, id: u64, found: u32, reads: u32 },
    #[error("workflow `{name}`: checkpoint {id} does not read: {reason}")]
    Unreadable { name: String, id: u64, reason: String },
}

/// A checkpoint to resume from.
pub struct Found {
    pub manifest: Manifest,
    pub states: Vec<InstanceState>,
}

/// The checkpoint workflow `name` (of shape `graph`, `instances` per
/// stage, `names` of each stage's nodes) resumes from; `Err` to start
/// from scratch, with why.
pub fn find(
    store: &dyn Store,
    name: &str,
    graph: &[String],
    instances: &[u32],
    names: &[Vec<String>],
) -> Result<Result<Found, String>, ResumeError> {
    let listed = store.list(name).map_err(|error| ResumeError::Store { name: name.into(), error })?;
    let Some(newest) = listed.last() else { return Ok(Err(format!("no checkpoint of `{name}`: starting it"))) };
    if newest.kind == Kind::Finished {
        return Ok(Err(format!("`{name}` finished in its last run (checkpoint {}): starting it over", newest.id)));
    }
    if newest.format != super::FORMAT {
        return Err(ResumeError::Format { name: name.into(), id: newest.id, found: newest.format, reads: super::FORMAT });
    }
    check_shape(name, newest, graph, instances)?;
    // The newest whose data reads; a damaged one is passed over, loudly.
    for manifest in listed.iter().rev() {
        match store.data(manifest) {
            Ok(data) => {
                let states: Vec<InstanceState> = crate::net::value::decode_bounded(|| postcard::from_bytes(&data))
                    .map_err(|reason| ResumeError::Unreadable { name: name.into(), id: manifest.id, reason })?;
                check_shape(name, manifest, graph, instances)?;
                let states = super::rescale::rescale(states, &manifest.instances, instances, names)
                    .map_err(|change| ResumeError::Changed { name: name.into(), id: manifest.id, change })?;
                return Ok(Ok(Found { manifest: manifest.clone(), states }));
            }
            Err(e) => {
                tracing::error!("{e}: trying an older checkpoint of `{name}`");
                eprintln!("warning: {e}: trying an older checkpoint of `{name}`");
            }
        }
    }
    Err(ResumeError::Unreadable { name: name.into(), id: newest.id, reason: "no checkpoint of it is intact".into() })
}

fn check_shape(name: &str, m: &Manifest, graph: &[String], instances: &[u32]) -> Result<(), ResumeError> {
    let changed = |change: String| ResumeError::Changed { name: name.into(), id: m.id, change };
    for (i, (was, now)) in m.graph.iter().zip(graph).enumerate() {
        if was != now {
            return Err(changed(format!("operator {} was `{was}`, now `{now}`", i + 1)));
        }
    }
    if m.graph.len() != graph.len() {
        let (more, which) = if m.graph.len() > graph.len() { ("had", &m.graph[graph.len()]) } else { ("has", &graph[m.graph.len()]) };
        let when = if more == "had" { "then" } else { "now" };
        return Err(changed(format!(
            "it {more} {} operators {when}, not {} (`{which}`)",
            m.graph.len().max(graph.len()),
            m.graph.len().min(graph.len())
        )));
    }
    if m.instances.len() != instances.len() {
        return Err(changed(format!("its stages ran with {:?} instances, now {:?}", m.instances, instances)));
    }
    Ok(())
}

impl Found {
    /// The instances' states to start from: output saved in the checkpoint
    /// is written out before the start (not pending again), and after a
    /// savepoint every instance runs again (a stop drained them all).
    pub fn into_states(self) -> Vec<InstanceState> {
        let savepoint = self.manifest.kind == Kind::Savepoint;
        self.states
            .into_iter()
            .map(|mut st| {
                if savepoint {
                    st.done = false;
                }
                for node in &mut st.nodes {
                    if matches!(node, NodeState::Collected(_)) {
                        *node = NodeState::Nothing;
                    }
                }
                st
            })
            .collect()
    }

    /// "checkpoint 12 (periodic, taken 3.2 s ago)".
    pub fn describe(&self) -> String {
        let ago = super::now_ms().saturating_sub(self.manifest.taken_at_ms);
        format!(
            "checkpoint {} ({}, taken {} ago)",
            self.manifest.id,
            self.manifest.kind,
            crate::settings::seconds(std::time::Duration::from_millis(ago))
        )
    }
}
