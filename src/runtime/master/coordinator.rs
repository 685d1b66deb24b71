//! The master's bookkeeping as a state machine with no I/O: the registry of
//! workers, placement, and what happens to workflows when workers come, go,
//! finish or fail. The master's driver feeds it events and carries out the
//! actions it returns; tests feed it events directly.

use std::collections::{BTreeMap, BTreeSet};

use crate::net::WorkerInfo;
use crate::runtime::dataflow::running_note;
use crate::workflow::Status;

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    WorkerJoined(WorkerInfo),
    WorkerLeft {
        name: String,
        reason: String,
    },
    /// A worker is stopping: its workflows are stopped (drained) first.
    WorkerLeaving {
        name: String,
    },
    /// A workflow was placed on these workers (in layout order).
    Deployed {
        id: u64,
        workers: Vec<String>,
    },
    /// A worker's part finished, or stopped after draining.
    WorkerDone {
        id: u64,
        worker: String,
    },
    WorkerFailed {
        id: u64,
        worker: String,
        reason: String,
    },
    /// A worker's part was aborted; these operators were running.
    WorkerInterrupted {
        id: u64,
        worker: String,
        operators: Vec<String>,
    },
    StopRequested {
        id: u64,
        /// Why, when it was not the user (`worker w8 left`).
        reason: Option<String>,
    },
    AbortRequested {
        id: u64,
        reason: String,
    },
    /// A worker named (or kept as incomplete) the files of its part;
    /// `error`: why it could not.
    WorkerSettled {
        id: u64,
        worker: String,
        error: Option<String>,
    },
    /// These workers are being replaced (an upgrade): when they go, the
    /// master stays, whatever `--shutdown-with-workers` says.
    Retiring {
        names: Vec<String>,
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
    /// The workflow's final status. Its files on the master are complete
    /// (Finished, Stopped) or kept as incomplete.
    SetStatus {
        id: u64,
        status: Status,
    },
    /// Tell a worker whether the files its part wrote are complete.
    Settle {
        worker: String,
        id: u64,
        commit: bool,
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
    /// Workers whose part has ended (done, failed or interrupted).
    reported: BTreeSet<String>,
    status: Status,
    /// Stopping, with the reason when it was not the user.
    stop: Option<Option<String>>,
    /// Aborting, with the reason.
    abort: Option<String>,
    interrupted: Vec<String>,
    /// Complete: the status it ends with, once these workers have named
    /// their files (so that files are in place when the status says so).
    settling: Option<(Status, BTreeSet<String>)>,
    /// Why it failed, in the order the reasons came.
    failures: Vec<String>,
}

impl Placed {
    /// The final status once every worker has reported, if it has.
    fn settled(&self) -> Option<Status> {
        if self.status.is_done() || self.settling.is_some() || self.reported.len() < self.workers.len() {
            return None;
        }
        Some(match (&self.abort, &self.stop) {
            (Some(reason), _) => Status::Aborted(format!("{reason}; {}", running_note(&self.interrupted))),
            (None, Some(reason)) => Status::Stopped(reason.clone()),
            (None, None) => Status::Finished,
        })
    }
}

#[derive(Debug, Default)]
pub struct Coordinator {
    workers: BTreeMap<String, WorkerInfo>,
    /// Workers that are stopping: no new workflow is placed on them.
    leaving: BTreeSet<String>,
    workflows: BTreeMap<u64, Placed>,
    shutdown_with_workers: bool,
    /// Workers being replaced: their going is expected.
    retiring: BTreeSet<String>,
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
        let available: Vec<WorkerInfo> = self.workers.values().filter(|w| !self.leaving.contains(&w.name)).cloned().collect();
        if available.is_empty() {
            return Err(
                "this master has no workers: start some with `skitter worker MASTER`, or give their addresses to `skitter master`".into()
            );
        }
        Ok(available)
    }

    pub fn step(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::WorkerJoined(info) => {
                let log = Action::Log(format!("worker {} joined from {} (tags: {})", info.name, info.addr, info.tags.join(", ")));
                self.leaving.remove(&info.name);
                self.workers.insert(info.name.clone(), info);
                vec![log, Action::BroadcastPeers(self.workers())]
            }
            Event::WorkerLeft { name, reason } => self.worker_left(name, reason),
            Event::Retiring { names } => {
                let names: Vec<String> = names.into_iter().filter(|n| self.workers.contains_key(n)).collect();
                self.leaving.extend(names.iter().cloned());
                self.retiring.extend(names);
                Vec::new()
            }
            Event::WorkerLeaving { name } => {
                if !self.workers.contains_key(&name) {
                    return Vec::new();
                }
                self.leaving.insert(name.clone());
                let mut actions = vec![Action::Log(format!("worker {name} is leaving: stopping its workflows"))];
                let ids: Vec<u64> =
                    self.workflows.iter().filter(|(_, wf)| !wf.status.is_done() && wf.workers.contains(&name)).map(|(&id, _)| id).collect();
                for id in ids {
                    actions.extend(self.step(Event::StopRequested { id, reason: Some(format!("worker {name} left")) }));
                }
                actions
            }
            Event::Deployed { id, workers } => {
                let placed = Placed {
                    workers,
                    reported: BTreeSet::new(),
                    status: Status::Running,
                    stop: None,
                    abort: None,
                    interrupted: Vec::new(),
                    settling: None,
                    failures: Vec::new(),
                };
                self.workflows.insert(id, placed);
                Vec::new()
            }
            Event::WorkerDone { id, worker } => self.reported(id, worker, Vec::new()),
            Event::WorkerInterrupted { id, worker, operators } => self.reported(id, worker, operators),
            Event::WorkerFailed { id, worker, reason } => {
                let Some(wf) = self.workflows.get_mut(&id) else { return Vec::new() };
                if wf.abort.is_some() {
                    // Failing while aborting is part of the abort.
                    return self.reported(id, worker, Vec::new());
                }
                if wf.status.is_done() {
                    // Failing after it failed: kept, the root cause may be here.
                    wf.failures.push(format!("on {worker}: {reason}"));
                    wf.reported.insert(worker);
                    return Vec::new();
                }
                wf.reported.insert(worker.clone());
                let reason = format!("on {worker}: {reason}");
                self.fail(id, reason, &worker)
            }
            Event::StopRequested { id, reason } => {
                let Some(wf) = self.workflows.get_mut(&id) else { return Vec::new() };
                if wf.status.is_done() || wf.stop.is_some() || wf.abort.is_some() {
                    return Vec::new();
                }
                wf.stop = Some(reason);
                wf.workers.iter().filter(|w| !wf.reported.contains(*w)).map(|w| Action::Stop { worker: w.clone(), id }).collect()
            }
            Event::WorkerSettled { id, worker, error } => {
                let Some(wf) = self.workflows.get_mut(&id) else { return Vec::new() };
                let Some((status, waiting)) = wf.settling.as_mut() else { return Vec::new() };
                waiting.remove(&worker);
                if let Some(error) = error {
                    // The first failure names what failed.
                    if !matches!(status, Status::Failed(_)) {
                        *status = Status::Failed(format!("worker {worker} could not name the files of its part: {error}"));
                    }
                }
                self.end_if_settled(id)
            }
            Event::AbortRequested { id, reason } => {
                let Some(wf) = self.workflows.get_mut(&id) else { return Vec::new() };
                if wf.status.is_done() || wf.abort.is_some() {
                    return Vec::new();
                }
                wf.abort = Some(reason.clone());
                let actions: Vec<Action> = wf
                    .workers
                    .iter()
                    .filter(|w| !wf.reported.contains(*w))
                    .map(|w| Action::Abort { worker: w.clone(), id, reason: reason.clone() })
                    .collect();
                let mut actions = actions;
                actions.extend(self.settle_if_done(id));
                actions
            }
        }
    }

    fn worker_left(&mut self, name: String, reason: String) -> Vec<Action> {
        if self.workers.remove(&name).is_none() {
            return Vec::new();
        }
        self.leaving.remove(&name);
        let retired = self.retiring.remove(&name);
        let mut actions = vec![Action::Log(format!("worker {name} went away: {reason}"))];
        let why = format!("worker {name} went away: {reason}");
        // Failed already, maybe because it went: the root cause is here.
        for wf in self.workflows.values_mut().filter(|wf| matches!(wf.status, Status::Failed(_)) && wf.workers.contains(&name)) {
            if !wf.reported.contains(&name) {
                wf.failures.push(why.clone());
            }
        }
        let ids: Vec<u64> =
            self.workflows.iter().filter(|(_, wf)| !wf.status.is_done() && wf.workers.contains(&name)).map(|(&id, _)| id).collect();
        for id in ids {
            if let Some((_, waiting)) = &self.workflows[&id].settling {
                // Complete: gone before naming its files fails it; gone after, nothing is missing.
                if waiting.contains(&name) {
                    actions.extend(self.fail(id, format!("{why} before naming the files of its part"), &name));
                }
                continue;
            }
            if self.workflows[&id].abort.is_some() {
                // Gone while aborting: its part has ended either way.
                actions.extend(self.reported(id, name.clone(), Vec::new()));
            } else {
                actions.extend(self.fail(id, why.clone(), &name));
            }
        }
        actions.push(Action::BroadcastPeers(self.workers()));
        if self.shutdown_with_workers && !retired {
            actions.push(Action::Exit { code: 4, reason: why });
        }
        actions
    }

    /// Fails workflow `id` because of `culprit`: the others abort, every
    /// remaining worker is told its files are not complete.
    fn fail(&mut self, id: u64, reason: String, culprit: &str) -> Vec<Action> {
        let Some(wf) = self.workflows.get_mut(&id) else { return Vec::new() };
        wf.status = Status::Failed(reason.clone());
        wf.failures.push(reason.clone());
        wf.settling = None;
        let mut actions = vec![Action::SetStatus { id, status: wf.status.clone() }];
        for w in wf.workers.iter().filter(|w| *w != culprit && self.workers.contains_key(*w)) {
            if !wf.reported.contains(w) {
                actions.push(Action::Abort { worker: w.clone(), id, reason: reason.clone() });
            }
            actions.push(Action::Settle { worker: w.clone(), id, commit: false });
        }
        actions
    }

    fn reported(&mut self, id: u64, worker: String, operators: Vec<String>) -> Vec<Action> {
        let Some(wf) = self.workflows.get_mut(&id) else { return Vec::new() };
        wf.reported.insert(worker);
        for op in operators {
            if !wf.interrupted.contains(&op) {
                wf.interrupted.push(op);
            }
        }
        self.settle_if_done(id)
    }

    /// Once every worker of `id` has reported: each worker's word on its
    /// files, and the final status — at once when the files are not
    /// complete, else once every worker has named its files.
    fn settle_if_done(&mut self, id: u64) -> Vec<Action> {
        let Some(wf) = self.workflows.get_mut(&id) else { return Vec::new() };
        let Some(status) = wf.settled() else { return Vec::new() };
        let commit = matches!(status, Status::Finished | Status::Stopped(_));
        let alive: BTreeSet<String> = wf.workers.iter().filter(|w| self.workers.contains_key(*w)).cloned().collect();
        let mut actions: Vec<Action> = alive.iter().map(|w| Action::Settle { worker: w.clone(), id, commit }).collect();
        if commit {
            wf.settling = Some((status, alive));
            actions.extend(self.end_if_settled(id));
        } else {
            wf.status = status.clone();
            actions.insert(0, Action::SetStatus { id, status });
        }
        actions
    }

    /// The final status of a complete workflow, once no worker's files are
    /// waiting to be named.
    fn end_if_settled(&mut self, id: u64) -> Vec<Action> {
        let Some(wf) = self.workflows.get_mut(&id) else { return Vec::new() };
        match wf.settling.take() {
            Some((status, waiting)) if waiting.is_empty() => {
                wf.status = status.clone();
                vec![Action::SetStatus { id, status }]
            }
            other => {
                wf.settling = other;
                Vec::new()
            }
        }
    }

    /// Whether every worker of run `id` that is still here has reported
    /// its part's end.
    pub fn ended_where_alive(&self, id: u64) -> bool {
        self.workflows.get(&id).is_none_or(|wf| wf.workers.iter().all(|w| wf.reported.contains(w) || !self.workers.contains_key(w)))
    }

    /// Why run `id` failed: the first reason that is not a link the
    /// failure broke (a part that fails closes its data links, and the
    /// parts it sent to may report that first), else the first.
    pub fn root_cause(&self, id: u64) -> Option<String> {
        let failures = &self.workflows.get(&id)?.failures;
        let consequence = |r: &&String| r.contains("data link to worker") || r.contains("data link from worker");
        failures.iter().find(|r| !consequence(r)).or(failures.first()).cloned()
    }

    /// Whether worker `name` is being replaced (an upgrade): its going is expected.
    pub fn is_retiring(&self, name: &str) -> bool {
        self.retiring.contains(name)
    }

    /// The workers a workflow ran on.
    pub fn workers_of(&self, id: u64) -> Vec<String> {
        self.workflows.get(&id).map(|wf| wf.workers.clone()).unwrap_or_default()
    }

    /// Forgets an ended workflow (the master keeps a bounded history).
    pub fn forget(&mut self, id: u64) {
        if self.workflows.get(&id).is_some_and(|wf| wf.status.is_done()) {
            self.workflows.remove(&id);
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

    fn statuses(actions: &[Action]) -> Vec<Status> {
        actions.iter().filter_map(|a| if let Action::SetStatus { status, .. } = a { Some(status.clone()) } else { None }).collect()
    }

    fn settles(actions: &[Action]) -> Vec<(String, bool)> {
        actions
            .iter()
            .filter_map(|a| if let Action::Settle { worker, commit, .. } = a { Some((worker.clone(), *commit)) } else { None })
            .collect()
    }

    #[test]
    fn a_workflow_finishes_when_every_worker_is_done_and_every_worker_commits() {
        let mut c = Coordinator::new(false);
        joined(&mut c, &["a", "b"]);
        c.step(Event::Deployed { id: 1, workers: vec!["a".into(), "b".into()] });
        assert!(c.step(Event::WorkerDone { id: 1, worker: "a".into() }).is_empty());
        let actions = c.step(Event::WorkerDone { id: 1, worker: "b".into() });
        assert_eq!(settles(&actions), vec![("a".into(), true), ("b".into(), true)]);
        // Finished once every worker's files are in place, not before.
        assert!(statuses(&actions).is_empty());
        assert!(c.step(Event::WorkerSettled { id: 1, worker: "b".into(), error: None }).is_empty());
        assert_eq!(statuses(&c.step(Event::WorkerSettled { id: 1, worker: "a".into(), error: None })), vec![Status::Finished]);
    }

    /// Issue 27: a worker whose rename failed said so only in its log, and
    /// the workflow read `finished`.
    #[test]
    fn the_root_cause_of_a_failure_is_not_a_link_it_broke() {
        let mut c = Coordinator::new(false);
        joined(&mut c, &["a", "b"]);
        c.step(Event::Deployed { id: 1, workers: vec!["a".into(), "b".into()] });
        let broke = "lost the data link from worker b: it closed the connection without a goodbye".to_string();
        c.step(Event::WorkerFailed { id: 1, worker: "a".into(), reason: broke });
        c.step(Event::WorkerFailed { id: 1, worker: "b".into(), reason: "operator `m` failed on record 3: poison".into() });
        assert_eq!(c.root_cause(1).unwrap(), "on b: operator `m` failed on record 3: poison");
        assert!(c.ended_where_alive(1));
    }

    #[test]
    fn a_worker_that_cannot_name_its_files_fails_the_workflow_naming_why() {
        let mut c = Coordinator::new(false);
        joined(&mut c, &["a", "b"]);
        c.step(Event::Deployed { id: 1, workers: vec!["a".into(), "b".into()] });
        c.step(Event::WorkerDone { id: 1, worker: "a".into() });
        c.step(Event::WorkerDone { id: 1, worker: "b".into() });
        let error = Some("cannot rename the output to out/part-b-1: Permission denied".to_string());
        assert!(c.step(Event::WorkerSettled { id: 1, worker: "b".into(), error }).is_empty());
        assert_eq!(
            statuses(&c.step(Event::WorkerSettled { id: 1, worker: "a".into(), error: None })),
            vec![Status::Failed(
                "worker b could not name the files of its part: cannot rename the output to out/part-b-1: Permission denied".into()
            )]
        );
    }

    #[test]
    fn a_worker_gone_before_naming_its_files_fails_a_complete_workflow_and_one_gone_after_does_not() {
        let mut c = Coordinator::new(false);
        joined(&mut c, &["a", "b"]);
        c.step(Event::Deployed { id: 1, workers: vec!["a".into(), "b".into()] });
        c.step(Event::WorkerDone { id: 1, worker: "a".into() });
        c.step(Event::WorkerDone { id: 1, worker: "b".into() });
        c.step(Event::WorkerSettled { id: 1, worker: "a".into(), error: None });
        let actions = c.step(Event::WorkerLeft { name: "b".into(), reason: "killed".into() });
        assert!(matches!(statuses(&actions).as_slice(), [Status::Failed(r)] if r.contains("before naming the files")), "{actions:?}");
        let mut c = Coordinator::new(false);
        joined(&mut c, &["a", "b"]);
        c.step(Event::Deployed { id: 2, workers: vec!["a".into(), "b".into()] });
        c.step(Event::WorkerDone { id: 2, worker: "a".into() });
        c.step(Event::WorkerDone { id: 2, worker: "b".into() });
        c.step(Event::WorkerSettled { id: 2, worker: "a".into(), error: None });
        assert!(statuses(&c.step(Event::WorkerLeft { name: "a".into(), reason: "it stopped".into() })).is_empty());
        assert_eq!(statuses(&c.step(Event::WorkerSettled { id: 2, worker: "b".into(), error: None })), vec![Status::Finished]);
    }

    #[test]
    fn a_stopped_workflow_ends_stopped() {
        let mut c = Coordinator::new(false);
        joined(&mut c, &["a"]);
        c.step(Event::Deployed { id: 7, workers: vec!["a".into()] });
        assert_eq!(c.step(Event::StopRequested { id: 7, reason: None }), vec![Action::Stop { worker: "a".into(), id: 7 }]);
        assert!(statuses(&c.step(Event::WorkerDone { id: 7, worker: "a".into() })).is_empty());
        assert_eq!(statuses(&c.step(Event::WorkerSettled { id: 7, worker: "a".into(), error: None })), vec![Status::Stopped(None)]);
    }

    #[test]
    fn a_leaving_worker_stops_its_workflows_with_the_reason_and_gets_no_new_ones() {
        let mut c = Coordinator::new(false);
        joined(&mut c, &["a", "w8"]);
        c.step(Event::Deployed { id: 3, workers: vec!["a".into(), "w8".into()] });
        let actions = c.step(Event::WorkerLeaving { name: "w8".into() });
        assert!(actions.contains(&Action::Stop { worker: "a".into(), id: 3 }));
        assert!(actions.contains(&Action::Stop { worker: "w8".into(), id: 3 }));
        assert_eq!(c.place().unwrap().iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), vec!["a"]);
        c.step(Event::WorkerDone { id: 3, worker: "w8".into() });
        c.step(Event::WorkerDone { id: 3, worker: "a".into() });
        c.step(Event::WorkerSettled { id: 3, worker: "w8".into(), error: None });
        let actions = c.step(Event::WorkerSettled { id: 3, worker: "a".into(), error: None });
        assert_eq!(statuses(&actions), vec![Status::Stopped(Some("worker w8 left".into()))]);
        // Its goodbye after that fails nothing.
        let actions = c.step(Event::WorkerLeft { name: "w8".into(), reason: "it stopped".into() });
        assert!(statuses(&actions).is_empty());
    }

    #[test]
    fn an_abort_waits_for_every_worker_and_names_the_running_operators() {
        let mut c = Coordinator::new(false);
        joined(&mut c, &["a", "b"]);
        c.step(Event::Deployed { id: 4, workers: vec!["a".into(), "b".into()] });
        let actions = c.step(Event::AbortRequested { id: 4, reason: "aborted by the user".into() });
        assert_eq!(actions.iter().filter(|a| matches!(a, Action::Abort { .. })).count(), 2);
        assert!(c.step(Event::WorkerInterrupted { id: 4, worker: "a".into(), operators: vec!["spin".into()] }).is_empty());
        let actions = c.step(Event::WorkerFailed { id: 4, worker: "b".into(), reason: "the workflow ended".into() });
        assert_eq!(statuses(&actions), vec![Status::Aborted("aborted by the user; operator `spin` was running".into())]);
        assert_eq!(settles(&actions), vec![("a".into(), false), ("b".into(), false)]);
    }

    #[test]
    fn a_stop_that_turns_into_an_abort_ends_aborted() {
        let mut c = Coordinator::new(false);
        joined(&mut c, &["a"]);
        c.step(Event::Deployed { id: 5, workers: vec!["a".into()] });
        c.step(Event::StopRequested { id: 5, reason: None });
        c.step(Event::AbortRequested { id: 5, reason: "the stop did not drain within 1 s".into() });
        let actions = c.step(Event::WorkerInterrupted { id: 5, worker: "a".into(), operators: vec![] });
        assert_eq!(statuses(&actions), vec![Status::Aborted("the stop did not drain within 1 s; no operator code was running".into())]);
    }

    #[test]
    fn an_ended_workflow_can_be_forgotten() {
        let mut c = Coordinator::new(false);
        joined(&mut c, &["a"]);
        c.step(Event::Deployed { id: 6, workers: vec!["a".into()] });
        c.forget(6);
        assert!(c.workflows.contains_key(&6), "a running workflow is kept");
        c.step(Event::WorkerDone { id: 6, worker: "a".into() });
        c.forget(6);
        assert!(c.workflows.contains_key(&6), "a workflow whose files are being named is kept");
        c.step(Event::WorkerSettled { id: 6, worker: "a".into(), error: None });
        c.forget(6);
        assert!(!c.workflows.contains_key(&6));
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
    fn a_retired_worker_leaves_without_shutting_the_master_down() {
        let mut c = Coordinator::new(true);
        c.step(Event::WorkerJoined(worker("a", &[])));
        c.step(Event::WorkerJoined(worker("b", &[])));
        c.step(Event::Retiring { names: vec!["a".into()] });
        assert_eq!(c.place().unwrap().iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["b"], "nothing new goes to a retiring worker");
        let actions = c.step(Event::WorkerLeft { name: "a".into(), reason: "it stopped".into() });
        assert!(!actions.iter().any(|a| matches!(a, Action::Exit { .. })), "{actions:?}");
        // A worker of the same name that joins later is a new one.
        c.step(Event::WorkerJoined(worker("a", &[])));
        let actions = c.step(Event::WorkerLeft { name: "a".into(), reason: "killed".into() });
        assert!(actions.iter().any(|a| matches!(a, Action::Exit { code: 4, .. })), "{actions:?}");
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
        assert_eq!(settles(&actions), vec![("b".into(), false)]);
    }
}
