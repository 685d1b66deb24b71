//! Kafka sources and sinks against a broker started here on loopback by
//! `scripts/kafka-broker` (issue 17).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::brokers::*;
use common::node::{run, Node, COOKIE};
use common::*;

/// A broker of our own (its standard input is our pipe: it cannot outlive
/// the test); killed (by pid) when dropped.
struct Kafka {
    server: Server,
    broker: String,
}

/// One record as `scripts/kafka-broker dump` prints it.
#[derive(Debug)]
struct Rec {
    partition: u32,
    offset: u64,
    key: String,
    value: String,
}

impl Kafka {
    fn start(topics: &[&str]) -> Kafka {
        let mut child = Command::new("python3")
            .arg(repo().join("scripts/kafka-broker"))
            .args(["--topics", &topics.join(",")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start scripts/kafka-broker (python3): {e}"));
        let stdout = child.stdout.take().unwrap();
        let (send, got) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = send.send(line);
        });
        // The first start may install confluent-kafka with pip.
        let line = got.recv_timeout(Duration::from_secs(180)).unwrap_or_default();
        let broker = line.trim().to_string();
        if broker.is_empty() {
            let _ = child.kill();
            panic!("scripts/kafka-broker did not start a broker (see its error above)");
        }
        Kafka { server: Server(child), broker }
    }

    /// Every record of `topic`, in partition order.
    fn dump(&self, topic: &str) -> Vec<Rec> {
        let out = Command::new("python3").arg(repo().join("scripts/kafka-broker")).args(["dump", &self.broker, topic]).output().unwrap();
        assert!(out.status.success(), "dump {topic}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.splitn(4, '\t').collect();
                Rec { partition: f[0].parse().unwrap(), offset: f[1].parse().unwrap(), key: f[2].into(), value: f[3].into() }
            })
            .collect()
    }

    /// Writes lines `from..from + n` (as `common::brokers::lines` makes
    /// them) to `topic` with skitter's own sink, keyed by their number.
    fn produce(&self, tmp: &std::path::Path, node: &str, topic: &str, from: usize, n: usize) {
        let wf = format!(
            "workflow().stream_source(range({from}, {end})).map(|i| #{{ k: i, line: `w${{i % 7}} w${{i % 11}} w${{i % 3}}` }})\
             .kafka_sink(\"{b}\", \"{topic}\", #{{ key: \"k\", value: \"line\" }})",
            end = from + n,
            b = self.broker
        );
        run(tmp, &["rpc", node, &format!("wait(deploy({wf}))")]).success().stdout_has("finished");
    }

    fn kill(&mut self) {
        self.server.kill();
    }
}

/// A word count from `lines` to `out`: word as the key, count as the value.
fn count(kafka: &Kafka, group: &str, out: &str) -> String {
    format!(
        "workflow().kafka_source(\"{b}\", \"lines\", #{{ group: \"{group}\", bounded: true }}).flat_map(|r| r.value.split(\" \"))\
         .count().map(|p| #{{ word: p[0], count: p[1] }}).kafka_sink(\"{b}\", \"{out}\", #{{ key: \"word\", value: \"count\" }})",
        b = kafka.broker
    )
}

/// What a word count wrote: each word once.
fn written_totals(kafka: &Kafka, topic: &str) -> BTreeMap<String, i64> {
    let mut totals = BTreeMap::new();
    for r in kafka.dump(topic) {
        assert!(totals.insert(r.key.clone(), r.value.parse::<i64>().unwrap()).is_none(), "{} written twice", r.key);
    }
    totals
}

#[test]
fn a_word_count_from_a_kafka_topic_of_4_partitions_to_kafka_is_exact_locally_and_on_two_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let kafka = Kafka::start(&["lines", "totals_local", "totals_cluster"]);
    let node = local_node(tmp.path(), "127.0.0.80");
    kafka.produce(tmp.path(), "skitter_local", "lines", 0, 4000);
    let input = kafka.dump("lines");
    assert_eq!(input.len(), 4000);
    let partitions: BTreeSet<u32> = input.iter().map(|r| r.partition).collect();
    assert_eq!(partitions, (0..4).collect(), "keys spread over the 4 partitions");
    let expected = totals(&lines(0, 4000));

    let counted = run(tmp.path(), &["rpc", "skitter_local", &format!("wait(deploy({}))", count(&kafka, "local", "totals_local"))]);
    counted.success().stdout_has("finished");
    assert_eq!(written_totals(&kafka, "totals_local"), expected);
    drop(node);

    let w1 = Node::worker("w1", "127.0.0.81", &[], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.82", &[], tmp.path());
    let master =
        Node::spawn(&["master", "start", "--no-log", "-n", "m3", "--listen", "127.0.0.83:0", &w1.addr, &w2.addr], tmp.path(), COOKIE, None);
    assert!(master.wait_stderr("connected to 2 worker(s)", Duration::from_secs(10)), "{}", master.stderr());
    let counted = run(tmp.path(), &["rpc", "m3", &format!("wait(deploy({}))", count(&kafka, "cluster", "totals_cluster"))]);
    counted.success().stdout_has("finished");
    assert_eq!(written_totals(&kafka, "totals_cluster"), expected);

    // With a strategy, the source runs on every worker: each instance reads
    // its share of the partitions, each partition is read once.
    let spread = format!(
        "{{ let r = deploy(workflow().kafka_source(\"{b}\", \"lines\", #{{ bounded: true, group: \"spread\" }}).with_strategy(immutable_local())\
         .map(|r| `${{r.partition}} ${{runtime_info().node}}`).collect()); print(wait(r)); \
         let seen = #{{}}; let n = 0; for x in results(r) {{ seen[x] = true; n += 1; }} let k = seen.keys(); k.sort(); print(n); print(k); }}",
        b = kafka.broker
    );
    let out = run(tmp.path(), &["rpc", "m3", &spread]).success().stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["finished", "4000"], "{out}");
    let owners: BTreeMap<u32, String> = lines[2]
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .map(|e| {
            let (p, node) = e.trim_matches('"').split_once(' ').unwrap();
            (p.parse().unwrap(), node.split('@').next().unwrap().to_string())
        })
        .collect();
    assert_eq!(lines[2].split(", ").count(), 4, "each partition read by one instance: {out}");
    assert_eq!(owners.keys().copied().collect::<Vec<u32>>(), [0, 1, 2, 3], "{out}");
    let nodes: BTreeSet<&String> = owners.values().collect();
    assert_eq!(nodes.len(), 2, "both workers read: {out}");
}

/// Copies each record's partition and offset, tagged with `run`, to `copies`.
fn copy(kafka: &Kafka, run: &str, poison: Option<&str>) -> String {
    let map = match poison {
        Some(p) => format!("|r| if r.value == \"{p}\" {{ throw \"poison\" }} else {{ `{run} ${{r.partition}}:${{r.offset}}` }}"),
        None => format!("|r| `{run} ${{r.partition}}:${{r.offset}}`"),
    };
    format!(
        "workflow().kafka_source(\"{b}\", \"lines\", #{{ group: \"copy\" }}).map({map}).kafka_sink(\"{b}\", \"copies\")",
        b = kafka.broker
    )
}

/// `stopped N` -> N.
fn read_of(status: &str) -> usize {
    let (word, n) = status.split_once(' ').unwrap_or_else(|| panic!("{status}"));
    assert_eq!(word, "stopped", "{status}");
    n.parse().unwrap()
}

#[test]
fn stopped_mid_stream_or_failed_a_kafka_source_resumes_from_its_committed_offsets_without_a_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let kafka = Kafka::start(&["lines", "copies"]);
    let _node = local_node(tmp.path(), "127.0.0.84");
    kafka.produce(tmp.path(), "skitter_local", "lines", 0, 3000);
    // Stopped mid-stream: it drains, the sink has what it read, and the
    // offsets after it are committed.
    let first = read_of(&run_until_read(tmp.path(), "skitter_local", &copy(&kafka, "A", None), 1000));
    assert!((1000..=3000).contains(&first), "{first}");
    // A run that fails commits nothing.
    kafka.produce(tmp.path(), "skitter_local", "lines", 3000, 2000);
    let poison = &lines(4000, 1)[0];
    let failing = copy(&kafka, "B", Some(poison));
    run(tmp.path(), &["rpc", "skitter_local", &format!("wait(deploy({failing}))")]).success().stdout_has("failed").stdout_has("poison");
    // The next run reads from where the first stopped: the rest, and more.
    kafka.produce(tmp.path(), "skitter_local", "lines", 5000, 1000);
    let rest = read_of(&run_until_read(tmp.path(), "skitter_local", &copy(&kafka, "C", None), 6000 - first));
    assert_eq!(rest, 6000 - first, "the committed offsets are where the first run stopped");

    let all: BTreeSet<String> = kafka.dump("lines").iter().map(|r| format!("{}:{}", r.partition, r.offset)).collect();
    assert_eq!(all.len(), 6000);
    let copies = kafka.dump("copies");
    let of_run =
        |run: &str| -> Vec<String> { copies.iter().filter_map(|c| c.value.strip_prefix(&format!("{run} ")).map(str::to_string)).collect() };
    let (a, c) = (of_run("A"), of_run("C"));
    assert_eq!(a.len(), first);
    let seen: BTreeSet<String> = a.iter().chain(&c).cloned().collect();
    assert_eq!(seen, all, "every record copied, none missing");
    assert_eq!(a.len() + c.len(), 6000, "a graceful stop commits exactly what it read: nothing twice");
    assert!(copies.len() >= 6000);
}

#[test]
fn a_kafka_broker_that_dies_fails_the_workflow_an_unreachable_one_the_deploy_and_bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut kafka = Kafka::start(&["lines", "raw"]);
    let b = kafka.broker.clone();
    let _node = local_node(tmp.path(), "127.0.0.85");
    kafka.produce(tmp.path(), "skitter_local", "lines", 0, 10);

    // Not UTF-8: a blob by default; with format "text", a failure naming
    // the record's partition and offset.
    let raw = format!("workflow().stream_source([blob(3, 0xff), \"fine\"]).kafka_sink(\"{b}\", \"raw\")");
    run(tmp.path(), &["rpc", "skitter_local", &format!("wait(deploy({raw}))")]).success().stdout_has("finished");
    let read = |options: &str| {
        format!("workflow().kafka_source(\"{b}\", \"raw\", #{{ bounded: true, {options} }}).map(|r| type_of(r.value)).collect()")
    };
    let blob = format!("{{ let r = deploy({}); wait(r); print(results(r)); }}", read("group: \"blob\""));
    run(tmp.path(), &["rpc", "skitter_local", &blob]).success().stdout_has("[\"blob\", \"string\"]");
    let text = run(tmp.path(), &["rpc", "skitter_local", &format!("wait(deploy({}))", read("group: \"text\", format: \"text\""))]);
    let partition = kafka.dump("raw")[0].partition;
    text.success().stdout_has("failed").stdout_has(&format!("topic `raw` partition {partition} offset 0: the value is not UTF-8"));
    // With the port `reject` linked, such a record goes there instead.
    let rejecting = format!(
        "workflow().kafka_source(\"{b}\", \"raw\", #{{ bounded: true, group: \"reject\", format: \"text\" }}).name(\"src\")\
         .map(|r| r.value).collect().name(\"good\").from(\"src.reject\").map(|r| `${{r.offset}} ${{type_of(r.value)}} ${{r.error}}`)\
         .collect().name(\"bad\")"
    );
    let script = format!("{{ let r = deploy({rejecting}); print(wait(r)); print(results(r, \"good\")); print(results(r, \"bad\")); }}");
    run(tmp.path(), &["rpc", "skitter_local", &script])
        .success()
        .stdout_has("finished")
        .stdout_has("[\"fine\"]")
        .stdout_has(&format!("[\"0 blob topic `raw` partition {partition} offset 0: the value is not UTF-8"));

    let missing = format!("workflow().kafka_source(\"{b}\", \"nope\").collect()");
    run(tmp.path(), &["rpc", "skitter_local", &format!("deploy({missing})")]).expect_code(1).stderr_has("topic `nope` does not exist");

    // Two workflows lose the broker: one reading, one writing.
    let writing = format!("workflow().stream_source(|n| {{ sleep(0.01); n }}).kafka_sink(\"{b}\", \"raw\")");
    let writer = run(tmp.path(), &["rpc", "skitter_local", &format!("deploy({writing}).id")]).success().stdout().trim().to_string();
    let wf = format!("workflow().kafka_source(\"{b}\", \"lines\", #{{ retry_secs: 0.5 }}).collect()");
    let status = killed_mid_run(tmp.path(), &wf, || kafka.kill());
    status.success().stdout_has("failed").stdout_has(&format!("cannot read from {b}: topic `lines` partition"));
    let refused = run(tmp.path(), &["rpc", "skitter_local", &format!("deploy({wf})")]);
    refused.expect_code(1).stderr_has(&format!("cannot use {b}"));
    let written = run(tmp.path(), &["rpc", "skitter_local", &format!("wait(workflows()[{writer} - 1].ref)")]);
    written.success().stdout_has("failed").stdout_has(&format!("cannot write to {b}: topic `raw`:")).stdout_has("(after 3 attempts)");

    for (script, error) in [
        ("workflow().kafka_source(\"localhost\", \"t\")", "`localhost` is not a broker address (host:port)"),
        ("workflow().kafka_source(\"h:1\", \"t\", #{ start: \"middle\" })", "start must be one of earliest, latest"),
        ("workflow().kafka_source(\"h:1\", \"t\", #{ partition: 1 })", "unknown option `partition`"),
        ("workflow().kafka_sink(\"h:1\", \"\")", "the topic name is empty"),
        ("workflow().kafka_source(\"h:1\", \"t\").with_strategy(keyed(|r| r))", "spreads the topic's partitions over its instances"),
    ] {
        Skitter::new().args(["eval", script]).run().expect_code(1).stderr_has(error);
    }
}

#[test]
fn the_kafka_example_counts_its_topic_exactly() {
    let kafka = Kafka::start(&["lines", "totals"]);
    let app = example("kafka_word_count");
    let script = format!("print(wait(deploy(fill(\"{b}\")))); print(wait(deploy(kafka_word_count_once(\"{b}\"))));", b = kafka.broker);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), script).unwrap();
    let done = Skitter::new().args(["local", "--no-log", "--app"]).arg(&app).arg("--script").arg(file.path()).run();
    assert_eq!(done.success().stdout().trim(), "finished\nfinished");
    let expected = count_words(&std::fs::read_to_string(app.join("priv/lines.txt")).unwrap());
    assert_eq!(written_totals(&kafka, "totals"), expected);
}

/// Issue 27: a local node killed (SIGKILL) while a Kafka source streams into
/// a file resumes from the offsets of its last checkpoint, whatever the
/// group committed: the file holds every record exactly once.
#[test]
fn killed_at_any_moment_a_kafka_source_into_a_file_resumes_exactly_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let kafka = Kafka::start(&["lines"]);
    let _node = local_node(tmp.path(), "127.0.0.85");
    let out = tmp.path().join("out.txt");
    let wf = format!(
        "workflow().kafka_source(\"{}\", \"lines\", #{{ group: \"k\" }}).map(|r| r.key + \" \" + r.value).write_lines(\"{}\")",
        kafka.broker,
        out.display()
    );
    let (got, want) = killed_and_resumed(tmp.path(), &wf, &out, 3, |round| {
        let (from, n) = (round * 3_000, 3_000);
        kafka.produce(tmp.path(), "skitter_local", "lines", from, n);
        (from..from + n).map(|i| format!("{i} w{} w{} w{}", i % 7, i % 11, i % 3)).collect()
    });
    assert_eq!(got, want, "every record once");
}
