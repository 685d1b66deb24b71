//! What each operator does to a batch. A [`Step`] is one node of a stage
//! with its state; it returns what it emits per output port and leaves
//! moving records on to the stage.

use std::sync::Arc;

use rhai::{Array, Dynamic};
use tokio_util::sync::CancellationToken;

use super::call::{Callee, Calls};
use super::error::{script_error, shown, FlowError};
use super::native::Computed;
use super::sink::{FileSink, Results};
use super::snapshot::{keyed, NodeState, Taken};
use super::user_op::UserStep;
use super::Outputs;
use super::Remote;
use crate::net::value::Value;
use crate::script::Output;
use crate::workflow::key::{Key, KeyMap};
use crate::workflow::SourceSpec;

/// A sink's remote error, as the sink's.
fn in_operator(name: &str, e: FlowError) -> FlowError {
    match e {
        FlowError::Remote(reason) => FlowError::Operator { operator: name.to_string(), reason },
        other => other,
    }
}

/// Where `inspect` prints: here, or on the master.
pub enum Printer {
    Local(Output),
    Remote(Arc<dyn Remote>),
}

/// Where a line sink writes: a file this process owns, or the master's
/// (the node's index names it there); under checkpoints, lines wait here
/// for the next barrier, which takes them into the checkpoint, and are
/// written out when it completes.
pub enum LineSink {
    File(Arc<FileSink>),
    Remote(Arc<dyn Remote>, usize),
    Pending(Vec<u8>),
}

/// Where a `collect()` instance puts records: here, or with the master;
/// under checkpoints, they wait for the next barrier as lines do.
pub enum CollectSink {
    Local(Arc<Results>),
    Remote(Arc<dyn Remote>, String),
    Pending(Vec<Dynamic>),
}

/// What a per-record node made of one record.
pub enum One {
    /// One record for output port 0.
    Emit(Dynamic),
    /// A record a filter rejected: for output port 1.
    Reject(Dynamic),
    /// Records for output port 0, in order.
    Many(Array),
}

/// One node of a stage, with its state.
pub enum Step {
    Source(SourceSpec),
    Map(Callee),
    FlatMap(Callee),
    Filter(Callee),
    KeyedReduce { reduce: Callee, initial: Dynamic, state: KeyMap<Dynamic> },
    Count { counts: KeyMap<i64> },
    Print { prefix: String, printer: Printer },
    WriteLines(LineSink),
    Collect(CollectSink),
    RedisSink(super::redis::Writer),
    NatsSink(super::nats::Writer),
    KafkaSink(super::kafka::Writer),
    User(UserStep),
    EventTime(super::event_time::EventTimeStep),
    Window(Box<super::window::WindowStep>),
}

impl Step {
    /// Whether the node calls a function per record (its output then moves
    /// on in small chunks, while still in the cache).
    pub fn per_record(&self) -> bool {
        matches!(self, Step::Map(_) | Step::FlatMap(_) | Step::Filter(_))
    }

    pub fn is_keyed(&self) -> bool {
        match self {
            Step::Count { .. } | Step::KeyedReduce { .. } | Step::Window(_) => true,
            Step::User(u) => u.is_keyed(),
            _ => false,
        }
    }

    /// Runs a per-record node (`map`, `flat_map`, `filter`) on one record.
    pub fn one(&mut self, calls: &Calls, name: &str, rec: Dynamic) -> Result<One, FlowError> {
        let wrong = |reason: String| FlowError::Operator { operator: name.to_string(), reason };
        match self {
            Step::Map(f) => match calls.call_with(f, [&rec]) {
                Ok(v) => Ok(One::Emit(v)),
                Err(e) => Err(script_error(name, Some(&rec), &e)),
            },
            Step::FlatMap(f) => match calls.call_with(f, [&rec]) {
                Ok(v) => match v.try_cast::<Array>() {
                    Some(items) => Ok(One::Many(items)),
                    None => Err(wrong(format!("the function must return an array (records to emit), on record {}", shown(&rec)))),
                },
                Err(e) => Err(script_error(name, Some(&rec), &e)),
            },
            Step::Filter(f) => match calls.call_test(f, &rec) {
                Ok(Ok(true)) => Ok(One::Emit(rec)),
                Ok(Ok(false)) => Ok(One::Reject(rec)),
                Ok(Err(t)) => Err(wrong(format!("the function must return a bool, got {t} on record {}", shown(&rec)))),
                Err(e) => Err(script_error(name, Some(&rec), &e)),
            },
            _ => Err(FlowError::Internal(format!("`{name}` does not run record by record"))),
        }
    }

    /// Runs the node `name` on a batch for its input port `port`; returns
    /// the records for each output port.
    pub fn apply(
        &mut self,
        calls: &Calls,
        name: &str,
        port: usize,
        batch: Vec<Dynamic>,
        ended: &CancellationToken,
    ) -> Result<Outputs, FlowError> {
        match self {
            Step::Source(_) => Ok(vec![batch]),
            Step::Map(_) | Step::FlatMap(_) | Step::Filter(_) => {
                Err(FlowError::Internal(format!("`{name}` calls a function per record and runs through its stage's chain")))
            }
            Step::Print { prefix, printer } => {
                let mut text = String::with_capacity(batch.len() * 24);
                for rec in &batch {
                    use std::fmt::Write as _;
                    let _ = writeln!(text, "{prefix}{rec:?}"); // Writing to a String cannot fail.
                }
                match printer {
                    Printer::Local(output) => output(&text),
                    Printer::Remote(remote) => remote.print(text, ended).map_err(|e| in_operator(name, e))?,
                }
                Ok(vec![batch])
            }
            Step::WriteLines(sink) => {
                let mut text = String::with_capacity(batch.len() * 16);
                for rec in &batch {
                    // A string as it is; anything else as Rhai shows it.
                    match rec.read_lock::<rhai::ImmutableString>() {
                        Some(line) => text.push_str(&line),
                        None => {
                            use std::fmt::Write as _;
                            let _ = write!(text, "{rec}"); // Writing to a String cannot fail.
                        }
                    }
                    text.push('\n');
                }
                match sink {
                    LineSink::File(file) => file.write(text.as_bytes())?,
                    LineSink::Remote(remote, node) => remote.write_lines(*node, text, ended).map_err(|e| in_operator(name, e))?,
                    LineSink::Pending(pending) => pending.extend_from_slice(text.as_bytes()),
                }
                Ok(Vec::new())
            }
            Step::Collect(CollectSink::Local(sink)) => {
                sink.extend(name, batch)?;
                Ok(Vec::new())
            }
            Step::Collect(CollectSink::Pending(pending)) => {
                pending.extend(batch);
                Ok(Vec::new())
            }
            Step::RedisSink(writer) => {
                writer.write(name, &batch)?;
                Ok(Vec::new())
            }
            Step::NatsSink(writer) => {
                writer.write(name, &batch)?;
                Ok(Vec::new())
            }
            Step::KafkaSink(writer) => {
                writer.write(name, &batch)?;
                Ok(Vec::new())
            }
            Step::Collect(CollectSink::Remote(remote, sink)) => {
                remote.collect(sink, &batch, ended).map_err(|e| in_operator(name, e))?;
                Ok(Vec::new())
            }
            Step::User(u) if !u.is_keyed() => u.apply(calls, name, port, batch),
            Step::EventTime(e) => {
                e.apply(calls, name, &batch)?;
                Ok(vec![batch])
            }
            Step::KeyedReduce { .. } | Step::Count { .. } | Step::User(_) | Step::Window(_) => {
                // Keyed nodes are stage heads and get keyed input; a
                // record that comes without its key is its own key.
                let pairs = batch.into_iter().map(|r| (Key::new(r.clone()), r)).collect();
                self.apply_keyed(calls, name, port, pairs)
            }
        }
    }

    /// Runs a keyed node on records that come with their keys; returns what
    /// it emits on each output port.
    pub fn apply_keyed(&mut self, calls: &Calls, name: &str, port: usize, pairs: Vec<(Key, Dynamic)>) -> Result<Outputs, FlowError> {
        match self {
            Step::Count { counts } => {
                for (key, _) in pairs {
                    *counts.entry(key).or_insert(0) += 1;
                }
                Ok(Vec::new())
            }
            Step::User(u) => u.apply_keyed(calls, name, port, pairs),
            Step::Window(w) => w.apply_keyed(calls, name, pairs),
            Step::KeyedReduce { reduce, initial, state } => {
                let mut out = Vec::new();
                for (key, rec) in super::warm::in_runs(pairs) {
                    // One look-up: the key's state is taken from its place and
                    // the new one put there.
                    let place = state.entry(key).or_insert_with(|| initial.clone());
                    let current = std::mem::replace(place, Dynamic::UNIT);
                    let result = calls.call_reduce(reduce, current, &rec).map_err(|e| script_error(name, Some(&rec), &e))?;
                    let pair = match result {
                        Computed::Two(pair) => Some(pair),
                        Computed::One(value) => value.try_cast::<Array>().and_then(|pair| <[Dynamic; 2]>::try_from(pair).ok()),
                    };
                    match pair {
                        Some([new, emit]) => {
                            *place = new;
                            if !emit.is_unit() {
                                out.push(emit);
                            }
                        }
                        None => {
                            return Err(FlowError::Operator {
                                operator: name.into(),
                                reason: format!("the reduce function must return [new_state, emitted], on record {}", shown(&rec)),
                            })
                        }
                    }
                }
                Ok(vec![out])
            }
            _ => Err(FlowError::Internal(format!("operator `{name}` is not keyed but got keyed records"))),
        }
    }

    /// Adds partial counts to a `count` node.
    pub fn add_counts(&mut self, name: &str, partial: Vec<(Key, i64)>) -> Result<(), FlowError> {
        let Step::Count { counts } = self else {
            return Err(FlowError::Internal(format!("operator `{name}` is not a count but got counts")));
        };
        for (key, n) in partial {
            *counts.entry(key).or_insert(0) += n;
        }
        Ok(())
    }

    /// What the node emits once its inputs have ended (a count's totals, a
    /// user operator's end callback), per output port.
    pub fn finish(&mut self, calls: &Calls, name: &str) -> Result<Outputs, FlowError> {
        match self {
            // The counts stay: a checkpoint taken at the end keeps them.
            Step::Count { counts } => {
                Ok(vec![counts.iter().map(|(k, n)| Dynamic::from_array(vec![k.value.clone(), Dynamic::from_int(*n)])).collect()])
            }
            Step::User(u) => u.finish(calls, name),
            _ => Ok(Vec::new()),
        }
    }

    /// The watermark moved to `wm` before this node (infinite: its input
    /// ended): what it emits now (windows it closes, timers that fire).
    pub fn on_watermark(&mut self, calls: &Calls, name: &str, wm: f64) -> Result<Outputs, FlowError> {
        match self {
            Step::Window(w) => Ok(w.on_watermark(wm)),
            Step::User(u) => u.on_watermark(calls, name, wm),
            _ => Ok(Vec::new()),
        }
    }

    /// When the node wants the clock's attention (seconds since the epoch):
    /// a timer of the clock, a window on processing time ending, an
    /// `event_time` going idle.
    pub fn wake(&self) -> Option<f64> {
        match self {
            Step::User(u) => u.wake(),
            Step::Window(w) => w.wake(),
            Step::EventTime(e) => e.wake(),
            _ => None,
        }
    }

    /// The clock reached `now`: what the node emits (timers of the clock
    /// that fire, windows on processing time that close).
    pub fn on_clock(&mut self, calls: &Calls, name: &str, now: f64) -> Result<Outputs, FlowError> {
        match self {
            Step::User(u) => u.on_clock(calls, name, now),
            Step::Window(w) => Ok(w.on_clock(now)),
            _ => Ok(Vec::new()),
        }
    }

    /// Whether the node (an `event_time`) has had no record for its `idle`
    /// seconds by `now` (once, until it has one again).
    pub fn idle_due(&mut self, now: f64) -> bool {
        match self {
            Step::EventTime(e) => e.idle_due(now),
            _ => false,
        }
    }

    /// Whether the node (an `event_time`) had records again since it was idle.
    pub fn resumed(&mut self) -> bool {
        match self {
            Step::EventTime(e) => e.take_resumed(),
            _ => false,
        }
    }

    /// The output port of records too late for the node's windows.
    pub fn late_port(&self) -> Option<usize> {
        matches!(self, Step::Window(_)).then_some(1)
    }

    /// The watermark this node makes (an `event_time`'s), if it makes one.
    pub fn watermark(&self) -> Option<f64> {
        match self {
            Step::EventTime(e) => Some(e.watermark()),
            _ => None,
        }
    }
}

impl Step {
    /// The node's state for a checkpoint: a clone of what it keeps, and
    /// what a sink was given since the last barrier (moved out).
    pub fn take(&mut self) -> Taken {
        match self {
            Step::KeyedReduce { state, .. } => Taken::Reduce(state.iter().map(|(k, v)| (k.value.clone(), v.clone())).collect()),
            Step::Count { counts } => Taken::Count(counts.iter().map(|(k, n)| (k.value.clone(), *n)).collect()),
            Step::User(u) => u.take(),
            // The next checkpoint's lines get room for as many as this one's
            // (growing a buffer by doubling copies it again and again), in a
            // buffer an earlier checkpoint wrote out when there is one.
            Step::WriteLines(LineSink::Pending(pending)) => {
                let room = pending.len() + pending.len() / 8;
                Taken::Lines(std::mem::replace(pending, super::snapshot::lines_buffer(room)))
            }
            Step::Collect(CollectSink::Pending(pending)) => Taken::Collected(std::mem::take(pending)),
            Step::EventTime(e) => e.take(),
            Step::Window(w) => w.take(),
            _ => Taken::Nothing,
        }
    }

    /// Puts back the state a checkpoint saved (output saved with it was
    /// written out before the restore: it is not pending again).
    pub fn restore(&mut self, name: &str, state: NodeState) -> Result<(), FlowError> {
        match (self, state) {
            (Step::KeyedReduce { state, .. }, NodeState::Reduce(pairs)) => state.extend(keyed(pairs)),
            (Step::Count { counts }, NodeState::Count(pairs)) => {
                counts.extend(pairs.into_iter().map(|(k, n)| (Key::new(k.into_dynamic()), n)));
            }
            (Step::User(u), NodeState::User { state, keyed: pairs }) => {
                u.restore(state.map(|v| v.into_dynamic()), keyed(pairs), Vec::new())
            }
            (Step::User(u), NodeState::UserTimed { state, keyed: pairs, timers }) => {
                let timers = timers.into_iter().map(|(k, t, clock)| (k.map(Value::into_dynamic), t, clock)).collect();
                u.restore(state.map(|v| v.into_dynamic()), keyed(pairs), timers)
            }
            (Step::EventTime(e), NodeState::Time(max)) => e.restore(max),
            (Step::Window(w), NodeState::Windows(state)) => w.restore(super::snapshot::WindowState {
                watermark: state.watermark,
                windows: state.windows.into_iter().map(|(k, s, e, v, f)| (k.into_dynamic(), s, e, v.into_dynamic(), f)).collect(),
            }),
            (_, NodeState::Nothing | NodeState::Collected(_) | NodeState::Position(_)) => {}
            (_, other) => {
                return Err(FlowError::Operator {
                    operator: name.to_string(),
                    reason: format!("the checkpoint holds a state of another kind for it ({})", kind(&other)),
                })
            }
        }
        Ok(())
    }
}

fn kind(state: &NodeState) -> &'static str {
    match state {
        NodeState::Nothing => "none",
        NodeState::Position(_) => "a source's position",
        NodeState::Reduce(_) => "a keyed_reduce's",
        NodeState::Count(_) => "a count's",
        NodeState::User { .. } | NodeState::UserTimed { .. } => "an operator's `this`",
        NodeState::Collected(_) => "collected records",
        NodeState::Time(_) => "an event_time's",
        NodeState::Windows(_) => "a window's",
    }
}
