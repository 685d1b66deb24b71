//! Watching running workflows: top(), to_dot(ref), stats() (issue 16).

mod common;

use std::time::Duration;

use common::node::{Node, COOKIE};
use common::pty::Pty;
use common::*;

/// A rate cell of `top()` that is not zero, after the operator's name.
fn nonzero_rate(operator: &str) -> String {
    format!(r"{operator}\s+([1-9][0-9.]*[kM]?|0\.[1-9])\s")
}

/// An endless workflow that keeps nothing: its map is always busy.
const ENDLESS: &str = "let r = deploy(workflow().stream_source(|n| n).map(|x| x + 1).filter(|x| x < 0).collect());";

/// Deploys ENDLESS in shell `sh`, runs `top()` until a redraw shows a
/// rate, and quits it with `q`: the prompt is the same one.
fn endless_then_top(sh: &mut Pty) {
    sh.prompt(1);
    sh.line(ENDLESS);
    sh.prompt(2);
    sh.line("top()");
    sh.expect("q or Ctrl-C to quit");
    // A redraw, with rates between the two looks.
    sh.expect("q or Ctrl-C to quit");
    sh.expect_re(&nonzero_rate("map_2"));
    sh.send("q");
    sh.prompt(2);
}

#[test]
fn top_redraws_with_rates_and_gives_the_prompt_back() {
    let (dir, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut sh = Pty::spawn(dir.path(), home.path(), &[]);
    endless_then_top(&mut sh);
    sh.line("40 + 2");
    sh.expect("42");
    // Ctrl-C leaves it too, and the shell stays.
    sh.line("top()");
    sh.expect("q or Ctrl-C to quit");
    sh.send("\x03");
    sh.prompt(3);
    sh.line("stop(r)");
    sh.expect("\"stopped\"");
}

#[test]
fn top_in_a_remote_console_shows_the_nodes_workflows() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let node = Node::spawn(&["local", "start", "--no-log", "--listen", "127.0.0.41:0"], tmp.path(), COOKIE, None);
    assert!(node.wait_stderr("Running in local mode", Duration::from_secs(5)));
    let env = [("SKITTER_COOKIE", COOKIE), ("SKITTER_TMP", tmp.path().to_str().unwrap())];
    let mut sh = Pty::command_with(tmp.path(), home.path(), &["remote", "skitter_local"], &env);
    endless_then_top(&mut sh);
    sh.line("stop(r)");
    sh.expect("\"stopped\"");
}

#[test]
fn outside_a_prompt_top_prints_the_table_once() {
    let script = "let r = deploy(workflow().stream_source(|n| { sleep(0.001); n }).map(|x| x).collect());\n\
                  let t = timestamp(); while stats(r).operators.map_2[\"in\"] < 20 && t.elapsed < 20.0 { sleep(0.01); }\n\
                  top();\nstop(r);\ntop();\n";
    let out = Skitter::new().args(["local", "--no-log"]).stdin(script).run();
    out.success().stdout_has("#WorkflowRef<1>  running").stdout_has("OPERATOR").stdout_has("no workflow is running");
    let row = out.stdout().lines().find(|l| l.trim_start().starts_with("map_2")).map(str::to_string).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert!(cells[3].parse::<u64>().unwrap() >= 20, "{row}");
}

/// The label of `node` in a dot graph.
fn label<'a>(dot: &'a str, node: &str) -> &'a str {
    dot.lines().find(|l| l.trim_start().starts_with(&format!("\"{node}\" [label="))).unwrap_or_else(|| panic!("{node} in {dot}"))
}

const COUNTED: &str = "let r = deploy(workflow().stream_source(1..=1000).map(|x| x * 2).filter(|x| x % 3 == 0).collect());\n\
                       wait(r);\nprint(to_dot(r));\nlet s = stats(r);\n\
                       print(`p99 ${type_of(s.operators.map_2.p99_us)} elapsed ${s.elapsed > 0.0}`);\n";

fn check_counted(stdout: &str) {
    // 1000 records in, 333 multiples of 3 accepted.
    assert!(label(stdout, "map_2").contains("in 1000 ("), "{stdout}");
    assert!(label(stdout, "map_2").contains("out 1000 ("), "{stdout}");
    assert!(label(stdout, "map_2").contains("p99 "), "{stdout}");
    assert!(label(stdout, "collect_4").contains("in 333 ("), "{stdout}");
    assert!(stdout.contains("\"filter_3\" -> \"collect_4\" [label=\"accept: 333 ("), "{stdout}");
    assert!(stdout.contains("p99 f64 elapsed true"), "{stdout}");
}

#[test]
fn to_dot_of_a_deployed_workflow_has_its_counts() {
    let out = Skitter::new().args(["local", "--no-log"]).stdin(COUNTED).run();
    out.success();
    check_counted(&out.stdout());
}

#[test]
fn to_dot_on_a_master_adds_up_the_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.42", &[], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.43", &[], tmp.path());
    let out = Skitter::new()
        .args(["master", "start_iex", "--no-log", "--listen", "127.0.0.44:0", &w1.addr, &w2.addr])
        .env("SKITTER_COOKIE", COOKIE)
        .env("SKITTER_TMP", tmp.path())
        .stdin(&format!("while workers().len() < 2 {{ sleep(0.01); }}\n{COUNTED}"))
        .run();
    out.success();
    check_counted(&out.stdout());
}

/// `GET /metrics` from `addr`: the body.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    body.to_string()
}

/// The value of the sample `series` (name and labels, as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.trim().parse().unwrap()))
}

/// Where a node serves metrics, from what it printed.
fn metrics_addr(node: &Node) -> String {
    assert!(node.wait_stderr("metrics at http://", Duration::from_secs(10)), "{}", node.stderr());
    let err = node.stderr();
    let rest = err.split("metrics at http://").nth(1).unwrap();
    rest.split('/').next().unwrap().to_string()
}

/// Deploys, from `node_name` over rpc, a workflow reading lines from a
/// connection the test makes, keeping those not "skip"; sends 1000 lines,
/// a quarter of them "skip"; checks a scrape while the connection is open,
/// then after it closed and the workflow finished.
fn scrape_during_and_after(tmp: &std::path::Path, node_name: &str, metrics: &str) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let wf = format!("deploy(workflow().tcp_source(\"127.0.0.1\", {port}).filter(|l| l != \"skip\").name(\"keep\").collect()).id");
    let id = common::node::run(tmp, &["rpc", node_name, &wf]).success().stdout().trim().to_string();
    let (mut conn, _) = listener.accept().unwrap();
    for i in 0..1000 {
        writeln!(conn, "{}", if i % 4 == 0 { "skip".to_string() } else { format!("line {i}") }).unwrap();
    }
    conn.flush().unwrap();
    let wf = format!("{{workflow=\"{id}\"}}");
    let keep = format!("{{workflow=\"{id}\",operator=\"keep\"}}");
    let mut text = String::new();
    let during = wait_until(Duration::from_secs(20), || {
        text = scrape(metrics);
        sample(&text, &format!("skitter_operator_records_in_total{keep}")) == Some(1000.0)
    });
    assert!(during, "{text}");
    assert_eq!(sample(&text, &format!("skitter_workflow_records_read_total{wf}")), Some(1000.0), "{text}");
    assert_eq!(sample(&text, &format!("skitter_workflow_running{wf}")), Some(1.0), "{text}");
    drop(conn);
    let after = wait_until(Duration::from_secs(20), || {
        text = scrape(metrics);
        sample(&text, &format!("skitter_workflow_running{wf}")) == Some(0.0)
    });
    assert!(after, "{text}");
    assert_eq!(sample(&text, &format!("skitter_operator_records_in_total{keep}")), Some(1000.0), "{text}");
    assert_eq!(sample(&text, &format!("skitter_workflow_records_written_total{wf}")), Some(750.0), "{text}");
    assert_eq!(sample(&text, &format!("skitter_operator_errors_total{keep}")), Some(0.0), "{text}");
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 1e6, "{text}");
}

#[test]
fn metrics_of_a_local_node_match_the_records_processed() {
    let tmp = tempfile::tempdir().unwrap();
    let node =
        Node::spawn(&["local", "start", "--no-log", "--listen", "127.0.0.47:0", "--metrics", "127.0.0.47:0"], tmp.path(), COOKIE, None);
    let metrics = metrics_addr(&node);
    assert!(metrics.starts_with("127.0.0.47:"), "{metrics}");
    scrape_during_and_after(tmp.path(), "skitter_local", &metrics);
    // A refused handshake is counted.
    common::node::run_with_cookie(tmp.path(), "wrong-cookie-7d2a9f4e1b8c3a60", &["rpc", "skitter_local", "1"]).expect_code(1);
    let text = scrape(&metrics);
    assert!(sample(&text, "skitter_handshake_failures_total").unwrap() >= 1.0, "{text}");
    assert_eq!(sample(&text, "skitter_workers"), Some(1.0), "{text}");
}

#[test]
fn metrics_of_a_master_add_up_its_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let w1 = Node::worker("w1", "127.0.0.48", &[], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.49", &[], tmp.path());
    let master = Node::spawn(
        &["master", "start", "--no-log", "-n", "m1", "--listen", "127.0.0.50:0", "--metrics", "127.0.0.50:0", &w1.addr, &w2.addr],
        tmp.path(),
        COOKIE,
        None,
    );
    let metrics = metrics_addr(&master);
    assert!(master.wait_stderr("connected to 2 worker(s)", Duration::from_secs(10)), "{}", master.stderr());
    assert_eq!(sample(&scrape(&metrics), "skitter_workers"), Some(2.0));
    scrape_during_and_after(tmp.path(), "m1", &metrics);
}

/// A window's event time and its late records, on /metrics.
#[test]
fn metrics_show_a_windows_event_time_and_its_late_records() {
    let tmp = tempfile::tempdir().unwrap();
    let node =
        Node::spawn(&["local", "start", "--no-log", "--listen", "127.0.0.160:0", "--metrics", "127.0.0.160:0"], tmp.path(), COOKIE, None);
    let metrics = metrics_addr(&node);
    // In order to 49.995 s, then one from the first window (see the late
    // record test in windows.rs).
    let wf = "let r = deploy(workflow().stream_source(|n| if n < 5000 { #{ ts: n / 100.0 } } else if n == 5000 { #{ ts: 49.995 } } \
              else if n == 5001 { sleep(0.3); #{ ts: 0.5 } } else { () }).event_time(|e| e.ts).window_count(tumbling(10), |e| \"all\").name(\"w\").collect()); \
              wait(r); r.id";
    let id = common::node::run(tmp.path(), &["rpc", "skitter_local", wf]).success().stdout().trim().to_string();
    let w = format!("{{workflow=\"{id}\",operator=\"w\"}}");
    let text = scrape(&metrics);
    assert_eq!(sample(&text, &format!("skitter_operator_late_records_total{w}")), Some(1.0), "{text}");
    let wm = sample(&text, &format!("skitter_operator_watermark_seconds{w}")).unwrap_or(0.0);
    assert!(wm > 10.0 && wm <= 49.995, "the window's event time is past its first window: {text}");
    assert!(sample(&text, &format!("skitter_operator_watermark_lag_seconds{w}")).unwrap() > 1e9, "1970 is long ago: {text}");
}
