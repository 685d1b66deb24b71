//! Test helpers: run the real binary and check what it did.

#![allow(dead_code)]

pub mod brokers;
pub mod browser;
pub mod node;
pub mod pty;
pub mod sshd;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_skitter");

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn example(name: &str) -> PathBuf {
    repo().join("examples").join(name)
}

/// One run of `skitter`, built up fluently.
pub struct Skitter {
    cmd: Command,
    stdin: Option<String>,
    /// The run's own state directory: checkpoints of a workflow deployed
    /// outside an app go there, never where another run finds them.
    _state: tempfile::TempDir,
}

impl Skitter {
    pub fn new() -> Self {
        let mut cmd = Command::new(BIN);
        cmd.env("NO_COLOR", "1");
        for (k, _) in std::env::vars() {
            if k.starts_with("SKITTER_") {
                cmd.env_remove(k);
            }
        }
        let state = tempfile::tempdir().expect("a state directory");
        cmd.env("XDG_STATE_HOME", state.path());
        Skitter { cmd, stdin: None, _state: state }
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, args: I) -> Self {
        self.cmd.args(args);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub fn dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    pub fn env_remove(mut self, k: &str) -> Self {
        self.cmd.env_remove(k);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.to_string());
        self
    }

    pub fn run(mut self) -> Outcome {
        self.cmd.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("spawn skitter");
        if let Some(text) = self.stdin.take() {
            let mut pipe = child.stdin.take().expect("stdin");
            std::thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            });
        }
        Outcome(child.wait_with_output().expect("wait for skitter"))
    }
}

pub struct Outcome(pub Output);

impl Outcome {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }

    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "exit status\n--- stdout:\n{}\n--- stderr:\n{}", self.stdout(), self.stderr());
        self
    }

    #[track_caller]
    pub fn success(&self) -> &Self {
        self.expect_code(0)
    }

    #[track_caller]
    pub fn stderr_has(&self, text: &str) -> &Self {
        assert!(self.stderr().contains(text), "stderr lacks {text:?}\n--- stderr:\n{}\n--- stdout:\n{}", self.stderr(), self.stdout());
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, text: &str) -> &Self {
        assert!(self.stdout().contains(text), "stdout lacks {text:?}\n--- stdout:\n{}\n--- stderr:\n{}", self.stdout(), self.stderr());
        self
    }

    /// Lines `label: value` of stdout with this label, values as printed.
    pub fn labelled(&self, label: &str) -> Vec<String> {
        let prefix = format!("{label}: ");
        self.stdout().lines().filter_map(|l| l.strip_prefix(&prefix).map(str::to_string)).collect()
    }
}

/// Polls `f` until it holds (true) or `limit` has passed (false).
pub fn wait_until(limit: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Parses `["word", 12]` as printed by `inspect`.
pub fn word_and_count(value: &str) -> (String, i64) {
    let inner = value.trim().trim_start_matches('[').trim_end_matches(']');
    let (w, n) = inner.rsplit_once(", ").unwrap_or_else(|| panic!("not a [word, count] pair: {value}"));
    (w.trim_matches('"').to_string(), n.parse().unwrap_or_else(|_| panic!("not a count: {value}")))
}

/// Word counts computed here, independently of skitter.
pub fn count_words(text: &str) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for w in text.split_whitespace() {
        *counts.entry(w.to_string()).or_insert(0) += 1;
    }
    counts
}

/// A temporary app with the given lib files.
pub fn app_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("skitter.toml"), "name = \"testapp\"\nversion = \"1.2.3\"\n").unwrap();
    for (path, text) in files {
        let file = dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    dir
}

/// The CPU time (user and system) process `pid` has used, from /proc.
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let fields: Vec<u64> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().filter_map(|f| f.parse().ok()).collect()).unwrap_or_default();
    // SAFETY: sysconf with a constant name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let used = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
    std::time::Duration::from_millis(used * 1000 / ticks)
}

/// Waits (at most 20 s) until `pid` has used `more` CPU time since it had
/// used `since`: the busy code it was given runs.
pub fn wait_busy(pid: u32, since: std::time::Duration, more: std::time::Duration) {
    assert!(wait_until(std::time::Duration::from_secs(20), || cpu_time(pid) >= since + more), "process {pid} did not get busy");
}

/// The pid a node recorded in `tmp/` (`skitter master pid` and the like).
pub fn recorded_pid(tmp: &Path, mode: &str, name: &str) -> u32 {
    let out = node::run(tmp, &[mode, "pid", "-n", name]);
    out.stdout().trim().parse().unwrap_or_else(|_| panic!("no pid for {name}: {} {}", out.stdout(), out.stderr()))
}

/// The id of the newest completed checkpoint in a store directory (0: none).
pub fn newest_checkpoint(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter(|f| f.path().extension().is_some_and(|e| e == "json"))
        .filter_map(|f| f.file_name().to_string_lossy().split('.').next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

/// Writes `lines` lines of 6 words from a vocabulary of 500 to `path`,
/// the same for the same `seed`: input for the running-count tests.
pub fn words_input(path: &Path, lines: usize, seed: u64) {
    let mut text = String::new();
    let mut x = seed;
    for _ in 0..lines {
        let words: Vec<String> = (0..6)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                format!("w{}", (x >> 33) % 500)
            })
            .collect();
        text.push_str(&words.join(" "));
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}
