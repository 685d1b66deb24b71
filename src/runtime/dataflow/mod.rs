//! Running a planned workflow: one thread per stage instance, bounded
//! channels of batches between stages, explicit end-of-stream markers on every
//! edge. Instances are threads, not tokio tasks: they are CPU-bound loops, and
//! tokio's scheduler keeps a woken consumer on its producer's worker (its LIFO
//! slot), which left one of two cores idle in the word count. The channels are
//! tokio's, so network tasks can feed the same inboxes asynchronously.
//!
//! The parts: [`wiring`] builds a workflow's instances and starts them;
//! [`stage`] is the loop one instance runs; [`operators`] what each node
//! does to a batch; [`exchange`] how records leave for another stage;
//! [`source`] and [`sink`] the edges of the graph; [`call`] calls script
//! functions; [`channel`] waits on channels without outliving the workflow;
//! [`running`] is the workflow as the runtime sees it.
//!
//! Every record either reaches its sink or the workflow fails with a
//! [`FlowError`] naming what happened: nothing is dropped quietly.

mod align;
pub mod barriers;
mod call;
pub mod channel;
pub mod deadline;
mod error;
mod event_time;
mod exchange;
mod kafka;
mod layout;
mod lines;
mod meter;
mod native;
mod nats;
mod operators;
mod placement;
mod redis;
mod running;
pub mod sink;
pub mod snapshot;
pub mod source;
mod stage;
mod stage_source;
mod stage_time;
mod user_op;
mod warm;
mod window;
mod wiring;

use rhai::Dynamic;
use tokio_util::sync::CancellationToken;

pub use error::FlowError;
pub use layout::Layout;
pub use placement::{place, Placement};
pub use running::{running_note, Running};
pub use wiring::{start, Part, Resume};

use crate::workflow::key::Key;

/// Records per batch: large enough to amortize a channel send, small enough
/// to keep latency and memory low.
pub const BATCH: usize = 1024;
/// Batches a stage instance's inbox holds before senders wait (back-pressure).
pub const INBOX_BATCHES: usize = 8;
/// Records a per-record function runs on before its output moves on.
const CHUNK: usize = 32;
/// How often an idle `tcp_source` looks up to see whether it should stop.
const TCP_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The records each output port of a node emitted.
pub type Outputs = Vec<Vec<rhai::Dynamic>>;

/// What travels on an edge between stages.
#[derive(Debug)]
pub enum Msg {
    /// Records for the target's input port number `.0`.
    Records(u32, Vec<Dynamic>),
    /// A line source's lines for the target's input port number `.0`,
    /// made into records by the target.
    Lines(u32, lines::LineBlock),
    /// Records routed by key, with the key computed once by the sender.
    Keyed(u32, Vec<(Key, Dynamic)>),
    /// Partial counts per key, for a `count`: the sender combines records of
    /// the same key before they cross.
    Counts(Vec<(Key, i64)>),
    /// Checkpoint `.0.id`: what the sender sent before it is covered by
    /// the checkpoint, what follows it is not.
    Barrier(Barrier),
    /// The sender's watermark: no record it sends from now on has an
    /// earlier event time (as far as it knows).
    Watermark(f64),
    /// The sender's `event_time` has seen no record for its `idle`
    /// seconds: it holds no window back until its next watermark.
    Idle,
    /// The sender of one edge has no more records.
    End,
}

/// A checkpoint's marker in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Barrier {
    pub id: u64,
}

/// What an inbox receives: a message and the input channel it came on
/// (one channel per upstream instance and edge, numbered by the receiver's
/// stage: see `wiring::channel_base`).
pub type Delivery = (u32, Msg);

impl Msg {
    /// The same records, for input port `port` of the target.
    pub fn to_port(self, port: u32) -> Msg {
        match self {
            Msg::Records(_, r) => Msg::Records(port, r),
            Msg::Lines(_, l) => Msg::Lines(port, l),
            Msg::Keyed(_, r) => Msg::Keyed(port, r),
            other => other,
        }
    }
}

/// How records leave this process: the cluster's data links and the path
/// to the master for what sinks on the master's host receive. Every call
/// waits while its link is full, but not past `ended`.
pub trait Remote: Send + Sync {
    /// Sends to instance `instance` of stage `stage` on worker `worker`,
    /// as its input channel `from`.
    fn send(&self, worker: usize, stage: usize, instance: usize, from: u32, msg: Msg, ended: &CancellationToken) -> Result<(), FlowError>;
    /// Hands what a `collect()` sink received to the master.
    fn collect(&self, sink: &str, records: &[Dynamic], ended: &CancellationToken) -> Result<(), FlowError>;
    /// Hands lines for the `write_lines` node `node` to the master, which writes the file.
    fn write_lines(&self, node: usize, text: String, ended: &CancellationToken) -> Result<(), FlowError>;
    /// Hands what `inspect` printed to the master.
    fn print(&self, text: String, ended: &CancellationToken) -> Result<(), FlowError>;
}

/// What a source read and records as done once the workflow's sinks have
/// settled (or, under checkpoints, once the checkpoint that covers it is
/// durable): entries acknowledged, a position saved.
pub trait Acknowledge: Send + Sync {
    /// Records everything read so far as done; returns how much.
    fn commit(&self) -> Result<u64, String>;
    /// Notes what was read so far as checkpoint `id`'s (the source passed
    /// its barrier).
    fn mark(&self, id: u64);
    /// Records what was read up to checkpoint `id`'s mark as done (it is
    /// durable); returns how much.
    fn commit_to(&self, id: u64) -> Result<u64, String>;
}

/// The marks of checkpoints not yet durable, each with what a source had
/// read by then (`T`): the newest mark at or below a durable checkpoint's
/// is what may be acknowledged.
#[derive(Debug)]
pub struct Marks<T>(Vec<(u64, T)>);

impl<T> Default for Marks<T> {
    fn default() -> Self {
        Marks(Vec::new())
    }
}

impl<T> Marks<T> {
    pub fn mark(&mut self, id: u64, read: T) {
        self.0.push((id, read));
    }

    /// What was read by checkpoint `id` (dropping its mark and older ones).
    pub fn take_to(&mut self, id: u64) -> Option<T> {
        let pos = self.0.iter().rposition(|(m, _)| *m <= id)?;
        self.0.drain(..=pos).last().map(|(_, t)| t)
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.0.iter_mut().map(|(_, t)| t)
    }
}

/// Where a broker source starts: how long a failing broker is retried,
/// and the mark of the checkpoint it resumes from (none: where the broker
/// says).
pub struct BrokerStart {
    pub retry: std::time::Duration,
    pub covered: Option<String>,
}

/// Runs `f` to its end from any thread: an instance's, or a task of the
/// runtime's (settling), which gives its worker up meanwhile. Broker
/// clients are async; sources and sinks run on instance threads.
fn block<F: std::future::Future>(handle: &tokio::runtime::Handle, f: F) -> F::Output {
    if tokio::task::try_id().is_some() {
        tokio::task::block_in_place(|| handle.block_on(f))
    } else {
        handle.block_on(f)
    }
}

/// A record as a broker message's (or field's) bytes: text as it is, a blob
/// as its bytes, anything else as it prints.
fn bytes(v: &Dynamic) -> Vec<u8> {
    if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
        return s.as_bytes().to_vec();
    }
    if let Some(b) = v.read_lock::<rhai::Blob>() {
        return b.clone();
    }
    v.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::Marks;

    #[test]
    fn a_durable_checkpoint_takes_its_mark_and_the_older_ones() {
        let mut m = Marks::default();
        m.mark(1, 10);
        m.mark(2, 25);
        m.mark(3, 40);
        assert_eq!(m.take_to(2), Some(25));
        assert_eq!(m.take_to(2), None, "taken once");
        assert_eq!(m.take_to(9), Some(40), "a later checkpoint covers what an earlier mark did");
        assert_eq!(m.take_to(9), None);
    }
}
