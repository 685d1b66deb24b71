//! Graphviz rendering of a workflow; nested workflows become clusters.

use super::model::Workflow;

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

/// Renders `wf` in the dot language, as it runs: nested workflows flattened,
/// each shown as a cluster named after its node.
pub fn to_dot(wf: &Workflow) -> String {
    let graph = wf.flatten();
    let mut out = String::from("digraph workflow {\n  rankdir=LR;\n  node [shape=box];\n");
    // Nodes, grouped by the nested workflow they came from.
    let mut open: Vec<String> = Vec::new();
    for node in &graph.nodes {
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
        let label = format!("{}\n{}", path[path.len() - 1], node.op);
        out.push_str(&format!("{}{} [label={}];\n", "  ".repeat(open.len() + 1), quote(&node.name), quote(&label)));
    }
    while !open.is_empty() {
        open.pop();
        out.push_str(&format!("{}}}\n", "  ".repeat(open.len() + 1)));
    }
    for e in &graph.edges {
        let from = &graph.nodes[e.from];
        let port = from.op.out_ports()[e.port];
        out.push_str(&format!("  {} -> {} [label={}];\n", quote(&from.name), quote(&graph.nodes[e.to].name), quote(port)));
    }
    out.push_str("}\n");
    out
}
