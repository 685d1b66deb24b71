//! File output under checkpoints. A sink's lines wait in memory until the
//! states of the checkpoint that covers them are durable; then they are
//! appended to their file and synced, and only then is the checkpoint's
//! manifest written, recording each file's length. The manifest is the
//! commit: a resume cuts each file back to the length its checkpoint
//! recorded (what a checkpoint that never completed appended goes, and is
//! made again by the replay), so the file never holds a line twice nor
//! loses one, and every line is written once.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::store::sync_dir;
use crate::runtime::dataflow::{sink::part_path, Layout};
use crate::workflow::{Operator, Plan};

/// One file's length when a checkpoint completed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputMark {
    /// The sink's name.
    pub node: String,
    pub path: PathBuf,
    pub len: u64,
}

/// The lines each sink instance was given for a checkpoint, by (stage,
/// instance, the sink's place in its stage).
pub type Parts = HashMap<(usize, usize, usize), Vec<u8>>;

/// Appends what a later checkpoint's sinks were given after what an
/// earlier one's were (a checkpoint given up hands its lines on).
pub fn follow(earlier: &mut Parts, later: Parts) {
    for (key, bytes) in later {
        match earlier.get_mut(&key) {
            Some(before) => before.extend_from_slice(&bytes),
            None => {
                earlier.insert(key, bytes);
            }
        }
    }
}

/// A file output goes to, and the instances whose lines go into it, in order.
#[derive(Debug)]
struct OutputFile {
    node: String,
    path: PathBuf,
    /// (stage, instance, the sink's place in its stage).
    from: Vec<(usize, usize, usize)>,
    /// Its length with what this process appended.
    len: u64,
    /// Its length as of the last completed checkpoint.
    durable: u64,
    /// Open once its first part is written (or it is restored), and
    /// claimed for this writer while it is.
    open: Option<File>,
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if self.open.take().is_some() {
            release(&self.path);
        }
    }
}

/// The files this process's [`Outputs`] write: one writer per file (a
/// part that ended still finishing its last append, when a new one
/// resumes, is waited for).
static WRITING: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// How long a file another workflow here writes is waited for.
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Claims `path` for one writer in this process.
fn claim(node: &str, path: &Path) -> Result<(), OutputError> {
    let deadline = std::time::Instant::now() + CLAIM_WAIT;
    loop {
        let mut writing = WRITING.lock().expect("writing lock");
        if !writing.iter().any(|p| p == path) {
            writing.push(path.to_path_buf());
            return Ok(());
        }
        drop(writing);
        if std::time::Instant::now() >= deadline {
            return Err(OutputError::Busy { node: node.into(), path: path.into() });
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Why a checkpoint's output could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("operator `{node}`: cannot {action} {path}: {error}")]
    Io { node: String, action: &'static str, path: PathBuf, error: String },
    #[error(
        "operator `{node}`: {path} holds {found} bytes, fewer than the {len} its last checkpoint wrote: it was changed outside skitter; \
         deploy with `fresh: true` to start it over"
    )]
    Shorter { node: String, path: PathBuf, found: u64, len: u64 },
    #[error("operator `{node}`: another workflow of this node writes {path} under checkpoints")]
    Busy { node: String, path: PathBuf },
}

/// The most written to a file at once.
const WRITE_CHUNK: usize = 256 << 10;

/// Which sinks' files a process writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writes {
    /// Everything (local mode).
    All,
    /// `write_lines` files only (a cluster's master).
    Lines,
    /// The parts of `write_parts` its instances write (a worker).
    Parts,
}

/// The files this process writes for a workflow's sinks under checkpoints.
#[derive(Debug, Default)]
pub struct Outputs {
    files: Vec<OutputFile>,
}

impl Outputs {
    /// The files of `plan`'s `write_lines` sinks (all their instances
    /// write one file) and `write_parts` sinks (a file per instance) that
    /// this process writes: `writes` says which, `layout` which instances
    /// are here, `node` names this process (in part files' names).
    pub fn of(plan: &Plan, layout: &Layout, node: &str, writes: Writes) -> Outputs {
        let mut files = Vec::new();
        for (n, flat) in plan.graph.nodes.iter().enumerate() {
            let s = plan.stage_of[n];
            let pos = plan.stages[s].nodes.iter().position(|&m| m == n).expect("a node is in its stage");
            let file = |path: PathBuf, from| OutputFile { node: flat.name.clone(), path, from, len: 0, durable: 0, open: None };
            match flat.op.base() {
                Operator::WriteLines(path) if writes != Writes::Parts => {
                    files.push(file(path.clone(), (0..layout.instances(plan, s)).map(|g| (s, g, pos)).collect()))
                }
                Operator::WriteParts(dir) if writes != Writes::Lines => {
                    for g in layout.local_instances(plan, s) {
                        files.push(file(part_path(dir, node, g), vec![(s, g, pos)]));
                    }
                }
                _ => {}
            }
        }
        Outputs { files }
    }

    /// The files' paths.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// Cuts each file back to the length a checkpoint recorded (a resumed
    /// workflow): what was appended for a checkpoint that never completed
    /// goes. A file with no mark starts empty at its first checkpoint.
    pub fn restore(&mut self, marks: &[OutputMark]) -> Result<(), OutputError> {
        for f in &mut self.files {
            let Some(mark) = marks.iter().find(|m| m.path == f.path) else { continue };
            (f.len, f.durable) = (mark.len, mark.len);
            if f.open.take().is_some() {
                release(&f.path);
            }
            f.open = Some(open_claimed(&f.node, &f.path, mark.len)?);
        }
        Ok(())
    }

    /// Appends each file's lines of a checkpoint (taking them out of
    /// `parts`; what no file here takes stays) and makes them durable;
    /// returns every file's length after it, for the manifest.
    pub fn append(&mut self, parts: &mut Parts) -> Result<Vec<OutputMark>, OutputError> {
        let mut marks = Vec::with_capacity(self.files.len());
        for f in &mut self.files {
            let pieces: Vec<Vec<u8>> = f.from.iter().filter_map(|k| parts.remove(k)).collect();
            let added: u64 = pieces.iter().map(|p| p.len() as u64).sum();
            let first = f.open.is_none();
            if first {
                f.open = Some(open_claimed(&f.node, &f.path, f.len)?);
            }
            if added > 0 || first {
                let file = f.open.as_mut().expect("opened above");
                let io = |action: &'static str| {
                    let (node, path) = (f.node.clone(), f.path.clone());
                    move |e: std::io::Error| OutputError::Io { node, action, path, error: e.to_string() }
                };
                // In writes the size of a cache, not one of a buffer's
                // length: the kernel copies a 30 MB write from memory long
                // out of cache several times slower.
                for chunk in pieces.iter().flat_map(|p| p.chunks(WRITE_CHUNK)) {
                    file.write_all(chunk).map_err(io("write"))?;
                }
                file.sync_data().map_err(io("sync"))?;
            }
            for piece in pieces {
                crate::runtime::dataflow::snapshot::give_back(piece);
            }
            f.len += added;
            marks.push(OutputMark { node: f.node.clone(), path: f.path.clone(), len: f.len });
        }
        Ok(marks)
    }

    /// The checkpoint covering what was appended completed.
    pub fn settle(&mut self) {
        for f in &mut self.files {
            f.durable = f.len;
        }
    }

    /// Cuts what was appended for a checkpoint that did not complete (the
    /// workflow failed): each file holds what completed checkpoints wrote.
    pub fn cut_back(&mut self) -> Result<(), OutputError> {
        for f in &mut self.files {
            if let Some(file) = f.open.as_mut().filter(|_| f.len > f.durable) {
                let io = |e: std::io::Error| OutputError::Io {
                    node: f.node.clone(),
                    action: "cut back",
                    path: f.path.clone(),
                    error: e.to_string(),
                };
                file.set_len(f.durable).and_then(|()| file.sync_data()).map_err(io)?;
                use std::io::Seek;
                file.seek(std::io::SeekFrom::Start(f.durable)).map_err(io)?;
                f.len = f.durable;
            }
        }
        Ok(())
    }
}

/// Whether a deploy resuming from checkpoint `m` writes every file its
/// output went to (`paths`): a file it does not write would keep what a
/// checkpoint that never completed appended, and its part would go on in
/// another file.
pub fn check_written<'a>(m: &super::Manifest, paths: impl IntoIterator<Item = &'a Path>) -> Result<(), String> {
    let paths: Vec<&Path> = paths.into_iter().collect();
    match m.outputs.iter().find(|mark| !paths.contains(&mark.path.as_path())) {
        None => Ok(()),
        Some(mark) => Err(format!(
            "operator `{}`: checkpoint {} of `{}` wrote {}, which this deploy would not write (its instance runs on another node now); \
             deploy it where it ran, or with `fresh: true` to start it over",
            mark.node,
            m.id,
            m.name,
            mark.path.display()
        )),
    }
}

/// [`open_at`] for one writer.
fn open_claimed(node: &str, path: &Path, len: u64) -> Result<File, OutputError> {
    claim(node, path)?;
    open_at(node, path, len).inspect_err(|_| release(path))
}

fn release(path: &Path) {
    WRITING.lock().expect("writing lock").retain(|p| p != path);
}

/// Opens `path` for appending at byte `len`: a longer file is cut back
/// (what a checkpoint that never completed appended, or the output of an
/// earlier run when `len` is 0), a shorter one refused. A file it creates
/// is made durable in its directory.
fn open_at(node: &str, path: &Path, len: u64) -> Result<File, OutputError> {
    let io = |action: &'static str| {
        move |e: std::io::Error| OutputError::Io { node: node.into(), action, path: path.into(), error: e.to_string() }
    };
    let existed = path.exists();
    let mut file: File = OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(io("open"))?;
    let found = file.metadata().map_err(io("read"))?.len();
    if found < len {
        return Err(OutputError::Shorter { node: node.into(), path: path.into(), found, len });
    }
    if found != len {
        file.set_len(len).map_err(io("truncate"))?;
        file.sync_data().map_err(io("sync"))?;
    }
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(len)).map_err(io("seek in"))?;
    if !existed {
        // Its name is durable once its directory is ("" is the working one).
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        sync_dir(dir).map_err(|e| OutputError::Io {
            node: node.into(),
            action: "sync the directory of",
            path: path.into(),
            error: e.to_string(),
        })?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(path: &Path, from: Vec<(usize, usize, usize)>) -> Outputs {
        Outputs { files: vec![OutputFile { node: "w".into(), path: path.into(), from, len: 0, durable: 0, open: None }] }
    }

    fn mark(path: &Path, len: u64) -> OutputMark {
        OutputMark { node: "w".into(), path: path.into(), len }
    }

    #[test]
    fn checkpoints_append_their_instances_lines_in_order_and_leave_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "an earlier run\n").unwrap();
        let mut out = outputs(&path, vec![(1, 0, 0), (1, 1, 0)]);
        let mut parts: Parts = [((1, 1, 0), b"c\n".to_vec()), ((1, 0, 0), b"a\nb\n".to_vec()), ((9, 9, 9), b"other\n".to_vec())].into();
        assert_eq!(out.append(&mut parts).unwrap(), vec![mark(&path, 6)]);
        assert_eq!(parts.keys().collect::<Vec<_>>(), [&(9, 9, 9)], "lines of a file elsewhere stay");
        let mut parts: Parts = [((1, 1, 0), b"d\n".to_vec())].into();
        assert_eq!(out.append(&mut parts).unwrap(), vec![mark(&path, 8)]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\nd\n");
    }

    #[test]
    fn a_resume_cuts_what_an_incomplete_checkpoint_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let mut out = outputs(&path, vec![(1, 0, 0)]);
        out.append(&mut [((1, 0, 0), b"a\n".to_vec())].into()).unwrap();
        // Appended for a checkpoint whose manifest was never written.
        out.append(&mut [((1, 0, 0), b"b\n".to_vec())].into()).unwrap();
        drop(out);
        let mut again = outputs(&path, vec![(1, 0, 0)]);
        again.restore(&[mark(&path, 2)]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\n");
        again.append(&mut [((1, 0, 0), b"b\n".to_vec())].into()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
    }

    #[test]
    fn a_failed_checkpoints_lines_are_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let mut out = outputs(&path, vec![(1, 0, 0)]);
        out.append(&mut [((1, 0, 0), b"a\n".to_vec())].into()).unwrap();
        out.settle();
        out.append(&mut [((1, 0, 0), b"b\n".to_vec())].into()).unwrap();
        out.cut_back().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\n");
        assert_eq!(out.append(&mut [((1, 0, 0), b"c\n".to_vec())].into()).unwrap(), vec![mark(&path, 4)]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nc\n");
    }

    #[test]
    fn a_file_has_one_writer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let mut first = outputs(&path, vec![(1, 0, 0)]);
        first.append(&mut [((1, 0, 0), b"a\n".to_vec())].into()).unwrap();
        first.settle();
        let path2 = path.clone();
        let second = std::thread::spawn(move || {
            let mut second = outputs(&path2, vec![(1, 0, 0)]);
            second.restore(&[mark(&path2, 2)]).unwrap();
            second.append(&mut [((1, 0, 0), b"b\n".to_vec())].into()).unwrap()
        });
        // The first writer finishing its last append, then gone.
        std::thread::sleep(std::time::Duration::from_millis(50));
        first.append(&mut [((1, 0, 0), b"late\n".to_vec())].into()).unwrap();
        drop(first);
        assert_eq!(second.join().unwrap(), vec![mark(&path, 4)]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n", "the second writer cut what the first appended late");
    }

    #[test]
    fn given_up_lines_go_before_the_next_checkpoints() {
        let mut earlier: Parts = [((1, 0, 0), b"a\n".to_vec())].into();
        follow(&mut earlier, [((1, 0, 0), b"b\n".to_vec()), ((2, 0, 0), b"x\n".to_vec())].into());
        assert_eq!(earlier[&(1, 0, 0)], b"a\nb\n");
        assert_eq!(earlier[&(2, 0, 0)], b"x\n");
    }

    #[test]
    fn a_file_shorter_than_its_checkpoint_says_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "a\n").unwrap();
        let err = outputs(&path, vec![(1, 0, 0)]).restore(&[mark(&path, 10)]).unwrap_err();
        assert!(err.to_string().contains("holds 2 bytes, fewer than the 10 its last checkpoint wrote"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\n", "the file is left as it was");
    }
}
