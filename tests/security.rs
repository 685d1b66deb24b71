//! What outsiders, stalls and runaway code cannot do (issue 12): read or
//! change traffic, starve a node before authenticating, kill a cluster by
//! stopping a process for 3 s, find the cookie in a tarball or `ps`, take a
//! node's memory or time from a console.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::node::{run, Node, COOKIE};
use common::*;

/// A TCP relay to `target` that records what goes up (towards `target`) and
/// flips one bit of the upward stream at `flip` when given.
fn relay(bind: &str, target: String, flip: Option<usize>) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind(format!("{bind}:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&target) else { return };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let up = record.clone();
            std::thread::spawn(move || copy(client, server, flip, Some(up)));
            let down = record.clone();
            std::thread::spawn(move || copy(s2, c2, None, Some(down)));
        }
    });
    (addr, seen)
}

fn copy(mut from: TcpStream, mut to: TcpStream, flip: Option<usize>, seen: Option<Arc<Mutex<Vec<u8>>>>) {
    let (mut buf, mut offset) = ([0u8; 8192], 0usize);
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        if let Some(at) = flip.filter(|at| (offset..offset + n).contains(at)) {
            buf[at - offset] ^= 0x04;
        }
        offset += n;
        if let Some(s) = &seen {
            s.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

fn master_iex(tmp: &Path, script: &str) -> Node {
    Node::spawn(&["master", "start_iex", "--no-log", "--listen", "127.0.0.1:0"], tmp, COOKIE, Some(script))
}

const WAIT_FOR_TWO: &str = "let t = timestamp(); while workers().len() < 2 && t.elapsed < 20.0 { sleep(0.01); }\n";

#[test]
fn a_relay_between_worker_and_master_sees_no_record_and_a_flipped_bit_closes_the_link() {
    let tmp = tempfile::tempdir().unwrap();
    let script = r#"
        let t = timestamp(); while workers().len() < 1 && t.elapsed < 20.0 { sleep(0.01); }
        let r = deploy(workflow().stream_source(["distinctive-record-8c1f"]).map(|x| x + "-and-back").collect());
        print(`status ${wait(r)} ${results(r)}`);
    "#;
    let mut master = master_iex(tmp.path(), script);
    let (via, seen) = relay("127.0.0.41", master.addr.clone(), None);
    let _w = Node::worker("w1", "127.0.0.42", &["--no-shutdown-with-master", &via], tmp.path());
    master.wait(Duration::from_secs(30)).expect("the master's shell ends");
    assert!(master.stdout().contains("status finished [\"distinctive-record-8c1f-and-back\"]"), "{}\n{}", master.stdout(), master.stderr());
    let bytes = seen.lock().unwrap().clone();
    assert!(bytes.len() > 200, "the relay carried the traffic");
    for secret in ["distinctive-record", "-and-back", COOKIE, "w1@"] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "`{secret}` crossed the relay in clear");
    }

    // One bit flipped in what the worker sends, past the handshake: the
    // master closes the link and says why.
    let master = Node::spawn(&["master", "start", "--no-log", "--listen", "127.0.0.1:0"], tmp.path(), COOKIE, None);
    let (via, _) = relay("127.0.0.43", master.addr.clone(), Some(300));
    let _w = Node::worker("w2", "127.0.0.44", &["--no-shutdown-with-master", &via], tmp.path());
    assert!(master.wait_stderr("failed authentication (tampered with", Duration::from_secs(20)), "{}", master.stderr());
}

/// A connection to `addr` from the local address `from`.
fn connect_from(from: &str, addr: &str) -> Option<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(format!("{from}:0").parse().unwrap()).ok()?;
        let stream = socket.connect(addr.parse().unwrap()).await.ok()?;
        stream.into_std().ok()
    })
    .inspect(|s| s.set_nonblocking(false).unwrap())
}

#[test]
fn strangers_holding_connections_open_do_not_starve_a_node() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Node::worker("w1", "127.0.0.45", &[], tmp.path());
    assert!(wait_until(Duration::from_secs(5), || w.rss_kb() > 0));
    let idle = w.rss_kb();
    // 300 connections that say nothing (from an address of their own: a
    // node pauses an address that keeps failing), and 50 from four more
    // addresses that announce a first flight of a valid length and trickle
    // it a byte at a time: 350 strangers, past the 256 handshakes the node
    // takes at once.
    let mut held: Vec<TcpStream> = (0..300).filter_map(|_| connect_from("127.0.0.60", &w.addr)).collect();
    let mut tricklers: Vec<TcpStream> = (0..50).filter_map(|i| connect_from(&format!("127.0.0.{}", 61 + i % 4), &w.addr)).collect();
    assert!(held.len() + tricklers.len() > 300);
    for s in &mut tricklers {
        let _ = s.write_all(&2000u16.to_be_bytes());
    }
    // A real client still gets in, and is answered, while they trickle a
    // byte each at every look (short of the 2,000 they announced).
    let (dir, addr) = (tmp.path().to_path_buf(), w.addr.clone());
    let client = std::thread::spawn(move || run(&dir, &["rpc", &addr, "1 + 1"]));
    let mut sent = 0;
    let answered = wait_until(Duration::from_secs(30), || {
        if sent < 1000 {
            sent += 1;
            for s in &mut tricklers {
                let _ = s.write_all(&[sent as u8]);
            }
        }
        client.is_finished()
    });
    assert!(answered, "the client was not answered within 30 s");
    client.join().unwrap().success().stdout_has("2");
    let busy = w.rss_kb();
    assert!(busy <= idle * 2, "RSS went from {idle} kB to {busy} kB");
    assert!(w.wait_stderr("refused", Duration::from_secs(10)), "{}", w.stderr());
    held.clear();
    tricklers.clear();
    // Refusals are counted, not written one per line.
    let lines = w.stderr().lines().filter(|l| l.contains("refused a connection")).count();
    assert!(lines < 20, "{lines} lines of refusals:\n{}", w.stderr());
}

#[test]
fn a_master_stopped_for_3_s_mid_run_finishes_its_workflow_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let script = format!(
        "{WAIT_FOR_TWO}
        let r = deploy(workflow().stream_source(|n| if n < 400 {{ sleep(0.01); n }} else {{ () }}).count(|x| x % 4).collect());
        print(\"deployed\");
        let total = 0; let status = wait(r); for p in results(r) {{ total += p[1]; }}
        print(`status ${{status}} total ${{total}} keys ${{results(r).len()}}`);
    "
    );
    let mut master = master_iex(tmp.path(), &script);
    let _w1 = Node::worker("w1", "127.0.0.46", &[&master.addr], tmp.path());
    let _w2 = Node::worker("w2", "127.0.0.47", &[&master.addr], tmp.path());
    assert!(wait_until(Duration::from_secs(20), || master.stdout().contains("deployed")), "{}", master.stderr());
    master.stall(Duration::from_secs(3));
    master.wait(Duration::from_secs(30)).expect("the master's shell ends");
    assert!(master.stdout().contains("status finished total 400 keys 4"), "{}\n{}", master.stdout(), master.stderr());
}

#[test]
fn a_worker_stopped_for_3_s_mid_run_stays_and_its_workflow_finishes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let script = format!(
        "{WAIT_FOR_TWO}
        let r = deploy(workflow().stream_source(|n| if n < 400 {{ sleep(0.01); n }} else {{ () }}).map(|x| x * 2).count(|x| x % 3).collect());
        print(\"deployed\");
        let total = 0; let status = wait(r); for p in results(r) {{ total += p[1]; }}
        print(`status ${{status}} total ${{total}} workers ${{workers().len()}}`);
    "
    );
    let mut master = master_iex(tmp.path(), &script);
    let w1 = Node::worker("w1", "127.0.0.48", &[&master.addr], tmp.path());
    let w2 = Node::worker("w2", "127.0.0.49", &[&master.addr], tmp.path());
    assert!(wait_until(Duration::from_secs(20), || master.stdout().contains("deployed")), "{}", master.stderr());
    w1.stall(Duration::from_secs(3));
    w2.stall(Duration::from_secs(3));
    master.wait(Duration::from_secs(30)).expect("the master's shell ends");
    assert!(master.stdout().contains("status finished total 400 workers 2"), "{}\n{}", master.stdout(), master.stderr());
}

#[test]
fn a_daemon_shows_no_cookie_to_ps() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "a-secret-cookie-9e2d-4b7f1a8c3e6d2095";
    let run_plain = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["-c", secret]);
        Skitter::new().args(&all).env("SKITTER_TMP", tmp.path()).env("HOME", tmp.path()).run()
    };
    run_plain(&["worker", "daemon", "-n", "secretive", "--no-log", "--listen", "127.0.0.50:0"]).success();
    let pid: u32 = run_plain(&["worker", "pid", "-n", "secretive"]).success().stdout().trim().parse().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!cmdline.windows(secret.len()).any(|w| w == secret.as_bytes()), "{}", String::from_utf8_lossy(&cmdline));
    // It has the cookie all the same.
    let addr = std::fs::read_to_string(tmp.path().join(format!("secretive@{}.node", hostname()))).unwrap();
    let addr = addr.lines().next().unwrap().to_string();
    Skitter::new().args(["rpc", &addr, "6 * 7"]).env("SKITTER_COOKIE", secret).env("HOME", tmp.path()).run().success().stdout_has("42");
    run_plain(&["worker", "stop", "-n", "secretive"]).success();
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

#[test]
fn runaway_console_code_is_stopped_and_the_node_lives_on() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["worker", "start", "--no-log", "-n", "w1", "--listen", "127.0.0.51:0", "--slots", "1"];
    let w = Node::spawn_with_env(&args, tmp.path(), COOKIE, None, &[("SKITTER_MAX_MEMORY_MB", "300")]);
    let runaway = r#"let s = "x"; s.pad(1000, "y"); let a = []; loop { a.push(s + a.len()) }"#;
    run(tmp.path(), &["rpc", &w.addr, runaway]).expect_code(1).stderr_has("memory passed its limit of 300 MiB");
    // A loop that never ends is interrupted on the node at its timeout.
    run(tmp.path(), &["rpc", "--timeout", "1", &w.addr, "loop {}"]).expect_code(1).stderr_has("longer than its timeout of 1 s");
    run(tmp.path(), &["rpc", &w.addr, "1 + 1"]).success().stdout_has("2");
}

/// Issue 25: an empty SKITTER_COOKIE fell back to the cookie file without
/// a word: a node joined (or refused) the wrong cluster.
#[test]
fn an_empty_skitter_cookie_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    for value in ["", "  "] {
        let out = Skitter::new()
            .args(["worker", "start", "--no-log", "--listen", "127.0.0.1:0"])
            .env("SKITTER_COOKIE", value)
            .env("SKITTER_TMP", tmp.path())
            .env("HOME", tmp.path())
            .run();
        out.expect_code(2).stderr_has("SKITTER_COOKIE is set but empty");
        assert!(!tmp.path().join(".skitter.cookie").exists(), "no cookie file was made");
    }
}

/// Issue 31: a cookie anyone could guess offline from one recorded
/// handshake is refused, from every source, saying how to make one — and
/// no node starts with it.
#[test]
fn a_weak_cookie_is_refused_saying_how_to_make_one() {
    let tmp = tempfile::tempdir().unwrap();
    let start = ["worker", "start", "--no-log", "--listen", "127.0.0.1:0"];
    let advice = "make one with `head -c 32 /dev/urandom | base64`";
    let out = Skitter::new().args(start).env("SKITTER_COOKIE", "hunter2").env("SKITTER_TMP", tmp.path()).env("HOME", tmp.path()).run();
    out.expect_code(2).stderr_has("the cookie from SKITTER_COOKIE is too weak").stderr_has(advice);
    let mut with_flag = start.to_vec();
    with_flag.extend(["-c", " short-cookie-2024 "]);
    let out = Skitter::new().args(&with_flag).env_remove("SKITTER_COOKIE").env("SKITTER_TMP", tmp.path()).env("HOME", tmp.path()).run();
    out.expect_code(2).stderr_has("the cookie from -c is too weak").stderr_has(advice);
    let file = tmp.path().join(".skitter.cookie");
    std::fs::write(&file, "password\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = Skitter::new().args(start).env_remove("SKITTER_COOKIE").env("SKITTER_TMP", tmp.path()).env("HOME", tmp.path()).run();
    out.expect_code(2).stderr_has(&format!("the cookie from cookie file {} is too weak", file.display())).stderr_has(advice);
    // A cookie as the advice makes it is taken, padded with spaces or not.
    let strong = " lK3+9aZ/qWe7Rty1Ui0oPAsD4fGh6jKl8zXc2vBn5mM= ";
    let node = Node::spawn(&["worker", "start", "--no-log", "--listen", "127.0.0.52:0"], tmp.path(), strong, None);
    common::node::run_with_cookie(tmp.path(), strong.trim(), &["rpc", &node.addr, "6 * 7"]).success().stdout_has("42");
}

/// Issue 31: the cookie in SKITTER_COOKIE reaches no child but the skitter
/// nodes that need it: here `ssh` (run by `skitter deploy`) runs a proxy
/// command that writes down the environment it was given.
#[test]
fn the_cookie_is_in_no_child_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let seen = tmp.path().join("env.txt");
    let config = tmp.path().join("ssh_config");
    std::fs::write(&config, format!("Host envdump\n  ProxyCommand sh -c 'env > {}; exit 1'\n  StrictHostKeyChecking no\n", seen.display()))
        .unwrap();
    let out = Skitter::new()
        .args(["deploy", "--no-log", "--ssh-config", config.to_str().unwrap(), "--working-dir", tmp.path().to_str().unwrap(), "envdump"])
        .env("SKITTER_COOKIE", COOKIE)
        .env("SKITTER_TMP", tmp.path())
        .env("HOME", tmp.path())
        .run();
    out.expect_code(1);
    let env = std::fs::read_to_string(&seen).unwrap_or_else(|e| panic!("ssh ran no proxy command ({e}):\n{}", out.stderr()));
    assert!(env.contains("HOME="), "{env}");
    assert!(!env.contains("SKITTER_COOKIE") && !env.contains(COOKIE), "the cookie reached ssh's children:\n{env}");
}

/// Issue 31: a worker is the name it proved in the handshake. One that
/// registers under another name (to take over a member's place, or to be
/// logged as someone else) is refused, both names quoted, and is not in
/// the cluster.
#[test]
fn a_worker_registering_under_another_name_than_its_handshake_is_refused() {
    use skitter::net::{handshake, ControlMsg, Cookie, Identity, Role, WorkerInfo};
    let tmp = tempfile::tempdir().unwrap();
    let master = Node::spawn(&["master", "start", "--listen", "127.0.0.1:0", "-n", "m"], tmp.path(), COOKIE, None);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answer = rt.block_on(async {
        let me = Identity::new(Role::Worker, "w1@h", &Cookie::new(COOKIE, "the test").unwrap());
        let auth = handshake::dial(&master.addr, &me).await.unwrap();
        let mut link = auth.into_link::<ControlMsg>(Duration::from_secs(5));
        let info = WorkerInfo { name: "w2@h".into(), addr: "127.0.0.1:1".into(), tags: vec![], slots: 1 };
        link.writer.write(&ControlMsg::Register(info)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), link.reader.read()).await.unwrap()
    });
    let answer = format!("{answer:?}");
    assert!(answer.contains("NameMismatch") && answer.contains("w2@h") && answer.contains("w1@h"), "{answer}");
    let workers = run(tmp.path(), &["rpc", "m", "workers().len()"]).stdout();
    assert_eq!(workers.trim(), "0", "{}", master.stderr());
}
