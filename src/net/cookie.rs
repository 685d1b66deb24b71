//! The shared secret. From `-c` (works, but shows in `ps`), SKITTER_COOKIE,
//! or a cookie file that only its owner may read; made on first use, like
//! Erlang's `~/.erlang.cookie`. A cookie must be hard to guess: one
//! recorded handshake lets anyone test guesses offline, so a cookie of less
//! than [`MIN_BITS`] bits is refused, saying how to make one.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The fewest bits a cookie's text must be able to carry.
pub const MIN_BITS: f64 = 128.0;

/// How to make a strong cookie, for the messages that refuse a weak one.
pub const HOW_TO_MAKE: &str = "make one with `head -c 32 /dev/urandom | base64` (or delete ~/.skitter.cookie and skitter makes one)";

#[derive(Debug, thiserror::Error)]
pub enum CookieError {
    #[error("cookie file {path} can be read by others (mode {mode:o}): run `chmod 600 {path}`")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("cookie file {path} belongs to user {owner}, not to this user ({me}): a cookie file must be the user's own")]
    NotOwn { path: PathBuf, owner: u32, me: u32 },
    #[error("cookie file {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("the cookie is empty")]
    Empty,
    #[error("the cookie from {from} is too weak to keep strangers out (about {bits} bits, {MIN_BITS} needed): {HOW_TO_MAKE}")]
    Weak { from: String, bits: u32 },
}

/// A cookie that is strong enough. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie(String);

impl std::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cookie(<redacted>)")
    }
}

impl Cookie {
    /// `text` (trimmed) as a cookie; `from` names where it came from.
    pub fn new(text: &str, from: &str) -> Result<Cookie, CookieError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(CookieError::Empty);
        }
        let bits = strength(text);
        if bits < MIN_BITS {
            return Err(CookieError::Weak { from: from.into(), bits: bits as u32 });
        }
        Ok(Cookie(text.to_string()))
    }

    /// A new random cookie.
    pub fn random() -> Cookie {
        Cookie(random())
    }

    /// A strong cookie made of `name`, the same for the same name.
    #[cfg(test)]
    pub fn for_tests(name: &str) -> Cookie {
        Cookie::new(&format!("{name}-test-9f8e7d6c5b4a39281706f5e4d3c2b1a0"), "a test").expect("a strong cookie")
    }

    /// The text itself: to hand to a node this one starts (on its stdin or
    /// in its environment), never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The handshake's pre-shared key.
    pub fn psk(&self) -> Psk {
        let mut key = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(Some(b"skitter cookie"), self.0.as_bytes())
            .expand(b"skitter noise psk 1", &mut key)
            .expect("32 bytes is a valid HKDF length");
        Psk(key)
    }
}

/// The key the handshake proves; what an [`crate::net::handshake::Identity`]
/// keeps instead of the cookie. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk(pub(crate) [u8; 32]);

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Psk(<redacted>)")
    }
}

/// The bits a text could carry at most: its length times the bits of the
/// alphabet its characters come from (hex digits, or the classes it uses:
/// lower case, upper case, digits, others). A text of few distinct
/// characters (`aaaa…`, `abab…`) carries next to nothing, whatever its length.
pub fn strength(text: &str) -> f64 {
    let chars: Vec<char> = text.chars().collect();
    let mut distinct = chars.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 8 {
        return distinct.len() as f64 * 4.0;
    }
    let hex = chars.iter().all(char::is_ascii_hexdigit)
        && (chars.iter().all(|c| !c.is_ascii_uppercase()) || chars.iter().all(|c| !c.is_ascii_lowercase()));
    let alphabet = if hex {
        16
    } else {
        let has = |f: fn(&char) -> bool| chars.iter().any(f);
        let mut n = 0;
        if has(char::is_ascii_lowercase) {
            n += 26;
        }
        if has(char::is_ascii_uppercase) {
            n += 26;
        }
        if has(char::is_ascii_digit) {
            n += 10;
        }
        if has(|c| !c.is_ascii_alphanumeric()) {
            n += 33;
        }
        n
    };
    chars.len() as f64 * (alphabet as f64).log2()
}

/// SKITTER_COOKIE as this process started with it.
static ENVIRONMENT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Takes SKITTER_COOKIE out of this process's environment, keeping it for
/// [`from_environment`]: no child (`sh`, `ssh` and what they run) inherits
/// it; a skitter node this one starts is handed it explicitly. Called first
/// thing in `main`, while the process has one thread.
pub fn take_from_environment() {
    from_environment();
}

/// SKITTER_COOKIE as this process started with it. Set but not UTF-8 is
/// still set: never a silent fall back to the cookie file (a node of the
/// wrong cluster); the text it gives is refused as weak or as a wrong
/// cookie, loudly.
pub fn from_environment() -> Option<&'static str> {
    crate::settings::take_var(&ENVIRONMENT, "SKITTER_COOKIE")
}

/// The default cookie file: `~/.skitter.cookie`.
pub fn default_file() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".skitter.cookie"))
}

/// Reads a cookie file, refusing one that group or others can read, or
/// that is not this user's. The checks are on the file opened (not
/// followed through a link), so it cannot be swapped between them and the read.
pub fn read_file(path: &Path) -> Result<Cookie, CookieError> {
    let unreadable = |e: std::io::Error| CookieError::Unreadable { path: path.into(), reason: e.to_string() };
    let mut file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => {
                CookieError::Unreadable { path: path.into(), reason: "it is a symbolic link; give the file itself".into() }
            }
            _ => unreadable(e),
        })?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(CookieError::Unreadable { path: path.into(), reason: "not a regular file".into() });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CookieError::Exposed { path: path.into(), mode });
    }
    // SAFETY: getuid cannot fail and touches no memory.
    let me = unsafe { libc::getuid() };
    if meta.uid() != me {
        return Err(CookieError::NotOwn { path: path.into(), owner: meta.uid(), me });
    }
    let mut text = String::new();
    Read::by_ref(&mut file).take(64 * 1024).read_to_string(&mut text).map_err(unreadable)?;
    Cookie::new(&text, &format!("cookie file {}", path.display()))
}

/// A new random cookie: 32 bytes, hex.
pub fn random() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the cookie file, creating it (mode 0600) with a random cookie when
/// it does not exist.
pub fn read_or_create(path: &Path) -> Result<Cookie, CookieError> {
    if !path.exists() {
        let cookie = random();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| CookieError::Unreadable { path: path.into(), reason: format!("cannot create it: {e}") })?;
        file.write_all(cookie.as_bytes()).map_err(|e| CookieError::Unreadable { path: path.into(), reason: e.to_string() })?;
        return Ok(Cookie(cookie));
    }
    read_file(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

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

    #[test]
    fn a_link_to_a_cookie_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cookie");
        read_or_create(&path).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let e = read_file(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[test]
    fn weak_cookies_are_refused_saying_how_to_make_one() {
        for weak in ["secret", "test-cookie-5f1b", "correct horse", &"a".repeat(100), &"ab".repeat(50), "0123456789abcdef0123456789abcde"] {
            let e = Cookie::new(weak, "-c").unwrap_err().to_string();
            assert!(e.contains("the cookie from -c is too weak") && e.contains("head -c 32 /dev/urandom | base64"), "{weak}: {e}");
        }
        assert!(matches!(Cookie::new("  ", "-c"), Err(CookieError::Empty)));
        // What skitter makes, and what the advice makes: 256 bits.
        for _ in 0..100 {
            assert!(Cookie::new(&random(), "a file").is_ok());
        }
        for strong in ["0123456789abcdef0123456789abcdef", "q8Z2mV7xK1pR4tY6wB9nC3dF5g", "lK3+9aZ/qWe7Rty1Ui0oPAsD4fGh6jKl8zXc2vBn5mM="] {
            assert!(Cookie::new(strong, "-c").is_ok(), "{strong}");
        }
        // Trimmed, like the other sources.
        assert_eq!(Cookie::new(" 0123456789abcdef0123456789abcdef\n", "-c").unwrap().expose(), "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn a_cookie_never_shows_in_debug_output() {
        let c = Cookie::new("0123456789abcdef0123456789abcdef", "-c").unwrap();
        assert_eq!(format!("{c:?} {:?}", c.psk()), "Cookie(<redacted>) Psk(<redacted>)");
    }

    /// The pre-shared key is HKDF-SHA256 (salt "skitter cookie", info
    /// "skitter noise psk 1") of the cookie: a vector computed apart from
    /// this code (Python's hmac), so that a change of derivation, which
    /// splits a cluster of two versions, cannot pass unnoticed.
    #[test]
    fn the_key_derivation_has_a_known_answer() {
        let psk = Cookie::new("0123456789abcdef0123456789abcdef", "-c").unwrap().psk();
        let hex: String = psk.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "def9662931b269f41190e0ca426e1f526031d21a6f0a0853e562e9e72a3f51a5");
    }
}
