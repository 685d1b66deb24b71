//! Releases installed side by side in a deploy directory, the layout
//! `skitter deploy --release` makes on every host (and here, for the
//! master):
//!
//! ```text
//! DIR/releases/<vsn>/          a whole release, unpacked from its tarball
//! DIR/releases/<vsn>/.sha256   the tarball's checksum, written last: the
//!                              release is complete once it is there
//! DIR/current                  the version that runs (or ran last)
//! DIR/tmp, DIR/logs            node records and logs, shared by the versions
//! ```
//!
//! A tarball is checked before it goes anywhere: read to its end (gzip's
//! checksum included), it must hold a release (`releases/start_data`,
//! `bin/skitter`, the app's configuration).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::script::app::CONFIG_FILE;
pub use crate::script::app::CURRENT_FILE;
/// A complete installed release's checksum file.
pub const CHECKSUM_FILE: &str = ".sha256";

#[derive(Debug, thiserror::Error)]
pub enum TarballError {
    #[error("cannot read the release tarball {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{path} is not a release tarball: {reason}")]
    NotRelease { path: PathBuf, reason: String },
    #[error("the release tarball {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot install {version} in {dir}: {reason}")]
    Install { dir: PathBuf, version: String, reason: String },
}

/// A release tarball, read and checked.
#[derive(Debug, Clone)]
pub struct Tarball {
    pub path: PathBuf,
    /// The app's name and version, as the release says.
    pub name: String,
    pub version: String,
    /// SHA-256 of the file, in hex.
    pub sha256: String,
    pub bytes: Arc<Vec<u8>>,
}

impl Tarball {
    /// Reads `path` whole and checks that it is a release.
    pub fn open(path: &Path) -> Result<Tarball, TarballError> {
        let bytes = std::fs::read(path).map_err(|e| TarballError::Io { path: path.to_path_buf(), reason: e.to_string() })?;
        let sha256 = hex(&Sha256::digest(&bytes));
        let corrupt = |reason: String| TarballError::Corrupt { path: path.to_path_buf(), reason };
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        let mut version = None;
        let mut configs = Vec::new();
        let mut has_binary = false;
        for entry in archive.entries().map_err(|e| corrupt(e.to_string()))? {
            let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
            let name = entry.path().map_err(|e| corrupt(e.to_string()))?.to_string_lossy().trim_start_matches("./").to_string();
            // Every entry is read to its end: a damaged one shows here.
            let mut text = Vec::new();
            entry.read_to_end(&mut text).map_err(|e| corrupt(format!("{name}: {e}")))?;
            if name == crate::script::app::START_DATA {
                version = Some(String::from_utf8_lossy(&text).split_whitespace().last().unwrap_or_default().to_string());
            } else if name == "bin/skitter" {
                has_binary = true;
            } else if name.starts_with("releases/") && name.ends_with(&format!("/{CONFIG_FILE}")) {
                configs.push((name, text));
            }
        }
        let not_release = |reason: &str| TarballError::NotRelease { path: path.to_path_buf(), reason: reason.to_string() };
        let version = version.filter(|v| !v.is_empty()).ok_or_else(|| not_release("it has no releases/start_data"))?;
        if !has_binary {
            return Err(not_release("it has no bin/skitter"));
        }
        let config_name = format!("releases/{version}/{CONFIG_FILE}");
        let config = configs.iter().find(|(n, _)| *n == config_name).ok_or_else(|| not_release(&format!("it has no {config_name}")))?;
        let table: toml::Table =
            toml::from_str(&String::from_utf8_lossy(&config.1)).map_err(|e| not_release(&format!("{config_name}: {e}")))?;
        let name = table.get("name").and_then(|n| n.as_str()).ok_or_else(|| not_release(&format!("{config_name} names no app")))?;
        if !valid_part(name) || !valid_part(&version) {
            return Err(not_release("its app name or version has characters other than letters, digits, `.`, `_`, `-`, `+`"));
        }
        Ok(Tarball { path: path.to_path_buf(), name: name.to_string(), version, sha256, bytes: Arc::new(bytes) })
    }

    /// Installs the release in `dir` (see the module's layout) unless it is
    /// there already; returns its root.
    pub fn install(&self, dir: &Path) -> Result<PathBuf, TarballError> {
        let fail = |reason: String| TarballError::Install { dir: dir.to_path_buf(), version: self.version.clone(), reason };
        let releases = dir.join("releases");
        let root = releases.join(&self.version);
        if installed_checksum(&root).as_deref() == Some(self.sha256.as_str()) {
            return Ok(root);
        }
        std::fs::create_dir_all(&releases).map_err(|e| fail(format!("{}: {e}", releases.display())))?;
        let staging = releases.join(format!(".incoming.{}.{}", self.version, std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let unpacked = (|| {
            std::fs::create_dir_all(&staging)?;
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(self.bytes.as_slice()));
            archive.set_preserve_permissions(true);
            archive.unpack(&staging)?;
            std::fs::write(staging.join(CHECKSUM_FILE), format!("{}\n", self.sha256))?;
            if root.exists() {
                let old = releases.join(format!(".replaced.{}.{}", self.version, std::process::id()));
                std::fs::rename(&root, &old)?;
                let _ = std::fs::remove_dir_all(&old);
            }
            std::fs::rename(&staging, &root)
        })();
        if let Err(e) = unpacked {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(fail(e.to_string()));
        }
        Ok(root)
    }
}

/// Names and versions become paths and shell words: keep them plain.
fn valid_part(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The checksum of a complete installed release at `root`.
pub fn installed_checksum(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join(CHECKSUM_FILE)).ok().map(|s| s.trim().to_string())
}

/// The version `DIR/current` names.
pub fn current(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(CURRENT_FILE)).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Makes `version` the current one (written whole, then renamed).
pub fn set_current(dir: &Path, version: &str) -> std::io::Result<()> {
    let partial = dir.join(format!(".{CURRENT_FILE}.{}", std::process::id()));
    std::fs::write(&partial, format!("{version}\n"))?;
    std::fs::rename(&partial, dir.join(CURRENT_FILE))
}

/// The complete releases installed in `dir`, oldest version first.
pub fn versions(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir.join("releases"))
        .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    found.retain(|v| !v.starts_with('.') && installed_checksum(&dir.join("releases").join(v)).is_some());
    found.sort_by_key(|v| version_key(v));
    found
}

/// Orders versions by their numbers (0.10.0 after 0.9.0).
fn version_key(v: &str) -> Vec<(u64, String)> {
    v.split(['.', '-', '+']).map(|p| (p.parse().unwrap_or(u64::MAX), p.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_by_number() {
        let mut v = vec!["0.10.0", "0.9.1", "0.9.0", "1.0.0"];
        v.sort_by_key(|a| version_key(a));
        assert_eq!(v, ["0.9.0", "0.9.1", "0.10.0", "1.0.0"]);
    }

    #[test]
    fn a_tarball_that_is_not_gzip_or_is_cut_short_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.tar.gz");
        std::fs::write(&path, b"not a tarball").unwrap();
        assert!(matches!(Tarball::open(&path), Err(TarballError::Corrupt { .. })), "{:?}", Tarball::open(&path));
        // A real gzip stream of a tar without a release in it.
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_cksum();
        tar.append_data(&mut header, "hello.txt", &b"hi\n"[..]).unwrap();
        let bytes = tar.into_inner().unwrap().finish().unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let err = Tarball::open(&path).unwrap_err().to_string();
        assert!(err.contains("no releases/start_data"), "{err}");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(Tarball::open(&path), Err(TarballError::Corrupt { .. })));
    }
}
