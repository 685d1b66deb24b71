//! Script functions that run in Rust. A function is translated once into a
//! tree (`tree`) and evaluated here (`eval`) without Rhai's per-call state
//! (a call costs ~400 ns in Rhai before the body runs).
//!
//! The tree covers what users write in closures and callbacks: `let` and
//! several statements, assignment to variables, fields, indexes and `this`
//! (`=` and `op=`), `push`, `emit`, `if` and `switch`, `return`, map and
//! array literals, interpolation, Rhai's operators on integers, floats,
//! strings, characters, booleans and `()` (`"n=" + 1` included), and the
//! common functions of strings, numbers, arrays and maps (`methods`).
//!
//! Evaluation takes only what is certain to mean what Rhai means. Anything
//! else — an overflow, a missing field, an error Rhai would report, a
//! `throw`, a value of another type — gives up before anything outside the
//! call changed, and the caller runs the function in Rhai, which gives the
//! result or the error it always did. `differential` checks the two agree
//! on many generated functions and records.

mod chosen;
mod cx;
mod eval;
mod methods;
mod moves;
mod ops;
mod paths;
mod pieces;
mod tree;
mod walk;

#[cfg(test)]
mod differential;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::BTreeSet;

use rhai::{Dynamic, ImmutableString, AST};

use cx::Cx;
use eval::Exit;
use methods::Builtin;
use tree::{Block, Node, Statement, Translator};

/// A callback gave up and its changes to `this` could not be undone: Rhai
/// must not run it on a state half changed.
#[derive(Debug)]
pub struct NotUndone;

/// What a call computed: one value, or the two of a body that ends in a
/// literal `[a, b]` when the caller asked for them apart (a reduce
/// function's `[state, emitted]`: no array is made and taken apart).
#[derive(Debug)]
pub enum Computed {
    One(Dynamic),
    Two([Dynamic; 2]),
}

impl Computed {
    /// The value as Rhai gives it: the two as an array.
    #[inline]
    pub fn into_dynamic(self) -> Dynamic {
        match self {
            Computed::One(v) => v,
            Computed::Two(two) => Dynamic::from_array(two.into()),
        }
    }
}

/// What a call gives: a `Dynamic`, a `Computed` that keeps a pair's two
/// values apart, or a predicate's `bool`.
trait Ending: Sized {
    fn body<'t>(b: &'t Block, cx: &mut Cx<'t>) -> eval::Flow<Self>;
    /// The value of a `return`; `None` where Rhai must decide.
    fn returned(v: Dynamic) -> Option<Self>;
}

impl Ending for Dynamic {
    fn body<'t>(b: &'t Block, cx: &mut Cx<'t>) -> eval::Flow<Self> {
        eval::block(b, cx)
    }
    fn returned(v: Dynamic) -> Option<Self> {
        Some(v)
    }
}

impl Ending for Computed {
    fn body<'t>(b: &'t Block, cx: &mut Cx<'t>) -> eval::Flow<Self> {
        // A body that ends in `[a, b]` (a reduce function's `[state,
        // emitted]`): the two apart, without the array.
        if let Some((Statement::Expr(Node::Array(items)), init)) = b.0.split_last() {
            if items.len() == 2 {
                eval::effects(init, cx)?;
                let mut two = [Dynamic::UNIT, Dynamic::UNIT];
                eval::elements(items, &mut two, cx)?;
                return Ok(Computed::Two(two));
            }
        }
        eval::block(b, cx).map(Computed::One)
    }
    fn returned(v: Dynamic) -> Option<Self> {
        Some(Computed::One(v))
    }
}

impl Ending for bool {
    /// The last expression decided as a condition is (`truth`). A block
    /// that ends otherwise is `()`, and Rhai decides (a filter's error).
    fn body<'t>(b: &'t Block, cx: &mut Cx<'t>) -> eval::Flow<Self> {
        let Some((Statement::Expr(node), init)) = b.0.split_last() else {
            return Err(Exit::GiveUp);
        };
        eval::effects(init, cx)?;
        eval::truth(node, cx)
    }
    fn returned(v: Dynamic) -> Option<Self> {
        v.as_bool().ok()
    }
}

/// A script function translated into a tree.
#[derive(Debug)]
pub struct NativeFn {
    body: Block,
    /// Parameters (captured values first) and variables; none when the
    /// body has no variable and writes no argument.
    slots: usize,
    /// Arguments the body writes: copied into their slots first.
    written: BTreeSet<usize>,
    /// A frame kept between calls, to save allocating one per record.
    spare: RefCell<Vec<Dynamic>>,
}

impl NativeFn {
    /// Translates the script function `name` of `arity` parameters in
    /// `ast`, the first `curry` of them captured values, if its body is
    /// made of what the tree covers.
    pub fn translate(ast: &AST, name: &str, curry: usize, arity: usize) -> Option<NativeFn> {
        // A script's own function of a name the tree runs is the one called.
        if ast.iter_functions().any(|f| Builtin::is_name(f.name)) {
            return None;
        }
        Self::translate_in(ast, name, curry, arity, Vec::new())
    }

    /// A script function called by one being translated (`stack`): up to
    /// a few calls deep, and never one already being translated.
    fn nested(ast: &AST, name: &str, arity: usize, stack: &[(ImmutableString, usize)]) -> Option<NativeFn> {
        const DEEPEST: usize = 8;
        if stack.len() >= DEEPEST || stack.iter().any(|(n, a)| n.as_str() == name && *a == arity) {
            return None;
        }
        Self::translate_in(ast, name, 0, arity, stack.to_vec())
    }

    fn translate_in(ast: &AST, name: &str, curry: usize, arity: usize, mut stack: Vec<(ImmutableString, usize)>) -> Option<NativeFn> {
        stack.push((name.into(), arity));
        let emit = !ast.iter_functions().any(|f| f.name == "emit");
        let params: Vec<ImmutableString> =
            ast.iter_functions().find(|f| f.name == name && f.params.len() == arity)?.params.iter().map(|p| (*p).into()).collect();
        // The body's statements: the roots of a walk over the function alone.
        let mut one = ast.clone_functions_only();
        one.retain_functions(|_, _, n, a| n == name && a == arity);
        let mut body: Vec<rhai::Stmt> = Vec::new();
        one.walk(&mut |path: &[rhai::ASTNode]| {
            if let [rhai::ASTNode::Stmt(stmt)] = path {
                body.push((*stmt).clone());
            }
            true
        });
        // Arguments the body writes are found while translating; the
        // reads translated before that must see the copy, so translate again.
        let mut written = BTreeSet::new();
        loop {
            let mut t = Translator::new(ast, stack.clone(), &params, curry, written.clone(), emit);
            let mut block = t.body(&body)?;
            if t.written == written {
                let slots = if t.slots == params.len() && written.is_empty() { 0 } else { t.slots };
                pieces::keep_split_text(&mut block);
                moves::take_at_the_end(&mut block);
                chosen::choose_constants(&mut block);
                return Some(NativeFn { body: block, slots, written, spare: RefCell::new(Vec::new()) });
            }
            written = t.written;
        }
    }

    /// The function's value for its captured values `curry` and `args`,
    /// or `None` where Rhai must decide.
    pub fn eval(&self, curry: &[Dynamic], args: &[&Dynamic]) -> Option<Dynamic> {
        // Without `this` there is nothing to undo.
        self.run::<Dynamic>(curry, args, None, None, None).ok().flatten()
    }

    /// A predicate's value (a filter's): its last expression decided
    /// straight to a `bool`, without a `Dynamic` of it; `None` where Rhai
    /// must decide, a value that is not a `bool` included.
    pub fn test(&self, curry: &[Dynamic], args: &[&Dynamic]) -> Option<bool> {
        self.run::<bool>(curry, args, None, None, None).ok().flatten()
    }

    /// The value of a function whose first argument (after the captured
    /// values) is a state the caller gives it to own, `rest` the others:
    /// `Ok(value)`, or `Err(state)` as it was given where Rhai must decide.
    /// A body that changes the state changes it in place, without the copy
    /// a borrowed argument needs (a reduce function's accumulator).
    /// With `two`, a body that ends in `[a, b]` gives `Computed::Two`.
    pub fn eval_owning(
        &self,
        curry: &[Dynamic],
        mut state: Dynamic,
        rest: &[&Dynamic],
        two: bool,
    ) -> Result<Result<Computed, Dynamic>, NotUndone> {
        let mut args = Vec::with_capacity(rest.len() + 1);
        if !self.written.contains(&curry.len()) || state.is_shared() {
            args.push(&state);
            args.extend_from_slice(rest);
            let value = match two {
                true => self.run::<Computed>(curry, &args, None, None, None),
                false => self.run::<Dynamic>(curry, &args, None, None, None).map(|v| v.map(Computed::One)),
            };
            return Ok(match value.ok().flatten() {
                Some(value) => Ok(value),
                None => Err(state),
            });
        }
        // Read through its slot only: the argument is a placeholder.
        args.push(&Dynamic::UNIT);
        args.extend_from_slice(rest);
        let value = match two {
            true => self.run::<Computed>(curry, &args, None, None, Some(&mut state))?,
            false => self.run::<Dynamic>(curry, &args, None, None, Some(&mut state))?.map(Computed::One),
        };
        match value {
            Some(value) => Ok(Ok(value)),
            None => Ok(Err(state)),
        }
    }

    /// The same for a callback, with `this` bound to `state` and what it
    /// emits appended to `emitted` (both untouched when it gives up).
    /// Fails if it gave up and could not put `state` back.
    pub fn eval_this(
        &self,
        curry: &[Dynamic],
        args: &[&Dynamic],
        state: &mut Dynamic,
        emitted: Option<&mut Vec<(ImmutableString, Dynamic)>>,
    ) -> Result<Option<Dynamic>, NotUndone> {
        self.run::<Dynamic>(curry, args, Some(state), emitted, None)
    }

    /// A call from another translated function: no `this`, no `emit`.
    fn call(&self, args: &[&Dynamic]) -> Option<Dynamic> {
        self.run::<Dynamic>(&[], args, None, None, None).ok().flatten()
    }

    fn run<R: Ending>(
        &self,
        curry: &[Dynamic],
        args: &[&Dynamic],
        this: Option<&mut Dynamic>,
        emitted: Option<&mut Vec<(ImmutableString, Dynamic)>>,
        mut owned: Option<&mut Dynamic>,
    ) -> Result<Option<R>, NotUndone> {
        let mut frame = Vec::new();
        if self.slots > 0 {
            frame = self.spare.try_borrow_mut().map(|mut f| std::mem::take(&mut *f)).unwrap_or_default();
            // Each a copy of the constant (`resize` clones one value
            // through a call per slot).
            frame.extend(std::iter::repeat_with(|| Dynamic::UNIT).take(self.slots));
        }
        let mut cx = Cx::new(curry, args, frame, this, emitted.is_some());
        let owned_slot = owned.is_some().then_some(curry.len());
        for &i in &self.written {
            if Some(i) != owned_slot {
                cx.frame[i] = cx.param(i).flatten_clone();
            }
        }
        if let (Some(slot), Some(state)) = (owned_slot, owned.as_deref_mut()) {
            cx.frame[slot] = std::mem::replace(state, Dynamic::UNIT);
            cx.owned = Some(slot);
        }
        let ended = match R::body(&self.body, &mut cx) {
            Ok(v) => Ok(v),
            Err(Exit::Return) => cx.returned.take().and_then(R::returned).ok_or(Exit::GiveUp),
            Err(e) => Err(e),
        };
        let result = match ended {
            Ok(v) => Some(v),
            Err(Exit::Return | Exit::GiveUp | Exit::Break | Exit::Continue) => {
                if !cx.undo() {
                    return Err(NotUndone);
                }
                // The state back to its owner, as it was.
                if let (Some(slot), Some(state)) = (owned_slot, owned) {
                    *state = std::mem::replace(&mut cx.frame[slot], Dynamic::UNIT);
                }
                None
            }
        };
        if result.is_some() {
            if let (Some(out), Some(sent)) = (emitted, cx.emitted.take()) {
                out.extend(sent);
            }
        }
        if self.slots > 0 {
            let mut frame = std::mem::take(&mut cx.frame);
            frame.clear();
            if let Ok(mut spare) = self.spare.try_borrow_mut() {
                *spare = frame;
            }
        }
        Ok(result)
    }
}
