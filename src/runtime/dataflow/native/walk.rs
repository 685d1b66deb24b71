//! Visiting every statement and node of a translated body, for the passes
//! that rewrite it after translation (`pieces`, `chosen`).

use super::tree::{Block, Loop, Node, Over, Statement, Step, Switch};

/// Calls `f` on every statement, at any depth.
pub fn statements(block: &mut Block, f: &mut dyn FnMut(&mut Statement)) {
    walk(block, f, &mut |_| {});
}

/// Calls `f` on every node, at any depth, outer nodes before inner ones.
pub fn nodes(block: &mut Block, f: &mut dyn FnMut(&mut Node)) {
    walk(block, &mut |_| {}, f);
}

fn walk(block: &mut Block, s: &mut dyn FnMut(&mut Statement), n: &mut dyn FnMut(&mut Node)) {
    for statement in &mut block.0 {
        s(statement);
        match statement {
            Statement::Let(_, v) | Statement::Choose(_, v) | Statement::Expr(v) | Statement::Return(v) => node(v, s, n),
            Statement::Assign(place, _, v) | Statement::Push(place, v) => {
                for step in &mut place.path {
                    if let Step::Index(i) = step {
                        node(i, s, n);
                    }
                }
                node(v, s, n);
            }
            Statement::Emit(port, v) => {
                node(port, s, n);
                node(v, s, n);
            }
            Statement::For(l) => {
                let Loop { over, body, .. } = &mut **l;
                match over {
                    Over::Range(a, b, _) => {
                        node(a, s, n);
                        node(b, s, n);
                    }
                    Over::Value(v) => node(v, s, n),
                }
                walk(body, s, n);
            }
            Statement::Break | Statement::Continue => {}
        }
    }
}

fn node(at: &mut Node, s: &mut dyn FnMut(&mut Statement), n: &mut dyn FnMut(&mut Node)) {
    n(at);
    match at {
        Node::Param(_) | Node::Local(_) | Node::Take(_) | Node::Chosen(_) | Node::This | Node::Const(_) | Node::Fail | Node::Piece(_) => {}
        Node::Array(items) | Node::Interpolated(items) | Node::And(items) | Node::Or(items) | Node::Coalesce(items) => {
            items.iter_mut().for_each(|i| node(i, s, n))
        }
        Node::Call(_, args) | Node::Script(_, args) => args.iter_mut().for_each(|a| node(a, s, n)),
        Node::Map(_, entries) => entries.iter_mut().for_each(|(_, v)| node(v, s, n)),
        Node::Binary(_, a, b) | Node::Index(a, b) => {
            node(a, s, n);
            node(b, s, n);
        }
        Node::Negate(a) | Node::Not(a) | Node::Field(a, _) | Node::Text(a) => node(a, s, n),
        Node::Block(b) => walk(b, s, n),
        Node::If(x) => {
            let (cond, body, other) = &mut **x;
            node(cond, s, n);
            walk(body, s, n);
            walk(other, s, n);
        }
        Node::Switch(x) => {
            let Switch { value, arms, .. } = &mut **x;
            node(value, s, n);
            for (cond, result) in arms {
                node(cond, s, n);
                node(result, s, n);
            }
        }
    }
}
