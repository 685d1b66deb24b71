//! Every message a connection carries, typed, one type per link (control,
//! data, console; the handshake's are in `handshake`): a message that does
//! not belong on a link cannot be written to it. Handlers never see bytes.

use serde::{Deserialize, Serialize};

pub use super::spec::{FuncSpec, OpSpec, PlaceSpec, StrategySpec, UserOpSpec, WithSpec, WorkflowSpec};
use super::value::Value;
use crate::workflow::NodeStats;

/// Bumped whenever a message changes shape.
pub const PROTOCOL: u32 = 10;

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

/// Records on an edge between two workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DataMsg {
    /// Records for the target's input port number `.0`.
    Records(u32, Vec<Value>),
    Keyed(u32, Vec<(Value, Value)>),
    Counts(Vec<(Value, i64)>),
    /// Checkpoint `.0`'s barrier.
    Barrier(u64),
    /// The sender's watermark (event time, seconds).
    Watermark(f64),
    /// The sender is idle: it holds no watermark back until its next one.
    Idle,
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
        /// Whether it takes checkpoints (the master coordinates them); the
        /// states its instances resume from came before, in `Restore`.
        checkpoints: bool,
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
    /// The worker has settled the files of its part (after `Settle`);
    /// `error`: why it could not name them (the workflow fails, and what
    /// its sources read is not acknowledged).
    Settled {
        id: u64,
        error: Option<String>,
    },
    /// A piece of the worker's part of checkpoint `checkpoint` (`None`:
    /// what its instances held when they ended); `last` ends it.
    Snapshot {
        id: u64,
        checkpoint: Option<u64>,
        #[serde(with = "serde_bytes")]
        chunk: Vec<u8>,
        last: bool,
    },
    // Master -> worker, about checkpoints.
    /// A piece of the states the worker's part of workflow `id` resumes
    /// from (sent before its `Deploy`).
    Restore {
        id: u64,
        #[serde(with = "serde_bytes")]
        chunk: Vec<u8>,
    },
    /// Start checkpoint `checkpoint`: the sources here send its barriers.
    Checkpoint {
        id: u64,
        checkpoint: u64,
    },
    /// Checkpoint `checkpoint` is durable: acknowledge what the sources
    /// here read before its barriers (`None`: the last one; everything).
    Committed {
        id: u64,
        checkpoint: Option<u64>,
    },
    /// Worker -> master, with its heartbeats: its resident memory and how
    /// long it has run (0 where the host does not tell).
    Health {
        rss_bytes: u64,
        uptime_ms: u64,
    },
}

impl ControlMsg {
    /// The run a worker's report is about.
    pub fn report_of(&self) -> Option<u64> {
        use ControlMsg::*;
        match self {
            Started { id } | Failed { id, .. } | Done { id } | Collected { id, .. } | Lines { id, .. } | Progress { id, .. } => Some(*id),
            Interrupted { id, .. } | Settled { id, .. } | Snapshot { id, .. } => Some(*id),
            Output { id, .. } => *id,
            _ => None,
        }
    }
}

/// Why a master refused a worker, or a worker a master.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ControlRefusal {
    #[error("a worker named {0} is already registered")]
    NameTaken(String),
    #[error("the worker already has a master")]
    HasMaster,
    /// A worker registered under another name than its handshake's.
    #[error("it registered as {registered}, but its handshake named it {handshake}")]
    NameMismatch { registered: String, handshake: String },
}

/// A data link from one worker to another: records for one workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DataLinkMsg {
    /// For instance `instance` of stage `stage`, on its input channel `from`.
    Data {
        id: u64,
        stage: u32,
        instance: u32,
        from: u32,
        msg: DataMsg,
    },
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
    Restore => "restore", Checkpoint => "checkpoint", Committed => "committed", Snapshot => "snapshot",
    Health => "health",
});
link_message!(DataLinkMsg { Data => "data", Heartbeat => "heartbeat", Bye => "bye" });
link_message!(ConsoleMsg {
    Heartbeat => "heartbeat", Bye => "bye", Eval => "eval", Interrupt => "interrupt", Complete => "complete",
    Signature => "signature", Logs => "logs", Halt => "halt", Printed => "printed", Evaluated => "evaluated",
    Completions => "completions", SignatureIs => "signature-is", Watch => "watch", Watching => "watching",
});

/// `DataLinkMsg::Data { .. DataMsg::Records(values) }`, encoded straight from the
/// records: the same bytes, without building a `Value` (and copying every
/// string) first. Records are most of what crosses between workers.
pub struct RecordsFrame<'a> {
    pub id: u64,
    pub stage: u32,
    pub instance: u32,
    pub from: u32,
    pub port: u32,
    pub records: &'a [rhai::Dynamic],
}

/// `DataLinkMsg::Data`'s place among its variants (checked by a test).
const DATA_VARIANT: u32 = 0;

impl Serialize for RecordsFrame<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant;
        let mut v = s.serialize_struct_variant("DataLinkMsg", DATA_VARIANT, "Data", 5)?;
        v.serialize_field("id", &self.id)?;
        v.serialize_field("stage", &self.stage)?;
        v.serialize_field("instance", &self.instance)?;
        v.serialize_field("from", &self.from)?;
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
        let direct = postcard::to_allocvec(&RecordsFrame { id: 7, stage: 2, instance: 5, from: 3, port: 1, records: &records }).unwrap();
        let values = super::super::value::to_values(&records).unwrap();
        let via_values =
            postcard::to_allocvec(&DataLinkMsg::Data { id: 7, stage: 2, instance: 5, from: 3, msg: DataMsg::Records(1, values) }).unwrap();
        assert_eq!(direct, via_values);
    }

    /// Issue 31: a `Deploy` whose operator is wrapped in a million `with`s
    /// (a buggy or hostile peer that holds the cookie) is refused as nested
    /// too deeply; it overflowed the stack and took the worker down.
    #[test]
    fn a_deploy_nested_a_million_levels_deep_is_refused_without_a_crash() {
        use super::super::spec::{OpSpec, StrategySpec, WithSpec, WorkflowSpec};
        let deploy = |op: OpSpec| {
            crate::net::framing::encode(&ControlMsg::Deploy {
                id: 1,
                spec: WorkflowSpec { nodes: vec![("n".into(), op)], edges: vec![] },
                sources: vec![],
                workers: vec![],
                slots: 1,
                placement: vec![],
                checkpoints: false,
            })
        };
        let with = WithSpec { strategy: StrategySpec::Single, key: None, place: None, route: None };
        let (plain, once) = (deploy(OpSpec::Collect), deploy(OpSpec::With(Box::new(OpSpec::Collect), with.clone())));
        // once = head, With, Collect, the WithSpec, tail; plain = head, Collect, tail.
        let k = plain.iter().zip(&once).position(|(a, b)| a != b).unwrap();
        let tail = &plain[k + 1..];
        let spec = &once[k + 2..once.len() - tail.len()];
        let levels = 1_000_000;
        let mut deep = plain[..k].to_vec();
        deep.extend(std::iter::repeat_n(once[k], levels));
        deep.push(plain[k]);
        for _ in 0..levels {
            deep.extend_from_slice(spec);
        }
        deep.extend_from_slice(tail);
        let got = crate::net::framing::decode::<ControlMsg>(&deep);
        assert!(matches!(&got, Err(crate::net::NetError::Malformed(m)) if m.contains("nested more than 128 levels")), "{got:?}");
        // As deep as anyone writes it, it decodes.
        let mut op = OpSpec::Collect;
        for _ in 0..10 {
            op = OpSpec::With(Box::new(op), with.clone());
        }
        assert!(crate::net::framing::decode::<ControlMsg>(&deploy(op)).is_ok());
    }

    #[test]
    fn functions_in_records_are_refused_when_encoding() {
        let records = vec![rhai::Dynamic::from(rhai::FnPtr::new("f").unwrap())];
        assert!(postcard::to_allocvec(&RecordsFrame { id: 1, stage: 0, instance: 0, from: 0, port: 0, records: &records }).is_err());
    }
}
