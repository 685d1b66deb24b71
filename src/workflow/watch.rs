//! Watching running workflows: what a node tells about each (`Watched`, also
//! sent to remote consoles), and the table `top()` draws from two looks —
//! rates are the change between them.

use serde::{Deserialize, Serialize};

use super::dot::{micros, per_second};
use super::stats::{NodeStats, Stats};

/// One workflow as a watcher sees it at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Watched {
    pub id: u64,
    pub status: String,
    /// Seconds it has run when this was taken (the node's clock).
    pub elapsed: f64,
    pub operators: Vec<(String, NodeStats)>,
    /// Its checkpoints, when they are on.
    pub checkpoints: Option<super::stats::CheckpointStats>,
    /// Its recoveries, when it can recover.
    pub recovery: Option<super::recovery::RecoveryStats>,
}

impl Watched {
    pub fn new(id: u64, status: String, stats: &Stats) -> Watched {
        let operators = stats.names().map(str::to_string).zip(stats.nodes.iter().cloned()).collect();
        Watched { id, status, elapsed: stats.elapsed, operators, checkpoints: stats.checkpoints.clone(), recovery: stats.recovery.clone() }
    }
}

/// Records per second between two looks at a workflow (or since it started).
fn rate(now: u64, before: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    now.saturating_sub(before) as f64 / seconds
}

/// The table of `now`, with rates since `before` (the previous look; for a
/// workflow not in it, since the workflow started). `title` heads it.
pub fn frame(title: &str, before: &[Watched], now: &[Watched]) -> String {
    let mut out = format!("{title}\n");
    if now.is_empty() {
        out.push_str("\nno workflow is running\n");
        return out;
    }
    for wf in now {
        let previous = before.iter().find(|b| b.id == wf.id);
        let since = previous.map(|p| p.elapsed).unwrap_or(0.0);
        let seconds = wf.elapsed - since;
        out.push_str(&format!("\n#WorkflowRef<{}>  {}  {:.0} s\n", wf.id, wf.status, wf.elapsed));
        if let Some(c) = &wf.checkpoints {
            out.push_str(&format!("  {}\n", c.summary()));
        }
        if let Some(line) = wf.recovery.as_ref().and_then(|r| r.summary()) {
            out.push_str(&format!("  {line}\n"));
        }
        out.push_str(&format!(
            "  {:<24} {:>9} {:>9} {:>12} {:>12} {:>7} {:>6} {:>9}\n",
            "OPERATOR", "IN/s", "OUT/s", "IN", "OUT", "QUEUE", "ERRORS", "P99"
        ));
        for (i, (name, s)) in wf.operators.iter().enumerate() {
            let old = previous.and_then(|p| p.operators.get(i)).map(|(_, o)| o);
            let (in0, out0) = old.map(|o| (o.records_in, o.records_out)).unwrap_or((0, 0));
            let queue = (s.queued * 100).checked_div(s.capacity).map(|p| format!("{p}%")).unwrap_or_else(|| "-".into());
            let p99 = s.p99_us().map(micros).unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "  {:<24} {:>9} {:>9} {:>12} {:>12} {:>7} {:>6} {:>9}\n",
                short(name, 24),
                per_second(rate(s.records_in, in0, seconds)),
                per_second(rate(s.records_out, out0, seconds)),
                s.records_in,
                s.records_out,
                queue,
                s.errors,
                p99
            ));
        }
        for (name, s) in &wf.operators {
            if let Some(behind) = s.lag() {
                let late = if s.late > 0 { format!(", {} late", s.late) } else { String::new() };
                out.push_str(&format!("  event time of {name}: {behind:.1} s behind the clock{late}\n"));
            }
        }
    }
    out
}

/// `name`, cut to `width` characters with an ellipsis.
fn short(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        return name.to_string();
    }
    let kept: String = name.chars().take(width - 1).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(elapsed: f64, records: u64) -> Watched {
        let s = NodeStats { records_in: records, records_out: records / 2, queued: 2, capacity: 8, ..Default::default() };
        Watched { id: 3, status: "running".into(), elapsed, operators: vec![("filter_2".into(), s)], checkpoints: None, recovery: None }
    }

    #[test]
    fn an_operator_on_event_time_shows_how_far_behind_the_clock_it_is_and_its_late_records() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let s = NodeStats { watermark_ms: Some(now - 90_000), late: 3, ..Default::default() };
        let w = Watched {
            id: 3,
            status: "running".into(),
            elapsed: 1.0,
            operators: vec![("per_minute".into(), s)],
            checkpoints: None,
            recovery: None,
        };
        let text = frame("top", &[], &[w]);
        let line = text.lines().find(|l| l.contains("event time of per_minute")).unwrap_or_default();
        assert!(line.contains(": 90.") && line.ends_with("s behind the clock, 3 late"), "{text}");
    }

    #[test]
    fn rates_are_the_change_between_looks() {
        let first = frame("top", &[], &[look(2.0, 2000)]);
        assert!(first.contains("#WorkflowRef<3>"), "{first}");
        // Since the start: 2000 records in 2 s.
        assert!(first.contains("filter_2") && first.contains(" 1000 ") && first.contains("25%"), "{first}");
        // Between looks: 3000 more in 1 s.
        let next = frame("top", &[look(2.0, 2000)], &[look(3.0, 5000)]);
        let row = next.lines().find(|l| l.contains("filter_2")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cells[1..5], &["3000", "1500", "5000", "2500"], "{row}");
    }

    #[test]
    fn checkpoints_show_under_their_workflow() {
        let mut w = look(2.0, 2000);
        w.checkpoints = Some(crate::workflow::stats::CheckpointStats {
            name: "orders".into(),
            completed: 7,
            last_id: Some(9),
            last_ms: 12,
            bytes: 4096,
            alignment_ms: 3,
            failed: 2,
            last_failure: Some("checkpoint 8: it did not complete within 60 s".into()),
            ..Default::default()
        });
        let text = frame("top", &[], &[w]);
        assert!(
            text.contains(
                "  checkpoints: 7 completed, last #9 took 12 ms (4 KiB, aligned in 3 ms); 2 failed, last: checkpoint 8: it did not complete within 60 s\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn nothing_running_says_so() {
        assert!(frame("top", &[], &[]).contains("no workflow is running"));
    }
}
