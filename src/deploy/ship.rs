//! Shipping a release to a host over the ssh connection the deploy opened:
//! one channel runs [`RECEIVE`], a POSIX shell script. It answers `have`
//! when the host has this exact release (same checksum) and nothing is
//! copied; else `need`, reads the tarball from the channel into a staging
//! directory, checks its size and checksum, unpacks it, marks it complete
//! and moves it into `DIR/releases/<vsn>` in one rename. A failure anywhere
//! (a full disk, a damaged copy, a lost connection) leaves nothing behind
//! but what was there before, and names itself on the script's stderr.
//!
//! Hosts may share `DIR` (NFS home directories on a lab's or an HPC
//! cluster's machines). The rename happens under a lock (a directory made
//! with `mkdir`, atomic on every filesystem NFS included); a host that finds
//! the same release installed by another meanwhile keeps it and discards its
//! own copy, so a directory that a worker may run from is never moved or
//! removed for the same release. Staging directories of installs that died
//! (older than an hour) are removed by the next install.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openssh::{Session, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::ssh::SshOptions;
use super::{quote, LaunchError};
use crate::release::install::Tarball;

/// The receiving end, run as `sh -c RECEIVE skitter-receive DIR VSN SHA256 SIZE`.
/// Needs a POSIX shell, tar and gzip, and one of sha256sum, shasum or openssl.
pub const RECEIVE: &str = r#"dir=$1 vsn=$2 sum=$3 size=$4
rel="$dir/releases"
[ ! -f "$rel/start_data" ] || { echo "$dir is a release itself (it has releases/start_data): give --working-dir a directory of its own" >&2; exit 6; }
mkdir -p "$rel" || exit 3
me="$(uname -n 2>/dev/null).$$"
[ -f "$dir/current" ] || { printf '%s\n' "$vsn" > "$dir/.current.$me" && mv -f "$dir/.current.$me" "$dir/current"; } || exit 3
if [ -f "$rel/$vsn/.sha256" ] && [ "$(cat "$rel/$vsn/.sha256")" = "$sum" ]; then echo have; exit 0; fi
tmp="$rel/.incoming.$vsn.$me"
rm -rf "$tmp"
mkdir "$tmp" || exit 3
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM PIPE
echo need
cat > "$tmp/release.tar.gz" || { echo "cannot write the release to $rel" >&2; exit 3; }
got=$(wc -c < "$tmp/release.tar.gz" | tr -d ' ')
[ "$got" = "$size" ] || { echo "received $got of $size bytes" >&2; exit 4; }
if command -v sha256sum >/dev/null 2>&1; then got=$(sha256sum "$tmp/release.tar.gz")
elif command -v shasum >/dev/null 2>&1; then got=$(shasum -a 256 "$tmp/release.tar.gz")
elif command -v openssl >/dev/null 2>&1; then got=$(openssl dgst -sha256 -r "$tmp/release.tar.gz")
else echo "no sha256sum, shasum or openssl on the host to check the release with" >&2; exit 5; fi
got=${got%% *}
[ "$got" = "$sum" ] || { echo "checksum mismatch: sent $sum, received $got" >&2; exit 4; }
mkdir "$tmp/r" || exit 3
(cd "$tmp/r" && gzip -dc ../release.tar.gz | tar xf -) || { echo "cannot unpack the release into $rel" >&2; exit 3; }
[ -x "$tmp/r/bin/skitter" ] || { echo "the unpacked release has no bin/skitter" >&2; exit 4; }
printf '%s\n' "$sum" > "$tmp/r/.sha256" || { echo "cannot write to $rel" >&2; exit 3; }
lock="$rel/.lock.$vsn"
until mkdir "$lock" 2>/dev/null; do
  [ -z "$(find "$lock" -maxdepth 0 -mmin +2 2>/dev/null)" ] || rmdir "$lock" 2>/dev/null
  sleep 0.1 2>/dev/null || sleep 1
done
trap 'rm -rf "$tmp"; rmdir "$lock" 2>/dev/null' EXIT
if [ -f "$rel/$vsn/.sha256" ] && [ "$(cat "$rel/$vsn/.sha256")" = "$sum" ]; then echo installed; exit 0; fi
if [ -e "$rel/$vsn" ]; then mv "$rel/$vsn" "$rel/.replaced.$vsn.$me" && touch "$rel/.replaced.$vsn.$me" || exit 3; fi
mv "$tmp/r" "$rel/$vsn" || exit 3
find "$rel" -maxdepth 1 -name '.incoming.*' -mmin +60 -exec rm -rf {} + 2>/dev/null
find "$rel" -maxdepth 1 -name '.replaced.*' -mtime +7 -exec rm -rf {} + 2>/dev/null
echo installed
"#;

/// What shipping to one host did.
#[derive(Debug, Clone)]
pub struct Shipped {
    /// Bytes copied; `None` when the host had the release already.
    pub copied: Option<u64>,
    pub took: Duration,
}

/// The remote command line that runs [`RECEIVE`].
pub fn receive_line(dir: &str, tarball: &Tarball) -> String {
    format!(
        "sh -c {} skitter-receive {} {} {} {}",
        quote(RECEIVE),
        quote(dir),
        quote(&tarball.version),
        tarball.sha256,
        tarball.bytes.len()
    )
}

/// Ships `tarball` into `dir` on `host`, over `session` (connected to it);
/// returns the session it used (a new one if that one had closed).
pub async fn ship(
    host: &str,
    session: Arc<Session>,
    opts: &SshOptions,
    dir: &str,
    tarball: &Tarball,
) -> Result<(Arc<Session>, Shipped), LaunchError> {
    let started = Instant::now();
    let failed = |what: String| LaunchError::ShipFailed(what);
    // The control connection exits a second after it is idle: should that
    // happen before our channel opens (a loaded host), connect again.
    let mut open = Some(session);
    let mut attempt = 0;
    let (session, mut child) = loop {
        attempt += 1;
        let session = match open.take() {
            Some(s) => s,
            None => super::ssh::connect(host, opts).await?,
        };
        let spawned = session
            .clone()
            .arc_raw_command(receive_line(dir, tarball))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await;
        match spawned {
            Ok(child) => break (session, child),
            Err(e) if attempt < 3 && started.elapsed() < opts.wait => tracing::warn!("{host}: {e}; connecting again"),
            Err(e) => return Err(LaunchError::from_ssh(&e.to_string())),
        }
    };
    let mut stdin = child.stdin().take().ok_or_else(|| failed("no input channel".into()))?;
    let stdout = child.stdout().take().ok_or_else(|| failed("no output channel".into()))?;
    let mut stderr = child.stderr().take().ok_or_else(|| failed("no error channel".into()))?;
    let said = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(stdout).lines();
    let answer = lines.next_line().await.map_err(|e| failed(e.to_string()))?;
    let copied = match answer.as_deref() {
        Some("have") => None,
        Some("need") => {
            // The write fails when the script stopped reading (a full disk):
            // its own words, on stderr, say why.
            let sent = async {
                for chunk in tarball.bytes.chunks(256 * 1024) {
                    stdin.write_all(chunk).await?;
                }
                stdin.flush().await?;
                stdin.shutdown().await
            }
            .await;
            drop(stdin);
            let done = lines.next_line().await.ok().flatten();
            if sent.is_err() || done.as_deref() != Some("installed") {
                let status = child.wait().await.ok();
                let words = said.await.unwrap_or_default();
                return Err(failed(reason(&words, status, sent.err())));
            }
            Some(tarball.bytes.len() as u64)
        }
        _ => {
            let status = child.wait().await.ok();
            return Err(failed(reason(&said.await.unwrap_or_default(), status, None)));
        }
    };
    let _ = child.wait().await;
    Ok((session, Shipped { copied, took: started.elapsed() }))
}

/// The last words of the script, else its exit status.
fn reason(stderr: &str, status: Option<std::process::ExitStatus>, write: Option<std::io::Error>) -> String {
    let said: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if !said.is_empty() {
        // The tool's own words (`cat: write error: No space left on device`), then the script's.
        return said[said.len().saturating_sub(3)..].join("; ");
    }
    match (status.and_then(|s| s.code()), write) {
        (Some(code), _) => format!("the receiving script exited with status {code}"),
        (None, Some(e)) => format!("the copy broke off: {e}"),
        (None, None) => "the connection closed during the copy".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn tarball(dir: &std::path::Path) -> Tarball {
        // The smallest release: what Tarball::open checks for.
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (name, text, mode) in [
            ("releases/start_data", "0.3.0\n", 0o644),
            ("releases/0.3.0/skitter.toml", "name = \"t\"\nversion = \"0.3.0\"\n", 0o644),
            ("bin/skitter", "#!/bin/sh\n", 0o755),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(mode);
            header.set_cksum();
            tar.append_data(&mut header, name, text.as_bytes()).unwrap();
        }
        let bytes = tar.into_inner().unwrap().finish().unwrap();
        let path = dir.join("t-0.3.0.tar.gz");
        std::fs::write(&path, bytes).unwrap();
        Tarball::open(&path).unwrap()
    }

    /// Runs the receiving script here, as a host would, feeding it `input`.
    fn receive(dir: &std::path::Path, t: &Tarball, sum: &str, input: &[u8]) -> (String, String) {
        use std::io::Write;
        let mut child = Command::new("sh")
            .args(["-c", RECEIVE, "skitter-receive", dir.to_str().unwrap(), &t.version, sum, &t.bytes.len().to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(input);
        let out = child.wait_with_output().unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    #[test]
    fn the_receiving_script_installs_once_and_refuses_a_damaged_copy() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tarball(tmp.path());
        let host = tmp.path().join("host");
        let (out, err) = receive(&host, &t, &t.sha256, &t.bytes);
        assert_eq!(out, "need\ninstalled\n", "{err}");
        assert!(host.join("releases/0.3.0/bin/skitter").is_file());
        assert_eq!(std::fs::read_to_string(host.join("current")).unwrap(), "0.3.0\n");
        assert_eq!(receive(&host, &t, &t.sha256, b"").0, "have\n");

        // A copy that arrives changed: refused, nothing left behind.
        let other = tmp.path().join("other");
        let mut damaged = t.bytes.to_vec();
        let n = damaged.len() / 2;
        damaged[n] ^= 0xff;
        let (out, err) = receive(&other, &t, &t.sha256, &damaged);
        assert_eq!(out, "need\n");
        assert!(err.contains("checksum mismatch"), "{err}");
        let left: Vec<_> = std::fs::read_dir(other.join("releases")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        // Cut short.
        let (_, err) = receive(&other, &t, &t.sha256, &t.bytes[..10]);
        assert!(err.contains(&format!("received 10 of {} bytes", t.bytes.len())), "{err}");
        // Never into a release built elsewhere (its releases/ holds configurations).
        let built = tmp.path().join("built");
        std::fs::create_dir_all(built.join("releases/0.3.0")).unwrap();
        std::fs::write(built.join("releases/start_data"), "0.3.0\n").unwrap();
        let (out, err) = receive(&built, &t, &t.sha256, &t.bytes);
        assert!(out.is_empty() && err.contains("is a release itself"), "{out} {err}");
        assert!(!built.join("releases/0.3.0/bin").exists());
    }

    /// Issue 25: hosts sharing one directory (NFS) install the same release
    /// at once. One install wins; the others keep it and discard their
    /// copies; the binary a worker runs is never moved once it is there;
    /// nothing is left behind.
    #[test]
    fn installs_racing_into_one_shared_directory_install_once_and_never_move_it() {
        use std::os::unix::fs::MetadataExt;
        use std::sync::atomic::{AtomicBool, Ordering};
        let tmp = tempfile::tempdir().unwrap();
        let t = Arc::new(tarball(tmp.path()));
        let shared = Arc::new(tmp.path().join("shared"));
        for round in 0..5 {
            let _ = std::fs::remove_dir_all(&*shared);
            let done = Arc::new(AtomicBool::new(false));
            let binary = shared.join("releases/0.3.0/bin/skitter");
            // A worker starting at any moment must find the binary once it was there.
            let watch = {
                let (done, binary) = (done.clone(), binary.clone());
                std::thread::spawn(move || {
                    let mut seen: Option<u64> = None;
                    while !done.load(Ordering::Relaxed) {
                        match (std::fs::metadata(&binary), seen) {
                            (Ok(m), None) => seen = Some(m.ino()),
                            (Ok(m), Some(ino)) => assert_eq!(m.ino(), ino, "the installed release was replaced"),
                            (Err(e), Some(_)) => panic!("the installed release went away: {e}"),
                            (Err(_), None) => {}
                        }
                    }
                })
            };
            let installs: Vec<_> = (0..6)
                .map(|_| {
                    let (t, shared) = (t.clone(), shared.clone());
                    std::thread::spawn(move || receive(&shared, &t, &t.sha256, &t.bytes))
                })
                .collect();
            for i in installs {
                let (out, err) = i.join().unwrap();
                assert!(out == "need\ninstalled\n" || out == "have\n", "round {round}: {out:?} {err}");
            }
            done.store(true, Ordering::Relaxed);
            watch.join().unwrap();
            assert!(binary.is_file());
            let mut left: Vec<String> = std::fs::read_dir(shared.join("releases"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            left.sort();
            assert_eq!(left, vec!["0.3.0"], "round {round}: only the release is left");
        }
    }
}
