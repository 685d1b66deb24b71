//! Where a workflow's instances sit: how many workers, which one this is,
//! how many slots each has, and so which instances run here.

use crate::workflow::Plan;

/// `workers` processes, this one is number `me`, each with `slots`
/// instances of every parallel stage. Sources run on worker 0. Local mode
/// is one worker.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub workers: usize,
    pub me: usize,
    pub slots: usize,
}

impl Layout {
    pub fn local(slots: usize) -> Layout {
        Layout { workers: 1, me: 0, slots: slots.max(1) }
    }

    /// Instances of stage `s` in the whole cluster.
    pub fn instances(&self, plan: &Plan, s: usize) -> usize {
        if plan.stages[s].parallel {
            self.workers * self.slots
        } else {
            1
        }
    }

    /// The worker running instance `g` of stage `s`.
    pub fn worker_of(&self, plan: &Plan, s: usize, g: usize) -> usize {
        if plan.stages[s].parallel {
            g / self.slots
        } else {
            0
        }
    }

    /// The instances of stage `s` that run here.
    pub fn local_instances(&self, plan: &Plan, s: usize) -> std::ops::Range<usize> {
        match (plan.stages[s].parallel, self.me) {
            (true, me) => me * self.slots..(me + 1) * self.slots,
            (false, 0) => 0..1,
            (false, _) => 0..0,
        }
    }
}
