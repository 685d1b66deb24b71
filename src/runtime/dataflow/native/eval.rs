//! Evaluating a translated function. Every step either computes what Rhai
//! computes or gives up (`Exit::GiveUp`) before anything outside the call
//! changed: variables are the call's own, what `emit` sends is kept until
//! the call succeeds, and each change to `this` is logged and undone when
//! the call gives up, so that Rhai can run it again from the start.

use rhai::{Array, Dynamic, ImmutableString};

use super::chosen::NONE;
use super::cx::{in_place, piece, Cx, Undo, NO_PIECE};
use super::methods::{call, push_cased, text_test, Builtin};
use super::ops::{add_shown, binary, negate, op_assign, push_shown, test, Op, Text};
use super::paths::{assign, assign_fields, at_mut, element, held, read, Key};
use super::tree::{Block, Loop, Node, Over, Place, Root, Statement, Step, Switch};

/// Why evaluation left a block early. Without data, so that a step's
/// `Flow<Dynamic>` is no larger than a `Dynamic` (the value `return` gives
/// waits in [`Cx::returned`]).
pub enum Exit {
    /// Rhai must run the function: an error, or a value the tree does not take.
    GiveUp,
    Return,
    Break,
    Continue,
}

/// Loop turns one call may take before it is left to Rhai, whose
/// operation counter stops a runaway loop (an interrupted workflow, the
/// memory limit): a loop per record is short.
const TURNS: u32 = 10_000;

pub type Flow<T> = Result<T, Exit>;

fn up<T>(v: Option<T>) -> Flow<T> {
    v.ok_or(Exit::GiveUp)
}

pub fn block<'t>(b: &'t Block, cx: &mut Cx<'t>) -> Flow<Dynamic> {
    // Only the last statement makes a value: one moved through each
    // statement stalls the load that reads it back (the `Dynamic` is
    // written a field at a time).
    let Some((last, init)) = b.0.split_last() else {
        return Ok(Dynamic::UNIT);
    };
    effects(init, cx)?;
    match last {
        Statement::Expr(node) => eval(node, cx),
        s => statement(s, cx).map(|()| Dynamic::UNIT),
    }
}

/// Runs statements for what they do, not for a value (a block's before
/// its last).
pub fn effects<'t>(statements: &'t [Statement], cx: &mut Cx<'t>) -> Flow<()> {
    for s in statements {
        statement(s, cx)?;
    }
    Ok(())
}

/// The elements of an array literal into `values`, one per item. A
/// variable moved into the literal is taken once every other element is
/// there (`moves`): nothing after that gives up.
pub fn elements<'t>(items: &'t [Node], values: &mut [Dynamic], cx: &mut Cx<'t>) -> Flow<()> {
    for (item, value) in items.iter().zip(values.iter_mut()) {
        if !matches!(item, Node::Take(_)) {
            *value = eval(item, cx)?;
        }
    }
    for (item, value) in items.iter().zip(values.iter_mut()) {
        if let Node::Take(slot) = item {
            *value = std::mem::replace(&mut cx.frame[*slot], Dynamic::UNIT);
        }
    }
    Ok(())
}

fn statement<'t>(s: &'t Statement, cx: &mut Cx<'t>) -> Flow<()> {
    match s {
        Statement::Let(slot, value) => {
            cx.frame[*slot] = eval(value, cx)?;
        }
        Statement::Choose(n, value) => {
            cx.chosen[*n] = choose(value, cx)?;
        }
        // A variable's fields (`acc.n += 1`): changed in place.
        Statement::Assign(place, op, value) if place.local_fields().is_some() => {
            let value = eval(value, cx)?;
            let (slot, names) = place.local_fields().expect("checked");
            let old = up(assign_fields(&mut cx.frame[slot], names, *op, value))?;
            if cx.owned == Some(slot) {
                cx.undo.push(Undo::Fields(slot, names, old));
            }
        }
        Statement::Assign(place, op, value) => {
            let value = eval(value, cx)?;
            let path = keys(&place.path, cx)?;
            let value = match op {
                None => value,
                Some(op) => {
                    let current = up(read(root(place, cx)?, &path))?;
                    up(op_assign(*op, &current, &value))?
                }
            };
            let old = up(assign(root_mut(place, cx)?, &path, value))?;
            if cx.undoes(place.root) {
                cx.undo.push(Undo::Restore(place.root, path, old));
            }
        }
        Statement::Push(place, value) => {
            let value = eval(value, cx)?;
            let path = keys(&place.path, cx)?;
            up(at_mut(root_mut(place, cx)?, &path, &mut |v| {
                v.write_lock::<Array>()?.push(value.clone());
                Some(())
            }))?;
            if cx.undoes(place.root) {
                cx.undo.push(Undo::Pop(place.root, path));
            }
        }
        Statement::Emit(port, value) => {
            let (port, value) = (eval(port, cx)?, eval(value, cx)?);
            let port = up(port.into_immutable_string().ok())?;
            up(cx.emitted.as_mut())?.push((port, value));
        }
        Statement::Expr(node) => drop(eval(node, cx)?),
        Statement::Return(node) => {
            cx.returned = Some(eval(node, cx)?);
            return Err(Exit::Return);
        }
        Statement::For(l) => run_loop(l, cx)?,
        Statement::Break => return Err(Exit::Break),
        Statement::Continue => return Err(Exit::Continue),
    }
    Ok(())
}

/// A `for` loop: each turn binds the variable (and the counter) and runs
/// the body; `break` ends it, `continue` goes on with the next turn.
fn run_loop<'t>(l: &'t Loop, cx: &mut Cx<'t>) -> Flow<()> {
    let turn = |cx: &mut Cx<'t>, i: usize, value: Dynamic| -> Flow<bool> {
        cx.turns += 1;
        if cx.turns > TURNS {
            return Err(Exit::GiveUp);
        }
        cx.frame[l.var] = value;
        if let Some(c) = l.counter {
            cx.frame[c] = Dynamic::from_int(i as rhai::INT);
        }
        match block(&l.body, cx) {
            Ok(_) | Err(Exit::Continue) => Ok(true),
            Err(Exit::Break) => Ok(false),
            Err(e) => Err(e),
        }
    };
    match &l.over {
        Over::Range(from, to, inclusive) => {
            let from = up(eval(from, cx)?.as_int().ok())?;
            let to = up(eval(to, cx)?.as_int().ok())?;
            let end = if *inclusive { to.checked_add(1) } else { Some(to) };
            let end = up(end)?;
            for (i, n) in (from..end).enumerate() {
                if !turn(cx, i, Dynamic::from_int(n))? {
                    break;
                }
            }
        }
        Over::Value(over) => {
            let over = eval(over, cx)?;
            // A range of constants is a value (`1..=3` folded).
            let range = if let Some(r) = over.read_lock::<std::ops::Range<rhai::INT>>() {
                Some(r.clone())
            } else if let Some(r) = over.read_lock::<std::ops::RangeInclusive<rhai::INT>>() {
                Some(*r.start()..up(r.end().checked_add(1))?)
            } else {
                None
            };
            if let Some(range) = range {
                for (i, n) in range.enumerate() {
                    if !turn(cx, i, Dynamic::from_int(n))? {
                        break;
                    }
                }
            } else if over.is_array() {
                let items = up(over.into_array().ok())?;
                for (i, item) in items.into_iter().enumerate() {
                    if !turn(cx, i, item)? {
                        break;
                    }
                }
            } else {
                let text = up(over.into_immutable_string().ok())?;
                for (i, c) in text.chars().enumerate() {
                    if !turn(cx, i, Dynamic::from_char(c))? {
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

fn keys<'t>(path: &'t [Step], cx: &mut Cx<'t>) -> Flow<Vec<Key>> {
    path.iter()
        .map(|s| {
            Ok(match s {
                Step::Field(name) => Key::Field(name.clone()),
                Step::Index(node) => Key::Index(eval(node, cx)?),
            })
        })
        .collect()
}

fn root<'c>(place: &Place, cx: &'c Cx) -> Flow<&'c Dynamic> {
    up(match place.root {
        Root::Local(slot) => cx.frame.get(slot),
        Root::This => cx.this.as_deref(),
    })
}

fn root_mut<'c>(place: &Place, cx: &'c mut Cx) -> Flow<&'c mut Dynamic> {
    up(match place.root {
        Root::Local(slot) => cx.frame.get_mut(slot),
        Root::This => cx.this.as_deref_mut(),
    })
}

/// One node's value. The commonest nodes are here; the others are out of
/// line, so that this function's frame stays small (it is entered for
/// every node).
pub fn eval<'t>(node: &'t Node, cx: &mut Cx<'t>) -> Flow<Dynamic> {
    match node {
        Node::Param(i) => Ok(cx.param(*i).flatten_clone()),
        Node::Local(slot) => Ok(cx.frame[*slot].clone()),
        Node::Chosen(n) => Ok(cx.chosen[*n].clone()),
        Node::Const(v) => Ok(v.clone()),
        Node::Binary(op, a, b) => binary_node(node, *op, a, b, cx),
        Node::Field(..) | Node::Index(..) if in_place(node) => match cx.look(node) {
            Some(v) => Ok(v.flatten_clone()),
            None => other(node, cx),
        },
        Node::Call(builtin, args) => call_node(*builtin, args, cx),
        Node::If(x) => block(branch(x, cx)?, cx),
        Node::Interpolated(parts) => interpolated(parts, cx),
        Node::Piece(p) => Ok(Dynamic::from(ImmutableString::from(up(piece(p, cx))?))),
        _ => other(node, cx),
    }
}

#[inline(never)]
fn binary_node<'t>(node: &'t Node, op: Op, a: &'t Node, b: &'t Node, cx: &mut Cx<'t>) -> Flow<Dynamic> {
    // `a + b + c ...`: once the sum is a string, each further operand is
    // appended to one buffer (Rhai makes a string per `+`, same text).
    if op == Op::Add && matches!(a, Node::Binary(Op::Add, ..)) {
        let mut text = None;
        let acc = sum(node, &mut text, cx)?;
        return Ok(match text {
            Some(t) => Dynamic::from(ImmutableString::from(t)),
            None => acc,
        });
    }
    let x = if in_place(a) { None } else { Some(eval(a, cx)?) };
    let y = if in_place(b) { None } else { Some(eval(b, cx)?) };
    if let (Some(x), Some(y)) = (x.as_ref().or_else(|| cx.look(a)), y.as_ref().or_else(|| cx.look(b))) {
        return value_of(op, x, y);
    }
    // Not there to read in place: computed (an expression changes nothing).
    let (x, y) = (eval(a, cx)?, eval(b, cx)?);
    value_of(op, &x, &y)
}

fn value_of(op: Op, x: &Dynamic, y: &Dynamic) -> Flow<Dynamic> {
    if op.is_comparison() {
        return Ok(Dynamic::from_bool(up(test(op, x, y))?));
    }
    up(binary(op, x, y))
}

#[inline(never)]
fn call_node<'t>(builtin: Builtin, args: &'t [Node], cx: &mut Cx<'t>) -> Flow<Dynamic> {
    // `parse_int(f[1])` on a piece of a split: parsed in place.
    if let [Node::Piece(p)] = args {
        if let Some(value) = super::methods::on_text(builtin, up(piece(p, cx))?) {
            return up(value);
        }
    }
    // At most three values (receiver and arguments): on the stack, and
    // read in place where they can be.
    let mut owned: [Option<Dynamic>; 3] = [None, None, None];
    for (a, slot) in args.iter().zip(owned.iter_mut()) {
        if !in_place(a) {
            *slot = Some(eval(a, cx)?);
        }
    }
    let mut all = true;
    let mut values: [&Dynamic; 3] = [&Dynamic::UNIT; 3];
    for (i, a) in args.iter().enumerate() {
        match owned[i].as_ref().or_else(|| cx.look(a)) {
            Some(v) => values[i] = v,
            None => all = false,
        }
    }
    if all {
        return up(call(builtin, values[0], &values[1..args.len()]));
    }
    // Not there to read in place: computed (an expression changes nothing).
    for (a, slot) in args.iter().zip(owned.iter_mut()) {
        *slot = Some(eval(a, cx)?);
    }
    let values: Vec<&Dynamic> = owned.iter().flatten().collect();
    up(call(builtin, values[0], &values[1..]))
}

#[inline(never)]
fn interpolated<'t>(parts: &'t [Node], cx: &mut Cx<'t>) -> Flow<Dynamic> {
    let mut text = Text::new();
    for part in parts {
        if pushed(part, &mut text, cx)? {
            continue;
        }
        match cx.look(part) {
            Some(v) => up(push_shown(&mut text, v))?,
            None => {
                let v = eval(part, cx)?;
                up(push_shown(&mut text, &v))?;
            }
        }
    }
    Ok(Dynamic::from(ImmutableString::from(text)))
}

/// The nodes `eval` leaves out of line.
#[inline(never)]
fn other<'t>(node: &'t Node, cx: &mut Cx<'t>) -> Flow<Dynamic> {
    Ok(match node {
        Node::This => up(cx.this.as_deref())?.clone(),
        Node::Take(slot) => std::mem::replace(&mut cx.frame[*slot], Dynamic::UNIT),
        Node::Text(inner) => {
            let text = up(super::pieces::text(eval(inner, cx)?))?;
            // A new text for the slot it is kept in: no piece found yet.
            cx.piece_at.set(NO_PIECE);
            text
        }
        Node::Array(items) => {
            let mut array = Array::with_capacity(items.len());
            array.extend(std::iter::repeat_with(|| Dynamic::UNIT).take(items.len()));
            elements(items, &mut array, cx)?;
            Dynamic::from_array(array)
        }
        // Every key once: the keys as they are (the entries are in their
        // order), each value put in its place.
        Node::Map(template, entries) if template.len() == entries.len() => {
            let mut map = (**template).clone();
            for ((_, value), slot) in entries.iter().zip(map.values_mut()) {
                if !matches!(value, Node::Take(_)) {
                    *slot = eval(value, cx)?;
                }
            }
            for ((_, value), slot) in entries.iter().zip(map.values_mut()) {
                if let Node::Take(at) = value {
                    *slot = std::mem::replace(&mut cx.frame[*at], Dynamic::UNIT);
                }
            }
            Dynamic::from_map(map)
        }
        Node::Map(template, entries) => {
            let mut map = (**template).clone();
            for (key, value) in entries {
                if !matches!(value, Node::Take(_)) {
                    map.insert(key.as_str().into(), eval(value, cx)?);
                }
            }
            for (key, value) in entries {
                if let Node::Take(slot) = value {
                    map.insert(key.as_str().into(), std::mem::replace(&mut cx.frame[*slot], Dynamic::UNIT));
                }
            }
            Dynamic::from_map(map)
        }
        Node::Negate(a) => up(negate(&eval(a, cx)?))?,
        Node::Not(_) | Node::And(_) | Node::Or(_) => Dynamic::from_bool(truth(node, cx)?),
        Node::Coalesce(items) => {
            let mut value = Dynamic::UNIT;
            for item in items {
                value = eval(item, cx)?;
                if !value.is_unit() {
                    break;
                }
            }
            value
        }
        // One step from a value read in place (`p[0]`): no path to build.
        Node::Index(c, i) if cx.peek(c).is_some() && !matches!(**i, Node::Block(_) | Node::If(_) | Node::Switch(_)) => {
            let owned = if cx.peek(i).is_some() { None } else { Some(eval(i, cx)?) };
            let index = up(owned.as_ref().or_else(|| cx.peek(i)))?;
            up(element(up(cx.peek(c))?, index))?
        }
        Node::Field(..) | Node::Index(..) => {
            let mut steps = Vec::new();
            let root = node.chain(&mut steps);
            let mut path = Vec::with_capacity(steps.len());
            for step in steps.iter().rev() {
                path.push(match step {
                    Node::Field(_, name) => Key::Field(name.clone()),
                    Node::Index(_, index) => Key::Index(eval(index, cx)?),
                    _ => unreachable!("a chain holds fields and indexes"),
                });
            }
            let owned = if cx.peek(root).is_some() { None } else { Some(eval(root, cx)?) };
            up(read(up(owned.as_ref().or_else(|| cx.peek(root)))?, &path))?
        }
        Node::Script(f, args) => {
            let mut values = Vec::with_capacity(args.len());
            for a in args {
                values.push(eval(a, cx)?);
            }
            up(f.call(&values.iter().collect::<Vec<_>>()))?
        }
        Node::Block(b) => block(b, cx)?,
        Node::Switch(x) => switch(x, cx)?,
        Node::Fail => return Err(Exit::GiveUp),
        Node::Param(_)
        | Node::Local(_)
        | Node::Chosen(_)
        | Node::Const(_)
        | Node::Binary(..)
        | Node::Call(..)
        | Node::If(_)
        | Node::Interpolated(_)
        | Node::Piece(_) => {
            unreachable!("`eval` takes these")
        }
    })
}

/// The sum `node` (`a + b + c ...`, nested to the left), left to right:
/// its value, or the text it has become once a string was met.
fn sum<'t>(node: &'t Node, text: &mut Option<Text>, cx: &mut Cx<'t>) -> Flow<Dynamic> {
    let Node::Binary(Op::Add, a, operand) = node else {
        // The first operand: a string read in place starts the text as it is.
        return match cx.look(node) {
            Some(v) if v.is_string() && !v.is_shared() => {
                let mut t = Text::new();
                t.push_str(up(held::<ImmutableString>(v))?);
                *text = Some(t);
                Ok(Dynamic::UNIT)
            }
            Some(v) => Ok(v.flatten_clone()),
            None => eval(node, cx),
        };
    };
    let mut acc = sum(a, text, cx)?;
    if let Some(t) = text {
        if pushed(operand, t, cx)? {
            return Ok(acc);
        }
    }
    // Read in place where it can be (looked up once), else computed.
    match cx.look(operand).map(|v| add_shown(&mut acc, text, v)) {
        Some(done) => up(done)?,
        None => {
            let v = eval(operand, cx)?;
            up(add_shown(&mut acc, text, &v))?;
        }
    }
    Ok(acc)
}

/// Appends what `node` shows without making a string of it, where it is a
/// piece of a split, or `to_upper`, `to_lower` or `to_string` of a value
/// read in place (`${r.name.to_upper()}`); false for any other node.
fn pushed<'t>(node: &'t Node, text: &mut Text, cx: &mut Cx<'t>) -> Flow<bool> {
    match node {
        Node::Piece(p) => text.push_str(up(piece(p, cx))?),
        Node::Call(b @ (Builtin::ToUpper | Builtin::ToLower), args) => match cx.look(&args[0]).and_then(held::<ImmutableString>) {
            Some(s) => push_cased(text, *b == Builtin::ToUpper, s),
            None => return Ok(false),
        },
        // Shown as `to_string` gives it: a value `push_shown` does not
        // show (an array, a map) is left to `to_string`.
        Node::Call(Builtin::ToString, args) => match cx.look(&args[0]) {
            Some(v) if push_shown(text, v).is_some() => {}
            _ => return Ok(false),
        },
        _ => return Ok(false),
    }
    Ok(true)
}

/// A condition's value: comparisons of values read in place, `!`, `&&`
/// and `||` straight to a `bool`, without a `Dynamic` of each.
pub fn truth<'t>(node: &'t Node, cx: &mut Cx<'t>) -> Flow<bool> {
    match node {
        Node::Binary(op, a, b) if op.is_comparison() && in_place(a) && in_place(b) => {
            if let (Some(x), Some(y)) = (cx.look(a), cx.look(b)) {
                return up(test(*op, x, y));
            }
        }
        Node::Const(v) => return up(v.as_bool().ok()),
        // `l.contains(" ERROR ")` of strings read in place.
        Node::Call(b @ (Builtin::Contains | Builtin::StartsWith | Builtin::EndsWith), args) => {
            let text = |i: usize| cx.look(&args[i]).and_then(held::<ImmutableString>);
            if let (Some(s), Some(t)) = (text(0), text(1)) {
                return up(text_test(*b, s, t));
            }
        }
        Node::Not(a) => return Ok(!truth(a, cx)?),
        Node::And(items) => {
            for item in items {
                if !truth(item, cx)? {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        Node::Or(items) => {
            for item in items {
                if truth(item, cx)? {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        _ => {}
    }
    up(eval(node, cx)?.as_bool().ok())
}

fn switch<'t>(s: &'t Switch, cx: &mut Cx<'t>) -> Flow<Dynamic> {
    match arm(s, cx)? {
        Some(result) => eval(result, cx),
        None => Ok(Dynamic::UNIT),
    }
}

/// The block an `if` runs: its body if the condition holds, else the other.
fn branch<'t>(x: &'t (Node, Block, Block), cx: &mut Cx<'t>) -> Flow<&'t Block> {
    let (cond, body, other) = x;
    Ok(if truth(cond, cx)? { body } else { other })
}

/// The constant a `let` of a chosen constant holds (see `chosen`).
fn choose<'t>(node: &'t Node, cx: &mut Cx<'t>) -> Flow<&'t Dynamic> {
    fn block<'t>(b: &'t Block, cx: &mut Cx<'t>) -> Flow<&'t Dynamic> {
        match b.0.as_slice() {
            [] => Ok(&NONE),
            [Statement::Expr(n)] => choose(n, cx),
            _ => Err(Exit::GiveUp),
        }
    }
    match node {
        Node::Const(v) => Ok(v),
        Node::Block(b) => block(b, cx),
        Node::If(x) => block(branch(x, cx)?, cx),
        Node::Switch(s) => match arm(s, cx)? {
            Some(result) => choose(result, cx),
            None => Ok(&NONE),
        },
        _ => Err(Exit::GiveUp),
    }
}

/// The result a `switch` takes, as Rhai runs it: the first arm of the
/// value's case whose condition holds, else the first range holding it,
/// else the default (`None`: no default, the value is `()`).
fn arm<'t>(s: &'t Switch, cx: &mut Cx<'t>) -> Flow<Option<&'t Node>> {
    let owned = if in_place(&s.value) { None } else { Some(eval(&s.value, cx)?) };
    let (hash, value) = match owned.as_ref().or_else(|| cx.look(&s.value)) {
        Some(v) => up(s.hash(v))?,
        None => up(s.hash(&eval(&s.value, cx)?))?,
    };
    if let Ok(at) = s.cases.binary_search_by_key(&hash, |(h, _)| *h) {
        for &i in &s.cases[at].1 {
            if truth(&s.arms[i].0, cx)? {
                return Ok(Some(&s.arms[i].1));
            }
        }
    }
    for r in &s.ranges {
        if value.as_ref().is_some_and(|v| r.contains(v)) && truth(&s.arms[r.index()].0, cx)? {
            return Ok(Some(&s.arms[r.index()].1));
        }
    }
    Ok(s.default.map(|i| &s.arms[i].1))
}

// A step's result is no larger than the value it carries.
const _: () = assert!(std::mem::size_of::<Flow<Dynamic>>() == 16);
