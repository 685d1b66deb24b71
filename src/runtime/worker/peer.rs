//! Data links from other workers: records into this worker's inboxes.

use std::sync::Arc;

use super::lifecycle::DataVerdict;
use super::{Worker, DEPLOY_WAIT};
use crate::net::message::DataMsg;
use tokio_util::sync::CancellationToken;

use crate::net::{ControlMsg, DataLinkMsg, Link, LinkMessage, Writer};
use crate::runtime::dataflow::{Msg, Running};
use crate::workflow::key::Key;

impl Worker {
    /// Records from another worker, into this worker's inboxes. A link
    /// carries one workflow. Its data waits for the workflow's deploy (or
    /// fails it); data for a workflow that ended here is refused by closing
    /// the link, never by stalling it; every frame reaches its inbox or the
    /// workflow fails saying why.
    pub(super) async fn peer_link(self: Arc<Self>, auth: Link<DataLinkMsg>) {
        let Link { mut reader, writer, peer_name: peer, .. } = auth;
        // The sender waits while this worker's operators are busy; these
        // tell it that this worker is alive all the same.
        let beating = CancellationToken::new();
        let _stop_beating = beating.clone().drop_guard();
        tokio::spawn(heartbeats(writer, beating));
        let mut part: Option<(u64, Arc<Running>)> = None;
        loop {
            let msg = match reader.read().await {
                Ok(Some(msg)) => msg,
                // Only a goodbye ends a link whose frames all arrived: a
                // link that ends otherwise may have lost some.
                Ok(None) => return lost(&peer, part.as_ref(), "it closed the connection without a goodbye".into()),
                Err(e) => return lost(&peer, part.as_ref(), e.to_string()),
            };
            let DataLinkMsg::Data { id, stage, instance, from, msg } = msg else {
                if msg.is_bye() {
                    return;
                }
                continue;
            };
            let running = match &part {
                Some((known, r)) if *known == id => r.clone(),
                Some((known, r)) => {
                    r.fail(format!("the data link from {peer} for workflow #{known} carried data for workflow #{id}"));
                    return;
                }
                None => match self.wait_for_part(id).await {
                    Ok(r) => {
                        part = Some((id, r.clone()));
                        r
                    }
                    Err(DataVerdict::Refuse) => {
                        tracing::debug!(workflow = id, "refused data from {peer}: the workflow ended here");
                        return;
                    }
                    Err(_) => {
                        let reason = format!("data from {peer} arrived, but the workflow did not start here within {DEPLOY_WAIT:?}");
                        tracing::error!(workflow = id, "{reason}");
                        self.to_master(ControlMsg::Failed { id, reason });
                        return;
                    }
                },
            };
            let Some(inbox) = running.inbox(stage as usize, instance as usize) else {
                // Inboxes go when the part ends: a late frame of a failed
                // workflow. Anything else is a bug worth failing for.
                if !running.status().is_done() && running.inboxes_open() {
                    running.fail(format!("data from {peer} for stage {stage} instance {instance}, which does not run on this worker"));
                }
                return;
            };
            tokio::select! {
                biased;
                _ = running.ended().cancelled() => return,
                sent = inbox.send((from, from_wire(msg))) => {
                    if sent.is_err() && !running.ended().is_cancelled() {
                        running.fail(format!("an instance of stage {stage} ended before its input from {peer} did"));
                        return;
                    }
                }
            }
        }
    }

    /// The part of workflow `id` that runs here, once it has started (data
    /// may arrive before its deploy does); the verdict when it will not.
    async fn wait_for_part(&self, id: u64) -> Result<Arc<Running>, DataVerdict> {
        let deadline = tokio::time::Instant::now() + DEPLOY_WAIT;
        loop {
            let changed = self.changed.notified();
            match self.life.lock().expect("life lock").data_for(id) {
                DataVerdict::Deliver => return self.part(id).ok_or(DataVerdict::Refuse),
                DataVerdict::Refuse => return Err(DataVerdict::Refuse),
                DataVerdict::Wait => {}
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(DataVerdict::Wait);
            }
        }
    }
}

/// A data link from `peer` ended before its goodbye: the workflow it
/// carried (if it carried any yet) fails, naming the peer and why. A link
/// that carried no data yet fails nothing here; its sender hears the same
/// end and fails the workflow.
fn lost(peer: &str, part: Option<&(u64, Arc<Running>)>, why: String) {
    match part {
        Some((id, running)) if !running.status().is_done() => {
            let reason = format!("lost the data link from worker {peer}: {why}");
            tracing::error!(workflow = id, "{reason}");
            running.fail(reason);
        }
        _ => tracing::warn!("data link from {peer} closed: {why}"),
    }
}

/// Writes a heartbeat every beat until `stop`, or until the link breaks.
async fn heartbeats(mut writer: Writer<DataLinkMsg>, stop: CancellationToken) {
    let mut beat = tokio::time::interval(crate::settings::tick::heartbeat());
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = beat.tick() => {
                if writer.write(&DataLinkMsg::HEARTBEAT).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn from_wire(msg: DataMsg) -> Msg {
    match msg {
        DataMsg::Records(port, values) => Msg::Records(port, crate::net::value::to_dynamics(values)),
        DataMsg::Keyed(port, pairs) => {
            Msg::Keyed(port, pairs.into_iter().map(|(k, v)| (Key::new(k.into_dynamic()), v.into_dynamic())).collect())
        }
        DataMsg::Counts(counts) => Msg::Counts(counts.into_iter().map(|(k, n)| (Key::new(k.into_dynamic()), n)).collect()),
        DataMsg::Barrier(id) => Msg::Barrier(crate::runtime::dataflow::Barrier { id }),
        DataMsg::Watermark(wm) => Msg::Watermark(wm),
        DataMsg::Idle => Msg::Idle,
        DataMsg::End => Msg::End,
    }
}
