//! Shell history: one file per app in the user's state directory, appended
//! (and flushed) after every entry, so a killed shell loses nothing.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `$XDG_STATE_HOME/skitter/history/<app>.history`, else under
/// `~/.local/state`; `None` when neither is known.
pub fn path(app: Option<&str>) -> Option<PathBuf> {
    Some(crate::script::app::user_state_dir()?.join("history").join(format!("{}.history", app.unwrap_or("default"))))
}

/// One entry per line: newlines and backslashes escaped.
fn escape(entry: &str) -> String {
    entry.replace('\\', "\\\\").replace('\n', "\\n")
}

fn unescape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The entries saved so far, oldest first.
pub fn load(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|text| text.lines().map(unescape).collect()).unwrap_or_default()
}

/// Appends one entry and flushes it to disk.
pub fn append(path: &Path, entry: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(format!("{}\n", escape(entry)).as_bytes())?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h/x.history");
        append(&p, "fn f(x) {\n  x \\ 2\n}").unwrap();
        append(&p, "1 + 1").unwrap();
        assert_eq!(load(&p), vec!["fn f(x) {\n  x \\ 2\n}".to_string(), "1 + 1".to_string()]);
    }
}
