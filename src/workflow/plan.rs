//! The physical plan: a flat graph cut into *stages*. A stage is a chain (or
//! tree) of nodes that run in one loop on one instance with no channel between
//! them; records cross between stages only through an exchange.

use super::model::{FlatEdge, FlatGraph};
use super::operator::Strategy;

/// How records of one edge between stages are routed to the target's instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// Batches go round-robin over the target instances (out of a source).
    Spread,
    /// Instance `i` sends to instance `i`: the data stays on its slot.
    Forward,
    /// By the stable hash of the record's key into key groups.
    Hash,
    /// By the target's own route function.
    Route,
}

#[derive(Clone, Debug)]
pub struct Stage {
    /// Flat node ids in topological order; `nodes[0]` is the head, which is the
    /// only node that receives records from other stages.
    pub nodes: Vec<usize>,
    /// Whether the stage has an instance per slot (otherwise exactly one).
    pub parallel: bool,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub graph: FlatGraph,
    pub stages: Vec<Stage>,
    /// The stage of each flat node.
    pub stage_of: Vec<usize>,
}

impl Plan {
    pub fn new(graph: FlatGraph) -> Self {
        let mut stages: Vec<Stage> = Vec::new();
        let mut stage_of = vec![usize::MAX; graph.nodes.len()];
        for n in graph.topological_order() {
            let incoming: Vec<&FlatEdge> = graph.edges.iter().filter(|e| e.to == n).collect();
            let fuse_into = match incoming.as_slice() {
                [only] if graph.nodes[n].op.strategy() == Strategy::ImmutableLocal && graph.nodes[n].op.placed().is_none() => {
                    let s = stage_of[only.from];
                    stages[s].parallel.then_some(s)
                }
                _ => None,
            };
            match fuse_into {
                Some(s) => {
                    stages[s].nodes.push(n);
                    stage_of[n] = s;
                }
                None => {
                    stage_of[n] = stages.len();
                    let parallel = !matches!(graph.nodes[n].op.strategy(), Strategy::Source | Strategy::Single);
                    stages.push(Stage { nodes: vec![n], parallel });
                }
            }
        }
        Plan { graph, stages, stage_of }
    }

    /// Whether an edge stays inside one stage.
    pub fn is_local(&self, edge: &FlatEdge) -> bool {
        self.stage_of[edge.from] == self.stage_of[edge.to]
    }

    /// How an edge between two stages routes its records.
    pub fn exchange(&self, edge: &FlatEdge) -> Exchange {
        let target = &self.graph.nodes[edge.to].op;
        if target.route().is_some() {
            Exchange::Route
        } else if target.strategy() == Strategy::Keyed {
            Exchange::Hash
        } else if target.placed().is_some() {
            // Instances placed by the user need not sit where the sender does.
            Exchange::Spread
        } else if self.stages[self.stage_of[edge.from]].parallel {
            Exchange::Forward
        } else {
            Exchange::Spread
        }
    }

    /// Edges that enter stage `s` from other stages.
    pub fn inputs_of(&self, s: usize) -> impl Iterator<Item = &FlatEdge> {
        self.graph.edges.iter().filter(move |e| self.stage_of[e.to] == s && !self.is_local(e))
    }

    /// Instances of a stage, given the number of slots.
    pub fn instances(&self, s: usize, slots: usize) -> usize {
        if self.stages[s].parallel {
            slots
        } else {
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::model::{Body, Workflow};
    use crate::workflow::operator::{Func, Operator, SourceSpec};

    fn f(name: &str) -> Func {
        Func::named(name)
    }

    fn op(o: Operator) -> Body {
        Body::Op(o)
    }

    #[test]
    fn word_count_has_a_source_stage_a_fused_stage_and_a_keyed_stage() {
        let wf = Workflow::new()
            .chain(op(Operator::Source(SourceSpec::Items(vec![]))))
            .unwrap()
            .chain(op(Operator::FlatMap(f("words"))))
            .unwrap()
            .chain(op(Operator::Map(f("id"))))
            .unwrap()
            .chain(op(Operator::Count { key: None }))
            .unwrap()
            .chain(op(Operator::Print("count".into())))
            .unwrap();
        let plan = Plan::new(wf.flatten());
        let kinds: Vec<Vec<&str>> = plan.stages.iter().map(|s| s.nodes.iter().map(|&n| plan.graph.nodes[n].op.kind()).collect()).collect();
        assert_eq!(kinds, vec![vec!["stream_source"], vec!["flat_map", "map"], vec!["count", "inspect"]]);
        let cross: Vec<Exchange> = plan.graph.edges.iter().filter(|e| !plan.is_local(e)).map(|e| plan.exchange(e)).collect();
        assert_eq!(cross, vec![Exchange::Spread, Exchange::Hash]);
    }

    #[test]
    fn a_join_starts_a_new_stage_fed_forward() {
        let wf = Workflow::new()
            .chain(op(Operator::Source(SourceSpec::Items(vec![]))))
            .unwrap()
            .chain(op(Operator::Filter(f("even"))))
            .unwrap()
            .rename_last("split")
            .unwrap()
            .with_node("join", op(Operator::Collect))
            .unwrap()
            .link("split.accept", "join")
            .unwrap()
            .link("split.reject", "join.in")
            .unwrap();
        let plan = Plan::new(wf.flatten());
        assert_eq!(plan.stages.len(), 3);
        let join = plan.graph.nodes.iter().position(|n| n.name == "join").unwrap();
        assert_eq!(plan.inputs_of(plan.stage_of[join]).count(), 2);
        assert!(plan.inputs_of(plan.stage_of[join]).all(|e| plan.exchange(e) == Exchange::Forward));
    }
}
