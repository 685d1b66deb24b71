//! Records per second for the web view: each look at a workflow's counts is
//! kept a little while, and a rate is the change since the newest look at
//! least a second older (before there is one: the average since the
//! workflow started — a master's counts move in steps, with its workers'
//! reports, so a rate over less than a second says little). Every viewer's
//! looks serve every other viewer.

use std::collections::{BTreeMap, VecDeque};

/// How far back looks are kept, in seconds of the workflow's run.
const KEPT: f64 = 10.0;
/// The least time a rate is taken over.
const OVER: f64 = 1.0;

/// One look: when (seconds the workflow had run) and each node's records
/// in and out.
#[derive(Debug, Clone)]
struct Look {
    elapsed: f64,
    counts: Vec<(u64, u64)>,
}

#[derive(Debug, Default)]
pub struct Rates {
    looks: BTreeMap<u64, VecDeque<Look>>,
}

impl Rates {
    /// Each node's records in and out per second for workflow `id`, which
    /// has run `elapsed` seconds and counted `counts`; `running` false
    /// gives zeros (an ended workflow moves nothing).
    pub fn of(&mut self, id: u64, elapsed: f64, counts: &[(u64, u64)], running: bool) -> Vec<(f64, f64)> {
        if !running {
            self.looks.remove(&id);
            return vec![(0.0, 0.0); counts.len()];
        }
        let looks = self.looks.entry(id).or_default();
        // Another graph (a redeploy under the same id cannot happen, but a
        // mismatch must not index out of bounds): start over.
        if looks.front().is_some_and(|l| l.counts.len() != counts.len()) {
            looks.clear();
        }
        while looks.front().is_some_and(|l| l.elapsed < elapsed - KEPT) {
            looks.pop_front();
        }
        let base = looks.iter().rev().find(|l| l.elapsed <= elapsed - OVER).cloned();
        if looks.back().is_none_or(|l| l.elapsed < elapsed) {
            looks.push_back(Look { elapsed, counts: counts.to_vec() });
        }
        let base = base.filter(|b| b.elapsed < elapsed).unwrap_or(Look { elapsed: 0.0, counts: vec![(0, 0); counts.len()] });
        let seconds = elapsed - base.elapsed;
        if seconds <= 0.0 {
            return vec![(0.0, 0.0); counts.len()];
        }
        let per = |now: u64, then: u64| now.saturating_sub(then) as f64 / seconds;
        counts.iter().zip(&base.counts).map(|(&(i, o), &(bi, bo))| (per(i, bi), per(o, bo))).collect()
    }

    /// Forgets the workflows not in `alive`.
    pub fn keep(&mut self, alive: &[u64]) {
        self.looks.retain(|id, _| alive.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_the_change_over_at_least_a_second_and_the_average_before() {
        let mut r = Rates::default();
        // First look: the average since the start.
        assert_eq!(r.of(1, 2.0, &[(100, 50)], true), vec![(50.0, 25.0)]);
        // Half a second later: still the average (no look a second old).
        assert_eq!(r.of(1, 2.5, &[(150, 50)], true), vec![(60.0, 20.0)]);
        // A second after the first look: against it.
        assert_eq!(r.of(1, 3.0, &[(300, 50)], true), vec![(200.0, 0.0)]);
        // An ended workflow moves nothing, and its looks go.
        assert_eq!(r.of(1, 3.0, &[(300, 50)], false), vec![(0.0, 0.0)]);
        assert!(r.looks.is_empty());
    }

    #[test]
    fn old_looks_are_dropped() {
        let mut r = Rates::default();
        for t in 1..=30 {
            r.of(7, t as f64, &[(t * 10, 0)], true);
        }
        assert!(r.looks[&7].len() <= KEPT as usize + 1, "{}", r.looks[&7].len());
        r.keep(&[]);
        assert!(r.looks.is_empty());
    }
}
