//! Operators: what a workflow node does, which ports it has and how it is
//! distributed. Pure data; the runtime executes it.

use std::fmt;
use std::path::PathBuf;

use rhai::{Dynamic, FnPtr};

/// How instances of an operator are spread over workers and slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// One reader per workflow; its records are spread over the next stage.
    Source,
    /// One instance per slot on every worker; data stays where it is.
    ImmutableLocal,
    /// Records are routed by a stable hash of their key into key groups;
    /// each group lives on exactly one instance, which owns its state.
    Keyed,
    /// One instance in the whole cluster: every record meets the same state.
    Single,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Source => "source",
            Strategy::ImmutableLocal => "immutable_local",
            Strategy::Keyed => "keyed",
            Strategy::Single => "single",
        }
    }
}

/// Where a strategy puts an operator's instances, when it says.
#[derive(Clone, Debug)]
pub enum Place {
    /// `f(workers)` returns `[#{ worker: name, instances: n }, ...]`.
    Func(Func),
    /// An instance per slot of every worker with the tag.
    Tagged(String),
}

/// An operator written in Rhai (`operator("name")...`): named ports, a
/// state (per instance, or per key under a keyed strategy) and a callback
/// per input port in which `this` is the state and `emit(port, value)`
/// sends on.
#[derive(Clone, Debug)]
pub struct UserOp {
    /// The operator's name: the kind of its nodes.
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub strategy: Strategy,
    /// The key of a record, under the keyed strategy.
    pub key: Option<Func>,
    /// Makes the initial state; without it the state is `()`.
    pub init: Option<Func>,
    /// The callback of each input port, in the order of `inputs`.
    pub on: Vec<Option<Func>>,
    /// Runs once all inputs have ended (once per key under a keyed strategy).
    pub on_end: Option<Func>,
    /// Runs when event time reaches a time a callback asked for with `timer(t)`.
    pub on_timer: Option<Func>,
    /// Where the instances go (otherwise: as the strategy says).
    pub place: Option<Place>,
    /// `route(record, port, instances)`: which instance gets a record
    /// (otherwise: as the strategy says).
    pub route: Option<Func>,
}

impl UserOp {
    pub fn new(name: &str) -> UserOp {
        UserOp {
            name: name.to_string(),
            inputs: vec!["in".into()],
            outputs: vec!["out".into()],
            strategy: Strategy::ImmutableLocal,
            key: None,
            init: None,
            on: vec![None],
            on_end: None,
            on_timer: None,
            place: None,
            route: None,
        }
    }
}

/// A function given to an operator: a named script function or a closure
/// (`anon$<hash>`), with the values it captured. It is resolved by name
/// against the code shipped with the workflow, never through a
/// process-local handle.
#[derive(Clone, Debug)]
pub struct Func {
    pub name: String,
    pub curry: Vec<Dynamic>,
}

impl Func {
    pub fn named(name: &str) -> Func {
        Func { name: name.to_string(), curry: Vec::new() }
    }

    pub fn from_ptr(f: &FnPtr) -> Func {
        Func { name: f.fn_name().to_string(), curry: f.curry().to_vec() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Where a source's records come from.
#[derive(Clone, Debug)]
pub enum SourceSpec {
    /// The elements of an array, in order.
    Items(Vec<Dynamic>),
    /// An integer range `start..end` with a step.
    Range { start: i64, end: i64, step: i64 },
    /// `f(0)`, `f(1)`, ... until `f` returns `()`; endless otherwise.
    Generator(Func),
    /// The lines of a text file; a line longer than `max_line` bytes fails the workflow.
    Lines { path: PathBuf, max_line: usize },
    /// The lines received on a TCP connection to `host:port`; a line longer
    /// than `max_line` bytes fails the workflow.
    Tcp { host: String, port: u16, max_line: usize },
    /// The entries of a Redis stream, read through consumer group `group`
    /// and acknowledged once the workflow's sinks have settled; a broker
    /// that fails is retried for `retry_ms` before the workflow fails.
    Redis { url: String, stream: String, group: String, retry_ms: u64 },
    /// The messages of `subject` in the JetStream stream `stream`, in order,
    /// from after the position saved under `durable` (saved once the
    /// workflow's sinks have settled).
    Nats { url: String, subject: String, stream: String, durable: String, retry_ms: u64 },
    /// The partitions of a Kafka topic, from the group's committed offsets.
    Kafka(KafkaSource),
}

/// `kafka_source`: where it reads and how.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KafkaSource {
    /// `host:port[,host:port...]`
    pub brokers: String,
    pub topic: String,
    /// The consumer group whose committed offsets it starts from and commits.
    pub group: String,
    /// Where a partition without a committed offset starts.
    pub start: KafkaStart,
    pub format: ValueFormat,
    /// Ends once every partition reached the end it had at the start.
    pub bounded: bool,
    /// How long a failing broker is retried before the workflow fails.
    pub retry_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KafkaStart {
    Earliest,
    Latest,
}

/// How a source gives keys and values: text when it is UTF-8 and a blob
/// otherwise, text or a failure naming the record, or always a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ValueFormat {
    Auto,
    Text,
    Blob,
}

/// `kafka_sink`: where it writes, and the fields of a map record that are
/// the Kafka key and value (the value: the whole record when not given).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KafkaSink {
    pub brokers: String,
    pub topic: String,
    pub key: Option<String>,
    pub value: Option<String>,
}

/// The longest line a line source takes by default: far more than a line of
/// text, and small enough that one bad line cannot take the node's memory.
pub const MAX_LINE: usize = 1024 * 1024;

/// The operator of one workflow node.
#[derive(Clone, Debug)]
pub enum Operator {
    Source(SourceSpec),
    Map(Func),
    FlatMap(Func),
    Filter(Func),
    KeyedReduce {
        key: Func,
        reduce: Func,
        initial: Dynamic,
    },
    Count {
        key: Option<Func>,
    },
    Print(String),
    /// One file at the path, on the master's host (locally: this host).
    WriteLines(PathBuf),
    /// One part file per instance in the directory, on each worker's host.
    WriteParts(PathBuf),
    Collect,
    /// Appends every record to a Redis stream (a map as its fields).
    RedisSink {
        url: String,
        stream: String,
    },
    /// Publishes every record to a NATS subject, acknowledged by its stream.
    NatsSink {
        url: String,
        subject: String,
    },
    /// Produces every record to a Kafka topic.
    KafkaSink(KafkaSink),
    User(Box<UserOp>),
    /// A built-in operator with a strategy given to it (`with_strategy`).
    With(Box<Restrategized>),
    /// Stamps records with their event time and sends watermarks on.
    EventTime(Box<super::time::EventTime>),
    /// Keyed windows over event time (`window`, `window_count`).
    Window(Box<WindowOp>),
}

/// `window(spec, key_fn, init_fn, fold_fn)` or `window_count(spec, key_fn)`.
#[derive(Clone, Debug)]
pub struct WindowOp {
    pub spec: super::time::WindowSpec,
    /// The record's key (none: the record is its own key).
    pub key: Option<Func>,
    /// What each window folds its records into (none: it counts them).
    pub fold: Option<Fold>,
    /// Seconds a window stays open past its end for late records, each of
    /// which emits it again.
    pub lateness: f64,
    /// The record's time: the function of the `event_time` upstream,
    /// found when the workflow is flattened.
    pub ts: Option<Func>,
}

/// A window's value: `init()`, then `fold(value, record)` per record;
/// `merge(a, b)` joins two sessions a record bridges.
#[derive(Clone, Debug)]
pub struct Fold {
    pub init: Func,
    pub fold: Func,
    pub merge: Option<Func>,
}

/// A built-in operator and the strategy it was given.
#[derive(Clone, Debug)]
pub struct Restrategized {
    pub op: Operator,
    pub strategy: Strategy,
    /// A key of its own (otherwise the operator's, if it has one).
    pub key: Option<Func>,
    pub place: Option<Place>,
    pub route: Option<Func>,
}

const IN: &[&str] = &["in"];
const NONE: &[&str] = &[];
const OUT: &[&str] = &["out"];
const FILTER_OUT: &[&str] = &["accept", "reject"];
const KAFKA_OUT: &[&str] = &["out", "reject"];
const WINDOW_OUT: &[&str] = &["out", "late"];

impl Operator {
    /// For a user operator with an input that has no callback: what is
    /// missing, and how to add it. Checked before it goes into a workflow.
    pub fn missing_callback(&self) -> Option<String> {
        let Operator::User(u) = self else { return None };
        let (port, _) = u.inputs.iter().zip(&u.on).find(|(_, f)| f.is_none())?;
        Some(format!("operator `{}`: input `{port}` has no callback: add .on(\"{port}\", |record| ...)", u.name))
    }

    /// The operator's kind, as used in automatic node names and messages.
    pub fn kind(&self) -> &str {
        match self {
            Operator::User(u) => &u.name,
            Operator::With(w) => w.op.kind(),
            Operator::Source(SourceSpec::Lines { .. }) => "read_lines",
            Operator::Source(SourceSpec::Tcp { .. }) => "tcp_source",
            Operator::Source(SourceSpec::Redis { .. }) => "redis_source",
            Operator::Source(SourceSpec::Nats { .. }) => "nats_source",
            Operator::Source(SourceSpec::Kafka(_)) => "kafka_source",
            Operator::Source(_) => "stream_source",
            Operator::Map(_) => "map",
            Operator::FlatMap(_) => "flat_map",
            Operator::Filter(_) => "filter",
            Operator::KeyedReduce { .. } => "keyed_reduce",
            Operator::Count { .. } => "count",
            Operator::Print(_) => "inspect",
            Operator::WriteLines(_) => "write_lines",
            Operator::WriteParts(_) => "write_parts",
            Operator::Collect => "collect",
            Operator::RedisSink { .. } => "redis_sink",
            Operator::NatsSink { .. } => "nats_sink",
            Operator::KafkaSink(_) => "kafka_sink",
            Operator::EventTime(_) => "event_time",
            Operator::Window(w) if w.fold.is_none() => "window_count",
            Operator::Window(_) => "window",
        }
    }

    /// The operator itself, whatever strategy it was given.
    pub fn base(&self) -> &Operator {
        match self {
            Operator::With(w) => &w.op,
            other => other,
        }
    }

    pub fn in_ports(&self) -> Vec<&str> {
        match self {
            Operator::With(w) => w.op.in_ports(),
            Operator::Source(_) => NONE.to_vec(),
            Operator::User(u) => u.inputs.iter().map(String::as_str).collect(),
            _ => IN.to_vec(),
        }
    }

    pub fn out_ports(&self) -> Vec<&str> {
        match self {
            Operator::With(w) => w.op.out_ports(),
            Operator::Filter(_) => FILTER_OUT.to_vec(),
            Operator::Source(SourceSpec::Kafka(_)) => KAFKA_OUT.to_vec(),
            Operator::Window(_) => WINDOW_OUT.to_vec(),
            Operator::WriteLines(_)
            | Operator::WriteParts(_)
            | Operator::Collect
            | Operator::RedisSink { .. }
            | Operator::NatsSink { .. }
            | Operator::KafkaSink(_) => NONE.to_vec(),
            Operator::User(u) => u.outputs.iter().map(String::as_str).collect(),
            _ => OUT.to_vec(),
        }
    }

    pub fn strategy(&self) -> Strategy {
        match self {
            Operator::Source(_) => Strategy::Source,
            Operator::User(u) => u.strategy,
            Operator::With(w) => w.strategy,
            Operator::KeyedReduce { .. } | Operator::Count { .. } | Operator::Window(_) => Strategy::Keyed,
            _ => Strategy::ImmutableLocal,
        }
    }

    /// Whether a strategy of the user's places the instances.
    pub fn placed(&self) -> Option<&Place> {
        match self {
            Operator::User(u) => u.place.as_ref(),
            Operator::With(w) => w.place.as_ref(),
            _ => None,
        }
    }

    /// The user's function that routes records to instances, if any.
    pub fn route(&self) -> Option<&Func> {
        match self {
            Operator::User(u) => u.route.as_ref(),
            Operator::With(w) => w.route.as_ref(),
            _ => None,
        }
    }

    /// The function that gives a record's key, for keyed operators.
    /// `None` for a keyed operator means "the record is its own key".
    pub fn key_func(&self) -> Option<&Func> {
        match self {
            Operator::KeyedReduce { key, .. } => Some(key),
            Operator::Count { key } => key.as_ref(),
            Operator::Window(w) => w.key.as_ref(),
            Operator::User(u) => u.key.as_ref(),
            Operator::With(w) => w.key.as_ref().or_else(|| w.op.key_func()),
            _ => None,
        }
    }

    /// Every function this operator calls, for validation and shipping.
    pub fn funcs(&self) -> Vec<&Func> {
        match self {
            Operator::Source(SourceSpec::Generator(f)) | Operator::Map(f) | Operator::FlatMap(f) | Operator::Filter(f) => vec![f],
            Operator::KeyedReduce { key, reduce, .. } => vec![key, reduce],
            Operator::Count { key } => key.iter().collect(),
            Operator::EventTime(e) => vec![&e.ts],
            Operator::Window(w) => {
                let fold = w.fold.iter().flat_map(|f| [&f.init, &f.fold].into_iter().chain(&f.merge));
                w.key.iter().chain(fold).chain(&w.ts).collect()
            }
            Operator::User(u) => {
                let place = match &u.place {
                    Some(Place::Func(f)) => Some(f),
                    _ => None,
                };
                u.key
                    .iter()
                    .chain(&u.init)
                    .chain(u.on.iter().flatten())
                    .chain(&u.on_end)
                    .chain(&u.on_timer)
                    .chain(place)
                    .chain(&u.route)
                    .collect()
            }
            Operator::With(w) => {
                let place = match &w.place {
                    Some(Place::Func(f)) => Some(f),
                    _ => None,
                };
                w.op.funcs().into_iter().chain(&w.key).chain(place).chain(&w.route).collect()
            }
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operator::With(w) => write!(f, "{} ({})", w.op, w.strategy.name()),
            Operator::Source(SourceSpec::Lines { path, .. }) => write!(f, "read_lines({})", path.display()),
            Operator::Source(SourceSpec::Tcp { host, port, .. }) => write!(f, "tcp_source({host}:{port})"),
            Operator::Source(SourceSpec::Redis { url, stream, group, .. }) => write!(f, "redis_source({url}, {stream}, group {group})"),
            Operator::RedisSink { url, stream } => write!(f, "redis_sink({url}, {stream})"),
            Operator::Source(SourceSpec::Nats { url, subject, durable, .. }) => {
                write!(f, "nats_source({url}, {subject}, durable {durable})")
            }
            Operator::NatsSink { url, subject } => write!(f, "nats_sink({url}, {subject})"),
            Operator::Source(SourceSpec::Kafka(k)) => write!(f, "kafka_source({}, {}, group {})", k.brokers, k.topic, k.group),
            Operator::KafkaSink(k) => write!(f, "kafka_sink({}, {})", k.brokers, k.topic),
            Operator::Source(SourceSpec::Items(items)) => write!(f, "stream_source([{} items])", items.len()),
            Operator::Source(SourceSpec::Range { start, end, .. }) => write!(f, "stream_source({start}..{end})"),
            Operator::Source(SourceSpec::Generator(g)) => write!(f, "stream_source({})", g.name()),
            Operator::Print(label) => write!(f, "inspect({label:?})"),
            Operator::WriteLines(p) => write!(f, "write_lines({})", p.display()),
            Operator::WriteParts(p) => write!(f, "write_parts({})", p.display()),
            Operator::EventTime(e) => write!(f, "event_time({}, out of order {} s)", e.ts.name(), e.out_of_order),
            Operator::Window(w) => write!(f, "{}({})", self.kind(), w.spec),
            other => write!(f, "{}", other.kind()),
        }
    }
}
