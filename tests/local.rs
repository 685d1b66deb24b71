//! Local mode, end to end through the real binary (issue 2).

mod common;

use std::collections::BTreeMap;

use common::*;

#[test]
fn word_count_example_totals_match_an_independent_count() {
    let out = Skitter::new().args(["local", "start", "--no-log", "--app"]).arg(example("word_count")).run();
    out.success();
    let text = std::fs::read_to_string(example("word_count").join("priv/words.txt")).unwrap();
    let expected = count_words(&text);
    let got: BTreeMap<String, i64> = out.labelled("count").iter().map(|v| word_and_count(v)).collect();
    assert_eq!(out.labelled("count").len(), got.len(), "a word was reported twice");
    assert_eq!(got, expected);
    assert_eq!(got.values().sum::<i64>(), 40_000);
}

#[test]
fn word_count_runs_from_the_app_directory_and_with_short_forms() {
    let out = Skitter::new().args(["l", "s", "--no-log"]).dir(example("word_count")).run();
    out.success();
    assert_eq!(out.labelled("count").len(), 1000);
    out.stderr_has("Running in local mode");
}

#[test]
fn deploy_option_overrides_env_which_overrides_config() {
    let app = app_with(&[("lib/a.rhai", "fn one() { workflow().stream_source([1]).inspect(\"from\") }\nfn two() { workflow().stream_source([2]).inspect(\"from\") }\nfn three() { workflow().stream_source([3]).inspect(\"from\") }")]);
    std::fs::write(app.path().join("skitter.toml"), "name = \"x\"\ndeploy = \"one()\"\n").unwrap();
    let run = |env: Option<&str>, flag: Option<&str>| {
        let mut s = Skitter::new().args(["local", "start", "--no-log"]).dir(app.path());
        if let Some(e) = env {
            s = s.env("SKITTER_DEPLOY", e);
        }
        if let Some(f) = flag {
            s = s.args(["--deploy", f]);
        }
        let out = s.run();
        out.success();
        out.labelled("from")
    };
    assert_eq!(run(None, None), vec!["1"]);
    assert_eq!(run(Some("two()"), None), vec!["2"]);
    assert_eq!(run(Some("two()"), Some("three()")), vec!["3"]);
}

#[test]
fn filter_sends_rejected_records_to_its_reject_port() {
    let wf =
        r#"workflow().stream_source(1..=10).filter(|x| x % 3 == 0).name("f").inspect("accepted").from("f.reject").inspect("rejected")"#;
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", wf]).run();
    out.success();
    let sorted = |mut v: Vec<String>| {
        v.sort_by_key(|s| s.parse::<i64>().unwrap());
        v
    };
    assert_eq!(sorted(out.labelled("accepted")), vec!["3", "6", "9"]);
    assert_eq!(sorted(out.labelled("rejected")), vec!["1", "2", "4", "5", "7", "8", "10"]);
}

#[test]
fn one_instance_keeps_record_order_through_functions_and_both_filter_ports() {
    // Functions hand their output on in chunks: far more records than a
    // chunk, through map, flat_map and both ports of a filter, stay in order.
    let wf = r#"workflow().stream_source(1..=3000).map(|x| x * 2).flat_map(|x| [x, x + 1]).filter(|x| x % 3 != 0).name("f").inspect("kept").from("f.reject").inspect("dropped")"#;
    let out = Skitter::new().args(["local", "start", "--no-log", "--slots", "1", "--deploy", wf]).run();
    out.success();
    let numbers = |label: &str| out.labelled(label).iter().map(|s| s.parse::<i64>().unwrap()).collect::<Vec<_>>();
    let all: Vec<i64> = (1..=3000).flat_map(|x| [2 * x, 2 * x + 1]).collect();
    assert_eq!(numbers("kept"), all.iter().copied().filter(|x| x % 3 != 0).collect::<Vec<_>>());
    assert_eq!(numbers("dropped"), all.iter().copied().filter(|x| x % 3 == 0).collect::<Vec<_>>());
}

#[test]
fn keyed_reduce_keeps_one_state_per_key_and_emits_what_reduce_returns() {
    let app = example("word_count");
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", "running_word_count()", "--app"]).arg(&app).run();
    out.success();
    let text = std::fs::read_to_string(app.join("priv/words.txt")).unwrap();
    let expected = count_words(&text);
    // Every word's running counts are 1, 2, ..., total, in that order.
    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for v in out.labelled("count") {
        let (w, n) = word_and_count(&v);
        seen.entry(w).or_default().push(n);
    }
    assert_eq!(seen.len(), expected.len());
    for (word, counts) in &seen {
        let total = expected[word];
        assert_eq!(counts, &(1..=total).collect::<Vec<_>>(), "running counts of {word}");
    }
}

#[test]
fn keyed_reduce_emits_nothing_for_unit_and_groups_by_key_function() {
    let wf = r#"workflow().stream_source(1..=20).keyed_reduce(|x| x % 2, |sum, x| [sum + x, if x > 18 { [x % 2, sum + x] } else { () }], 0).inspect("sum")"#;
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", wf]).run();
    out.success();
    let mut sums = out.labelled("sum");
    sums.sort();
    assert_eq!(sums, vec!["[0, 110]", "[1, 100]"]);
}

#[test]
fn keyed_reduce_takes_a_pair_however_it_is_returned_and_names_one_that_is_not() {
    // Ended with `[state, emitted]`, or returned early: the same pair.
    let wf = r#"workflow().stream_source(1..=6).keyed_reduce(|x| x % 2, |s, x| { if x > 4 { return [s + x, `last ${s + x}`]; } [s + x, ()] }, 0).inspect("sum")"#;
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", wf]).run();
    out.success();
    let mut sums = out.labelled("sum");
    sums.sort();
    assert_eq!(sums, vec![r#""last 12""#, r#""last 9""#]);
    // An array of one is not a pair.
    let wf = r#"workflow().stream_source(1..=5).keyed_reduce(|x| x % 2, |s, x| [s + x], 0).inspect("sum")"#;
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", wf]).run();
    out.expect_code(1);
    out.stderr_has("operator `keyed_reduce_2`: the reduce function must return [new_state, emitted], on record 1");
}

#[test]
fn a_filter_keeps_what_its_condition_or_return_decides_and_names_a_value_that_is_not_a_bool() {
    let wf = r#"workflow().stream_source(1..=6).filter(|x| { if x == 5 { return false; } x % 2 == 1 || x == 6 }).inspect("kept")"#;
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", wf]).run();
    out.success();
    assert_eq!(out.labelled("kept"), vec!["1", "3", "6"]);
    for (filter, error) in [
        (r#"|x| { if x > 3 { return "yes"; } true }"#, "the function must return a bool, got string on record 4"),
        ("|x| { let y = x; }", "the function must return a bool, got () on record 1"),
        ("|x| x % 2", "the function must return a bool, got i64 on record 1"),
    ] {
        let wf = format!(r#"workflow().stream_source(1..=6).filter({filter}).inspect("kept")"#);
        let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", &wf]).run();
        out.expect_code(1);
        out.stderr_has(&format!("operator `filter_2`: {error}"));
    }
}

#[test]
fn nested_workflows_are_flattened() {
    let script = r#"
        fn double_then_inc() { workflow().map(|x| x * 2).map(|x| x + 1) }
        fn outer() {
            workflow()
                .stream_source([1, 2, 3])
                .then(double_then_inc())
                .inspect("chained")
        }
        fn linked() {
            workflow()
                .node("src", stream_source([10, 20]))
                .node("inner", double_then_inc())
                .node("out", inspect("linked"))
                .link("src", "inner.in")
                .link("inner.out", "out")
        }
    "#;
    let app = app_with(&[("lib/nested.rhai", script)]);
    for (expr, label, expected) in [("outer()", "chained", vec!["3", "5", "7"]), ("linked()", "linked", vec!["21", "41"])] {
        let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", expr]).dir(app.path()).run();
        out.success();
        let mut got = out.labelled(label);
        got.sort_by_key(|s| s.parse::<i64>().unwrap());
        assert_eq!(got, expected, "{expr}");
    }
}

#[test]
fn a_join_receives_both_branches() {
    let wf = r#"workflow()
        .node("a", stream_source(["x", "y"]))
        .node("b", stream_source(["z"]))
        .node("both", inspect("joined"))
        .link("a", "both")
        .link("b.out", "both.in")"#;
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", wf]).run();
    out.success();
    let mut got = out.labelled("joined");
    got.sort();
    assert_eq!(got, vec!["\"x\"", "\"y\"", "\"z\""]);
}

#[test]
fn stop_of_an_endless_source_drains_and_reports_stopped() {
    // Piped shell: deploy an endless generator, wait for some output, stop.
    let script = r#"
        let r = deploy(workflow().stream_source(|n| n).collect());
        while results(r).len() < 3000 { }
        print(stop(r));
        print(status(r));
        let got = results(r);
        got.sort();
        let contiguous = true;
        for i in 0..got.len() { if got[i] != i { contiguous = false; } }
        print(`drained ${got.len() >= 3000} ${contiguous}`);
    "#;
    let out = Skitter::new().args(["local", "--no-log"]).stdin(script).run();
    out.success();
    let lines: Vec<String> = out.stdout().lines().map(str::to_string).collect();
    assert!(lines.contains(&"stopped".to_string()), "{}", out.stdout());
    assert!(lines.contains(&"drained true true".to_string()), "{}", out.stdout());
}

#[test]
fn sigterm_stops_local_start_gracefully_and_counts_every_record_read() {
    // A branch prints `reached` once the source has passed 1000: then it runs.
    let wf = "workflow().node(\"src\", stream_source(|n| n)).node(\"c\", count(|x| x % 3)).link(\"src\", \"c\")\
              .node(\"p\", inspect(\"residue\")).link(\"c\", \"p\")\
              .node(\"f\", filter(|x| x == 1000)).link(\"src\", \"f\").node(\"r\", inspect(\"reached\")).link(\"f.accept\", \"r\")";
    let state = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["local", "start", "--no-log", "--deploy", wf])
        .env("NO_COLOR", "1")
        .env("XDG_STATE_HOME", state.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert_eq!(first.trim(), "reached: 1000");
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut output = child.wait_with_output().unwrap();
    output.stdout = rest.into_bytes();
    let out = Outcome(output);
    // Stopped before its (endless) source ended: exit 3, not 0.
    out.expect_code(3);
    out.stderr_has("stopping the workflow");
    out.stderr_has("workflow stopped before its sources ended");
    // The generator emitted 0..n; the counts per residue must be exactly those of 0..n.
    let counts: BTreeMap<i64, i64> = out
        .labelled("residue")
        .iter()
        .map(|v| {
            let (k, c) = word_and_count(v);
            (k.parse().unwrap(), c)
        })
        .collect();
    let n: i64 = counts.values().sum();
    assert!(n > 0, "nothing was counted");
    let expected: BTreeMap<i64, i64> = [(0, (n + 2) / 3), (1, (n + 1) / 3), (2, n / 3)].into_iter().filter(|(_, c)| *c > 0).collect();
    assert_eq!(counts, expected, "records were lost or duplicated on stop");
}

#[test]
fn a_syntax_error_in_lib_names_file_line_column_and_shows_a_caret() {
    let app = app_with(&[("lib/good.rhai", "fn ok() { 1 }\n"), ("lib/bad.rhai", "fn wc() {\n    let x = 1;\n    let y = x +* 2;\n}\n")]);
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", "ok()"]).dir(app.path()).run();
    out.expect_code(1);
    out.stderr_has("lib/bad.rhai:3:").stderr_has("syntax error").stderr_has("   3 |     let y = x +* 2;");
    let caret_line = out.stderr().lines().find(|l| l.trim_end().ends_with('^')).map(str::to_string).expect("a caret line");
    let source_line = out.stderr().lines().find(|l| l.contains("let y = x +* 2")).unwrap().to_string();
    let caret = caret_line.find('^').unwrap();
    assert!(matches!(&source_line[caret..caret + 1], "*" | "+"), "caret under the bad token:\n{source_line}\n{caret_line}");
}

#[test]
fn an_operator_error_fails_the_workflow_with_operator_record_and_position() {
    let wf = "workflow().stream_source([1, 2, 0, 4]).map(|x| 10 / x).inspect(\"q\")";
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", wf]).run();
    out.expect_code(1);
    out.stderr_has("workflow failed").stderr_has("operator `map_2` failed on record 0").stderr_has("Division by zero").stderr_has("line 1");
    assert_eq!(out.stderr().matches("failed on record").count(), 1, "said once:\n{}", out.stderr());
}

/// Issue 25: a one-expression closure runs in Rust, but `throw` in it
/// failed nothing: the thrown strings came out as records.
#[test]
fn a_throw_in_a_one_expression_closure_fails_the_workflow() {
    let wf = "workflow().stream_source([1, 2, 3]).map(|x| throw `bad ${x}`).inspect(\"v\")";
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", wf]).run();
    out.expect_code(1);
    out.stderr_has("workflow failed").stderr_has("operator `map_2` failed on record 1").stderr_has("bad 1").stderr_has("line 1");
    assert!(!out.stdout().contains("v: bad"), "no thrown value is a record:\n{}", out.stdout());
}

/// Issue 25: `write_lines` given a directory ran the whole workflow, then
/// failed at the rename without saying where the output went.
#[test]
fn write_lines_to_a_directory_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out");
    std::fs::create_dir(&target).unwrap();
    let wf = format!("workflow().stream_source(1..=3).inspect(\"ran\").write_lines({:?})", target.display().to_string());
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", &wf]).run();
    out.expect_code(1).stderr_has("is a directory").stderr_has(&target.display().to_string());
    assert!(!out.stdout().contains("ran:"), "nothing ran:\n{}", out.stdout());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("out")], "nothing written beside it");
}

#[test]
fn an_operator_error_in_a_lib_function_names_the_file() {
    let app = app_with(&[("lib/ops.rhai", "fn risky(x) {\n    if x == 3 { throw \"three is not allowed\"; }\n    x\n}\nfn wf() { workflow().stream_source(1..=5).map(|x| risky(x)).inspect(\"v\") }\n")]);
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", "wf()"]).dir(app.path()).run();
    out.expect_code(1);
    out.stderr_has("three is not allowed").stderr_has("lib/ops.rhai").stderr_has("line 2");
}

#[test]
fn workflow_mistakes_are_reported_when_built() {
    for (expr, message) in [
        (r#"workflow().stream_source([1]).map(5)"#, "map expects a function as its argument"),
        (r#"workflow().stream_source([1]).name("a").link("a.nope", "a")"#, "has no output port `nope`"),
        (r#"workflow().node("a", map(|x| x)).node("b", map(|x| x)).link("a", "b").link("b", "a")"#, "would make a cycle"),
        (r#"workflow().node("m", map(|x| x)).node("s", stream_source([1]))"#, "input `m.in` is not linked"),
        (r#"workflow().map(|x| x)"#, "the workflow has no source"),
        (r#"workflow().stream_source([1]).collect().map(|x| x)"#, "no output to chain from"),
        (r#"workflow().stream_source([1]).link("zz", "a")"#, "no node named `zz`"),
        (r#"42"#, "returned i64"),
    ] {
        let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", expr]).run();
        out.expect_code(1);
        out.stderr_has(message);
    }
}

#[test]
fn write_lines_writes_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.txt");
    let wf = format!("workflow().stream_source(1..=5000).map(|x| `n${{x}}`).write_lines({:?})", file.display().to_string());
    Skitter::new().args(["local", "start", "--no-log", "--deploy", &wf]).run().success();
    let mut lines: Vec<String> = std::fs::read_to_string(&file).unwrap().lines().map(str::to_string).collect();
    lines.sort();
    let mut expected: Vec<String> = (1..=5000).map(|x| format!("n{x}")).collect();
    expected.sort();
    assert_eq!(lines, expected);
}

#[test]
fn lines_reach_a_parallel_stage_whole_without_their_line_ends_across_batches() {
    // Over two batches of 1,024 lines, the stage after the source gets them
    // as blocks of text: every line arrives once, without `\r` or `\n`,
    // the last one too though it has no `\n`, an empty line as "".
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.txt"), dir.path().join("out.txt"));
    let mut text = String::new();
    let mut expected = Vec::new();
    for i in 0..2500 {
        let line = match i % 5 {
            0 => String::new(),
            1 => format!("d\u{e9}j\u{e0} {i}"),
            _ => format!("line {i}"),
        };
        text.push_str(&line);
        text.push_str(if i % 2 == 0 { "\r\n" } else { "\n" });
        expected.push(format!("{}|{line}|", line.chars().count()));
    }
    text.push_str("no newline");
    expected.push("10|no newline|".into());
    std::fs::write(&input, text).unwrap();
    let wf = format!(
        "workflow().read_lines({:?}).map(|l| `${{l.len()}}|${{l}}|`).write_lines({:?})",
        input.display().to_string(),
        output.display().to_string()
    );
    Skitter::new().args(["local", "start", "--no-log", "--slots", "2", "--deploy", &wf]).run().success();
    let mut got: Vec<String> = std::fs::read_to_string(&output).unwrap().lines().map(str::to_string).collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn a_line_that_is_not_utf8_fails_the_workflow_naming_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let mut bytes = Vec::new();
    for i in 1..=3000 {
        match i {
            2100 => bytes.extend_from_slice(b"caf\xe9\n"),
            _ => bytes.extend_from_slice(format!("line {i}\n").as_bytes()),
        }
    }
    std::fs::write(&input, bytes).unwrap();
    let wf = format!("workflow().read_lines({:?}).name(\"in\").map(|l| l.len()).collect()", input.display().to_string());
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", &wf]).run();
    out.expect_code(1);
    out.stderr_has("operator `in`: line 2100 is not UTF-8 text: incomplete utf-8 byte sequence from index 3");
}

#[test]
fn a_missing_input_file_fails_the_deploy_clearly() {
    let out = Skitter::new()
        .args(["local", "start", "--no-log", "--deploy", "workflow().read_lines(\"/nonexistent/words.txt\").inspect()"])
        .run();
    out.expect_code(1);
    out.stderr_has("cannot read /nonexistent/words.txt");
}

#[test]
fn tcp_source_reads_lines_until_the_peer_closes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::Write;
        let (mut conn, _) = listener.accept().unwrap();
        for i in 0..2000 {
            writeln!(conn, "line {i}").unwrap();
        }
    });
    let wf = format!("workflow().tcp_source(\"127.0.0.1\", {port}).count(|l| l.len() > 6).inspect(\"long\")");
    let out = Skitter::new().args(["local", "start", "--no-log", "--deploy", &wf]).run();
    server.join().unwrap();
    out.success();
    let mut got = out.labelled("long");
    got.sort();
    // "line 0".."line 9" are 6 characters, the other 1990 longer.
    assert_eq!(got, vec!["[false, 10]", "[true, 1990]"]);
}

#[test]
fn new_app_runs_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("my_app");
    Skitter::new().arg("new").arg(&app).run().success().stdout_has("creating");
    for f in ["skitter.toml", "lib/my_app.rhai", "priv/words.txt", ".skitter.rhai", "README.md", ".gitignore"] {
        assert!(app.join(f).is_file(), "{f} missing");
    }
    let out = Skitter::new().args(["local", "start"]).dir(&app).run();
    out.success();
    let text = std::fs::read_to_string(app.join("priv/words.txt")).unwrap();
    let got: BTreeMap<String, i64> = out.labelled("count").iter().map(|v| word_and_count(v)).collect();
    assert_eq!(got, count_words(&text));
    // A log file named after the node, with the welcome line.
    let logs: Vec<_> = std::fs::read_dir(app.join("logs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(logs.len(), 1);
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(logs[0].file_name().unwrap().to_string_lossy().starts_with("skitter_local@"));
    assert!(log.contains("Running in local mode"), "{log}");
    // And the app's version is what -a prints.
    Skitter::new().arg("-a").dir(&app).run().success().stdout_has("my_app 0.1.0");
}

#[test]
fn no_log_writes_no_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("quiet");
    Skitter::new().arg("new").arg(&app).run().success();
    Skitter::new().args(["local", "start", "--no-log"]).dir(&app).run().success();
    assert!(!app.join("logs").exists());
}

#[test]
fn new_refuses_an_existing_directory_and_a_bad_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/file"), "x").unwrap();
    Skitter::new().arg("new").arg(dir.path().join("taken")).run().expect_code(2).stderr_has("already exists");
    Skitter::new().arg("new").arg(dir.path().join("9lives")).run().expect_code(2).stderr_has("cannot name an app");
}

#[test]
fn outside_an_app_the_log_goes_to_the_state_directory_not_the_current_one() {
    let (here, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = Skitter::new().args(["local"]).dir(here.path()).env("XDG_STATE_HOME", state.path()).stdin("print(1 + 1);\n").run();
    out.success().stdout_has("2");
    assert_eq!(std::fs::read_dir(here.path()).unwrap().count(), 0, "nothing is made in the current directory");
    let logs: Vec<_> = std::fs::read_dir(state.path().join("skitter/logs")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
}

#[test]
fn completion_scripts_complete_modes_and_commands() {
    let out = Skitter::new().args(["completions", "bash"]).run();
    out.success();
    let complete = |words: &str, cword: usize, cur: &str, prev: &str| {
        let script = format!(
            "{}\nCOMP_WORDS=({words}); COMP_CWORD={cword}; _skitter skitter {cur} {prev}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            out.stdout()
        );
        let r = std::process::Command::new("bash").arg("-c").arg(script).output().unwrap();
        String::from_utf8_lossy(&r.stdout).lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(complete("skitter lo", 1, "lo", "skitter"), vec!["local"]);
    assert_eq!(complete("skitter local st", 2, "st", "local"), vec!["start", "start_iex", "stop"]);
    for shell in ["zsh", "fish"] {
        Skitter::new().args(["completions", shell]).run().success().stdout_has("skitter");
    }
    Skitter::new().args(["completions", "tcsh"]).run().expect_code(2).stderr_has("tcsh");
}

#[test]
fn versions_help_and_usage_errors() {
    Skitter::new().arg("-v").run().success().stdout_has(&format!("skitter {}", env!("CARGO_PKG_VERSION")));
    Skitter::new().arg("--skitter-version").run().success().stdout_has("skitter ");
    Skitter::new().arg("--version").run().success().stdout_has(&format!("skitter {}", env!("CARGO_PKG_VERSION")));
    // A mode's usage line names the program, as its own errors do.
    Skitter::new().args(["help", "deploy"]).run().success().stdout_has("Usage: skitter deploy");
    let app = app_with(&[]);
    Skitter::new().arg("--application-version").dir(app.path()).run().success().stdout_has("testapp 1.2.3");
    let nowhere = tempfile::tempdir().unwrap();
    Skitter::new().arg("-a").dir(nowhere.path()).run().expect_code(2).stderr_has("no skitter app found");
    Skitter::new().args(["help", "local"]).run().success().stdout_has("--deploy");
    Skitter::new().args(["h"]).run().success().stdout_has("local");
    Skitter::new().args(["help", "nosuchmode"]).run().expect_code(2).stderr_has("no mode `nosuchmode`");
    Skitter::new().args(["local", "start", "--frobnicate"]).run().expect_code(2).stderr_has("--frobnicate");
    Skitter::new().args(["nosuchmode"]).run().expect_code(2);
    Skitter::new().args(["local", "--app"]).arg(nowhere.path()).run().expect_code(2).stderr_has("no skitter app found");
}

#[test]
fn bad_config_is_a_usage_error_naming_the_file() {
    let app = app_with(&[]);
    std::fs::write(app.path().join("skitter.toml"), "name = \"x\"\ndeploi = \"typo\"\n").unwrap();
    Skitter::new().args(["local", "start"]).dir(app.path()).run().expect_code(2).stderr_has("skitter.toml").stderr_has("deploi");
}
