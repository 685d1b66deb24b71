//! Sources and sinks on a real Redis, started here on loopback (issue 17).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::brokers::*;
use common::node::{run, Node, COOKIE};
use common::*;
use redis::Commands;

/// A redis-server of our own on `ip`, on a free port, with nothing saved;
/// killed (by pid) when dropped.
struct Redis {
    server: Server,
    url: String,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start(ip: &str) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port();
        let child = Command::new(program("redis-server"))
            .args(["--bind", ip, "--port", &port.to_string(), "--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (install it: apt-get install redis-server): {e}"));
        let url = format!("redis://{ip}:{port}");
        let redis = Redis { server: Server(child), url, _dir: dir };
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
        self.server.kill();
    }
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
    let node = local_node(tmp.path(), "127.0.0.60");
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
    let _node = local_node(tmp.path(), "127.0.0.64");
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
    let _node = local_node(tmp.path(), "127.0.0.65");
    let url = redis.url.clone();
    let wf = format!("workflow().redis_source(\"{url}\", \"lines\", #{{ retry_secs: 0.5 }}).collect()");
    let status = killed_mid_run(tmp.path(), &wf, || redis.kill());
    status.success().stdout_has("failed").stdout_has(&format!("cannot read from {url}")).stdout_has("stream `lines`");
    let refused = run(tmp.path(), &["rpc", "skitter_local", &format!("deploy({wf})")]);
    refused.expect_code(1).stderr_has(&format!("cannot connect to {url}"));
    Skitter::new().args(["eval", "workflow().redis_source(\"http://x\", \"s\")"]).run().expect_code(1).stderr_has("is not a Redis URL");
}

/// A nats-server with JetStream of our own on `ip`, storing in a temporary
/// directory; killed (by pid) when dropped.
struct Nats {
    server: Server,
    url: String,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Nats {
    fn start(ip: &str) -> Nats {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port();
        let child = Command::new(program("nats-server"))
            .args(["-js", "-a", ip, "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server (install it: apt-get install nats-server): {e}"));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let nats = Nats { server: Server(child), url: format!("nats://{ip}:{port}"), rt, _dir: dir };
        let up = wait_until(Duration::from_secs(10), || nats.rt.block_on(async_nats::connect(nats.url.as_str())).is_ok());
        assert!(up, "nats-server on {ip}:{port} did not answer");
        nats
    }

    fn js(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.rt.block_on(async_nats::connect(self.url.as_str())).unwrap())
    }

    fn create_stream(&self, name: &str, subjects: &[&str]) {
        let js = self.js();
        let config = async_nats::jetstream::stream::Config {
            name: name.into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        self.rt.block_on(js.create_stream(config)).unwrap();
    }

    fn publish(&self, subject: &str, payloads: &[String]) {
        let js = self.js();
        self.rt.block_on(async {
            for p in payloads {
                js.publish(subject.to_string(), p.clone().into()).await.unwrap().await.unwrap();
            }
        });
    }

    /// The payloads of `stream`, from the start.
    fn messages(&self, stream: &str) -> Vec<String> {
        use futures_util::StreamExt;
        let js = self.js();
        self.rt.block_on(async {
            let stream = js.get_stream(stream).await.unwrap();
            let consumer = stream.create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default()).await.unwrap();
            let mut messages = consumer.messages().await.unwrap();
            let mut got = Vec::new();
            while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), messages.next()).await {
                got.push(String::from_utf8(m.payload.to_vec()).unwrap());
            }
            got
        })
    }

    fn kill(&mut self) {
        self.server.kill();
    }
}

/// What a word count published: `word count` payloads.
fn published_totals(nats: &Nats, stream: &str) -> BTreeMap<String, i64> {
    let mut totals = BTreeMap::new();
    for m in nats.messages(stream) {
        let (word, n) = m.split_once(' ').unwrap();
        assert!(totals.insert(word.to_string(), n.parse::<i64>().unwrap()).is_none(), "{word} published twice");
    }
    totals
}

#[test]
fn a_word_count_from_nats_jetstream_to_nats_is_exact_locally_and_on_two_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let nats = Nats::start("127.0.0.70");
    nats.create_stream("LINES", &["lines.>"]);
    nats.create_stream("TOTALS", &["totals.>"]);
    let input = lines(0, 400);
    nats.publish("lines.in", &input);
    let wf = |durable: &str, out: &str| {
        format!(
            "workflow().nats_source(\"{url}\", \"lines.in\", #{{ stream: \"LINES\", durable: \"{durable}\" }}).flat_map(|m| m.value.split(\" \"))\
             .count().map(|p| `${{p[0]}} ${{p[1]}}`).nats_sink(\"{url}\", \"totals.{out}\")",
            url = nats.url
        )
    };
    let node = local_node(tmp.path(), "127.0.0.70");
    assert_eq!(run_until_read(tmp.path(), "skitter_local", &wf("local", "local"), 400), "stopped 400");
    assert_eq!(published_totals(&nats, "TOTALS"), totals(&input));
    drop(node);

    let w1 = Node::worker("w1", "127.0.0.71", &[], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.72", &[], tmp.path());
    let master =
        Node::spawn(&["master", "start", "--no-log", "-n", "m2", "--listen", "127.0.0.73:0", &w1.addr, &w2.addr], tmp.path(), COOKIE, None);
    assert!(master.wait_stderr("connected to 2 worker(s)", Duration::from_secs(10)), "{}", master.stderr());
    nats.create_stream("TOTALS2", &["totals2.>"]);
    let cluster = wf("cluster", "x").replace("\"totals.x\"", "\"totals2.x\"");
    assert_eq!(run_until_read(tmp.path(), "m2", &cluster, 400), "stopped 400");
    assert_eq!(published_totals(&nats, "TOTALS2"), totals(&input));
}

#[test]
fn a_nats_source_resumes_after_its_saved_position_and_a_failed_run_saves_none() {
    let tmp = tempfile::tempdir().unwrap();
    let nats = Nats::start("127.0.0.74");
    nats.create_stream("LINES", &["lines.>"]);
    nats.create_stream("COPIES", &["copies.>"]);
    let _node = local_node(tmp.path(), "127.0.0.74");
    let copy = |map: &str| {
        format!(
            "workflow().nats_source(\"{url}\", \"lines.in\", #{{ stream: \"LINES\", durable: \"copy\" }}).map({map}).nats_sink(\"{url}\", \"copies.all\")",
            url = nats.url
        )
    };
    let plain = copy("|m| `${m.seq} ${m.value}`");
    nats.publish("lines.in", &lines(0, 300));
    assert_eq!(run_until_read(tmp.path(), "skitter_local", &plain, 300), "stopped 300");
    // A run that fails on the next message saves nothing...
    let more = lines(300, 200);
    nats.publish("lines.in", &more);
    let failing = copy(&format!("|m| if m.value == \"{}\" {{ throw \"poison\" }} else {{ `${{m.seq}} ${{m.value}}` }}", more[0]));
    run(tmp.path(), &["rpc", "skitter_local", &format!("wait(deploy({failing}))")]).success().stdout_has("failed").stdout_has("poison");
    // ... so the next one reads the 200 again, and not the first 300.
    assert_eq!(run_until_read(tmp.path(), "skitter_local", &plain, 200), "stopped 200");
    let copies = nats.messages("COPIES");
    let seqs: BTreeSet<u64> = copies.iter().map(|c| c.split_once(' ').unwrap().0.parse().unwrap()).collect();
    assert_eq!(seqs, (1..=500).collect::<BTreeSet<u64>>(), "every message copied at least once");
    let first_run = copies.iter().filter(|c| c.split_once(' ').unwrap().0.parse::<u64>().unwrap() <= 300).count();
    assert_eq!(first_run, 300, "the saved position is not read again");
}

#[test]
fn a_nats_server_that_dies_fails_the_workflow_naming_it_and_an_unreachable_one_fails_the_deploy() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nats = Nats::start("127.0.0.75");
    nats.create_stream("LINES", &["lines.>"]);
    nats.publish("lines.in", &lines(0, 10));
    let _node = local_node(tmp.path(), "127.0.0.75");
    let url = nats.url.clone();
    let wf = format!("workflow().nats_source(\"{url}\", \"lines.in\", #{{ stream: \"LINES\", retry_secs: 0.5 }}).collect()");
    let status = killed_mid_run(tmp.path(), &wf, || nats.kill());
    status.success().stdout_has("failed").stdout_has(&format!("cannot read from {url}"));
    let refused = run(tmp.path(), &["rpc", "skitter_local", &format!("deploy({wf})")]);
    refused.expect_code(1).stderr_has(&format!("cannot connect to {url}"));
    Skitter::new()
        .args(["eval", "workflow().nats_source(\"redis://x\", \"s\", #{ stream: \"S\" })"])
        .run()
        .expect_code(1)
        .stderr_has("is not a NATS URL");
    Skitter::new()
        .args(["eval", "workflow().nats_source(\"nats://x:1\", \"s\", #{})"])
        .run()
        .expect_code(1)
        .stderr_has("give the JetStream stream");
}

/// Issue 27: a local node killed (SIGKILL) while a Redis source streams into
/// a file resumes from its last checkpoint, whatever Redis was told: the
/// file holds every entry exactly once.
#[test]
fn killed_at_any_moment_a_redis_source_into_a_file_resumes_exactly_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = Redis::start("127.0.0.65");
    let out = tmp.path().join("out.txt");
    let wf = format!(
        "workflow().redis_source(\"{}\", \"lines\", #{{ group: \"g\" }}).map(|e| e.fields.line).write_lines(\"{}\")",
        redis.url,
        out.display()
    );
    let (got, want) = killed_and_resumed(tmp.path(), &wf, &out, 3, |round| {
        let more: Vec<String> = (round * 15_000..(round + 1) * 15_000).map(|i| format!("entry {i}")).collect();
        redis.add_lines("lines", &more);
        more
    });
    assert_eq!(got, want, "every entry once");
    assert_eq!(redis.pending("lines", "g"), 0, "everything read was acknowledged at the savepoint");
}

/// The same with a NATS JetStream source.
#[test]
fn killed_at_any_moment_a_nats_source_into_a_file_resumes_exactly_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let nats = Nats::start("127.0.0.66");
    nats.create_stream("LINES", &["lines.in"]);
    let out = tmp.path().join("out.txt");
    let wf = format!(
        "workflow().nats_source(\"{}\", \"lines.in\", #{{ stream: \"LINES\", durable: \"k\" }}).map(|m| m.value).write_lines(\"{}\")",
        nats.url,
        out.display()
    );
    let (got, want) = killed_and_resumed(tmp.path(), &wf, &out, 3, |round| {
        let more: Vec<String> = (round * 3_000..(round + 1) * 3_000).map(|i| format!("message {i}")).collect();
        nats.publish("lines.in", &more);
        more
    });
    assert_eq!(got, want, "every message once");
}

/// Issue 27: on a cluster, a Redis source was acknowledged by each worker
/// as soon as its own files were named — before the master named the
/// `write_lines` file, and even when a worker could not name its own (it
/// only logged that, and the workflow read `finished`). Input whose output
/// never reached its file was acknowledged and never read again. Now
/// nothing is acknowledged until every file is in place; a file that
/// cannot be named fails the workflow, naming it, and the next run reads
/// the same entries again. (Checkpoints off: the path without them.)
#[test]
fn a_cluster_acknowledges_its_input_only_once_every_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = Redis::start("127.0.0.67");
    let input = lines(0, 400);
    redis.add_lines("lines", &input);
    let w1 = Node::worker("w1", "127.0.0.68", &[], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.69", &[], tmp.path());
    let master =
        Node::spawn(&["master", "start", "--no-log", "-n", "m1", "--listen", "127.0.0.70:0", &w1.addr, &w2.addr], tmp.path(), COOKIE, None);
    assert!(master.wait_stderr("connected to 2 worker(s)", Duration::from_secs(10)), "{}", master.stderr());
    let out = tmp.path().join("out.txt");
    let parts = tmp.path().join("parts");
    let source = format!("workflow().redis_source(\"{}\", \"lines\", #{{ group: \"g\" }}).map(|e| e.fields.line)", redis.url);
    // Runs `wf` until it read every entry, lets `block` put something in a
    // file's way, stops it: its status.
    let run_blocked = |wf: &str, block: &dyn Fn()| -> String {
        let deploy = format!("deploy({wf}, #{{ checkpoint_interval: 0 }}).id");
        let id = run(tmp.path(), &["rpc", "m1", &deploy]).success().stdout().trim().to_string();
        let r = format!("workflows()[{id} - 1].ref");
        let read =
            wait_until(Duration::from_secs(30), || run(tmp.path(), &["rpc", "m1", &format!("stats({r}).read")]).stdout().trim() == "400");
        assert!(read, "the workflow did not read the 400 entries");
        block();
        run(tmp.path(), &["rpc", "m1", &format!("print(stop({r}))")]).success().stdout().trim().to_string()
    };

    // The master's file cannot be named: a directory took its name.
    let status = run_blocked(&format!("{source}.write_lines({:?})", out), &|| {
        std::fs::create_dir_all(out.join("in-the-way")).unwrap();
    });
    assert!(status.starts_with("failed"), "{status}");
    assert!(status.contains(&format!("cannot rename the output to {}", out.display())), "{status}");
    assert_eq!(redis.pending("lines", "g"), 400, "nothing is acknowledged while the output is not in place");
    std::fs::remove_dir_all(&out).unwrap();

    // A worker's part cannot be named.
    std::fs::create_dir_all(&parts).unwrap();
    let status = run_blocked(&format!("{source}.write_parts({:?})", parts), &|| {
        // Each part is written as `.<name>.<pid>-<n>.skitter-tmp` until it is named.
        for entry in std::fs::read_dir(&parts).unwrap() {
            let file = entry.unwrap().file_name().to_string_lossy().to_string();
            if let Some((name, _)) = file.strip_suffix(".skitter-tmp").and_then(|f| f.rsplit_once('.')) {
                std::fs::create_dir_all(parts.join(name.trim_start_matches('.')).join("in-the-way")).unwrap();
            }
        }
    });
    assert!(status.starts_with("failed: worker w"), "{status}");
    assert!(status.contains(" could not name the files of its part: "), "{status}");
    assert!(status.contains("cannot rename the output to"), "{status}");
    assert_eq!(redis.pending("lines", "g"), 400, "nothing is acknowledged while a worker's part is not in place");
    std::fs::remove_dir_all(&parts).unwrap();

    // The entries were not lost: the next run reads them all again.
    let status = run_blocked(&format!("{source}.write_lines({:?})", out), &|| {});
    assert_eq!(status, "stopped");
    let mut got: Vec<String> = std::fs::read_to_string(&out).unwrap().lines().map(String::from).collect();
    let mut want = input.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(redis.pending("lines", "g"), 0, "acknowledged once every file is in place");
}
