//! File output under checkpoints: a sink's lines travel inside the
//! checkpoint that covers them and reach the file only once it is durable.
//! Each file grows by whole checkpoints: its committed length is recorded
//! in the manifest (`base`, the length before this checkpoint's part, and
//! `len`, after it), so writing a checkpoint's part again — after a crash
//! between the manifest and the file — truncates to `base` and appends the
//! same bytes: the file never holds a line twice nor loses one.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::store::sync_dir;
use crate::runtime::dataflow::snapshot::{InstanceState, NodeState};
use crate::runtime::dataflow::{sink::part_path, Layout};
use crate::workflow::{Operator, Plan};

/// One file's part in a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputMark {
    /// The sink's name.
    pub node: String,
    pub path: PathBuf,
    /// The file's length before this checkpoint's part, and after.
    pub base: u64,
    pub len: u64,
}

/// A file output goes to, and the instances whose lines go into it, in order.
#[derive(Clone, Debug)]
struct OutputFile {
    node: String,
    path: PathBuf,
    /// (stage, instance, the sink's place in its stage).
    from: Vec<(usize, usize, usize)>,
    committed: u64,
}

/// Why a checkpoint's output could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("operator `{node}`: cannot {action} {path}: {error}")]
    Io { node: String, action: &'static str, path: PathBuf, error: String },
    #[error(
        "operator `{node}`: {path} holds {found} bytes, fewer than the {base} its last checkpoint wrote: it was changed outside skitter; \
         deploy with `fresh: true` to start it over"
    )]
    Shorter { node: String, path: PathBuf, found: u64, base: u64 },
}

/// The files this process writes for a workflow's sinks under checkpoints.
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    files: Vec<OutputFile>,
}

impl Outputs {
    /// The files of `plan`'s `write_lines` sinks (all their instances
    /// write one file) and `write_parts` sinks (a file per instance) for
    /// the instances `layout` puts here.
    pub fn of(plan: &Plan, layout: &Layout, node: &str) -> Outputs {
        let mut files = Vec::new();
        for (n, flat) in plan.graph.nodes.iter().enumerate() {
            let s = plan.stage_of[n];
            let pos = plan.stages[s].nodes.iter().position(|&m| m == n).expect("a node is in its stage");
            match flat.op.base() {
                Operator::WriteLines(path) if layout.me == 0 => files.push(OutputFile {
                    node: flat.name.clone(),
                    path: path.clone(),
                    from: (0..layout.instances(plan, s)).map(|g| (s, g, pos)).collect(),
                    committed: 0,
                }),
                Operator::WriteParts(dir) => {
                    for g in layout.local_instances(plan, s) {
                        files.push(OutputFile { node: flat.name.clone(), path: part_path(dir, node, g), from: vec![(s, g, pos)], committed: 0 });
                    }
                }
                _ => {}
            }
        }
        Outputs { files }
    }

    /// Starts from the lengths a checkpoint recorded (a resumed workflow).
    pub fn resume_at(&mut self, marks: &[OutputMark]) {
        for f in &mut self.files {
            if let Some(m) = marks.iter().find(|m| m.path == f.path) {
                f.committed = m.len;
            }
        }
    }

    /// Each file's part of a checkpoint of `states`: where it starts and ends.
    pub fn marks(&self, states: &[InstanceState]) -> Vec<OutputMark> {
        let parts = parts_of(states);
        self.files
            .iter()
            .map(|f| {
                let added: usize = f.from.iter().map(|k| parts.get(k).map_or(0, |b| b.len())).sum();
                OutputMark { node: f.node.clone(), path: f.path.clone(), base: f.committed, len: f.committed + added as u64 }
            })
            .collect()
    }

    /// Writes a checkpoint's part of every file (`marks` from [`Outputs::marks`]).
    pub fn write(&mut self, marks: &[OutputMark], states: &[InstanceState]) -> Result<(), OutputError> {
        let parts = parts_of(states);
        for f in &mut self.files {
            let Some(mark) = marks.iter().find(|m| m.path == f.path) else { continue };
            let pieces: Vec<&[u8]> = f.from.iter().filter_map(|k| parts.get(k).copied()).collect();
            write_part(&f.node, &f.path, mark, &pieces)?;
            f.committed = mark.len;
        }
        Ok(())
    }
}

/// The lines each (stage, instance, node) held in a checkpoint.
fn parts_of(states: &[InstanceState]) -> HashMap<(usize, usize, usize), &[u8]> {
    let mut parts = HashMap::new();
    for st in states {
        for (pos, node) in st.nodes.iter().enumerate() {
            if let NodeState::Lines(bytes) = node {
                parts.insert((st.stage as usize, st.instance as usize, pos), bytes.as_slice());
            }
        }
    }
    parts
}

/// Makes `path` hold its first `mark.base` bytes and then `pieces`, on disk.
fn write_part(node: &str, path: &Path, mark: &OutputMark, pieces: &[&[u8]]) -> Result<(), OutputError> {
    let io = |action: &'static str| move |e: std::io::Error| OutputError::Io { node: node.into(), action, path: path.into(), error: e.to_string() };
    let existed = path.exists();
    let mut file: File = OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(io("open"))?;
    let found = file.metadata().map_err(io("read"))?.len();
    if found < mark.base {
        return Err(OutputError::Shorter { node: node.into(), path: path.into(), found, base: mark.base });
    }
    if found != mark.base {
        // What a checkpoint that never completed wrote, or this part written before.
        file.set_len(mark.base).map_err(io("truncate"))?;
    }
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(mark.base)).map_err(io("write"))?;
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, &mut file);
    for piece in pieces {
        out.write_all(piece).map_err(io("write"))?;
    }
    out.flush().map_err(io("write"))?;
    drop(out);
    file.sync_data().map_err(io("sync"))?;
    if !existed {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            sync_dir(dir).map_err(|e| OutputError::Io { node: node.into(), action: "sync the directory of", path: path.into(), error: e.to_string() })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(path: &Path, base: u64, len: u64) -> OutputMark {
        OutputMark { node: "out".into(), path: path.into(), base, len }
    }

    #[test]
    fn a_part_written_twice_leaves_it_once_and_a_leftover_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_part("out", &path, &mark(&path, 0, 2), &[b"a\n"]).unwrap();
        write_part("out", &path, &mark(&path, 2, 6), &[b"b\n", b"c\n"]).unwrap();
        // A crash after the manifest: the same part again.
        write_part("out", &path, &mark(&path, 2, 6), &[b"b\n", b"c\n"]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\n");
        // What a checkpoint that never completed appended is cut.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"junk\n").unwrap();
        write_part("out", &path, &mark(&path, 6, 8), &[b"d\n"]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\nd\n");
    }

    #[test]
    fn a_file_shorter_than_its_checkpoint_says_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "a\n").unwrap();
        let err = write_part("out", &path, &mark(&path, 10, 12), &[b"x\n"]).unwrap_err();
        assert!(err.to_string().contains("fewer than the 10 its last checkpoint wrote"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\n", "the file is left as it was");
    }
}
