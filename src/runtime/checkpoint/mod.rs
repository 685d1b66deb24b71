//! Checkpoints: a workflow's progress made durable while it runs.
//!
//! The driver asks the sources for checkpoint N's barrier; barriers flow
//! with the records (`dataflow::align`), each instance takes its state as
//! its barrier passes and goes on (`dataflow::barriers`); once every
//! instance answered, the states (and the lines sinks were given, beside
//! them) are written to a [`store::Store`] with a [`Manifest`], and only
//! then does the checkpoint's output reach its files ([`output`]) and
//! brokers learn what was read. A deploy of a
//! workflow by a name with a checkpoint resumes from it ([`resume`]).
//!
//! The parts: [`coordinator`] decides when a checkpoint starts, completes
//! or is given up (a state machine, no I/O); [`driver`] runs it for a
//! workflow in one process; [`write`] writes one; [`store`] keeps them;
//! [`output`] writes what they cover; [`resume`] finds where to start and
//! [`setup`] prepares a deploy.

pub mod coordinator;
pub mod driver;
pub mod output;
pub mod part;
pub mod rescale;
pub mod resume;
pub mod running;
pub mod setup;
pub mod store;
pub mod write;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::workflow::{Operator, Plan, SourceSpec};

pub use output::OutputMark;

/// The manifest's format; bumped when it or the states change shape.
pub const FORMAT: u32 = 2;

/// What a checkpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Taken while the workflow ran.
    Periodic,
    /// Taken when the workflow was stopped (drained): it resumes from here.
    Savepoint,
    /// Taken when every source had ended: a deploy after it starts over.
    Finished,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Periodic => "periodic",
            Kind::Savepoint => "savepoint",
            Kind::Finished => "finished",
        })
    }
}

/// A completed checkpoint, as its manifest records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The workflow's name.
    pub name: String,
    pub id: u64,
    pub kind: Kind,
    /// When its barriers left the sources (milliseconds since 1970).
    pub taken_at_ms: u64,
    /// From the barriers' start to the manifest in place.
    pub duration_ms: u64,
    /// The states' size and checksum (crc32).
    pub bytes: u64,
    pub checksum: u32,
    /// The workflow's operators as the checkpoint knows them ([`shape`]).
    pub graph: Vec<String>,
    /// Instances per stage.
    pub instances: Vec<u32>,
    /// The files its output went to, and their lengths with it.
    pub outputs: Vec<OutputMark>,
}

/// What checkpoints need to know of a deployed workflow.
pub struct Workflow {
    pub name: String,
    pub graph: Vec<String>,
    pub instances: Vec<u32>,
    /// Per stage, its nodes' names (for errors naming an operator).
    pub names: Vec<Vec<String>>,
    pub interval: Duration,
    pub kept: usize,
    /// The checkpoint it resumed from (0: none).
    pub resumed_from: u64,
}

/// Why a checkpoint could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {}: {error}", path.display())]
    Io { action: &'static str, path: PathBuf, error: String },
    #[error("checkpoint data {} is damaged: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

/// The operators of a workflow as a checkpoint records them: name, kind
/// and ports, in the order of the flat graph. A checkpoint restores only
/// into the same shape.
pub fn shape(plan: &Plan) -> Vec<String> {
    plan.graph
        .nodes
        .iter()
        .map(|n| format!("{}: {} (in: {}; out: {})", n.name, n.op.kind(), n.op.in_ports().join(", "), n.op.out_ports().join(", ")))
        .collect()
}

/// Whether a workflow checkpoints by default: it has a source that may
/// never end.
pub fn has_endless_source(plan: &Plan) -> bool {
    plan.graph.nodes.iter().any(|n| match n.op.base() {
        Operator::Source(SourceSpec::Items(_) | SourceSpec::Range { .. } | SourceSpec::Lines { .. }) => false,
        Operator::Source(SourceSpec::Kafka(k)) => !k.bounded,
        Operator::Source(_) => true,
        _ => false,
    })
}

/// A workflow's name from what it was deployed from: the words of the
/// expression (or of its operators), and a hash of all of it so that two
/// expressions never share a name.
pub fn derived_name(text: &str) -> String {
    let words: Vec<&str> = text.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let mut name = String::new();
    for w in words {
        if name.len() + w.len() + 1 > 40 {
            break;
        }
        if !name.is_empty() {
            name.push('-');
        }
        name.push_str(w);
    }
    // FNV-1a: stable across builds and platforms.
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    if name.is_empty() {
        name.push_str("workflow");
    }
    format!("{name}-{:08x}", hash as u32)
}

/// A name given by the user: it names a directory, so it is plain.
pub fn check_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        Ok(())
    } else {
        Err(format!("workflow name {name:?}: use 1 to 100 letters, digits, `-`, `_` or `.` (not first)"))
    }
}

/// Milliseconds since 1970, for manifests.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_derived_readably_and_differ_for_different_expressions() {
        let a = derived_name("counts(\"in.txt\")");
        assert!(a.starts_with("counts-in-txt-"), "{a}");
        assert_ne!(a, derived_name("counts(\"in2.txt\")"));
        assert_eq!(a, derived_name("counts(\"in.txt\")"));
        assert!(check_name(&a).is_ok());
        assert!(derived_name("!!").starts_with("workflow-"));
    }

    #[test]
    fn a_name_that_is_not_plain_is_refused() {
        assert!(check_name("../etc").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("orders.v2_eu-1").is_ok());
    }
}
