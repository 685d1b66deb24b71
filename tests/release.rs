//! Releases: `skitter release`, bin/<app>, the tarball (issue 7).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::sshd::Sshd;
use common::*;

/// Builds a release of examples/word_count under `dir` and returns its path.
fn release(dir: &Path, extra: &[&str]) -> PathBuf {
    let path = dir.join("rel");
    let app = example("word_count");
    let mut args = vec!["release", "--app", app.to_str().unwrap(), "--path", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    Skitter::new().args(&args).run().success();
    path
}

/// Runs a release's script from an unrelated directory, with a clean environment.
fn script(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let elsewhere = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(root.join("bin/word_count"));
    cmd.args(args).current_dir(elsewhere.path()).env("HOME", elsewhere.path()).env("NO_COLOR", "1").stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("SKITTER_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    Outcome(cmd.output().unwrap())
}

fn expected() -> BTreeMap<String, i64> {
    count_words(&std::fs::read_to_string(example("word_count").join("priv/words.txt")).unwrap())
}

#[test]
fn a_release_has_its_layout_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let root = release(dir.path(), &[]);
    for f in [
        "bin/skitter",
        "bin/word_count",
        "lib/word_count.rhai",
        "priv/words.txt",
        "releases/0.1.0/skitter.toml",
        "releases/0.1.0/env.sh",
        "releases/start_data",
    ] {
        assert!(root.join(f).is_file(), "{f} missing");
    }
    let mut top: Vec<String> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    top.sort();
    assert_eq!(top, vec!["bin", "lib", "priv", "releases"]);
    // No cookie unless asked for: it comes from the hosts.
    assert!(!root.join("releases/COOKIE").exists());
    Skitter::new()
        .args(["release", "--app", example("word_count").to_str().unwrap(), "--path", root.to_str().unwrap()])
        .run()
        .expect_code(2)
        .stderr_has("--overwrite");
    // Asked for: mode 0600, and stable across rebuilds of the same app.
    release(dir.path(), &["--overwrite", "--write-cookie"]);
    let mode = std::fs::metadata(root.join("releases/COOKIE")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let cookie = std::fs::read_to_string(root.join("releases/COOKIE")).unwrap();
    release(dir.path(), &["--overwrite"]);
    assert_eq!(std::fs::read_to_string(root.join("releases/COOKIE")).unwrap(), cookie);
}

#[test]
fn the_tarball_carries_no_cookie_even_when_the_release_has_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = release(dir.path(), &["--tar", "--write-cookie"]);
    let cookie = std::fs::read_to_string(root.join("releases/COOKIE")).unwrap();
    let listing = Command::new("tar").arg("tzf").arg(root.join("word_count-0.1.0.tar.gz")).output().unwrap();
    let names = String::from_utf8_lossy(&listing.stdout).to_string();
    assert!(names.contains("releases/start_data") && names.contains("bin/skitter"), "{names}");
    assert!(!names.contains("COOKIE"), "{names}");
    let bytes = Command::new("sh").arg("-c").arg(format!("gzip -dc {}", root.join("word_count-0.1.0.tar.gz").display())).output().unwrap();
    assert!(!bytes.stdout.windows(cookie.len()).any(|w| w == cookie.as_bytes()), "the cookie is in the tarball");
}

#[test]
fn a_moved_release_runs_as_a_daemon_answers_rpc_and_remote_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    // Its own cookie file: every command below runs with another HOME.
    let built = release(dir.path(), &["--write-cookie"]);
    let root = dir.path().join("moved");
    std::fs::rename(&built, &root).unwrap();
    script(&root, &["daemon"], &[]).success().stdout_has("running as a daemon");
    let pid: u32 = script(&root, &["pid"], &[]).success().stdout().trim().parse().unwrap();
    script(&root, &["rpc", "6 * 7"], &[]).success().stdout_has("42");
    let remote = {
        let mut cmd = Command::new(root.join("bin/word_count"));
        cmd.arg("remote").env("HOME", dir.path()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("SKITTER_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"let r = deploy(word_totals(priv_path(\"words.txt\")));\nwait(r);\nprint(results(r).len());\n")
            .unwrap();
        Outcome(child.wait_with_output().unwrap())
    };
    remote.success().stdout_has("1000");
    script(&root, &["stop"], &[]).success();
    assert!(
        !Path::new(&format!("/proc/{pid}/cmdline")).exists() || std::fs::read(format!("/proc/{pid}/cmdline")).unwrap().is_empty(),
        "process {pid} is gone"
    );
    script(&root, &["pid"], &[]).expect_code(1);
}

#[test]
fn start_deploys_from_skitter_deploy_and_the_tarball_runs_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let root = release(dir.path(), &["--tar"]);
    let tarball = root.join("word_count-0.1.0.tar.gz");
    assert!(tarball.is_file());
    let unpacked = tempfile::tempdir().unwrap();
    let status = Command::new("tar").arg("xzf").arg(&tarball).arg("-C").arg(unpacked.path()).status().unwrap();
    assert!(status.success());
    let out = script(unpacked.path(), &["start", "--no-log"], &[]);
    out.success();
    let got: BTreeMap<String, i64> = out.labelled("count").iter().map(|v| word_and_count(v)).collect();
    assert_eq!(got, expected());
    let custom = script(
        unpacked.path(),
        &["start", "--no-log"],
        &[("SKITTER_DEPLOY", "workflow().stream_source([\"from\", \"env\"]).inspect(\"e\")")],
    );
    custom.success();
    assert_eq!(custom.labelled("e").len(), 2);
    script(unpacked.path(), &["version"], &[]).success().stdout_has("word_count 0.1.0");
    script(unpacked.path(), &["eval", "words(\"a b\").len()"], &[]).success().stdout_has("2");
}

#[test]
fn bin_skitter_knows_its_release_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = release(dir.path(), &[]);
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |arg: &str| {
        Outcome(
            Command::new(root.join("bin/skitter"))
                .arg(arg)
                .current_dir(elsewhere.path())
                .env_remove("SKITTER_RELEASE_ROOT")
                .output()
                .unwrap(),
        )
    };
    run("-a").success().stdout_has("word_count 0.1.0");
    run("-v").success().stdout_has(&format!("skitter {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_syntax_error_aborts_the_release_with_its_position_and_leaves_nothing() {
    let app = app_with(&[("lib/good.rhai", "fn ok() { 1 }\n"), ("lib/broken.rhai", "fn broken() {\n  let x = ;\n}\n")]);
    let out_dir = tempfile::tempdir().unwrap();
    let path = out_dir.path().join("rel");
    let out = Skitter::new().args(["release", "--path", path.to_str().unwrap()]).dir(app.path()).run();
    out.expect_code(1).stderr_has("lib/broken.rhai:2:").stderr_has("syntax error");
    assert!(!path.exists(), "no half-written release");
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0, "no staging directory left");
}

#[test]
fn a_new_version_unpacks_over_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let app = tempfile::tempdir().unwrap();
    let src = app.path().join("vapp");
    Skitter::new().arg("new").arg(&src).run().success();
    let root = dir.path().join("rel");
    Skitter::new().args(["release", "--path", root.to_str().unwrap()]).dir(&src).run().success();
    let toml = std::fs::read_to_string(src.join("skitter.toml")).unwrap().replace("version = \"0.1.0\"", "version = \"0.2.0\"");
    std::fs::write(src.join("skitter.toml"), toml).unwrap();
    Skitter::new().args(["release", "--overwrite", "--path", root.to_str().unwrap()]).dir(&src).run().success();
    assert!(root.join("releases/0.1.0/skitter.toml").is_file() && root.join("releases/0.2.0/skitter.toml").is_file());
    assert_eq!(std::fs::read_to_string(root.join("releases/start_data")).unwrap().trim(), "0.2.0");
    let out = Outcome(Command::new(root.join("bin/vapp")).args(["start", "--no-log"]).env("HOME", dir.path()).output().unwrap());
    out.success();
    assert!(!out.labelled("count").is_empty(), "a new app's release works with no edits");
}

#[test]
fn bin_skitter_deploy_from_an_unpacked_release_to_ssh_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let root = release(dir.path(), &[]);
    let sshd = Sshd::start();
    let mut cmd = Command::new(root.join("bin/skitter"));
    cmd.args(["deploy", "--no-log", "-q", "--ssh-config"]).arg(sshd.config()).arg("--working-dir").arg(&root);
    cmd.args(["-d", "word_count()", "r1@h1", "r2@h2"]).env("HOME", dir.path()).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("SKITTER_") {
            cmd.env_remove(k);
        }
    }
    let out = Outcome(cmd.output().unwrap());
    out.success();
    let got: BTreeMap<String, i64> = out.labelled("count").iter().map(|v| word_and_count(v)).collect();
    assert_eq!(got, expected());
    std::thread::sleep(Duration::from_millis(100));
}

/// A clean command: no SKITTER_* of the test's environment.
fn clean(program: impl AsRef<std::ffi::OsStr>, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars() {
        if k.starts_with("SKITTER_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", home).env("NO_COLOR", "1").stdin(Stdio::null());
    cmd
}

#[test]
fn environments_choose_settings_a_release_records_its_own_and_the_hosts_variables_win() {
    let app = app_with(&[("lib/a.rhai", "fn one() { 1 }\n")]);
    std::fs::write(
        app.path().join("skitter.toml"),
        "name = \"envapp\"\nversion = \"1.0.0\"\ntick_time = 10\n\n[env.prod]\ntick_time = 20\nslots = 3\n\n[env.test]\nlog_level = \"debug\"\n",
    )
    .unwrap();
    let info = |env: Option<&str>, field: &str| {
        let mut cmd = clean(BIN, app.path());
        cmd.args(["eval", &format!("runtime_info().{field}")]).current_dir(app.path());
        if let Some(e) = env {
            cmd.env("SKITTER_ENV", e);
        }
        let out = Outcome(cmd.output().unwrap());
        out.success();
        out.stdout().trim().to_string()
    };
    assert_eq!(info(None, "env"), "\"dev\"");
    assert_eq!(info(None, "tick_time"), "10.0");
    assert_eq!(info(Some("prod"), "tick_time"), "20.0");
    assert_eq!(info(Some("prod"), "slots"), "3");
    assert_eq!(info(Some("test"), "log_level"), "\"debug\"");

    // A release for prod records it; the host's SKITTER_ENV still wins.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rel");
    Skitter::new().args(["release", "--env", "prod", "--path", root.to_str().unwrap()]).dir(app.path()).run().success();
    let node_args = std::fs::read_to_string(root.join("releases/1.0.0/node.toml")).unwrap();
    assert!(node_args.contains("env = \"prod\"") && node_args.contains("# slots = 3"), "{node_args}");
    let script = |env: &[(&str, &str)], expr: &str| {
        let mut cmd = clean(root.join("bin/envapp"), dir.path());
        cmd.args(["eval", expr]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = Outcome(cmd.output().unwrap());
        out.success();
        out.stdout().trim().to_string()
    };
    assert_eq!(script(&[], "runtime_info().env"), "\"prod\"");
    assert_eq!(script(&[], "runtime_info().tick_time"), "20.0");
    assert_eq!(script(&[("SKITTER_ENV", "dev")], "runtime_info().tick_time"), "10.0");
    // node.toml edited on the host; an environment variable beats it.
    std::fs::write(root.join("releases/1.0.0/node.toml"), node_args.replace("# slots = 3", "slots = 5")).unwrap();
    assert_eq!(script(&[], "runtime_info().slots"), "5");
    assert_eq!(script(&[("SKITTER_SLOTS", "2")], "runtime_info().slots"), "2");
    // env.sh supplies defaults only: what the host set wins.
    let env_sh = root.join("releases/1.0.0/env.sh");
    let mut text = std::fs::read_to_string(&env_sh).unwrap();
    text.push_str("export SKITTER_ENV=test\nexport SKITTER_SLOTS=4\n");
    std::fs::write(&env_sh, text).unwrap();
    assert_eq!(script(&[], "runtime_info().env"), "\"test\"");
    assert_eq!(script(&[], "runtime_info().slots"), "4");
    assert_eq!(script(&[("SKITTER_ENV", "prod"), ("SKITTER_SLOTS", "1")], "runtime_info().env"), "\"prod\"");
    assert_eq!(script(&[("SKITTER_SLOTS", "1")], "runtime_info().slots"), "1");

    // Mistakes are named.
    Skitter::new()
        .args(["release", "--env", "staging", "--overwrite", "--path", root.to_str().unwrap()])
        .dir(app.path())
        .run()
        .expect_code(2)
        .stderr_has("skitter.toml has no [env.staging] (it has: prod, test)");
    std::fs::write(app.path().join("skitter.toml"), "name = \"envapp\"\n[env.prod]\nname = \"other\"\n").unwrap();
    let out = Outcome(clean(BIN, app.path()).args(["eval", "1"]).current_dir(app.path()).output().unwrap());
    out.expect_code(2).stderr_has("[env.prod] may not set `name`");
}

#[test]
fn bin_app_with_no_arguments_prints_its_usage() {
    let dir = tempfile::tempdir().unwrap();
    let root = release(dir.path(), &[]);
    let out = script(&root, &[], &[]);
    out.expect_code(2).stderr_has("usage: bin/word_count COMMAND").stderr_has("upgrade VERSION").stderr_has("versions");
    assert!(!out.stderr().contains("set -e") && !out.stderr().contains("case "), "{}", out.stderr());
}

/// Installs the release tarball `t` in the deploy directory `dir` by hand,
/// as `deploy --release` does on a host.
fn install_by_hand(t: &Path, dir: &Path, version: &str) {
    let root = dir.join("releases").join(version);
    std::fs::create_dir_all(&root).unwrap();
    assert!(Command::new("tar").arg("xzf").arg(t).arg("-C").arg(&root).status().unwrap().success());
    let sum = Command::new("sha256sum").arg(t).output().unwrap();
    std::fs::write(root.join(".sha256"), String::from_utf8_lossy(&sum.stdout).split(' ').next().unwrap()).unwrap();
    std::fs::write(dir.join("current"), format!("{version}\n")).unwrap();
}

#[test]
fn bin_app_upgrade_moves_a_running_node_to_the_new_version_with_its_workflows() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for f in ["skitter.toml", "lib/word_count.rhai", "priv/words.txt"] {
        std::fs::create_dir_all(src.join(f).parent().unwrap()).unwrap();
        std::fs::copy(example("word_count").join(f), src.join(f)).unwrap();
    }
    let build = |version: &str| {
        let toml = std::fs::read_to_string(src.join("skitter.toml")).unwrap();
        let toml: String =
            toml.lines().map(|l| if l.starts_with("version") { format!("version = \"{version}\"\n") } else { format!("{l}\n") }).collect();
        std::fs::write(src.join("skitter.toml"), toml).unwrap();
        let rel = dir.path().join(format!("rel-{version}"));
        Skitter::new().args(["release", "--tar", "--path", rel.to_str().unwrap()]).dir(&src).run().success();
        rel.join(format!("word_count-{version}.tar.gz"))
    };
    // `ticking()` is in 0.1.0 and 0.2.0, not in 0.3.0.
    let lib = src.join("lib/word_count.rhai");
    let without_ticking = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("{without_ticking}\nfn ticking() {{ workflow().stream_source(|n| {{ sleep(0.005); n }}).filter(|n| n % 700 == 0).inspect(\"t\") }}\n")).unwrap();
    let v1 = build("0.1.0");
    let v2 = build("0.2.0");
    std::fs::write(&lib, &without_ticking).unwrap();
    let v3 = build("0.3.0");
    let deploy_dir = dir.path().join("srv");
    install_by_hand(&v1, &deploy_dir, "0.1.0");
    let old = deploy_dir.join("releases/0.1.0/bin/word_count");
    let run = |bin: &Path, args: &[&str]| Outcome(clean(bin, dir.path()).args(args).output().unwrap());
    run(&old, &["daemon"]).success();
    let _stop = StopNode(old.clone(), dir.path().to_path_buf());
    let endless = "workflow().stream_source(|n| { sleep(0.005); n }).filter(|n| n % 500 == 0).inspect(\"k\")";
    run(&old, &["rpc", &format!("deploy({endless:?})")]).success();
    // Issue 27: every number once in the file, whatever the upgrades: each
    // stop is a savepoint the new version's deploy resumes from.
    let numbers = dir.path().join("numbers.txt");
    let counting = format!("workflow().stream_source(|n| {{ sleep(0.002); n }}).write_lines({:?})", numbers.display().to_string());
    run(&old, &["rpc", &format!("deploy({counting:?})")]).success();
    run(&old, &["versions"]).success().stdout_has("* 0.1.0 (current)");

    let up = run(&old, &["upgrade", v2.to_str().unwrap()]);
    up.success().stdout_has("upgraded skitter_local@").stdout_has("from 0.1.0 to 0.2.0").stdout_has("downtime");
    let new = deploy_dir.join("releases/0.2.0/bin/word_count");
    run(&new, &["rpc", "runtime_info().app_version"]).success().stdout_has("\"0.2.0\"");
    run(&new, &["rpc", "running_deploys()"]).success().stdout_has("n % 500 == 0");
    run(&new, &["versions"]).success().stdout_has("  0.1.0").stdout_has("* 0.2.0 (current)");
    // Back down by version: it is installed beside.
    run(&new, &["upgrade", "0.1.0"]).success().stdout_has("from 0.2.0 to 0.1.0");
    run(&old, &["rpc", "runtime_info().app_version"]).success().stdout_has("\"0.1.0\"");
    run(&old, &["upgrade", "9.9.9"]).expect_code(2).stderr_has("9.9.9 is not installed");

    // Issue 25: a release that cannot deploy one of the running workflows
    // again. Every workflow is tried and the failing one named; the new
    // daemon is stopped (it was left running, and the old version could not
    // start beside it); the old version runs again with both workflows.
    run(&old, &["rpc", "deploy(\"ticking()\")"]).success();
    let failed = run(&old, &["upgrade", v3.to_str().unwrap()]);
    failed.expect_code(1).stderr_has("0.3.0 could not start: 1 of 3 workflow(s) could not be deployed again");
    failed.stderr_has("`ticking()`").stderr_has("runs 0.1.0 again");
    run(&old, &["rpc", "runtime_info().app_version"]).success().stdout_has("\"0.1.0\"");
    let running = run(&old, &["rpc", "running_deploys()"]);
    running.success().stdout_has("ticking()").stdout_has("n % 500 == 0");
    run(&old, &["stop"]).success();
    let text = std::fs::read_to_string(&numbers).unwrap();
    let mut got: Vec<i64> = text.lines().map(|l| l.parse().unwrap()).collect();
    got.sort();
    assert!(got.len() > 10, "the counting workflow ran: {got:?}");
    assert_eq!(got, (0..got.len() as i64).collect::<Vec<_>>(), "three upgrades lost or repeated a number");
}

/// Stops the release's node when dropped.
struct StopNode(PathBuf, PathBuf);

impl Drop for StopNode {
    fn drop(&mut self) {
        let _ = clean(&self.0, &self.1).arg("stop").output();
    }
}
