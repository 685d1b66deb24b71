//! How a failed workflow with checkpoints restarts from its last one:
//! at most `restart_attempts` times within `restart_within` seconds,
//! waiting `restart_delay` seconds before the first, twice that before the
//! next, and so on. Resolved once at start from SKITTER_RESTART_ATTEMPTS,
//! SKITTER_RESTART_DELAY, SKITTER_RESTART_WITHIN and skitter.toml; a
//! deploy may override them.

use std::sync::RwLock;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RestartPolicy {
    /// Zero: never restart.
    pub attempts: u32,
    pub within: Duration,
    pub delay: Duration,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy { attempts: 10, within: Duration::from_secs(600), delay: Duration::from_millis(200) }
    }
}

static CURRENT: RwLock<Option<RestartPolicy>> = RwLock::new(None);

pub fn set(policy: RestartPolicy) {
    *CURRENT.write().expect("restart settings lock") = Some(policy);
}

pub fn get() -> RestartPolicy {
    CURRENT.read().expect("restart settings lock").unwrap_or_default()
}

/// A number of attempts, as a setting gives it.
pub fn attempts(n: f64) -> Result<u32, String> {
    if !n.is_finite() || n < 0.0 || n.fract() != 0.0 || n > u32::MAX as f64 {
        return Err(format!("{n} restart attempts: give a whole number, 0 (never) or more"));
    }
    Ok(n as u32)
}

/// Seconds, as a setting gives them: `what` names the setting.
pub fn seconds(what: &str, s: f64) -> Result<Duration, String> {
    if !s.is_finite() || s < 0.0 {
        return Err(format!("{what} of {s} s: give a number of seconds, 0 or more"));
    }
    Ok(Duration::from_secs_f64(s))
}
