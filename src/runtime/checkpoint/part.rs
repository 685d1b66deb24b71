//! A worker's part of a checkpoint as it travels to its master: the
//! states of the worker's instances, the lines its sinks were given for
//! the master's files, and the lengths of the part files it wrote itself;
//! encoded once and sent in pieces on the control link. And what a
//! worker resumes from, as its master sends it.

use serde::{Deserialize, Serialize};

use super::output::{OutputMark, Outputs, Parts};
use super::write::Gathered;
use crate::runtime::dataflow::snapshot::{InstanceState, InstanceTaken};

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerPart {
    pub states: Vec<InstanceState>,
    pub lines: Vec<SinkLines>,
    /// The worker's own files (`write_parts`) with this part's lines in them.
    pub marks: Vec<OutputMark>,
    /// The longest an instance here waited for its inputs' barriers.
    pub alignment_ms: u64,
}

/// What one sink instance was given: (stage, instance, place in the stage).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct SinkLines {
    pub stage: u32,
    pub instance: u32,
    pub pos: u32,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// What a worker's instances and files resume from.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerRestore {
    pub states: Vec<InstanceState>,
    /// The lengths of the files the checkpoint's output went to.
    pub outputs: Vec<OutputMark>,
}

impl WorkerPart {
    /// What the instances here took, as a part to send; the lines of the
    /// worker's own files are appended to them first (`outputs`).
    /// `names`: per stage, its nodes' names.
    pub fn of(names: &[Vec<String>], instances: Vec<InstanceTaken>, outputs: &mut Outputs) -> Result<WorkerPart, String> {
        let alignment_ms = instances.iter().map(|t| t.alignment.as_millis() as u64).max().unwrap_or(0);
        // Collected records stay in the states: they become results on the master.
        let (states, mut parts) = super::write::split(names, instances)?;
        let marks = outputs.append(&mut parts).map_err(|e| e.to_string())?;
        let lines = parts
            .into_iter()
            .map(|((stage, instance, pos), bytes)| SinkLines { stage: stage as u32, instance: instance as u32, pos: pos as u32, bytes })
            .collect();
        Ok(WorkerPart { states, lines, marks, alignment_ms })
    }

    pub fn encode(&self) -> Result<Vec<u8>, String> {
        postcard::to_allocvec(self).map_err(|e| format!("cannot encode the part: {e}"))
    }

    pub fn decode(bytes: &[u8]) -> Result<WorkerPart, String> {
        crate::net::value::decode_bounded(|| postcard::from_bytes(bytes))
    }

    /// As a gathering of the master's; `names`: per stage, its nodes' names.
    pub fn into_gathered(self, names: &[Vec<String>]) -> Gathered {
        let mut parts = Parts::new();
        for l in self.lines {
            parts.entry((l.stage as usize, l.instance as usize, l.pos as usize)).or_default().extend_from_slice(&l.bytes);
        }
        let mut gathered = Gathered { states: self.states, parts, collected: Vec::new(), marks: self.marks };
        gathered.take_collected(names);
        gathered
    }
}

/// Pieces of at most `max` bytes.
pub fn pieces(bytes: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    bytes.chunks(max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_part_survives_its_trip_in_pieces() {
        let part = WorkerPart {
            states: vec![InstanceState { stage: 1, instance: 2, done: false, nodes: Vec::new() }],
            lines: vec![SinkLines { stage: 3, instance: 2, pos: 0, bytes: b"a\nb\n".to_vec() }],
            marks: vec![OutputMark { node: "p".into(), path: PathBuf::from("out/part-w1-2"), len: 7 }],
            alignment_ms: 4,
        };
        let bytes = part.encode().unwrap();
        let mut again = Vec::new();
        for p in pieces(&bytes, 3) {
            assert!(p.len() <= 3);
            again.extend_from_slice(p);
        }
        assert_eq!(WorkerPart::decode(&again).unwrap(), part);
        let gathered = WorkerPart::decode(&again).unwrap().into_gathered(&[]);
        assert_eq!(gathered.parts[&(3, 2, 0)], b"a\nb\n");
        assert_eq!(gathered.marks, part.marks);
    }
}
