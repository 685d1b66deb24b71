//! `let f = line.split(","); ... f[0] ... parse_int(f[1])`: a split whose
//! array is only ever read at constant indexes keeps the line and finds a
//! piece when one is read, instead of making a string of every piece. A
//! piece parsed or appended (`parse_int(f[1])`, `` `${f[0]}` ``, `f[2] +
//! ":"`) is read in place and makes no string at all.

use rhai::{Dynamic, ImmutableString};

use super::methods::Builtin;
use super::tree::{Block, Node, Piece, Root, Statement};
use super::walk::{nodes, statements};

impl Piece {
    /// The piece of `text`, as Rhai's `split` makes it, and where it
    /// starts. `from`: a piece of the same text before it, and where that
    /// one starts, to go on from.
    pub fn of<'t>(&self, text: &'t str, from: Option<(usize, usize)>) -> Option<(&'t str, usize)> {
        // Rhai's `split` of "" is [""], whatever the delimiter.
        if text.is_empty() {
            return (self.index == 0).then_some((text, 0));
        }
        // One ASCII byte (`,`, ` `, `\t`): the separators before the piece
        // skipped (pieces are short: a plain loop), and a byte that is
        // ASCII is never inside a character, so the piece's ends are
        // character boundaries.
        if let [d] = self.delimiter.as_bytes() {
            if d.is_ascii() {
                let bytes = text.as_bytes();
                let find = |from: usize| bytes[from..].iter().position(|b| b == d).map(|at| from + at);
                let (mut index, mut start) = from.filter(|(i, s)| *i <= self.index && *s <= bytes.len()).unwrap_or((0, 0));
                while index < self.index {
                    start = find(start)? + 1;
                    index += 1;
                }
                let end = find(start).unwrap_or(bytes.len());
                return Some((&text[start..end], start));
            }
        }
        let mut chars = self.delimiter.chars();
        let piece = match (chars.next(), chars.next()) {
            (Some(c), None) => text.split(c).nth(self.index),
            _ => text.split(self.delimiter.as_str()).nth(self.index),
        }?;
        Some((piece, piece.as_ptr() as usize - text.as_ptr() as usize))
    }
}

/// Rewrites the splits of `body` that may keep their text.
pub fn keep_split_text(body: &mut Block) {
    let mut splits = Vec::new();
    statements(body, &mut |s| {
        if let Statement::Let(slot, Node::Call(Builtin::Split, args)) = s {
            if let [_, Node::Const(d)] = args.as_slice() {
                if let Some(d) = d.read_lock::<ImmutableString>() {
                    splits.push((*slot, d.clone()));
                }
            }
        }
    });
    for (slot, delimiter) in splits {
        if !only_indexed(body, slot) {
            continue;
        }
        statements(body, &mut |s| {
            if let Statement::Let(at, value @ Node::Call(Builtin::Split, _)) = s {
                if *at == slot {
                    let Node::Call(_, args) = std::mem::replace(value, Node::Fail) else { unreachable!("matched") };
                    let text = args.into_iter().next().expect("a receiver");
                    *value = Node::Text(Box::new(text));
                }
            }
        });
        nodes(body, &mut |n| {
            if let Some(index) = constant_index(n, slot) {
                *n = Node::Piece(Box::new(Piece { slot, delimiter: delimiter.clone(), index }));
            }
        });
    }
}

/// `f[k]` of the variable in `slot`, `k` a constant of 0 or more.
fn constant_index(node: &Node, slot: usize) -> Option<usize> {
    match node {
        Node::Index(array, i) if matches!(**array, Node::Local(s) if s == slot) => match &**i {
            Node::Const(k) => usize::try_from(k.as_int().ok()?).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// Whether the variable in `slot` is read only at constant indexes and never written.
fn only_indexed(body: &mut Block, slot: usize) -> bool {
    let (mut reads, mut indexed) = (0, 0);
    nodes(body, &mut |n| match n {
        Node::Local(s) | Node::Take(s) if *s == slot => reads += 1,
        _ if constant_index(n, slot).is_some() => indexed += 1,
        _ => {}
    });
    let mut written = false;
    statements(body, &mut |s| match s {
        Statement::Assign(place, ..) | Statement::Push(place, _) => written |= matches!(place.root, Root::Local(s) if s == slot),
        Statement::For(l) => written |= l.var == slot || l.counter == Some(slot),
        _ => {}
    });
    // Each constant index holds one read of the variable itself.
    !written && reads == indexed
}

/// The text a split keeps: a string, else Rhai decides.
pub fn text(v: Dynamic) -> Option<Dynamic> {
    v.is_string().then_some(v)
}
