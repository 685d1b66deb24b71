//! `skitter new PATH`: scaffolds an app with a working word count.

use std::path::{Path, PathBuf};

/// The files of a new app, relative to its root, with `{{name}}` to fill in.
const FILES: &[(&str, &str)] = &[
    ("skitter.toml", include_str!("templates/skitter.toml")),
    ("lib/{{name}}.rhai", include_str!("templates/lib.rhai")),
    ("priv/words.txt", include_str!("templates/words.txt")),
    (".skitter.rhai", include_str!("templates/skitter_shell.rhai")),
    ("README.md", include_str!("templates/README.md")),
    (".gitignore", include_str!("templates/gitignore")),
];

#[derive(Debug, thiserror::Error)]
pub enum NewError {
    #[error("{0} already exists and is not empty; choose another path")]
    Exists(PathBuf),
    #[error("cannot name an app after `{0}`: the last part of PATH must start with a letter and hold only letters, digits and `_`")]
    BadName(String),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The app name for a path: its last component.
pub fn app_name(path: &Path) -> Result<String, NewError> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(NewError::BadName(name))
    }
}

/// Writes a new app at `path`; returns the files written.
pub fn create(path: &Path) -> Result<Vec<PathBuf>, NewError> {
    let name = app_name(path)?;
    if path.exists() && std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(NewError::Exists(path.to_path_buf()));
    }
    let mut written = Vec::new();
    for (rel, text) in FILES {
        let file = path.join(rel.replace("{{name}}", &name));
        let io = |source| NewError::Io { path: file.clone(), source };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(&file, text.replace("{{name}}", &name)).map_err(io)?;
        written.push(file);
    }
    Ok(written)
}
