//! `skitter deploy` against a throwaway sshd on loopback (issue 6).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sshd::Sshd;
use common::*;

const COOKIE: &str = "deploy-test-cookie-8c1d4f7a2b9e6035";

fn deploy(sshd: &Sshd, work: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("deploy").arg("--ssh-config").arg(sshd.config()).arg("--working-dir").arg(work).arg("--no-log");
    cmd.args(args)
        .env("SKITTER_COOKIE", COOKIE)
        .env("SKITTER_TMP", work)
        .env("HOME", work)
        .env("TMPDIR", work)
        .env("NO_COLOR", "1")
        .current_dir(work);
    cmd
}

fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> Outcome {
    let cmd = cmd.borrow_mut();
    Outcome(cmd.stdin(Stdio::null()).output().unwrap())
}

/// A child process killed (SIGKILL, by pid) when dropped.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn kill(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Processes whose command line contains `marker`.
fn processes(marker: &str) -> Vec<String> {
    let out = Command::new("pgrep").args(["-af", "--", marker]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.contains("pgrep")).map(str::to_string).collect()
}

fn gone_within(marker: &str, limit: Duration) -> Result<(), Vec<String>> {
    let deadline = Instant::now() + limit;
    loop {
        let left = processes(marker);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(left);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn deploy_to_four_hosts_runs_the_word_count_with_exact_totals() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let app = example("word_count");
    let out = run(deploy(&sshd, work.path(), &["--app", app.to_str().unwrap(), "a1@h1", "a2@h2", "a3@h3", "a4@h4"]));
    out.success();
    out.stderr_has("4 worker(s) ready").stderr_has("connected to 4 worker(s)");
    let got: BTreeMap<String, i64> = out.labelled("count").iter().map(|v| word_and_count(v)).collect();
    let text = std::fs::read_to_string(app.join("priv/words.txt")).unwrap();
    assert_eq!(got, count_words(&text));
    gone_within("--deployed -n a1@h1", Duration::from_secs(3)).unwrap();
}

#[test]
fn a_deploy_expression_with_spaces_and_quotes_arrives_intact_and_tags_reach_the_master() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let expr =
        r#"workflow().stream_source(["two words", "it's \"quoted\"", `${with_tag("gpu").len()} ${with_tag("gpu")[0].name}`]).inspect("v")"#;
    let out = run(deploy(&sshd, work.path(), &["-q", "-d", expr, "b1@h1", "b2@h2:gpu,big"]));
    out.success();
    let mut got = out.labelled("v");
    got.sort();
    assert_eq!(got, vec![r#""1 b2@h2""#.to_string(), r#""it's \"quoted\"""#.to_string(), r#""two words""#.to_string()]);
    assert!(!out.stderr().contains("starting"), "-q prints a summary only:\n{}", out.stderr());
}

#[test]
fn unreachable_hosts_roll_back_and_are_each_named_with_their_reason() {
    let sshd = Sshd::start();
    let free = std::net::TcpListener::bind("127.0.0.30:0").unwrap().local_addr().unwrap().port();
    // A listener that accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.31:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    sshd.alias("refused", "127.0.0.30", free);
    sshd.alias("silent", "127.0.0.31", silent_port);
    sshd.alias("nowhere", "no-such-host.invalid", 22);
    let work = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = run(deploy(
        &sshd,
        work.path(),
        &["--wait-time", "3", "-d", "workflow().stream_source([1]).inspect()", "c1@h1", "c2@h2", "refused", "silent", "nowhere"],
    ));
    out.expect_code(1);
    out.stderr_has("3 of 5 host(s) failed").stderr_has("the 2 worker(s) already started were stopped");
    out.stderr_has("refused: refused").stderr_has("silent: timed out").stderr_has("nowhere: name not resolved");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    gone_within("--deployed -n c1@h1", Duration::from_secs(2)).unwrap();
    gone_within("--deployed -n c2@h2", Duration::from_secs(2)).unwrap();
    drop(silent);
}

#[test]
fn sigkill_of_the_master_leaves_no_worker_and_no_ssh_process() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let child = deploy(&sshd, work.path(), &["-d", "workflow().stream_source(|n| { sleep(0.01); n }).count().collect()", "d1@h1", "d2@h2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("connected to 2 worker(s)") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20)).expect("the master connected to its workers");
    let running = processes("--deployed -n d1@h1");
    assert_eq!(running.len(), 1, "the worker runs: {running:?}");
    child.kill();
    let config = sshd.config().display().to_string();
    gone_within("--deployed -n d1@h1", Duration::from_secs(2)).unwrap_or_else(|left| panic!("workers left: {left:?}"));
    gone_within("--deployed -n d2@h2", Duration::from_secs(2)).unwrap_or_else(|left| panic!("workers left: {left:?}"));
    gone_within(&config, Duration::from_millis(2500)).unwrap_or_else(|left| panic!("ssh processes left: {left:?}"));
    // Nor a directory of ssh control sockets.
    let leftovers = || -> Vec<String> {
        let mut found = Vec::new();
        for dir in [work.path().to_path_buf(), work.path().join(".local/state")] {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with("skitter-ssh") || name.starts_with(".ssh-connection") {
                    found.push(format!("{}/{name}", dir.display()));
                }
            }
        }
        found
    };
    assert!(wait_until(Duration::from_secs(3), || leftovers().is_empty()), "left behind: {:?}", leftovers());
}

#[test]
fn daemon_mode_then_stop_the_workers_and_the_master() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let out = run(deploy(&sshd, work.path(), &["--mode", "daemon", "-n", "dm", "e1@h1", "e2@h2"]));
    let _stop_on_failure = StopMaster(work.path().to_path_buf());
    out.success().stdout_has("running as a daemon");
    assert_eq!(processes("--deployed -n e1@h1").len(), 1, "{}", out.stdout());
    let rpc = run(Command::new(BIN)
        .args(["rpc", "dm", "workers().len()"])
        .env("SKITTER_COOKIE", COOKIE)
        .env("SKITTER_TMP", work.path())
        .env("HOME", work.path()));
    rpc.success().stdout_has("2");
    let stop = run(deploy(&sshd, work.path(), &["--stop", "e1@h1", "e2@h2"]));
    stop.success().stdout_has("stopped the workers on 2 host(s)");
    gone_within("--deployed -n e1@h1", Duration::from_secs(2)).unwrap();
    gone_within("--deployed -n e2@h2", Duration::from_secs(2)).unwrap();
    run(Command::new(BIN).args(["master", "stop", "-n", "dm"]).env("SKITTER_TMP", work.path()).env("HOME", work.path())).success();
}

/// Stops the daemon master `dm` when dropped (whatever the test did).
struct StopMaster(PathBuf);

impl Drop for StopMaster {
    fn drop(&mut self) {
        let _ = Command::new(BIN).args(["master", "stop", "-n", "dm"]).env("SKITTER_TMP", &self.0).env("HOME", &self.0).output();
    }
}

#[test]
fn bad_worker_specs_are_usage_errors() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    run(deploy(&sshd, work.path(), &["@h1"])).expect_code(2).stderr_has("node name before `@` is empty");
    run(deploy(&sshd, work.path(), &["h1", "h1"])).expect_code(2).stderr_has("two workers would be named");
    run(deploy(&sshd, work.path(), &[])).expect_code(2).stderr_has("no workers");
    run(Command::new(BIN)
        .args(["deploy", "--ssh-config", "/nonexistent/ssh_config", "h1"])
        .env("SKITTER_COOKIE", COOKIE)
        .env("HOME", work.path()))
    .expect_code(2)
    .stderr_has("--ssh-config /nonexistent/ssh_config: no such file");
}
