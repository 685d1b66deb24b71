//! A skitter shell on a pseudo-terminal, driven like a person would.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use expectrl::{Expect, Regex};

use super::BIN;

/// A shell on a pty; killed (by pid) when dropped.
pub struct Pty {
    pub session: expectrl::session::OsSession,
}

impl Pty {
    /// `skitter local --no-log ARGS` in `dir`, with `home` as HOME.
    pub fn spawn(dir: &Path, home: &Path, args: &[&str]) -> Pty {
        let mut full = vec!["local", "--no-log"];
        full.extend_from_slice(args);
        Pty::command(dir, home, &full)
    }

    /// `skitter ARGS` in `dir`, with `home` as HOME.
    pub fn command(dir: &Path, home: &Path, args: &[&str]) -> Pty {
        Pty::command_with(dir, home, args, &[])
    }

    /// `skitter ARGS` in `dir`, with `home` as HOME and more environment.
    pub fn command_with(dir: &Path, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Pty {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(dir);
        cmd.env("HOME", home).env("XDG_STATE_HOME", home.join("state")).env("TERM", "xterm-256color").env("NO_COLOR", "1");
        for (k, _) in std::env::vars() {
            if k.starts_with("SKITTER_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut session = expectrl::Session::spawn(cmd).expect("spawn on a pty");
        session.set_expect_timeout(Some(Duration::from_secs(20)));
        Pty { session }
    }

    #[track_caller]
    pub fn expect(&mut self, text: &str) -> String {
        match self.session.expect(text) {
            Ok(found) => String::from_utf8_lossy(found.before()).into_owned(),
            Err(e) => panic!("waiting for {text:?}: {e}"),
        }
    }

    #[track_caller]
    pub fn expect_re(&mut self, re: &str) -> String {
        match self.session.expect(Regex(re)) {
            Ok(found) => String::from_utf8_lossy(found.matches().next().unwrap_or_default()).into_owned(),
            Err(e) => panic!("waiting for /{re}/: {e}"),
        }
    }

    /// Waits for the prompt of entry `n`.
    #[track_caller]
    pub fn prompt(&mut self, n: usize) {
        self.expect(&format!("){n}> "));
    }

    /// Waits until the process closes the terminal.
    #[track_caller]
    pub fn expect_eof(&mut self) {
        if let Err(e) = self.session.expect(expectrl::Eof) {
            panic!("waiting for the end: {e}");
        }
    }

    /// Prints `results(var)` of a word count as `wc word n` lines and reads
    /// them back.
    pub fn word_totals(&mut self, var: &str) -> std::collections::BTreeMap<String, i64> {
        self.line(&format!("for pair in results({var}) {{ print(`wc ${{pair[0]}} ${{pair[1]}}`); }} print(\"done\" + \"!\");"));
        let printed = self.expect("done!");
        printed
            .lines()
            .filter_map(|l| l.trim().strip_prefix("wc "))
            .map(|l| {
                let (w, n) = l.split_once(' ').unwrap();
                (w.to_string(), n.trim().parse().unwrap())
            })
            .collect()
    }

    pub fn send(&mut self, text: &str) {
        self.session.send(text).expect("write to the pty");
    }

    pub fn line(&mut self, text: &str) {
        self.session.send_line(text).expect("write to the pty");
    }

    pub fn pid(&self) -> i32 {
        self.session.get_process().pid().as_raw()
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.pid().to_string()]).status();
    }
}
