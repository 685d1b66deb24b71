//! Issue 25: a stalled node, a busy machine or a reset data link never
//! loses records silently. A stall shorter than the tick time costs nothing
//! (the output is exact); a data link that breaks fails the workflow,
//! naming it. Real processes on 127.0.0.x; every wait is for a condition.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::node::{Node, COOKIE};
use common::wait_until;

/// Lines of eight words each from a vocabulary of 500, and the count of
/// every word.
fn words_file(dir: &Path, lines: usize) -> (PathBuf, BTreeMap<String, u64>) {
    let mut counts = BTreeMap::new();
    let mut text = String::new();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..lines {
        let mut line = Vec::new();
        for _ in 0..8 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let word = format!("w{}", state % 500);
            *counts.entry(word.clone()).or_insert(0) += 1;
            line.push(word);
        }
        text.push_str(&line.join(" "));
        text.push('\n');
    }
    let path = dir.join("words.txt");
    std::fs::write(&path, text).unwrap();
    (path, counts)
}

/// What the running count writes, sorted: `word n` for every n up to the
/// word's count.
fn running_counts(counts: &BTreeMap<String, u64>) -> Vec<String> {
    let mut lines: Vec<String> = counts.iter().flat_map(|(w, &n)| (1..=n).map(move |i| format!("{w} {i}"))).collect();
    lines.sort();
    lines
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// The keyed running word count of `input` into `output` (on the master's host).
fn running_word_count(input: &Path, output: &Path) -> String {
    format!(
        "workflow().read_lines({:?}).flat_map(|line| line.split(\" \")).keyed_reduce(|w| w, |n, w| [n + 1, `${{w}} ${{n + 1}}`], 0).write_lines({:?})",
        input.display().to_string(),
        output.display().to_string()
    )
}

/// Something in the output directory has lines: the workflow is flowing.
fn flowing(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|e| e.metadata().map(|m| m.len() > 4096).unwrap_or(false))
}

/// A master that deploys `wf` on `workers` and runs until it ends.
fn master_deploying(wf: &str, workers: &[Node], tmp: &Path) -> Node {
    master_deploying_with(wf, workers, tmp, &[])
}

/// [`master_deploying`] with more environment variables.
fn master_deploying_with(wf: &str, workers: &[Node], tmp: &Path, env: &[(&str, &str)]) -> Node {
    let mut args = vec!["master", "start", "--no-log", "--listen", "127.0.0.1:0", "--deploy", wf];
    args.extend(workers.iter().map(|n| n.addr.as_str()));
    Node::spawn_with_env(&args, tmp, COOKIE, None, env)
}

/// `output` holds the exact running counts of `counts`, line for line.
fn assert_running_counts(output: &Path, counts: &BTreeMap<String, u64>, what: &str) {
    let got = sorted_lines(output);
    let want = running_counts(counts);
    assert_eq!(got.len(), want.len(), "{what}: lines written");
    assert!(got == want, "{what}: the output differs from the exact running counts");
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// SIGSTOP of the n-th worker (0-based; the source runs on one of them).
    StallWorker(usize, Duration),
    StallMaster(Duration),
    /// Every packet to the n-th worker's port dropped (iptables on loopback).
    PartitionWorker(usize, Duration),
}

/// Runs the running word count over `lines` lines on a master and
/// `workers` workers, injects `fault` once output flows, and checks that
/// the output is exact.
fn fault_run(first_ip: u8, workers: usize, lines: usize, fault: Fault) {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let (input, counts) = words_file(tmp.path(), lines);
    let output = out_dir.path().join("counts.txt");
    let nodes: Vec<Node> = (0..workers)
        .map(|i| Node::worker(&format!("w{}", i + 1), &format!("127.0.0.{}", first_ip as usize + i), &[], tmp.path()))
        .collect();
    let mut master = master_deploying(&running_word_count(&input, &output), &nodes, tmp.path());
    let started = Instant::now();
    assert!(wait_until(Duration::from_secs(60), || flowing(out_dir.path()) || master.child.try_wait().ok().flatten().is_some()));
    let flowed = started.elapsed();
    match fault {
        Fault::StallWorker(i, d) => nodes[i].stall(d),
        Fault::StallMaster(d) => master.stall(d),
        Fault::PartitionWorker(i, d) => {
            let _dropped = Dropped::to(&nodes[i].addr);
            std::thread::sleep(d);
        }
    }
    let status = master
        .wait(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("the master did not end within 120 s of {fault:?}:\n{}", master.stderr()));
    eprintln!("{fault:?} after {flowed:?}; the run took {:?}", started.elapsed());
    assert_eq!(status.code(), Some(0), "{fault:?}:\n{}", master.stderr());
    assert_running_counts(&output, &counts, &format!("{fault:?}"));
}

/// An iptables rule on loopback that drops every packet to `addr`
/// (ip:port); removed when dropped, also when the test fails.
struct Dropped(Vec<String>);

impl Dropped {
    fn to(addr: &str) -> Dropped {
        let (ip, port) = addr.rsplit_once(':').unwrap();
        let rule: Vec<String> = ["OUTPUT", "-p", "tcp", "-d", ip, "--dport", port, "-j", "DROP"].map(String::from).to_vec();
        let added = Command::new("iptables").arg("-I").args(&rule).output().expect("this test needs iptables (scripts/test installs it)");
        assert!(added.status.success(), "iptables -I: {}", String::from_utf8_lossy(&added.stderr));
        Dropped(rule)
    }
}

impl Drop for Dropped {
    fn drop(&mut self) {
        let _ = Command::new("iptables").arg("-D").args(&self.0).output();
    }
}

const LINES: usize = 100_000;

/// Each node of a master and two workers in turn, stopped for `secs`.
fn each_of_two_workers_and_the_master_stalled(first_ip: u8, secs: u64) {
    let d = Duration::from_secs(secs);
    for (i, fault) in [Fault::StallWorker(0, d), Fault::StallWorker(1, d), Fault::StallMaster(d)].into_iter().enumerate() {
        fault_run(first_ip + i as u8 * 2, 2, LINES, fault);
    }
}

fn each_of_three_workers_stalled(first_ip: u8, secs: u64) {
    let d = Duration::from_secs(secs);
    for i in 0..3 {
        fault_run(first_ip + i as u8 * 3, 3, LINES, Fault::StallWorker(i, d));
    }
}

#[test]
fn a_1_second_stall_of_any_node_of_two_workers_loses_nothing() {
    each_of_two_workers_and_the_master_stalled(20, 1);
}

#[test]
fn a_3_second_stall_of_any_node_of_two_workers_loses_nothing() {
    each_of_two_workers_and_the_master_stalled(26, 3);
}

#[test]
fn an_8_second_stall_of_any_node_of_two_workers_loses_nothing() {
    each_of_two_workers_and_the_master_stalled(32, 8);
}

#[test]
fn a_1_second_stall_of_one_worker_of_three_loses_nothing() {
    each_of_three_workers_stalled(40, 1);
}

#[test]
fn a_3_second_stall_of_one_worker_of_three_loses_nothing() {
    each_of_three_workers_stalled(50, 3);
}

#[test]
fn an_8_second_stall_of_one_worker_of_three_loses_nothing() {
    each_of_three_workers_stalled(60, 8);
}

/// The partition: packets to one worker's port dropped for 3 s,
/// shorter than the tick time.
#[test]
fn a_3_second_partition_of_either_worker_loses_nothing() {
    for i in 0..2 {
        fault_run(80 + i as u8 * 2, 2, LINES, Fault::PartitionWorker(i, Duration::from_secs(3)));
    }
}

/// A receiver slower than its sender: the sender finishes long before the
/// receiver has read what it sent, and the frames wait in the receiver's
/// socket. Every record arrives all the same.
#[test]
fn a_slow_receiver_gets_every_record_of_a_sender_that_finished() {
    for (i, slow) in ["w1", "w2"].into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let out_dir = tempfile::tempdir().unwrap();
        let (input, counts) = words_file(tmp.path(), 20_000);
        let output = out_dir.path().join("counts.txt");
        let workers = [
            Node::worker("w1", &format!("127.0.0.{}", 90 + i * 2), &[], tmp.path()),
            Node::worker("w2", &format!("127.0.0.{}", 91 + i * 2), &[], tmp.path()),
        ];
        // Every 100th record of a word on the slow worker takes 2 ms.
        let wf = format!(
            "workflow().read_lines({:?}).flat_map(|line| line.split(\" \")).keyed_reduce(|w| w, |n, w| {{ if n % 100 == 99 && runtime_info().node.starts_with({slow:?}) {{ sleep(0.002); }} [n + 1, `${{w}} ${{n + 1}}`] }}, 0).write_lines({:?})",
            input.display().to_string(),
            output.display().to_string()
        );
        let mut master = master_deploying(&wf, &workers, tmp.path());
        let status = master.wait(Duration::from_secs(120)).unwrap_or_else(|| panic!("slow {slow}: the run hangs:\n{}", master.stderr()));
        assert_eq!(status.code(), Some(0), "slow {slow}:\n{}", master.stderr());
        assert_running_counts(&output, &counts, &format!("slow {slow}"));
    }
}

/// The local port of the data link `from` (a worker's pid) has open to
/// `to` (a worker's address), as `ss` lists it.
fn data_link_port(from: u32, to: &str) -> Option<String> {
    let out = Command::new("ss").args(["-tnpH", "state", "established", "dst", to]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pid = format!("pid={from},");
    text.lines()
        .find(|l| l.contains(&pid))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|local| local.rsplit(':').next().map(str::to_string))
}

/// A data link reset mid-stream (its socket destroyed, as a middlebox or a
/// dying NIC would) fails the workflow at once, naming the link; nothing
/// hangs and no complete-looking file is left.
#[test]
fn a_data_link_reset_mid_stream_fails_the_workflow_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("out.txt");
    let workers = [Node::worker("w1", "127.0.0.95", &[], tmp.path()), Node::worker("w2", "127.0.0.96", &[], tmp.path())];
    let (w1, w2) = (&workers[0], &workers[1]);
    // An endless keyed workflow: both workers send to both.
    let wf = format!(
        "workflow().stream_source(|n| n).keyed_reduce(|x| x % 64, |n, x| [n + 1, x], 0).write_lines({:?})",
        output.display().to_string()
    );
    // Without checkpoints: a failed run leaves nothing at the output path
    // (with them, what completed checkpoints covered is there, exact).
    let mut master = master_deploying_with(&wf, &workers, tmp.path(), &[("SKITTER_CHECKPOINT_INTERVAL", "0")]);
    assert!(wait_until(Duration::from_secs(30), || flowing(out_dir.path())), "{}", master.stderr());
    // The master dialed both workers too: find the socket w1 opened to w2.
    let mut port = None;
    assert!(wait_until(Duration::from_secs(10), || {
        port = data_link_port(w1.child.id(), &w2.addr);
        port.is_some()
    }));
    let port = port.unwrap();
    let killed = Command::new("ss").args(["-K", "sport", "=", &format!(":{port}"), "dst", &w2.addr]).output().unwrap();
    assert!(killed.status.success(), "ss -K: {}", String::from_utf8_lossy(&killed.stderr));
    let status = master.wait(Duration::from_secs(20)).unwrap_or_else(|| panic!("the workflow hangs after the reset:\n{}", master.stderr()));
    assert_eq!(status.code(), Some(1), "{}", master.stderr());
    let err = master.stderr();
    assert!(err.contains("workflow failed") && err.contains("data link"), "{err}");
    assert!(err.contains("w1@") || err.contains("w2@"), "names the worker: {err}");
    assert!(!output.exists(), "no complete-looking output");
}
