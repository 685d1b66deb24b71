//! The network side of one workflow on one worker: a data link to each
//! peer it sends to, and the bounded data queue to the master for what
//! sinks on the master's host receive. Everything that leaves is cut into
//! frames well below the frame limit; a record too large for any frame
//! fails its workflow, naming the reason.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use rhai::Dynamic;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use std::time::Duration;

use crate::net::framing::{encode, MAX_FRAME};
use crate::net::handshake;
use crate::net::message::RecordsFrame;
use crate::net::value::{encoded_len, to_values, Value};
use crate::net::{ControlMsg, DataLinkMsg, Identity, Link, LinkMessage, Reader, WorkerInfo};
use crate::runtime::dataflow::channel::{self, Unsent};
use crate::runtime::dataflow::{FlowError, Msg, Remote};

/// Frames of data queued per link to a peer before senders wait.
const LINK_QUEUE: usize = 64;
/// The most a frame to the master carries: far below the frame limit, so
/// control messages are never long behind one.
pub const DATA_CHUNK: usize = 1024 * 1024;
/// What the rest of a frame (kind, ids, names) may take besides its payload.
const FRAME_OVERHEAD: usize = 4096;

pub struct WorkerRemote {
    pub id: u64,
    pub peers: Vec<WorkerInfo>,
    pub identity: Identity,
    /// Encoded frames to each peer.
    pub links: Mutex<HashMap<usize, mpsc::Sender<Bytes>>>,
    /// Control messages to the master (small, few).
    pub control: mpsc::UnboundedSender<ControlMsg>,
    /// Data frames to the master: bounded, so a master that cannot keep up
    /// holds the senders back.
    pub data: mpsc::Sender<Bytes>,
    pub handle: tokio::runtime::Handle,
}

impl WorkerRemote {
    fn link(&self, worker: usize) -> Result<mpsc::Sender<Bytes>, FlowError> {
        let mut links = self.links.lock().expect("links lock");
        if let Some(link) = links.get(&worker) {
            return Ok(link.clone());
        }
        let peer = self.peers.get(worker).ok_or_else(|| FlowError::Internal(format!("no worker number {worker}")))?.clone();
        let (tx, mut rx) = mpsc::channel::<Bytes>(LINK_QUEUE);
        let identity = self.identity.clone();
        let control = self.control.clone();
        let id = self.id;
        self.handle.spawn(async move {
            let auth = match dial_peer(&peer.addr, &identity).await {
                Ok(a) => a,
                Err(e) => {
                    crate::net::counters::connection_failed();
                    // Unbounded, and read by the master link until it ends.
                    let _ =
                        control.send(ControlMsg::Failed { id, reason: format!("cannot reach worker {} at {}: {e}", peer.name, peer.addr) });
                    return;
                }
            };
            if let Err(e) = send_data(auth.into_link(DATA_WRITE_DEADLINE), &mut rx).await {
                let _ = control.send(ControlMsg::Failed { id, reason: format!("lost the data link to worker {}: {e}", peer.name) });
            }
        });
        links.insert(worker, tx.clone());
        Ok(tx)
    }

    /// Queues a frame for the master, waiting while the queue is full.
    fn to_master(&self, frame: Vec<u8>, ended: &CancellationToken) -> Result<(), FlowError> {
        channel::send(&self.handle, &self.data, Bytes::from(frame), ended).map_err(|why| match why {
            Unsent::Ended => FlowError::Ended,
            Unsent::Closed => FlowError::Remote("the link to the master is closed".into()),
        })
    }
}

/// Dials a peer of the cluster for a data link. The peer joined the same
/// master with the same cookie, so every failed attempt is a transient one —
/// a peer stalled for less than the tick time, a listen backlog overflowing
/// while a large cluster dials all-to-all — and is tried again, until a
/// tick time has passed.
async fn dial_peer(addr: &str, identity: &Identity) -> Result<crate::net::Authenticated, crate::net::NetError> {
    handshake::dial_retrying(addr, identity, crate::settings::tick::tick(), Duration::ZERO, |_| true).await
}

/// How long a write on a data link may wait. The receiver holds data back
/// while its operators are busy (that is flow control, and may last long);
/// whether it is alive is told by its heartbeats.
const DATA_WRITE_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// Writes the frames queued for a peer until the queue closes, then says
/// goodbye and waits until the peer has read everything and closed its end:
/// a connection closed while the peer still has frames to read would be
/// reset by its kernel, and the frames it had not read yet lost with it.
/// Ends with an error when a write fails, when the peer closes first, or
/// when it has not said it is alive (it sends heartbeats back) for a tick
/// time — while frames are in flight as much as while they are written.
async fn send_data(link: Link<DataLinkMsg>, rx: &mut mpsc::Receiver<Bytes>) -> Result<(), String> {
    let Link { reader, mut writer, .. } = link;
    let heard = CancellationToken::new();
    let listen = tokio::spawn(listen(reader, heard.clone()));
    let written = async {
        while let Some(frame) = rx.recv().await {
            let mut result = writer.feed_encoded(&frame).await;
            // Send everything queued in one flush.
            while result.is_ok() {
                match rx.try_recv() {
                    Ok(more) => result = writer.feed_encoded(&more).await,
                    Err(_) => break,
                }
            }
            result.and(writer.flush().await).map_err(|e| e.to_string())?;
        }
        writer.write(&DataLinkMsg::Bye).await.map_err(|e| e.to_string())
    };
    let peer_end = |joined: Result<PeerEnd, tokio::task::JoinError>| joined.unwrap_or_else(|e| PeerEnd::Lost(e.to_string()));
    tokio::select! {
        w = written => {
            w?;
            // The writer stays open until the peer closes: then nothing of
            // ours is left unread on either side.
            match peer_end(listen.await) {
                PeerEnd::Closed => Ok(()),
                PeerEnd::Lost(why) => Err(why),
            }
        }
        _ = heard.cancelled() => match peer_end(listen.await) {
            PeerEnd::Closed => Err("it closed the connection before it had every frame".into()),
            PeerEnd::Lost(why) => Err(why),
        },
    }
}

/// How the receiving end of a data link ended, as its sender heard it.
#[derive(Debug)]
enum PeerEnd {
    /// It closed its end (or said goodbye): it read every frame before.
    Closed,
    /// The connection broke or the peer went silent, with why.
    Lost(String),
}

/// Reads the heartbeats the receiving end of a data link sends until it
/// closes or is lost; cancels `ended` then.
async fn listen(mut reader: Reader<DataLinkMsg>, ended: CancellationToken) -> PeerEnd {
    let _ended = ended.drop_guard();
    let tick = crate::settings::tick::tick();
    loop {
        match tokio::time::timeout(tick, reader.read()).await {
            Err(_) => return PeerEnd::Lost(format!("it was silent for {} (the tick time)", crate::settings::seconds(tick))),
            Ok(Ok(Some(msg))) if msg.is_heartbeat() => {}
            Ok(Ok(Some(msg))) if msg.is_bye() => return PeerEnd::Closed,
            Ok(Ok(Some(other))) => return PeerEnd::Lost(format!("it sent {} on a data link", other.kind())),
            Ok(Ok(None)) => return PeerEnd::Closed,
            Ok(Err(e)) => return PeerEnd::Lost(e.to_string()),
        }
    }
}

impl Remote for WorkerRemote {
    fn send(&self, worker: usize, stage: usize, instance: usize, from: u32, msg: Msg, ended: &CancellationToken) -> Result<(), FlowError> {
        let (stage, instance) = (stage as u32, instance as u32);
        let frame = match msg {
            Msg::Records(port, records) => {
                postcard::to_allocvec(&RecordsFrame { id: self.id, stage, instance, from, port, records: &records }).map_err(
                    // The encoder keeps no message of its own errors: name
                    // the record that cannot travel, and why.
                    |e| {
                        FlowError::Remote(
                            records.iter().find_map(|r| Value::from_dynamic(r).err()).map_or_else(|| e.to_string(), |why| why.to_string()),
                        )
                    },
                )?
            }
            other => encode(&DataLinkMsg::Data { id: self.id, stage, instance, from, msg: to_wire(other)? }),
        };
        if frame.len() > MAX_FRAME {
            return Err(FlowError::Remote(format!(
                "a batch of {} MiB is larger than a frame ({} MiB)",
                frame.len() >> 20,
                MAX_FRAME >> 20
            )));
        }
        let link = self.link(worker)?;
        channel::send(&self.handle, &link, Bytes::from(frame), ended).map_err(|why| match why {
            Unsent::Ended => FlowError::Ended,
            Unsent::Closed => FlowError::Remote(format!("the data link to worker {} is closed", self.peers[worker].name)),
        })
    }

    fn collect(&self, sink: &str, records: &[Dynamic], ended: &CancellationToken) -> Result<(), FlowError> {
        let values = to_values(records).map_err(|e| FlowError::Remote(e.to_string()))?;
        for chunk in chunks(values, DATA_CHUNK)? {
            self.to_master(encode(&ControlMsg::Collected { id: self.id, sink: sink.to_string(), values: chunk }), ended)?;
        }
        Ok(())
    }

    fn write_lines(&self, node: usize, text: String, ended: &CancellationToken) -> Result<(), FlowError> {
        for piece in pieces(&text, DATA_CHUNK) {
            self.to_master(encode(&ControlMsg::Lines { id: self.id, node: node as u32, text: piece.to_string() }), ended)?;
        }
        Ok(())
    }

    fn print(&self, text: String, ended: &CancellationToken) -> Result<(), FlowError> {
        for piece in pieces(&text, DATA_CHUNK) {
            self.to_master(encode(&ControlMsg::Output { id: Some(self.id), text: piece.to_string() }), ended)?;
        }
        Ok(())
    }
}

fn to_wire(msg: Msg) -> Result<crate::net::message::DataMsg, FlowError> {
    use crate::net::message::DataMsg;
    let plain = |v: &Dynamic| Value::from_dynamic(v).map_err(|e| FlowError::Remote(e.to_string()));
    Ok(match msg {
        Msg::Records(port, records) => DataMsg::Records(port, records.iter().map(plain).collect::<Result<_, _>>()?),
        // Lines cross as text records: the peer makes its own strings anyway.
        Msg::Lines(port, lines) => DataMsg::Records(port, lines.lines().map(|l| Value::Str(l.into())).collect()),
        Msg::Keyed(port, pairs) => {
            DataMsg::Keyed(port, pairs.iter().map(|(k, v)| Ok((plain(&k.value)?, plain(v)?))).collect::<Result<_, FlowError>>()?)
        }
        Msg::Counts(counts) => DataMsg::Counts(counts.iter().map(|(k, n)| Ok((plain(&k.value)?, *n))).collect::<Result<_, FlowError>>()?),
        Msg::Barrier(b) => DataMsg::Barrier(b.id),
        Msg::Watermark(wm) => DataMsg::Watermark(wm),
        Msg::Idle => DataMsg::Idle,
        Msg::End => DataMsg::End,
    })
}

/// Values grouped so that each group encodes to about `max` bytes at most;
/// a value too large for any frame is refused, with its size.
pub fn chunks(values: Vec<Value>, max: usize) -> Result<Vec<Vec<Value>>, FlowError> {
    let mut out = Vec::new();
    let (mut current, mut size) = (Vec::new(), 0);
    for v in values {
        let len = encoded_len(&v);
        if len + FRAME_OVERHEAD > MAX_FRAME {
            return Err(FlowError::Remote(format!(
                "a record of {} MiB cannot be sent to the master: a frame holds at most {} MiB",
                len >> 20,
                MAX_FRAME >> 20
            )));
        }
        if size + len > max && !current.is_empty() {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.push(v);
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

/// `text` cut into pieces of at most `max` bytes, at line ends where it
/// can be and at character boundaries where a line is longer.
pub fn pieces(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = rest[..max].rfind('\n').map(|i| i + 1).unwrap_or(0);
        if cut == 0 {
            cut = (1..=max).rev().find(|&c| rest.is_char_boundary(c)).unwrap_or(max);
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::message::DataMsg;
    use crate::net::Role;

    /// Two ends of an authenticated data link on loopback.
    async fn data_link() -> (Link<DataLinkMsg>, Link<DataLinkMsg>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let id = |role, name: &str| Identity::new(role, name, &crate::net::Cookie::for_tests("c"));
        let receiver = id(Role::Worker, "receiver@h");
        let accepting = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            handshake::accept(stream, &receiver, &[Role::Peer]).await.map_err(|r| r.error.to_string())
        });
        let sender = handshake::dial(&addr, &id(Role::Peer, "sender@h")).await.unwrap();
        let receiver = accepting.await.unwrap().unwrap();
        (sender.into_link(Duration::from_secs(5)), receiver.into_link(Duration::from_secs(5)))
    }

    fn frame(i: u32) -> Bytes {
        Bytes::from(encode(&DataLinkMsg::Data {
            id: 1,
            stage: 0,
            instance: i,
            from: 0,
            msg: DataMsg::Records(0, vec![Value::Str("x".repeat(10_000).into())]),
        }))
    }

    /// Issue 25: a sender that had written everything closed its socket
    /// while the receiver's heartbeats sat unread in it; the kernel reset
    /// the connection, and the receiver's kernel threw away the frames its
    /// busy reader had not taken yet. The sender now waits until the
    /// receiver has read the goodbye and closed.
    #[tokio::test]
    async fn a_busy_receiver_gets_every_frame_and_the_goodbye() {
        let (sender, mut receiver) = data_link().await;
        let (tx, mut rx) = mpsc::channel(LINK_QUEUE);
        for i in 0..40 {
            tx.send(frame(i)).await.unwrap();
        }
        drop(tx);
        // The receiver says it is alive, but its operators are busy: it
        // reads nothing for a while.
        receiver.writer.write(&DataLinkMsg::Heartbeat).await.unwrap();
        let sending = tokio::spawn(async move { send_data(sender, &mut rx).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!sending.is_finished(), "the sender waits for the receiver to read and close");
        let mut got = Vec::new();
        loop {
            match receiver.reader.read().await {
                Ok(Some(DataLinkMsg::Data { instance, .. })) => got.push(instance),
                Ok(Some(DataLinkMsg::Bye)) => break,
                other => panic!("after {} frames: {other:?}", got.len()),
            }
        }
        assert_eq!(got, (0..40).collect::<Vec<_>>());
        drop(receiver);
        assert_eq!(sending.await.unwrap(), Ok(()));
    }

    /// A receiver that closes before the goodbye fails the sender's side,
    /// saying so.
    #[tokio::test]
    async fn a_receiver_that_closes_early_is_an_error_for_the_sender() {
        let (sender, receiver) = data_link().await;
        let (tx, mut rx) = mpsc::channel(LINK_QUEUE);
        tx.send(frame(0)).await.unwrap();
        let sending = tokio::spawn(async move { send_data(sender, &mut rx).await });
        drop(receiver);
        let err = tokio::time::timeout(Duration::from_secs(5), sending).await.unwrap().unwrap().unwrap_err();
        assert!(err.contains("closed the connection") || err.contains("reset"), "{err}");
        drop(tx);
    }

    #[test]
    fn text_is_cut_at_line_ends_and_nothing_is_lost() {
        let text = "aaaa\nbbbb\ncccccccccccc\né\n";
        let parts = pieces(text, 6);
        assert!(parts.iter().all(|p| p.len() <= 6), "{parts:?}");
        assert_eq!(parts.concat(), text);
        assert_eq!(parts[0], "aaaa\n");
    }

    #[test]
    fn values_are_grouped_below_the_chunk_size_and_a_huge_one_is_refused() {
        let values: Vec<Value> = (0..100).map(|i| Value::Str(format!("{i:0>100}").into())).collect();
        let groups = chunks(values.clone(), 1000).unwrap();
        assert!(groups.len() >= 10);
        assert!(groups.iter().all(|g| encoded_len(g) <= 1000 + 110));
        assert_eq!(groups.concat(), values);
        let huge = vec![Value::Str("x".repeat(MAX_FRAME).into())];
        assert!(chunks(huge, 1000).unwrap_err().to_string().contains("cannot be sent to the master"));
    }
}
