//! Links between nodes, driven the same way at both ends: a heartbeat every
//! half second (at most a quarter of the tick time), the link counts as lost after a whole tick time
//! without a frame (like Erlang's `net_ticktime`), every write has the tick
//! time as its deadline, a goodbye ends a link cleanly, and what goes out
//! comes from two queues — control messages first, data frames after, so
//! control never waits behind data that is queued.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::net::{Link, LinkMessage};

pub use crate::settings::tick::{heartbeat, set_tick, tick, DEFAULT_TICK, MIN_TICK};

/// What a link sends: control messages (few, small) and, on a worker's
/// link to its master, a bounded queue of encoded data frames.
pub struct Outgoing<M> {
    pub control: mpsc::UnboundedReceiver<M>,
    pub data: Option<mpsc::Receiver<Bytes>>,
}

/// How a link ended.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkEnd {
    /// This node is exiting (with a goodbye written when asked for).
    Stopped,
    /// A goodbye from this node's control queue was written.
    SaidBye,
    /// The peer said goodbye.
    PeerSaidBye,
    /// The connection broke, or the peer went silent.
    Lost(String),
}

/// Drives a link until it ends. `tick` gives what to send on every
/// heartbeat (the heartbeat first); `on_message` handles every other
/// message the peer sends. With `bye_on_stop`, a goodbye is written when
/// `stop` is cancelled. A lost link is counted (for `--metrics`).
pub async fn drive<M, F, Fut>(
    link: &mut Link<M>,
    out: Outgoing<M>,
    stop: &CancellationToken,
    bye_on_stop: bool,
    tick: impl FnMut() -> Vec<M>,
    on_message: F,
) -> LinkEnd
where
    M: LinkMessage,
    F: FnMut(M) -> Fut,
    Fut: Future<Output = ()>,
{
    let end = run(link, out, stop, bye_on_stop, tick, on_message).await;
    match end {
        LinkEnd::Lost(_) => crate::net::counters::connection_failed(),
        // Our goodbye, and what came before it, must reach the peer's
        // reader, not only its kernel.
        LinkEnd::SaidBye => link.close(self::tick()).await,
        LinkEnd::Stopped if bye_on_stop => link.close(CLOSE_ON_EXIT).await,
        LinkEnd::Stopped | LinkEnd::PeerSaidBye => {}
    }
    end
}

async fn run<M, F, Fut>(
    link: &mut Link<M>,
    mut out: Outgoing<M>,
    stop: &CancellationToken,
    bye_on_stop: bool,
    mut tick: impl FnMut() -> Vec<M>,
    mut on_message: F,
) -> LinkEnd
where
    M: LinkMessage,
    F: FnMut(M) -> Fut,
    Fut: Future<Output = ()>,
{
    let silence = self::tick();
    let mut ticker = tokio::time::interval(heartbeat());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = tokio::time::Instant::now();
    let lost = |e: crate::net::NetError| LinkEnd::Lost(e.to_string());
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                if bye_on_stop {
                    // Best effort: the process is exiting either way.
                    let _ = tokio::time::timeout(CLOSE_ON_EXIT, link.writer.write(&M::BYE)).await;
                }
                return LinkEnd::Stopped;
            }
            _ = tokio::time::sleep_until(heard + silence) => {
                return LinkEnd::Lost(format!("silent for {} (the tick time)", super::log::seconds(silence)))
            }
            _ = ticker.tick() => {
                for msg in tick() {
                    if let Err(e) = link.writer.feed(&msg).await {
                        return lost(e);
                    }
                }
                if let Err(e) = link.writer.flush().await {
                    return lost(e);
                }
            }
            Some(msg) = out.control.recv() => {
                // Every control message queued, in one flush; a goodbye is the last.
                let (mut next, mut bye, mut result) = (Some(msg), false, Ok(()));
                while let (Ok(()), Some(msg)) = (&result, next.take()) {
                    bye = msg.is_bye();
                    result = link.writer.feed(&msg).await;
                    if !bye {
                        next = out.control.try_recv().ok();
                    }
                }
                if let Err(e) = result.and(link.writer.flush().await) {
                    return lost(e);
                }
                if bye {
                    return LinkEnd::SaidBye;
                }
            }
            read = link.reader.read() => {
                heard = tokio::time::Instant::now();
                match read {
                    Ok(None) => return LinkEnd::Lost("connection closed".into()),
                    Err(e) => return lost(e),
                    Ok(Some(msg)) if msg.is_bye() => return LinkEnd::PeerSaidBye,
                    Ok(Some(msg)) if msg.is_heartbeat() => {}
                    Ok(Some(msg)) => on_message(msg).await,
                }
            }
            Some(frame) = recv_data(&mut out.data) => {
                let mut result = link.writer.feed_encoded(&frame).await;
                // Send what else is queued in the same flush, but not so
                // much that a heartbeat waits long behind it.
                let mut batch = frame.len();
                while batch < BATCH {
                    let Some(Ok(more)) = out.data.as_mut().map(|d| d.try_recv()) else { break };
                    if result.is_err() {
                        break;
                    }
                    batch += more.len();
                    result = link.writer.feed_encoded(&more).await;
                }
                if let Err(e) = result.and(link.writer.flush().await) {
                    return lost(e);
                }
            }
        }
    }
}

/// How long an exiting node waits for a peer to read its goodbye.
const CLOSE_ON_EXIT: Duration = Duration::from_millis(500);

/// The most data written in one go before control gets its turn.
const BATCH: usize = 1024 * 1024;

/// The next data frame, or never when the link carries none.
async fn recv_data(data: &mut Option<mpsc::Receiver<Bytes>>) -> Option<Bytes> {
    match data {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits (at most `limit`) until every data frame queued on `data` has been
/// taken by its link: a goodbye sent after that follows them.
pub async fn drained(data: &mpsc::Sender<Bytes>, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while data.capacity() < data.max_capacity() && !data.is_closed() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
