//! Sources and sinks on a real Redis, started here on loopback (issue 17).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::node::{run, Node, COOKIE};
use common::*;
use redis::Commands;

/// A redis-server of our own on `ip`, on a free port, with nothing saved;
/// killed (by pid) when dropped.
struct Redis {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start(ip: &str) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--bind", ip, "--port", &port.to_string(), "--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (install it: apt-get install redis-server): {e}"));
        let url = format!("redis://{ip}:{port}");
        let redis = Redis { child, url, _dir: dir };
        let up = wait_until(Duration::from_secs(10), || redis.con_opt().is_some());
        assert!(up, "redis-server on {ip}:{port} did not answer");
        redis
    }

    fn con_opt(&self) -> Option<redis::Connection> {
        let mut con = redis::Client::open(self.url.as_str()).ok()?.get_connection().ok()?;
        redis::cmd("PING").query::<String>(&mut con).ok()?;
        Some(con)
    }

    fn con(&self) -> redis::Connection {
        self.con_opt().expect("redis answers")
    }

    /// Appends `lines` to `stream`, one entry each (field `line`).
    fn add_lines(&self, stream: &str, lines: &[String]) {
        let mut con = self.con();
        for line in lines {
            con.xadd::<_, _, _, _, ()>(stream, "*", &[("line", line.as_str())]).unwrap();
        }
    }

    /// Every entry of `stream`: its fields.
    fn entries(&self, stream: &str) -> Vec<BTreeMap<String, String>> {
        let reply: redis::streams::StreamRangeReply = self.con().xrange_all(stream).unwrap();
        reply
            .ids
            .into_iter()
            .map(|e| e.map.into_iter().map(|(k, v)| (k, redis::from_redis_value::<String>(&v).unwrap())).collect())
            .collect()
    }

    /// How many entries group `group` read and did not acknowledge.
    fn pending(&self, stream: &str, group: &str) -> usize {
        let reply: redis::streams::StreamPendingReply = self.con().xpending(stream, group).unwrap();
        reply.count()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn lines(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("w{} w{} w{}", i % 7, i % 11, i % 3)).collect()
}

/// The word count of the test's lines.
fn totals(lines: &[String]) -> BTreeMap<String, i64> {
    count_words(&lines.join("\n"))
}

/// What a word count wrote to `out`: `word` and `count` fields.
fn written_totals(redis: &Redis, out: &str) -> BTreeMap<String, i64> {
    let mut totals = BTreeMap::new();
    for e in redis.entries(out) {
        let previous = totals.insert(e["word"].clone(), e["count"].parse::<i64>().unwrap());
        assert!(previous.is_none(), "{} written twice", e["word"]);
    }
    totals
}

/// Deploys `wf` on the node `node` over rpc, waits until its source read
/// `read` records, stops it and returns the status.
fn run_until_read(tmp: &std::path::Path, node: &str, wf: &str, read: usize) -> String {
    let script = format!(
        "let r = deploy({wf}); let t = timestamp(); while stats(r).read < {read} && t.elapsed < 30.0 {{ sleep(0.01); }} \
         let s = stop(r); print(`${{s}} ${{stats(r).read}}`);"
    );
    run(tmp, &["rpc", node, &format!("{{ {script} }}")]).success().stdout().trim().to_string()
}

fn count_to_redis(url: &str, group: &str) -> String {
    format!(
        "workflow().redis_source(\"{url}\", \"lines\", #{{ group: \"{group}\" }}).flat_map(|e| e.fields.line.split(\" \")).count()\
         .map(|p| #{{ word: p[0], count: p[1] }}).redis_sink(\"{url}\", \"totals\")"
    )
}

#[test]
fn a_word_count_from_a_redis_stream_to_a_redis_stream_is_exact_locally_and_on_two_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = Redis::start("127.0.0.60");
    let input = lines(0, 400);
    redis.add_lines("lines", &input);
    let node = Node::spawn(&["local", "start", "--no-log", "--listen", "127.0.0.60:0"], tmp.path(), COOKIE, None);
    assert!(node.wait_stderr("Running in local mode", Duration::from_secs(10)));
    let status = run_until_read(tmp.path(), "skitter_local", &count_to_redis(&redis.url, "local"), 400);
    assert_eq!(status, "stopped 400");
    assert_eq!(written_totals(&redis, "totals"), totals(&input));
    assert_eq!(redis.pending("lines", "local"), 0, "what was counted is acknowledged");
    drop(node);

    // The same on a master with two workers, into a fresh output stream.
    let _: () = redis.con().del("totals").unwrap();
    let w1 = Node::worker("w1", "127.0.0.61", &[], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.62", &[], tmp.path());
    let master =
        Node::spawn(&["master", "start", "--no-log", "-n", "m1", "--listen", "127.0.0.63:0", &w1.addr, &w2.addr], tmp.path(), COOKIE, None);
    assert!(master.wait_stderr("connected to 2 worker(s)", Duration::from_secs(10)), "{}", master.stderr());
    let status = run_until_read(tmp.path(), "m1", &count_to_redis(&redis.url, "cluster"), 400);
    assert_eq!(status, "stopped 400");
    assert_eq!(written_totals(&redis, "totals"), totals(&input));
    assert_eq!(redis.pending("lines", "cluster"), 0);
}

/// Copies each entry's line and id to `copies`.
fn copy(url: &str, map: &str) -> String {
    format!("workflow().redis_source(\"{url}\", \"lines\", #{{ group: \"copy\" }}).map({map}).redis_sink(\"{url}\", \"copies\")")
}

#[test]
fn stopped_or_failed_a_redis_source_resumes_without_a_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = Redis::start("127.0.0.64");
    let node = Node::spawn(&["local", "start", "--no-log", "--listen", "127.0.0.64:0"], tmp.path(), COOKIE, None);
    assert!(node.wait_stderr("Running in local mode", Duration::from_secs(10)));
    let mut input = lines(0, 300);
    redis.add_lines("lines", &input);
    let plain = copy(&redis.url, "|e| #{ from: e.id, line: e.fields.line }");
    assert_eq!(run_until_read(tmp.path(), "skitter_local", &plain, 300), "stopped 300");
    assert_eq!(redis.pending("lines", "copy"), 0);
    // More input while nothing runs; then a run that fails on one of it.
    let more = lines(300, 300);
    redis.add_lines("lines", &more);
    input.extend(more.clone());
    let poison = &more[0];
    let failing = copy(
        &redis.url,
        &format!("|e| if e.fields.line == \"{poison}\" {{ throw \"poison\" }} else {{ #{{ from: e.id, line: e.fields.line }} }}"),
    );
    let failed = run(tmp.path(), &["rpc", "skitter_local", &format!("wait(deploy({failing}))")]);
    failed.success().stdout_has("failed").stdout_has("poison");
    assert!(redis.pending("lines", "copy") > 0, "a failed run acknowledges nothing");
    // The next run reads what the failed one left, and the rest.
    let more = lines(600, 100);
    redis.add_lines("lines", &more);
    input.extend(more);
    // 300 left pending by the failed run, and the 100 new ones.
    let status = run_until_read(tmp.path(), "skitter_local", &plain, 400);
    assert!(status.starts_with("stopped"), "{status}");
    let copies = redis.entries("copies");
    let seen: BTreeSet<String> = copies.iter().map(|e| e["from"].clone()).collect();
    let ids: redis::streams::StreamRangeReply = redis.con().xrange_all("lines").unwrap();
    let all: BTreeSet<String> = ids.ids.into_iter().map(|e| e.id).collect();
    assert_eq!(seen, all, "every entry was copied at least once");
    assert!(copies.len() >= input.len());
    assert_eq!(redis.pending("lines", "copy"), 0);
}

#[test]
fn a_redis_broker_that_dies_fails_the_workflow_naming_it_and_an_unreachable_one_fails_the_deploy() {
    let tmp = tempfile::tempdir().unwrap();
    let mut redis = Redis::start("127.0.0.65");
    redis.add_lines("lines", &lines(0, 10));
    let node = Node::spawn(&["local", "start", "--no-log", "--listen", "127.0.0.65:0"], tmp.path(), COOKIE, None);
    assert!(node.wait_stderr("Running in local mode", Duration::from_secs(10)));
    let url = redis.url.clone();
    let wf = format!("workflow().redis_source(\"{url}\", \"lines\", #{{ retry_secs: 0.5 }}).collect()");
    let id = run(tmp.path(), &["rpc", "skitter_local", &format!("deploy({wf}).id")]).success().stdout().trim().to_string();
    let read = wait_until(Duration::from_secs(20), || {
        run(tmp.path(), &["rpc", "skitter_local", &format!("stats(workflows()[{id} - 1].ref).read")]).stdout().trim() == "10"
    });
    assert!(read);
    redis.kill();
    let status = run(tmp.path(), &["rpc", "skitter_local", &format!("wait(workflows()[{id} - 1].ref)")]);
    status.success().stdout_has("failed").stdout_has(&format!("cannot read from {url}")).stdout_has("stream `lines`");
    let refused = run(tmp.path(), &["rpc", "skitter_local", &format!("deploy({wf})")]);
    refused.expect_code(1).stderr_has(&format!("cannot connect to {url}"));
    Skitter::new().args(["eval", "workflow().redis_source(\"http://x\", \"s\")"]).run().expect_code(1).stderr_has("is not a Redis URL");
}
