//! File output under checkpoints: a sink's lines are saved with the
//! checkpoint that covers them (in its `.lines` file, beside the states)
//! and reach their file only once it is durable. Each file grows by whole
//! checkpoints: its committed length is recorded in the manifest (`base`,
//! the length before this checkpoint's part, and `len`, after it, with
//! where its pieces are in the `.lines` file), so writing a checkpoint's
//! part again — after a crash between the manifest and the file —
//! truncates to `base` and appends the same bytes: the file never holds a
//! line twice nor loses one.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::store::sync_dir;
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
    /// Where its pieces are in the checkpoint's `.lines` file: offset and length.
    pub pieces: Vec<(u64, u64)>,
}

/// The lines each sink instance was given for a checkpoint, by (stage,
/// instance, the sink's place in its stage).
pub type Parts = HashMap<(usize, usize, usize), Vec<u8>>;

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
                        files.push(OutputFile {
                            node: flat.name.clone(),
                            path: part_path(dir, node, g),
                            from: vec![(s, g, pos)],
                            committed: 0,
                        });
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

    /// Each file's part of a checkpoint: where it starts and ends, and the
    /// pieces to save in the checkpoint's `.lines` file, in that order.
    pub fn marks<'a>(&self, parts: &'a Parts) -> (Vec<OutputMark>, Vec<&'a [u8]>) {
        let (mut marks, mut saved, mut at) = (Vec::new(), Vec::new(), 0u64);
        for f in &self.files {
            let mut pieces = Vec::new();
            let mut added = 0u64;
            for bytes in f.from.iter().filter_map(|k| parts.get(k)).filter(|b| !b.is_empty()) {
                pieces.push((at, bytes.len() as u64));
                saved.push(bytes.as_slice());
                at += bytes.len() as u64;
                added += bytes.len() as u64;
            }
            marks.push(OutputMark { node: f.node.clone(), path: f.path.clone(), base: f.committed, len: f.committed + added, pieces });
        }
        (marks, saved)
    }

    /// Writes a checkpoint's part of every file (`marks` from
    /// [`Outputs::marks`]); `lines` is the checkpoint's `.lines` file.
    pub fn write(&mut self, marks: &[OutputMark], lines: &[u8]) -> Result<(), OutputError> {
        for f in &mut self.files {
            let Some(mark) = marks.iter().find(|m| m.path == f.path) else { continue };
            let pieces: Vec<&[u8]> =
                mark.pieces.iter().map(|&(at, len)| lines.get(at as usize..(at + len) as usize).unwrap_or_default()).collect();
            write_part(&f.node, &f.path, mark, &pieces)?;
            f.committed = mark.len;
        }
        Ok(())
    }

    /// The same, from the pieces as [`Outputs::marks`] listed them.
    pub fn write_saved(&mut self, marks: &[OutputMark], saved: &[&[u8]]) -> Result<(), OutputError> {
        let mut next = saved.iter();
        for f in &mut self.files {
            let Some(mark) = marks.iter().find(|m| m.path == f.path) else { continue };
            let pieces: Vec<&[u8]> = mark.pieces.iter().filter_map(|_| next.next().copied()).collect();
            write_part(&f.node, &f.path, mark, &pieces)?;
            f.committed = mark.len;
        }
        Ok(())
    }
}

/// Makes `path` hold its first `mark.base` bytes and then `pieces`, on disk.
fn write_part(node: &str, path: &Path, mark: &OutputMark, pieces: &[&[u8]]) -> Result<(), OutputError> {
    let io = |action: &'static str| {
        move |e: std::io::Error| OutputError::Io { node: node.into(), action, path: path.into(), error: e.to_string() }
    };
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
            sync_dir(dir).map_err(|e| OutputError::Io {
                node: node.into(),
                action: "sync the directory of",
                path: path.into(),
                error: e.to_string(),
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(path: &Path, base: u64, len: u64) -> OutputMark {
        OutputMark { node: "out".into(), path: path.into(), base, len, pieces: Vec::new() }
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

    /// A checkpoint's part written from memory, and written again from
    /// its `.lines` file (a restore after a crash), gives the same file.
    #[test]
    fn a_part_written_again_from_the_saved_lines_is_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let outputs =
            Outputs { files: vec![OutputFile { node: "w".into(), path: path.clone(), from: vec![(1, 0, 0), (1, 1, 0)], committed: 0 }] };
        let parts: Parts = [((1, 0, 0), b"a\nb\n".to_vec()), ((1, 1, 0), b"c\n".to_vec()), ((9, 9, 9), b"other\n".to_vec())].into();
        let (marks, saved) = outputs.marks(&parts);
        assert_eq!(marks[0].len, 6);
        assert_eq!(saved, [&b"a\nb\n"[..], &b"c\n"[..]]);
        outputs.clone().write_saved(&marks, &saved).unwrap();
        let from_memory = std::fs::read(&path).unwrap();
        std::fs::write(&path, "a\n").unwrap(); // a crash mid-write
        outputs.clone().write(&marks, &saved.concat()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), from_memory);
        assert_eq!(from_memory, b"a\nb\nc\n");
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
