//! A workflow as it travels from the master to its workers: flattened,
//! every operator and function as plain data (names and captured values),
//! checked again on arrival.

use serde::{Deserialize, Serialize};

use super::value::{NotPlainData, Value};
use crate::workflow::model::{FlatEdge, FlatGraph, FlatNode};
use crate::workflow::operator::{Fold, WindowOp};
use crate::workflow::operator::{Place, Restrategized, Strategy, UserOp};
use crate::workflow::time::{EventTime, WindowSpec};
use crate::workflow::{Func, KafkaSink, KafkaSource, Operator, SourceSpec};

/// A function as it travels: its name and captured values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FuncSpec {
    pub name: String,
    pub curry: Vec<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OpSpec {
    Items(Vec<Value>),
    Range {
        start: i64,
        end: i64,
        step: i64,
    },
    Generator(FuncSpec),
    Lines {
        path: String,
        max_line: u64,
    },
    Tcp {
        host: String,
        port: u16,
        max_line: u64,
    },
    Map(FuncSpec),
    FlatMap(FuncSpec),
    Filter(FuncSpec),
    KeyedReduce {
        key: FuncSpec,
        reduce: FuncSpec,
        initial: Value,
    },
    Count {
        key: Option<FuncSpec>,
    },
    Print(String),
    WriteLines(String),
    WriteParts(String),
    Collect,
    User(Box<UserOpSpec>),
    /// Nested at most [`super::value::MAX_DEPTH`] deep on the wire: a
    /// deeper one (a buggy or hostile peer) is refused, not a stack overflow.
    With(#[serde(deserialize_with = "super::value::nested")] Box<OpSpec>, WithSpec),
    Redis {
        url: String,
        stream: String,
        group: String,
        retry_ms: u64,
    },
    RedisSink {
        url: String,
        stream: String,
    },
    Nats {
        url: String,
        subject: String,
        stream: String,
        durable: String,
        retry_ms: u64,
    },
    NatsSink {
        url: String,
        subject: String,
    },
    Kafka(KafkaSource),
    KafkaSink(KafkaSink),
    EventTime {
        ts: FuncSpec,
        out_of_order: f64,
        idle: Option<f64>,
    },
    Window(Box<WindowSpecOp>),
}

/// A `window` or `window_count` as it travels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowSpecOp {
    pub spec: WindowSpec,
    pub key: Option<FuncSpec>,
    /// init, fold, merge.
    pub fold: Option<(FuncSpec, FuncSpec, Option<FuncSpec>)>,
    pub lateness: f64,
    pub ts: Option<FuncSpec>,
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
    pub on_timer: Option<FuncSpec>,
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
                Operator::EventTime(e) => OpSpec::EventTime { ts: func_spec(&e.ts)?, out_of_order: e.out_of_order, idle: e.idle },
                Operator::Window(w) => OpSpec::Window(Box::new(WindowSpecOp {
                    spec: w.spec,
                    key: w.key.as_ref().map(func_spec).transpose()?,
                    fold: match &w.fold {
                        Some(f) => Some((func_spec(&f.init)?, func_spec(&f.fold)?, f.merge.as_ref().map(func_spec).transpose()?)),
                        None => None,
                    },
                    lateness: w.lateness,
                    ts: w.ts.as_ref().map(func_spec).transpose()?,
                })),
                Operator::Source(SourceSpec::Redis { url, stream, group, retry_ms }) => {
                    OpSpec::Redis { url: url.clone(), stream: stream.clone(), group: group.clone(), retry_ms: *retry_ms }
                }
                Operator::RedisSink { url, stream } => OpSpec::RedisSink { url: url.clone(), stream: stream.clone() },
                Operator::Source(SourceSpec::Nats { url, subject, stream, durable, retry_ms }) => OpSpec::Nats {
                    url: url.clone(),
                    subject: subject.clone(),
                    stream: stream.clone(),
                    durable: durable.clone(),
                    retry_ms: *retry_ms,
                },
                Operator::NatsSink { url, subject } => OpSpec::NatsSink { url: url.clone(), subject: subject.clone() },
                Operator::Source(SourceSpec::Kafka(k)) => OpSpec::Kafka(k.clone()),
                Operator::KafkaSink(k) => OpSpec::KafkaSink(k.clone()),
                Operator::User(u) => OpSpec::User(Box::new(UserOpSpec {
                    name: u.name.clone(),
                    inputs: u.inputs.clone(),
                    outputs: u.outputs.clone(),
                    strategy: strategy_spec(u.strategy),
                    key: u.key.as_ref().map(func_spec).transpose()?,
                    init: u.init.as_ref().map(func_spec).transpose()?,
                    on: u.on.iter().map(|f| f.as_ref().map(func_spec).transpose()).collect::<Result<_, _>>()?,
                    on_end: u.on_end.as_ref().map(func_spec).transpose()?,
                    on_timer: u.on_timer.as_ref().map(func_spec).transpose()?,
                    place: place_spec(&u.place)?,
                    route: u.route.as_ref().map(func_spec).transpose()?,
                })),
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
        OpSpec::EventTime { ts, out_of_order, idle } => Operator::EventTime(Box::new(EventTime { ts: func(ts)?, out_of_order, idle })),
        OpSpec::Window(w) => {
            let fold = match w.fold {
                Some((init, fold, merge)) => Some(Fold { init: func(init)?, fold: func(fold)?, merge: merge.map(func).transpose()? }),
                None => None,
            };
            let ts = w.ts.map(func).transpose()?;
            Operator::Window(Box::new(WindowOp { spec: w.spec, key: w.key.map(func).transpose()?, fold, lateness: w.lateness, ts }))
        }
        OpSpec::Redis { url, stream, group, retry_ms } => Operator::Source(SourceSpec::Redis { url, stream, group, retry_ms }),
        OpSpec::RedisSink { url, stream } => Operator::RedisSink { url, stream },
        OpSpec::Nats { url, subject, stream, durable, retry_ms } => {
            Operator::Source(SourceSpec::Nats { url, subject, stream, durable, retry_ms })
        }
        OpSpec::NatsSink { url, subject } => Operator::NatsSink { url, subject },
        OpSpec::Kafka(k) => Operator::Source(SourceSpec::Kafka(k)),
        OpSpec::KafkaSink(k) => Operator::KafkaSink(k),
        OpSpec::User(u) => Operator::User(Box::new(UserOp {
            name: u.name,
            inputs: u.inputs,
            outputs: u.outputs,
            strategy: strategy_of(u.strategy),
            key: u.key.map(func).transpose()?,
            init: u.init.map(func).transpose()?,
            on: u.on.into_iter().map(|f| f.map(func).transpose()).collect::<Result<_, _>>()?,
            on_end: u.on_end.map(func).transpose()?,
            on_timer: u.on_timer.map(func).transpose()?,
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
