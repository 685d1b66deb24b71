//! Master and workers as real processes on 127.0.0.x (issue 4).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::node::{run, run_with_cookie, Node, COOKIE};
use common::*;

/// Runs a master to the end: `skitter master start ...`.
fn master_run(args: &[&str], tmp: &Path, cookie: &str) -> Outcome {
    let mut all = vec!["master", "start", "--no-log", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    run_with_cookie(tmp, cookie, &all)
}

/// [`master_run`] of workflows that fail as they did before checkpoints:
/// without them, a failed run is not run again.
fn master_run_once(args: &[&str], tmp: &Path) -> Outcome {
    let mut all = vec!["master", "start", "--no-log", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    common::node::run_with_env(tmp, COOKIE, &all, &[("SKITTER_CHECKPOINT_INTERVAL", "0")])
}

fn expected_counts() -> BTreeMap<String, i64> {
    count_words(&std::fs::read_to_string(example("word_count").join("priv/words.txt")).unwrap())
}

fn counts(out: &str) -> BTreeMap<String, i64> {
    out.lines().filter_map(|l| l.strip_prefix("count: ")).map(word_and_count).collect()
}

#[test]
fn word_count_on_a_master_with_two_workers_gives_exact_totals() {
    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.2", &[], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.3", &[], tmp.path());
    let app = example("word_count");
    let out = master_run(&["--app", app.to_str().unwrap(), &w1.addr, &format!("w2@{}", w2.addr)], tmp.path(), COOKIE);
    out.success();
    assert_eq!(counts(&out.stdout()), expected_counts());
}

#[test]
fn workers_may_come_before_the_command_as_the_usage_line_shows() {
    // Usage: skitter master [OPTIONS] [WORKERS]... [COMMAND]
    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.2", &[], tmp.path());
    let wf = "workflow().stream_source(1..=10).count(|x| x % 2).inspect(\"c\")";
    let out = run_with_cookie(tmp.path(), COOKIE, &["master", "--no-log", "--listen", "127.0.0.1:0", &w1.addr, "start", "-d", wf]);
    let mut got = out.success().labelled("c");
    got.sort();
    assert_eq!(got, ["[0, 5]", "[1, 5]"]);
}

#[test]
fn a_master_that_finishes_says_goodbye_and_its_workers_exit_4() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w1 = Node::worker("w1", "127.0.0.2", &[], tmp.path());
    let mut w2 = Node::worker("w2", "127.0.0.3", &[], tmp.path());
    let out =
        master_run(&["-d", "workflow().stream_source(1..=10).count(|x| x % 2).inspect(\"c\")", &w1.addr, &w2.addr], tmp.path(), COOKIE);
    let mut got = out.success().labelled("c");
    got.sort();
    assert_eq!(got, ["[0, 5]", "[1, 5]"]);
    for w in [&mut w1, &mut w2] {
        let status = w.wait(Duration::from_secs(5)).expect("the worker exits with its master");
        assert_eq!(status.code(), Some(4));
        // A goodbye, not a connection that dropped; said once, and not as a warning.
        assert!(w.stderr().contains("went away (the master quit)"), "{}", w.stderr());
        assert_eq!(w.stderr().matches("went away").count(), 1, "{}", w.stderr());
        assert!(!w.stderr().contains("WARN"), "{}", w.stderr());
    }
}

#[test]
fn workers_dial_the_master_and_tags_reach_it() {
    let tmp = tempfile::tempdir().unwrap();
    let script = r#"
        let t = timestamp();
        while workers().len() < 2 && t.elapsed < 15.0 { sleep(0.01); }
        print(`workers ${workers().len()} gpu ${with_tag("gpu").len()} ${with_tag("gpu")[0].name}`);
        let r = deploy(word_totals(priv_path("words.txt")));
        print(`status ${wait(r)}`);
        for pair in results(r) { print(`count: ["${pair[0]}", ${pair[1]}]`); }
    "#;
    let app = example("word_count");
    let mut master = Node::spawn(
        &["master", "start_iex", "--no-log", "--listen", "127.0.0.1:0", "--app", app.to_str().unwrap()],
        tmp.path(),
        COOKIE,
        Some(script),
    );
    // The master's address is in its node file.
    let record = wait_for_file(&tmp.path().join(format!("{}.node", master_name(tmp.path()))));
    let addr = record.lines().next().unwrap().to_string();
    let _w1 = Node::worker("gpu1", "127.0.0.4", &["-t", "gpu", &addr], tmp.path());
    let _w2 = Node::worker("cpu1", "127.0.0.5", &["--tag", "cpu", &format!("skitter_master@vm@{addr}")], tmp.path());
    let status = master.wait(Duration::from_secs(30)).expect("the master's shell ends at the end of its input");
    assert!(status.success(), "{}", master.stderr());
    let stdout = master.stdout();
    assert!(stdout.contains("workers 2 gpu 1 gpu1@"), "{stdout}\n{}", master.stderr());
    assert!(stdout.contains("status finished"), "{stdout}");
    assert_eq!(counts(&stdout), expected_counts());
}

fn master_name(tmp: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(name) = std::fs::read_dir(tmp)
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .find(|n| n.starts_with("skitter_master@") && n.ends_with(".node"))
        {
            return name.trim_end_matches(".node").to_string();
        }
        assert!(Instant::now() < deadline, "no master node file in {}", tmp.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.lines().count() >= 2 {
                return text;
            }
        }
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_wrong_cookie_is_refused_on_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Node::worker("w1", "127.0.0.6", &[], tmp.path());
    let out = master_run(&["-d", "workflow().stream_source([1]).inspect()", &w.addr], tmp.path(), "not-the-cookie-3f8a1d6c9e2b7405");
    out.expect_code(1);
    out.stderr_has("wrong cookie");
    assert!(w.wait_stderr("wrong cookie", Duration::from_secs(5)), "worker side:\n{}", w.stderr());
    // The worker is unharmed: the right cookie works.
    let ok = master_run(&["-d", "workflow().stream_source([1, 2]).inspect(\"v\")", &w.addr], tmp.path(), COOKIE);
    ok.success();
    assert_eq!(ok.labelled("v").len(), 2);
}

#[test]
fn sigkill_of_the_master_makes_its_workers_exit_4_within_2_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w1 = Node::worker("w1", "127.0.0.7", &[], tmp.path());
    let mut w2 = Node::worker("w2", "127.0.0.8", &[], tmp.path());
    let mut master = Node::spawn(&["master", "start", "--no-log", "--listen", "127.0.0.1:0", &w1.addr, &w2.addr], tmp.path(), COOKIE, None);
    assert!(master.wait_stderr("connected to 2 worker(s)", Duration::from_secs(10)), "{}", master.stderr());
    master.kill9();
    let started = Instant::now();
    let s1 = w1.wait(Duration::from_secs(2)).expect("worker 1 still running 2 s after its master died");
    let s2 = w2.wait(Duration::from_secs(2).saturating_sub(started.elapsed())).expect("worker 2 still running 2 s after its master died");
    assert_eq!((s1.code(), s2.code()), (Some(4), Some(4)));
}

#[test]
fn a_worker_without_shutdown_with_master_survives_and_joins_a_second_master() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Node::worker("w1", "127.0.0.9", &["--no-shutdown-with-master"], tmp.path());
    let mut first = Node::spawn(&["master", "start", "--no-log", "--listen", "127.0.0.1:0", &w.addr], tmp.path(), COOKIE, None);
    assert!(first.wait_stderr("connected to 1 worker(s)", Duration::from_secs(10)), "{}", first.stderr());
    first.kill9();
    assert!(w.wait(Duration::from_millis(1500)).is_none(), "the worker exited with its master:\n{}", w.stderr());
    let app = example("word_count");
    let out = master_run(&["--app", app.to_str().unwrap(), &w.addr], tmp.path(), COOKIE);
    out.success();
    assert_eq!(counts(&out.stdout()), expected_counts());
}

#[test]
fn a_worker_killed_mid_run_fails_its_workflow_within_2_seconds_and_the_master_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.10", &[], tmp.path());
    let mut w2 = Node::worker("w2", "127.0.0.11", &[], tmp.path());
    let watch = r#"
        // Without checkpoints: a failed run is not run again.
        let r = deploy(workflow().stream_source(|n| n).map(|x| x + 1).count(|x| x % 5).collect(), #{ checkpoint_interval: 0 });
        let t0 = timestamp();
        while stats(r).read < 5000 && t0.elapsed < 20.0 { sleep(0.005); }
        print("deployed");
        let t = timestamp();
        while status(r) == "running" && t.elapsed < 20.0 { sleep(0.005); }
        print(`after ${t.elapsed}`);
        print(`status ${status(r)}`);
        // The workflow may fail (w1's data link broke) before the master's
        // own link to w2 has closed: wait for that too.
        while workers().len() > 1 && t.elapsed < 20.0 { sleep(0.005); }
        print(`workers ${workers().len()}`);
    "#;
    let mut master =
        Node::spawn(&["master", "start_iex", "--no-log", "--listen", "127.0.0.1:0", &w1.addr, &w2.addr], tmp.path(), COOKIE, Some(watch));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !master.stdout().contains("deployed") {
        assert!(Instant::now() < deadline, "never deployed:\n{}\n{}", master.stdout(), master.stderr());
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = Instant::now();
    w2.kill9();
    let status = master.wait(Duration::from_secs(10)).expect("the master's shell ends");
    let noticed = killed.elapsed();
    assert!(status.success());
    let out = master.stdout();
    // Whichever noticed first, the master (its link to w2 closed) or w1 (its
    // data link to w2 broke), the failure names the worker that died.
    let status_line = out.lines().find(|l| l.starts_with("status ")).unwrap_or_default();
    assert!(status_line.starts_with("status failed:") && status_line.contains("w2@"), "{out}\n{}", master.stderr());
    assert!(out.contains("workers 1"), "the master kept serving:\n{out}");
    assert!(noticed < Duration::from_secs(2) + Duration::from_millis(500), "noticed after {noticed:?}");
    drop(w1);
}

#[test]
fn a_graceful_stop_of_a_running_million_record_workflow_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.12", &[], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.13", &[], tmp.path());
    let script = r#"
        let r = deploy(workflow().stream_source(0..1000000).map(|x| x * 1).count(|x| x % 7).collect());
        let t = timestamp();
        sleep(0.3);
        print(`stop ${stop(r)}`);
        for pair in results(r) { print(`residue ${pair[0]} ${pair[1]}`); }
    "#;
    let mut master =
        Node::spawn(&["master", "start_iex", "--no-log", "--listen", "127.0.0.1:0", &w1.addr, &w2.addr], tmp.path(), COOKIE, Some(script));
    master.wait(Duration::from_secs(60)).expect("the master's shell ends");
    let out = master.stdout();
    assert!(out.contains("stop stopped") || out.contains("stop finished"), "{out}\n{}", master.stderr());
    let got: BTreeMap<i64, i64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("residue "))
        .map(|l| {
            let (k, n) = l.split_once(' ').unwrap();
            (k.parse().unwrap(), n.parse().unwrap())
        })
        .collect();
    let n: i64 = got.values().sum();
    assert!(n > 0, "nothing was counted:\n{out}");
    // The source emits 0, 1, 2, ... in order: what was read is a prefix.
    let expected: BTreeMap<i64, i64> = (0..7).map(|k| (k, (n - k + 6) / 7)).filter(|(_, c)| *c > 0).collect();
    assert_eq!(got, expected, "records in != records out (n = {n})");
}

#[test]
fn garbage_and_oversized_frames_do_not_take_a_node_down() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Node::worker("w1", "127.0.0.14", &[], tmp.path());
    // A data frame of arrays nested 100,000 deep, before any handshake: it
    // used to overflow the stack of the thread reading it. Now nothing a
    // stranger sends is decoded, and nothing larger than a handshake is read.
    let mut deep = vec![16u8, 1, 0, 0, 0, 1];
    for _ in 0..100_000 {
        deep.extend([6u8, 1]);
    }
    deep.push(0);
    let deep = [(deep.len() as u32).to_be_bytes().to_vec(), deep].concat();
    let hostile: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        &[0, 0, 0, 100, 1, 2],
        &[0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef],
        &deep,
    ];
    for bytes in hostile {
        let mut s = std::net::TcpStream::connect(&w.addr).unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        let _ = s.read_to_end(&mut sink);
    }
    assert!(w.wait_stderr("refused a connection", Duration::from_secs(5)), "{}", w.stderr());
    assert!(w.wait_stderr("a handshake message of 18245 bytes (the limit is 2048)", Duration::from_secs(5)), "{}", w.stderr());
    let out = master_run(&["-d", "workflow().stream_source(1..=100).count(|x| x % 2).collect()", &w.addr], tmp.path(), COOKIE);
    out.success();
}

#[test]
fn a_record_that_cannot_travel_fails_its_workflow_with_the_reason() {
    // A generator source runs on one worker; the map after it on both, so
    // the source's batches cross to the other worker.
    let tmp = tempfile::tempdir().unwrap();
    let stay = ["--no-shutdown-with-master"];
    let w1 = Node::worker("w1", "127.0.0.2", &stay, tmp.path());
    let w2 = Node::worker("w2", "127.0.0.3", &stay, tmp.path());
    let cases = [
        (
            r#"workflow().stream_source(|n| if n < 5000 { Fn("words") } else { () }).map(|x| 1).collect()"#,
            "a value of type `Fn` cannot be sent",
        ),
        (
            "workflow().stream_source(|n| if n < 5000 { let a = 1; for i in 0..200 { a = [a] } a } else { () }).map(|x| 1).collect()",
            "nested more than 128 levels deep cannot be sent",
        ),
    ];
    for (wf, reason) in cases {
        let out = master_run_once(&["-d", wf, &w1.addr, &w2.addr], tmp.path());
        assert_eq!(out.code(), Some(1), "{}", out.stderr());
        out.stderr_has(reason);
        assert_eq!(out.stderr().matches(reason).count(), 1, "said once:\n{}", out.stderr());
    }
    // The workers are still there for the next workflow.
    let out =
        master_run(&["-d", "workflow().stream_source(1..=100).count(|x| x % 2).inspect(\"c\")", &w1.addr, &w2.addr], tmp.path(), COOKIE);
    let mut got = out.success().labelled("c");
    got.sort();
    assert_eq!(got, ["[0, 50]", "[1, 50]"]);
}

#[test]
fn a_master_without_workers_refuses_to_deploy() {
    let tmp = tempfile::tempdir().unwrap();
    let out = master_run(&["-d", "workflow().stream_source([1]).inspect()"], tmp.path(), COOKIE);
    out.expect_code(1);
    out.stderr_has("no workers");
}

#[test]
fn an_unreachable_worker_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let free = std::net::TcpListener::bind("127.0.0.15:0").unwrap().local_addr().unwrap();
    let started = Instant::now();
    let out = master_run(&["--wait-time", "0.5", &free.to_string()], tmp.path(), COOKIE);
    out.expect_code(1);
    out.stderr_has(&format!("cannot reach the worker at {free}"));
    assert!(started.elapsed() < Duration::from_secs(8), "gave up after --wait-time, not later");
}

/// Issue 25: a master started before its workers exited at once with
/// "Connection refused"; it keeps trying until --wait-time.
#[test]
fn a_master_started_before_its_workers_waits_for_them() {
    let tmp = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = ["127.0.0.116", "127.0.0.117"]
        .iter()
        .map(|ip| std::net::TcpListener::bind(format!("{ip}:0")).unwrap().local_addr().unwrap().port())
        .collect();
    let addrs = [format!("127.0.0.116:{}", ports[0]), format!("127.0.0.117:{}", ports[1])];
    let app = example("word_count");
    let mut master = Node::spawn(
        &["master", "start", "--no-log", "--listen", "127.0.0.1:0", "--app", app.to_str().unwrap(), &addrs[0], &addrs[1]],
        tmp.path(),
        COOKIE,
        None,
    );
    // The master is up and dialing; only now do the workers start.
    let _w1 = Node::spawn(&["worker", "start", "--no-log", "-n", "w1", "--listen", &addrs[0]], tmp.path(), COOKIE, None);
    let _w2 = Node::spawn(&["worker", "start", "--no-log", "-n", "w2", "--listen", &addrs[1]], tmp.path(), COOKIE, None);
    let status = master.wait(Duration::from_secs(30)).expect("the master ends");
    assert_eq!(status.code(), Some(0), "{}", master.stderr());
    assert_eq!(counts(&master.stdout()), expected_counts());
}

#[test]
fn a_worker_given_twice_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.118", &[], tmp.path());
    let out = master_run(&[&w1.addr, &format!("w1@{}", w1.addr)], tmp.path(), COOKIE);
    out.expect_code(2).stderr_has(&format!("the worker at {} is given twice", w1.addr));
    // The worker was never asked, and still runs without a master.
    assert!(w1.stderr().lines().all(|l| !l.contains("master")), "{}", w1.stderr());
}

#[test]
fn daemon_pid_and_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| run(tmp.path(), args);
    let started = run(&["worker", "daemon", "-n", "dw", "--no-log", "--listen", "127.0.0.16:0"]);
    started.success().stdout_has("running as a daemon");
    let pid = run(&["worker", "pid", "-n", "dw"]);
    pid.success();
    let pid: u32 = pid.stdout().trim().parse().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // A second daemon of the same name is refused.
    run(&["worker", "daemon", "-n", "dw", "--no-log"]).expect_code(1).stderr_has("already running");
    run(&["worker", "stop", "-n", "dw"]).success();
    assert!(
        !Path::new(&format!("/proc/{pid}/stat")).exists() || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap().contains(") Z")
    );
    run(&["worker", "pid", "-n", "dw"]).expect_code(1).stderr_has("no node named dw@");
}

#[test]
fn a_second_worker_of_the_same_name_and_a_second_master_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Node::worker("solo", "127.0.0.17", &[], tmp.path());
    let master = Node::spawn(&["master", "start", "--no-log", "--listen", "127.0.0.1:0", &w.addr], tmp.path(), COOKIE, None);
    assert!(master.wait_stderr("Running in master mode", Duration::from_secs(5)));
    // The worker has a master: another one is turned away.
    let second = master_run(&[&w.addr], tmp.path(), COOKIE);
    second.expect_code(1).stderr_has("worker already has a master");
    // A worker with a name already registered is turned away too.
    let mut twin =
        Node::spawn(&["worker", "start", "--no-log", "-n", "solo", "--listen", "127.0.0.18:0", &master.addr], tmp.path(), COOKIE, None);
    let status = twin.wait(Duration::from_secs(10)).expect("the twin is refused and exits");
    assert_eq!(status.code(), Some(1));
    assert!(twin.stderr().contains("a worker named solo@"), "{}", twin.stderr());
    assert!(twin.stderr().contains("is already registered"), "{}", twin.stderr());
}

#[test]
fn shutdown_with_workers_makes_the_master_exit_4_when_one_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Node::worker("w1", "127.0.0.19", &[], tmp.path());
    let mut master = Node::spawn(
        &["master", "start", "--no-log", "--shutdown-with-workers", "--listen", "127.0.0.1:0", &w.addr],
        tmp.path(),
        COOKIE,
        None,
    );
    assert!(master.wait_stderr("connected to 1 worker(s)", Duration::from_secs(10)), "{}", master.stderr());
    w.kill9();
    let status = master.wait(Duration::from_secs(2)).expect("the master exits within 2 s");
    assert_eq!(status.code(), Some(4), "{}", master.stderr());
}

#[test]
fn a_worker_that_stops_gracefully_says_goodbye_to_its_master() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Node::worker("w1", "127.0.0.20", &[], tmp.path());
    let mut master = Node::spawn(
        &["master", "start", "--no-log", "--shutdown-with-workers", "--listen", "127.0.0.1:0", &w.addr],
        tmp.path(),
        COOKIE,
        None,
    );
    assert!(master.wait_stderr("connected to 1 worker", Duration::from_secs(5)), "{}", master.stderr());
    w.terminate();
    assert_eq!(w.wait(Duration::from_secs(5)).and_then(|s| s.code()), Some(0), "{}", w.stderr());
    let status = master.wait(Duration::from_secs(2)).expect("the master exits within 2 s");
    assert_eq!(status.code(), Some(4), "{}", master.stderr());
    assert!(master.stderr().contains(" went away: it stopped"), "{}", master.stderr());
}

#[test]
fn restart_replaces_a_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| run(tmp.path(), args);
    run(&["worker", "daemon", "-n", "rw", "--no-log", "--listen", "127.0.0.20:0"]).success();
    let first: u32 = run(&["worker", "pid", "-n", "rw"]).stdout().trim().parse().unwrap();
    run(&["worker", "restart", "-n", "rw", "--no-log", "--listen", "127.0.0.20:0"]).success();
    let second: u32 = run(&["worker", "pid", "-n", "rw"]).stdout().trim().parse().unwrap();
    assert_ne!(first, second);
    run(&["worker", "stop", "-n", "rw"]).success();
}

#[test]
fn a_cookie_given_with_c_works_and_warns() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Node::worker("w1", "127.0.0.21", &[], tmp.path());
    let out = Outcome(
        Command::new(BIN)
            .args(["master", "start", "--no-log", "-c", COOKIE, "-d", "workflow().stream_source([1]).inspect(\"one\")", &w.addr])
            .env_remove("SKITTER_COOKIE")
            .env("SKITTER_TMP", tmp.path())
            .env("HOME", tmp.path())
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    );
    out.success().stderr_has("shows in `ps`");
    assert_eq!(out.labelled("one"), vec!["1"]);
}

#[test]
fn a_worker_with_a_shell_joins_its_master_and_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let master = Node::spawn(&["master", "start", "--no-log", "--listen", "127.0.0.22:0"], tmp.path(), COOKIE, None);
    let script = "let t = timestamp();\nwhile workers().len() < 1 && t.elapsed < 10.0 { sleep(0.01); }\nprint(`mode ${runtime_info().mode} master ${runtime_info().has_master} peers ${workers().len()}`);\n";
    let mut worker = Node::spawn(
        &["worker", "start_iex", "--no-log", "-n", "sw", "--listen", "127.0.0.23:0", &master.addr],
        tmp.path(),
        COOKIE,
        Some(script),
    );
    worker.wait(Duration::from_secs(15)).expect("the shell ends with its input");
    // Every worker knows the cluster's workers (here: itself).
    assert!(worker.stdout().contains("mode worker master true peers 1"), "{}\n{}", worker.stdout(), worker.stderr());
}

#[test]
fn everything_the_workers_print_reaches_the_masters_output_before_it_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.19", &[], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.20", &[], tmp.path());
    let out =
        master_run(&["-d", "workflow().stream_source(1..=20000).map(|x| x * 2).inspect(\"v\")", &w1.addr, &w2.addr], tmp.path(), COOKIE);
    out.success();
    assert_eq!(out.labelled("v").len(), 20000, "{}", out.stderr());
}

/// Issue 25: 32 workers on one host dial each other all at once from one
/// address; the gate's limit for strangers turned peers away ("gave way to
/// newer connections while handshaking") and the word count failed.
#[test]
fn thirty_two_workers_on_one_host_count_the_words_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let workers: Vec<Node> = (0..32).map(|i| Node::worker(&format!("sw{i}"), "127.0.0.1", &[], tmp.path())).collect();
    let app = example("word_count");
    let mut args = vec!["--app", app.to_str().unwrap()];
    args.extend(workers.iter().map(|w| w.addr.as_str()));
    let out = master_run(&args, tmp.path(), COOKIE);
    out.success();
    assert_eq!(counts(&out.stdout()), expected_counts());
}
