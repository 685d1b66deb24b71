//! Recovery (issue 28): a cluster workflow with checkpoints whose worker
//! is lost — killed, or stalled past the tick time — runs again from its
//! last checkpoint on the workers that remain, and ends with exactly the
//! output of an undisturbed run; a record that fails every time exhausts
//! the restarts and fails the workflow naming it.

mod common;

use std::path::Path;
use std::time::Duration;

use common::node::{run, Node, COOKIE};
use common::{newest_checkpoint, wait_until, words_input};

/// A running count over a file: every word emits its count so far.
const COUNTS: &str =
    "workflow().read_lines(IN).flat_map(|l| l.split(\" \")).keyed_reduce(|w| w, |c, w| [c + 1, w + \" \" + (c + 1)], 0).write_lines(OUT)";

/// 150,000 lines of 6 words from a vocabulary of 500.
fn input(path: &Path) {
    words_input(path, 150_000, 11);
}

/// What the running count over `input` writes: every word's counts 1..=n.
fn expected(input: &Path) -> Vec<String> {
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    let mut lines = Vec::new();
    for w in std::fs::read_to_string(input).unwrap().split_whitespace() {
        let c = counts.entry(w.to_string()).or_default();
        *c += 1;
        lines.push(format!("{w} {c}"));
    }
    lines.sort();
    lines
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path).unwrap().lines().map(String::from).collect();
    lines.sort();
    lines
}

/// `workers` workers and a master running the count with a checkpoint
/// every 50 ms; `lose(workers, seed)` takes one away once a checkpoint
/// is in. The master finishes the workflow anyway: its output is exact.
/// Workers listen on 127.0.0.`ip`, `ip + 1`, ...: each test its own
/// addresses (the partition test drops every packet of one).
fn lose_a_worker(workers: usize, ip: usize, lose: impl Fn(&mut [Node], u64)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    input(&tmp.join("in.txt"));
    let names: Vec<String> = (1..=workers).map(|i| format!("w{i}")).collect();
    let mut nodes: Vec<Node> = names
        .iter()
        .enumerate()
        .map(|(i, n)| Node::worker(n, &format!("127.0.0.{}", ip + i), &["--no-shutdown-with-master"], tmp))
        .collect();
    let deploy = COUNTS.replace("IN", &format!("{:?}", tmp.join("in.txt"))).replace("OUT", &format!("{:?}", tmp.join("out.txt")));
    let mut args = vec!["master", "start", "--no-log", "--listen", "127.0.0.1:0", "--deploy", &deploy];
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    args.extend(addrs.iter().map(String::as_str));
    let ck = tmp.join("checkpoints");
    let mut master = Node::spawn_with_env(&args, tmp, COOKIE, None, &[("SKITTER_CHECKPOINT_INTERVAL", "0.05"), ("SKITTER_TICK_TIME", "2")]);
    let progressed = wait_until(Duration::from_secs(60), || newest_checkpoint(&ck) > 0 || master.wait(Duration::ZERO).is_some());
    assert!(progressed, "no checkpoint within 60 s:\n{}", master.stderr());
    assert!(
        master.wait(Duration::ZERO).is_none(),
        "the workflow ended before a worker was lost: the test proves nothing:\n{}",
        master.stderr()
    );
    let seed = std::process::id() as u64;
    lose(&mut nodes, seed);
    let status = master.wait(Duration::from_secs(120)).expect("the master finishes the workflow");
    let stderr = master.stderr();
    assert!(status.success(), "{stderr}");
    let got = sorted_lines(&tmp.join("out.txt"));
    let want = expected(&tmp.join("in.txt"));
    assert_eq!(got.len(), want.len(), "{stderr}");
    assert!(got == want, "the output differs from an undisturbed run's:\n{stderr}");
    stderr
}

/// Kills (SIGKILL) one of the workers, chosen by `seed`, at a random
/// moment of the next checkpoint.
fn kill_one(nodes: &mut [Node], seed: u64) {
    let seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    std::thread::sleep(Duration::from_millis((seed >> 33) % 40));
    let n = nodes.len();
    nodes[((seed >> 40) as usize) % n].kill9();
}

#[test]
fn a_worker_killed_mid_run_is_recovered_from_on_the_other_and_the_output_is_exact() {
    let stderr = lose_a_worker(2, 110, kill_one);
    assert!(stderr.contains("resuming `"), "{stderr}");
}

#[test]
fn a_worker_of_three_killed_mid_run_is_recovered_from_on_the_others_and_the_output_is_exact() {
    lose_a_worker(3, 113, kill_one);
}

/// A worker stopped (SIGSTOP) past the tick time is lost to the master; the
/// workflow goes on without it. When it continues, what its run sends is
/// of a run given up: refused.
#[test]
fn a_worker_stalled_past_the_tick_time_is_recovered_from_and_fenced_when_it_returns() {
    lose_a_worker(2, 117, |nodes, _| nodes[1].stall(Duration::from_millis(4000)));
}

/// A worker stalled past the tick time comes back (the master dials it
/// again) while the parts of the run given up may still be ending there:
/// what it sends of that run on its new link is refused and counted, and
/// it is told to abort it; the run that replaced it on the other worker
/// ends exact. Whether a late report makes it onto the new link is a race
/// (the one fencing is for: the part fails as soon as the worker sees its
/// old link closed, which may come just after it rejoined), so the stall
/// is repeated, each time with a workflow of its own, until one is fenced.
#[test]
fn a_worker_back_holding_a_run_given_up_has_its_late_reports_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let w1 = Node::worker("w1", "127.0.0.140", &["--no-shutdown-with-master"], tmp);
    let w2 = Node::worker("w2", "127.0.0.141", &["--no-shutdown-with-master"], tmp);
    let args = ["master", "start", "--no-log", "-n", "m3", "--listen", "127.0.0.142:0", &w1.addr, &w2.addr];
    let master = Node::spawn_with_env(&args, tmp, COOKIE, None, &[("SKITTER_TICK_TIME", "2")]);
    assert!(master.wait_stderr("connected to 2 worker(s)", Duration::from_secs(10)), "{}", master.stderr());
    let mut rounds = Vec::new();
    for round in 1..=5 {
        // On w1, the operator sleeps through the stall (what operators
        // print with no console to take it reaches a terminal).
        let script = "{ let r = deploy(workflow().stream_source(0..1000)\
                        .map(|n| { if runtime_info().node.starts_with(\"w1@\") { print(`asleep in ROUND`); sleep(40.0) } n }).collect(), \
                        #{ name: \"fence-ROUND\", checkpoint_interval: 0.05, restart_delay: 0.05 }); \
                      print(wait(r)); print(results(r).len()); \
                      let t = timestamp(); while workers().len() < 2 && t.elapsed < 30.0 { sleep(0.05); } \
                      let t = timestamp(); while stats(r).recovery.fenced == 0 && t.elapsed < 5.0 { sleep(0.05); } \
                      let rec = stats(r).recovery; print(`${rec.restarts} ${workers().len()} ${rec.fenced > 0}`); }"
            .replace("ROUND", &round.to_string());
        let mut rpc = Node::launch(&["rpc", "m3", &script], tmp, COOKIE, None, &[]);
        let asleep = format!("asleep in {round}");
        let printed = wait_until(Duration::from_secs(20), || (master.stdout() + &w1.stdout()).contains(&asleep));
        assert!(printed, "{}{}\n{}", rpc.stdout(), rpc.stderr(), master.stderr());
        w1.stall(Duration::from_millis(3500));
        let status = rpc.wait(Duration::from_secs(60)).expect("the script ends");
        let out = rpc.stdout();
        assert!(status.success(), "{out}{}\n{}", rpc.stderr(), master.stderr());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..2], ["finished", "1000"], "the run on w2 alone is exact: {out}\n{}", master.stderr());
        rounds.push(lines[2].to_string());
        if lines[2] == "1 2 true" {
            let stderr = master.stderr();
            let fenced = stderr.lines().find(|l| l.contains(" came back still running run ")).unwrap_or_default();
            assert!(fenced.contains("worker w1@") && fenced.contains("told it to abort that run"), "{stderr}");
            return;
        }
    }
    panic!("no late report of w1 was refused in 5 stalls (restarts, workers, fenced): {rounds:?}\n{}", master.stderr());
}

/// A record that fails every time: the workflow restarts from its last
/// checkpoint as often as it may, then fails naming the record's error
/// every time.
#[test]
fn a_poison_record_exhausts_the_restarts_and_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let w1 = Node::worker("w1", "127.0.0.120", &[], tmp);
    let w2 = Node::worker("w2", "127.0.0.121", &[], tmp);
    let master =
        Node::spawn(&["master", "start", "--no-log", "-n", "m1", "--listen", "127.0.0.122:0", &w1.addr, &w2.addr], tmp, COOKIE, None);
    assert!(master.wait_stderr("connected to 2 worker(s)", Duration::from_secs(10)), "{}", master.stderr());
    let script = "let r = deploy(workflow().stream_source(|n| n).map(|n| if n == 3000 { throw `poison ${n}` } else { n }).collect(), \
                  #{ name: \"poison\", checkpoint_interval: 0.05, restart_attempts: 2, restart_delay: 0.05 }); \
                  let seen = status(r); while seen == \"running\" { sleep(0.001); seen = status(r); } print(seen); \
                  print(wait(r)); let rec = stats(r).recovery; print(`${rec.restarts} ${rec.replayed > 0}`);";
    let out = run(tmp, &["rpc", "m1", &format!("{{ {script} }}")]).success().stdout();
    let mut lines = out.lines();
    let recovering = lines.next().unwrap_or_default();
    assert!(recovering.starts_with("recovering (attempt 1, on w"), "{out}");
    assert!(recovering.contains("poison 3000"), "{out}");
    let status = lines.next().unwrap_or_default();
    assert!(status.starts_with("failed: "), "{out}");
    assert!(status.contains("(restarted 2 times within 600 s"), "{out}");
    assert_eq!(status.matches("poison 3000").count(), 4, "the error, and once for each of its 3 failures: {out}");
    assert_eq!(lines.next(), Some("2 true"), "restarted twice, reading again what came after the checkpoint: {out}");
}

/// iptables rules on loopback that drop every packet to and from `ip`
/// (a worker's own address: its links to the master and the data links
/// other workers open to it); removed when dropped, also when the test
/// fails.
struct Partition(Vec<Vec<String>>);

impl Partition {
    fn of(addr: &str) -> Partition {
        let (ip, _) = addr.rsplit_once(':').unwrap();
        let rules: Vec<Vec<String>> =
            [["OUTPUT", "-d", ip, "-j", "DROP"], ["OUTPUT", "-s", ip, "-j", "DROP"]].iter().map(|r| r.map(String::from).to_vec()).collect();
        let mut partition = Partition(Vec::new());
        for rule in rules {
            let added = std::process::Command::new("iptables")
                .arg("-I")
                .args(&rule)
                .output()
                .expect("this test needs iptables (scripts/test installs it)");
            assert!(added.status.success(), "iptables -I: {}", String::from_utf8_lossy(&added.stderr));
            partition.0.push(rule);
        }
        partition
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for rule in &self.0 {
            let _ = std::process::Command::new("iptables").arg("-D").args(rule).output();
        }
    }
}

/// A worker cut off (every packet to and from its address dropped) for
/// 15 s: the master counts it gone after its tick time and the workflow
/// recovers on the other worker; what the cut-off worker's run still sends
/// the other worker is of a run given up, and refused. The output is exact.
#[test]
fn a_worker_partitioned_for_15_seconds_is_recovered_from_and_its_old_run_fenced() {
    lose_a_worker(2, 130, |nodes, _| {
        let _cut = Partition::of(&nodes[1].addr);
        std::thread::sleep(Duration::from_secs(15));
    });
}

/// The master of 2 workers killed (SIGKILL) mid-run, and started again
/// with `--recover` (and the same `--deploy`): it deploys the workflow it
/// ran again from its last checkpoint, once, and the output is exact. Once the workflow
/// finished, nothing is left to recover.
#[test]
fn a_master_killed_and_started_with_recover_resumes_what_it_ran() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    input(&tmp.join("in.txt"));
    let stay = ["--no-shutdown-with-master"];
    let w1 = Node::worker("w1", "127.0.0.123", &stay, tmp);
    let w2 = Node::worker("w2", "127.0.0.124", &stay, tmp);
    let deploy = COUNTS.replace("IN", &format!("{:?}", tmp.join("in.txt"))).replace("OUT", &format!("{:?}", tmp.join("out.txt")));
    let env = [("SKITTER_CHECKPOINT_INTERVAL", "0.05")];
    let ck = tmp.join("checkpoints");
    let mut first = Node::spawn_with_env(
        &["master", "start", "--no-log", "-n", "m", "--listen", "127.0.0.1:0", "--deploy", &deploy, &w1.addr, &w2.addr],
        tmp,
        COOKIE,
        None,
        &env,
    );
    let progressed = wait_until(Duration::from_secs(60), || newest_checkpoint(&ck) > 0 || first.wait(Duration::ZERO).is_some());
    assert!(progressed, "no checkpoint within 60 s:\n{}", first.stderr());
    assert!(first.wait(Duration::ZERO).is_none(), "the workflow ended before the master was killed: the test proves nothing");
    first.kill9();

    // Its --deploy as well: the workflow recovered is the one it names,
    // not deployed twice; the master follows it to its end.
    let mut again = Node::spawn_with_env(
        &["master", "start", "--no-log", "-n", "m", "--recover", "--deploy", &deploy, "--listen", "127.0.0.1:0", &w1.addr, &w2.addr],
        tmp,
        COOKIE,
        None,
        &env,
    );
    let status = again.wait(Duration::from_secs(120)).expect("the master follows the recovered workflow to its end");
    let stderr = again.stderr();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("recovered `workflow-read-lines-"), "{stderr}");
    assert!(stderr.contains("was recovered: --deploy does not deploy it again"), "{stderr}");
    assert!(stderr.contains("resuming `workflow-read-lines-"), "{stderr}");
    let got = sorted_lines(&tmp.join("out.txt"));
    let want = expected(&tmp.join("in.txt"));
    assert_eq!(got.len(), want.len(), "{stderr}");
    assert!(got == want, "the output differs from an undisturbed run's:\n{stderr}");
    let left: Vec<_> = walk(&ck).into_iter().filter(|p| p.ends_with("running.bin")).collect();
    assert!(left.is_empty(), "a finished workflow is still recorded as running: {left:?}");
    drop(again);

    // A master started with --recover when nothing ran says so.
    let idle = Node::spawn_with_env(
        &["master", "start", "--no-log", "-n", "m2", "--recover", "--listen", "127.0.0.1:0", &w1.addr],
        tmp,
        COOKIE,
        None,
        &env,
    );
    assert!(idle.wait_stderr("nothing to recover: no workflow was running", Duration::from_secs(10)), "{}", idle.stderr());
}

/// Stops the daemon a test started, even when the test fails.
struct Daemon<'a> {
    tmp: &'a Path,
    name: &'a str,
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let pid = run(self.tmp, &["master", "pid", "-n", self.name]).stdout();
        if let Ok(pid) = pid.trim().parse::<i32>() {
            // SAFETY: kill(2) on the pid the daemon recorded.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// `master restart` is the same master again: the workflows it ran when
/// it was stopped resume from their last checkpoints.
#[test]
fn a_master_restarted_resumes_the_workflows_it_ran() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let stay = ["--no-shutdown-with-master"];
    let w1 = Node::worker("w1", "127.0.0.143", &stay, tmp);
    let w2 = Node::worker("w2", "127.0.0.144", &stay, tmp);
    let env = [("SKITTER_CHECKPOINT_INTERVAL", "0.05")];
    let ck = tmp.join("checkpoints");
    let args = |command: &'static str| vec!["master", command, "--no-log", "-n", "rm", "--listen", "127.0.0.145:0", &w1.addr, &w2.addr];
    let _daemon = Daemon { tmp, name: "rm" };
    common::node::run_with_env(tmp, COOKIE, &args("daemon"), &env).success();
    // Deployed from a console: nothing but the record of it running brings it back.
    let deploy =
        "deploy(workflow().stream_source(|n| n).keyed_reduce(|n| n % 10, |c, n| [c + 1, c + 1], 0).count(), #{ name: \"counts\" })";
    run(tmp, &["rpc", "rm", deploy]).success();
    assert!(wait_until(Duration::from_secs(60), || newest_checkpoint(&ck) > 0), "no checkpoint within 60 s");
    let first = newest_checkpoint(&ck);
    common::node::run_with_env(tmp, COOKIE, &args("restart"), &env).success();
    let log = || {
        let out = walk(tmp)
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("rm") && n.to_string_lossy().ends_with(".out")));
        out.map(|p| std::fs::read_to_string(p).unwrap_or_default()).unwrap_or_default()
    };
    assert!(wait_until(Duration::from_secs(30), || log().contains("recovered `counts` as ")), "{}", log());
    let text = log();
    let resumed = text.lines().find(|l| l.contains("resuming `")).unwrap_or_default().to_string();
    let from: u64 = resumed.split("from checkpoint ").nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok()).unwrap_or(0);
    assert!(from >= first, "resumed from checkpoint {from}, older than {first}, which completed before the restart: {text}");
    assert!(wait_until(Duration::from_secs(30), || newest_checkpoint(&ck) > from), "the resumed run takes no checkpoint: {}", log());
    run(tmp, &["master", "stop", "-n", "rm"]).success();
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Workers that joined their master dial it again when it dies (for the
/// rejoin wait): a master killed and started again on its address with
/// `--recover` gets them back, and the workflow resumes on them.
#[test]
fn workers_rejoin_a_master_that_comes_back_and_the_workflow_resumes_on_them() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    input(&tmp.join("in.txt"));
    let port = std::net::TcpListener::bind("127.0.0.126:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.126:{port}");
    let deploy = COUNTS.replace("IN", &format!("{:?}", tmp.join("in.txt"))).replace("OUT", &format!("{:?}", tmp.join("out.txt")));
    let env = [("SKITTER_CHECKPOINT_INTERVAL", "0.05")];
    let ck = tmp.join("checkpoints");
    // Deployed once both workers joined.
    let script = format!("while workers().len() < 2 {{ sleep(0.01); }} deploy({deploy}); ()");
    let mut first = Node::spawn_with_env(&["master", "start", "--no-log", "-n", "m", "--listen", &listen], tmp, COOKIE, None, &env);
    let workers: Vec<Node> = ["w1", "w2"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let ip = format!("127.0.0.{}", 127 + i);
            Node::spawn(&["worker", "start", "--no-log", "-n", n, "--listen", &format!("{ip}:0"), &listen], tmp, COOKIE, None)
        })
        .collect();
    run(tmp, &["rpc", "m", &format!("{{ {script} }}")]).success();
    let progressed = wait_until(Duration::from_secs(60), || newest_checkpoint(&ck) > 0);
    assert!(progressed, "no checkpoint within 60 s:\n{}", first.stderr());
    first.kill9();
    std::thread::sleep(Duration::from_millis(300));
    let again =
        Node::spawn_with_env(&["master", "start", "--no-log", "-n", "m", "--recover", "--listen", &listen], tmp, COOKIE, None, &env);
    let finished =
        wait_until(Duration::from_secs(120), || run(tmp, &["rpc", "m", "status(workflows()[0].ref)"]).stdout().contains("finished"));
    assert!(finished, "the recovered workflow did not finish:\n{}", again.stderr());
    assert!(again.stderr().contains("recovered `"), "{}", again.stderr());
    let got = sorted_lines(&tmp.join("out.txt"));
    assert!(got == expected(&tmp.join("in.txt")), "the output differs from an undisturbed run's:\n{}", again.stderr());
    drop(workers);
}

/// A worker the master dialed, cut off past the tick time, is dropped from
/// the cluster; once it can be reached again the master dials it back.
#[test]
fn a_master_dials_a_worker_it_lost_again_once_it_can_be_reached() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let stay = ["--no-shutdown-with-master"];
    let w1 = Node::worker("w1", "127.0.0.132", &stay, tmp);
    let w2 = Node::worker("w2", "127.0.0.133", &stay, tmp);
    let master = Node::spawn_with_env(
        &["master", "start", "--no-log", "-n", "mr", "--listen", "127.0.0.134:0", &w1.addr, &w2.addr],
        tmp,
        COOKIE,
        None,
        &[("SKITTER_TICK_TIME", "2")],
    );
    assert!(master.wait_stderr("connected to 2 worker(s)", Duration::from_secs(10)), "{}", master.stderr());
    let workers = || run(tmp, &["rpc", "mr", "workers().len()"]).stdout().trim().to_string();
    {
        let _cut = Partition::of(&w2.addr);
        assert!(wait_until(Duration::from_secs(20), || workers() == "1"), "the master kept a worker it cannot reach:\n{}", master.stderr());
    }
    assert!(wait_until(Duration::from_secs(30), || workers() == "2"), "the worker did not come back:\n{}", master.stderr());
    assert!(master.stderr().contains("closing the link to w2@"), "{}", master.stderr());
}

/// A master that dials a worker still holding the link of the master
/// before it (killed and started again on a busy host, or stopped: the
/// worker learns it is gone only when its tick time passes) is told the
/// worker has a master, and keeps dialing for its wait time: it gets the
/// worker once the old link ends, rather than failing at once.
#[test]
fn a_master_dialing_a_worker_that_still_holds_the_one_before_gets_it_once_that_link_ends() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let tick = [("SKITTER_TICK_TIME", "2")];
    let w = Node::spawn_with_env(
        &["worker", "start", "--no-log", "-n", "w", "--listen", "127.0.0.170:0", "--no-shutdown-with-master"],
        tmp,
        COOKIE,
        None,
        &tick,
    );
    let old = Node::spawn(&["master", "start", "--no-log", "-n", "m1", "--listen", "127.0.0.171:0", &w.addr], tmp, COOKIE, None);
    assert!(old.wait_stderr("connected to 1 worker(s)", Duration::from_secs(20)), "{}", old.stderr());
    // Stopped, not dead: its connection stays open until the worker gives up on it.
    old.pause();
    let new = Node::launch(
        &["master", "start", "--no-log", "-n", "m2", "--listen", "127.0.0.172:0", "--wait-time", "30", &w.addr],
        tmp,
        COOKIE,
        None,
        &[],
    );
    let connected = new.wait_stderr("connected to 1 worker(s)", Duration::from_secs(40));
    old.resume();
    assert!(connected, "the second master did not get the worker:\n{}", new.stderr());
    let workers = run(tmp, &["rpc", "m2", "workers()"]).stdout();
    assert!(workers.contains("\"name\": \"w@"), "{workers}");
}

/// Two runs of one name would write the same checkpoints and files: a
/// second deploy of a running workflow's name is refused, naming it.
#[test]
fn a_workflow_already_running_under_a_name_is_not_deployed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let w1 = Node::worker("w1", "127.0.0.135", &[], tmp);
    let master = Node::spawn(&["master", "start", "--no-log", "-n", "md", "--listen", "127.0.0.136:0", &w1.addr], tmp, COOKIE, None);
    assert!(master.wait_stderr("connected to 1 worker(s)", Duration::from_secs(10)), "{}", master.stderr());
    let wf = "workflow().stream_source(|n| n).count()";
    run(tmp, &["rpc", "md", &format!("deploy({wf}, #{{ name: \"dup\" }}); ()")]).success();
    let again = run(tmp, &["rpc", "md", &format!("deploy({wf}, #{{ name: \"dup\" }})")]);
    again
        .expect_code(1)
        .stderr_has("workflow `dup` is already running here as ")
        .stderr_has(": stop it first, or deploy this one under another name");
    run(tmp, &["rpc", "md", "workflows().len()"]).success().stdout_has("1");
}
