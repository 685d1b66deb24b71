//! Operators of your own (issue 13): ports, state per instance and per key,
//! callbacks, `emit`, the end callback, strategies; the same results in
//! local mode and on a cluster.

mod common;

use std::path::Path;

use common::node::{Node, COOKIE};
use common::*;

/// The operators under test, as an app's library: every node loads it.
const OPS: &str = r#"
// A running total in one instance: the records' order is the source's.
fn running_total() {
    operator("running_total").strategy(single()).init(|| 0).on("in", |x| { this += x; emit("out", this); })
}

// Counts per key, emitted once the input has ended, with the node that held the key.
fn tally() {
    operator("tally")
        .strategy(keyed(|w| w))
        .init(|| #{ n: 0 })
        .on("in", |w| { this.word = w; this.n += 1; })
        .on_end(|| emit("out", [this.word, this.n]))
}

// Joins two streams by key: pairs found go to `out`, the rest to `unmatched` at the end.
fn join() {
    operator("join")
        .inputs(["left", "right"])
        .outputs(["out", "unmatched"])
        .strategy(keyed(|r| r[0]))
        .init(|| #{ left: [], right: [] })
        .on("left", |r| { for x in this.right { emit("out", [r[0], r[1], x]); } this.left.push(r[1]); })
        .on("right", |r| { for x in this.left { emit("out", [r[0], x, r[1]]); } this.right.push(r[1]); })
        .on_end(|| {
            if this.left.is_empty() { for x in this.right { emit("unmatched", x); } }
            if this.right.is_empty() { for x in this.left { emit("unmatched", x); } }
        })
}

fn joined() {
    workflow()
        .node("people", stream_source([[1, "ann"], [2, "bob"], [3, "cy"]]))
        .node("towns", stream_source([[1, "oslo"], [2, "rome"], [2, "nice"], [4, "lima"]]))
        .node("join", join())
        .node("pairs", collect())
        .node("alone", collect())
        .link("people", "join.left")
        .link("towns", "join.right")
        .link("join.out", "pairs")
        .link("join.unmatched", "alone")
}

// Where each record was handled.
fn where_run() {
    operator("where").on("in", |x| emit("out", runtime_info().node))
}

fn sorted(a) {
    a.sort(|x, y| { let p = `${x}`; let q = `${y}`; if p < q { -1 } else if p > q { 1 } else { 0 } });
    a
}

fn summary() {
    let a = deploy(workflow().stream_source(1..=100).apply(running_total()).collect());
    let b = deploy(workflow().stream_source(["a", "b", "a", "c", "a", "b"]).apply(tally()).collect());
    let c = deploy(joined());
    let d = deploy(workflow().stream_source(1..=5000).apply(where_run()).collect());
    print(`status ${wait(a)} ${wait(b)} ${wait(c)} ${wait(d)}`);
    let totals = results(a);
    let counts = sorted(results(b));
    let pairs = sorted(results(c, "pairs"));
    let alone = sorted(results(c, "alone"));
    let nodes = results(d);
    let seen = #{};
    for n in nodes { seen[n] = true; }
    print(`totals ${totals.len()} last ${totals[99]}`);
    print(`counts ${counts}`);
    print(`pairs ${pairs}`);
    print(`alone ${alone}`);
    print(`nodes ${seen.len()} records ${nodes.len()}`);
}
"#;

const EXPECTED: &[&str] = &[
    "status finished finished finished finished",
    "totals 100 last 5050",
    r#"counts [["a", 3], ["b", 2], ["c", 1]]"#,
    r#"pairs [[1, "ann", "oslo"], [2, "bob", "nice"], [2, "bob", "rome"]]"#,
    r#"alone ["cy", "lima"]"#,
];

fn check(stdout: &str, stderr: &str) {
    for line in EXPECTED {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}\n{stderr}");
    }
}

#[test]
fn user_operators_give_their_results_locally() {
    let app = app_with(&[("lib/ops.rhai", OPS)]);
    let out = Skitter::new().args(["eval", "summary()"]).dir(app.path()).run();
    out.success();
    check(&out.stdout(), &out.stderr());
    assert!(out.stdout().contains("nodes 1 records 5000"), "{}", out.stdout());
}

#[test]
fn user_operators_give_the_same_results_on_a_two_worker_cluster() {
    let app = app_with(&[("lib/ops.rhai", OPS)]);
    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.71", &[], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.72", &[], tmp.path());
    let app_dir = app.path().to_str().unwrap();
    let args = ["master", "start_iex", "--no-log", "--listen", "127.0.0.1:0", "--app", app_dir, &w1.addr, &w2.addr];
    let mut master = Node::spawn(&args, tmp.path(), COOKIE, Some("summary()\n"));
    let status = master.wait(std::time::Duration::from_secs(60)).expect("the master's shell ends");
    assert!(status.success(), "{}", master.stderr());
    check(&master.stdout(), &master.stderr());
    // The immutable-local operator ran on both workers, and said so.
    assert!(master.stdout().contains("nodes 2 records 5000"), "{}", master.stdout());
}

fn eval(app: &Path, expr: &str) -> Outcome {
    Skitter::new().args(["eval", expr]).dir(app).run()
}

#[test]
fn mistakes_in_an_operator_are_named() {
    let app = app_with(&[("lib/ops.rhai", OPS)]);
    let p = app.path();
    eval(p, r#"let bad = operator("bad").on("in", |x| emit("nowhere", x)); let r = deploy(workflow().stream_source([7]).apply(bad).collect()); wait(r)"#)
        .success()
        .stdout_has("failed: operator `bad_2`: emit to unknown port `nowhere` (outputs: out) of value 7, on record 7");
    eval(p, r#"workflow().stream_source([1]).apply(operator("two").inputs(["a", "b"]).on("a", |x| ()))"#)
        .expect_code(1)
        .stderr_has("operator `two`: input `b` has no callback");
    eval(p, r#"operator("x").on("nope", |x| ())"#).expect_code(1).stderr_has("operator `x` has no input `nope` (inputs: in)");
    eval(p, r#"operator("x").outputs(["a", "a"])"#).expect_code(1).stderr_has("the port `a` is named twice");
    eval(p, r#"map(|x| x).on("in", |x| ())"#).expect_code(1).stderr_has("on is for operators made with operator(\"name\"), not map");
    eval(p, r#"workflow().stream_source([1]).with_strategy(single())"#).expect_code(1).stderr_has("a source's strategy is fixed");
    eval(p, r#"workflow().stream_source([1]).count().with_strategy(single())"#).expect_code(1).stderr_has("count is keyed");
    eval(p, r#"let r = deploy(workflow().stream_source(1..=50).map(|x| x).with_strategy(single()).collect()); wait(r); results(r).len()"#)
        .success()
        .stdout_has("50");
    eval(p, r#"workflow().node("j", join()).node("s", stream_source([1])).link("s", "j.left").validate()"#)
        .expect_code(1)
        .stderr_has("input `j.right` is not linked");
}

const PLACED: &str = r#"
fn where_on(s) {
    operator("where").strategy(s).on("in", |x| emit("out", runtime_info().node))
}

fn nodes_of(r) {
    wait(r);
    let seen = #{};
    for n in results(r) { seen[n] = true; }
    let names = seen.keys();
    names.sort();
    names
}

fn placed() {
    let t = timestamp(); while workers().len() < 2 && t.elapsed < 20.0 { sleep(0.01); }
    let gpu = deploy(workflow().stream_source(1..=5000).apply(where_on(tagged("gpu"))).collect());
    print(`tagged ${nodes_of(gpu)}`);
    let on_w2 = strategy(#{ place: |ws| ws.filter(|w| w.name.starts_with("w2@")).map(|w| #{ worker: w.name, instances: 3 }) });
    let w2 = deploy(workflow().stream_source(1..=5000).apply(where_on(on_w2)).collect());
    print(`placed ${nodes_of(w2)} ${results(w2).len()}`);
    let builtin = deploy(workflow().stream_source(1..=5000).map(|x| runtime_info().node).with_strategy(tagged("gpu")).collect());
    print(`builtin ${nodes_of(builtin)}`);
    let to_first = operator("first")
        .strategy(strategy(#{ route: |r, port, n| 0 }))
        .init(|| 0)
        .on("in", |x| { this += 1; })
        .on_end(|| if this > 0 { emit("out", [runtime_info().node, this]) });
    let routed = deploy(workflow().stream_source(1..=5000).apply(to_first).collect());
    wait(routed);
    print(`routed ${results(routed)}`);
    try {
        deploy(workflow().stream_source(1..=5).apply(where_on(tagged("tpu"))).collect());
    } catch (e) {
        print(`refused ${e}`);
    }
}
"#;

#[test]
fn strategies_place_and_route_instances_on_a_cluster() {
    let app = app_with(&[("lib/placed.rhai", PLACED)]);
    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.73", &["-t", "gpu"], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.74", &[], tmp.path());
    let app_dir = app.path().to_str().unwrap();
    let args = ["master", "start_iex", "--no-log", "--listen", "127.0.0.1:0", "--app", app_dir, &w1.addr, &w2.addr];
    let mut master = Node::spawn(&args, tmp.path(), COOKIE, Some("placed()\n"));
    let status = master.wait(std::time::Duration::from_secs(60)).expect("the master's shell ends");
    assert!(status.success(), "{}", master.stderr());
    let out = master.stdout();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    for line in [
        format!("tagged [\"w1@{host}\"]"),
        format!("builtin [\"w1@{host}\"]"),
        format!("placed [\"w2@{host}\"] 5000"),
        format!("routed [[\"w1@{host}\", 5000]]"),
        "refused deploy: operator `where_".to_string(),
        "no worker has that tag (workers: w1@".to_string(),
    ] {
        assert!(out.contains(&line), "missing `{line}` in:\n{out}\n{}", master.stderr());
    }
    assert!(out.contains("tagged `tpu`"), "{out}");
}

#[test]
fn a_workflow_names_its_own_ports_and_is_an_operator() {
    let app = app_with(&[(
        "lib/composite.rhai",
        r#"
        // Splits numbers: evens go on through `out`, odds leave by `odd`; `bonus` takes extra input.
        fn evens() {
            workflow()
                .node("extra", map(|x| x + 1))
                .node("check", filter(|x| x % 2 == 0))
                .link("extra", "check")
                .from("check")
                .input("bonus", "extra.in")
                .output("odd", "check.reject")
        }
        "#,
    )]);
    let expr = r#"
        let wf = workflow()
            .node("src", stream_source(1..=6))
            .node("more", stream_source([7]))
            .node("e", evens())
            .node("even", collect())
            .node("odd", collect())
            .link("src", "e.bonus")
            .link("more", "e.bonus")
            .link("e", "even")
            .link("e.odd", "odd");
        let r = deploy(wf);
        wait(r);
        let even = results(r, "even"); even.sort();
        [even, results(r, "odd").len()]
    "#;
    eval(app.path(), expr).success().stdout_has("[[2, 4, 6, 8], 3]");
    eval(app.path(), r#"evens().output("odd", "check.accept")"#).expect_code(1).stderr_has("already has a port named `odd`");
    eval(app.path(), r#"evens().output("x", "nowhere.out")"#).expect_code(1).stderr_has("no node named `nowhere`");
}

/// Issue 30: a callback that runs in Rust (no Rhai operation counter) is
/// still stopped when the node's memory passes its limit, naming it.
#[test]
fn a_state_grown_by_a_callback_run_in_rust_stops_at_the_memory_limit() {
    let hoard = r#"workflow().stream_source(0..6000000).apply(operator("hoard").init(|| []).on("in", |x| { this.push("some text to keep " + x); }))"#;
    Skitter::new()
        .args(["local", "start", "--no-log", "--deploy", hoard])
        .env("SKITTER_MAX_MEMORY_MB", "200")
        .run()
        .expect_code(1)
        .stderr_has("operator `hoard_2` failed on record")
        .stderr_has("memory passed its limit of 200 MiB");
}
