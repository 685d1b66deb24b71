//! Helpers of the broker tests: lines to count, a local node, runs that
//! stop after a number of records or lose their broker mid-run.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::Duration;

use super::node::{run, Node, COOKIE};
use super::{count_words, wait_until, Outcome};

/// A server program: on the PATH, or where Debian puts it.
pub fn program(name: &str) -> std::path::PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()));
    on_path
        .or_else(|| ["/usr/sbin", "/usr/bin"].iter().map(|d| std::path::Path::new(d).join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| name.into())
}

pub fn lines(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("w{} w{} w{}", i % 7, i % 11, i % 3)).collect()
}

/// The word count of the test's lines.
pub fn totals(lines: &[String]) -> BTreeMap<String, i64> {
    count_words(&lines.join("\n"))
}

/// A local node on `ip` serving consoles; killed when dropped.
pub fn local_node(tmp: &std::path::Path, ip: &str) -> Node {
    let node = Node::spawn(&["local", "start", "--no-log", "--listen", &format!("{ip}:0")], tmp, COOKIE, None);
    assert!(node.wait_stderr("Running in local mode", Duration::from_secs(10)), "{}", node.stderr());
    node
}

/// Deploys `wf` (a source of 10 records) on the local node, waits until
/// it read them, calls `kill` (the broker goes) and returns what waiting
/// for the workflow gives.
pub fn killed_mid_run(tmp: &std::path::Path, wf: &str, kill: impl FnOnce()) -> Outcome {
    let id = run(tmp, &["rpc", "skitter_local", &format!("deploy({wf}).id")]).success().stdout().trim().to_string();
    let read = wait_until(Duration::from_secs(20), || {
        run(tmp, &["rpc", "skitter_local", &format!("stats(workflows()[{id} - 1].ref).read")]).stdout().trim() == "10"
    });
    assert!(read);
    kill();
    run(tmp, &["rpc", "skitter_local", &format!("wait(workflows()[{id} - 1].ref)")])
}

/// Deploys `wf` on the node `node` over rpc, waits until its source read
/// `read` records, stops it and returns the status.
pub fn run_until_read(tmp: &std::path::Path, node: &str, wf: &str, read: usize) -> String {
    let script = format!(
        "let r = deploy({wf}); let t = timestamp(); while stats(r).read < {read} && t.elapsed < 30.0 {{ sleep(0.01); }} \
         let s = stop(r); print(`${{s}} ${{stats(r).read}}`);"
    );
    run(tmp, &["rpc", node, &format!("{{ {script} }}")]).success().stdout().trim().to_string()
}

/// A broker process a test started: killed (by pid) and reaped when the
/// test kills it or drops it.
pub struct Server(pub Child);

impl Server {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Issue 27: runs `wf` (an endless broker source streaming into the file
/// `out`) with `local start` and checkpoints every 50 ms, `rounds` times:
/// each run gets a batch of new input (`add(round)`, which returns what it
/// added) and is killed with SIGKILL once part of it reached the file. A
/// last run takes the rest and is stopped (a savepoint). Returns the
/// file's lines and the input, both sorted.
pub fn killed_and_resumed(
    tmp: &std::path::Path,
    wf: &str,
    out: &std::path::Path,
    rounds: usize,
    mut add: impl FnMut(usize) -> Vec<String>,
) -> (Vec<String>, Vec<String>) {
    use std::process::{Command, Stdio};
    let start = || {
        Command::new(super::BIN)
            .args(["local", "start", "--no-log", "--slots", "2", "--deploy", wf])
            .current_dir(tmp)
            .env("XDG_STATE_HOME", tmp)
            .env("SKITTER_CHECKPOINT_DIR", tmp.join("ck"))
            .env("SKITTER_CHECKPOINT_INTERVAL", "0.05")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let written = || std::fs::read_to_string(out).map(|t| t.lines().count()).unwrap_or(0);
    let mut input = Vec::new();
    for round in 0..rounds {
        let mut child = start();
        let before = written();
        input.extend(add(round));
        assert!(super::wait_until(Duration::from_secs(60), || written() > before), "round {round}: nothing new reached the file");
        // SAFETY: kill(2) on the pid of a child this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
    }
    let newest = || super::newest_checkpoint(&tmp.join("ck"));
    let before = newest();
    let mut child = start();
    // Everything is in the file, and the run is up: it took a checkpoint.
    let all = super::wait_until(Duration::from_secs(60), || written() >= input.len() && newest() > before);
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "stopped before its endless source ended");
    let mut got: Vec<String> = std::fs::read_to_string(out).unwrap_or_default().lines().map(String::from).collect();
    got.sort();
    input.sort();
    assert!(all, "the last run did not take every record ({} of {})", got.len(), input.len());
    (got, input)
}
