//! A worker's link to its master: joining (dialed by the master, or
//! dialing it), serving what the master says, and, for a worker that
//! dialed its master, dialing it again for a while once it is lost.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::lifecycle::Event;
use super::{MasterLink, PartOrder, Worker};
use crate::net::handshake::{self, HANDSHAKE_TIMEOUT};
use crate::net::message::ControlRefusal;
use crate::net::{ControlMsg, Link, LinkMessage};
use crate::runtime::link::{self, LinkEnd, Outgoing};

/// How a link to a master began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Joining {
    /// The master dialed this worker.
    Dialing,
    /// This worker dialed its master.
    Dialed,
    /// This worker dialed its master again after losing it.
    Rejoining,
}

/// How a link to a master ended.
#[derive(Debug)]
pub(super) enum MasterEnd {
    /// For good: the master quit, this worker is exiting, or it was refused.
    Done,
    /// Lost, on a link this worker dialed: it dials again.
    Lost(String),
    /// A rejoin the master refused (it may still hold the old link).
    Refused(String),
}

impl MasterEnd {
    /// Why it was lost, when this worker should dial again.
    pub(super) fn lost(self) -> Option<String> {
        match self {
            MasterEnd::Lost(reason) => Some(reason),
            _ => None,
        }
    }
}

/// How long a worker that joined its master dials it again once it is
/// gone: SKITTER_REJOIN_WAIT seconds, default 60.
pub(crate) fn rejoin_wait() -> Duration {
    std::env::var("SKITTER_REJOIN_WAIT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(60), Duration::from_secs_f64)
}

impl Worker {
    /// Serves the link to a master until it ends; returns why when this
    /// worker dialed it and lost it (it dials again).
    pub(super) async fn master_link(self: Arc<Self>, mut auth: Link<ControlMsg>, joining: Joining) -> MasterEnd {
        let _open = self.master_link.token();
        let master = auth.peer_name.clone();
        let dialed = joining != Joining::Dialing;
        if dialed {
            // We asked to join: introduce ourselves, then hear the verdict.
            if auth.writer.write(&ControlMsg::Register(self.info())).await.is_err() {
                if joining == Joining::Rejoining {
                    return MasterEnd::Refused("the link closed before it registered".into());
                }
                self.quit(1);
                return MasterEnd::Done;
            }
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, auth.reader.read()).await {
                Ok(Ok(Some(ControlMsg::Welcome))) => {}
                // Its old link may not have ended on its side yet: try again.
                Ok(Ok(Some(ControlMsg::Refuse(why)))) if joining == Joining::Rejoining => return MasterEnd::Refused(why.to_string()),
                Ok(Ok(Some(ControlMsg::Refuse(why)))) => {
                    tracing::error!("the master {master} refused this worker: {why}");
                    eprintln!("error: the master {master} refused this worker: {why}");
                    self.quit(1);
                    return MasterEnd::Done;
                }
                other => {
                    let what = match other {
                        Ok(Ok(Some(msg))) => format!("it sent {}", msg.kind()),
                        Ok(Ok(None)) => "it closed the connection".into(),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => format!("no answer within {}", crate::runtime::log::seconds(HANDSHAKE_TIMEOUT)),
                    };
                    if joining == Joining::Rejoining {
                        return MasterEnd::Refused(what);
                    }
                    tracing::error!("the master {master} did not welcome this worker: {what}");
                    eprintln!("error: the master {master} did not welcome this worker: {what}");
                    self.quit(1);
                    return MasterEnd::Done;
                }
            }
        } else {
            let busy = self.master.lock().expect("master lock").is_some();
            if busy {
                tracing::warn!("refused master {}: {}", handshake::quoted(&master), ControlRefusal::HasMaster);
                // Best effort: the refused master learns why, or sees the link close.
                let _ = auth.writer.write(&ControlMsg::Refuse(ControlRefusal::HasMaster)).await;
                return MasterEnd::Done;
            }
            if auth.writer.write(&ControlMsg::Welcome).await.is_err()
                || auth.writer.write(&ControlMsg::Register(self.info())).await.is_err()
            {
                return MasterEnd::Done;
            }
        }
        let (control, control_rx) = mpsc::unbounded_channel();
        let (data, data_rx) = mpsc::channel::<Bytes>(super::MASTER_DATA_QUEUE);
        {
            let mut slot = self.master.lock().expect("master lock");
            if slot.is_some() {
                return MasterEnd::Done;
            }
            *slot = Some(MasterLink { control, data });
        }
        self.step(Event::MasterJoined).await;
        tracing::info!("joined master {master} at {}", auth.peer_addr);
        let me = self.clone();
        // Live counts of what runs here, with every heartbeat.
        let tick = || {
            let health = ControlMsg::Health {
                rss_bytes: crate::runtime::process::resident_bytes().unwrap_or(0),
                uptime_ms: crate::runtime::process::uptime().map_or(0, |s| (s * 1000.0) as u64),
            };
            let mut msgs = vec![ControlMsg::Heartbeat, health];
            for (&id, r) in self.parts.lock().expect("parts lock").iter() {
                if !r.status().is_done() {
                    msgs.push(ControlMsg::Progress { id, nodes: r.nodes() });
                }
            }
            msgs
        };
        let out = Outgoing { control: control_rx, data: Some(data_rx) };
        let end = link::drive(&mut auth, out, &self.exit, false, tick, |msg| {
            let me = me.clone();
            async move { me.on_master_message(msg).await }
        })
        .await;
        *self.master.lock().expect("master lock") = None;
        let (reason, said_bye) = match end {
            LinkEnd::Stopped | LinkEnd::SaidBye => return MasterEnd::Done,
            LinkEnd::PeerSaidBye => ("the master quit".to_string(), true),
            LinkEnd::Lost(reason) => (reason, false),
        };
        // A master that said goodbye ended normally: no warning for that.
        // A lost one is a warning, said on stderr once: by the line below
        // when this worker shuts down with it.
        let shutting_down = self.config.shutdown_with_master;
        if said_bye {
            tracing::info!("master {master} went away: {reason}");
        } else if shutting_down {
            tracing::warn!(target: crate::runtime::log::REPORTED, "master {master} went away: {reason}");
        } else {
            tracing::warn!("master {master} went away: {reason}");
        }
        self.step(Event::MasterLost { reason: reason.clone() }).await;
        if dialed && !said_bye && self.config.master.is_some() {
            // It may come back (restarted, `--recover`): `run` dials it again for a while.
            return MasterEnd::Lost(reason);
        }
        if shutting_down {
            eprintln!("the master {master} went away ({reason}): shutting down");
            self.quit(4);
        } else {
            tracing::info!("waiting for a new master");
        }
        MasterEnd::Done
    }

    /// Dials the master at `addr`, gone for `reason`, again and again (every
    /// 0.1 s at first, every 2 s at most) for the rejoin wait, and serves
    /// the link once it answers (returning why when it is lost again); else
    /// gives up: exits 4, or, with `--no-shutdown-with-master`, waits to be
    /// dialed.
    pub(super) async fn rejoin(self: Arc<Self>, addr: &str, reason: String) -> Option<String> {
        let wait = rejoin_wait();
        let deadline = tokio::time::Instant::now() + wait;
        let mut delay = Duration::from_millis(100);
        tracing::info!("the master at {addr} went away ({reason}): dialing it again for {}", crate::settings::seconds(wait));
        loop {
            if self.exit.is_cancelled() {
                return None;
            }
            if let Ok(auth) = handshake::dial(addr, &self.identity).await {
                tracing::info!("rejoining the master at {addr}");
                match self.clone().master_link(auth.into_link(link::tick()), Joining::Rejoining).await {
                    MasterEnd::Refused(why) => tracing::info!("the master at {addr} did not take this worker back yet: {why}"),
                    end => return end.lost(),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(delay.min(deadline - tokio::time::Instant::now())).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        if self.config.shutdown_with_master {
            tracing::warn!(target: crate::runtime::log::REPORTED, "the master at {addr} went away: {reason}");
            eprintln!(
                "the master at {addr} went away ({reason}) and did not come back within {}: shutting down",
                crate::settings::seconds(wait)
            );
            self.quit(4);
        } else {
            tracing::info!("waiting for a new master");
        }
        None
    }

    async fn on_master_message(self: &Arc<Self>, msg: ControlMsg) {
        match msg {
            ControlMsg::Peers(peers) => *self.peers.lock().expect("peers lock") = peers,
            ControlMsg::Restore { id, chunk } => self.restores.lock().expect("restores lock").entry(id).or_default().extend(chunk),
            ControlMsg::Checkpoint { id, checkpoint } => {
                if let Some(b) = self.parts.lock().expect("parts lock").get(&id).and_then(|r| r.barriers().cloned()) {
                    b.request(checkpoint);
                }
            }
            ControlMsg::Committed { id, checkpoint } => {
                let settled = {
                    let mut waiting = self.unacknowledged.lock().expect("unacknowledged lock");
                    let at = waiting.iter().position(|(w, _)| *w == id);
                    at.and_then(|i| waiting.remove(i)).map(|(_, r)| r)
                };
                let Some(running) = settled.or_else(|| self.parts.lock().expect("parts lock").get(&id).cloned()) else { return };
                match checkpoint {
                    // Broker clients block: not on the link's task.
                    Some(n) => drop(tokio::task::spawn_blocking(move || running.acknowledge_to(n))),
                    // The workflow's end: acknowledged before the link reads
                    // on (a master that quits next takes this worker with it).
                    None => tokio::task::block_in_place(|| running.acknowledge_all()),
                }
            }
            ControlMsg::Deploy { id, spec, sources, workers, slots, placement, checkpoints } => {
                let placement =
                    placement.into_iter().map(|(s, counts)| (s as usize, counts.into_iter().map(|n| n as usize).collect())).collect();
                let resume = self.restores.lock().expect("restores lock").remove(&id);
                let resume = match checkpoints {
                    true => Some(resume.unwrap_or_default()),
                    false => None,
                };
                let order = PartOrder { spec, sources, workers, slots: slots as usize, placement, resume };
                match self.start_part(id, order).await {
                    Ok(()) => self.to_master(ControlMsg::Started { id }),
                    Err(reason) => {
                        tracing::error!(workflow = id, "cannot start: {reason}");
                        self.to_master(ControlMsg::Failed { id, reason });
                    }
                }
            }
            ControlMsg::Stop { id } => self.step(Event::StopOrdered { id }).await,
            ControlMsg::Abort { id, reason } => self.step(Event::AbortOrdered { id, reason }).await,
            ControlMsg::Settle { id, commit } => self.step(Event::SettleOrdered { id, commit }).await,
            other => tracing::warn!("unexpected {} from the master", other.kind()),
        }
    }
}
