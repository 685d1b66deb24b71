//! A node process for tests: started, waited for, killed by pid on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::BIN;

pub const COOKIE: &str = "test-cookie-5f1b-9a3e7c2d8b4f1e60";

/// Runs `skitter ARGS` to the end with `cookie`, `tmp` as its tmp/ and home.
pub fn run_with_cookie(tmp: &Path, cookie: &str, args: &[&str]) -> super::Outcome {
    run_with_env(tmp, cookie, args, &[])
}

/// [`run_with_cookie`] with more environment variables.
pub fn run_with_env(tmp: &Path, cookie: &str, args: &[&str], env: &[(&str, &str)]) -> super::Outcome {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        // Checkpoints stay with the test, even with an app of the repository.
        .env("SKITTER_CHECKPOINT_DIR", tmp.join("checkpoints"))
        .env("SKITTER_COOKIE", cookie)
        .env("SKITTER_TMP", tmp)
        .env("HOME", tmp)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run skitter");
    super::Outcome(out)
}

/// [`run_with_cookie`] with the tests' cookie.
pub fn run(tmp: &Path, args: &[&str]) -> super::Outcome {
    run_with_cookie(tmp, COOKIE, args)
}

/// A node process; killed (by pid) when dropped.
pub struct Node {
    pub child: Child,
    pub name: String,
    pub addr: String,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    /// The threads reading stdout and stderr: a process that exited may
    /// still have output in its pipes until they finish.
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn drain(reader: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            let mut s = into.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    })
}

impl Node {
    /// Starts `skitter <args>` and waits for its welcome line.
    pub fn spawn(args: &[&str], tmp: &Path, cookie: &str, stdin: Option<&str>) -> Node {
        Node::spawn_with_env(args, tmp, cookie, stdin, &[])
    }

    /// Starts `skitter <args>`, reading what it writes as it goes (a
    /// client, say); [`Node::spawn`] waits for a node to be ready.
    pub fn launch(args: &[&str], tmp: &Path, cookie: &str, stdin: Option<&str>, env: &[(&str, &str)]) -> Node {
        let mut cmd = Command::new(BIN);
        // Checkpoints stay with the test, even with an app of the repository.
        cmd.env("SKITTER_CHECKPOINT_DIR", tmp.join("checkpoints"));
        cmd.envs(env.iter().copied());
        cmd.args(args).env("SKITTER_COOKIE", cookie).env("SKITTER_TMP", tmp).env("NO_COLOR", "1").env("HOME", tmp);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn skitter");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            let text = text.to_string();
            std::thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            });
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let readers = vec![drain(child.stderr.take().unwrap(), stderr.clone()), drain(child.stdout.take().unwrap(), stdout.clone())];
        Node { child, name: String::new(), addr: String::new(), stderr, stdout, readers }
    }

    /// [`Node::spawn`] with more environment variables.
    pub fn spawn_with_env(args: &[&str], tmp: &Path, cookie: &str, stdin: Option<&str>, env: &[(&str, &str)]) -> Node {
        let mut node = Node::launch(args, tmp, cookie, stdin, env);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = node.stderr.lock().unwrap().clone() + node.stdout.lock().unwrap().as_str();
            if let Some(line) = text.lines().find(|l| l.contains("Welcome to skitter")) {
                let (_, rest) = line.split_once(" as ").unwrap();
                let (name, addr) = rest.split_once(" at ").unwrap();
                node.name = name.to_string();
                node.addr = addr.split_whitespace().next().unwrap_or_default().to_string();
                return node;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("skitter {args:?} exited ({status}) before it was ready:\n{text}");
            }
            assert!(Instant::now() < deadline, "skitter {args:?} did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn worker(name: &str, ip: &str, extra: &[&str], tmp: &Path) -> Node {
        let listen = format!("{ip}:0");
        let mut args = vec!["worker", "start", "--no-log", "-n", name, "--listen", &listen, "--slots", "2"];
        args.extend_from_slice(extra);
        Node::spawn(&args, tmp, COOKIE, None)
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.read_to_end();
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// Stops the process for `d` (SIGSTOP), then lets it continue: a stall,
    /// as a debugger, a paused terminal or a busy host make one.
    pub fn stall(&self, d: Duration) {
        self.signal(libc::SIGSTOP);
        std::thread::sleep(d);
        self.signal(libc::SIGCONT);
    }

    /// Stops the process (SIGSTOP) until [`Node::resume`]: its connections
    /// stay open, and it answers nothing.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// The process's resident memory, in kB.
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
    }

    /// Asks the node to stop, as `stop` and `kill` do (SIGTERM).
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
        self.read_to_end();
    }

    /// Once the process is gone, waits (at most 2 s: a daemon it started may
    /// hold the pipes) until everything it wrote has been read.
    fn read_to_end(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn wait_stderr(&self, text: &str, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.stderr().contains(text))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}
