//! Counts a user can check: records into and out of every operator, summed
//! over its instances (and, on a cluster, over workers), so that "read at
//! the sources" and "written at the sinks" can be compared.

use serde::{Deserialize, Serialize};

use super::model::FlatGraph;
use super::operator::Operator;

/// Records in and out of one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub records_in: u64,
    pub records_out: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.records_in += other.records_in;
        self.records_out += other.records_out;
    }
}

/// What a node is, for the totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Source,
    Sink,
    Inner,
}

/// Counts per node of one workflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    names: Vec<String>,
    places: Vec<Place>,
    pub counts: Vec<Counts>,
}

impl Stats {
    /// Zero counts for every node of `graph`.
    pub fn new(graph: &FlatGraph) -> Stats {
        let places = graph
            .nodes
            .iter()
            .map(|n| match n.op.base() {
                Operator::Source(_) => Place::Source,
                Operator::WriteLines(_) | Operator::WriteParts(_) | Operator::Collect => Place::Sink,
                _ => Place::Inner,
            })
            .collect();
        Stats { names: graph.nodes.iter().map(|n| n.name.clone()).collect(), places, counts: vec![Counts::default(); graph.nodes.len()] }
    }

    /// Adds counts reported for the same nodes (by another worker).
    pub fn add(&mut self, counts: &[Counts]) {
        for (mine, theirs) in self.counts.iter_mut().zip(counts) {
            *mine += *theirs;
        }
    }

    /// Records the sources emitted.
    pub fn read(&self) -> u64 {
        self.total(Place::Source, |c| c.records_out)
    }

    /// Records the sinks (`write_lines`, `write_parts`, `collect`) took.
    pub fn written(&self) -> u64 {
        self.total(Place::Sink, |c| c.records_in)
    }

    fn total(&self, place: Place, f: impl Fn(&Counts) -> u64) -> u64 {
        self.places.iter().zip(&self.counts).filter(|(p, _)| **p == place).map(|(_, c)| f(c)).sum()
    }

    /// As scripts see it: `#{read, written, operators: #{name: #{in, out}}}`.
    pub fn to_map(&self) -> rhai::Map {
        let mut operators = rhai::Map::new();
        for (name, c) in self.names.iter().zip(&self.counts) {
            let mut m = rhai::Map::new();
            m.insert("in".into(), rhai::Dynamic::from_int(c.records_in as i64));
            m.insert("out".into(), rhai::Dynamic::from_int(c.records_out as i64));
            operators.insert(name.as_str().into(), rhai::Dynamic::from_map(m));
        }
        let mut m = rhai::Map::new();
        m.insert("read".into(), rhai::Dynamic::from_int(self.read() as i64));
        m.insert("written".into(), rhai::Dynamic::from_int(self.written() as i64));
        m.insert("operators".into(), rhai::Dynamic::from_map(operators));
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
        stats.add(&[
            Counts { records_in: 0, records_out: 10 },
            Counts { records_in: 10, records_out: 10 },
            Counts { records_in: 4, records_out: 0 },
        ]);
        stats.add(&[Counts { records_in: 0, records_out: 5 }, Counts::default(), Counts { records_in: 1, records_out: 0 }]);
        assert_eq!((stats.read(), stats.written()), (15, 5));
        let map = stats.to_map();
        assert_eq!(map["read"].as_int().unwrap(), 15);
    }
}
