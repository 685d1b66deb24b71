//! Releases on a cluster (issue 14): `deploy --release` ships a release to
//! hosts whose directories start empty, `upgrade` moves a running deployed
//! cluster to a new version. Against a throwaway sshd on loopback; each
//! host has its own directory (`--working-dir DIR/%h`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::sshd::Sshd;
use common::*;

const COOKIE: &str = "ship-test-cookie-2e7b9d4a1c8f3065";

/// What `endless()` is in the releases built here: a workflow that runs
/// until it is stopped, built by the app's code.
const ENDLESS: &str =
    "\nfn endless() {\n    workflow().stream_source(|n| { sleep(0.005); n }).filter(|n| n % 500 == 0).inspect(\"k\")\n}\n";

/// `endless()` in a release whose strategy places it on workers tagged
/// `gpu` only: none of the test's hosts is.
const ENDLESS_ON_GPUS: &str = "\nfn endless() {\n    workflow().stream_source(|n| { sleep(0.005); n }).map(|n| n).with_strategy(strategy(#{ place: |ws| ws.filter(|w| \"gpu\" in w.tags).map(|w| #{ worker: w.name, instances: 1 }), route: |r, p, n| 0 })).inspect(\"k\")\n}\n";

/// A release tarball of examples/word_count at `version` (with `endless()`
/// in its lib unless `without_endless`), built under `dir`.
fn tarball(dir: &Path, version: &str) -> PathBuf {
    tarball_of(dir, version, true)
}

fn tarball_of(dir: &Path, version: &str, with_endless: bool) -> PathBuf {
    tarball_with(dir, version, if with_endless { ENDLESS } else { "" })
}

/// A release tarball of examples/word_count at `version` with `lib` added
/// to its code.
fn tarball_with(dir: &Path, version: &str, lib: &str) -> PathBuf {
    let app = dir.join(format!("app-{version}"));
    copy_dir(&example("word_count"), &app);
    let path = app.join("lib/word_count.rhai");
    let text = std::fs::read_to_string(&path).unwrap() + lib;
    std::fs::write(path, text).unwrap();
    let toml = std::fs::read_to_string(app.join("skitter.toml")).unwrap();
    let toml: String =
        toml.lines().map(|l| if l.starts_with("version") { format!("version = \"{version}\"\n") } else { format!("{l}\n") }).collect();
    std::fs::write(app.join("skitter.toml"), toml).unwrap();
    let rel = dir.join(format!("rel-{version}"));
    Skitter::new().args(["release", "--tar", "--path", rel.to_str().unwrap()]).dir(&app).run().success();
    rel.join(format!("word_count-{version}.tar.gz"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            if e.file_name() != "_release" && e.file_name() != "tmp" && e.file_name() != "logs" {
                copy_dir(&src, &dst);
            }
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

struct Cluster {
    sshd: Sshd,
    work: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster { sshd: Sshd::start(), work: tempfile::tempdir().unwrap() }
    }

    fn hosts(&self) -> PathBuf {
        self.work.path().join("hosts")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("SKITTER_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("SKITTER_COOKIE", COOKIE)
            .env("SKITTER_TMP", self.work.path().join("tmp"))
            .env("HOME", self.work.path())
            .env("TMPDIR", self.work.path())
            .env("NO_COLOR", "1")
            .current_dir(self.work.path())
            .stdin(Stdio::null());
        cmd
    }

    fn deploy(&self, args: &[&str]) -> Command {
        let mut cmd = self.cmd(&["deploy", "--no-log", "--ssh-config"]);
        cmd.arg(self.sshd.config()).arg("--working-dir").arg(format!("{}/%h", self.hosts().display())).args(args);
        cmd
    }

    /// `rpc` to a worker, found through its host's records.
    fn rpc_worker(&self, host: &str, expr: &str) -> Outcome {
        let mut cmd = self.cmd(&["rpc", &format!("skitter_worker@{host}"), expr]);
        cmd.env("SKITTER_TMP", self.hosts().join(host).join("tmp"));
        Outcome(cmd.output().unwrap())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.cmd(&["master", "stop", "-n", "up"]).output();
        // Workers a failed test left: they run from releases under its directory.
        let _ = Command::new("pkill").arg("-KILL").arg("-f").arg(self.work.path()).output();
    }
}

/// The master `up` and the workers on h1..h3 all report `version`, and
/// every host's `current` names it.
fn every_node_runs(c: &Cluster, version: &str) {
    let quoted = format!("\"{version}\"");
    Outcome(c.cmd(&["rpc", "up", "runtime_info().app_version"]).output().unwrap()).success().stdout_has(&quoted);
    for h in ["h1", "h2", "h3"] {
        c.rpc_worker(h, "runtime_info().app_version").success().stdout_has(&quoted);
        assert_eq!(current(c, h), version);
    }
}

fn current(c: &Cluster, host: &str) -> String {
    std::fs::read_to_string(c.hosts().join(host).join("current")).unwrap().trim().to_string()
}

#[test]
fn deploy_release_ships_to_empty_hosts_counts_exactly_then_skips_the_copy() {
    let c = Cluster::new();
    let t = tarball(c.work.path(), "0.1.0");
    let out = Outcome(c.deploy(&["--release", t.to_str().unwrap(), "-d", "word_count()", "h1", "h2", "h3"]).output().unwrap());
    out.success();
    out.stderr_has("h2           copied 0.1.0").stderr_has("copied to 3, already on 0").stderr_has("3 worker(s) ready");
    let got: BTreeMap<String, i64> = out.labelled("count").iter().map(|v| word_and_count(v)).collect();
    let text = std::fs::read_to_string(example("word_count").join("priv/words.txt")).unwrap();
    assert_eq!(got, count_words(&text));
    for h in ["h1", "h2", "h3"] {
        assert!(c.hosts().join(h).join("releases/0.1.0/bin/skitter").is_file());
        assert_eq!(current(&c, h), "0.1.0");
        let left: Vec<_> = std::fs::read_dir(c.hosts().join(h).join("releases")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["0.1.0"], "nothing but the release in {h}");
    }
    // Again: the hosts have it, nothing is copied.
    let again = Outcome(
        c.deploy(&["-q", "--release", t.to_str().unwrap(), "-d", "workflow().stream_source([1, 2]).inspect(\"v\")", "h1", "h2", "h3"])
            .output()
            .unwrap(),
    );
    again.success().stderr_has("copied to 0, already on 3");
    assert_eq!(again.labelled("v").len(), 2);
    // ssh's control sockets went with the deploys (removed as each ended).
    let left = || -> Vec<String> {
        std::fs::read_dir(c.work.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("skitter-ssh"))
            .collect()
    };
    assert!(wait_until(Duration::from_secs(3), || left().is_empty()), "{:?}", left());
}

#[test]
fn a_corrupt_tarball_is_refused_before_any_host_is_touched() {
    let c = Cluster::new();
    let bad = c.work.path().join("word_count-0.1.0.tar.gz");
    // A gzip stream cut short.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &vec![7u8; 100_000]).unwrap();
    let bytes = gz.finish().unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let out = Outcome(c.deploy(&["--release", bad.to_str().unwrap(), "h1", "h2"]).output().unwrap());
    out.expect_code(2).stderr_has("is corrupt").stderr_has(bad.to_str().unwrap());
    assert!(!c.hosts().exists(), "no host was touched");
}

/// A release tarball that Tarball::open accepts, padded with `pad` bytes
/// that do not compress.
fn fake_release(dir: &Path, pad: usize) -> PathBuf {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut noise = vec![0u8; pad];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let files: Vec<(&str, Vec<u8>, u32)> = vec![
        ("releases/start_data", b"0.1.0\n".to_vec(), 0o644),
        ("releases/0.1.0/skitter.toml", b"name = \"word_count\"\nversion = \"0.1.0\"\n".to_vec(), 0o644),
        ("bin/skitter", b"#!/bin/sh\nexit 1\n".to_vec(), 0o755),
        // Its workers are this build's.
        ("bin/word_count", format!("#!/bin/sh\nexec {BIN} worker \"$@\"\n").into_bytes(), 0o755),
        ("priv/noise.bin", noise, 0o644),
    ];
    for (name, data, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, name, data.as_slice()).unwrap();
    }
    let path = dir.join("word_count-0.1.0.tar.gz");
    std::fs::write(&path, tar.into_inner().unwrap().finish().unwrap()).unwrap();
    path
}

/// Whether a process whose command line contains `marker` runs.
fn has_process(marker: &str) -> bool {
    let out = Command::new("pgrep").args(["-f", "--", marker]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().any(|l| !l.trim().is_empty() && l.trim() != std::process::id().to_string())
}

/// A small tmpfs mounted at `path`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(path).output().unwrap();
        assert!(out.status.success(), "this test mounts a small tmpfs (as root): {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

#[test]
fn a_full_disk_on_one_host_fails_the_deploy_naming_it_and_leaves_nothing_half_written() {
    let c = Cluster::new();
    let t = fake_release(c.work.path(), 2 << 20);
    let _full = Tmpfs::mount(&c.hosts().join("h3"), "1m");
    let out = Outcome(c.deploy(&["--release", t.to_str().unwrap(), "f1@h1", "f2@h2", "f3@h3"]).output().unwrap());
    out.expect_code(1).stderr_has("1 of 3 host(s) failed; the ").stderr_has("worker(s) already started were stopped");
    out.stderr_has("h3: copying the release failed").stderr_has("No space left on device");
    assert!(wait_until(Duration::from_secs(3), || !has_process("--deployed -n f1@h1")), "the workers started were stopped");
    // h3 keeps nothing of the copy; h1 and h2 have the whole release.
    let left: Vec<_> = std::fs::read_dir(c.hosts().join("h3/releases")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
    for h in ["h1", "h2"] {
        assert!(c.hosts().join(h).join("releases/0.1.0/.sha256").is_file());
    }
}

#[test]
fn upgrade_moves_a_running_cluster_to_the_new_version_and_a_host_that_cannot_start_it_keeps_the_old() {
    let c = Cluster::new();
    // Built side by side: each is a whole release of this (debug) binary.
    let [v1, v2, v3, v4, v5, v6] = std::thread::scope(|s| {
        let dir = c.work.path();
        let built =
            [("0.1.0", ENDLESS), ("0.2.0", ENDLESS), ("0.3.0", ENDLESS), ("0.4.0", ""), ("0.5.0", ENDLESS_ON_GPUS), ("0.6.0", ENDLESS)]
                .map(|(v, lib)| s.spawn(move || tarball_with(dir, v, lib)));
        built.map(|b| b.join().unwrap())
    });
    let up = Outcome(
        c.deploy(&["--mode", "daemon", "-n", "up", "--release", v1.to_str().unwrap(), "-d", "endless()", "h1", "h2", "h3"])
            .output()
            .unwrap(),
    );
    up.success().stdout_has("running as a daemon");
    let rpc = |expr: &str| Outcome(c.cmd(&["rpc", "up", expr]).output().unwrap());
    rpc("runtime_info().app_version").success().stdout_has("\"0.1.0\"");

    let out = Outcome(c.cmd(&["upgrade", "-n", "up", v2.to_str().unwrap(), "h1", "h2", "h3"]).output().unwrap());
    out.success();
    out.stdout_has("h1           copied 0.2.0").stdout_has("upgraded word_count from 0.1.0 to 0.2.0 on 3 host(s)");
    out.stdout_has("1 workflow(s) deployed again").stdout_has("downtime");
    every_node_runs(&c, "0.2.0");
    rpc("running_deploys()").success().stdout_has("[\"endless()\"]");
    rpc("workflows().filter(|w| w.status == \"running\").len()").success().stdout_has("1");
    let versions = Outcome(c.cmd(&["versions"]).arg(c.hosts().join("h2")).output().unwrap());
    versions.success().stdout_has("  0.1.0").stdout_has("* 0.2.0 (current)");

    // 0.3.0 cannot start on h2 (its copy there is broken, with the right
    // checksum so that it is not copied again): every host stays on 0.2.0.
    let broken = c.hosts().join("h2/releases/0.3.0");
    std::fs::create_dir_all(&broken).unwrap();
    assert!(Command::new("tar").arg("xzf").arg(&v3).arg("-C").arg(&broken).status().unwrap().success());
    let sum = Command::new("sha256sum").arg(&v3).output().unwrap();
    std::fs::write(broken.join(".sha256"), String::from_utf8_lossy(&sum.stdout).split(' ').next().unwrap()).unwrap();
    std::fs::write(broken.join("bin/skitter"), "#!/bin/sh\necho 'cannot start here' >&2\nexit 1\n").unwrap();
    let failed = Outcome(c.cmd(&["upgrade", "-n", "up", v3.to_str().unwrap()]).output().unwrap());
    failed.expect_code(1).stderr_has("0.3.0 could not start on 1 host(s), so every host stays on 0.2.0");
    failed.stderr_has("h2: command failed: cannot start here");
    every_node_runs(&c, "0.2.0");
    rpc("workflows().filter(|w| w.status == \"running\").len()").success().stdout_has("1");
    rpc("workers().len()").success().stdout_has("3");

    // A release whose code no longer has what a running workflow was
    // deployed with: refused before anything stops.
    let refused = Outcome(c.cmd(&["upgrade", "-n", "up", v4.to_str().unwrap()]).output().unwrap());
    refused.expect_code(1).stderr_has("nothing changed").stderr_has("`endless()` fails with the new release");
    rpc("runtime_info().app_version").success().stdout_has("\"0.2.0\"");
    rpc("workflows().filter(|w| w.status == \"running\").len()").success().stdout_has("1");

    // Issue 25: a workflow the new release cannot place (its strategy wants
    // workers tagged gpu) was found only after the old workers were gone.
    // Everything a deploy decides on the master is checked first now.
    let unplaceable = Outcome(c.cmd(&["upgrade", "-n", "up", v5.to_str().unwrap()]).output().unwrap());
    unplaceable.expect_code(1).stderr_has("nothing changed").stderr_has("its strategy's place put no instance anywhere");
    every_node_runs(&c, "0.2.0");
    rpc("workflows().filter(|w| w.status == \"running\").len()").success().stdout_has("1");

    // Issue 25: new workers that start but cannot join the master (h2's
    // copy of 0.6.0 announces an address where nothing listens). The old
    // version comes back on every host, its workflow deployed again.
    let stray = c.hosts().join("h2/releases/0.6.0");
    std::fs::create_dir_all(&stray).unwrap();
    assert!(Command::new("tar").arg("xzf").arg(&v6).arg("-C").arg(&stray).status().unwrap().success());
    let sum = Command::new("sha256sum").arg(&v6).output().unwrap();
    std::fs::write(stray.join(".sha256"), String::from_utf8_lossy(&sum.stdout).split(' ').next().unwrap()).unwrap();
    std::fs::write(
        stray.join("bin/skitter"),
        "#!/bin/sh\necho 'Welcome to skitter! Running in worker mode as stray@h2 at 127.0.0.1:1' >&2\nexec sleep 30\n",
    )
    .unwrap();
    let unjoined = Outcome(c.cmd(&["upgrade", "-n", "up", v6.to_str().unwrap()]).output().unwrap());
    unjoined.expect_code(1).stderr_has("upgrading to 0.6.0 failed: the master could not join the new workers");
    unjoined.stderr_has("cannot reach the worker at 127.0.0.1:1").stderr_has("every host is back on the old version");
    every_node_runs(&c, "0.2.0");
    rpc("workflows().filter(|w| w.status == \"running\").len()").success().stdout_has("1");
    rpc("workers().len()").success().stdout_has("3");

    // Stopping the deploy stops the workers, then the master left with none.
    let stop = Outcome(c.deploy(&["--stop", "h1", "h2", "h3", "-n", "up"]).output().unwrap());
    stop.success().stdout_has("stopped the workers on 3 host(s)").stdout_has("stopped the master up@");
    assert!(wait_until(Duration::from_secs(5), || rpc("1").code() != Some(0)), "the master is gone");
}

/// The executable of every process whose command line holds `marker`.
fn executables(marker: &str) -> Vec<String> {
    let out = Command::new("pgrep").args(["-f", "--", marker]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|pid| std::fs::read_link(format!("/proc/{}/exe", pid.trim())).ok())
        .map(|p| p.display().to_string())
        .collect()
}

/// Issue 25: hosts that share one working directory (NFS homes). Both
/// install the same release into it at once; after the upgrade one worker
/// ran from `releases/.incoming.0.2.0.<pid>/old/bin/skitter (deleted)`.
/// Now each release is installed once, nothing is moved from under a
/// worker, and no staging directory is left.
#[test]
fn hosts_sharing_one_directory_deploy_and_upgrade_from_one_install() {
    let c = Cluster::new();
    let [v1, v2] = std::thread::scope(|s| {
        let dir = c.work.path();
        [s.spawn(move || tarball_of(dir, "0.1.0", true)), s.spawn(move || tarball_of(dir, "0.2.0", true))].map(|b| b.join().unwrap())
    });
    for round in 0..3 {
        let shared = c.work.path().join(format!("shared-{round}"));
        let name = format!("sh{round}");
        let mut up = c.cmd(&["deploy", "--no-log", "--ssh-config"]);
        up.arg(c.sshd.config()).arg("--working-dir").arg(&shared);
        up.args(["--mode", "daemon", "-n", &name, "--release", v1.to_str().unwrap(), "-d", "endless()"]);
        up.args([&format!("s{round}a@h1"), &format!("s{round}b@h2")]);
        Outcome(up.output().unwrap()).success().stdout_has("running as a daemon");
        let out = Outcome(c.cmd(&["upgrade", "-n", &name, v2.to_str().unwrap(), "h1", "h2"]).output().unwrap());
        out.success().stdout_has("upgraded word_count from 0.1.0 to 0.2.0 on 2 host(s)");
        let rpc = |expr: &str| Outcome(c.cmd(&["rpc", &name, expr]).output().unwrap());
        rpc("workers().len()").success().stdout_has("2");
        rpc("workflows().filter(|w| w.status == \"running\").len()").success().stdout_has("1");
        let installed = shared.join("releases/0.2.0/bin/skitter").display().to_string();
        for worker in [format!("-n s{round}a@h1"), format!("-n s{round}b@h2")] {
            // This test's workers (their releases are under its directory).
            let mine = c.work.path().display().to_string();
            let exes: Vec<String> = executables(&format!("--deployed {worker}")).into_iter().filter(|e| e.starts_with(&mine)).collect();
            assert!(!exes.is_empty(), "round {round}: {worker} runs");
            assert!(exes.iter().all(|e| *e == installed), "round {round}: {worker} runs from {exes:?}, not {installed}");
        }
        let mut left: Vec<String> =
            std::fs::read_dir(shared.join("releases")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["0.1.0", "0.2.0"], "round {round}: nothing but the releases");
        let mut stop = c.cmd(&["deploy", "--no-log", "--ssh-config"]);
        stop.arg(c.sshd.config()).arg("--working-dir").arg(&shared).args(["--stop", "-n", &name]);
        stop.args([&format!("s{round}a@h1"), &format!("s{round}b@h2")]);
        Outcome(stop.output().unwrap()).success();
    }
}
