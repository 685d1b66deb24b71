//! Evaluating a translated function. Every step either computes what Rhai
//! computes or gives up (`Exit::GiveUp`) before anything outside the call
//! changed: variables are the call's own, what `emit` sends is kept until
//! the call succeeds, and each change to `this` is logged and undone when
//! the call gives up, so that Rhai can run it again from the start.

use std::hash::{BuildHasher, Hash, Hasher};

use rhai::{Array, Dynamic, ImmutableString, Map};

use super::methods::call;
use super::ops::{binary, negate, op_assign, push_shown, Op, Text};
use super::tree::{Block, Loop, Node, Over, Place, Root, Statement, Step, Switch};

/// Why evaluation left a block early. Without data, so that a step's
/// `Flow<Dynamic>` fits in two registers (the value `return` gives waits
/// in [`Cx::returned`]).
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

/// A step along a value: a field, or an index (an integer into an array or
/// a string, a string into a map).
#[derive(Clone)]
enum Key {
    Field(ImmutableString),
    Index(Dynamic),
}

/// A change to `this`, to undo.
enum Undo {
    /// The value at the path before (`None`: the map had no such key).
    Restore(Vec<Key>, Option<Dynamic>),
    /// An element pushed onto the array at the path.
    Pop(Vec<Key>),
}

pub struct Cx<'a> {
    pub curry: &'a [Dynamic],
    pub args: &'a [&'a Dynamic],
    pub frame: Vec<Dynamic>,
    pub this: Option<&'a mut Dynamic>,
    undo: Vec<Undo>,
    /// What `emit` sent, when the call may emit.
    pub emitted: Option<Vec<(ImmutableString, Dynamic)>>,
    /// Loop turns taken.
    turns: u32,
    /// The value of the `return` that ended the call.
    pub returned: Option<Dynamic>,
}

impl<'a> Cx<'a> {
    pub fn new(curry: &'a [Dynamic], args: &'a [&'a Dynamic], frame: Vec<Dynamic>, this: Option<&'a mut Dynamic>, emits: bool) -> Cx<'a> {
        Cx { curry, args, frame, this, undo: Vec::new(), emitted: emits.then(Vec::new), turns: 0, returned: None }
    }

    pub fn param(&self, i: usize) -> &'a Dynamic {
        match i.checked_sub(self.curry.len()) {
            None => &self.curry[i],
            Some(j) => self.args[j],
        }
    }

    /// Puts `this` back as it was before the call; false if a change could
    /// not be found again (each succeeded along its path, so each undo
    /// should find it: false is a fault of the tree, never silent).
    pub fn undo(&mut self) -> bool {
        let Some(this) = self.this.as_deref_mut() else { return true };
        let mut all = true;
        while let Some(undo) = self.undo.pop() {
            let undone = match undo {
                Undo::Restore(path, old) => restore(this, &path, old),
                Undo::Pop(path) => at_mut(this, &path, &mut |v| v.write_lock::<Array>()?.pop().map(|_| ())),
            };
            all &= undone.is_some();
        }
        all
    }

    /// A value read in place: an argument, a variable, `this`, a constant.
    fn peek<'c>(&'c self, node: &'c Node) -> Option<&'c Dynamic> {
        match node {
            Node::Param(i) => Some(self.param(*i)).filter(|v| !v.is_shared()),
            Node::Local(slot) => self.frame.get(*slot),
            Node::This => self.this.as_deref(),
            Node::Const(v) => Some(v),
            _ => None,
        }
    }
}

pub fn block(b: &Block, cx: &mut Cx) -> Flow<Dynamic> {
    if let [Statement::Expr(node)] = b.0.as_slice() {
        return eval(node, cx);
    }
    let mut last = Dynamic::UNIT;
    for s in &b.0 {
        last = statement(s, cx)?;
    }
    Ok(last)
}

fn statement(s: &Statement, cx: &mut Cx) -> Flow<Dynamic> {
    match s {
        Statement::Let(slot, value) => {
            cx.frame[*slot] = eval(value, cx)?;
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
            if matches!(place.root, Root::This) {
                cx.undo.push(Undo::Restore(path, old));
            }
        }
        Statement::Push(place, value) => {
            let value = eval(value, cx)?;
            let path = keys(&place.path, cx)?;
            up(at_mut(root_mut(place, cx)?, &path, &mut |v| {
                v.write_lock::<Array>()?.push(value.clone());
                Some(())
            }))?;
            if matches!(place.root, Root::This) {
                cx.undo.push(Undo::Pop(path));
            }
        }
        Statement::Emit(port, value) => {
            let (port, value) = (eval(port, cx)?, eval(value, cx)?);
            let port = up(port.into_immutable_string().ok())?;
            up(cx.emitted.as_mut())?.push((port, value));
        }
        Statement::Expr(node) => return eval(node, cx),
        Statement::Return(node) => {
            cx.returned = Some(eval(node, cx)?);
            return Err(Exit::Return);
        }
        Statement::For(l) => run_loop(l, cx)?,
        Statement::Break => return Err(Exit::Break),
        Statement::Continue => return Err(Exit::Continue),
    }
    Ok(Dynamic::UNIT)
}

/// A `for` loop: each turn binds the variable (and the counter) and runs
/// the body; `break` ends it, `continue` goes on with the next turn.
fn run_loop(l: &Loop, cx: &mut Cx) -> Flow<()> {
    let turn = |cx: &mut Cx, i: usize, value: Dynamic| -> Flow<bool> {
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

fn keys(path: &[Step], cx: &mut Cx) -> Flow<Vec<Key>> {
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

/// An array position for index `i` (negative: from the end).
fn position(len: usize, i: &Dynamic) -> Option<usize> {
    let i = i.as_int().ok()?;
    let at = if i < 0 { len.checked_sub(usize::try_from(i.unsigned_abs()).ok()?)? } else { usize::try_from(i).ok()? };
    (at < len).then_some(at)
}

/// Runs `f` on the value at `path` in `v`, read in place.
fn at<R>(v: &Dynamic, path: &[Key], f: &mut dyn FnMut(&Dynamic) -> Option<R>) -> Option<R> {
    let Some((key, rest)) = path.split_first() else { return f(v) };
    match key {
        Key::Field(name) => at(v.read_lock::<Map>()?.get(name.as_str())?, rest, f),
        Key::Index(i) => {
            if let Some(a) = v.read_lock::<Array>() {
                return at(&a[position(a.len(), i)?], rest, f);
            }
            if let Some(m) = v.read_lock::<Map>() {
                return at(m.get(i.read_lock::<ImmutableString>()?.as_str())?, rest, f);
            }
            // A string's character (by character, negative from the end).
            if !rest.is_empty() {
                return None;
            }
            let s = v.read_lock::<ImmutableString>()?;
            let n = s.chars().count();
            let c = s.chars().nth(position(n, i)?)?;
            f(&Dynamic::from_char(c))
        }
    }
}

/// `v[i]`: an array's element, a map's entry, a string's character.
fn element(v: &Dynamic, i: &Dynamic) -> Option<Dynamic> {
    if let Some(a) = v.read_lock::<Array>() {
        return Some(a[position(a.len(), i)?].flatten_clone());
    }
    at(v, &[Key::Index(i.clone())], &mut |x| Some(x.flatten_clone()))
}

/// The value at `path` in `v`.
fn read(v: &Dynamic, path: &[Key]) -> Option<Dynamic> {
    at(v, path, &mut |x| Some(x.flatten_clone()))
}

/// Runs `f` on the value at `path` in `v`, to change it.
fn at_mut<R>(v: &mut Dynamic, path: &[Key], f: &mut dyn FnMut(&mut Dynamic) -> Option<R>) -> Option<R> {
    let Some((key, rest)) = path.split_first() else { return f(v) };
    if v.is_shared() {
        return None;
    }
    match key {
        Key::Field(name) => at_mut(v.write_lock::<Map>()?.get_mut(name.as_str())?, rest, f),
        Key::Index(i) => {
            if let Some(mut a) = v.write_lock::<Array>() {
                let at = position(a.len(), i)?;
                return at_mut(&mut a[at], rest, f);
            }
            let mut m = v.write_lock::<Map>()?;
            at_mut(m.get_mut(i.read_lock::<ImmutableString>()?.as_str())?, rest, f)
        }
    }
}

/// Sets the value at `path` in `v` (a map gains a missing key); returns
/// what was there. Changes nothing when it returns `None`.
fn assign(v: &mut Dynamic, path: &[Key], value: Dynamic) -> Option<Option<Dynamic>> {
    let Some((last, parent)) = path.split_last() else { return Some(Some(std::mem::replace(v, value))) };
    let mut value = Some(value);
    at_mut(v, parent, &mut |p| {
        if p.is_shared() {
            return None;
        }
        let key: ImmutableString = match last {
            Key::Field(name) => name.clone(),
            Key::Index(i) => {
                if let Some(mut a) = p.write_lock::<Array>() {
                    let at = position(a.len(), i)?;
                    return Some(Some(std::mem::replace(&mut a[at], value.take()?)));
                }
                i.read_lock::<ImmutableString>()?.clone()
            }
        };
        let mut m = p.write_lock::<Map>()?;
        Some(m.insert(key.as_str().into(), value.take()?))
    })
}

/// Puts back the value a change at `path` replaced.
fn restore(v: &mut Dynamic, path: &[Key], old: Option<Dynamic>) -> Option<()> {
    match old {
        Some(old) => assign(v, path, old).map(|_| ()),
        None => {
            let (last, parent) = path.split_last()?;
            let name = match last {
                Key::Field(name) => name.clone(),
                Key::Index(i) => i.read_lock::<ImmutableString>()?.clone(),
            };
            at_mut(v, parent, &mut |p| {
                p.write_lock::<Map>()?.remove(name.as_str());
                Some(())
            })
        }
    }
}

/// A chain of fields and indexes, as its root and its steps.
fn chain<'n>(mut node: &'n Node, steps: &mut Vec<&'n Node>) -> &'n Node {
    loop {
        match node {
            Node::Field(inner, _) | Node::Index(inner, _) => {
                steps.push(node);
                node = inner;
            }
            _ => return node,
        }
    }
}

pub fn eval(node: &Node, cx: &mut Cx) -> Flow<Dynamic> {
    Ok(match node {
        Node::Param(i) => cx.param(*i).flatten_clone(),
        Node::Local(slot) => cx.frame[*slot].clone(),
        Node::This => up(cx.this.as_deref())?.clone(),
        Node::Const(v) => v.clone(),
        Node::Array(items) => {
            let mut array = Array::with_capacity(items.len());
            for item in items {
                array.push(eval(item, cx)?);
            }
            Dynamic::from_array(array)
        }
        // Every key has its entry: the map is built from them at once.
        Node::Map(template, entries) if template.len() == entries.len() => {
            let mut map = Map::new();
            for (key, value) in entries {
                map.insert(key.as_str().into(), eval(value, cx)?);
            }
            Dynamic::from_map(map)
        }
        Node::Map(template, entries) => {
            let mut map = (**template).clone();
            for (key, value) in entries {
                map.insert(key.as_str().into(), eval(value, cx)?);
            }
            Dynamic::from_map(map)
        }
        // `a + b + c ...`: once the sum is a string, each further operand is
        // appended to one buffer (Rhai makes a string per `+`, same text).
        Node::Binary(Op::Add, a, _) if matches!(**a, Node::Binary(Op::Add, ..)) => {
            let mut operands = Vec::with_capacity(4);
            let mut n = node;
            while let Node::Binary(Op::Add, a, b) = n {
                operands.push(&**b);
                n = a;
            }
            operands.push(n);
            sum(&operands, cx)?
        }
        Node::Interpolated(parts) => {
            let mut text = Text::new();
            for part in parts {
                match cx.peek(part) {
                    Some(v) => up(push_shown(&mut text, v))?,
                    None => {
                        let v = eval(part, cx)?;
                        up(push_shown(&mut text, &v))?;
                    }
                }
            }
            Dynamic::from(ImmutableString::from(text))
        }
        Node::Binary(op, a, b) => {
            let x = if cx.peek(a).is_some() { None } else { Some(eval(a, cx)?) };
            let y = if cx.peek(b).is_some() { None } else { Some(eval(b, cx)?) };
            let x = x.as_ref().or_else(|| cx.peek(a));
            let y = y.as_ref().or_else(|| cx.peek(b));
            up(binary(*op, up(x)?, up(y)?))?
        }
        Node::Negate(a) => up(negate(&eval(a, cx)?))?,
        Node::Not(a) => Dynamic::from_bool(!up(eval(a, cx)?.as_bool().ok())?),
        Node::And(items) => {
            for item in items {
                if !up(eval(item, cx)?.as_bool().ok())? {
                    return Ok(Dynamic::FALSE);
                }
            }
            Dynamic::TRUE
        }
        Node::Or(items) => {
            for item in items {
                if up(eval(item, cx)?.as_bool().ok())? {
                    return Ok(Dynamic::TRUE);
                }
            }
            Dynamic::FALSE
        }
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
        // One step from a value read in place (`p[0]`, `r.name`): no path to build.
        Node::Index(c, i) if cx.peek(c).is_some() && !matches!(**i, Node::Block(_) | Node::If(_) | Node::Switch(_)) => {
            let owned = if cx.peek(i).is_some() { None } else { Some(eval(i, cx)?) };
            let index = up(owned.as_ref().or_else(|| cx.peek(i)))?;
            up(element(up(cx.peek(c))?, index))?
        }
        Node::Field(c, name) if cx.peek(c).is_some() => {
            let m = up(up(cx.peek(c))?.read_lock::<Map>())?;
            up(m.get(name.as_str()))?.flatten_clone()
        }
        Node::Field(..) | Node::Index(..) => {
            let mut steps = Vec::new();
            let root = chain(node, &mut steps);
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
        Node::Call(builtin, args) => {
            // At most three values (receiver and arguments): on the stack,
            // and read in place where they can be.
            let mut owned: [Option<Dynamic>; 3] = [None, None, None];
            for (a, slot) in args.iter().zip(owned.iter_mut()) {
                if cx.peek(a).is_none() {
                    *slot = Some(eval(a, cx)?);
                }
            }
            let mut values: [&Dynamic; 3] = [&Dynamic::UNIT; 3];
            for (i, a) in args.iter().enumerate() {
                values[i] = up(owned[i].as_ref().or_else(|| cx.peek(a)))?;
            }
            up(call(*builtin, values[0], &values[1..args.len()]))?
        }
        Node::Script(f, args) => {
            let mut values = Vec::with_capacity(args.len());
            for a in args {
                values.push(eval(a, cx)?);
            }
            up(f.call(&values.iter().collect::<Vec<_>>()))?
        }
        Node::Block(b) => block(b, cx)?,
        Node::If(x) => {
            let (cond, body, other) = &**x;
            if up(eval(cond, cx)?.as_bool().ok())? {
                block(body, cx)?
            } else {
                block(other, cx)?
            }
        }
        Node::Switch(x) => switch(x, cx)?,
        Node::Fail => return Err(Exit::GiveUp),
    })
}

/// The sum of `operands` (last first), left to right.
fn sum(operands: &[&Node], cx: &mut Cx) -> Flow<Dynamic> {
    let mut rest = operands.iter().rev();
    let first = rest.next().expect("a sum has operands");
    let mut acc = eval(first, cx)?;
    let mut text: Option<Text> = None;
    for operand in rest {
        let owned = if cx.peek(operand).is_some() { None } else { Some(eval(operand, cx)?) };
        let v = up(owned.as_ref().or_else(|| cx.peek(operand)))?;
        match &mut text {
            Some(t) => up(push_shown(t, v))?,
            None if acc.is_string() => {
                let mut t = Text::new();
                t.push_str(&up(acc.read_lock::<ImmutableString>())?);
                up(push_shown(&mut t, v))?;
                text = Some(t);
            }
            None => acc = up(binary(Op::Add, &acc, v))?,
        }
    }
    Ok(match text {
        Some(t) => Dynamic::from(ImmutableString::from(t)),
        None => acc,
    })
}

fn truth(node: &Node, cx: &mut Cx) -> Flow<bool> {
    up(eval(node, cx)?.as_bool().ok())
}

/// As Rhai runs a `switch`: the first arm of the value's case whose
/// condition holds, else the first range holding it, else the default.
fn switch(s: &Switch, cx: &mut Cx) -> Flow<Dynamic> {
    let value = eval(&s.value, cx)?;
    // The values whose hash is Rhai's: the ones a case can name.
    if !(value.is_int() || value.is_string() || value.is_char() || value.is_bool()) {
        return Err(Exit::GiveUp);
    }
    let mut hasher = match &s.hashing {
        Some(seeded) => seeded.build_hasher(),
        None => ahash::AHasher::default(),
    };
    value.hash(&mut hasher);
    if let Some(arms) = s.cases.get(&hasher.finish()) {
        for &i in arms {
            if truth(&s.arms[i].0, cx)? {
                return eval(&s.arms[i].1, cx);
            }
        }
    }
    for r in &s.ranges {
        if r.contains(&value) && truth(&s.arms[r.index()].0, cx)? {
            return eval(&s.arms[r.index()].1, cx);
        }
    }
    match s.default {
        Some(i) => eval(&s.arms[i].1, cx),
        None => Ok(Dynamic::UNIT),
    }
}

// A step's result is returned in registers.
const _: () = assert!(std::mem::size_of::<Flow<Dynamic>>() == 16);
