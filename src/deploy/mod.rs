//! Starting workers on other hosts: worker specs, the [`Launcher`] trait and
//! the ssh launcher. A launched worker reads its cookie from its standard
//! input and exits when that input ends, so a worker never outlives the
//! channel (and the deploy) that started it.
//!
//! May use `release` (the tarballs it ships), `runtime` (the master it drives, the `Upgrader` trait
//! it implements) and the layers below.

pub mod fleet;
pub mod ship;
pub mod ssh;
pub mod upgrade;

use std::fmt;

/// `[name@]host[:tag1,tag2]`, or `ssh://[user@]host[:port]` for the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSpec {
    /// The worker's node name (never the ssh user).
    pub name: String,
    /// The ssh destination: a host, an alias of the ssh config, or an ssh:// URL.
    pub host: String,
    pub tags: Vec<String>,
}

impl fmt::Display for WorkerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)
    }
}

impl WorkerSpec {
    pub fn parse(spec: &str) -> Result<WorkerSpec, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("an empty worker spec".into());
        }
        if let Some(rest) = spec.strip_prefix("ssh://") {
            // Tags after the URL: ssh://user@host:22:gpu,big is ambiguous, so
            // tags follow a `#`: ssh://user@host:22#gpu,big.
            let (url, tags) = match rest.split_once('#') {
                Some((u, t)) => (u, t),
                None => (rest, ""),
            };
            let host_part = url.rsplit_once('@').map(|(_, h)| h).unwrap_or(url);
            let host = host_part.split(':').next().unwrap_or(host_part);
            return Ok(WorkerSpec { name: format!("skitter_worker@{host}"), host: format!("ssh://{url}"), tags: split_tags(tags) });
        }
        let (name, rest) = match spec.split_once('@') {
            Some((n, r)) if !n.is_empty() => (Some(n), r),
            Some(_) => return Err(format!("`{spec}`: the node name before `@` is empty")),
            None => (None, spec),
        };
        let (host, tags) = match rest.split_once(':') {
            Some((h, t)) => (h, t),
            None => (rest, ""),
        };
        if host.is_empty() {
            return Err(format!("`{spec}`: no host"));
        }
        let name = match name {
            Some(n) if n.contains('@') => n.to_string(),
            Some(n) => format!("{n}@{host}"),
            None => format!("skitter_worker@{host}"),
        };
        Ok(WorkerSpec { name, host: host.to_string(), tags: split_tags(tags) })
    }
}

fn split_tags(tags: &str) -> Vec<String> {
    tags.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// Why a host did not get a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaunchError {
    Refused(String),
    TimedOut(String),
    NameNotResolved(String),
    AuthenticationFailed(String),
    /// The host's key is not known (and accepting new keys was not asked for) or does not match.
    HostKeyUnknown(String),
    CommandFailed(String),
    NotReady(String),
    /// Copying or unpacking the release on the host failed.
    ShipFailed(String),
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::Refused(d) => write!(f, "refused: {d}"),
            LaunchError::TimedOut(d) => write!(f, "timed out: {d}"),
            LaunchError::NameNotResolved(d) => write!(f, "name not resolved: {d}"),
            LaunchError::AuthenticationFailed(d) => write!(f, "authentication failed: {d}"),
            LaunchError::HostKeyUnknown(d) => write!(
                f,
                "host key verification failed: {d} (add the host's key to known_hosts, or pass --accept-new-host-keys to trust a key seen for the first time)"
            ),
            LaunchError::CommandFailed(d) => write!(f, "command failed: {d}"),
            LaunchError::NotReady(d) => write!(f, "not ready: {d}"),
            LaunchError::ShipFailed(d) => write!(f, "copying the release failed: {d}"),
        }
    }
}

impl LaunchError {
    /// Sorts an ssh error message into a reason.
    pub fn from_ssh(message: &str) -> LaunchError {
        let m = message.to_lowercase();
        let detail = message.trim().lines().last().unwrap_or_default().to_string();
        if m.contains("could not resolve") || m.contains("name or service not known") || m.contains("no address associated") {
            LaunchError::NameNotResolved(detail)
        } else if m.contains("connection refused") {
            LaunchError::Refused(detail)
        } else if m.contains("timed out") || m.contains("timeout") {
            LaunchError::TimedOut(detail)
        } else if m.contains("host key verification failed") || m.contains("no matching host key") || m.contains("host key for") {
            LaunchError::HostKeyUnknown(detail)
        } else if m.contains("permission denied") || m.contains("authentication") {
            LaunchError::AuthenticationFailed(detail)
        } else {
            LaunchError::CommandFailed(detail)
        }
    }
}

/// Shell quoting for a remote command line.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(WorkerSpec::parse("h1").unwrap(), WorkerSpec { name: "skitter_worker@h1".into(), host: "h1".into(), tags: vec![] });
        assert_eq!(
            WorkerSpec::parse("w1@h1:gpu,big").unwrap(),
            WorkerSpec { name: "w1@h1".into(), host: "h1".into(), tags: vec!["gpu".into(), "big".into()] }
        );
        assert_eq!(WorkerSpec::parse("ssh://me@10.0.0.1:2222#gpu").unwrap().host, "ssh://me@10.0.0.1:2222");
        assert!(WorkerSpec::parse("@h1").is_err());
        assert!(WorkerSpec::parse("w@").is_err());
    }

    #[test]
    fn errors_are_sorted() {
        assert!(matches!(LaunchError::from_ssh("ssh: connect to host x port 22: Connection refused"), LaunchError::Refused(_)));
        assert!(matches!(
            LaunchError::from_ssh("ssh: Could not resolve hostname nope: Name or service not known"),
            LaunchError::NameNotResolved(_)
        ));
        assert!(matches!(LaunchError::from_ssh("Connection timed out during banner exchange"), LaunchError::TimedOut(_)));
        assert!(matches!(LaunchError::from_ssh("root@x: Permission denied (publickey)."), LaunchError::AuthenticationFailed(_)));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
