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
