//! The data path under faults (issue 11): nothing lost, nothing clobbered.
//! Real processes on 127.0.0.x; every wait is for a condition, with a deadline.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::node::{Node, COOKIE};
use common::*;

/// A master with a shell fed `script`, on `workers`.
fn master_with(script: &str, workers: &[&Node], tmp: &Path) -> Node {
    let mut args = vec!["master", "start_iex", "--no-log", "--listen", "127.0.0.1:0"];
    args.extend(workers.iter().map(|w| w.addr.as_str()));
    Node::spawn(&args, tmp, COOKIE, Some(script))
}

/// Waits until `f` holds, failing the test past `limit`.
fn wait_for(limit: Duration, what: &str, f: impl FnMut() -> bool) {
    assert!(wait_until(limit, f), "timed out waiting for {what}");
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn sorted_ints(text: &str) -> Vec<i64> {
    let mut v: Vec<i64> = text.lines().map(|l| l.parse().unwrap_or_else(|_| panic!("not a number: {l:?}"))).collect();
    v.sort();
    v
}

#[test]
fn two_workers_on_one_host_write_one_exact_file_with_write_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let path = out_dir.path().join("out.txt");
    let w1 = Node::worker("w1", "127.0.0.2", &[], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.3", &[], tmp.path());
    let script = format!(
        "let r = deploy(workflow().stream_source(1..=20000).map(|x| x * 1).write_lines({:?}));\nprint(`status ${{wait(r)}}`);\nlet s = stats(r);\nprint(`counts ${{s.read}} ${{s.written}}`);\n",
        path.display().to_string()
    );
    let mut master = master_with(&script, &[&w1, &w2], tmp.path());
    master.wait(Duration::from_secs(30)).expect("the master's shell ends");
    let out = master.stdout();
    assert!(out.contains("status finished"), "{out}\n{}", master.stderr());
    assert!(out.contains("counts 20000 20000"), "{out}");
    assert_eq!(sorted_ints(&std::fs::read_to_string(&path).unwrap()), (1..=20000).collect::<Vec<_>>());
    assert_eq!(names_in(out_dir.path()), vec!["out.txt"], "no temporary file is left");
}

#[test]
fn write_parts_gives_one_part_per_instance_whose_union_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().join("parts");
    let w1 = Node::worker("w1", "127.0.0.4", &[], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.5", &[], tmp.path());
    let script = format!(
        "let r = deploy(workflow().stream_source(1..=20000).map(|x| x * 1).write_parts({:?}));\nprint(`status ${{wait(r)}}`);\n",
        dir.display().to_string()
    );
    let mut master = master_with(&script, &[&w1, &w2], tmp.path());
    master.wait(Duration::from_secs(30)).expect("the master's shell ends");
    assert!(master.stdout().contains("status finished"), "{}\n{}", master.stdout(), master.stderr());
    let names = names_in(&dir);
    // Two slots on each of two workers.
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("part-w1@")) && names.iter().any(|n| n.starts_with("part-w2@")), "{names:?}");
    let all: String = names.iter().map(|n| std::fs::read_to_string(dir.join(n)).unwrap()).collect();
    assert_eq!(sorted_ints(&all), (1..=20000).collect::<Vec<_>>());
}

#[test]
fn sigkill_of_a_worker_fails_the_run_naming_it_and_leaves_no_complete_looking_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let path = out_dir.path().join("out.txt");
    let w1 = Node::worker("w1", "127.0.0.6", &[], tmp.path());
    let mut w2 = Node::worker("w2", "127.0.0.7", &[], tmp.path());
    let wf = format!("workflow().stream_source(|n| n).map(|x| x + 1).write_lines({:?})", path.display().to_string());
    // Without checkpoints (with them, the file holds what completed
    // checkpoints covered: tests/checkpoints.rs).
    let mut master = Node::spawn_with_env(
        &["master", "start", "--no-log", "--listen", "127.0.0.1:0", "--deploy", &wf, &w1.addr, &w2.addr],
        tmp.path(),
        COOKIE,
        None,
        &[("SKITTER_CHECKPOINT_INTERVAL", "0")],
    );
    // Running: lines reach the master's temporary file.
    wait_for(Duration::from_secs(20), "lines in the temporary file", || {
        std::fs::read_dir(out_dir.path())
            .unwrap()
            .any(|e| e.as_ref().map(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(false)).unwrap_or(false))
    });
    w2.kill9();
    let status = master.wait(Duration::from_secs(10)).expect("the master exits");
    assert_eq!(status.code(), Some(1), "{}", master.stderr());
    assert!(master.stderr().contains("workflow failed") && master.stderr().contains("w2@"), "{}", master.stderr());
    assert!(!path.exists(), "a failed run leaves nothing at the output path");
    let kept = out_dir.path().join("out.txt.incomplete");
    assert!(kept.exists(), "the partial output is kept under a name that says so: {:?}", names_in(out_dir.path()));
    assert!(master.stderr().contains("partial output kept at"), "{}", master.stderr());
}

#[test]
fn worker_stop_during_an_endless_workflow_stops_it_drained_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.8", &[], tmp.path());
    let mut w2 = Node::worker("w2", "127.0.0.9", &[], tmp.path());
    let script = r#"
        let r = deploy(workflow().stream_source(|n| n).map(|x| x * 1).count(|x| x % 7).collect());
        let t = timestamp();
        while stats(r).read < 5000 && t.elapsed < 20.0 { sleep(0.005); }
        print("running");
        print(`status ${wait(r)}`);
        let n = 0;
        for pair in results(r) { n += pair[1]; }
        print(`counted ${n} read ${stats(r).read}`);
    "#;
    let mut master = master_with(script, &[&w1, &w2], tmp.path());
    wait_for(Duration::from_secs(20), "the workflow to run", || master.stdout().contains("running"));
    let stopped = Instant::now();
    w2.terminate();
    let code = w2.wait(Duration::from_secs(20)).and_then(|s| s.code());
    eprintln!("worker stop took {:?}", stopped.elapsed());
    assert_eq!(code, Some(0), "{}", w2.stderr());
    master.wait(Duration::from_secs(20)).expect("the master's shell ends");
    let out = master.stdout();
    assert!(out.contains("status stopped: worker w2@"), "{out}\n{}", master.stderr());
    let line = out.lines().find(|l| l.starts_with("counted ")).unwrap_or_else(|| panic!("{out}"));
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(words[1], words[3], "every record read was counted: {line}");
}

#[test]
fn a_graceful_stop_of_a_two_worker_run_counts_at_the_sink_what_the_sources_read() {
    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.14", &[], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.15", &[], tmp.path());
    let script = r#"
        let r = deploy(workflow().stream_source(|n| n).filter(|x| x % 2 == 0).map(|x| x).collect());
        let t = timestamp();
        while stats(r).read < 20000 && t.elapsed < 20.0 { sleep(0.005); }
        print(`status ${stop(r)}`);
        let s = stats(r);
        print(`read ${s.read} written ${s.written} results ${results(r).len()}`);
    "#;
    let mut master = master_with(script, &[&w1, &w2], tmp.path());
    master.wait(Duration::from_secs(30)).expect("the master's shell ends");
    let out = master.stdout();
    assert!(out.contains("status stopped"), "{out}\n{}", master.stderr());
    let line = out.lines().find(|l| l.starts_with("read ")).unwrap_or_else(|| panic!("{out}"));
    let n: Vec<i64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    // The generator emits 0..read in order: half of them are even.
    assert_eq!(n[1], (n[0] + 1) / 2, "{line}");
    assert_eq!(n[1], n[2], "{line}");
}

#[test]
fn a_collect_result_of_40_mb_arrives_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.16", &[], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.17", &[], tmp.path());
    // 40 records of 1 MiB in one batch: 40 MiB, well over a 16 MiB frame.
    let script = r#"
        let r = deploy(workflow().stream_source(0..40).map(|i| { let s = "x"; for k in 0..20 { s += s; } `${i}:` + s }).collect());
        print(`status ${wait(r)}`);
        let total = 0;
        for x in results(r) { total += x.len(); }
        print(`got ${results(r).len()} ${total}`);
    "#;
    let mut master = master_with(script, &[&w1, &w2], tmp.path());
    master.wait(Duration::from_secs(60)).expect("the master's shell ends");
    let out = master.stdout();
    assert!(out.contains("status finished"), "{out}\n{}", master.stderr());
    let prefixes: usize = (0..40).map(|i: usize| format!("{i}:").len()).sum();
    assert!(out.contains(&format!("got 40 {}", 40 * (1 << 20) + prefixes)), "{out}");
}

#[test]
fn late_frames_after_a_failure_do_not_stall_the_next_workflow() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w1 = Node::worker("w1", "127.0.0.18", &[], tmp.path());
    let mut w2 = Node::worker("w2", "127.0.0.19", &[], tmp.path());
    let script = r#"
        let r = deploy(workflow().stream_source(0..300000).map(|x| if x == 20000 { throw "boom" } else { x }).count(|x| x % 3).collect());
        print(`first ${wait(r)}`);
        let r2 = deploy(workflow().stream_source(1..=1000).count(|x| x % 2).collect());
        print(`second ${wait(r2)}`);
        let n = 0;
        for pair in results(r2) { n += pair[1]; }
        print(`second counted ${n}`);
        sleep(60.0);
    "#;
    let master = master_with(script, &[&w1, &w2], tmp.path());
    wait_for(Duration::from_secs(30), "the second workflow", || master.stdout().contains("second counted"));
    let out = master.stdout();
    // The cause ("boom") usually wins; the other worker's "data link closed"
    // can arrive first, and names the worker too.
    assert!(out.contains("first failed:"), "{out}\n{}", master.stderr());
    assert!(out.contains("second finished") && out.contains("second counted 1000"), "{out}\n{}", master.stderr());
    // Nothing of the failed workflow lingers: no sender blocked on a link
    // that nobody reads, so each worker stops at once (a part still running
    // would hold a graceful stop).
    for w in [&mut w1, &mut w2] {
        w.terminate();
        let code = w.wait(Duration::from_secs(5)).and_then(|s| s.code());
        assert_eq!(code, Some(0), "{}", w.stderr());
    }
}

#[test]
fn stop_of_an_operator_stuck_in_a_loop_on_a_cluster_ends_aborted_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.21", &[], tmp.path());
    let script = r#"
        let r = deploy(workflow().stream_source([1, 2, 3]).map(|x| x).name("pass").map(|x| { loop {} }).name("spin").collect());
        let t = timestamp();
        while stats(r).operators.pass.out == 0 && t.elapsed < 20.0 { sleep(0.005); }
        print(`status ${stop(r, 0.5)}`);
    "#;
    let mut master = master_with(script, &[&w1], tmp.path());
    master.wait(Duration::from_secs(20)).expect("the master's shell ends");
    let out = master.stdout();
    assert!(
        out.contains("status aborted: the stop did not drain within 500 ms; operator `spin` was running"),
        "{out}\n{}",
        master.stderr()
    );
}

#[test]
fn stop_of_an_operator_stuck_in_a_loop_ends_within_its_deadline_as_aborted() {
    // `pass` and `spin` run fused, record by record: what `pass` emitted is
    // counted just before `spin` first runs.
    let script = r#"
        fn started(r) { let t = timestamp(); while stats(r).operators.pass.out == 0 && t.elapsed < 20.0 { sleep(0.005); } }
        let r = deploy(workflow().stream_source([1, 2, 3]).map(|x| x).name("pass").map(|x| { loop {} }).name("spin").collect());
        started(r);
        print(`status ${stop(r, 0.2)}`);
        let r2 = deploy(workflow().stream_source([4, 5]).map(|x| x).name("pass").map(|x| { loop {} }).name("spin2").collect());
        started(r2);
        print(`abort ${abort(r2)}`);
    "#;
    let out = Skitter::new().args(["local", "--no-log"]).stdin(script).run();
    out.success();
    out.stdout_has("status aborted: the stop did not drain within 200 ms; operator `spin` was running");
    out.stdout_has("abort aborted: aborted by the user; operator `spin2` was running");
}

#[test]
fn a_workflow_reading_and_writing_the_same_path_keeps_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.txt");
    let text: String = (1..=1000).map(|i| format!("{i}\n")).collect();
    std::fs::write(&path, &text).unwrap();
    let p = path.display().to_string();
    let wf = format!("workflow().read_lines({p:?}).map(|l| l.parse_int() * 2).write_lines({p:?})");
    Skitter::new().args(["local", "start", "--no-log", "--deploy", &wf]).run().success();
    assert_eq!(sorted_ints(&std::fs::read_to_string(&path).unwrap()), (1..=1000).map(|i| i * 2).collect::<Vec<_>>());
    assert_eq!(names_in(dir.path()), vec!["data.txt"]);
}

#[test]
fn a_tcp_line_over_the_limit_fails_the_workflow_naming_the_source_and_the_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let feeder = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let _ = conn.write_all(b"fine\n");
        let _ = conn.write_all(&vec![b'x'; 4 * 1024 * 1024]);
        let _ = conn.write_all(b"\n");
    });
    let wf = format!("workflow().tcp_source(\"127.0.0.1\", {port}, #{{ max_line: 4096 }}).name(\"feed\").collect()");
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", &wf]).run();
    out.expect_code(1);
    out.stderr_has("operator `feed`: line 2 is longer than 4096 bytes");
    let _ = feeder.join();
}

#[test]
fn a_failed_local_run_keeps_its_partial_output_as_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.txt");
    let wf = format!(
        "workflow().stream_source(0..5000).map(|x| if x == 4000 {{ throw \"boom\" }} else {{ x }}).write_lines({:?})",
        path.display().to_string()
    );
    let out = Skitter::new().args(["local", "start", "--no-log", "--slots", "1", "--deploy", &wf]).run();
    out.expect_code(1);
    out.stderr_has("boom");
    out.stderr_has("partial output kept at");
    assert!(!path.exists());
    let kept: BTreeMap<String, usize> = names_in(dir.path())
        .into_iter()
        .map(|n| (n.clone(), std::fs::read_to_string(dir.path().join(&n)).unwrap().lines().count()))
        .collect();
    assert_eq!(kept.keys().collect::<Vec<_>>(), vec!["out.txt.incomplete"], "{kept:?}");
}

#[test]
fn a_workflow_too_large_to_send_is_refused_at_deploy_and_the_workers_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.22", &[], tmp.path());
    let script = r#"
        let s = "x"; for k in 0..20 { s += s; }
        let big = []; for i in 0..20 { big.push(s); }
        try { deploy(workflow().stream_source(big).collect()); print("deployed"); } catch (e) { print(`refused: ${e}`); }
        print(`workers ${workers().len()}`);
        let r = deploy(workflow().stream_source(1..=10).collect());
        print(`then ${wait(r)} ${results(r).len()}`);
    "#;
    let mut master = master_with(script, &[&w1], tmp.path());
    master.wait(Duration::from_secs(30)).expect("the master's shell ends");
    let out = master.stdout();
    assert!(out.contains("refused: ") && out.contains("MiB to send and a frame holds 16 MiB"), "{out}\n{}", master.stderr());
    assert!(out.contains("workers 1") && out.contains("then finished 10"), "{out}\n{}", master.stderr());
}

#[test]
fn results_past_the_cap_fail_the_workflow_saying_so_locally_and_on_a_master() {
    let wf = "workflow().stream_source(0..200000).map(|i| `record number ${i} with some text`).collect()";
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", wf]).env("SKITTER_RESULTS_CAP_MB", "1").run();
    out.expect_code(1);
    out.stderr_has("the results passed the cap of 1 MiB (SKITTER_RESULTS_CAP_MB)");

    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.23", &[], tmp.path());
    let out = std::process::Command::new(BIN)
        .args(["master", "start", "--no-log", "--listen", "127.0.0.1:0", "--deploy", wf, &w1.addr])
        .env("SKITTER_COOKIE", COOKIE)
        .env("SKITTER_TMP", tmp.path())
        .env("HOME", tmp.path())
        .env("SKITTER_RESULTS_CAP_MB", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = Outcome(out);
    out.expect_code(1);
    out.stderr_has("passed the master's cap of 1 MiB (SKITTER_RESULTS_CAP_MB)");
}

#[test]
fn a_failure_is_reported_with_its_cause_never_with_a_consequence() {
    // The failing stage closes its inbox while the source still sends: the
    // source's "the workflow ended" must not win the race to be the reason.
    let wf = "workflow().stream_source(0..200000).keyed_reduce(|x| x % 7, |s, x| if x == 50000 { throw \"boom\" } else { [s + 1, ()] }, 0).collect()";
    for _ in 0..10 {
        let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", wf]).run();
        out.expect_code(1);
        out.stderr_has("workflow failed: operator `keyed_reduce_2` failed on record 50000: boom");
    }
}
