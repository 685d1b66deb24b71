//! Every message a connection carries, typed, one type per link (control,
//! data, console; the handshake's are in `handshake`): a message that does
//! not belong on a link cannot be written to it. Handlers never see bytes.

use serde::{Deserialize, Serialize};

use super::value::{NotPlainData, Value};
use crate::workflow::model::{FlatEdge, FlatGraph, FlatNode};
use crate::workflow::operator::{Place, Restrategized, Strategy, UserOp};
use crate::workflow::{Func, NodeStats, Operator, SourceSpec};

/// Bumped whenever a message changes shape.
pub const PROTOCOL: u32 = 4;

/// Who is at the other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Master,
    Worker,
    /// A worker sending data to another worker.
    Peer,
    /// A remote shell or `rpc`.
    Console,
    /// A local-mode node (master and worker in one process).
    Local,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Worker => "worker",
            Role::Peer => "peer",
            Role::Console => "console",
            Role::Local => "local node",
        })
    }
}

/// A worker as the cluster knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub name: String,
    /// Where peers reach it (its listener).
    pub addr: String,
    pub tags: Vec<String>,
    pub slots: u32,
}

impl WorkerInfo {
    /// The worker as scripts see it: `#{name, addr, slots, tags}`.
    pub fn to_dynamic(&self) -> rhai::Dynamic {
        let mut m = rhai::Map::new();
        m.insert("name".into(), self.name.clone().into());
        m.insert("addr".into(), self.addr.clone().into());
        m.insert("slots".into(), rhai::Dynamic::from_int(self.slots as i64));
        m.insert("tags".into(), rhai::Dynamic::from_array(self.tags.iter().map(|t| rhai::Dynamic::from(t.clone())).collect()));
        rhai::Dynamic::from_map(m)
    }
}

/// A function as it travels: its name and captured values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FuncSpec {
    pub name: String,
    pub curry: Vec<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OpSpec {
    Items(Vec<Value>),
    Range { start: i64, end: i64, step: i64 },
    Generator(FuncSpec),
    Lines { path: String, max_line: u64 },
    Tcp { host: String, port: u16, max_line: u64 },
    Map(FuncSpec),
    FlatMap(FuncSpec),
    Filter(FuncSpec),
    KeyedReduce { key: FuncSpec, reduce: FuncSpec, initial: Value },
    Count { key: Option<FuncSpec> },
    Print(String),
    WriteLines(String),
    WriteParts(String),
    Collect,
    User(UserOpSpec),
    With(Box<OpSpec>, WithSpec),
}

/// The strategy given to a built-in operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WithSpec {
    pub strategy: StrategySpec,
    pub key: Option<FuncSpec>,
    pub place: Option<PlaceSpec>,
    pub route: Option<FuncSpec>,
}

/// A user-defined operator as it travels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserOpSpec {
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub strategy: StrategySpec,
    pub key: Option<FuncSpec>,
    pub init: Option<FuncSpec>,
    pub on: Vec<Option<FuncSpec>>,
    pub on_end: Option<FuncSpec>,
    pub place: Option<PlaceSpec>,
    pub route: Option<FuncSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PlaceSpec {
    Func(FuncSpec),
    Tagged(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StrategySpec {
    ImmutableLocal,
    Keyed,
    Single,
}

/// A flattened workflow, ready to travel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowSpec {
    pub nodes: Vec<(String, OpSpec)>,
    /// (from, port, to, to_port)
    pub edges: Vec<(u32, u32, u32, u32)>,
}

/// Records on an edge between two workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DataMsg {
    /// Records for the target's input port number `.0`.
    Records(u32, Vec<Value>),
    Keyed(u32, Vec<(Value, Value)>),
    Counts(Vec<(Value, i64)>),
    End,
}

/// What a link's driver needs of its messages.
pub trait LinkMessage: Serialize + serde::de::DeserializeOwned + Send + 'static {
    const HEARTBEAT: Self;
    const BYE: Self;
    fn is_heartbeat(&self) -> bool;
    fn is_bye(&self) -> bool;
    /// The message's name, for logs.
    fn kind(&self) -> &'static str;
}

/// The control link between a master and a worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ControlMsg {
    Heartbeat,
    Bye,
    /// Worker -> master, once admitted (and master -> worker, when the
    /// master dialed): who it is.
    Register(WorkerInfo),
    /// The verdict on a registration, or on a master that dialed.
    Welcome,
    Refuse(ControlRefusal),
    // Master -> worker.
    Peers(Vec<WorkerInfo>),
    /// `placement`: for stages a strategy placed, the instances on each worker.
    Deploy {
        id: u64,
        spec: WorkflowSpec,
        sources: Vec<(String, String)>,
        workers: Vec<WorkerInfo>,
        slots: u32,
        placement: Vec<(u32, Vec<u32>)>,
    },
    Stop {
        id: u64,
    },
    Abort {
        id: u64,
        reason: String,
    },
    /// Whether the files the worker's part wrote are complete.
    Settle {
        id: u64,
        commit: bool,
    },
    // Worker -> master, about a workflow.
    Started {
        id: u64,
    },
    Failed {
        id: u64,
        reason: String,
    },
    Done {
        id: u64,
    },
    /// Text a workflow printed (`inspect`), or the worker itself (no id).
    Output {
        id: Option<u64>,
        text: String,
    },
    Collected {
        id: u64,
        sink: String,
        values: Vec<Value>,
    },
    /// Lines for the `write_lines` node `node`, which the master writes.
    Lines {
        id: u64,
        node: u32,
        text: String,
    },
    /// The counts of a worker's part so far (sent before it reports its end).
    Progress {
        id: u64,
        nodes: Vec<NodeStats>,
    },
    /// A worker's part was aborted; these operators were running.
    Interrupted {
        id: u64,
        operators: Vec<String>,
    },
    /// The worker is stopping: stop (drain) its workflows first.
    Leaving,
    /// The worker has settled the files of its part (after `Settle`).
    Settled {
        id: u64,
    },
}

/// Why a master refused a worker, or a worker a master.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ControlRefusal {
    #[error("a worker named {0} is already registered")]
    NameTaken(String),
    #[error("the worker already has a master")]
    HasMaster,
}

/// A data link from one worker to another: records for one workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DataLinkMsg {
    Data { id: u64, stage: u32, instance: u32, msg: DataMsg },
    Heartbeat,
    Bye,
}

/// A console's link to a node: requests one way, answers the other.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ConsoleMsg {
    Heartbeat,
    Bye,
    // Console -> node.
    /// Evaluates `code`; past `timeout_ms` (when given) the node interrupts it.
    Eval {
        id: u64,
        code: String,
        timeout_ms: Option<u64>,
        /// Run `code` as the script of this name (like an app's lib/ file:
        /// its value is not shown), not as a shell entry.
        script: Option<String>,
    },
    Interrupt,
    Complete {
        id: u64,
        word: String,
        method: bool,
    },
    Signature {
        id: u64,
        name: String,
    },
    Logs {
        on: bool,
    },
    /// Halts the node; `node` is the name the user typed to confirm.
    Halt {
        node: String,
    },
    /// Asks for the running workflows' stats (`top()`).
    Watch {
        id: u64,
    },
    // Node -> console.
    /// Text printed while an evaluation runs (or a forwarded log line).
    Printed {
        text: String,
    },
    Evaluated {
        id: u64,
        reply: Reply,
    },
    Completions {
        id: u64,
        names: Vec<String>,
    },
    SignatureIs {
        id: u64,
        signature: Option<String>,
    },
    Watching {
        id: u64,
        workflows: Vec<crate::workflow::watch::Watched>,
    },
}

/// How an evaluation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvalError {
    Syntax,
    Runtime,
    Interrupted,
}

/// The outcome of a remote evaluation, as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Unit,
    /// The value, rendered by the node.
    Value(String),
    Error {
        kind: EvalError,
        message: String,
        excerpt: Option<String>,
    },
    /// The entry called `halt()`: the console must confirm with the node's name.
    HaltRequested,
    /// The entry called `exit()`: the console detaches.
    Detach,
    Halted,
}

macro_rules! link_message {
    ($t:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl LinkMessage for $t {
            const HEARTBEAT: Self = $t::Heartbeat;
            const BYE: Self = $t::Bye;
            fn is_heartbeat(&self) -> bool {
                matches!(self, $t::Heartbeat)
            }
            fn is_bye(&self) -> bool {
                matches!(self, $t::Bye)
            }
            fn kind(&self) -> &'static str {
                match self {
                    $($t::$variant { .. } => $name,)*
                }
            }
        }
    };
}

link_message!(ControlMsg {
    Heartbeat => "heartbeat", Bye => "bye", Register => "register", Welcome => "welcome", Refuse => "refuse",
    Peers => "peers", Deploy => "deploy", Stop => "stop", Abort => "abort", Settle => "settle", Started => "started",
    Failed => "failed", Done => "done", Output => "output", Collected => "collected", Lines => "lines",
    Progress => "progress", Interrupted => "interrupted", Leaving => "leaving", Settled => "settled",
});
link_message!(DataLinkMsg { Data => "data", Heartbeat => "heartbeat", Bye => "bye" });
link_message!(ConsoleMsg {
    Heartbeat => "heartbeat", Bye => "bye", Eval => "eval", Interrupt => "interrupt", Complete => "complete",
    Signature => "signature", Logs => "logs", Halt => "halt", Printed => "printed", Evaluated => "evaluated",
    Completions => "completions", SignatureIs => "signature-is", Watch => "watch", Watching => "watching",
});

fn func_spec(f: &Func) -> Result<FuncSpec, NotPlainData> {
    Ok(FuncSpec { name: f.name.clone(), curry: f.curry.iter().map(Value::from_dynamic).collect::<Result<_, _>>()? })
}

fn func(spec: FuncSpec) -> Result<Func, String> {
    Ok(Func { name: spec.name, curry: spec.curry.into_iter().map(Value::into_dynamic).collect() })
}

impl WorkflowSpec {
    pub fn from_graph(graph: &FlatGraph) -> Result<WorkflowSpec, String> {
        fn op(operator: &Operator) -> Result<OpSpec, NotPlainData> {
            Ok(match operator {
                Operator::With(w) => OpSpec::With(
                    Box::new(op(&w.op)?),
                    WithSpec {
                        strategy: strategy_spec(w.strategy),
                        key: w.key.as_ref().map(func_spec).transpose()?,
                        place: place_spec(&w.place)?,
                        route: w.route.as_ref().map(func_spec).transpose()?,
                    },
                ),
                Operator::Source(SourceSpec::Items(items)) => OpSpec::Items(super::value::to_values(items)?),
                Operator::Source(SourceSpec::Range { start, end, step }) => OpSpec::Range { start: *start, end: *end, step: *step },
                Operator::Source(SourceSpec::Generator(f)) => OpSpec::Generator(func_spec(f)?),
                Operator::Source(SourceSpec::Lines { path, max_line }) => {
                    OpSpec::Lines { path: path.display().to_string(), max_line: *max_line as u64 }
                }
                Operator::Source(SourceSpec::Tcp { host, port, max_line }) => {
                    OpSpec::Tcp { host: host.clone(), port: *port, max_line: *max_line as u64 }
                }
                Operator::Map(f) => OpSpec::Map(func_spec(f)?),
                Operator::FlatMap(f) => OpSpec::FlatMap(func_spec(f)?),
                Operator::Filter(f) => OpSpec::Filter(func_spec(f)?),
                Operator::KeyedReduce { key, reduce, initial } => {
                    OpSpec::KeyedReduce { key: func_spec(key)?, reduce: func_spec(reduce)?, initial: Value::from_dynamic(initial)? }
                }
                Operator::Count { key } => OpSpec::Count { key: key.as_ref().map(func_spec).transpose()? },
                Operator::Print(l) => OpSpec::Print(l.clone()),
                Operator::WriteLines(p) => OpSpec::WriteLines(p.display().to_string()),
                Operator::WriteParts(p) => OpSpec::WriteParts(p.display().to_string()),
                Operator::Collect => OpSpec::Collect,
                Operator::User(u) => OpSpec::User(UserOpSpec {
                    name: u.name.clone(),
                    inputs: u.inputs.clone(),
                    outputs: u.outputs.clone(),
                    strategy: strategy_spec(u.strategy),
                    key: u.key.as_ref().map(func_spec).transpose()?,
                    init: u.init.as_ref().map(func_spec).transpose()?,
                    on: u.on.iter().map(|f| f.as_ref().map(func_spec).transpose()).collect::<Result<_, _>>()?,
                    on_end: u.on_end.as_ref().map(func_spec).transpose()?,
                    place: place_spec(&u.place)?,
                    route: u.route.as_ref().map(func_spec).transpose()?,
                }),
            })
        }
        let nodes = graph
            .nodes
            .iter()
            .map(|n| op(&n.op).map(|o| (n.name.clone(), o)).map_err(|e| format!("node `{}`: {e}", n.name)))
            .collect::<Result<_, _>>()?;
        let edges = graph.edges.iter().map(|e| (e.from as u32, e.port as u32, e.to as u32, e.to_port as u32)).collect();
        Ok(WorkflowSpec { nodes, edges })
    }

    pub fn into_graph(self) -> Result<FlatGraph, String> {
        let count = self.nodes.len();
        let mut nodes = Vec::with_capacity(count);
        for (name, spec) in self.nodes {
            nodes.push(FlatNode { name, op: operator(spec)? });
        }
        let mut edges = Vec::with_capacity(self.edges.len());
        for (from, port, to, to_port) in self.edges {
            let (from, port, to, to_port) = (from as usize, port as usize, to as usize, to_port as usize);
            if from >= count || to >= count || port >= nodes[from].op.out_ports().len() || to_port >= nodes[to].op.in_ports().len() {
                return Err(format!("edge ({from}, {port}, {to}, {to_port}) does not fit the workflow"));
            }
            edges.push(FlatEdge { from, port, to, to_port });
        }
        Ok(FlatGraph { nodes, edges })
    }
}

/// A received operator, checked: its functions are names, nothing runs.
fn operator(spec: OpSpec) -> Result<Operator, String> {
    Ok(match spec {
        OpSpec::With(inner, w) => Operator::With(Box::new(Restrategized {
            op: operator(*inner)?,
            strategy: strategy_of(w.strategy),
            key: w.key.map(func).transpose()?,
            place: place_of(w.place)?,
            route: w.route.map(func).transpose()?,
        })),
        OpSpec::Items(v) => Operator::Source(SourceSpec::Items(super::value::to_dynamics(v))),
        OpSpec::Range { start, end, step } => Operator::Source(SourceSpec::Range { start, end, step }),
        OpSpec::Generator(f) => Operator::Source(SourceSpec::Generator(func(f)?)),
        OpSpec::Lines { path, max_line } => Operator::Source(SourceSpec::Lines { path: path.into(), max_line: max_line as usize }),
        OpSpec::Tcp { host, port, max_line } => Operator::Source(SourceSpec::Tcp { host, port, max_line: max_line as usize }),
        OpSpec::Map(f) => Operator::Map(func(f)?),
        OpSpec::FlatMap(f) => Operator::FlatMap(func(f)?),
        OpSpec::Filter(f) => Operator::Filter(func(f)?),
        OpSpec::KeyedReduce { key, reduce, initial } => {
            Operator::KeyedReduce { key: func(key)?, reduce: func(reduce)?, initial: initial.into_dynamic() }
        }
        OpSpec::Count { key } => Operator::Count { key: key.map(func).transpose()? },
        OpSpec::Print(l) => Operator::Print(l),
        OpSpec::WriteLines(p) => Operator::WriteLines(p.into()),
        OpSpec::WriteParts(p) => Operator::WriteParts(p.into()),
        OpSpec::Collect => Operator::Collect,
        OpSpec::User(u) => Operator::User(Box::new(UserOp {
            name: u.name,
            inputs: u.inputs,
            outputs: u.outputs,
            strategy: strategy_of(u.strategy),
            key: u.key.map(func).transpose()?,
            init: u.init.map(func).transpose()?,
            on: u.on.into_iter().map(|f| f.map(func).transpose()).collect::<Result<_, _>>()?,
            on_end: u.on_end.map(func).transpose()?,
            place: place_of(u.place)?,
            route: u.route.map(func).transpose()?,
        })),
    })
}

fn strategy_spec(s: Strategy) -> StrategySpec {
    match s {
        Strategy::Keyed => StrategySpec::Keyed,
        Strategy::Single => StrategySpec::Single,
        _ => StrategySpec::ImmutableLocal,
    }
}

fn strategy_of(s: StrategySpec) -> Strategy {
    match s {
        StrategySpec::Keyed => Strategy::Keyed,
        StrategySpec::Single => Strategy::Single,
        StrategySpec::ImmutableLocal => Strategy::ImmutableLocal,
    }
}

fn place_spec(p: &Option<Place>) -> Result<Option<PlaceSpec>, NotPlainData> {
    Ok(match p {
        Some(Place::Func(f)) => Some(PlaceSpec::Func(func_spec(f)?)),
        Some(Place::Tagged(t)) => Some(PlaceSpec::Tagged(t.clone())),
        None => None,
    })
}

fn place_of(p: Option<PlaceSpec>) -> Result<Option<Place>, String> {
    Ok(match p {
        Some(PlaceSpec::Func(f)) => Some(Place::Func(func(f)?)),
        Some(PlaceSpec::Tagged(t)) => Some(Place::Tagged(t)),
        None => None,
    })
}

/// `DataLinkMsg::Data { .. DataMsg::Records(values) }`, encoded straight from the
/// records: the same bytes, without building a `Value` (and copying every
/// string) first. Records are most of what crosses between workers.
pub struct RecordsFrame<'a> {
    pub id: u64,
    pub stage: u32,
    pub instance: u32,
    pub port: u32,
    pub records: &'a [rhai::Dynamic],
}

/// `DataLinkMsg::Data`'s place among its variants (checked by a test).
const DATA_VARIANT: u32 = 0;

impl Serialize for RecordsFrame<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant;
        let mut v = s.serialize_struct_variant("DataLinkMsg", DATA_VARIANT, "Data", 4)?;
        v.serialize_field("id", &self.id)?;
        v.serialize_field("stage", &self.stage)?;
        v.serialize_field("instance", &self.instance)?;
        v.serialize_field("msg", &RecordsMsg(self.port, self.records))?;
        v.end()
    }
}

struct RecordsMsg<'a>(u32, &'a [rhai::Dynamic]);

impl Serialize for RecordsMsg<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTupleVariant;
        let mut v = s.serialize_tuple_variant("DataMsg", 0, "Records", 2)?;
        v.serialize_field(&self.0)?;
        v.serialize_field(&Records(self.1))?;
        v.end()
    }
}

struct Records<'a>(&'a [rhai::Dynamic]);

impl Serialize for Records<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(DynamicRef))
    }
}

/// A record serialized as its `Value` would be.
struct DynamicRef<'a>(&'a rhai::Dynamic);

impl Serialize for DynamicRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(text) = self.0.read_lock::<rhai::ImmutableString>() {
            return s.serialize_newtype_variant("Value", 5, "Str", text.as_str());
        }
        if let Ok(i) = self.0.as_int() {
            return s.serialize_newtype_variant("Value", 2, "Int", &i);
        }
        Value::from_dynamic(self.0).map_err(serde::ser::Error::custom)?.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_encode_exactly_as_their_values_would() {
        let records = vec![
            rhai::Dynamic::from("a line of text"),
            rhai::Dynamic::from(42_i64),
            rhai::Dynamic::from_array(vec![rhai::Dynamic::from("w"), rhai::Dynamic::from(3_i64)]),
            rhai::Dynamic::UNIT,
        ];
        let direct = postcard::to_allocvec(&RecordsFrame { id: 7, stage: 2, instance: 5, port: 1, records: &records }).unwrap();
        let values = super::super::value::to_values(&records).unwrap();
        let via_values =
            postcard::to_allocvec(&DataLinkMsg::Data { id: 7, stage: 2, instance: 5, msg: DataMsg::Records(1, values) }).unwrap();
        assert_eq!(direct, via_values);
    }

    #[test]
    fn functions_in_records_are_refused_when_encoding() {
        let records = vec![rhai::Dynamic::from(rhai::FnPtr::new("f").unwrap())];
        assert!(postcard::to_allocvec(&RecordsFrame { id: 1, stage: 0, instance: 0, port: 0, records: &records }).is_err());
    }
}
