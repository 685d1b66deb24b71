//! Files that sinks write. A file is written under a temporary name beside
//! its path and appears at its path only when its workflow settles well
//! (finished, or stopped after draining); otherwise what was written is kept
//! at `<path>.incomplete`, and the workflow's status says so. No two
//! instances ever write one file: one process owns each.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::FlowError;
use crate::workflow::Status;

/// Temporary names differ between the workflows of one process.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Bytes buffered before a write reaches the file.
const BUFFER: usize = 64 * 1024;

/// How a file sink ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    /// The file is complete at its path.
    Committed(PathBuf),
    /// What was written is kept under this name.
    Kept(PathBuf),
    /// Nothing had been written; nothing is left.
    Removed,
}

pub struct FileSink {
    operator: String,
    path: PathBuf,
    temp: PathBuf,
    /// `None` once settled.
    writer: Mutex<Option<Writer>>,
    written: AtomicU64,
}

struct Writer {
    file: BufWriter<File>,
    /// When the oldest line still in the buffer was written to it.
    since: Option<Instant>,
    /// Why writing out the buffer on its deadline failed: the next write says so.
    failed: Option<String>,
}

impl Writer {
    /// Hands the buffer to the file (not to the disk: that is for settling).
    fn write_out(&mut self) -> std::io::Result<()> {
        self.since = None;
        self.file.flush()
    }
}

impl super::deadline::DueFlush for FileSink {
    fn is_settled(&self) -> bool {
        FileSink::is_settled(self)
    }

    fn flush_due(&self, deadline: Duration) {
        FileSink::flush_due(self, deadline)
    }
}

/// Whether a file sink can write `path`, checked before anything runs
/// (not at the rename after it): a file's path, in a directory that exists.
pub fn check_path(operator: &str, path: &Path) -> Result<(), FlowError> {
    let refused = |action, error: &str| FlowError::File { operator: operator.into(), action, path: path.into(), error: error.into() };
    if path.is_dir() {
        return Err(refused("write", "it is a directory: give a file's path (write_parts writes a directory of parts)"));
    }
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() => Err(refused("create", "its directory does not exist")),
        _ => Ok(()),
    }
}

impl FileSink {
    /// Creates the temporary file for `path`: a bad path fails here, at
    /// deploy. What is written reaches the file within the batch deadline.
    pub fn create(operator: &str, path: &Path) -> Result<Arc<FileSink>, FlowError> {
        check_path(operator, path)?;
        let name = path.file_name().ok_or_else(|| FlowError::File {
            operator: operator.into(),
            action: "write",
            path: path.into(),
            error: "not a file name".into(),
        })?;
        check_path(operator, path)?;
        let temp = path.with_file_name(format!(
            ".{}.{}-{}.skitter-tmp",
            name.to_string_lossy(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::create(&temp).map_err(|e| FlowError::File {
            operator: operator.into(),
            action: "create",
            path: path.into(),
            error: e.to_string(),
        })?;
        let sink = Arc::new(FileSink {
            operator: operator.into(),
            path: path.into(),
            temp,
            writer: Mutex::new(Some(Writer { file: BufWriter::with_capacity(BUFFER, file), since: None, failed: None })),
            written: AtomicU64::new(0),
        });
        let watched: Arc<dyn super::deadline::DueFlush> = sink.clone();
        super::deadline::watch(Arc::downgrade(&watched));
        Ok(sink)
    }

    fn io_error(&self, action: &'static str, e: std::io::Error) -> FlowError {
        FlowError::File { operator: self.operator.clone(), action, path: self.path.clone(), error: e.to_string() }
    }

    /// The failure of a write on the deadline, which this call reports.
    fn kept_failure(&self, w: &Writer) -> Result<(), FlowError> {
        match &w.failed {
            Some(error) => {
                Err(FlowError::File { operator: self.operator.clone(), action: "write", path: self.path.clone(), error: error.clone() })
            }
            None => Ok(()),
        }
    }

    /// Appends `bytes` (whole lines).
    pub fn write(&self, bytes: &[u8]) -> Result<(), FlowError> {
        let mut writer = self.writer.lock().expect("sink lock");
        let Some(w) = writer.as_mut() else { return Err(FlowError::Ended) };
        self.kept_failure(w)?;
        w.file.write_all(bytes).map_err(|e| self.io_error("write", e))?;
        self.written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let now = Instant::now();
        if now.duration_since(*w.since.get_or_insert(now)) >= super::deadline::get() {
            w.write_out().map_err(|e| self.io_error("write", e))?;
        }
        Ok(())
    }

    /// Whether the file was named or kept: nothing more is written.
    pub fn is_settled(&self) -> bool {
        self.writer.lock().expect("sink lock").is_none()
    }

    /// Hands what is buffered to the file if it has waited `deadline`. A
    /// failure is kept for the next write to report.
    pub fn flush_due(&self, deadline: Duration) {
        let mut writer = self.writer.lock().expect("sink lock");
        let Some(w) = writer.as_mut() else { return };
        if w.since.is_some_and(|t| t.elapsed() >= deadline) {
            if let Err(e) = w.write_out() {
                w.failed.get_or_insert(e.to_string());
            }
        }
    }

    /// Writes out what is buffered and makes it durable: a full disk fails
    /// here, before the file is given its name.
    pub fn flush(&self) -> Result<(), FlowError> {
        let mut writer = self.writer.lock().expect("sink lock");
        let Some(w) = writer.as_mut() else { return Ok(()) };
        self.kept_failure(w)?;
        w.write_out().map_err(|e| self.io_error("write", e))?;
        w.file.get_ref().sync_all().map_err(|e| self.io_error("write", e))
    }

    /// Gives the file its name (`commit`) or keeps what was written as
    /// `<path>.incomplete`; a file that cannot be named is kept so too.
    /// Settling twice changes nothing.
    pub fn settle(&self, commit: bool) -> Result<Settled, FlowError> {
        let Some(mut writer) = self.writer.lock().expect("sink lock").take() else { return Ok(Settled::Removed) };
        let flushed = match writer.failed.take() {
            Some(error) => Err(std::io::Error::other(error)),
            None => writer.write_out().and_then(|()| writer.file.get_ref().sync_all()),
        };
        drop(writer);
        let incomplete = incomplete(&self.path);
        if commit {
            let named = flushed
                .map_err(|e| self.io_error("write", e))
                .and_then(|()| std::fs::rename(&self.temp, &self.path).map_err(|e| self.io_error("rename the output to", e)))
                // The new name is durable once its directory is: before
                // anything the output covers is acknowledged.
                .and_then(|()| sync_dir_of(&self.path).map_err(|e| self.io_error("sync the directory of", e)));
            if let Err(e) = named {
                // Best effort: the error names the file either way.
                let _ = std::fs::rename(&self.temp, &incomplete);
                return Err(e);
            }
            // A leftover from an earlier run that failed would look like
            // this run's; usually there is none to remove.
            let _ = std::fs::remove_file(&incomplete);
            return Ok(Settled::Committed(self.path.clone()));
        }
        if self.written.load(Ordering::Relaxed) == 0 {
            std::fs::remove_file(&self.temp).map_err(|e| self.io_error("remove the temporary file of", e))?;
            return Ok(Settled::Removed);
        }
        std::fs::rename(&self.temp, &incomplete).map_err(|e| self.io_error("keep the partial output of", e))?;
        Ok(Settled::Kept(incomplete))
    }
}

impl Drop for FileSink {
    /// A sink its process never settled (it is exiting) keeps its partial
    /// output under a name that says so.
    fn drop(&mut self) {
        if self.writer.get_mut().map(|w| w.is_some()).unwrap_or(false) {
            let _ = self.settle(false);
        }
    }
}

/// What a `collect()` sink gathered in this process, within a cap on its
/// size: past the cap the workflow fails, saying so, rather than taking
/// the node's memory.
pub struct Results {
    records: Mutex<Vec<rhai::Dynamic>>,
    bytes: AtomicU64,
    cap: u64,
}

impl Results {
    pub fn new(cap: u64) -> Results {
        Results { records: Mutex::new(Vec::new()), bytes: AtomicU64::new(0), cap }
    }

    /// Adds records gathered by operator `operator`.
    pub fn extend(&self, operator: &str, records: Vec<rhai::Dynamic>) -> Result<(), FlowError> {
        let size: u64 = records.iter().map(approximate_size).sum();
        if self.bytes.fetch_add(size, Ordering::Relaxed) + size > self.cap {
            self.records.lock().expect("results lock").clear();
            return Err(FlowError::Operator {
                operator: operator.into(),
                reason: format!(
                    "the results passed the cap of {} MiB (SKITTER_RESULTS_CAP_MB): write large outputs with write_lines or write_parts",
                    self.cap >> 20
                ),
            });
        }
        self.records.lock().expect("results lock").extend(records);
        Ok(())
    }

    pub fn records(&self) -> Vec<rhai::Dynamic> {
        self.records.lock().expect("results lock").clone()
    }
}

/// About how many bytes a record holds: its text, and a word for anything else.
fn approximate_size(v: &rhai::Dynamic) -> u64 {
    if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
        return 16 + s.len() as u64;
    }
    if let Some(a) = v.read_lock::<rhai::Array>() {
        return 16 + a.iter().map(approximate_size).sum::<u64>();
    }
    if let Some(m) = v.read_lock::<rhai::Map>() {
        return 16 + m.iter().map(|(k, v)| k.len() as u64 + approximate_size(v)).sum::<u64>();
    }
    16
}

/// Where a failed workflow's partial output is: `<path>.incomplete`.
pub fn incomplete(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".incomplete");
    PathBuf::from(name)
}

/// What a status adds about the sinks of a workflow that did not commit:
/// where the partial output is.
pub fn kept_note(settled: &[Settled]) -> Option<String> {
    let kept: Vec<String> =
        settled.iter().filter_map(|s| if let Settled::Kept(p) = s { Some(p.display().to_string()) } else { None }).collect();
    (!kept.is_empty()).then(|| format!("partial output kept at {}", kept.join(", ")))
}

/// Settles every file of a workflow: the first error, or where partial
/// output was kept.
pub fn settle_all<'a>(files: impl IntoIterator<Item = &'a FileSink>, commit: bool) -> Result<Option<String>, String> {
    let mut settled = Vec::new();
    let mut error = None;
    for file in files {
        match file.settle(commit) {
            Ok(s) => settled.push(s),
            Err(e) => {
                error.get_or_insert(e.to_string());
            }
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(kept_note(&settled)),
    }
}

/// Settles the files of a workflow that ended with `status` (named when it
/// finished or stopped after draining, kept as incomplete otherwise) and
/// returns the status to publish: it says where partial output is, or why
/// the files could not be named.
pub fn settle_for<'a>(files: impl IntoIterator<Item = &'a FileSink>, status: Status) -> Status {
    let commit = matches!(status, Status::Finished | Status::Stopped(_));
    match (settle_all(files, commit), status) {
        (Err(e), _) => Status::Failed(e),
        (Ok(Some(note)), Status::Failed(reason)) => Status::Failed(format!("{reason} ({note})")),
        (Ok(Some(note)), Status::Aborted(detail)) => Status::Aborted(format!("{detail} ({note})")),
        (_, status) => status,
    }
}

/// Makes the entries of `path`'s directory durable.
fn sync_dir_of(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

/// The part file instance `instance` of a `write_parts` sink writes on
/// node `node`: `dir/part-<node>-<instance>`.
pub fn part_path(dir: &Path, node: &str, instance: usize) -> PathBuf {
    let node: String = node.chars().map(|c| if c == '/' || c.is_control() { '_' } else { c }).collect();
    dir.join(format!("part-{node}-{instance}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_file_appears_whole_at_its_path_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "the input\n").unwrap();
        let sink = FileSink::create("w", &path).unwrap();
        sink.write(b"a\nb\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "the input\n", "the path is untouched until commit");
        assert_eq!(sink.settle(true).unwrap(), Settled::Committed(path.clone()));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
    }

    #[test]
    fn written_lines_reach_the_file_within_the_deadline_and_a_settled_sink_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::create("w", &dir.path().join("out.txt")).unwrap();
        sink.write(b"a\n").unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        while std::fs::read(&sink.temp).unwrap() != b"a\n" {
            assert!(Instant::now() < until, "the line did not reach the file");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!sink.is_settled());
        sink.settle(true).unwrap();
        assert!(sink.is_settled());
    }

    #[test]
    fn a_sink_that_does_not_commit_keeps_its_lines_as_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let sink = FileSink::create("w", &path).unwrap();
        sink.write(b"a\n").unwrap();
        assert_eq!(sink.settle(false).unwrap(), Settled::Kept(incomplete(&path)));
        assert!(!path.exists());
        assert_eq!(std::fs::read_to_string(incomplete(&path)).unwrap(), "a\n");
        assert_eq!(
            kept_note(&[Settled::Kept(incomplete(&path))]).unwrap(),
            format!("partial output kept at {}.incomplete", path.display())
        );
    }

    #[test]
    fn a_file_that_cannot_be_named_is_kept_as_incomplete_and_the_status_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let sink = FileSink::create("w", &path).unwrap();
        // A directory that appears at the path while the workflow runs.
        std::fs::create_dir_all(path.join("in the way")).unwrap();
        sink.write(b"a\n").unwrap();
        let status = settle_for([&*sink], Status::Finished);
        assert!(matches!(&status, Status::Failed(e) if e.contains("cannot rename the output to")), "{status}");
        assert_eq!(std::fs::read_to_string(incomplete(&path)).unwrap(), "a\n");
    }

    #[test]
    fn a_directory_at_the_path_is_refused_at_creation() {
        let dir = tempfile::tempdir().unwrap();
        let err = FileSink::create("out", dir.path()).err().unwrap().to_string();
        assert!(err.contains("is a directory"), "{err}");
    }

    #[test]
    fn an_empty_sink_that_does_not_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::create("w", &dir.path().join("out.txt")).unwrap();
        drop(sink);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_bad_path_fails_at_creation_naming_the_operator() {
        let err = FileSink::create("out", Path::new("/nonexistent-dir/x/out.txt")).err().unwrap();
        assert!(err.to_string().starts_with("operator `out`: cannot create /nonexistent-dir/x/out.txt"), "{err}");
    }

    #[test]
    fn results_past_their_cap_fail_saying_so_and_are_dropped() {
        let results = Results::new(1000);
        results.extend("c", vec![rhai::Dynamic::from("x".repeat(500))]).unwrap();
        let err = results.extend("c", vec![rhai::Dynamic::from("y".repeat(500))]).unwrap_err();
        assert!(err.to_string().contains("the results passed the cap of 0 MiB"), "{err}");
        assert!(results.records().is_empty());
    }

    #[test]
    fn part_files_are_named_by_node_and_instance() {
        assert_eq!(part_path(Path::new("d"), "w1@host", 3), PathBuf::from("d/part-w1@host-3"));
    }
}
