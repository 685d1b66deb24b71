//! Remote consoles, rpc and eval (issue 5).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::node::{run, Node, COOKIE};
use common::pty::Pty;
use common::*;

/// A master daemon named `m1` with two workers, serving the word count app.
struct Cluster {
    tmp: tempfile::TempDir,
    _workers: Vec<Node>,
}

impl Cluster {
    fn start(ip: u8) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let w1 = Node::worker("w1", &format!("127.0.0.{ip}"), &[], tmp.path());
        let w2 = Node::worker("w2", &format!("127.0.0.{}", ip + 1), &[], tmp.path());
        let app = example("word_count");
        let listen = format!("127.0.0.{}:0", ip + 2);
        run(
            tmp.path(),
            &["master", "daemon", "-n", "m1", "--no-log", "--listen", &listen, "--app", app.to_str().unwrap(), &w1.addr, &w2.addr],
        )
        .success();
        Cluster { tmp, _workers: vec![w1, w2] }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn pty(&self, home: &Path) -> Pty {
        let mut cmd_home = home.to_path_buf();
        cmd_home.push("h");
        std::fs::create_dir_all(&cmd_home).unwrap();
        Pty::command_with(
            self.path(),
            &cmd_home,
            &["remote", "m1"],
            &[("SKITTER_COOKIE", COOKIE), ("SKITTER_TMP", self.path().to_str().unwrap())],
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = run(self.path(), &["master", "stop", "-n", "m1"]);
    }
}

#[test]
fn a_remote_shell_on_a_master_daemon_lists_workers_and_runs_a_word_count() {
    let cluster = Cluster::start(30);
    let home = tempfile::tempdir().unwrap();
    let mut sh = cluster.pty(home.path());
    sh.expect_re(r"skitter\(m1@[^)]+\)1> ");
    sh.line("workers().len()");
    sh.expect("2");
    sh.prompt(2);
    sh.line("let r = deploy(word_totals(priv_path(\"words.txt\")));");
    sh.prompt(3);
    sh.line("wait(r)");
    sh.expect("\"finished\"");
    sh.prompt(4);
    assert_eq!(sh.word_totals("r"), count_words(&std::fs::read_to_string(example("word_count").join("priv/words.txt")).unwrap()));
    // What a workflow deployed from here prints shows here, not on the master.
    sh.line("wait(deploy(workflow().stream_source([6]).map(|x| x * 7).inspect(\"seen\").collect()))");
    sh.expect("seen: 42");
    sh.expect("\"finished\"");
    let out_file = std::fs::read_dir(cluster.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("m1") && p.extension().is_some_and(|x| x == "out"))
        .expect("the master's .out file");
    let master_out = std::fs::read_to_string(out_file).unwrap();
    assert!(!master_out.contains("seen: 42"), "{master_out}");
    // An error leaves console and node alive.
    sh.line("1 / 0");
    sh.expect("Division by zero");
    sh.line("40 + 2");
    sh.expect("42");
    // Completion of a function only the node has (the app is not here).
    sh.send("word_tot\t");
    sh.send("\r");
    sh.expect("(\"word_totals\")");
    // A runaway loop on the node is interrupted.
    let node = recorded_pid(cluster.path(), "master", "m1");
    let before = cpu_time(node);
    sh.line("loop { }");
    wait_busy(node, before, Duration::from_millis(100));
    sh.send("\x03");
    sh.expect("Interrupted");
    sh.line("6 * 7");
    sh.expect("42");
    // exit() only detaches.
    sh.line("exit()");
    sh.expect("detached from m1@");
    sh.expect_eof();
    run(cluster.path(), &["rpc", "m1", "workers().len()"]).success().stdout_has("2");
}

#[test]
fn detaching_leaves_the_node_and_its_workflows_running() {
    let cluster = Cluster::start(34);
    let script = "let r = deploy(workflow().stream_source(|n| { sleep(0.01); n }).count(|x| x % 2).collect());\nprint(`deployed ${r}`);\n";
    let out = Outcome(
        Command::new(BIN)
            .args(["remote", "m1"])
            .env("SKITTER_COOKIE", COOKIE)
            .env("SKITTER_TMP", cluster.path())
            .env("HOME", cluster.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
                child.wait_with_output().unwrap()
            })
            .unwrap(),
    );
    out.success().stdout_has("deployed #WorkflowRef<").stderr_has("it keeps running");
    std::thread::sleep(Duration::from_millis(200));
    // The daemon also runs the app's own word count (still running under
    // load): the endless one is the one deployed last.
    let last = "let w = workflows(); w[w.len() - 1].ref";
    let status = run(cluster.path(), &["rpc", "m1", &format!("status({{ {last} }})")]);
    status.success().stdout_has("\"running\"");
    run(cluster.path(), &["rpc", "m1", &format!("stop({{ {last} }})")]).success().stdout_has("\"stopped\"");
}

#[test]
fn two_consoles_at_once_keep_separate_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let node = Node::spawn(&["local", "start", "--no-log", "--listen", "127.0.0.38:0"], tmp.path(), COOKIE, None);
    assert!(node.wait_stderr("Running in local mode", Duration::from_secs(5)));
    let env = [("SKITTER_COOKIE", COOKIE), ("SKITTER_TMP", tmp.path().to_str().unwrap())];
    let mut a = Pty::command_with(tmp.path(), home.path(), &["remote", "skitter_local"], &env);
    let mut b = Pty::command_with(tmp.path(), home.path(), &["local", "remote"], &env);
    a.prompt(1);
    b.prompt(1);
    a.line("let mine = \"a\";");
    b.line("let mine = \"b\";");
    a.prompt(2);
    b.prompt(2);
    a.line("mine");
    b.line("mine");
    a.expect("\"a\"");
    b.expect("\"b\"");
}

#[test]
fn a_wrong_cookie_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::spawn(&["local", "start", "--no-log", "--listen", "127.0.0.39:0"], tmp.path(), COOKIE, None);
    assert!(node.wait_stderr("Running in local mode", Duration::from_secs(5)));
    let out = Outcome(
        Command::new(BIN)
            .args(["rpc", &node.addr, "1 + 1", "-c", "wrong-cookie-7d2a9f4e1b8c3a60"])
            .env("SKITTER_TMP", tmp.path())
            .env("HOME", tmp.path())
            .output()
            .unwrap(),
    );
    out.expect_code(1).stderr_has("wrong cookie");
    assert!(node.wait_stderr("wrong cookie", Duration::from_secs(5)), "{}", node.stderr());
}

#[test]
fn rpc_and_eval_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::spawn(&["local", "start", "--no-log", "--listen", "127.0.0.40:0"], tmp.path(), COOKIE, None);
    run(tmp.path(), &["rpc", "skitter_local", "6 * 7"]).success().stdout_has("42");
    // What the workflow printed arrives before the result it waited for.
    let printed = run(tmp.path(), &["rpc", "skitter_local", "wait(deploy(workflow().stream_source([1, 2]).inspect(\"got\").collect()))"]);
    printed.success().stdout_has("got: 1").stdout_has("got: 2").stdout_has("\"finished\"");
    assert!(!node.stdout().contains("got: 1"), "{}", node.stdout());
    let script = tmp.path().join("check.rhai");
    std::fs::write(&script, "let n = twice(21);\nprint(`twice: ${n}`);\nfn twice(x) { x * 2 }\nn\n").unwrap();
    let out = run(tmp.path(), &["rpc", "skitter_local", "--file", script.to_str().unwrap()]);
    out.success().stdout_has("twice: 42");
    assert_eq!(out.stdout().trim(), "twice: 42", "a script's value is not shown");
    std::fs::write(&script, "print(1);\nthrow \"nope\";\n").unwrap();
    run(tmp.path(), &["rpc", "skitter_local", "-f", script.to_str().unwrap()]).expect_code(1).stderr_has("nope").stderr_has("line 2");
    run(tmp.path(), &["rpc", "skitter_local", "6 +* 7"]).expect_code(1).stderr_has("syntax error");
    run(tmp.path(), &["rpc", "skitter_local", "throw \"nope\""]).expect_code(1).stderr_has("nope");
    run(tmp.path(), &["rpc", "nobody_here", "1"]).expect_code(1).stderr_has("no node named nobody_here@");
    let app = example("word_count");
    let eval = run(
        tmp.path(),
        &["eval", "--app", app.to_str().unwrap(), "let r = deploy(word_totals(priv_path(\"words.txt\"))); wait(r); results(r).len()"],
    );
    eval.success().stdout_has("1000");
    run(tmp.path(), &["eval", "missing_function()"]).expect_code(1).stderr_has("missing_function");
}

#[test]
fn a_lost_connection_ends_the_console_with_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut node = Node::spawn(&["local", "start", "--no-log", "--listen", "127.0.0.41:0"], tmp.path(), COOKIE, None);
    assert!(node.wait_stderr("Running in local mode", Duration::from_secs(5)));
    let env = [("SKITTER_COOKIE", COOKIE), ("SKITTER_TMP", tmp.path().to_str().unwrap())];
    let mut sh = Pty::command_with(tmp.path(), home.path(), &["remote", "skitter_local"], &env);
    sh.prompt(1);
    node.kill9();
    sh.expect("lost the connection");
    sh.expect_eof();
}

#[test]
fn halt_asks_for_the_node_name() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut node = Node::spawn(&["local", "start", "--no-log", "--listen", "127.0.0.42:0"], tmp.path(), COOKIE, None);
    assert!(node.wait_stderr("Running in local mode", Duration::from_secs(5)));
    let env = [("SKITTER_COOKIE", COOKIE), ("SKITTER_TMP", tmp.path().to_str().unwrap())];
    let mut sh = Pty::command_with(tmp.path(), home.path(), &["remote", "skitter_local"], &env);
    sh.prompt(1);
    sh.line("halt()");
    sh.expect("to halt it");
    sh.line("not-the-name");
    sh.expect("not halted");
    assert!(node.wait(Duration::from_millis(300)).is_none(), "the node must keep running");
    sh.line("halt()");
    sh.expect("to halt it");
    sh.line(&node.name);
    sh.expect("is halting");
    let status = node.wait(Duration::from_secs(5)).expect("the node halts");
    assert!(status.success());
}

#[test]
fn logs_true_forwards_the_node_log_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let node = Node::spawn(&["local", "start", "--listen", "127.0.0.43:0"], tmp.path(), COOKIE, None);
    assert!(node.wait_stderr("Running in local mode", Duration::from_secs(5)));
    let env = [("SKITTER_COOKIE", COOKIE), ("SKITTER_TMP", tmp.path().to_str().unwrap())];
    let mut sh = Pty::command_with(tmp.path(), home.path(), &["remote", "skitter_local"], &env);
    sh.prompt(1);
    sh.line("logs(true)");
    sh.prompt(2);
    // Deploying logs a line on the node; it shows up here.
    sh.line("deploy(workflow().stream_source([1]).collect())");
    sh.expect("deployed");
}

/// Issue 25: an `rpc` whose answer ends the master's workflow (a master
/// started with --deploy exits once it ended) printed the answer, then
/// "lost the connection" and exit status 1.
#[test]
fn an_rpc_whose_answer_ends_the_masters_run_exits_0_with_the_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Node::worker("w1", "127.0.0.44", &["--no-shutdown-with-master"], tmp.path());
    for round in 0..5 {
        let name = format!("m{round}");
        let wf = "workflow().stream_source(|n| { sleep(0.001); n }).map(|x| x).collect()";
        let mut master = Node::spawn(
            &["master", "start", "--no-log", "-n", &name, "--listen", "127.0.0.45:0", "-d", wf, &w.addr],
            tmp.path(),
            COOKIE,
            None,
        );
        assert!(master.wait_stderr("connected to 1 worker(s)", Duration::from_secs(10)), "{}", master.stderr());
        let out = run(tmp.path(), &["rpc", &name, "stop(workflows()[0].ref)"]);
        assert_eq!(out.stdout().trim(), "\"stopped\"", "round {round}: {}", out.stderr());
        out.success();
        assert!(!out.stderr().contains("lost the connection"), "round {round}: {}", out.stderr());
        master.wait(Duration::from_secs(10)).expect("the master ends with its workflow");
    }
}
