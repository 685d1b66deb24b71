//! Where a workflow's instances sit: how many workers, which one this is,
//! how many slots each has, where a user's strategy placed its operator's
//! instances, and so which instances run here.

use std::collections::HashMap;
use std::sync::Arc;

use crate::workflow::Plan;

/// `workers` processes, this one is number `me`, each with `slots`
/// instances of every parallel stage, except stages a strategy placed
/// (`placed`: per stage, instances per worker). Sources and single
/// instances run on worker 0. Local mode is one worker.
#[derive(Clone, Debug)]
pub struct Layout {
    pub workers: usize,
    pub me: usize,
    pub slots: usize,
    pub placed: Arc<HashMap<usize, Vec<usize>>>,
}

impl Layout {
    pub fn new(workers: usize, me: usize, slots: usize) -> Layout {
        Layout { workers, me, slots: slots.max(1), placed: Arc::default() }
    }

    pub fn local(slots: usize) -> Layout {
        Layout::new(1, 0, slots)
    }

    /// This layout with the stages that strategies placed.
    pub fn with_placement(mut self, placed: HashMap<usize, Vec<usize>>) -> Layout {
        self.placed = Arc::new(placed);
        self
    }

    /// Instances of stage `s` in the whole cluster.
    pub fn instances(&self, plan: &Plan, s: usize) -> usize {
        match self.placed.get(&s) {
            Some(counts) => counts.iter().sum(),
            None if plan.stages[s].parallel => self.workers * self.slots,
            None => 1,
        }
    }

    /// The worker running instance `g` of stage `s`.
    pub fn worker_of(&self, plan: &Plan, s: usize, g: usize) -> usize {
        match self.placed.get(&s) {
            Some(counts) => {
                let mut first = 0;
                for (w, &n) in counts.iter().enumerate() {
                    if g < first + n {
                        return w;
                    }
                    first += n;
                }
                counts.len().saturating_sub(1)
            }
            None if plan.stages[s].parallel => g / self.slots,
            None => 0,
        }
    }

    /// Where each flat node of `plan` runs: the instances of its stage on
    /// each worker (by index, in worker order; workers with none left out).
    pub fn spread(&self, plan: &Plan) -> Vec<Vec<(usize, usize)>> {
        plan.stage_of
            .iter()
            .map(|&s| {
                let mut per = vec![0usize; self.workers.max(1)];
                for g in 0..self.instances(plan, s) {
                    if let Some(n) = per.get_mut(self.worker_of(plan, s, g)) {
                        *n += 1;
                    }
                }
                per.into_iter().enumerate().filter(|&(_, n)| n > 0).collect()
            })
            .collect()
    }

    /// The instances of stage `s` that run here.
    pub fn local_instances(&self, plan: &Plan, s: usize) -> std::ops::Range<usize> {
        if let Some(counts) = self.placed.get(&s) {
            let first: usize = counts.iter().take(self.me).sum();
            return first..first + counts.get(self.me).copied().unwrap_or(0);
        }
        match (plan.stages[s].parallel, self.me) {
            (true, me) => me * self.slots..(me + 1) * self.slots,
            (false, 0) => 0..1,
            (false, _) => 0..0,
        }
    }
}
