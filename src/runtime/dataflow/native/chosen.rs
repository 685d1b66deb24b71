//! `let group = if r.age < 18 { "minor" } else { "adult" };`: a variable
//! whose value is always one of the function's constants holds which one
//! (a reference into the tree), not a copy of it: no count to change on a
//! shared string when it is set and when the call ends, nothing to drop.
//! Only a variable that nothing writes or moves after its `let`.

use rhai::Dynamic;

use super::tree::{Block, Node, Root, Statement};
use super::walk::{nodes, statements};

/// The variables of this kind one call holds at most.
pub const MOST: usize = 4;

/// What a variable of this kind holds before its `let` (never read then).
pub static NONE: Dynamic = Dynamic::UNIT;

/// Rewrites the `let`s of `body` whose value is a constant chosen.
pub fn choose_constants(body: &mut Block) {
    let mut slots = Vec::new();
    statements(body, &mut |s| {
        if let Statement::Let(slot, value) = s {
            if constant(value) {
                slots.push(*slot);
            }
        }
    });
    // Written, moved, looped over or split: a variable of its own.
    statements(body, &mut |s| match s {
        Statement::Assign(place, ..) | Statement::Push(place, _) => {
            if let Root::Local(x) = place.root {
                slots.retain(|s| *s != x);
            }
        }
        Statement::For(l) => slots.retain(|s| *s != l.var && Some(*s) != l.counter),
        _ => {}
    });
    nodes(body, &mut |n| match n {
        Node::Take(x) => slots.retain(|s| s != x),
        Node::Piece(p) => slots.retain(|s| *s != p.slot),
        _ => {}
    });
    slots.truncate(MOST);
    statements(body, &mut |s| {
        if let Statement::Let(slot, value) = s {
            if let Some(n) = slots.iter().position(|x| x == slot) {
                *s = Statement::Choose(n, std::mem::replace(value, Node::Fail));
            }
        }
    });
    nodes(body, &mut |node| {
        if let Node::Local(slot) = node {
            if let Some(n) = slots.iter().position(|x| x == slot) {
                *node = Node::Chosen(n);
            }
        }
    });
}

/// Whether `node`'s value is always one of its constants: a constant, or
/// an `if` or `switch` each of whose results is.
pub fn constant(node: &Node) -> bool {
    let block = |b: &Block| match b.0.as_slice() {
        [] => true,
        [Statement::Expr(n)] => constant(n),
        _ => false,
    };
    match node {
        Node::Const(_) => true,
        Node::Block(b) => block(b),
        Node::If(x) => block(&x.1) && block(&x.2),
        Node::Switch(s) => s.arms.iter().all(|(_, result)| constant(result)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::runtime::dataflow::native::NativeFn;
    use rhai::Dynamic;

    fn translated(body: &str) -> NativeFn {
        let ast = rhai::Engine::new().compile(format!("fn f(r) {{ {body} }}")).unwrap();
        NativeFn::translate(&ast, "f", 0, 1).expect("translated")
    }

    #[test]
    fn a_variable_that_holds_a_constant_chosen_holds_which_and_gives_its_value() {
        let body = r#"let g = if r < 18 { "minor" } else if r < 65 { "adult" } else { "senior" };
            let c = switch r { 1 => "one", _ => "many" };
            let x = if r > 100 { "big" };
            `${g} ${c} ${x}` + g.len()"#;
        let f = translated(body);
        let tree = format!("{f:?}");
        assert!(tree.contains("Choose(0") && tree.contains("Chosen(0)") && tree.contains("Chosen(2)"), "{tree}");
        for (r, shown) in [(1, "minor one 5"), (40, "adult many 5"), (101, "senior many big6")] {
            let value = f.eval(&[], &[&Dynamic::from_int(r)]).expect("the tree decides");
            assert_eq!(value.into_string().unwrap(), shown);
        }
    }

    #[test]
    fn a_variable_written_after_its_let_keeps_a_value_of_its_own() {
        let tree = format!("{:?}", translated(r#"let g = if r { "a" } else { "b" }; g += "!"; g"#));
        assert!(!tree.contains("Chosen"), "{tree}");
        let tree = format!("{:?}", translated(r#"let g = if r { "a" } else { 1 + r }; g"#));
        assert!(!tree.contains("Chosen"), "{tree}");
    }
}
