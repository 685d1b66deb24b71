//! The state of one call of a translated function: its arguments and
//! variables, `this`, what it emitted, and the changes to undo if it gives
//! up; and reading values in place, without a copy.

use rhai::{Array, Dynamic, ImmutableString, Map};

use super::paths::{at_mut, field, held, position, restore, Key};
use super::tree::{Node, Root, Step};

/// A change to `this` or to the state the call owns, to undo.
pub(super) enum Undo<'t> {
    /// The value at the path before (`None`: the map had no such key).
    Restore(Root, Vec<Key>, Option<Dynamic>),
    /// The same for fields of a variable (`acc.n += 1`), as the tree names
    /// them: nothing to allocate for the commonest change.
    Fields(usize, &'t [Step], Option<Dynamic>),
    /// An element pushed onto the array at the path.
    Pop(Root, Vec<Key>),
}

pub struct Cx<'a> {
    pub curry: &'a [Dynamic],
    pub args: &'a [&'a Dynamic],
    pub frame: Vec<Dynamic>,
    pub this: Option<&'a mut Dynamic>,
    /// The slot of the state the caller gave the call to own (a reduce
    /// function's accumulator): changed in place, and put back as it was
    /// if the call gives up.
    pub owned: Option<usize>,
    pub(super) undo: smallvec::SmallVec<[Undo<'a>; 2]>,
    /// What `emit` sent, when the call may emit.
    pub emitted: Option<Vec<(ImmutableString, Dynamic)>>,
    /// Loop turns taken.
    pub(super) turns: u32,
    /// The value of the `return` that ended the call.
    pub returned: Option<Dynamic>,
    /// The constants the variables of `chosen` hold.
    pub(super) chosen: [&'a Dynamic; super::chosen::MOST],
    /// The last piece of a split's text found: its slot, index and start.
    pub(super) piece_at: std::cell::Cell<(usize, usize, usize)>,
}

pub(super) const NO_PIECE: (usize, usize, usize) = (usize::MAX, 0, 0);

impl<'a> Cx<'a> {
    pub fn new(curry: &'a [Dynamic], args: &'a [&'a Dynamic], frame: Vec<Dynamic>, this: Option<&'a mut Dynamic>, emits: bool) -> Cx<'a> {
        Cx {
            curry,
            args,
            frame,
            this,
            owned: None,
            undo: smallvec::SmallVec::new(),
            emitted: emits.then(Vec::new),
            turns: 0,
            returned: None,
            chosen: [&super::chosen::NONE; super::chosen::MOST],
            piece_at: std::cell::Cell::new(NO_PIECE),
        }
    }

    pub fn param(&self, i: usize) -> &'a Dynamic {
        match i.checked_sub(self.curry.len()) {
            None => &self.curry[i],
            Some(j) => self.args[j],
        }
    }

    /// Puts `this` and the state the call owns back as they were before
    /// the call; false if a change could not be found again (each succeeded along its path, so each undo
    /// should find it: false is a fault of the tree, never silent).
    pub fn undo(&mut self) -> bool {
        let mut all = true;
        while let Some(undo) = self.undo.pop() {
            let undone = match undo {
                Undo::Restore(root, path, old) => self.root_mut(root).and_then(|v| restore(v, &path, old)),
                Undo::Fields(slot, names, old) => {
                    let path: Vec<Key> =
                        names.iter().filter_map(|s| if let Step::Field(n) = s { Some(Key::Field(n.clone())) } else { None }).collect();
                    self.frame.get_mut(slot).and_then(|v| restore(v, &path, old))
                }
                Undo::Pop(root, path) => {
                    self.root_mut(root).and_then(|v| at_mut(v, &path, &mut |v| v.write_lock::<Array>()?.pop().map(|_| ())))
                }
            };
            all &= undone.is_some();
        }
        all
    }

    pub(super) fn root_mut(&mut self, root: Root) -> Option<&mut Dynamic> {
        match root {
            Root::Local(slot) => self.frame.get_mut(slot),
            Root::This => self.this.as_deref_mut(),
        }
    }

    /// Whether changes under `root` must be undone if the call gives up.
    pub(super) fn undoes(&self, root: Root) -> bool {
        match root {
            Root::This => true,
            Root::Local(slot) => self.owned == Some(slot),
        }
    }

    /// A value read in place: an argument, a variable, `this`, a constant.
    pub(super) fn peek<'c>(&'c self, node: &'c Node) -> Option<&'c Dynamic> {
        match node {
            Node::Param(i) => Some(self.param(*i)).filter(|v| !v.is_shared()),
            Node::Local(slot) => self.frame.get(*slot),
            Node::Chosen(n) => Some(self.chosen[*n]),
            Node::This => self.this.as_deref(),
            Node::Const(v) => Some(v),
            _ => None,
        }
    }

    /// A value read in place as `peek` reads it, or a field or a constant
    /// index along such a value (`r.name`, `f[0]`, `acc.n`): no clone.
    /// `None` where the value must be computed (see [`in_place`]).
    pub(super) fn look<'c>(&'c self, node: &'c Node) -> Option<&'c Dynamic> {
        match node {
            Node::Field(c, name) => field(held::<Map>(self.look(c)?)?, name.as_str()),
            Node::Index(c, i) => match &**i {
                Node::Const(i) => {
                    let v = self.look(c)?;
                    if let Some(a) = held::<Array>(v) {
                        return a.get(position(a.len(), i)?);
                    }
                    field(held::<Map>(v)?, i.read_lock::<ImmutableString>()?.as_str())
                }
                _ => None,
            },
            _ => self.peek(node),
        }
    }
}

/// The piece `p` of the text its split keeps.
pub(super) fn piece<'c>(p: &super::tree::Piece, cx: &'c Cx) -> Option<&'c str> {
    let text = held::<ImmutableString>(cx.frame.get(p.slot)?)?;
    // Pieces are mostly read in order (`f[0]`, then `f[1]`...): the search
    // goes on from the last one found in the same text.
    let (slot, index, start) = cx.piece_at.get();
    let from = (slot == p.slot).then_some((index, start));
    let (piece, start) = p.of(text.as_str(), from)?;
    cx.piece_at.set((p.slot, p.index, start));
    Some(piece)
}

/// Whether `look` may read `node` in place: it still answers `None` where
/// the value is not there to read (a missing field, a shared value, a
/// string's character), and the caller computes it then.
pub(super) fn in_place(node: &Node) -> bool {
    match node {
        Node::Param(_) | Node::Local(_) | Node::Chosen(_) | Node::This | Node::Const(_) => true,
        Node::Field(c, _) => in_place(c),
        Node::Index(c, i) => matches!(**i, Node::Const(_)) && in_place(c),
        _ => false,
    }
}
