//! What workers send the master about a run — counts, lines for its
//! files, pieces of checkpoints, collected records, what it printed —
//! once the fence has said the link may speak for that run.

use std::sync::atomic::Ordering;

use super::coordinator::Event;
use super::{Deployed, Master};
use crate::net::{ControlMsg, LinkMessage};
use crate::runtime::dataflow::FlowError;

impl Master {
    pub(super) fn on_worker_message(&self, worker: &str, msg: ControlMsg) {
        if let Some(id) = msg.report_of() {
            let verdict = self.fence.lock().expect("fence lock").heard(id, worker);
            if let super::fence::Verdict::Refuse { first } = verdict {
                return self.refuse_late(worker, id, msg.kind(), first);
            }
        }
        match msg {
            ControlMsg::Started { .. } => {}
            ControlMsg::Settled { id, error } => self.step(Event::WorkerSettled { id, worker: worker.to_string(), error }),
            ControlMsg::Done { id } => self.step(Event::WorkerDone { id, worker: worker.to_string() }),
            ControlMsg::Failed { id, reason } => self.step(Event::WorkerFailed { id, worker: worker.to_string(), reason }),
            ControlMsg::Interrupted { id, operators } => self.step(Event::WorkerInterrupted { id, worker: worker.to_string(), operators }),
            ControlMsg::Output { id, text } => self.print(id, text),
            ControlMsg::Progress { id, nodes } => {
                // A run given up reports its counts until its parts end: not late data.
                if let Some(wf) = self.deployed_of(id).filter(|wf| wf.run() == id) {
                    wf.nodes.lock().expect("nodes lock").insert(worker.to_string(), nodes);
                }
            }
            ControlMsg::Lines { id, node, text } => {
                let Some(wf) = self.current(id) else { return };
                // A slow disk holds this link, not the runtime's threads.
                match tokio::task::block_in_place(|| wf.files.get(&node).map(|f| f.write(text.as_bytes()))) {
                    Some(Ok(())) => {}
                    // Settled already: the workflow failed, and these lines
                    // were in flight; the file is kept as incomplete.
                    Some(Err(FlowError::Ended)) => {}
                    Some(Err(e)) => self.step(Event::WorkerFailed { id, worker: self.name.clone(), reason: e.to_string() }),
                    None => self.step(Event::WorkerFailed {
                        id,
                        worker: worker.to_string(),
                        reason: format!("lines for node {node}, which writes no file here"),
                    }),
                }
            }
            ControlMsg::Snapshot { id, checkpoint, chunk, last } => {
                let Some(cp) = self.current(id).and_then(|wf| wf.checkpoints()) else { return };
                let actions = cp.piece(worker, checkpoint, chunk, last);
                self.checkpoint_actions(id, &cp, actions);
            }
            ControlMsg::Collected { id, sink, values } => {
                if let Some(wf) = self.current(id) {
                    self.collected(id, &wf, sink, values)
                }
            }
            ControlMsg::Health { rss_bytes, uptime_ms } => {
                self.health.lock().expect("health lock").insert(worker.to_string(), (rss_bytes, uptime_ms, std::time::Instant::now()));
            }
            other => tracing::warn!("unexpected {} from worker {worker}", other.kind()),
        }
    }

    /// `worker` came back holding run `id`, placed on its previous link:
    /// what it sends of it is refused and counted, and (`first`) it is
    /// told to abort the run's instances it still has.
    fn refuse_late(&self, worker: &str, id: u64, kind: &str, first: bool) {
        let wf = self.deployed_of(id);
        if let Some(r) = wf.as_ref().and_then(|wf| wf.recovery.as_ref()) {
            r.stats.lock().expect("recovery lock").fenced += 1;
        }
        if first {
            let workflow = wf.map_or(0, |wf| wf.id);
            tracing::warn!(
                workflow,
                "worker {worker} came back still running run {id} of its previous link: refused its {kind}, and told it to abort that run"
            );
            let reason = format!("run {id} was given up while this worker was away");
            self.send(worker, ControlMsg::Abort { id, reason });
        }
    }

    /// Records a `collect()` sink gathered, against the cap.
    pub(super) fn collected(&self, id: u64, wf: &Deployed, sink: String, values: Vec<crate::net::value::Value>) {
        let size = crate::net::value::encoded_len(&values) as u64;
        let total = wf.collected_bytes.fetch_add(size, Ordering::Relaxed) + size;
        if total > self.results_cap {
            let reason = format!(
                "the results of `{sink}` passed the master's cap of {} MiB (SKITTER_RESULTS_CAP_MB): \
                 write large outputs with write_lines or write_parts",
                self.results_cap / (1024 * 1024)
            );
            wf.collected.lock().expect("collected lock").clear();
            return self.step(Event::WorkerFailed { id, worker: self.name.clone(), reason });
        }
        wf.collected.lock().expect("collected lock").entry(sink).or_default().extend(crate::net::value::to_dynamics(values));
    }

    /// Prints what a worker sent: to the console that deployed workflow
    /// `id` while it is attached, else to this node's output.
    pub(super) fn print(&self, id: Option<u64>, text: String) {
        let deployed = id.and_then(|id| self.deployed_of(id));
        if let Some(wf) = deployed {
            let mut audience = wf.audience.lock().expect("audience lock");
            if let Some(to) = audience.as_ref() {
                if to(&text) {
                    return;
                }
                *audience = None;
            }
        }
        self.printer.print(text)
    }
}
