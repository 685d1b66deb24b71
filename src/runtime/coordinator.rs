//! The master's bookkeeping as a state machine with no I/O: the registry of
//! workers, placement, and what happens to workflows when workers come, go,
//! finish or fail. The master's driver feeds it events and carries out the
//! actions it returns; tests feed it events directly.

use std::collections::{BTreeMap, BTreeSet};

use crate::net::WorkerInfo;
use crate::workflow::Status;

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    WorkerJoined(WorkerInfo),
    WorkerLeft {
        name: String,
        reason: String,
    },
    /// A workflow was placed on these workers (in layout order).
    Deployed {
        id: u64,
        workers: Vec<String>,
    },
    WorkerDone {
        id: u64,
        worker: String,
    },
    WorkerFailed {
        id: u64,
        worker: String,
        reason: String,
    },
    StopRequested {
        id: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Tell every worker who is in the cluster.
    BroadcastPeers(Vec<WorkerInfo>),
    Stop {
        worker: String,
        id: u64,
    },
    Abort {
        worker: String,
        id: u64,
        reason: String,
    },
    SetStatus {
        id: u64,
        status: Status,
    },
    /// The master must exit with this code (`--shutdown-with-workers`).
    Exit {
        code: u8,
        reason: String,
    },
    Log(String),
}

#[derive(Debug)]
struct Placed {
    workers: Vec<String>,
    done: BTreeSet<String>,
    status: Status,
    stopping: bool,
}

#[derive(Debug, Default)]
pub struct Coordinator {
    workers: BTreeMap<String, WorkerInfo>,
    workflows: BTreeMap<u64, Placed>,
    shutdown_with_workers: bool,
}

/// Why a worker cannot join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("worker already connected: a worker named {0} is registered")]
    Duplicate(String),
}

impl Coordinator {
    pub fn new(shutdown_with_workers: bool) -> Self {
        Coordinator { shutdown_with_workers, ..Default::default() }
    }

    /// Whether `info` may join; checked before it is admitted.
    pub fn admit(&self, info: &WorkerInfo) -> Result<(), JoinError> {
        if self.workers.contains_key(&info.name) {
            return Err(JoinError::Duplicate(info.name.clone()));
        }
        Ok(())
    }

    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.workers.values().cloned().collect()
    }

    pub fn with_tag(&self, tag: &str) -> Vec<WorkerInfo> {
        self.workers.values().filter(|w| w.tags.iter().any(|t| t == tag)).cloned().collect()
    }

    /// The workers a new workflow runs on, in layout order.
    pub fn place(&self) -> Result<Vec<WorkerInfo>, String> {
        if self.workers.is_empty() {
            return Err(
                "this master has no workers: start some with `skitter worker MASTER`, or give their addresses to `skitter master`".into()
            );
        }
        Ok(self.workers())
    }

    pub fn step(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::WorkerJoined(info) => {
                let log = Action::Log(format!("worker {} joined from {} (tags: {})", info.name, info.addr, info.tags.join(", ")));
                self.workers.insert(info.name.clone(), info);
                vec![log, Action::BroadcastPeers(self.workers())]
            }
            Event::WorkerLeft { name, reason } => {
                if self.workers.remove(&name).is_none() {
                    return Vec::new();
                }
                let mut actions = vec![Action::Log(format!("worker {name} went away: {reason}"))];
                let why = format!("worker {name} went away: {reason}");
                for (&id, wf) in self.workflows.iter_mut() {
                    if wf.status.is_done() || !wf.workers.contains(&name) {
                        continue;
                    }
                    wf.status = Status::Failed(why.clone());
                    actions.push(Action::SetStatus { id, status: wf.status.clone() });
                    for w in wf.workers.iter().filter(|w| **w != name && self.workers.contains_key(*w)) {
                        actions.push(Action::Abort { worker: w.clone(), id, reason: why.clone() });
                    }
                }
                actions.push(Action::BroadcastPeers(self.workers()));
                if self.shutdown_with_workers {
                    actions.push(Action::Exit { code: 4, reason: why });
                }
                actions
            }
            Event::Deployed { id, workers } => {
                self.workflows.insert(id, Placed { workers, done: BTreeSet::new(), status: Status::Running, stopping: false });
                Vec::new()
            }
            Event::WorkerDone { id, worker } => {
                let Some(wf) = self.workflows.get_mut(&id) else { return Vec::new() };
                wf.done.insert(worker);
                if wf.status.is_done() || wf.done.len() < wf.workers.len() {
                    return Vec::new();
                }
                wf.status = if wf.stopping { Status::Stopped } else { Status::Finished };
                vec![Action::SetStatus { id, status: wf.status.clone() }]
            }
            Event::WorkerFailed { id, worker, reason } => {
                let Some(wf) = self.workflows.get_mut(&id) else { return Vec::new() };
                if wf.status.is_done() {
                    return Vec::new();
                }
                let reason = format!("on {worker}: {reason}");
                wf.status = Status::Failed(reason.clone());
                let mut actions = vec![Action::SetStatus { id, status: wf.status.clone() }];
                for w in wf.workers.iter().filter(|w| **w != worker) {
                    actions.push(Action::Abort { worker: w.clone(), id, reason: reason.clone() });
                }
                actions
            }
            Event::StopRequested { id } => {
                let Some(wf) = self.workflows.get_mut(&id) else { return Vec::new() };
                if wf.status.is_done() {
                    return Vec::new();
                }
                wf.stopping = true;
                wf.workers.iter().map(|w| Action::Stop { worker: w.clone(), id }).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(name: &str, tags: &[&str]) -> WorkerInfo {
        WorkerInfo { name: name.into(), addr: format!("{name}:1"), tags: tags.iter().map(|t| t.to_string()).collect(), slots: 2 }
    }

    fn joined(c: &mut Coordinator, names: &[&str]) {
        for n in names {
            c.step(Event::WorkerJoined(worker(n, &["gpu"])));
        }
    }

    #[test]
    fn no_workers_no_placement() {
        assert!(Coordinator::new(false).place().unwrap_err().contains("no workers"));
    }

    #[test]
    fn registry_and_tags() {
        let mut c = Coordinator::new(false);
        c.step(Event::WorkerJoined(worker("a", &["gpu"])));
        c.step(Event::WorkerJoined(worker("b", &[])));
        assert_eq!(c.with_tag("gpu").len(), 1);
        assert_eq!(c.admit(&worker("a", &[])), Err(JoinError::Duplicate("a".into())));
        c.step(Event::WorkerLeft { name: "a".into(), reason: "gone".into() });
        assert!(c.with_tag("gpu").is_empty());
        assert_eq!(c.workers().len(), 1);
    }

    #[test]
    fn a_workflow_finishes_when_every_worker_is_done() {
        let mut c = Coordinator::new(false);
        joined(&mut c, &["a", "b"]);
        c.step(Event::Deployed { id: 1, workers: vec!["a".into(), "b".into()] });
        assert!(c.step(Event::WorkerDone { id: 1, worker: "a".into() }).is_empty());
        assert_eq!(c.step(Event::WorkerDone { id: 1, worker: "b".into() }), vec![Action::SetStatus { id: 1, status: Status::Finished }]);
    }

    #[test]
    fn a_stopped_workflow_ends_stopped() {
        let mut c = Coordinator::new(false);
        joined(&mut c, &["a"]);
        c.step(Event::Deployed { id: 7, workers: vec!["a".into()] });
        assert_eq!(c.step(Event::StopRequested { id: 7 }), vec![Action::Stop { worker: "a".into(), id: 7 }]);
        assert_eq!(c.step(Event::WorkerDone { id: 7, worker: "a".into() }), vec![Action::SetStatus { id: 7, status: Status::Stopped }]);
    }

    #[test]
    fn a_lost_worker_fails_its_workflows_and_aborts_the_rest() {
        let mut c = Coordinator::new(false);
        joined(&mut c, &["a", "b"]);
        c.step(Event::Deployed { id: 1, workers: vec!["a".into(), "b".into()] });
        let actions = c.step(Event::WorkerLeft { name: "b".into(), reason: "connection reset".into() });
        assert!(actions.contains(&Action::SetStatus { id: 1, status: Status::Failed("worker b went away: connection reset".into()) }));
        assert!(actions.iter().any(|a| matches!(a, Action::Abort { worker, id: 1, .. } if worker == "a")));
        assert!(!actions.iter().any(|a| matches!(a, Action::Exit { .. })));
        // A late "done" from the survivor changes nothing.
        assert!(c.step(Event::WorkerDone { id: 1, worker: "a".into() }).is_empty());
    }

    #[test]
    fn shutdown_with_workers_exits_4() {
        let mut c = Coordinator::new(true);
        joined(&mut c, &["a"]);
        let actions = c.step(Event::WorkerLeft { name: "a".into(), reason: "killed".into() });
        assert!(actions.iter().any(|a| matches!(a, Action::Exit { code: 4, .. })));
    }

    #[test]
    fn a_failure_on_one_worker_aborts_the_others() {
        let mut c = Coordinator::new(false);
        joined(&mut c, &["a", "b"]);
        c.step(Event::Deployed { id: 2, workers: vec!["a".into(), "b".into()] });
        let actions = c.step(Event::WorkerFailed { id: 2, worker: "a".into(), reason: "boom".into() });
        assert_eq!(actions[0], Action::SetStatus { id: 2, status: Status::Failed("on a: boom".into()) });
        assert_eq!(actions[1], Action::Abort { worker: "b".into(), id: 2, reason: "on a: boom".into() });
    }
}
