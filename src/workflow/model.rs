//! The workflow model: a DAG of named nodes (operators or nested workflows)
//! joined by links between named ports. A workflow is plain data: building one
//! runs nothing, and every builder step returns a new workflow.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::operator::Operator;

/// A port of a node, written `node.port` in scripts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortRef {
    pub node: String,
    pub port: String,
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.node, self.port)
    }
}

#[derive(Clone, Debug)]
pub struct Link {
    pub from: PortRef,
    pub to: PortRef,
}

#[derive(Clone, Debug)]
pub enum Body {
    Op(Operator),
    /// A nested workflow: its port `in` feeds every node inside it whose input
    /// is not linked inside, its port `out` is its last chained port.
    Nested(Box<Workflow>),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub body: Body,
}

impl Node {
    fn in_ports(&self) -> Vec<&str> {
        match &self.body {
            Body::Op(op) => op.in_ports(),
            Body::Nested(wf) => {
                let default = (!wf.entries().is_empty()).then_some("in");
                default.into_iter().chain(wf.inputs.iter().map(|(name, _)| name.as_str())).collect()
            }
        }
    }

    fn out_ports(&self) -> Vec<&str> {
        match &self.body {
            Body::Op(op) => op.out_ports(),
            Body::Nested(wf) => {
                let default = wf.cursor.is_some().then_some("out");
                default.into_iter().chain(wf.outputs.iter().map(|(name, _)| name.as_str())).collect()
            }
        }
    }
}

/// A mistake in a workflow, found while it is built or before it is deployed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("there is no node named `{node}` in this workflow (nodes: {known})")]
    UnknownNode { node: String, known: String },
    #[error("node `{node}` has no {direction} port `{port}` (it has: {known})")]
    UnknownPort { node: String, port: String, direction: &'static str, known: String },
    #[error("a node named `{0}` already exists in this workflow")]
    DuplicateNode(String),
    #[error("this workflow already has a port named `{0}`")]
    DuplicatePort(String),
    #[error("node `{node}`: {reason}")]
    BadStrategy { node: String, reason: String },
    #[error("`{0}` is not a valid node name: use letters, digits, `_` and `-`")]
    BadName(String),
    #[error("`{0}` is not a port: write `node.port` or `node`")]
    BadPortRef(String),
    #[error("linking {from} to {to} would make a cycle")]
    Cycle { from: String, to: String },
    #[error("input `{0}` is not linked to anything: link it or remove the node")]
    DanglingInput(String),
    #[error("{0} has no output to chain from (a sink ends a chain): continue elsewhere with `from(\"node.port\")`")]
    NothingToChain(String),
    #[error("the workflow has no source: start it with stream_source, read_lines or tcp_source")]
    NoSource,
    #[error("the workflow is empty")]
    Empty,
    #[error(
        "window `{window}` reads each record's time with the function of the event_time before it, but `{first}` and `{other}` have \
         different ones: map the records to one shape and give both the same closure (`let ts = |r| r.ts;`)"
    )]
    MixedEventTimes { window: String, first: String, other: String },
}

impl fmt::Display for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.flatten().nodes.into_iter().map(|n| n.name).collect();
        write!(f, "#Workflow<{}>", names.join(" "))
    }
}

/// A workflow under construction. Chaining methods append a node and link it
/// from the *cursor*: the port the previous step left open.
#[derive(Clone, Debug, Default)]
pub struct Workflow {
    nodes: Vec<Node>,
    links: Vec<Link>,
    cursor: Option<PortRef>,
    counter: usize,
    /// Ports this workflow shows when nested, besides `in` and `out`: a
    /// name and the inner port it stands for.
    inputs: Vec<(String, PortRef)>,
    outputs: Vec<(String, PortRef)>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Workflow {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn links(&self) -> &[Link] {
        &self.links
    }

    pub fn cursor(&self) -> Option<&PortRef> {
        self.cursor.as_ref()
    }

    fn node(&self, name: &str) -> Result<&Node, WorkflowError> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| WorkflowError::UnknownNode { node: name.to_string(), known: self.names() })
    }

    fn names(&self) -> String {
        if self.nodes.is_empty() {
            return "none".into();
        }
        self.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    fn fresh_name(&mut self, kind: &str) -> String {
        loop {
            self.counter += 1;
            let name = format!("{kind}_{}", self.counter);
            if !self.nodes.iter().any(|n| n.name == name) {
                return name;
            }
        }
    }

    /// Adds a node without linking it; the cursor moves to its first output.
    pub fn with_node(mut self, name: &str, body: Body) -> Result<Self, WorkflowError> {
        if !valid_name(name) {
            return Err(WorkflowError::BadName(name.to_string()));
        }
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(WorkflowError::DuplicateNode(name.to_string()));
        }
        let node = Node { name: name.to_string(), body };
        self.cursor = node.out_ports().first().map(|p| PortRef { node: name.to_string(), port: p.to_string() });
        self.nodes.push(node);
        Ok(self)
    }

    /// Appends a node named after its kind and links the cursor to its input.
    pub fn chain(mut self, body: Body) -> Result<Self, WorkflowError> {
        let kind = match &body {
            Body::Op(op) => op.kind(),
            Body::Nested(_) => "workflow",
        };
        let name = self.fresh_name(kind);
        let from = self.cursor.clone();
        let wants_input = match &body {
            Body::Op(op) => !op.in_ports().is_empty(),
            Body::Nested(wf) => !wf.entries().is_empty(),
        };
        // An empty workflow may start with an operator that takes input: it
        // is a piece to nest, whose `in` is that operator's input.
        if wants_input && from.is_none() && !self.nodes.is_empty() {
            return Err(WorkflowError::NothingToChain(format!("{kind}: the previous step")));
        }
        let mut wf = self.with_node(&name, body)?;
        if let (Some(from), true) = (from, wants_input) {
            // `with_node` moved the cursor to the new node; `link` leaves it there.
            wf = wf.link(&from.to_string(), &format!("{name}.in"))?;
        }
        Ok(wf)
    }

    fn parse_port(&self, text: &str, output: bool) -> Result<PortRef, WorkflowError> {
        let (node, port) = match text.split_once('.') {
            Some((n, p)) if !n.is_empty() && !p.is_empty() && !p.contains('.') => (n, Some(p)),
            Some(_) => return Err(WorkflowError::BadPortRef(text.to_string())),
            None => (text, None),
        };
        let n = self.node(node)?;
        let ports = if output { n.out_ports() } else { n.in_ports() };
        let port = match port {
            Some(p) => p.to_string(),
            None => match ports.first() {
                Some(p) => p.to_string(),
                None => String::new(),
            },
        };
        if !ports.contains(&port.as_str()) {
            return Err(WorkflowError::UnknownPort {
                node: node.to_string(),
                port: if port.is_empty() { "(default)".into() } else { port },
                direction: if output { "output" } else { "input" },
                known: if ports.is_empty() { "none".into() } else { ports.join(", ") },
            });
        }
        Ok(PortRef { node: node.to_string(), port })
    }

    /// Links an output port (`node.port`, or `node` for its first output) to
    /// an input port (`node.port`, or `node` for `in`).
    pub fn link(mut self, from: &str, to: &str) -> Result<Self, WorkflowError> {
        let from = self.parse_port(from, true)?;
        let to = self.parse_port(to, false)?;
        if from.node == to.node || self.reaches(&to.node, &from.node) {
            return Err(WorkflowError::Cycle { from: from.to_string(), to: to.to_string() });
        }
        self.links.push(Link { from, to });
        Ok(self)
    }

    /// Names an inner port as a port of this workflow, for when it is nested
    /// (`output("rejected", "check.reject")`): a function returning a
    /// workflow is then an operator with those ports.
    pub fn expose(mut self, name: &str, inner: &str, output: bool) -> Result<Self, WorkflowError> {
        if !valid_name(name) {
            return Err(WorkflowError::BadName(name.to_string()));
        }
        let taken = if output { &self.outputs } else { &self.inputs };
        let default = if output { "out" } else { "in" };
        if name == default || taken.iter().any(|(n, _)| n == name) {
            return Err(WorkflowError::DuplicatePort(name.to_string()));
        }
        let port = self.parse_port(inner, output)?;
        if output {
            self.outputs.push((name.to_string(), port));
        } else {
            self.inputs.push((name.to_string(), port));
        }
        Ok(self)
    }

    /// Moves the cursor to an output port so that chaining continues there.
    pub fn from_port(mut self, port: &str) -> Result<Self, WorkflowError> {
        self.cursor = Some(self.parse_port(port, true)?);
        Ok(self)
    }

    /// Replaces the operator of the most recently added node by what `f`
    /// makes of it (an error names the node).
    pub fn map_last_op(mut self, f: impl FnOnce(Operator) -> Result<Operator, String>) -> Result<Self, WorkflowError> {
        let Some(last) = self.nodes.last_mut() else {
            return Err(WorkflowError::Empty);
        };
        let Body::Op(op) = &last.body else {
            return Err(WorkflowError::BadStrategy {
                node: last.name.clone(),
                reason: "a nested workflow has no strategy of its own".into(),
            });
        };
        let changed = f(op.clone()).map_err(|reason| WorkflowError::BadStrategy { node: last.name.clone(), reason })?;
        last.body = Body::Op(changed);
        Ok(self)
    }

    /// Renames the most recently added node.
    pub fn rename_last(mut self, name: &str) -> Result<Self, WorkflowError> {
        if !valid_name(name) {
            return Err(WorkflowError::BadName(name.to_string()));
        }
        let Some(last) = self.nodes.last().map(|n| n.name.clone()) else {
            return Err(WorkflowError::Empty);
        };
        if last == name {
            return Ok(self);
        }
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(WorkflowError::DuplicateNode(name.to_string()));
        }
        let rename = |p: &mut PortRef| {
            if p.node == last {
                p.node = name.to_string();
            }
        };
        self.nodes.last_mut().expect("checked above").name = name.to_string();
        for link in &mut self.links {
            rename(&mut link.from);
            rename(&mut link.to);
        }
        if let Some(c) = self.cursor.as_mut() {
            rename(c);
        }
        for (_, p) in self.inputs.iter_mut().chain(self.outputs.iter_mut()) {
            rename(p);
        }
        Ok(self)
    }

    /// Whether `to` can be reached from `from` along links.
    fn reaches(&self, from: &str, to: &str) -> bool {
        let mut seen = HashSet::new();
        let mut stack = vec![from];
        while let Some(n) = stack.pop() {
            if n == to {
                return true;
            }
            if seen.insert(n) {
                stack.extend(self.links.iter().filter(|l| l.from.node == n).map(|l| l.to.node.as_str()));
            }
        }
        false
    }

    /// Nodes with an input port `in` that no link inside this workflow feeds.
    fn entries(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.in_ports().contains(&"in"))
            .filter(|n| !self.links.iter().any(|l| l.to.node == n.name))
            .map(|n| n.name.as_str())
            .collect()
    }

    /// Checks that the workflow can run: it has a source and every input is
    /// linked. Nested workflows are checked as part of their parent.
    pub fn validate(&self) -> Result<(), WorkflowError> {
        let flat = self.flatten();
        if flat.nodes.is_empty() {
            return Err(WorkflowError::Empty);
        }
        if !flat.nodes.iter().any(|n| matches!(n.op.base(), Operator::Source(_))) {
            return Err(WorkflowError::NoSource);
        }
        for (i, node) in flat.nodes.iter().enumerate() {
            for (p, port) in node.op.in_ports().iter().enumerate() {
                if !flat.edges.iter().any(|e| e.to == i && e.to_port == p) {
                    return Err(WorkflowError::DanglingInput(format!("{}.{port}", node.name)));
                }
            }
        }
        match flat.mixed_event_times() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Replaces every nested workflow by its nodes, named `outer/inner`.
    pub fn flatten(&self) -> FlatGraph {
        let mut graph = FlatGraph::default();
        let mut index = HashMap::new();
        self.flatten_into("", &mut graph, &mut index);
        graph.find_event_times();
        graph
    }

    /// Adds this workflow's nodes and internal edges to `graph`, returning for
    /// the workflow's `in` the flat nodes it feeds and for `out` the flat port.
    fn flatten_into(&self, prefix: &str, graph: &mut FlatGraph, index: &mut HashMap<String, usize>) -> Ends<'_> {
        // Per node and input port: the flat ports it feeds; per node and
        // output port: the flat ports it comes from.
        let mut inputs: HashMap<(&str, &str), Vec<(usize, usize)>> = HashMap::new();
        let mut outputs: HashMap<(&str, &str), Vec<(usize, usize)>> = HashMap::new();
        for node in &self.nodes {
            let name = format!("{prefix}{}", node.name);
            match &node.body {
                Body::Op(op) => {
                    let id = graph.nodes.len();
                    graph.nodes.push(FlatNode { name: name.clone(), op: op.clone() });
                    index.insert(name, id);
                    for (p, port) in op.in_ports().into_iter().enumerate() {
                        inputs.insert((&node.name, port), vec![(id, p)]);
                    }
                    for (p, port) in op.out_ports().into_iter().enumerate() {
                        outputs.insert((&node.name, port), vec![(id, p)]);
                    }
                }
                Body::Nested(inner) => {
                    let ends = inner.flatten_into(&format!("{name}/"), graph, index);
                    for (port, flat) in ends.inputs {
                        inputs.insert((&node.name, port), flat);
                    }
                    for (port, flat) in ends.outputs {
                        outputs.insert((&node.name, port), flat);
                    }
                }
            }
        }
        for link in &self.links {
            let sources = outputs.get(&(link.from.node.as_str(), link.from.port.as_str())).cloned().unwrap_or_default();
            let targets = inputs.get(&(link.to.node.as_str(), link.to.port.as_str())).cloned().unwrap_or_default();
            for &(from, port) in &sources {
                for &(to, to_port) in &targets {
                    graph.edges.push(FlatEdge { from, port, to, to_port });
                }
            }
        }
        let mut ends = Ends::default();
        let entry_inputs: Vec<(usize, usize)> =
            self.entries().iter().flat_map(|n| inputs.get(&(*n, "in")).cloned().unwrap_or_default()).collect();
        ends.inputs.push(("in", entry_inputs));
        let output = self.cursor.as_ref().and_then(|c| outputs.get(&(c.node.as_str(), c.port.as_str())).and_then(|v| v.first().copied()));
        ends.outputs.push(("out", output.into_iter().collect()));
        for (name, inner) in &self.inputs {
            ends.inputs.push((name, inputs.get(&(inner.node.as_str(), inner.port.as_str())).cloned().unwrap_or_default()));
        }
        for (name, inner) in &self.outputs {
            ends.outputs.push((name, outputs.get(&(inner.node.as_str(), inner.port.as_str())).cloned().unwrap_or_default()));
        }
        ends
    }
}

/// What a nested workflow's ports stand for, flat: per port name, the
/// flat ports it feeds (inputs) or comes from (outputs).
#[derive(Default)]
struct Ends<'a> {
    inputs: Vec<(&'a str, Vec<(usize, usize)>)>,
    outputs: Vec<(&'a str, Vec<(usize, usize)>)>,
}

/// A workflow with nesting removed: what the planner and runtime work on.
#[derive(Clone, Debug, Default)]
pub struct FlatGraph {
    pub nodes: Vec<FlatNode>,
    pub edges: Vec<FlatEdge>,
}

#[derive(Clone, Debug)]
pub struct FlatNode {
    pub name: String,
    pub op: Operator,
}

/// An edge from output port number `port` of node `from` to input port
/// number `to_port` of node `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlatEdge {
    pub from: usize,
    pub port: usize,
    pub to: usize,
    pub to_port: usize,
}

impl FlatGraph {
    /// The `event_time` nodes upstream of node `n` with no other
    /// `event_time` between them and it.
    fn event_times_before(&self, n: usize) -> Vec<usize> {
        let mut seen = vec![false; self.nodes.len()];
        let mut queue = std::collections::VecDeque::from([n]);
        let mut found = Vec::new();
        while let Some(m) = queue.pop_front() {
            for e in self.edges.iter().filter(|e| e.to == m) {
                if std::mem::replace(&mut seen[e.from], true) {
                    continue;
                }
                match &self.nodes[e.from].op {
                    Operator::EventTime(_) => found.push(e.from),
                    _ => queue.push_back(e.from),
                }
            }
        }
        found
    }

    /// Gives every window the time function of the `event_time`s upstream
    /// of it (none: it windows on the time records arrive). Two of them
    /// with different functions are refused by `Workflow::validate`.
    fn find_event_times(&mut self) {
        for w in 0..self.nodes.len() {
            if !matches!(&self.nodes[w].op, Operator::Window(op) if op.ts.is_none()) {
                continue;
            }
            let found = self.event_times_before(w).first().and_then(|&e| match &self.nodes[e].op {
                Operator::EventTime(t) => Some(t.ts.clone()),
                _ => None,
            });
            if let Operator::Window(op) = &mut self.nodes[w].op {
                op.ts = found;
            }
        }
    }

    /// A window whose inputs come through `event_time`s with different time
    /// functions: it reads each record's time with one function.
    fn mixed_event_times(&self) -> Option<WorkflowError> {
        self.nodes.iter().enumerate().filter(|(_, n)| matches!(n.op, Operator::Window(_))).find_map(|(w, node)| {
            let times = self.event_times_before(w);
            let name = |e: usize| match &self.nodes[e].op {
                Operator::EventTime(t) => format!("{}{:?}", t.ts.name, t.ts.curry),
                _ => String::new(),
            };
            let other = times.iter().find(|&&e| name(e) != name(times[0]))?;
            Some(WorkflowError::MixedEventTimes {
                window: node.name.clone(),
                first: self.nodes[times[0]].name.clone(),
                other: self.nodes[*other].name.clone(),
            })
        })
    }

    /// Node ids in an order where every edge goes forward.
    pub fn topological_order(&self) -> Vec<usize> {
        let mut indegree = vec![0usize; self.nodes.len()];
        for e in &self.edges {
            indegree[e.to] += 1;
        }
        let mut ready: Vec<usize> = (0..self.nodes.len()).filter(|&i| indegree[i] == 0).rev().collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(n) = ready.pop() {
            order.push(n);
            for e in self.edges.iter().filter(|e| e.from == n) {
                indegree[e.to] -= 1;
                if indegree[e.to] == 0 {
                    ready.push(e.to);
                }
            }
        }
        order
    }
}
