//! Checkpoints in local mode (issue 27): a run killed with SIGKILL at any
//! moment and run again ends with exactly the output of an undisturbed
//! run; a stop is a savepoint the next deploy resumes from; a workflow
//! that changed is refused on resume; a state that cannot be saved fails
//! the workflow naming its operator.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{newest_checkpoint, wait_until, words_input, Skitter, BIN};

/// A running count over a file: every word emits its count so far, and the
/// totals go to a second file at the end.
const COUNTS: &str = "workflow().read_lines(\"in.txt\").flat_map(|l| l.split(\" \")).keyed_reduce(|w| w, |c, w| [c + 1, w + \" \" + (c + 1)], 0).write_lines(\"out.txt\")";

/// 100,000 lines of 6 words from a vocabulary of 500, as `in.txt` of `dir`.
fn input(dir: &Path) {
    words_input(&dir.join("in.txt"), 100_000, 7);
}

fn local(dir: &Path, checkpoints: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["local", "start", "--no-log", "--slots", "2", "--deploy", COUNTS])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("XDG_STATE_HOME", dir)
        .env("SKITTER_CHECKPOINT_DIR", checkpoints)
        .env("SKITTER_CHECKPOINT_INTERVAL", "0.05")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path).unwrap().lines().map(String::from).collect();
    lines.sort();
    lines
}

#[test]
fn a_run_killed_at_random_moments_and_run_again_writes_exactly_the_undisturbed_output() {
    let calm = tempfile::tempdir().unwrap();
    input(calm.path());
    let out = local(calm.path(), &calm.path().join("ck")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = sorted_lines(&calm.path().join("out.txt"));
    assert_eq!(want.len(), 600_000, "one line per word");

    let dir = tempfile::tempdir().unwrap();
    input(dir.path());
    let ck = dir.path().join("ck");
    let mut seed = std::process::id() as u64;
    let mut kills = 0;
    for _ in 0..3 {
        let mut child = local(dir.path(), &ck).spawn().unwrap();
        // Kill it after the next checkpoint, at a random moment of the one after.
        let before = newest_checkpoint(&ck);
        let progressed = wait_until(Duration::from_secs(60), || newest_checkpoint(&ck) > before || child.try_wait().unwrap().is_some());
        assert!(progressed, "no checkpoint completed within 60 s");
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        std::thread::sleep(Duration::from_millis((seed >> 33) % 60));
        if child.try_wait().unwrap().is_none() {
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            kills += 1;
        }
        child.wait().unwrap();
        // What is in the file is what completed checkpoints covered: no line twice.
        let lines = sorted_lines(&dir.path().join("out.txt"));
        let mut unique = lines.clone();
        unique.dedup();
        assert_eq!(unique.len(), lines.len(), "a line is in the file twice after a kill");
    }
    assert!(kills >= 1, "the run ended before any kill: the test proves nothing");
    let out = local(dir.path(), &ck).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resuming `workflow-read-lines-in-txt-"), "{stderr}");
    assert_eq!(sorted_lines(&dir.path().join("out.txt")), want, "after {kills} kills the output differs from an undisturbed run's");

    // The run finished: the next one starts over, and writes the same file.
    let out = local(dir.path(), &ck).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("resuming"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sorted_lines(&dir.path().join("out.txt")), want);
}

/// Runs a script in local mode with its own checkpoint directory.
fn script(dir: &Path, text: &str) -> common::Outcome {
    std::fs::write(dir.join("s.rhai"), text).unwrap();
    Skitter::new()
        .args(["local", "--no-log", "--slots", "2", "--script", "s.rhai"])
        .dir(dir)
        .env("SKITTER_CHECKPOINT_DIR", dir.join("ck"))
        .run()
}

#[test]
fn a_stop_is_a_savepoint_and_the_next_deploy_carries_every_count_on() {
    let dir = tempfile::tempdir().unwrap();
    let run = r#"
        fn ticks() { workflow().stream_source(|n| n % 10).count().collect() }
        fn once() {
            let r = deploy(ticks(), #{ name: "ticks", checkpoint_interval: 0.1 });
            let since = timestamp();
            while stats(r).read < 3000 && since.elapsed < 60.0 { sleep(0.01); }
            stop(r);
            let total = 0;
            for pair in results(r) { total += pair[1]; }
            [total, stats(r).read]
        }
        let a = once();
        let b = once();
        print(`first: counted all it read: ${a[0] == a[1]}`);
        print(`second: counted both runs: ${b[0] == a[1] + b[1]}`);
        print(`newest: ${checkpoints("ticks")[-1].kind}`);
    "#;
    let out = script(dir.path(), run);
    out.success();
    assert_eq!(out.stdout(), "first: counted all it read: true\nsecond: counted both runs: true\nnewest: savepoint\n");
    assert!(out.stderr().contains("resuming `ticks` from checkpoint"), "{}", out.stderr());
}

/// Issue 27: a redeploy (every upgrade does one) wrote `write_lines(path)`
/// from scratch and renamed it over the committed file, while the input of
/// the earlier output was acknowledged. Now a stopped workflow deployed
/// again appends: the file holds both runs' lines, each once.
#[test]
fn a_redeploy_keeps_the_output_of_the_run_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = r#"
        fn once() {
            let wf = workflow().stream_source(|n| n).map(|n| `${n}`).write_lines("out.txt");
            let r = deploy(wf, #{ name: "seq", checkpoint_interval: 0.1 });
            let since = timestamp();
            while stats(r).read < 2000 && since.elapsed < 60.0 { sleep(0.01); }
            stop(r);
            stats(r).read
        }
        print(once() + once());
    "#;
    let out = script(dir.path(), run);
    out.success();
    let read: usize = out.stdout().trim().parse().unwrap();
    assert!(read >= 4000, "{read}");
    // Two instances of `map` write it: in order per instance.
    let mut got: Vec<usize> = std::fs::read_to_string(dir.path().join("out.txt")).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    got.sort();
    assert!(got.iter().copied().eq(0..read), "the file does not hold 0..{read} once each: {} lines", got.len());
}

#[test]
fn a_workflow_that_changed_is_refused_on_resume_naming_the_change_and_fresh_starts_it_over() {
    let dir = tempfile::tempdir().unwrap();
    let run = r#"
        let r = deploy(workflow().stream_source(|n| n).collect(), #{ name: "g", checkpoint_interval: 0.1 });
        checkpoint(r);
        stop(r);
        try {
            deploy(workflow().stream_source(|n| n).map(|x| x + 1).collect(), #{ name: "g" });
        } catch (e) {
            print(e);
        }
        let r = deploy(workflow().stream_source(|n| n).map(|x| x + 1).collect(), #{ name: "g", fresh: true });
        stop(r);
        print(status(r));
    "#;
    let out = script(dir.path(), run);
    out.success();
    let stdout = out.stdout();
    assert!(
        stdout.contains(
            "deploy: workflow `g` changed since its checkpoint 2: operator 2 was `collect_2: collect (in: in; out: )`, now `map_2: map (in: in; out: out)`; deploy with `fresh: true` (or --fresh) to start it over"
        ),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("stopped"), "{stdout}");
}

#[test]
fn a_state_that_cannot_be_saved_fails_the_workflow_naming_its_operator() {
    let dir = tempfile::tempdir().unwrap();
    let run = r#"
        let holder = operator("holder").init(|| |x| x).on("in", |x| emit("out", x));
        let r = deploy(workflow().stream_source(|n| n).apply(holder).collect(), #{ name: "bad", checkpoint_interval: 0.1 });
        print(wait(r));
    "#;
    let started = Instant::now();
    let out = script(dir.path(), run);
    assert!(started.elapsed() < Duration::from_secs(60));
    let stdout = out.stdout();
    assert!(
        stdout.contains("failed: checkpoint 1 of `bad`: operator `holder_2`: its state cannot be saved in a checkpoint: a value of type"),
        "{stdout}{}",
        out.stderr()
    );
}

#[test]
fn checkpoints_are_off_for_a_workflow_whose_sources_end_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let run = r#"
        let r = deploy(workflow().stream_source([1, 2, 3]).collect());
        wait(r);
        print(stats(r).checkpoints == ());
        try { checkpoint(r) } catch (e) { print(e) }
    "#;
    let out = script(dir.path(), run);
    out.success();
    assert_eq!(out.stdout(), "true\ncheckpoint: workflow #1 runs without checkpoints (checkpoint_interval 0)\n");
    assert!(!dir.path().join("ck").exists(), "nothing was written");
}

#[test]
fn stats_and_metrics_show_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(BIN)
        .args([
            "local",
            "start",
            "--no-log",
            "--metrics",
            &port.to_string(),
            "--deploy",
            "workflow().stream_source(|n| n % 100).count().collect()",
        ])
        .current_dir(dir.path())
        .env("XDG_STATE_HOME", dir.path())
        .env("SKITTER_CHECKPOINT_INTERVAL", "0.05")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let scrape = || -> String {
        use std::io::{Read, Write};
        let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut response = String::new();
        let _ = conn.read_to_string(&mut response);
        response
    };
    let completed = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("skitter_checkpoints_completed_total{workflow=\"1\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut text = String::new();
    let seen = wait_until(Duration::from_secs(30), || {
        text = scrape();
        completed(&text) >= 3
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert!(seen, "{text}");
    for series in [
        "skitter_checkpoints_failed_total{workflow=\"1\"} 0",
        "skitter_checkpoint_last_duration_seconds{workflow=\"1\"} ",
        "skitter_checkpoint_last_alignment_seconds{workflow=\"1\"} ",
        "skitter_checkpoint_last_size_bytes{workflow=\"1\"} ",
    ] {
        assert!(text.contains(series), "no {series:?} in\n{text}");
    }

    let run = r#"
        let r = deploy(workflow().stream_source(|n| n % 100).count().collect(), #{ name: "watched", checkpoint_interval: 0 + 10 });
        let id = checkpoint(r);
        let c = stats(r).checkpoints;
        print(`${c.name} ${c.completed} ${c.last_id == id} ${c.bytes > 0} ${c.failed}`);
        stop(r);
    "#;
    let out = script(dir.path(), run);
    out.success();
    assert_eq!(out.stdout(), "watched 1 true true 0\n");
}

/// The master of a 2-worker cluster killed (SIGKILL) at random moments and
/// started again: the workers join the new master, the workflow resumes
/// from the last checkpoint, and the file it writes (on the master's host)
/// is exactly an undisturbed run's.
#[test]
fn a_cluster_whose_master_is_killed_resumes_from_its_checkpoint_to_exactly_the_undisturbed_output() {
    master_killed(|tmp| format!("write_lines({:?})", tmp.join("out.txt")), |tmp| sorted_lines(&tmp.join("out.txt")));
}

/// The same with `write_parts`: each worker appends its instances' parts
/// (on its own host) before the master writes the checkpoint, and cuts
/// them back to the checkpoint's lengths when it resumes. Together the
/// parts hold exactly an undisturbed run's lines.
#[test]
fn a_cluster_writing_parts_whose_master_is_killed_resumes_to_exactly_the_undisturbed_parts() {
    master_killed(|tmp| format!("write_parts({:?})", tmp.join("parts")), |tmp| parts_lines(&tmp.join("parts")));
}

/// Every line of every part file in `dir`, sorted.
fn parts_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        assert!(path.file_name().unwrap().to_string_lossy().starts_with("part-w"), "{}", path.display());
        lines.extend(std::fs::read_to_string(&path).unwrap().lines().map(String::from));
    }
    lines.sort();
    lines
}

fn master_killed(sink: impl Fn(&Path) -> String, output: impl Fn(&Path) -> Vec<String>) {
    use common::node::{Node, COOKIE};
    let calm = tempfile::tempdir().unwrap();
    input(calm.path());
    let out = local(calm.path(), &calm.path().join("ck")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = sorted_lines(&calm.path().join("out.txt"));

    let dir = tempfile::tempdir().unwrap();
    input(dir.path());
    let tmp = dir.path();
    let ck = tmp.join("ck");
    let w1 = Node::worker("w1", "127.0.0.96", &["--no-shutdown-with-master"], tmp);
    let w2 = Node::worker("w2", "127.0.0.97", &["--no-shutdown-with-master"], tmp);
    let ck_text = ck.to_string_lossy().to_string();
    let env = [("SKITTER_CHECKPOINT_DIR", ck_text.as_str()), ("SKITTER_CHECKPOINT_INTERVAL", "0.05")];
    let master_args = |deploy: &str| -> Vec<String> {
        ["master", "start", "--no-log", "--listen", "127.0.0.1:0", "--deploy", deploy, &w1.addr, &w2.addr]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let deploy = COUNTS.replace("\"in.txt\"", &format!("{:?}", tmp.join("in.txt"))).replace("write_lines(\"out.txt\")", &sink(tmp));
    let args = master_args(&deploy);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut kills = 0;
    let mut seed = std::process::id() as u64;
    for _ in 0..2 {
        let mut master = Node::spawn_with_env(&args, tmp, COOKIE, None, &env);
        let before = newest_checkpoint(&ck);
        let progressed = wait_until(Duration::from_secs(60), || newest_checkpoint(&ck) > before || master.wait(Duration::ZERO).is_some());
        assert!(progressed, "no checkpoint within 60 s:\n{}", master.stderr());
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        std::thread::sleep(Duration::from_millis((seed >> 33) % 60));
        if master.wait(Duration::ZERO).is_none() {
            master.kill9();
            kills += 1;
        }
    }
    assert!(kills >= 1, "the run ended before any kill: the test proves nothing");
    let mut master = Node::spawn_with_env(&args, tmp, COOKIE, None, &env);
    let status = master.wait(Duration::from_secs(120)).expect("the last master finishes");
    assert!(status.success(), "{}", master.stderr());
    assert!(master.stderr().contains("resuming `"), "{}", master.stderr());
    let got = output(tmp);
    assert_eq!(got.len(), want.len(), "after {kills} kills of the master");
    assert_eq!(got, want, "after {kills} kills of the master the output differs from an undisturbed run's");
    drop((w1, w2));
}

/// The system calls `skitter local` makes for `expr` (renames, syncs and
/// opens, with the paths of their file descriptors), traced by strace.
fn traced(dir: &Path, expr: &str, env: &[(&str, &str)]) -> String {
    let trace = dir.join("trace.txt");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-y", "-qq", "-e", "trace=rename,renameat,renameat2,fsync,fdatasync", "-o"])
        .arg(&trace)
        .args([BIN, "local", "start", "--no-log", "--deploy", expr])
        .current_dir(dir)
        .env("XDG_STATE_HOME", dir)
        .env("SKITTER_CHECKPOINT_DIR", dir.join("ck"))
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run strace (install it: apt-get install strace): {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(trace).unwrap()
}

/// Issue 27: the file sink synced the file but never its directory after
/// renaming it into place, so a power loss could undo a rename whose input
/// was already acknowledged. Now the directory is synced after the rename
/// (without checkpoints) and after the file is created (with them), before
/// anything it covers is acknowledged.
#[test]
fn an_output_files_name_is_made_durable_by_syncing_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().canonicalize().unwrap();
    std::fs::write(dir.path().join("in.txt"), "a\nb\n").unwrap();
    // Without checkpoints: written aside, renamed, then the directory synced.
    let trace = traced(dir.path(), "workflow().read_lines(\"in.txt\").write_lines(\"out.txt\")", &[]);
    let renamed =
        trace.lines().position(|l| l.contains("rename") && l.contains("out.txt\"")).unwrap_or_else(|| panic!("no rename:\n{trace}"));
    let dir_synced = |l: &str| l.contains("fsync(") && l.contains(&format!("<{}>)", real.display()));
    assert!(trace.lines().skip(renamed + 1).any(dir_synced), "the directory is not synced after the rename:\n{trace}");
    assert_eq!(std::fs::read_to_string(dir.path().join("out.txt")).unwrap(), "a\nb\n");

    // With checkpoints: the file is created at the first checkpoint, and its
    // directory synced before the checkpoint's manifest is renamed into place.
    std::fs::remove_file(dir.path().join("out.txt")).unwrap();
    let trace =
        traced(dir.path(), "workflow().read_lines(\"in.txt\").write_lines(\"out.txt\")", &[("SKITTER_CHECKPOINT_INTERVAL", "0.05")]);
    let manifest =
        trace.lines().position(|l| l.contains("rename") && l.contains(".json\"")).unwrap_or_else(|| panic!("no manifest:\n{trace}"));
    assert!(trace.lines().take(manifest).any(dir_synced), "the directory is not synced before the manifest:\n{trace}");
    assert_eq!(std::fs::read_to_string(dir.path().join("out.txt")).unwrap(), "a\nb\n");
}
