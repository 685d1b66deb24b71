//! Writing one checkpoint, wherever its states were gathered: the states
//! to the store, then the output it covers to its files, then the
//! manifest that makes it a checkpoint. Blocking: run it off the
//! runtime's threads.

use std::time::Instant;

use super::output::{follow, OutputMark, Outputs, Parts};
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

/// What instances handed in for a checkpoint, as plain data.
#[derive(Default)]
pub struct Gathered {
    pub states: Vec<InstanceState>,
    /// The lines their file sinks were given (moved out, not copied).
    pub parts: Parts,
    /// What their `collect()` sinks were given, by sink.
    pub collected: Vec<(String, Vec<Value>)>,
    /// Files other processes wrote this checkpoint's lines to (a
    /// cluster's `write_parts`), and their lengths.
    pub marks: Vec<OutputMark>,
}

impl Gathered {
    /// `names`: per stage, its nodes' names (for errors naming an operator).
    pub fn of(names: &[Vec<String>], instances: Vec<InstanceTaken>) -> Result<Gathered, String> {
        let (states, parts) = split(names, instances)?;
        let mut gathered = Gathered { states, parts, ..Default::default() };
        gathered.take_collected(names);
        Ok(gathered)
    }

    /// Collected records become results: the checkpoint need not keep them.
    pub fn take_collected(&mut self, names: &[Vec<String>]) {
        for st in &mut self.states {
            for (pos, node) in st.nodes.iter_mut().enumerate() {
                if let NodeState::Collected(values) = node {
                    if !values.is_empty() {
                        let name = names.get(st.stage as usize).and_then(|n| n.get(pos)).cloned().unwrap_or_default();
                        self.collected.push((name, std::mem::take(values)));
                    }
                }
            }
        }
    }

    /// What a later checkpoint gathered: its states replace these, its
    /// output follows this one's (a checkpoint given up hands its output
    /// on to the next, which covers it).
    pub fn follow(&mut self, later: Gathered) {
        self.states = later.states;
        follow(&mut self.parts, later.parts);
        self.collected.extend(later.collected);
        for mark in later.marks {
            self.marks.retain(|m| m.path != mark.path);
            self.marks.push(mark);
        }
    }

    /// Another process's part of the same checkpoint.
    pub fn add(&mut self, other: Gathered) {
        self.states.extend(other.states);
        follow(&mut self.parts, other.parts);
        self.collected.extend(other.collected);
        self.marks.extend(other.marks);
    }

    /// Several checkpoints' gatherings, oldest first, as one.
    pub fn joined(all: impl IntoIterator<Item = Gathered>) -> Gathered {
        let mut joined = Gathered::default();
        for g in all {
            joined.follow(g);
        }
        joined
    }
}

/// Instances' states as plain data (what `collect()` sinks were given
/// still in them), and the lines their sinks were given (moved out, not
/// copied). `names`: per stage, its nodes' names.
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
/// what was gathered: its states, then its output, then its manifest.
#[allow(clippy::too_many_arguments)]
pub fn write(
    wf: &Workflow,
    store: &dyn Store,
    outputs: &mut Outputs,
    id: u64,
    kind: Kind,
    taken_at_ms: u64,
    began: Instant,
    gathered: Gathered,
) -> Result<Written, String> {
    let Gathered { mut states, mut parts, collected, marks: elsewhere } = gathered;
    states.sort_by_key(|s| (s.stage, s.instance));
    let data = postcard::to_allocvec(&states).map_err(|e| format!("cannot encode the states: {e}"))?;
    store.put_data(&wf.name, id, &data).map_err(|e| e.to_string())?;
    // The output, then the manifest: the manifest is the commit.
    let commit = || -> Result<(), String> {
        let mut marks = outputs.append(&mut parts).map_err(|e| e.to_string())?;
        if let Some(&(stage, instance, _)) = parts.keys().next() {
            return Err(format!("lines of instance {instance} of stage {stage} have no file to go to here"));
        }
        marks.extend(elsewhere);
        let manifest = Manifest {
            format: super::FORMAT,
            name: wf.name.clone(),
            id,
            kind,
            taken_at_ms,
            duration_ms: began.elapsed().as_millis() as u64,
            bytes: data.len() as u64,
            checksum: crc32fast::hash(&data),
            graph: wf.graph.clone(),
            instances: wf.instances.clone(),
            outputs: marks,
        };
        store.commit(&manifest).map_err(|e| e.to_string())
    };
    if let Err(e) = commit() {
        // Nothing half-written: the files hold what completed checkpoints wrote.
        if let Err(cut) = outputs.cut_back() {
            tracing::error!("{cut}");
        }
        return Err(e);
    }
    outputs.settle();
    if let Err(e) = store.prune(&wf.name, wf.kept) {
        tracing::warn!("{e}");
    }
    Ok(Written { bytes: data.len() as u64, collected })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::Dynamic;

    fn taken(lines: &[u8], collected: &str, count: i64) -> Vec<InstanceTaken> {
        vec![InstanceTaken {
            stage: 1,
            instance: 0,
            done: false,
            nodes: vec![
                Taken::Count(vec![(Dynamic::from("a"), count)]),
                Taken::Lines(lines.to_vec()),
                Taken::Collected(vec![Dynamic::from(collected.to_string())]),
            ],
            alignment: Default::default(),
        }]
    }

    /// Checkpoint 1 was given up; checkpoint 2 covers its output and keeps
    /// its own state.
    #[test]
    fn a_checkpoint_given_up_hands_its_output_to_the_next() {
        let names = vec![Vec::new(), vec!["count".to_string(), "out".into(), "results".into()]];
        let one = Gathered::of(&names, taken(b"a 1\n", "x", 1)).unwrap();
        let two = Gathered::of(&names, taken(b"a 2\n", "y", 2)).unwrap();
        let joined = Gathered::joined([one, two]);
        assert_eq!(joined.parts[&(1, 0, 1)], b"a 1\na 2\n");
        let collected: Vec<String> = joined.collected.iter().flat_map(|(_, v)| v.iter().map(|v| format!("{v:?}"))).collect();
        assert_eq!(joined.collected.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["results", "results"]);
        assert_eq!(collected.len(), 2);
        assert_eq!(joined.states.len(), 1);
        assert_eq!(joined.states[0].nodes[0], NodeState::Count(vec![(Value::Str("a".into()), 2)]));
    }
}
