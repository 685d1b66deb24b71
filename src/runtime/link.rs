//! The control link between a master and a worker, driven the same way at
//! both ends: heartbeats every [`HEARTBEAT`], the link counts as lost after
//! [`SILENCE`] without a frame, a goodbye ends it cleanly, and what goes out
//! comes from two queues — control messages first, data frames after, so
//! control never waits behind data that is queued.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::net::{Authenticated, Message};

/// How often a link says it is alive, and how long silence means it is not.
pub const HEARTBEAT: Duration = Duration::from_millis(400);
pub const SILENCE: Duration = Duration::from_millis(1500);

/// What a link sends: control messages (few, small) and, on a worker's
/// link to its master, a bounded queue of encoded data frames.
pub struct Outgoing {
    pub control: mpsc::UnboundedReceiver<Message>,
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
/// `stop` is cancelled.
pub async fn drive<F, Fut>(
    auth: &mut Authenticated,
    mut out: Outgoing,
    stop: &CancellationToken,
    bye_on_stop: bool,
    mut tick: impl FnMut() -> Vec<Message>,
    mut on_message: F,
) -> LinkEnd
where
    F: FnMut(Message) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(HEARTBEAT);
    let mut heard = tokio::time::Instant::now();
    let lost = |e: crate::net::NetError| LinkEnd::Lost(e.to_string());
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                if bye_on_stop {
                    // Best effort: the process is exiting either way.
                    let _ = auth.writer.write(&Message::Bye).await;
                }
                return LinkEnd::Stopped;
            }
            _ = tokio::time::sleep_until(heard + SILENCE) => return LinkEnd::Lost(format!("silent for {SILENCE:?} (no heartbeat)")),
            _ = ticker.tick() => {
                for msg in tick() {
                    if let Err(e) = auth.writer.feed(&msg).await {
                        return lost(e);
                    }
                }
                if let Err(e) = auth.writer.flush().await {
                    return lost(e);
                }
            }
            Some(msg) = out.control.recv() => {
                let bye = msg == Message::Bye;
                if let Err(e) = auth.writer.write(&msg).await {
                    return lost(e);
                }
                if bye {
                    return LinkEnd::SaidBye;
                }
            }
            read = auth.reader.read() => {
                heard = tokio::time::Instant::now();
                match read {
                    Ok(None) => return LinkEnd::Lost("connection closed".into()),
                    Err(e) => return lost(e),
                    Ok(Some(Message::Bye)) => return LinkEnd::PeerSaidBye,
                    Ok(Some(Message::Heartbeat)) => {}
                    Ok(Some(msg)) => on_message(msg).await,
                }
            }
            Some(frame) = recv_data(&mut out.data) => {
                let mut result = auth.writer.feed_encoded(frame).await;
                // Send what else is queued in the same flush.
                while let (Ok(()), Some(Ok(more))) = (&result, out.data.as_mut().map(|d| d.try_recv())) {
                    result = auth.writer.feed_encoded(more).await;
                }
                if let Err(e) = result.and(auth.writer.flush().await) {
                    return lost(e);
                }
            }
        }
    }
}

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
