//! Graphviz rendering of a workflow; nested workflows become clusters. A
//! running one's nodes and links are annotated with counts and rates.

use super::model::{FlatEdge, FlatGraph, Workflow};
use super::stats::Stats;

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

/// Renders `wf` in the dot language, as it runs: nested workflows flattened,
/// each shown as a cluster named after its node.
pub fn to_dot(wf: &Workflow) -> String {
    render(&wf.flatten(), |_| None, |_| None)
}

/// A running (or ended) workflow's graph, each node labelled with the
/// records in and out and their average rate over the time it ran, each
/// link with the records that crossed it when the stats tell them apart.
pub fn to_dot_stats(stats: &Stats) -> String {
    let graph = stats.graph();
    let rate = |n: u64| if stats.elapsed > 0.0 { n as f64 / stats.elapsed } else { 0.0 };
    let node_note = |i: usize| {
        let s = &stats.nodes[i];
        let mut note = format!(
            "in {} ({}/s), out {} ({}/s)",
            s.records_in,
            per_second(rate(s.records_in)),
            s.records_out,
            per_second(rate(s.records_out))
        );
        if s.errors > 0 {
            note.push_str(&format!("\n{} error(s)", s.errors));
        }
        if let Some(p99) = s.p99_us() {
            note.push_str(&format!("\np99 {}", micros(p99)));
        }
        Some(note)
    };
    let edge_note = |e: &FlatEdge| {
        crossed(graph, e, |i| (stats.nodes[i].records_in, stats.nodes[i].records_out)).map(|n| format!("{n} ({}/s)", per_second(rate(n))))
    };
    render(graph, node_note, edge_note)
}

/// The records that crossed edge `e`, from `counts` of each node's
/// records (in, out): what its target received when this is its only
/// input, else what its source emitted when this is its only output; none
/// when neither tells. The same rule gives an edge's rate from the nodes'.
pub fn crossed<T: Copy>(graph: &FlatGraph, e: &FlatEdge, counts: impl Fn(usize) -> (T, T)) -> Option<T> {
    let inputs = graph.edges.iter().filter(|x| x.to == e.to).count();
    let outputs = graph.edges.iter().filter(|x| x.from == e.from).count();
    if inputs == 1 {
        Some(counts(e.to).0)
    } else if outputs == 1 && graph.nodes[e.from].op.out_ports().len() == 1 {
        Some(counts(e.from).1)
    } else {
        None
    }
}

/// A rate, short: 950, 12.3k, 1.05M.
pub fn per_second(r: f64) -> String {
    match r {
        r if r >= 1e6 => format!("{:.2}M", r / 1e6),
        r if r >= 1e4 => format!("{:.1}k", r / 1e3),
        r if r >= 10.0 => format!("{r:.0}"),
        r => format!("{r:.1}"),
    }
}

/// A duration given in microseconds, short: 850ns, 12.5us, 3.2ms, 1.5s.
pub fn micros(us: f64) -> String {
    match us {
        us if us < 1.0 => format!("{:.0}ns", us * 1000.0),
        us if us < 1000.0 => format!("{us:.1}us"),
        us if us < 1e6 => format!("{:.1}ms", us / 1000.0),
        us => format!("{:.1}s", us / 1e6),
    }
}

fn render(graph: &FlatGraph, node_note: impl Fn(usize) -> Option<String>, edge_note: impl Fn(&FlatEdge) -> Option<String>) -> String {
    let mut out = String::from("digraph workflow {\n  rankdir=LR;\n  node [shape=box];\n");
    // Nodes, grouped by the nested workflow they came from.
    let mut open: Vec<String> = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let path: Vec<&str> = node.name.split('/').collect();
        let parents = &path[..path.len() - 1];
        while !open.is_empty() && (open.len() > parents.len() || open[open.len() - 1] != parents[open.len() - 1]) {
            open.pop();
            out.push_str(&format!("{}}}\n", "  ".repeat(open.len() + 1)));
        }
        while open.len() < parents.len() {
            let name = parents[open.len()];
            let id = parents[..=open.len()].join("/");
            out.push_str(&format!(
                "{}subgraph {} {{ label={};\n",
                "  ".repeat(open.len() + 1),
                quote(&format!("cluster_{id}")),
                quote(name)
            ));
            open.push(name.to_string());
        }
        let mut label = format!("{}\n{}", path[path.len() - 1], node.op);
        if let Some(note) = node_note(i) {
            label.push('\n');
            label.push_str(&note);
        }
        out.push_str(&format!("{}{} [label={}];\n", "  ".repeat(open.len() + 1), quote(&node.name), quote(&label)));
    }
    while !open.is_empty() {
        open.pop();
        out.push_str(&format!("{}}}\n", "  ".repeat(open.len() + 1)));
    }
    for e in &graph.edges {
        let from = &graph.nodes[e.from];
        let mut label = from.op.out_ports()[e.port].to_string();
        if let Some(note) = edge_note(e) {
            label = format!("{label}: {note}");
        }
        out.push_str(&format!("  {} -> {} [label={}];\n", quote(&from.name), quote(&graph.nodes[e.to].name), quote(&label)));
    }
    out.push_str("}\n");
    out
}
