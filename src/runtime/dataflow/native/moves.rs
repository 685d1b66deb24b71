//! The function's result may take a variable's value instead of cloning
//! it: `[acc, acc.n + " items"]` at the end of a reduce function moves the
//! accumulator (a map clone saved per record). A read is a move only where
//! nothing reads the variable afterwards: in the expression the function
//! ends with (its last statement, or a `return` of its own block), as the
//! expression itself or as one element of the array or map literal it
//! builds. Evaluation takes it after every other element (`eval`), so the
//! others may read it (`[acc, acc.n + " items"]`), and a step that gives
//! up has not taken it yet.

use super::tree::{Block, Node, Statement};

/// Rewrites the reads in `body` that may move.
pub fn take_at_the_end(body: &mut Block) {
    let last = body.0.len().saturating_sub(1);
    for (i, statement) in body.0.iter_mut().enumerate() {
        match statement {
            Statement::Return(node) => take_in(node),
            Statement::Expr(node) if i == last => take_in(node),
            _ => {}
        }
    }
}

fn take_in(node: &mut Node) {
    if let Node::Local(slot) = *node {
        *node = Node::Take(slot);
        return;
    }
    // One element is the variable itself; the others are computed first,
    // so they may read it (but not through a statement, whose reads are
    // not counted).
    let items = literal(node);
    let movable: Vec<usize> = items
        .iter()
        .filter_map(|item| local(item))
        .filter(|&s| items.iter().filter(|item| local(item) == Some(s)).count() == 1 && reads(node, s).is_some())
        .collect();
    for item in literal_mut(node) {
        if let Some(slot) = local(item).filter(|s| movable.contains(s)) {
            *item = Node::Take(slot);
        }
    }
}

/// The elements of an array literal or the values of a map literal.
fn literal(node: &Node) -> Vec<&Node> {
    match node {
        Node::Array(items) => items.iter().collect(),
        Node::Map(_, entries) => entries.iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    }
}

fn literal_mut(node: &mut Node) -> Vec<&mut Node> {
    match node {
        Node::Array(items) => items.iter_mut().collect(),
        Node::Map(_, entries) => entries.iter_mut().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    }
}

fn local(node: &Node) -> Option<usize> {
    match node {
        Node::Local(slot) => Some(*slot),
        _ => None,
    }
}

/// How many times `node` reads variable `slot`; `None` where it cannot
/// tell (statements inside an expression).
fn reads(node: &Node, slot: usize) -> Option<usize> {
    let all = |nodes: &mut dyn Iterator<Item = &Node>| nodes.map(|n| reads(n, slot)).sum::<Option<usize>>();
    match node {
        Node::Local(s) | Node::Take(s) => Some(usize::from(*s == slot)),
        Node::Param(_) | Node::Chosen(_) | Node::This | Node::Const(_) | Node::Fail => Some(0),
        Node::Array(items) | Node::Interpolated(items) | Node::And(items) | Node::Or(items) | Node::Coalesce(items) => {
            all(&mut items.iter())
        }
        Node::Call(_, args) | Node::Script(_, args) => all(&mut args.iter()),
        Node::Map(_, entries) => all(&mut entries.iter().map(|(_, v)| v)),
        Node::Binary(_, a, b) | Node::Index(a, b) => all(&mut [&**a, &**b].into_iter()),
        Node::Negate(a) | Node::Not(a) | Node::Field(a, _) | Node::Text(a) => reads(a, slot),
        Node::Piece(p) => Some(usize::from(p.slot == slot)),
        Node::Block(_) | Node::If(_) | Node::Switch(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::runtime::dataflow::native::NativeFn;

    fn translated(body: &str) -> String {
        let ast = rhai::Engine::new().compile(format!("fn f(acc, r) {{ {body} }}")).unwrap();
        format!("{:?}", NativeFn::translate(&ast, "f", 0, 2).expect("translated"))
    }

    #[test]
    fn the_end_takes_a_variable_that_is_one_element_and_clones_one_given_twice() {
        // `acc` is written, so it has a slot of its own (a local).
        assert!(translated("acc.n += 1; [acc, r.city + 1]").contains("Take(0)"));
        assert!(translated("acc.n += 1; let x = acc.n; #{ a: acc, b: x }").contains("Take(0)"));
        assert!(translated("acc.n += 1; acc").contains("Take(0)"));
        // The other elements read it before it is taken.
        assert!(translated("acc.n += 1; [acc, r.city + acc.n, [acc.total, acc]]").contains("Take(0)"));
        assert!(!translated("acc.n += 1; [acc, acc]").contains("Take"));
        assert!(!translated("acc.n += 1; [acc, if r { acc } else { 1 }]").contains("Take"));
        // Not the end: what follows may read it.
        assert!(!translated("acc.n += 1; let y = [acc, 1]; y[0].n + acc.n").contains("Take(0)"));
    }
}
