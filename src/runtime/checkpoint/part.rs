//! A worker's part of a checkpoint as it travels to its master: the
//! states of the worker's instances and the lines its sinks were given,
//! encoded once and sent in pieces on the control link.

use serde::{Deserialize, Serialize};

use super::output::Parts;
use crate::runtime::dataflow::snapshot::{InstanceState, InstanceTaken};

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerPart {
    pub states: Vec<InstanceState>,
    pub lines: Vec<SinkLines>,
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

impl WorkerPart {
    /// What the instances here took, as a part to send.
    /// `names`: per stage, its nodes' names.
    pub fn of(names: &[Vec<String>], instances: Vec<InstanceTaken>) -> Result<WorkerPart, String> {
        let alignment_ms = instances.iter().map(|t| t.alignment.as_millis() as u64).max().unwrap_or(0);
        let (states, parts) = super::write::split(names, instances)?;
        let lines = parts
            .into_iter()
            .map(|((stage, instance, pos), bytes)| SinkLines { stage: stage as u32, instance: instance as u32, pos: pos as u32, bytes })
            .collect();
        Ok(WorkerPart { states, lines, alignment_ms })
    }

    pub fn encode(&self) -> Result<Vec<u8>, String> {
        postcard::to_allocvec(self).map_err(|e| format!("cannot encode the part: {e}"))
    }

    pub fn decode(bytes: &[u8]) -> Result<WorkerPart, String> {
        crate::net::value::decode_bounded(|| postcard::from_bytes(bytes))
    }

    /// Adds this part's states and lines to a checkpoint's (lines of one
    /// sink instance given twice are joined, in order).
    pub fn add_to(self, states: &mut Vec<InstanceState>, parts: &mut Parts) {
        states.extend(self.states);
        for l in self.lines {
            parts.entry((l.stage as usize, l.instance as usize, l.pos as usize)).or_default().extend_from_slice(&l.bytes);
        }
    }
}

/// Pieces of at most `max` bytes.
pub fn pieces(bytes: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    bytes.chunks(max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_survives_its_trip_in_pieces() {
        let part = WorkerPart {
            states: vec![InstanceState { stage: 1, instance: 2, done: false, nodes: Vec::new() }],
            lines: vec![SinkLines { stage: 3, instance: 2, pos: 0, bytes: b"a\nb\n".to_vec() }],
            alignment_ms: 4,
        };
        let bytes = part.encode().unwrap();
        let mut again = Vec::new();
        for p in pieces(&bytes, 3) {
            assert!(p.len() <= 3);
            again.extend_from_slice(p);
        }
        assert_eq!(WorkerPart::decode(&again).unwrap(), part);
        let (mut states, mut parts) = (Vec::new(), Parts::new());
        WorkerPart::decode(&again).unwrap().add_to(&mut states, &mut parts);
        assert_eq!(parts[&(3, 2, 0)], b"a\nb\n");
    }
}
