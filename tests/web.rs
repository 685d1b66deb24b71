//! The web view (`--http`), looked at in a real headless browser: the
//! overview of a cluster, a running workflow's page, and stopping it from
//! the page with the token; without a token there is nothing to press and
//! the endpoint refuses.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::browser::Browser;
use common::node::{Node, COOKIE};
use common::wait_until;

/// Endless, and writes nothing until it ends: a count of a generator.
const ENDLESS: &str = r#"workflow().stream_source(|n| n).map(|n| n % 100).count().write_lines("OUT")"#;

/// Where the node serves its web view, from what it printed.
fn web_address(node: &Node) -> String {
    assert!(node.wait_stderr("web view at http://", Duration::from_secs(20)), "{}", node.stderr());
    let stderr = node.stderr();
    let line = stderr.lines().find(|l| l.contains("web view at http://")).unwrap();
    line.split("http://").nth(1).unwrap().split('/').next().unwrap().to_string()
}

/// A request to the view: its status line and body.
fn request(addr: &str, method: &str, path: &str, auth: Option<&str>) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = auth.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The rates shown for operator `name` on a workflow's page (in, out).
fn shown_rates(browser: &mut Browser, name: &str) -> (String, String) {
    let row = format!("document.querySelector('tr[data-operator=\"{name}\"]')");
    let cell = |b: &mut Browser, class: &str| b.eval(&format!("{row}.querySelector('.{class}').innerText")).as_str().unwrap().to_string();
    (cell(browser, "in-rate"), cell(browser, "out-rate"))
}

#[test]
fn the_overview_lists_both_workers_and_a_workflows_page_shows_rates_that_change() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let w1 = Node::worker("w1", "127.0.0.180", &[], tmp);
    let w2 = Node::worker("w2", "127.0.0.181", &[], tmp);
    let deploy = ENDLESS.replace("OUT", &tmp.join("out.txt").display().to_string());
    let master = Node::spawn(
        &["master", "start", "--no-log", "--listen", "127.0.0.182:0", "--http", "127.0.0.182:0", "--deploy", &deploy, &w1.addr, &w2.addr],
        tmp,
        COOKIE,
        None,
    );
    let web = web_address(&master);
    let mut browser = Browser::start();
    browser.open(&format!("http://{web}/"));
    let listed = browser.wait_for(
        "document.querySelector('#workers') && document.querySelector('#workers').innerText.includes('w1@') \
         && document.querySelector('#workers').innerText.includes('w2@') && document.querySelector('#workflows a')",
        Duration::from_secs(30),
    );
    assert!(listed, "the overview does not list both workers and the workflow:\n{}\n{}", browser.text(), master.stderr());
    // Each worker with its memory, uptime and link, as its heartbeats tell.
    let heard = browser.wait_for(
        "[...document.querySelectorAll('#workers tr')].slice(1).every(r => /MiB/.test(r.innerText) && /heard/.test(r.innerText))",
        Duration::from_secs(10),
    );
    assert!(heard, "the workers' health is not shown:\n{}", browser.text());
    let text = browser.text();
    assert!(text.contains("Workers (2)") && text.contains("running"), "{text}");

    // The workflow's page: its operators, with rates that are not zero and change.
    browser.eval("document.querySelector('#workflows a').click()");
    assert!(browser.wait_for("document.querySelector('tr[data-operator=\"map_2\"]')", Duration::from_secs(20)), "{}", browser.text());
    assert!(browser.wait_for("document.querySelector('svg.graph g[data-node=\"count_3\"]')", Duration::from_secs(5)), "no graph");
    let zero = |r: &(String, String)| r.0.starts_with("0.0 ") || r.1.starts_with("0.0 ");
    let first = shown_rates(&mut browser, "map_2");
    let mut changed = false;
    let looked = wait_until(Duration::from_secs(20), || {
        let now = shown_rates(&mut browser, "map_2");
        changed = now != first && !zero(&now) && !zero(&first);
        changed
    });
    assert!(looked, "the rates did not change or are zero: {first:?} then {:?}", shown_rates(&mut browser, "map_2"));
    // Where its instances run: a map runs on every slot of both workers.
    let runs_on = browser.eval("document.querySelector('tr[data-operator=\"map_2\"]').lastElementChild.innerText");
    let runs_on = runs_on.as_str().unwrap_or_default();
    assert!(runs_on.contains("w1@") && runs_on.contains("w2@") && runs_on.contains("×2"), "{runs_on}");
    // No token: no buttons.
    assert_eq!(browser.eval("document.querySelectorAll('button[data-act]').length"), serde_json::json!(0));
}

#[test]
fn stop_through_the_page_with_the_token_ends_the_workflow_and_without_a_token_there_is_nothing_to_press() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let deploy = ENDLESS.replace("OUT", &tmp.join("out.txt").display().to_string());
    let token = "page-token-7c1e9a40b2d35f68";

    // Read-only: the page has no button, and the endpoint refuses.
    let read_only = Node::spawn(&["local", "start", "--no-log", "--http", "127.0.0.183:0", "--deploy", &deploy], tmp, COOKIE, None);
    let web = web_address(&read_only);
    let mut browser = Browser::start();
    browser.open(&format!("http://{web}/workflow/1"));
    assert!(browser.wait_for("document.querySelector('tr[data-operator=\"map_2\"]')", Duration::from_secs(20)), "{}", browser.text());
    assert_eq!(browser.eval("document.querySelectorAll('button[data-act]').length"), serde_json::json!(0));
    let (status, body) = request(&web, "POST", "/api/workflow/1/stop", Some(token));
    assert!(status.contains("403") && body.contains("read-only"), "{status}: {body}");
    // A page elsewhere whose name was rebound to 127.0.0.1 reads nothing.
    let mut s = std::net::TcpStream::connect(&web).unwrap();
    write!(s, "GET /api/overview HTTP/1.1\r\nHost: rebound.example:80\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 421") && !answer.contains("workflows"), "{answer}");
    drop(read_only);

    // With a token: a request without it, or with another, is refused; the
    // page with it stops the workflow.
    let tmp2 = tempfile::tempdir().unwrap();
    let deploy = ENDLESS.replace("OUT", &tmp2.path().join("out.txt").display().to_string());
    let mut node = Node::spawn_with_env(
        &["local", "start", "--no-log", "--http", "127.0.0.184:0", "--deploy", &deploy],
        tmp2.path(),
        COOKIE,
        None,
        &[("SKITTER_HTTP_TOKEN", token)],
    );
    let web = web_address(&node);
    assert!(node.stderr().contains("stop, abort and checkpoint with the token"), "{}", node.stderr());
    let (status, _) = request(&web, "POST", "/api/workflow/1/stop", None);
    assert!(status.contains("401"), "{status}");
    let (status, _) = request(&web, "POST", "/api/workflow/1/stop", Some("another-token-of-enough-length"));
    assert!(status.contains("401"), "{status}");
    // The token rides in the fragment, which no request carries; the page
    // takes it off the address.
    browser.open(&format!("http://{web}/workflow/1#token={token}"));
    assert!(browser.wait_for("document.querySelector('button[data-act=\"stop\"]')", Duration::from_secs(20)), "{}", browser.text());
    assert_eq!(browser.eval("location.hash"), serde_json::json!(""));
    browser.eval("document.querySelector('button[data-act=\"stop\"]').click()");
    node.wait(Duration::from_secs(30)).unwrap_or_else(|| panic!("the workflow did not end:\n{}", node.stderr()));
    // A node deployed with --deploy ends with its workflow, saying how.
    let stderr = node.stderr();
    assert!(stderr.contains("error: workflow stopped before its sources ended"), "{stderr}");
}

#[test]
fn a_failed_workflows_page_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let node = Node::spawn(&["local", "start", "--no-log", "--http", "127.0.0.185:0"], tmp, COOKIE, None);
    let web = web_address(&node);
    let failing = "workflow().stream_source(|n| n).map(|n| if n == 3000 { throw `poison ${n}` } else { n }).collect()";
    common::node::run(tmp, &["rpc", "skitter_local", &format!("wait(deploy({failing}))")]).success().stdout_has("poison");
    let mut browser = Browser::start();
    browser.open(&format!("http://{web}/workflow/1"));
    let shown = browser.wait_for(
        "document.querySelector('#failure') && document.querySelector('#failure').innerText.includes('poison 3000')",
        Duration::from_secs(20),
    );
    assert!(shown, "the page does not say why it failed:\n{}", browser.text());
    browser.open(&format!("http://{web}/"));
    assert!(browser.wait_for(
        "document.querySelector('#workflows') && /failed/.test(document.querySelector('#workflows').innerText)",
        Duration::from_secs(20)
    ));
}
