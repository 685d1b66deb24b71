//! A cluster workflow with checkpoints that fails — a worker went away or
//! went silent, an operator raised an error — runs again from its last
//! checkpoint, on the workers there are, as a new **run** with a new id
//! (its epoch). What an older run's parts send late (a worker back from a
//! partition or a stall) names a run that is not current and is refused,
//! and counted. [`Restarts`] says whether and when; this is the I/O.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::checkpoints::ClusterCheckpoints;
use super::{Deployed, Master};
use crate::runtime::restart::{Decision, Restarts};
use crate::script::{Code, DeployOptions};
use crate::workflow::recovery::RecoveryStats;
use crate::workflow::stats::CheckpointStats;
use crate::workflow::{FlatGraph, Status};

/// How long a restart waits for a worker when none is left.
pub const RESTART_WAIT: Duration = Duration::from_secs(2);

/// How long a restart waits for the failed run's parts on the workers that
/// remain to end.
const QUIET_WAIT: Duration = Duration::from_secs(5);

/// What deploys a workflow again, and its restarts so far.
pub(super) struct Recovery {
    pub(super) graph: FlatGraph,
    pub(super) code: Code,
    /// Its deploy options, never `fresh`: a restart resumes.
    pub(super) options: DeployOptions,
    restarts: Mutex<Restarts>,
    pub(super) stats: Mutex<RecoveryStats>,
    /// What the failed run's checkpoints counted, for the next run's.
    pub(super) carried: Mutex<Option<CheckpointStats>>,
    /// The name its checkpoints (and its record as running) are kept under.
    pub(super) name: Mutex<Option<String>>,
}

impl Recovery {
    pub(super) fn new(graph: &FlatGraph, code: &Code, options: &DeployOptions) -> Recovery {
        Recovery {
            graph: graph.clone(),
            code: code.clone(),
            options: DeployOptions { fresh: false, ..options.clone() },
            restarts: Mutex::new(Restarts::new(options.restart_policy())),
            stats: Mutex::new(RecoveryStats::default()),
            carried: Mutex::new(None),
            name: Mutex::new(None),
        }
    }
}

impl Master {
    /// Run `run` of `wf` failed for `reason`. A workflow that can recover
    /// is taken on by [`Master::restart`] (`None`); otherwise the failure
    /// to publish.
    pub(super) fn recover(&self, run: u64, wf: &Arc<Deployed>, reason: String) -> Option<Status> {
        if wf.recovery.is_none() || wf.ending.load(Ordering::Relaxed) {
            return Some(Status::Failed(reason));
        }
        // Its checkpoints stop; the next run takes them on once the last
        // write of this one is done.
        let checkpoints = wf.checkpoints.lock().expect("checkpoints lock").take();
        let (Some(me), wf) = (self.me.upgrade(), wf.clone()) else { return Some(Status::Failed(reason)) };
        self.handle.spawn(async move { me.restart(run, wf, checkpoints, reason).await });
        None
    }

    /// Once failed run `old`'s parts have ended on the workers that remain
    /// and its checkpoints (`checkpoints`) are no longer written (one that
    /// completes meanwhile is one the next run resumes from), decides with
    /// the root cause of the failure (an operator's error, not the links
    /// it broke) whether the workflow runs again; if so, starts it as a
    /// new run after the policy's delay.
    async fn restart(self: Arc<Self>, old: u64, wf: Arc<Deployed>, checkpoints: Option<Arc<ClusterCheckpoints>>, first: String) {
        let failed_at = Instant::now();
        let recovery = wf.recovery.as_ref().expect("only a workflow that can recover restarts");
        let deadline = Instant::now() + QUIET_WAIT;
        while !self.coordinator.lock().expect("coordinator lock").ended_where_alive(old) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut read_at = std::collections::BTreeMap::new();
        if let Some(cp) = checkpoints {
            while Arc::strong_count(&cp) > 1 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            *recovery.carried.lock().expect("carried lock") = Some(cp.stats.lock().expect("stats lock").clone());
            read_at = std::mem::take(&mut *cp.read_at.lock().expect("read lock"));
        }
        // What the failed run's workers counted stays counted.
        wf.fold_nodes();
        let read = wf.read();
        let mut reason = self.coordinator.lock().expect("coordinator lock").root_cause(old).unwrap_or(first);
        loop {
            let decision = recovery.restarts.lock().expect("restarts lock").failed(reason.clone(), Instant::now());
            let (attempt, delay) = match decision {
                Decision::Fail(why) => return self.publish_status(old, &wf, Status::Failed(why)),
                Decision::Restart { attempt, delay } => (attempt, delay),
            };
            tracing::warn!(workflow = wf.id, "run {old} failed ({reason}): restart {attempt} from the last checkpoint in {delay:?}");
            recovery.stats.lock().expect("recovery lock").last_reason = Some(reason.clone());
            wf.status.send_replace(Status::Recovering(format!("attempt {attempt}, {reason}")));
            // A stop or an abort meanwhile ends the wait.
            let deadline = Instant::now() + delay;
            while Instant::now() < deadline && !wf.ending.load(Ordering::Relaxed) {
                tokio::time::sleep((deadline - Instant::now()).min(Duration::from_millis(50))).await;
            }
            let deadline = Instant::now() + RESTART_WAIT;
            while self.coordinator.lock().expect("coordinator lock").place().is_err() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if wf.ending.load(Ordering::Relaxed) {
                // Stopped or aborted while it recovered: the last checkpoint stands.
                let status = Status::Stopped(Some("while it recovered; it resumes from its last checkpoint".into()));
                return self.publish_status(old, &wf, status);
            }
            let run = self.next_run.fetch_add(1, Ordering::Relaxed);
            match self.start_run(run, &wf, &recovery.graph, recovery.code.clone(), &recovery.options) {
                Ok(resumed_from) => {
                    let mut stats = recovery.stats.lock().expect("recovery lock");
                    stats.restarts += 1;
                    stats.last_recovery_ms = Some(failed_at.elapsed().as_millis() as u64);
                    stats.last_checkpoint = resumed_from;
                    let since = resumed_from.and_then(|n| read_at.get(&n).copied()).unwrap_or(0);
                    stats.replayed += read.saturating_sub(since);
                    drop(stats);
                    if let Some(cp) = wf.checkpoints() {
                        // The new run's checkpoints carry on from the old ones' reads.
                        cp.read_at.lock().expect("read lock").extend(read_at.range(..=resumed_from.unwrap_or(0)).map(|(k, v)| (*k, *v)));
                    }
                    wf.status.send_replace(Status::Running);
                    let workers = self.coordinator.lock().expect("coordinator lock").workers_of(run).join(", ");
                    let from = resumed_from.map_or("its start".to_string(), |n| format!("checkpoint {n}"));
                    tracing::warn!(
                        workflow = wf.id,
                        "run {run} started from {from} on {workers} ({:?} after the failure)",
                        failed_at.elapsed()
                    );
                    return;
                }
                Err(e) => reason = format!("it could not start again: {e}"),
            }
        }
    }
}

impl Master {
    /// `--recover`: deploys again every workflow this master's checkpoint
    /// directory records as running (its previous life was killed, or
    /// exited while they ran), each from its last checkpoint; what each
    /// became, by name.
    /// `records`: [`crate::runtime::checkpoint::running::listed`].
    pub fn recover_recorded(
        &self,
        records: Vec<Result<crate::runtime::checkpoint::running::Running, String>>,
    ) -> Vec<(String, Result<crate::script::WorkflowRef, String>)> {
        let mut recovered = Vec::new();
        for record in records {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    recovered.push((String::new(), Err(e)));
                    continue;
                }
            };
            let name = record.name.clone();
            let store = crate::runtime::checkpoint::setup::store();
            let finished = crate::runtime::checkpoint::store::Store::list(&store, &name)
                .ok()
                .and_then(|l| l.last().map(|m| m.kind == crate::runtime::checkpoint::Kind::Finished))
                .unwrap_or(false);
            if finished {
                // It finished before the record could go.
                crate::runtime::checkpoint::running::remove(&name);
                continue;
            }
            let deployed = record.into_parts().and_then(|(graph, code, options)| self.deploy_graph(graph, code, None, &options));
            recovered.push((name, deployed));
        }
        recovered
    }
}
