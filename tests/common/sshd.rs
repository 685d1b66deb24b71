//! A throwaway sshd on loopback (scripts/throwaway-sshd), stopped on drop.

use std::path::PathBuf;
use std::process::Command;

use super::repo;

/// An sshd on 127.0.0.11..14 with an ssh config naming h1..h4; stopped (by
/// pid) when dropped.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub pid: u32,
}

impl Sshd {
    pub fn start() -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let out =
            Command::new(repo().join("scripts/throwaway-sshd")).arg(dir.path()).arg("4").output().expect("run scripts/throwaway-sshd");
        assert!(out.status.success(), "throwaway-sshd: {}", String::from_utf8_lossy(&out.stderr));
        let pid = String::from_utf8_lossy(&out.stdout).trim().parse().expect("sshd pid");
        Sshd { dir, pid }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// Adds a host alias to the ssh config.
    pub fn alias(&self, name: &str, hostname: &str, port: u16) {
        let key = self.dir.path().join("id_ed25519");
        let entry = format!(
            "Host {name}\n  HostName {hostname}\n  Port {port}\n  User root\n  IdentityFile {}\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n",
            key.display()
        );
        let mut text = std::fs::read_to_string(self.config()).unwrap();
        text.push_str(&entry);
        std::fs::write(self.config(), text).unwrap();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the sshd this test started.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
    }
}
