//! Settings and constants that several layers share — the tick time, the
//! stop and batch deadlines, the script limits, what this node runs with —
//! and the one way durations are written in messages. The bottom of the
//! house: it uses no other module of skitter's, so `net`, `script` and
//! `runtime` all may use it.

pub mod checkpoint;
pub mod deadline;
pub mod limits;
pub mod node;
pub mod restart;
pub mod tick;

use std::time::Duration;

/// How long `stop` lets a workflow drain before it aborts it.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// Environment variable `name` as this process started with it, taken out
/// of the environment the first time it is asked for and kept in `slot`:
/// no child (`sh`, `ssh` and what they run) inherits it. For secrets;
/// asked for first thing in `main`, while the process has one thread. Set
/// but not UTF-8 is still set (as given, lossily), never a silent unset.
pub fn take_var(slot: &'static std::sync::OnceLock<Option<String>>, name: &str) -> Option<&'static str> {
    slot.get_or_init(|| {
        let value = std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        std::env::remove_var(name);
        value
    })
    .as_deref()
}

/// A duration as people write it in messages: `1 s`, `2.5 s`, `300 ms`.
pub fn seconds(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_people_write_them() {
        use std::time::Duration;
        assert_eq!(super::seconds(Duration::from_millis(300)), "300 ms");
        assert_eq!(super::seconds(Duration::from_secs(10)), "10 s");
        assert_eq!(super::seconds(Duration::from_millis(2500)), "2.5 s");
    }
}
