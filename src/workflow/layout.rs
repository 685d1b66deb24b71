//! A workflow's graph drawn as SVG, laid out in layers from left to right
//! (sources first, each node one layer past its furthest input), the nodes
//! of a layer ordered by where their inputs are, so that edges cross little.
//! No Graphviz: the web view draws graphs with this alone.

use super::model::FlatGraph;

/// Box size and the gaps between boxes, in pixels.
const WIDTH: f64 = 200.0;
const HEIGHT: f64 = 66.0;
const GAP_X: f64 = 90.0;
const GAP_Y: f64 = 26.0;
const MARGIN: f64 = 12.0;

/// Where each node is: its layer (column) and its place in the layer (row).
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub column: Vec<usize>,
    pub row: Vec<usize>,
    columns: usize,
    rows: usize,
}

/// How a node looks: its name, up to two lines under it, and its state.
#[derive(Debug, Clone, Default)]
pub struct NodeBox {
    pub title: String,
    pub lines: Vec<String>,
    pub state: State,
}

/// A node's state, coloured by the page's style sheet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum State {
    #[default]
    Flowing,
    /// Its inboxes are more than half full: it holds back what feeds it.
    Busy,
    /// Its inboxes are full.
    Full,
    /// Its code failed.
    Failed,
}

impl State {
    fn class(self) -> &'static str {
        match self {
            State::Flowing => "node",
            State::Busy => "node busy",
            State::Full => "node full",
            State::Failed => "node failed",
        }
    }

    /// The state for a node whose inboxes hold `queued` of `capacity`.
    pub fn of(queued: u64, capacity: u64, errors: u64) -> State {
        if errors > 0 {
            State::Failed
        } else if capacity > 0 && queued >= capacity {
            State::Full
        } else if capacity > 0 && queued * 2 > capacity {
            State::Busy
        } else {
            State::Flowing
        }
    }
}

/// Lays `graph` out in layers.
pub fn layered(graph: &FlatGraph) -> Layout {
    let n = graph.nodes.len();
    // Each node's layer: one past its furthest input, in topological order.
    let mut inputs_left = vec![0usize; n];
    for e in &graph.edges {
        inputs_left[e.to] += 1;
    }
    let mut column = vec![0usize; n];
    let mut ready: Vec<usize> = (0..n).filter(|&v| inputs_left[v] == 0).collect();
    let mut placed = vec![false; n];
    while let Some(v) = ready.pop() {
        placed[v] = true;
        for e in graph.edges.iter().filter(|e| e.from == v) {
            column[e.to] = column[e.to].max(column[v] + 1);
            inputs_left[e.to] -= 1;
            if inputs_left[e.to] == 0 {
                ready.push(e.to);
            }
        }
    }
    // A cycle (a workflow has none) would leave nodes unplaced: last column.
    let last = column.iter().copied().max().unwrap_or(0);
    for v in (0..n).filter(|&v| !placed[v]) {
        column[v] = last + 1;
    }
    let columns = column.iter().copied().max().map_or(0, |m| m + 1);
    // Rows: the first column in node order, then each node by the mean row
    // of its inputs (the barycentre), ties in node order.
    let mut row = vec![0usize; n];
    let mut rows = 0;
    for c in 0..columns {
        let mut here: Vec<(f64, usize)> = (0..n)
            .filter(|&v| column[v] == c)
            .map(|v| {
                let from: Vec<f64> = graph.edges.iter().filter(|e| e.to == v && column[e.from] < c).map(|e| row[e.from] as f64).collect();
                let centre = if from.is_empty() { v as f64 } else { from.iter().sum::<f64>() / from.len() as f64 };
                (centre, v)
            })
            .collect();
        here.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (i, (_, v)) in here.iter().enumerate() {
            row[*v] = i;
        }
        rows = rows.max(here.len());
    }
    Layout { column, row, columns, rows }
}

impl Layout {
    /// The drawing's width and height.
    pub fn size(&self) -> (f64, f64) {
        let w = MARGIN * 2.0 + self.columns as f64 * WIDTH + self.columns.saturating_sub(1) as f64 * GAP_X;
        let h = MARGIN * 2.0 + self.rows as f64 * HEIGHT + self.rows.saturating_sub(1) as f64 * GAP_Y;
        (w, h)
    }

    /// The top left corner of node `v`'s box; a column with fewer nodes
    /// than the tallest is centred.
    fn corner(&self, v: usize, in_column: usize) -> (f64, f64) {
        let x = MARGIN + self.column[v] as f64 * (WIDTH + GAP_X);
        let offset = (self.rows - in_column) as f64 * (HEIGHT + GAP_Y) / 2.0;
        let y = MARGIN + offset + self.row[v] as f64 * (HEIGHT + GAP_Y);
        (x, y)
    }
}

/// Text made safe for XML.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A name cut to what fits a box.
fn fit(s: &str, chars: usize) -> String {
    if s.chars().count() <= chars {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `graph` as SVG: a box per node (`boxes`, in node order) and an arrow
/// per edge, labelled with `edges[i]` when there is one. Colours come from
/// the classes `node`, `busy`, `full`, `failed`, `edge` and `label`.
pub fn to_svg(graph: &FlatGraph, boxes: &[NodeBox], edges: &[Option<String>]) -> String {
    let layout = layered(graph);
    let (w, h) = layout.size();
    let mut in_column = vec![0usize; layout.columns];
    for &c in &layout.column {
        in_column[c] += 1;
    }
    let corner = |v: usize| layout.corner(v, in_column[layout.column[v]]);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"graph\" viewBox=\"0 0 {w:.0} {h:.0}\" width=\"{w:.0}\" height=\"{h:.0}\" role=\"img\">\n"
    );
    out.push_str(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">\
         <path d=\"M0,0 L10,5 L0,10 z\" class=\"arrowhead\"/></marker></defs>\n",
    );
    for (i, e) in graph.edges.iter().enumerate() {
        let (fx, fy) = corner(e.from);
        let (tx, ty) = corner(e.to);
        let (x1, y1, x2, y2) = (fx + WIDTH, fy + HEIGHT / 2.0, tx, ty + HEIGHT / 2.0);
        let bend = ((x2 - x1) / 2.0).max(30.0);
        out.push_str(&format!(
            "<path class=\"edge\" d=\"M{x1:.1},{y1:.1} C{:.1},{y1:.1} {:.1},{y2:.1} {x2:.1},{y2:.1}\" marker-end=\"url(#arrow)\"/>\n",
            x1 + bend,
            x2 - bend
        ));
        if let Some(Some(label)) = edges.get(i) {
            let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0 - 6.0);
            out.push_str(&format!("<text class=\"label\" x=\"{mx:.1}\" y=\"{my:.1}\" text-anchor=\"middle\">{}</text>\n", escape(label)));
        }
    }
    for v in 0..graph.nodes.len() {
        let (x, y) = corner(v);
        let b = boxes.get(v).cloned().unwrap_or_else(|| NodeBox { title: graph.nodes[v].name.clone(), ..NodeBox::default() });
        out.push_str(&format!(
            "<g class=\"{}\" data-node=\"{}\"><title>{}</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" rx=\"6\"/>\n",
            b.state.class(),
            escape(&graph.nodes[v].name),
            escape(&graph.nodes[v].name)
        ));
        out.push_str(&format!("<text class=\"name\" x=\"{:.1}\" y=\"{:.1}\">{}</text>\n", x + 10.0, y + 20.0, escape(&fit(&b.title, 26))));
        for (k, line) in b.lines.iter().take(2).enumerate() {
            out.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
                x + 10.0,
                y + 38.0 + k as f64 * 16.0,
                escape(&fit(line, 30))
            ));
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::model::{FlatEdge, FlatNode};

    fn graph(names: &[&str], edges: &[(usize, usize)]) -> FlatGraph {
        let op = crate::workflow::operator::Operator::Collect;
        FlatGraph {
            nodes: names.iter().map(|n| FlatNode { name: n.to_string(), op: op.clone() }).collect(),
            edges: edges.iter().map(|&(from, to)| FlatEdge { from, port: 0, to, to_port: 0 }).collect(),
        }
    }

    #[test]
    fn each_node_is_one_column_past_its_furthest_input() {
        // a -> b -> d, a -> c -> d, a -> d: d is past b and c, not beside them.
        let g = graph(&["a", "b", "c", "d"], &[(0, 1), (0, 2), (1, 3), (2, 3), (0, 3)]);
        let l = layered(&g);
        assert_eq!(l.column, vec![0, 1, 1, 2]);
        assert_eq!((l.row[1], l.row[2]), (0, 1), "a column keeps node order on ties");
        let (w, h) = l.size();
        assert_eq!((w, h), (MARGIN * 2.0 + 3.0 * WIDTH + 2.0 * GAP_X, MARGIN * 2.0 + 2.0 * HEIGHT + GAP_Y));
    }

    #[test]
    fn nodes_sit_beside_their_inputs_so_edges_do_not_cross() {
        // Two chains whose sources are listed one way and their next nodes the other.
        let g = graph(&["s1", "s2", "after s2", "after s1"], &[(0, 3), (1, 2)]);
        let l = layered(&g);
        assert_eq!((l.row[0], l.row[1]), (0, 1));
        assert_eq!((l.row[3], l.row[2]), (0, 1), "each follows its own source's row");
    }

    #[test]
    fn the_svg_has_a_box_per_node_an_arrow_per_edge_and_escapes_names() {
        let g = graph(&["read <lines>", "count & sum"], &[(0, 1)]);
        let boxes = vec![
            NodeBox { title: "read <lines>".into(), lines: vec!["1,204/s in".into()], state: State::Flowing },
            NodeBox { title: "count & sum".into(), lines: vec![], state: State::of(9, 10, 0) },
        ];
        let svg = to_svg(&g, &boxes, &[Some("1,204/s".into())]);
        assert_eq!(svg.matches("<rect").count(), 2);
        assert_eq!(svg.matches("class=\"edge\"").count(), 1);
        assert!(svg.contains("read &lt;lines&gt;") && svg.contains("count &amp; sum") && !svg.contains("<lines>"), "{svg}");
        assert!(svg.contains("class=\"node busy\""), "{svg}");
        assert!(svg.contains(">1,204/s</text>"), "{svg}");
    }

    #[test]
    fn back_pressure_colours_by_how_full_the_inboxes_are() {
        assert_eq!(State::of(0, 0, 0), State::Flowing);
        assert_eq!(State::of(5, 10, 0), State::Flowing);
        assert_eq!(State::of(6, 10, 0), State::Busy);
        assert_eq!(State::of(10, 10, 0), State::Full);
        assert_eq!(State::of(0, 10, 1), State::Failed);
    }
}
