//! What a workflow's recoveries did: how often it ran again from its last
//! checkpoint, why the last time, how long that took, and what a fenced
//! run (one that was given up, whose worker came back) sent late.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryStats {
    /// Runs started again from a checkpoint.
    pub restarts: u64,
    /// Why the last run failed.
    pub last_reason: Option<String>,
    /// From the last failure to the new run's instances deployed.
    pub last_recovery_ms: Option<u64>,
    /// The checkpoint the last restart resumed from.
    pub last_checkpoint: Option<u64>,
    /// Messages of runs given up that arrived late and were refused.
    pub fenced: u64,
    /// Records read again, in all restarts: what the failed runs read
    /// after the checkpoint the next run resumed from (about: counted from
    /// when its barriers left the sources).
    pub replayed: u64,
}

impl RecoveryStats {
    /// One line for `top()`, once it has recovered or fenced anything.
    pub fn summary(&self) -> Option<String> {
        if self.restarts == 0 && self.fenced == 0 {
            return None;
        }
        let mut line = format!("recovered {} time(s)", self.restarts);
        if let (Some(ms), Some(reason)) = (self.last_recovery_ms, &self.last_reason) {
            line += &format!(", last in {ms} ms after: {reason}");
        }
        if self.replayed > 0 {
            line += &format!("; {} record(s) read again", self.replayed);
        }
        if self.fenced > 0 {
            line += &format!("; {} late message(s) of old runs refused", self.fenced);
        }
        Some(line)
    }

    /// As scripts see it: `#{restarts, last_reason, last_recovery_ms, last_checkpoint, fenced, replayed}`.
    pub fn to_map(&self) -> rhai::Map {
        let int = |n: u64| rhai::Dynamic::from_int(n as i64);
        let mut m = rhai::Map::new();
        m.insert("restarts".into(), int(self.restarts));
        m.insert("last_reason".into(), self.last_reason.clone().map(rhai::Dynamic::from).unwrap_or(rhai::Dynamic::UNIT));
        m.insert("last_recovery_ms".into(), self.last_recovery_ms.map(int).unwrap_or(rhai::Dynamic::UNIT));
        m.insert("last_checkpoint".into(), self.last_checkpoint.map(int).unwrap_or(rhai::Dynamic::UNIT));
        m.insert("fenced".into(), int(self.fenced));
        m.insert("replayed".into(), int(self.replayed));
        m
    }
}
