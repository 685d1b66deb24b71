//! The shared secret. From `-c` (works, but shows in `ps`), SKITTER_COOKIE,
//! or a cookie file that only its owner may read; made on first use, like
//! Erlang's `~/.erlang.cookie`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CookieError {
    #[error("cookie file {path} can be read by others (mode {mode:o}): run `chmod 600 {path}`")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("cookie file {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("the cookie is empty")]
    Empty,
}

/// The default cookie file: `~/.skitter.cookie`.
pub fn default_file() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".skitter.cookie"))
}

/// Reads a cookie file, refusing one that group or others can read.
pub fn read_file(path: &Path) -> Result<String, CookieError> {
    let meta = std::fs::metadata(path).map_err(|e| CookieError::Unreadable { path: path.into(), reason: e.to_string() })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CookieError::Exposed { path: path.into(), mode });
    }
    let text = std::fs::read_to_string(path).map_err(|e| CookieError::Unreadable { path: path.into(), reason: e.to_string() })?;
    let cookie = text.trim().to_string();
    if cookie.is_empty() {
        return Err(CookieError::Empty);
    }
    Ok(cookie)
}

/// A new random cookie: 32 bytes, hex.
pub fn random() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the cookie file, creating it (mode 0600) with a random cookie when
/// it does not exist.
pub fn read_or_create(path: &Path) -> Result<String, CookieError> {
    if !path.exists() {
        let cookie = random();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| CookieError::Unreadable { path: path.into(), reason: format!("cannot create it: {e}") })?;
        file.write_all(cookie.as_bytes()).map_err(|e| CookieError::Unreadable { path: path.into(), reason: e.to_string() })?;
        return Ok(cookie);
    }
    read_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_readable_by_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cookie");
        let made = read_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read_file(&path).unwrap(), made);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(read_file(&path), Err(CookieError::Exposed { .. })));
    }
}
