//! What an instance keeps in a checkpoint. An instance takes its state on
//! its own thread as Rhai values (a cheap clone: strings are shared) and
//! goes on at once; turning it into plain data and bytes happens elsewhere
//! ([`InstanceTaken::into_state`]). A restore hands each instance the
//! [`InstanceState`] it saved.

use rhai::Dynamic;
use serde::{Deserialize, Serialize};

use crate::net::value::Value;
use crate::workflow::key::Key;

/// Where a source instance was when it passed a barrier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Position {
    /// Items of a `stream_source([...])` handed out.
    Items(u64),
    /// The next value of a range.
    Range(i64),
    /// The index a generator is called with next.
    Generator(i64),
    /// A file, resumed at the byte after the last line read.
    File { offset: u64, line: u64 },
    /// A connection cannot be read again: what was sent while the workflow
    /// was down is not read.
    Unrewindable,
    /// A broker source's mark: what it had read (the last Redis entry id,
    /// the NATS sequence, the Kafka offsets). Acknowledged to the broker
    /// once the checkpoint is durable; a restore reads on from here
    /// whatever the broker was told.
    Broker(String),
}

/// One node's part of an instance's state, as taken on its thread.
#[derive(Clone, Debug)]
pub enum Taken {
    /// A node without state (`map`, `filter`, `inspect`, a broker sink).
    Nothing,
    Position(Position),
    Reduce(Vec<(Dynamic, Dynamic)>),
    Count(Vec<(Dynamic, i64)>),
    User {
        state: Option<Dynamic>,
        keyed: Vec<(Dynamic, Dynamic)>,
        /// Timers set: the key (none: the instance), the time, and whether
        /// it is of the clock (else of event time).
        timers: Vec<(Option<Dynamic>, f64, bool)>,
    },
    /// Lines a file sink was given since the last barrier: written out
    /// when the checkpoint completes.
    Lines(Vec<u8>),
    /// Records a `collect()` was given since the last barrier.
    Collected(Vec<Dynamic>),
    /// The largest time an `event_time` saw.
    Time(f64),
    /// A window operator's watermark and open windows.
    Windows {
        watermark: f64,
        windows: Vec<(Dynamic, f64, f64, Dynamic, bool)>,
    },
}

/// A window operator's watermark and its open windows: key, start, end,
/// value, and whether it was emitted already (kept for late records).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowState<V> {
    pub watermark: f64,
    pub windows: Vec<(V, f64, f64, V, bool)>,
}

/// One node's part of an instance's state, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum NodeState {
    Nothing,
    Position(Position),
    Reduce(Vec<(Value, Value)>),
    Count(Vec<(Value, i64)>),
    User {
        state: Option<Value>,
        keyed: Vec<(Value, Value)>,
    },
    Collected(Vec<Value>),
    Time(f64),
    Windows(WindowState<Value>),
    /// A user operator's state with the timers it set (a checkpoint of one
    /// without timers is `User`, as before timers existed).
    UserTimed {
        state: Option<Value>,
        keyed: Vec<(Value, Value)>,
        timers: Vec<(Option<Value>, f64, bool)>,
    },
}

/// What instance `instance` of stage `stage` took when it passed a
/// barrier, or when it ended.
#[derive(Clone, Debug)]
pub struct InstanceTaken {
    pub stage: usize,
    pub instance: usize,
    /// It had ended: restored, it ends at once (what it made is downstream).
    pub done: bool,
    /// Per node of the stage, in order.
    pub nodes: Vec<Taken>,
    /// From the first input's barrier to the last one's (zero for a
    /// source or an instance with one input).
    pub alignment: std::time::Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceState {
    pub stage: u32,
    pub instance: u32,
    pub done: bool,
    pub nodes: Vec<NodeState>,
}

/// A state that cannot be saved, naming the operator that holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operator `{operator}`: its state cannot be saved in a checkpoint: {reason}")]
pub struct Unsaveable {
    pub operator: String,
    pub reason: String,
}

impl InstanceTaken {
    /// The state as plain data; `names` are the stage's node names.
    pub fn into_state(self, names: &[String]) -> Result<InstanceState, Unsaveable> {
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for (i, taken) in self.nodes.into_iter().enumerate() {
            let name = names.get(i).map_or("?", String::as_str);
            let plain = |v: &Dynamic| {
                Value::from_dynamic(v).map_err(|e| Unsaveable { operator: name.to_string(), reason: without_travel(&e.to_string()) })
            };
            let pairs = |pairs: Vec<(Dynamic, Dynamic)>| -> Result<Vec<(Value, Value)>, Unsaveable> {
                pairs.iter().map(|(k, v)| Ok((plain(k)?, plain(v)?))).collect()
            };
            nodes.push(match taken {
                Taken::Nothing => NodeState::Nothing,
                Taken::Position(p) => NodeState::Position(p),
                Taken::Reduce(p) => NodeState::Reduce(pairs(p)?),
                Taken::Count(c) => NodeState::Count(c.iter().map(|(k, n)| Ok((plain(k)?, *n))).collect::<Result<_, Unsaveable>>()?),
                Taken::User { state, keyed, timers } if timers.is_empty() => {
                    NodeState::User { state: state.as_ref().map(plain).transpose()?, keyed: pairs(keyed)? }
                }
                Taken::User { state, keyed, timers } => NodeState::UserTimed {
                    state: state.as_ref().map(plain).transpose()?,
                    keyed: pairs(keyed)?,
                    timers: timers
                        .iter()
                        .map(|(k, t, c)| Ok((k.as_ref().map(plain).transpose()?, *t, *c)))
                        .collect::<Result<_, Unsaveable>>()?,
                },
                // Lines are saved beside the states (the checkpoint's `.lines`).
                Taken::Lines(_) => NodeState::Nothing,
                Taken::Collected(records) => NodeState::Collected(records.iter().map(plain).collect::<Result<_, _>>()?),
                Taken::Time(max) => NodeState::Time(max),
                Taken::Windows { watermark, windows } => NodeState::Windows(WindowState {
                    watermark,
                    windows: windows
                        .iter()
                        .map(|(k, s, e, v, f)| Ok((plain(k)?, *s, *e, plain(v)?, *f)))
                        .collect::<Result<_, Unsaveable>>()?,
                }),
            });
        }
        Ok(InstanceState { stage: self.stage as u32, instance: self.instance as u32, done: self.done, nodes })
    }
}

/// "cannot be sent to another node" reads wrong for a checkpoint.
fn without_travel(reason: &str) -> String {
    reason.replace("cannot be sent to another node", "cannot be saved").replace(" travels", " can be")
}

/// Buffers of lines a checkpoint has written out, kept for sinks to fill
/// again: a fresh buffer's pages are each a fault the first time they are
/// touched, which cost the running count a tenth of its time.
static SPARE: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// Spare buffers kept at most, and their bytes at most.
const SPARE_BUFFERS: usize = 16;
const SPARE_BYTES: usize = 256 << 20;

/// An empty buffer with room for `room` bytes, a spare one when there is one.
pub fn lines_buffer(room: usize) -> Vec<u8> {
    let mut spare = SPARE.lock().expect("spare lock");
    match spare.iter().position(|b| b.capacity() >= room) {
        Some(i) => spare.swap_remove(i),
        None => Vec::with_capacity(room),
    }
}

/// Keeps a buffer whose lines were written out, for [`lines_buffer`].
pub fn give_back(mut buffer: Vec<u8>) {
    buffer.clear();
    let mut spare = SPARE.lock().expect("spare lock");
    let held: usize = spare.iter().map(Vec::capacity).sum();
    if spare.len() < SPARE_BUFFERS && held + buffer.capacity() <= SPARE_BYTES {
        spare.push(buffer);
    }
}

/// Stored keyed pairs as keys and values again.
pub fn keyed(pairs: Vec<(Value, Value)>) -> impl Iterator<Item = (Key, Dynamic)> {
    pairs.into_iter().map(|(k, v)| (Key::new(k.into_dynamic()), v.into_dynamic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_in_a_state_is_refused_naming_the_operator() {
        let f = Dynamic::from(rhai::FnPtr::new("f").unwrap());
        let taken = InstanceTaken {
            stage: 1,
            instance: 0,
            done: false,
            nodes: vec![Taken::Nothing, Taken::User { state: Some(f), keyed: Vec::new(), timers: Vec::new() }],
            alignment: Default::default(),
        };
        let err = taken.into_state(&["m".into(), "tally".into()]).unwrap_err();
        assert_eq!(err.operator, "tally");
        assert!(err.to_string().starts_with("operator `tally`: its state cannot be saved in a checkpoint: a value of type"), "{err}");
        assert!(err.to_string().contains("cannot be saved"), "{err}");
    }

    #[test]
    fn plain_states_round_trip_through_bytes() {
        let taken = InstanceTaken {
            stage: 2,
            instance: 3,
            done: true,
            nodes: vec![
                Taken::Count(vec![(Dynamic::from("a"), 3)]),
                Taken::Reduce(vec![(Dynamic::from_int(1), Dynamic::from_array(vec![Dynamic::from("x")]))]),
                Taken::Lines(b"a 3\n".to_vec()),
                Taken::Position(Position::File { offset: 10, line: 2 }),
            ],
            alignment: Default::default(),
        };
        let state = taken.into_state(&["c".into(), "r".into(), "w".into(), "s".into()]).unwrap();
        let bytes = postcard::to_allocvec(&state).unwrap();
        assert_eq!(postcard::from_bytes::<InstanceState>(&bytes).unwrap(), state);
    }
}
