//! Node identity: `name@host`.

/// This machine's host name, as node names use it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

/// A full node name: `name` as given if it has a host, else `name@<hostname>`;
/// `default` (e.g. `skitter_local`) when no name is given.
pub fn node_name(name: Option<&str>, default: &str) -> String {
    let name = name.filter(|n| !n.is_empty()).unwrap_or(default);
    if name.contains('@') {
        name.to_string()
    } else {
        format!("{name}@{}", hostname())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_the_default_host() {
        assert_eq!(node_name(Some("a@b"), "x"), "a@b");
        assert!(node_name(None, "skitter_local").starts_with("skitter_local@"));
        assert!(node_name(Some("w1"), "x").starts_with("w1@"));
    }
}

/// The file a running node writes so that `pid`, `stop` (and later
/// `remote`) find it by name: `<tmp>/<node>.node` holding its address and
/// pid. Removed when the node exits.
pub struct NodeFile {
    path: std::path::PathBuf,
    /// The record of a live node of the same name this one replaced (an
    /// upgrade starts the new worker beside the old): put back if this
    /// node goes first.
    replaced: Option<String>,
}

/// What a node file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub addr: String,
    pub pid: u32,
}

pub fn node_file_path(tmp: &std::path::Path, node: &str) -> std::path::PathBuf {
    tmp.join(format!("{node}.node"))
}

impl NodeFile {
    pub fn write(tmp: &std::path::Path, node: &str, addr: &str) -> std::io::Result<NodeFile> {
        std::fs::create_dir_all(tmp)?;
        let path = node_file_path(tmp, node);
        let replaced =
            read_node_file(&path).filter(|r| r.pid != std::process::id() && alive(r.pid)).and_then(|_| std::fs::read_to_string(&path).ok());
        let partial = path.with_extension(format!("node.{}.partial", std::process::id()));
        std::fs::write(&partial, format!("{addr}\n{}\n", std::process::id()))?;
        std::fs::rename(&partial, &path)?;
        Ok(NodeFile { path, replaced })
    }
}

impl Drop for NodeFile {
    fn drop(&mut self) {
        // Only our own record: a newer node of the same name may have replaced it.
        if read_node_file(&self.path).is_some_and(|r| r.pid == std::process::id()) {
            let older = self.replaced.as_ref().filter(|text| {
                let mut lines = text.lines().skip(1);
                lines.next().and_then(|p| p.trim().parse().ok()).is_some_and(alive)
            });
            match older {
                Some(text) => {
                    let partial = self.path.with_extension(format!("node.{}.partial", std::process::id()));
                    if std::fs::write(&partial, text).and_then(|_| std::fs::rename(&partial, &self.path)).is_err() {
                        let _ = std::fs::remove_file(&self.path);
                    }
                }
                None => {
                    let _ = std::fs::remove_file(&self.path);
                }
            }
        }
    }
}

/// Reads a node file; `None` if it is missing or malformed.
pub fn read_node_file(path: &std::path::Path) -> Option<NodeRecord> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let addr = lines.next()?.trim().to_string();
    let pid = lines.next()?.trim().parse().ok()?;
    Some(NodeRecord { addr, pid })
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
