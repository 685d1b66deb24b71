//! What a user can check and watch: records into and out of every operator,
//! summed over its instances (and, on a cluster, over workers), so that
//! "read at the sources" and "written at the sinks" can be compared; and,
//! to watch a running workflow, errors, queue fill and time per record.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::histogram::Histogram;
use super::model::FlatGraph;
use super::operator::Operator;

/// What one node did so far (in one process, or added up).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    pub records_in: u64,
    pub records_out: u64,
    /// Failures of its code (the first one fails the workflow).
    pub errors: u64,
    /// Batches waiting in the inboxes of its instances, and how many fit
    /// (a node inside a stage has no inbox: both 0).
    pub queued: u64,
    pub capacity: u64,
    /// Time in the operator per record: sampled 1 record in 64 for
    /// per-record operators, a batch's average for the others.
    pub time: Histogram,
    /// Its event time (milliseconds since the epoch): the earliest
    /// watermark of its instances, once event time reaches it.
    pub watermark_ms: Option<i64>,
    /// Records later than their windows (a window's `late` port).
    pub late: u64,
}

impl NodeStats {
    /// Adds what another instance or worker reported for the same node.
    pub fn add(&mut self, other: &NodeStats) {
        self.records_in += other.records_in;
        self.records_out += other.records_out;
        self.errors += other.errors;
        self.queued += other.queued;
        self.capacity += other.capacity;
        self.time.add(&other.time);
        self.watermark_ms = match (self.watermark_ms, other.watermark_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.late += other.late;
    }

    /// How far its event time is behind the clock, in seconds.
    pub fn lag(&self) -> Option<f64> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
        self.watermark_ms.map(|wm| (now - wm) as f64 / 1000.0)
    }

    /// The 99th percentile of the time per record, in microseconds.
    pub fn p99_us(&self) -> Option<f64> {
        self.time.quantile(0.99).map(|ns| ns as f64 / 1000.0)
    }
}

/// What a node is, for the totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Source,
    Sink,
    Inner,
}

/// Stats per node of one workflow, with its graph.
#[derive(Clone, Debug)]
pub struct Stats {
    graph: Arc<FlatGraph>,
    places: Vec<Place>,
    pub nodes: Vec<NodeStats>,
    /// Seconds the workflow has run: until now, or until it ended.
    pub elapsed: f64,
    /// Its checkpoints, when they are on.
    pub checkpoints: Option<CheckpointStats>,
    /// Its recoveries, when it can recover (checkpoints on, on a cluster).
    pub recovery: Option<super::recovery::RecoveryStats>,
}

/// A workflow's checkpoints so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointStats {
    /// The workflow's name, under which its checkpoints are kept.
    pub name: String,
    pub completed: u64,
    /// The last completed checkpoint: its id, how long it took, its size,
    /// and when it completed (milliseconds since 1970).
    pub last_id: Option<u64>,
    pub last_ms: u64,
    pub bytes: u64,
    pub last_at_ms: u64,
    /// The longest an instance waited for all its inputs' barriers in it.
    pub alignment_ms: u64,
    pub failed: u64,
    /// Why the last failed checkpoint failed.
    pub last_failure: Option<String>,
}

impl CheckpointStats {
    pub fn completed(&mut self, id: u64, took: std::time::Duration) {
        self.completed += 1;
        self.last_id = Some(id);
        self.last_ms = took.as_millis() as u64;
        self.last_at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    }

    /// One line for `top()`.
    pub fn summary(&self) -> String {
        let mut line = match self.last_id {
            Some(id) => format!(
                "checkpoints: {} completed, last #{id} took {} ms ({} KiB, aligned in {} ms)",
                self.completed,
                self.last_ms,
                self.bytes.div_ceil(1024),
                self.alignment_ms
            ),
            None => "checkpoints: none completed yet".to_string(),
        };
        if self.failed > 0 {
            line += &format!("; {} failed, last: {}", self.failed, self.last_failure.as_deref().unwrap_or("?"));
        }
        line
    }

    pub fn failed(&mut self, id: u64, reason: &str) {
        self.failed += 1;
        self.last_failure = Some(format!("checkpoint {id}: {reason}"));
    }

    /// As scripts see it: `#{name, completed, last_id, last_ms, bytes, alignment_ms, failed, last_failure}`.
    pub fn to_map(&self) -> rhai::Map {
        let int = |n: u64| rhai::Dynamic::from_int(n as i64);
        let mut m = rhai::Map::new();
        m.insert("name".into(), self.name.clone().into());
        m.insert("completed".into(), int(self.completed));
        m.insert("last_id".into(), self.last_id.map(int).unwrap_or(rhai::Dynamic::UNIT));
        m.insert("last_ms".into(), int(self.last_ms));
        m.insert("bytes".into(), int(self.bytes));
        m.insert("alignment_ms".into(), int(self.alignment_ms));
        m.insert("failed".into(), int(self.failed));
        m.insert("last_failure".into(), self.last_failure.clone().map(rhai::Dynamic::from).unwrap_or(rhai::Dynamic::UNIT));
        m
    }
}

impl Stats {
    /// Zero counts for every node of `graph`.
    pub fn new(graph: &FlatGraph) -> Stats {
        Stats::of(Arc::new(graph.clone()))
    }

    fn of(graph: Arc<FlatGraph>) -> Stats {
        let places = graph
            .nodes
            .iter()
            .map(|n| match n.op.base() {
                Operator::Source(_) => Place::Source,
                Operator::WriteLines(_)
                | Operator::WriteParts(_)
                | Operator::Collect
                | Operator::RedisSink { .. }
                | Operator::NatsSink { .. }
                | Operator::KafkaSink(_) => Place::Sink,
                _ => Place::Inner,
            })
            .collect();
        let nodes = vec![NodeStats::default(); graph.nodes.len()];
        Stats { graph, places, nodes, elapsed: 0.0, checkpoints: None, recovery: None }
    }

    /// The graph the nodes are of.
    pub fn graph(&self) -> &FlatGraph {
        &self.graph
    }

    /// The nodes' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.graph.nodes.iter().map(|n| n.name.as_str())
    }

    /// Adds stats reported for the same nodes (by another worker).
    pub fn add(&mut self, nodes: &[NodeStats]) {
        for (mine, theirs) in self.nodes.iter_mut().zip(nodes) {
            mine.add(theirs);
        }
    }

    /// Records the sources emitted.
    pub fn read(&self) -> u64 {
        self.ends(|i| (self.nodes[i].records_in, self.nodes[i].records_out)).0
    }

    /// Records the sinks (`write_lines`, `write_parts`, `collect`) took.
    pub fn written(&self) -> u64 {
        self.ends(|i| (self.nodes[i].records_in, self.nodes[i].records_out)).1
    }

    /// From a figure per node (`each(i)`: node `i`'s in and out — counts,
    /// or rates), what the sources emitted and what the sinks took.
    pub fn ends<T: std::iter::Sum<T>>(&self, each: impl Fn(usize) -> (T, T)) -> (T, T) {
        let at = |place: Place| self.places.iter().enumerate().filter(move |(_, p)| **p == place).map(|(i, _)| i);
        (at(Place::Source).map(|i| each(i).1).sum(), at(Place::Sink).map(|i| each(i).0).sum())
    }

    /// As scripts see it: `#{read, written, elapsed, operators: #{name:
    /// #{in, out, errors, queued, queue_capacity, p99_us}}}` (with
    /// `watermark`, `lag` and `late` for operators on event time), and
    /// `checkpoints` when they are on.
    pub fn to_map(&self) -> rhai::Map {
        let mut operators = rhai::Map::new();
        for (name, c) in self.names().zip(&self.nodes) {
            let mut m = rhai::Map::new();
            let int = |n: u64| rhai::Dynamic::from_int(n as i64);
            m.insert("in".into(), int(c.records_in));
            m.insert("out".into(), int(c.records_out));
            m.insert("errors".into(), int(c.errors));
            m.insert("queued".into(), int(c.queued));
            m.insert("queue_capacity".into(), int(c.capacity));
            m.insert("p99_us".into(), c.p99_us().map(rhai::Dynamic::from_float).unwrap_or(rhai::Dynamic::UNIT));
            if let Some(wm) = c.watermark_ms {
                m.insert("watermark".into(), rhai::Dynamic::from_float(wm as f64 / 1000.0));
                m.insert("lag".into(), c.lag().map(rhai::Dynamic::from_float).unwrap_or(rhai::Dynamic::UNIT));
            }
            if c.late > 0 {
                m.insert("late".into(), int(c.late));
            }
            operators.insert(name.into(), rhai::Dynamic::from_map(m));
        }
        let mut m = rhai::Map::new();
        m.insert("elapsed".into(), rhai::Dynamic::from_float(self.elapsed));
        m.insert("read".into(), rhai::Dynamic::from_int(self.read() as i64));
        m.insert("written".into(), rhai::Dynamic::from_int(self.written() as i64));
        m.insert("operators".into(), rhai::Dynamic::from_map(operators));
        if let Some(c) = &self.checkpoints {
            m.insert("checkpoints".into(), rhai::Dynamic::from_map(c.to_map()));
        }
        if let Some(r) = &self.recovery {
            m.insert("recovery".into(), rhai::Dynamic::from_map(r.to_map()));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::model::{Body, Workflow};
    use crate::workflow::operator::{Func, SourceSpec};

    #[test]
    fn read_counts_sources_and_written_counts_sinks() {
        let wf = Workflow::new()
            .chain(Body::Op(Operator::Source(SourceSpec::Items(vec![]))))
            .unwrap()
            .chain(Body::Op(Operator::Filter(Func::named("f"))))
            .unwrap()
            .chain(Body::Op(Operator::Collect))
            .unwrap();
        let mut stats = Stats::new(&wf.flatten());
        let n = |records_in, records_out| NodeStats { records_in, records_out, ..Default::default() };
        stats.add(&[n(0, 10), n(10, 10), n(4, 0)]);
        stats.add(&[n(0, 5), NodeStats::default(), n(1, 0)]);
        assert_eq!((stats.read(), stats.written()), (15, 5));
        let map = stats.to_map();
        assert_eq!(map["read"].as_int().unwrap(), 15);
    }
}
