//! Which link may speak for which run. Every time a worker joins, its link
//! is a new incarnation of it; a run is placed on the incarnations there
//! are. A worker that comes back (from a partition, a stall, a lost link)
//! may still hold parts of a run placed on its old incarnation, ending
//! slowly in user code: what those send on its new link is late and is
//! refused, and the worker is told once to abort them. No I/O: the master
//! asks, and carries out the verdict.

use std::collections::{BTreeMap, BTreeSet};

/// What to do with a message of run `id` from a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It comes from the incarnation the run was placed on (or from a
    /// worker this master does not know to hold it: the master's other
    /// checks take it from there).
    Accept,
    /// Late, from a run placed on an earlier incarnation: refused. `first`:
    /// the first refused on this link for this run (tell it to abort).
    Refuse { first: bool },
}

#[derive(Debug, Default)]
pub struct Fence {
    /// Each worker's current incarnation: how many times it joined.
    joins: BTreeMap<String, u64>,
    /// Each run's workers, with the incarnation it was placed on.
    placed: BTreeMap<u64, BTreeMap<String, u64>>,
    /// (run, worker, incarnation) already refused once.
    refused: BTreeSet<(u64, String, u64)>,
}

impl Fence {
    /// Worker `name` joined (again): a new incarnation.
    pub fn joined(&mut self, name: &str) {
        *self.joins.entry(name.to_string()).or_default() += 1;
    }

    /// Run `id` was placed on `workers`, as they are now.
    pub fn deployed(&mut self, id: u64, workers: &[String]) {
        let on = workers.iter().map(|w| (w.clone(), self.joins.get(w).copied().unwrap_or(0))).collect();
        self.placed.insert(id, on);
    }

    /// A message of run `id` from `worker`, on its current link.
    pub fn heard(&mut self, id: u64, worker: &str) -> Verdict {
        let now = self.joins.get(worker).copied().unwrap_or(0);
        match self.placed.get(&id).and_then(|on| on.get(worker)) {
            Some(&placed) if placed != now => Verdict::Refuse { first: self.refused.insert((id, worker.to_string(), now)) },
            _ => Verdict::Accept,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_worker_back_on_a_new_link_is_refused_for_the_runs_of_its_old_one() {
        let mut f = Fence::default();
        f.joined("w1");
        f.joined("w2");
        f.deployed(7, &names(&["w1", "w2"]));
        assert_eq!(f.heard(7, "w1"), Verdict::Accept);
        f.joined("w1"); // lost, and back
        f.deployed(8, &names(&["w1", "w2"]));
        assert_eq!(f.heard(7, "w1"), Verdict::Refuse { first: true });
        assert_eq!(f.heard(7, "w1"), Verdict::Refuse { first: false });
        assert_eq!(f.heard(8, "w1"), Verdict::Accept);
        assert_eq!(f.heard(7, "w2"), Verdict::Accept, "w2 never left: its old run's late reports are its own");
        f.joined("w1"); // and again: told to abort once more
        assert_eq!(f.heard(7, "w1"), Verdict::Refuse { first: true });
        assert_eq!(f.heard(8, "w1"), Verdict::Refuse { first: true });
    }

    #[test]
    fn runs_and_workers_it_does_not_know_are_left_to_the_master() {
        let mut f = Fence::default();
        f.joined("w1");
        assert_eq!(f.heard(3, "w1"), Verdict::Accept);
        f.deployed(3, &names(&["w1"]));
        assert_eq!(f.heard(3, "w2"), Verdict::Accept, "not placed on w2: the coordinator refuses it");
    }
}
