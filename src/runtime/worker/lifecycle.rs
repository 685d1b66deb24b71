//! A worker's life as a state machine with no I/O, in the manner of the
//! master's coordinator: whether it has a master, the parts of workflows it
//! runs and what becomes of their files, which workflows' data it refuses,
//! and how it leaves. The worker's driver feeds it events and carries out
//! the actions it returns; tests feed it events directly.

use std::collections::{BTreeMap, VecDeque};

/// How many ended workflows a worker remembers, to refuse their late data.
pub const TOMBSTONES: usize = 4096;

/// How a part of a workflow ended here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Finished, or stopped after draining: complete once every part is.
    Completed,
    Failed(String),
    /// Aborted; these operators were running.
    Aborted(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A master link is up.
    MasterJoined,
    MasterLost {
        reason: String,
    },
    PartStarted {
        id: u64,
    },
    PartEnded {
        id: u64,
        outcome: Outcome,
    },
    /// The master's word on a part's files.
    SettleOrdered {
        id: u64,
        commit: bool,
    },
    StopOrdered {
        id: u64,
    },
    AbortOrdered {
        id: u64,
        reason: String,
    },
    /// The worker was told to stop (SIGTERM, `worker stop`).
    LeaveRequested,
    /// Its parts did not drain within the stop deadline.
    LeaveTimedOut,
}

/// What the worker tells its master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// A part ended (sent behind the part's data).
    Ended {
        id: u64,
        outcome: Outcome,
    },
    /// Stop the workflows this worker runs: it is leaving.
    Leaving,
    Bye,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    ToMaster(Report),
    StopPart {
        id: u64,
        reason: Option<String>,
    },
    AbortPart {
        id: u64,
        reason: String,
    },
    FailPart {
        id: u64,
        reason: String,
    },
    /// Name the part's files (`commit`) or keep them as incomplete, and let
    /// the part go.
    Settle {
        id: u64,
        commit: bool,
    },
    /// Every part is settled and the master told: the worker may exit.
    Left,
}

/// What to do with data that arrives for a workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataVerdict {
    Deliver,
    /// Its deploy has not arrived yet.
    Wait,
    /// It ended here: refuse (close the link), never stall it.
    Refuse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Running,
    /// Ended complete; waiting for the master's word on its files.
    AwaitingSettle,
}

#[derive(Debug)]
pub struct Lifecycle {
    name: String,
    has_master: bool,
    parts: BTreeMap<u64, Part>,
    ended: VecDeque<u64>,
    leaving: bool,
    left: bool,
}

impl Lifecycle {
    pub fn new(name: &str) -> Lifecycle {
        Lifecycle { name: name.to_string(), has_master: false, parts: BTreeMap::new(), ended: VecDeque::new(), leaving: false, left: false }
    }

    pub fn data_for(&self, id: u64) -> DataVerdict {
        match self.parts.get(&id) {
            Some(Part::Running) => DataVerdict::Deliver,
            Some(Part::AwaitingSettle) => DataVerdict::Refuse,
            None if self.ended.contains(&id) => DataVerdict::Refuse,
            None => DataVerdict::Wait,
        }
    }

    pub fn step(&mut self, event: Event) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::MasterJoined => {
                self.has_master = true;
                // Workflow ids are the master's: a new master starts them again.
                self.ended.clear();
            }
            Event::MasterLost { reason } => {
                self.has_master = false;
                for (&id, part) in &self.parts {
                    actions.push(match part {
                        Part::Running => Action::FailPart { id, reason: format!("the master went away: {reason}") },
                        // Nobody is left to say the files are complete.
                        Part::AwaitingSettle => Action::Settle { id, commit: false },
                    });
                }
                self.parts.retain(|_, p| *p == Part::Running);
            }
            Event::PartStarted { id } => {
                self.parts.insert(id, Part::Running);
            }
            Event::PartEnded { id, outcome } => {
                if self.parts.get(&id) != Some(&Part::Running) {
                    return actions;
                }
                self.ended.push_back(id);
                if self.ended.len() > TOMBSTONES {
                    self.ended.pop_front();
                }
                let complete = outcome == Outcome::Completed;
                if self.has_master {
                    actions.push(Action::ToMaster(Report::Ended { id, outcome }));
                }
                if complete && self.has_master {
                    self.parts.insert(id, Part::AwaitingSettle);
                } else {
                    self.parts.remove(&id);
                    actions.push(Action::Settle { id, commit: false });
                }
            }
            Event::SettleOrdered { id, commit } => match self.parts.get(&id) {
                Some(Part::AwaitingSettle) => {
                    self.parts.remove(&id);
                    actions.push(Action::Settle { id, commit });
                }
                // The workflow failed elsewhere while this part still runs:
                // it ends aborted and keeps its files as incomplete.
                Some(Part::Running) if !commit => {
                    actions.push(Action::AbortPart { id, reason: "the workflow failed on another node".into() })
                }
                _ => {}
            },
            Event::StopOrdered { id } => {
                if self.parts.get(&id) == Some(&Part::Running) {
                    actions.push(Action::StopPart { id, reason: None });
                }
            }
            Event::AbortOrdered { id, reason } => {
                if self.parts.get(&id) == Some(&Part::Running) {
                    actions.push(Action::AbortPart { id, reason });
                }
            }
            Event::LeaveRequested => {
                if self.leaving {
                    return actions;
                }
                self.leaving = true;
                if self.parts.is_empty() {
                    // Nothing to drain.
                } else if self.has_master {
                    actions.push(Action::ToMaster(Report::Leaving));
                } else {
                    for (&id, _) in self.parts.iter().filter(|(_, p)| **p == Part::Running) {
                        actions.push(Action::StopPart { id, reason: Some(format!("worker {} stopped", self.name)) });
                    }
                }
            }
            Event::LeaveTimedOut => {
                for (&id, part) in &self.parts {
                    actions.push(match part {
                        Part::Running => Action::AbortPart {
                            id,
                            reason: format!("worker {} stopped and its workflows did not drain in time", self.name),
                        },
                        Part::AwaitingSettle => Action::Settle { id, commit: false },
                    });
                }
                self.parts.retain(|_, p| *p == Part::Running);
            }
        }
        if self.leaving && self.parts.is_empty() && !self.left {
            self.left = true;
            if self.has_master {
                actions.push(Action::ToMaster(Report::Bye));
            }
            actions.push(Action::Left);
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_master() -> Lifecycle {
        let mut l = Lifecycle::new("w8");
        l.step(Event::MasterJoined);
        l
    }

    #[test]
    fn data_waits_for_its_deploy_is_delivered_while_running_and_refused_once_ended() {
        let mut l = with_master();
        assert_eq!(l.data_for(1), DataVerdict::Wait);
        l.step(Event::PartStarted { id: 1 });
        assert_eq!(l.data_for(1), DataVerdict::Deliver);
        l.step(Event::PartEnded { id: 1, outcome: Outcome::Failed("boom".into()) });
        assert_eq!(l.data_for(1), DataVerdict::Refuse);
    }

    #[test]
    fn a_complete_part_keeps_its_files_until_the_master_says() {
        let mut l = with_master();
        l.step(Event::PartStarted { id: 2 });
        let actions = l.step(Event::PartEnded { id: 2, outcome: Outcome::Completed });
        assert_eq!(actions, vec![Action::ToMaster(Report::Ended { id: 2, outcome: Outcome::Completed })]);
        assert_eq!(l.data_for(2), DataVerdict::Refuse);
        assert_eq!(l.step(Event::SettleOrdered { id: 2, commit: true }), vec![Action::Settle { id: 2, commit: true }]);
        assert!(l.step(Event::SettleOrdered { id: 2, commit: true }).is_empty(), "settled once");
    }

    #[test]
    fn a_failed_part_keeps_its_files_as_incomplete_at_once() {
        let mut l = with_master();
        l.step(Event::PartStarted { id: 3 });
        let actions = l.step(Event::PartEnded { id: 3, outcome: Outcome::Aborted(vec!["spin".into()]) });
        assert!(actions.contains(&Action::Settle { id: 3, commit: false }));
    }

    #[test]
    fn losing_the_master_fails_running_parts_and_settles_the_rest_as_incomplete() {
        let mut l = with_master();
        l.step(Event::PartStarted { id: 4 });
        l.step(Event::PartStarted { id: 5 });
        l.step(Event::PartEnded { id: 5, outcome: Outcome::Completed });
        let actions = l.step(Event::MasterLost { reason: "silent".into() });
        assert!(actions.contains(&Action::FailPart { id: 4, reason: "the master went away: silent".into() }));
        assert!(actions.contains(&Action::Settle { id: 5, commit: false }));
    }

    #[test]
    fn leaving_asks_the_master_to_drain_and_says_goodbye_only_once_every_part_is_settled() {
        let mut l = with_master();
        l.step(Event::PartStarted { id: 6 });
        assert_eq!(l.step(Event::LeaveRequested), vec![Action::ToMaster(Report::Leaving)]);
        l.step(Event::StopOrdered { id: 6 });
        let actions = l.step(Event::PartEnded { id: 6, outcome: Outcome::Completed });
        assert!(!actions.contains(&Action::Left), "its files wait for the master's word");
        let actions = l.step(Event::SettleOrdered { id: 6, commit: true });
        assert_eq!(actions, vec![Action::Settle { id: 6, commit: true }, Action::ToMaster(Report::Bye), Action::Left]);
    }

    #[test]
    fn a_worker_with_nothing_to_drain_leaves_at_once() {
        let mut l = with_master();
        assert_eq!(l.step(Event::LeaveRequested), vec![Action::ToMaster(Report::Bye), Action::Left]);
    }

    #[test]
    fn a_leave_that_times_out_aborts_what_still_runs() {
        let mut l = with_master();
        l.step(Event::PartStarted { id: 7 });
        l.step(Event::LeaveRequested);
        let actions = l.step(Event::LeaveTimedOut);
        assert!(matches!(&actions[..], [Action::AbortPart { id: 7, .. }]));
        let actions = l.step(Event::PartEnded { id: 7, outcome: Outcome::Aborted(vec![]) });
        assert!(actions.ends_with(&[Action::ToMaster(Report::Bye), Action::Left]));
    }

    #[test]
    fn a_new_master_forgets_the_old_ones_workflows() {
        let mut l = with_master();
        l.step(Event::PartStarted { id: 1 });
        l.step(Event::PartEnded { id: 1, outcome: Outcome::Failed("x".into()) });
        l.step(Event::MasterLost { reason: "quit".into() });
        l.step(Event::MasterJoined);
        assert_eq!(l.data_for(1), DataVerdict::Wait);
    }

    #[test]
    fn a_settle_for_a_part_still_running_aborts_it() {
        let mut l = with_master();
        l.step(Event::PartStarted { id: 8 });
        assert!(matches!(&l.step(Event::SettleOrdered { id: 8, commit: false })[..], [Action::AbortPart { id: 8, .. }]));
    }
}
