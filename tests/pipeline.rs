//! Records through a stage (issue 15): consecutive script operators run
//! fused and functions run in Rust where they can, with the same records in
//! the same order and the same errors; a sink's lines reach its file within
//! the batch deadline while the source is still open.

mod common;

use std::io::Write;
use std::time::Duration;

use common::node::Node;
use common::*;

#[test]
fn fused_operators_keep_record_order() {
    // One slot: one instance of each node, so the order is defined. Native
    // functions and one Rhai must run (a block with a `let`) are mixed.
    let wf = "workflow().stream_source(1..=300)\
        .map(|x| x * 2)\
        .filter(|x| x % 3 != 0)\
        .flat_map(|x| [x, -x])\
        .map(|x| { let y = x - 1; y })\
        .map(|x| `v${x}`)\
        .inspect(\"o\")";
    let out = Skitter::new().args(["local", "start", "--no-log", "--slots", "1", "--deploy", wf]).run();
    out.success();
    let want: Vec<String> =
        (1..=300i64).map(|x| x * 2).filter(|x| x % 3 != 0).flat_map(|x| [x, -x]).map(|x| format!("\"v{}\"", x - 1)).collect();
    assert_eq!(out.labelled("o"), want);
}

#[test]
fn an_error_inside_a_fused_chain_names_its_operator_record_and_position() {
    let wf = "workflow().stream_source([1, 2, 3, 4, 5])\n.map(|x| x + 1)\n.map(|x| 100 / (x - 5))\n.map(|x| x * 2)\n.inspect(\"q\")";
    let out = Skitter::new().args(["local", "start", "--no-log", "--slots", "1", "--deploy", wf]).run();
    out.expect_code(1);
    out.stderr_has("operator `map_3` failed on record 5").stderr_has("Division by zero").stderr_has("line 3");
}

#[test]
fn a_function_run_in_rust_fails_as_rhai_would() {
    // `x + 1` runs in Rust until it would overflow; Rhai then reports it.
    let wf = "workflow().stream_source([1, 9223372036854775807]).map(|x| x + 1).inspect(\"q\")";
    let out = Skitter::new().args(["local", "start", "--no-log", "--slots", "1", "--deploy", wf]).run();
    out.expect_code(1);
    out.stderr_has("operator `map_2` failed on record 9223372036854775807").stderr_has("overflow").stderr_has("line 1");
}

#[test]
fn a_running_count_with_functions_run_in_rust_matches_an_independent_count() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("running.txt");
    let words = example("word_count").join("priv/words.txt");
    let wf = format!(
        "workflow().read_lines(\"{}\").flat_map(|line| line.split(\" \"))\
         .keyed_reduce(|w| w, |c, w| [c + 1, [w, c + 1]], 0).map(|p| `${{p[0]}} ${{p[1]}}`).write_lines(\"{}\")",
        words.display(),
        out_path.display()
    );
    Skitter::new().args(["local", "start", "--no-log", "--deploy", &wf]).run().success();
    let mut got: Vec<String> = std::fs::read_to_string(&out_path).unwrap().lines().map(str::to_string).collect();
    let mut seen = std::collections::HashMap::new();
    let mut want = Vec::new();
    for w in std::fs::read_to_string(&words).unwrap().lines().flat_map(|l| l.split(' ')) {
        let n = seen.entry(w.to_string()).or_insert(0);
        *n += 1;
        want.push(format!("{w} {n}"));
    }
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_sinks_lines_reach_its_file_within_the_deadline_while_the_source_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.txt");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let wf = format!("workflow().tcp_source(\"127.0.0.1\", {port}).map(|l| `got ${{l}}`).write_lines(\"{}\")", out_path.display());
    let mut node = Node::spawn(&["local", "start", "--no-log", "--deploy", &wf], dir.path(), common::node::COOKIE, None);
    let (mut conn, _) = listener.accept().unwrap();
    for i in 0..3 {
        writeln!(conn, "line {i}").unwrap();
    }
    // An endless source checkpoints: the lines are in the file once the
    // checkpoint that covers them completed, while the connection stays open.
    // The source hands its lines to two instances of `map`: when they come
    // in two batches (a loaded machine), they may reach the file in
    // another order.
    let sorted = |text: String| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let written = wait_until(Duration::from_secs(20), || {
        sorted(std::fs::read_to_string(&out_path).unwrap_or_default()) == ["got line 0", "got line 1", "got line 2"]
    });
    assert!(written, "the lines did not reach the file: {:?}", std::fs::read_to_string(&out_path));
    writeln!(conn, "line 3").unwrap();
    drop(conn);
    assert!(node.wait(Duration::from_secs(20)).is_some_and(|s| s.success()), "{}", node.stderr());
    assert_eq!(sorted(std::fs::read_to_string(&out_path).unwrap()), ["got line 0", "got line 1", "got line 2", "got line 3"]);
}

#[test]
fn on_a_cluster_the_masters_file_gets_the_lines_within_the_deadline_too() {
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("out.txt");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let w1 = Node::worker("w1", "127.0.0.2", &[], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.3", &[], tmp.path());
    let wf = format!("workflow().tcp_source(\"127.0.0.1\", {port}).map(|l| `got ${{l}}`).write_lines(\"{}\")", out_path.display());
    let mut master = Node::spawn(
        &["master", "start", "--no-log", "--listen", "127.0.0.1:0", "-d", &wf, &w1.addr, &w2.addr],
        tmp.path(),
        common::node::COOKIE,
        None,
    );
    let (mut conn, _) = listener.accept().unwrap();
    writeln!(conn, "a\nb").unwrap();
    // Checkpoint by checkpoint, at its own name.
    let written = wait_until(Duration::from_secs(20), || std::fs::read_to_string(&out_path).unwrap_or_default() == "got a\ngot b\n");
    assert!(written, "the lines did not reach the master's file: {:?}\n{}", std::fs::read_to_string(&out_path), master.stderr());
    drop(conn);
    assert!(master.wait(Duration::from_secs(20)).is_some_and(|s| s.success()), "{}", master.stderr());
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), "got a\ngot b\n");
}

#[test]
fn the_batch_deadline_comes_from_skitter_toml_or_the_environment_and_is_checked() {
    let app = app_with(&[]);
    std::fs::write(app.path().join("skitter.toml"), "name = \"x\"\nbatch_deadline_ms = 5\n").unwrap();
    let shown = |env: Option<&str>| {
        let mut s = Skitter::new().args(["local", "--no-log"]).dir(app.path()).stdin("print(runtime_info().batch_deadline_ms);\n");
        if let Some(v) = env {
            s = s.env("SKITTER_BATCH_DEADLINE_MS", v);
        }
        s.run()
    };
    shown(None).success().stdout_has("5.0");
    shown(Some("0.5")).success().stdout_has("0.5");
    shown(Some("soon")).expect_code(2).stderr_has("SKITTER_BATCH_DEADLINE_MS=\"soon\": give a number of milliseconds");
    shown(Some("20000")).expect_code(2).stderr_has("give 0 to 10000 milliseconds");
}

/// A generator source ends when its function returns `()`, and only then:
/// a batch deadline that passes before its first call — a deadline of 0
/// here, a pause of its thread on a busy machine — hands over a short
/// batch. (It once ended the stream there, silently: a run that said
/// `finished` had read a third of its input.)
#[test]
fn a_stream_source_ends_only_when_its_function_returns_unit() {
    for deadline in ["0", "2"] {
        let run = Skitter::new()
            .env("SKITTER_BATCH_DEADLINE_MS", deadline)
            .args(["eval", "let r = deploy(workflow().stream_source(|n| if n < 3000 { n } else { () }).collect()); print(wait(r)); let got = results(r); print(`${got.len()} ${got.reduce(|s, x| s + x, 0)}`);"])
            .run();
        run.success();
        assert_eq!(run.stdout(), "finished\n3000 4498500\n", "batch deadline {deadline} ms: {}", run.stderr());
    }
}
