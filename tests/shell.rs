//! The shell, driven through a pseudo-terminal and through a pipe (issue 3).

mod common;

use std::process::Command;
use std::time::Duration;

use common::pty::Pty;
use common::*;

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn first_prompt_names_the_node_and_counts_entries() {
    let (dir, home) = (temp(), temp());
    let mut sh = Pty::spawn(dir.path(), home.path(), &[]);
    sh.expect_re(r"skitter\(skitter_local@[^)]+\)1> ");
    sh.line("1 + 1");
    sh.expect("2");
    sh.prompt(2);
    sh.line("exit()");
    sh.expect_eof();
}

#[test]
fn a_function_defined_over_three_lines_is_callable() {
    let (dir, home) = (temp(), temp());
    let mut sh = Pty::spawn(dir.path(), home.path(), &[]);
    sh.prompt(1);
    sh.line("fn triple(x) {");
    sh.expect("...(1)> ");
    sh.line("    x * 3");
    sh.expect("...(1)> ");
    sh.line("}");
    sh.prompt(2);
    sh.line("triple(14)");
    sh.expect("42");
    // `#break` abandons an unfinished entry.
    sh.prompt(3);
    sh.line("let broken = [1,");
    sh.expect("...(3)> ");
    sh.line("#break");
    sh.prompt(3);
    sh.line("triple(2) + 1");
    sh.expect("7");
}

#[test]
fn skitter_mode_start_iex_runs_the_default_mode_with_a_shell() {
    let (dir, home) = (temp(), temp());
    let mut sh = Pty::command(dir.path(), home.path(), &["--mode", "start_iex", "--no-log"]);
    sh.expect_re(r"skitter\(skitter_local@[^)]+\)1> ");
    sh.line("runtime_info().mode");
    sh.expect("local");
    sh.prompt(2);
    // A master app's default mode is master.
    let app = app_with(&[]);
    std::fs::write(app.path().join("skitter.toml"), "name = \"m\"\nmode = \"master\"\n").unwrap();
    let mut m = Pty::command(app.path(), home.path(), &["--mode=S", "--no-log"]);
    m.expect_re(r"skitter\(skitter_master@[^)]+\)1> ");
    Skitter::new().args(["--mode", "nonsense"]).run().expect_code(2).stderr_has("--mode nonsense: give start, start_iex");
}

#[test]
fn piped_input_runs_as_a_script_like_a_lib_file() {
    // A chain one call per line, a function used before it is defined, and
    // only what the script prints is shown (not the value of each line).
    let chain = "let r = deploy(tenfold(workflow()\n    .stream_source([1, 2, 3]))\n    .collect());\nwait(r);\nlet got = results(r);\ngot.sort();\nprint(got);\n\
                 fn tenfold(wf) {\n    wf.map(|x| {\n        x * 10\n    })\n}\n1 + 1\n";
    let out = Skitter::new().args(["local", "--no-log"]).stdin(chain).run();
    out.success();
    assert_eq!(out.stdout(), "[10, 20, 30]\n");
    // An error ends the script, names the line, and the exit status is 1.
    let out = Skitter::new().args(["local", "--no-log"]).stdin("print(\"before\");\nlet x = [1];\nx[5];\nprint(\"after\");\n").run();
    out.expect_code(1).stderr_has("stdin, line 3");
    assert_eq!(out.stdout(), "before\n");
    let out = Skitter::new().args(["local", "--no-log"]).stdin("print(1);\nlet x = ;\n").run();
    out.expect_code(1).stderr_has("syntax error").stderr_has("stdin:2");
    assert_eq!(out.stdout(), "", "a script that does not parse runs nothing");
}

#[test]
fn a_script_file_runs_with_local_eval_and_rpc() {
    let dir = temp();
    let file = dir.path().join("job.rhai");
    std::fs::write(&file, "let r = deploy(workflow().stream_source([4, 5]).map(|x| double(x)).inspect(\"got\").collect());\nwait(r);\nfn double(x) { x * 2 }\nprint(`done ${status(r)}`);\n42\n").unwrap();
    let f = file.to_str().unwrap();
    for args in [vec!["local", "--no-log", "--script", f], vec!["eval", "--file", f]] {
        let out = Skitter::new().args(&args).run();
        out.success().stdout_has("got: 8").stdout_has("got: 10").stdout_has("done finished");
        assert!(!out.stdout().contains("42"), "a script's value is not shown: {}", out.stdout());
    }
    Skitter::new()
        .args(["local", "--no-log", "--script", "/nonexistent/job.rhai"])
        .run()
        .expect_code(2)
        .stderr_has("cannot read the script /nonexistent/job.rhai");
    Skitter::new().args(["local", "--script", f, "daemon"]).run().expect_code(2).stderr_has("give no mode");
    Skitter::new().args(["eval", "1", "--file", f]).run().expect_code(2);
    std::fs::write(&file, "print(\"one\");\nthrow \"stop here\";\n").unwrap();
    Skitter::new().args(["eval", "--file", f]).run().expect_code(1).stdout_has("one").stderr_has("stop here").stderr_has("line 2");
}

#[test]
fn lines_typed_ahead_in_one_burst_are_all_evaluated() {
    // tmux send-keys, a slow ssh link, an expect script: four lines in one
    // write, no bracketed paste. Each is read in turn, none dropped.
    let (dir, home) = (temp(), temp());
    let mut sh = Pty::spawn(dir.path(), home.path(), &[]);
    sh.prompt(1);
    sh.send("fn twice(a) {\r  a * 2\r}\rtwice(21)\r");
    sh.expect("42");
    sh.prompt(3);
}

#[test]
fn pasted_multi_line_text_is_one_entry() {
    let (dir, home) = (temp(), temp());
    let mut sh = Pty::spawn(dir.path(), home.path(), &[]);
    sh.prompt(1);
    // What a terminal sends for a paste (bracketed paste mode).
    sh.send("\x1b[200~fn pasted(x) {\n    x + 1\n}\x1b[201~\r");
    sh.prompt(2);
    sh.line("pasted(41)");
    sh.expect("42");
}

#[test]
fn tab_completes_a_prefix_of_deploy_and_functions_of_the_session() {
    let (dir, home) = (temp(), temp());
    let mut sh = Pty::spawn(dir.path(), home.path(), &[]);
    sh.prompt(1);
    sh.line("fn my_unique_helper() { 40 }");
    sh.prompt(2);
    sh.send("my_uniq\t");
    sh.send("() + 2\r");
    sh.expect("42");
    sh.prompt(3);
    sh.send("depl\t");
    sh.send("(workflow().stream_source([5]).collect())\r");
    sh.expect("#WorkflowRef<1>");
    sh.prompt(4);
}

#[test]
fn ctrl_c_interrupts_a_runaway_loop_and_keeps_the_session() {
    let (dir, home) = (temp(), temp());
    let mut sh = Pty::spawn(dir.path(), home.path(), &[]);
    sh.prompt(1);
    sh.line("let kept = 41;");
    sh.prompt(2);
    let before = cpu_time(sh.pid() as u32);
    sh.line("loop { }");
    wait_busy(sh.pid() as u32, before, Duration::from_millis(100));
    sh.send("\x03");
    sh.expect("Interrupted");
    sh.prompt(2);
    sh.line("kept + 1");
    sh.expect("42");
    // Ctrl-C at an idle prompt clears the line instead.
    sh.prompt(3);
    sh.send("this is not rhai");
    sh.send("\x03");
    sh.prompt(3);
    sh.line("kept");
    sh.expect("41");
}

#[test]
fn history_survives_sigkill_and_skips_lines_starting_with_a_space() {
    let (dir, home) = (temp(), temp());
    let mut sh = Pty::spawn(dir.path(), home.path(), &[]);
    sh.prompt(1);
    sh.line("let first = 1;");
    sh.prompt(2);
    sh.line(" let secret = 2;");
    sh.prompt(3);
    sh.line("fn two_lines() {");
    sh.expect("...(3)> ");
    sh.line("  2");
    sh.expect("...(3)> ");
    sh.line("}");
    sh.prompt(4);
    let _ = Command::new("kill").args(["-KILL", &sh.pid().to_string()]).status();
    let file = home.path().join("state/skitter/history/default.history");
    let saved = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert_eq!(saved, "let first = 1;\nfn two_lines() {\\n  2\\n}\n");
    // A new shell finds it with the up arrow.
    let mut again = Pty::spawn(dir.path(), home.path(), &[]);
    again.prompt(1);
    again.send("\x1b[A\x1b[A\r");
    again.prompt(2);
    again.line("first + 1");
    again.expect("2");
}

#[test]
fn h_prints_the_documentation_of_deploy() {
    let (dir, home) = (temp(), temp());
    let mut sh = Pty::spawn(dir.path(), home.path(), &[]);
    sh.prompt(1);
    sh.line("h(\"deploy\")");
    sh.expect("deploy(wf: Workflow) -> WorkflowRef");
    sh.expect("Validates a workflow");
    sh.prompt(2);
    sh.line("h()");
    sh.expect("Building workflows");
    sh.prompt(3);
}

#[test]
fn results_of_a_deployed_word_count_are_the_expected_counts() {
    let home = temp();
    let app = example("word_count");
    let mut sh = Pty::spawn(&app, home.path(), &[]);
    sh.prompt(1);
    sh.line("let r = deploy(word_totals(sample));");
    sh.prompt(2);
    sh.line("wait(r)");
    sh.expect("\"finished\"");
    sh.prompt(3);
    assert_eq!(sh.word_totals("r"), count_words(&std::fs::read_to_string(example("word_count").join("priv/words.txt")).unwrap()));
}

#[test]
fn output_of_a_running_workflow_does_not_corrupt_a_half_typed_line() {
    let (dir, home) = (temp(), temp());
    let mut sh = Pty::spawn(dir.path(), home.path(), &[]);
    sh.prompt(1);
    sh.line("let r = deploy(workflow().stream_source(|n| { sleep(0.15); n }).inspect(\"tick\"));");
    sh.prompt(2);
    sh.send("let typed = 4");
    // Output arrives while the line is half typed...
    sh.expect("tick: 2");
    sh.expect("tick: 3");
    // ...and the line is still whole when finished.
    sh.send("0 + 2;\r");
    sh.prompt(3);
    sh.line("typed");
    sh.expect("42");
    sh.prompt(4);
    // Leaving stops the running workflow gracefully.
    sh.send("\x04");
    sh.expect("stopping 1 running workflow(s) gracefully");
    sh.expect_eof();
}

#[test]
fn errors_show_the_line_and_a_caret_and_the_shell_goes_on() {
    let (dir, home) = (temp(), temp());
    let mut sh = Pty::spawn(dir.path(), home.path(), &[]);
    sh.prompt(1);
    sh.line("let x = 1 +* 2;");
    sh.expect("SyntaxError");
    sh.expect("let x = 1 +* 2;");
    sh.expect("^");
    // Like iex, failed entries do not advance the counter.
    sh.prompt(1);
    sh.line("undefined_fn(3)");
    sh.expect("RuntimeError");
    sh.prompt(1);
    sh.line("throw \"boom\"");
    sh.expect("boom");
    sh.prompt(1);
    sh.line("6 * 7");
    sh.expect("42");
    sh.prompt(2);
}

#[test]
fn deploy_option_runs_before_the_first_prompt_and_startup_file_runs() {
    let (dir, home) = (temp(), temp());
    std::fs::write(dir.path().join(".skitter.rhai"), "let from_startup = 99;\n").unwrap();
    let mut sh = Pty::spawn(dir.path(), home.path(), &["--deploy", "workflow().stream_source([7]).inspect(\"early\")"]);
    sh.expect("early: 7");
    sh.prompt(1);
    sh.line("from_startup");
    sh.expect("99");
}

#[test]
fn recompile_reports_a_syntax_error_and_keeps_old_functions() {
    let home = temp();
    let app = app_with(&[("lib/a.rhai", "fn answer() { 1 }\n")]);
    let mut sh = Pty::spawn(app.path(), home.path(), &[]);
    sh.prompt(1);
    sh.line("answer()");
    sh.expect("1");
    sh.prompt(2);
    std::fs::write(app.path().join("lib/a.rhai"), "fn answer() { 2 }\n").unwrap();
    sh.line("recompile(); answer()");
    sh.expect("2");
    sh.prompt(3);
    std::fs::write(app.path().join("lib/a.rhai"), "fn answer( {\n").unwrap();
    sh.line("recompile()");
    sh.expect("lib/a.rhai:1:");
    sh.prompt(3);
    sh.line("answer() * 21");
    sh.expect("42");
}

#[test]
fn completion_offers_variables_and_methods_and_hints_show_signatures() {
    let (dir, home) = (temp(), temp());
    let mut sh = Pty::spawn(dir.path(), home.path(), &[]);
    sh.prompt(1);
    sh.line("let unusual_variable = 20;");
    sh.prompt(2);
    // A variable in scope completes.
    sh.send("unusual_var\t");
    sh.send(" * 2\r");
    sh.expect("40");
    sh.prompt(3);
    // A method after `.` completes (to_upper is the only method starting so).
    sh.send("\"ab\".to_upp\t");
    sh.send("()\r");
    sh.expect("\"AB\"");
    sh.prompt(4);
    // Typing `name(` shows the rest of the signature as a hint.
    sh.send("fn pair(first, second) { [first, second] }\r");
    sh.prompt(5);
    sh.send("pair(");
    sh.expect("first, second)");
    sh.send("1, 2)\r");
    sh.expect("[1, 2]");
}
