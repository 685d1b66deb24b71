//! Limits on what script code may do, for consoles, `rpc`, `eval` and
//! operator code alike, so that no entry can take a node down; past one,
//! the evaluation fails naming the limit and how to change it.
//!
//! - The node's memory: an evaluation that finds the process's resident
//!   memory past `max_memory_mb` (default: three quarters of the host's) is
//!   stopped. Checked every few thousand operations, from the memory the
//!   kernel counts, it costs nothing measurable and catches every way of
//!   growing (strings, arrays, maps, closures).
//! - Call depth (default 128).
//! - Optionally, Rhai's own limits on one value: the bytes of its strings,
//!   the elements of its arrays, the entries of its maps. Off by default:
//!   Rhai checks them by walking the value after every change, which makes
//!   building an array of n elements cost n² (100,000 pushes: 7 s).

use std::sync::RwLock;

use serde::Deserialize;

/// The `[limits]` of `skitter.toml`; SKITTER_MAX_STRING_MB, SKITTER_MAX_ARRAY,
/// SKITTER_MAX_MAP and SKITTER_MAX_CALL_DEPTH override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptLimits {
    /// The node's resident memory past which evaluations stop, in MiB
    /// (0: three quarters of the host's memory).
    pub max_memory_mb: usize,
    /// How deeply functions may call functions.
    pub max_call_depth: usize,
    /// Bytes of strings in one value (a string, or all strings in an array or map), in MiB; 0: no limit.
    pub max_string_mb: usize,
    /// Elements of one array (nested arrays count their elements too); 0: no limit.
    pub max_array: usize,
    /// Entries of one map (nested maps count theirs too); 0: no limit.
    pub max_map: usize,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        ScriptLimits { max_memory_mb: 0, max_call_depth: 128, max_string_mb: 0, max_array: 0, max_map: 0 }
    }
}

static CURRENT: RwLock<Option<ScriptLimits>> = RwLock::new(None);

/// The limits engines of this process are built with.
pub fn current() -> ScriptLimits {
    CURRENT.read().expect("limits lock").unwrap_or_default()
}

/// Sets this process's limits (resolved from the app and the environment).
pub fn set(limits: ScriptLimits) {
    *CURRENT.write().expect("limits lock") = Some(limits);
}

impl ScriptLimits {
    /// These limits with the environment's overrides; a value that is not
    /// a positive number is an error naming the variable.
    pub fn with_env(mut self) -> Result<ScriptLimits, String> {
        for (var, field) in [
            ("SKITTER_MAX_MEMORY_MB", &mut self.max_memory_mb),
            ("SKITTER_MAX_CALL_DEPTH", &mut self.max_call_depth),
            ("SKITTER_MAX_STRING_MB", &mut self.max_string_mb),
            ("SKITTER_MAX_ARRAY", &mut self.max_array),
            ("SKITTER_MAX_MAP", &mut self.max_map),
        ] {
            if let Ok(v) = std::env::var(var) {
                *field = v.trim().parse().map_err(|_| format!("{var}={v:?}: give a number"))?;
            }
        }
        if self.max_call_depth == 0 {
            return Err("max_call_depth must be at least 1".into());
        }
        Ok(self)
    }

    pub fn apply(&self, engine: &mut rhai::Engine) {
        engine.set_max_string_size(self.max_string_mb.saturating_mul(1 << 20));
        engine.set_max_array_size(self.max_array);
        engine.set_max_map_size(self.max_map);
        engine.set_max_call_levels(self.max_call_depth);
    }

    /// The memory limit in bytes.
    pub fn memory_bytes(&self) -> u64 {
        match self.max_memory_mb {
            0 => host_memory().map(|m| m / 4 * 3).unwrap_or(u64::MAX),
            mb => (mb as u64) << 20,
        }
    }
}

/// How many operations pass between two looks at the node's memory.
pub const MEMORY_CHECK_EVERY: u64 = 65536;

/// The message an evaluation stopped for memory ends with.
pub fn over_memory_message(limit: u64) -> String {
    format!("stopped: {OVER_MEMORY} of {} MiB ([limits] max_memory_mb in skitter.toml, or SKITTER_MAX_MEMORY_MB)", limit >> 20)
}

pub const OVER_MEMORY: &str = "the node's memory passed its limit";

/// Hands the memory this thread freed back to the system at once (the
/// allocator would keep it a while), so that the node is below its limit
/// again after an evaluation stopped for passing it.
pub fn give_back_memory() {
    // SAFETY: mi_collect has no preconditions; it only frees what is unused.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// This process's resident memory, in bytes.
pub fn resident() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf with a constant name has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(4096) as u64)
}

fn host_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The hint added to an error past a limit.
pub fn hint(message: &str) -> Option<&'static str> {
    if message.contains("Length of string") {
        Some("a value's strings passed the limit ([limits] max_string_mb in skitter.toml, or SKITTER_MAX_STRING_MB)")
    } else if message.contains("Size of array") {
        Some("an array passed the limit ([limits] max_array in skitter.toml, or SKITTER_MAX_ARRAY)")
    } else if message.contains("Size of object map") {
        Some("a map passed the limit ([limits] max_map in skitter.toml, or SKITTER_MAX_MAP)")
    } else if message.contains("Too many levels of function calls") || message.contains("Stack overflow") {
        Some("calls nested past the limit ([limits] max_call_depth in skitter.toml, or SKITTER_MAX_CALL_DEPTH)")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(limits: ScriptLimits) -> rhai::Engine {
        let mut e = rhai::Engine::new();
        limits.apply(&mut e);
        e
    }

    #[test]
    fn the_data_limits_are_refused_with_their_names() {
        let limits = ScriptLimits { max_string_mb: 1, ..ScriptLimits::default() };
        let err = engine(limits).run(r#"let s = "x"; s.pad(1000, "y"); let a = []; loop { a.push(s + a.len()) }"#).unwrap_err();
        assert!(hint(&err.to_string()).is_some_and(|h| h.contains("max_string_mb")), "{err}");
        let deep = engine(ScriptLimits { max_call_depth: 20, ..ScriptLimits::default() }).run("fn f(n) { f(n + 1) } f(0)").unwrap_err();
        assert!(hint(&deep.to_string()).is_some_and(|h| h.contains("max_call_depth")), "{deep}");
        let wide = engine(ScriptLimits { max_array: 1000, ..ScriptLimits::default() }).run("let a = []; loop { a.push(1) }").unwrap_err();
        assert!(hint(&wide.to_string()).is_some_and(|h| h.contains("max_array")), "{wide}");
    }
}
