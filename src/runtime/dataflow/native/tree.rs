//! A script function translated into a tree of the constructs the tree
//! evaluates (see `super`): its variables numbered into slots, its calls
//! resolved to the built-ins it runs. Anything else — a call of a function
//! the tree does not run, a loop, a global — leaves the function to Rhai.

use std::collections::BTreeSet;

use rhai::{ASTFlags, Dynamic, Expr, ImmutableString, Map, RangeCase, Stmt, StmtBlock};

use super::methods::Builtin;
use super::ops::Op;

#[derive(Debug)]
pub enum Node {
    /// A captured value or an argument, read in place.
    Param(usize),
    /// A variable (or an argument the body changes, copied in).
    Local(usize),
    /// A variable read for the last time: its value moved out (`moves`).
    Take(usize),
    /// A variable that holds one of the tree's constants (`chosen`): the
    /// `n`th the call chose.
    Chosen(usize),
    /// A string kept to be split (`pieces`): Rhai decides on anything else.
    Text(Box<Node>),
    /// A piece of a kept string (`pieces`).
    Piece(Box<Piece>),
    This,
    Const(Dynamic),
    Array(Vec<Node>),
    /// A map literal: its keys with `()`, then each entry's value.
    Map(Box<Map>, Vec<(ImmutableString, Node)>),
    Interpolated(Vec<Node>),
    Binary(Op, Box<Node>, Box<Node>),
    Negate(Box<Node>),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Coalesce(Vec<Node>),
    Index(Box<Node>, Box<Node>),
    Field(Box<Node>, ImmutableString),
    /// A built-in called on its receiver (the first) and arguments.
    Call(Builtin, Vec<Node>),
    /// A function of the script, itself translated.
    Script(Box<super::NativeFn>, Vec<Node>),
    Block(Block),
    If(Box<(Node, Block, Block)>),
    Switch(Box<Switch>),
    /// `throw`: only Rhai fails the way Rhai does.
    Fail,
}

/// A piece of a split string (`pieces` finds it): the `index`th (from 0)
/// of the text in a slot, split at `delimiter`. A piece that is not there
/// leaves the function to Rhai (which fails: the index is out of bounds).
#[derive(Debug)]
pub struct Piece {
    pub slot: usize,
    pub delimiter: ImmutableString,
    pub index: usize,
}

#[derive(Debug, Default)]
pub struct Block(pub Vec<Statement>);

#[derive(Debug)]
pub enum Statement {
    Let(usize, Node),
    /// `let` of a value that is one of the tree's constants (`chosen`).
    Choose(usize, Node),
    /// `place = value`, or `place op= value`.
    Assign(Place, Option<Op>, Node),
    /// `place.push(value)`.
    Push(Place, Node),
    /// `emit(port, value)`.
    Emit(Node, Node),
    Expr(Node),
    Return(Node),
    /// `for x in over { body }`, or `for (x, i) in ...`.
    For(Box<Loop>),
    Break,
    Continue,
}

#[derive(Debug)]
pub struct Loop {
    pub var: usize,
    pub counter: Option<usize>,
    pub over: Over,
    pub body: Block,
}

/// What a `for` goes over.
#[derive(Debug)]
pub enum Over {
    /// `a..b` or `a..=b` (inclusive).
    Range(Node, Node, bool),
    /// An array's elements or a string's characters.
    Value(Node),
}

/// Where an assignment writes: a variable or `this`, then fields and indexes.
#[derive(Debug)]
pub struct Place {
    pub root: Root,
    pub path: Vec<Step>,
}

#[derive(Debug, Clone, Copy)]
pub enum Root {
    Local(usize),
    This,
}

#[derive(Debug)]
pub enum Step {
    Field(ImmutableString),
    Index(Node),
}

/// A `switch`, as Rhai keeps it: cases by the hash of their value, each a
/// list of (condition, result) arms; integer ranges; a default arm.
#[derive(Debug)]
pub struct Switch {
    pub value: Node,
    pub arms: Vec<(Node, Node)>,
    /// By hash, sorted (a search, without hashing the hash again).
    pub cases: Vec<(u64, Vec<usize>)>,
    pub ranges: Vec<RangeCase>,
    pub default: Option<usize>,
    /// Rhai's hasher: seeded when the process set a seed (skitter sets one),
    /// else ahash's fixed keys (`None`).
    pub hashing: Option<ahash::RandomState>,
}

impl Switch {
    /// Rhai's hash of a value a case can name (an integer, a string, a
    /// character, a boolean), and the value if it is an integer (only an
    /// integer can be in a range); `None` for other values.
    pub fn hash(&self, value: &Dynamic) -> Option<(u64, Option<Dynamic>)> {
        use std::hash::{BuildHasher, Hash, Hasher};
        if !(value.is_int() || value.is_string() || value.is_char() || value.is_bool()) {
            return None;
        }
        let mut hasher = match &self.hashing {
            Some(seeded) => seeded.build_hasher(),
            None => ahash::AHasher::default(),
        };
        value.hash(&mut hasher);
        Some((hasher.finish(), value.as_int().ok().map(Dynamic::from_int)))
    }
}

impl Place {
    /// A place that is a variable and one or more of its fields: the slot
    /// and the fields.
    pub fn local_fields(&self) -> Option<(usize, &[Step])> {
        match self.root {
            Root::Local(slot) if !self.path.is_empty() && self.path.iter().all(|s| matches!(s, Step::Field(_))) => Some((slot, &self.path)),
            _ => None,
        }
    }
}

impl Node {
    /// A chain of fields and indexes, as its root and its steps.
    pub fn chain<'n>(&'n self, steps: &mut Vec<&'n Node>) -> &'n Node {
        let mut node = self;
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
}

fn rhai_hashing() -> Option<ahash::RandomState> {
    match rhai::config::hashing::get_hashing_seed() {
        Some([a, b, c, d]) if (a | b | c | d) != 0 => Some(ahash::RandomState::with_seeds(*a, *b, *c, *d)),
        _ => None,
    }
}

/// What translating needs to know of the script and the function.
pub struct Translator<'a> {
    ast: &'a rhai::AST,
    /// The script functions being translated, the outermost first (a
    /// function that calls itself stays Rhai's).
    pub stack: Vec<(ImmutableString, usize)>,
    params: &'a [ImmutableString],
    /// How many leading parameters are captured values (shared: never written).
    curry: usize,
    /// Arguments the body writes, which get a slot of their own.
    pub written: BTreeSet<usize>,
    /// Whether `emit` is the runtime's (not the script's own function).
    emit: bool,
    /// Whether statements here may change variables, `this` or emit: not
    /// inside an expression (`let y = if c { x = 1; 2 } else { 3 };`), so
    /// that evaluating an expression never changes what it reads.
    effects: bool,
    /// Variables in scope, innermost last.
    vars: Vec<(ImmutableString, usize)>,
    pub slots: usize,
}

impl<'a> Translator<'a> {
    pub fn new(
        ast: &'a rhai::AST,
        stack: Vec<(ImmutableString, usize)>,
        params: &'a [ImmutableString],
        curry: usize,
        written: BTreeSet<usize>,
        emit: bool,
    ) -> Translator<'a> {
        Translator { ast, stack, params, curry, written, emit, effects: true, vars: Vec::new(), slots: params.len() }
    }

    pub fn body(&mut self, stmts: &[Stmt]) -> Option<Block> {
        self.block(stmts)
    }

    fn block(&mut self, stmts: &[Stmt]) -> Option<Block> {
        let depth = self.vars.len();
        let block = stmts.iter().map(|s| self.statement(s)).collect::<Option<Vec<_>>>();
        self.vars.truncate(depth);
        Some(Block(block?))
    }

    fn statement(&mut self, stmt: &Stmt) -> Option<Statement> {
        Some(match stmt {
            Stmt::Noop(_) => Statement::Expr(Node::Const(Dynamic::UNIT)),
            Stmt::Var(x, ..) => {
                let value = self.expr(&x.1)?;
                let slot = self.slots;
                self.slots += 1;
                self.vars.push((x.0.name.clone(), slot));
                Statement::Let(slot, value)
            }
            Stmt::Assignment(_) | Stmt::FnCall(..) | Stmt::Expr(_) if !self.effects && effect(stmt) => return None,
            Stmt::Assignment(x) => {
                let (op, bin) = &**x;
                let op = match op.get_op_assignment_info() {
                    None => None,
                    Some((.., syntax)) => Some(Op::of(syntax)?),
                };
                Statement::Assign(self.place(&bin.lhs)?, op, self.expr(&bin.rhs)?)
            }
            Stmt::FnCall(call, _) if self.emit && call.namespace.is_empty() && call.name == "emit" && call.args.len() == 2 => {
                Statement::Emit(self.expr(&call.args[0])?, self.expr(&call.args[1])?)
            }
            Stmt::FnCall(call, pos) => Statement::Expr(self.expr(&Expr::FnCall(call.clone(), *pos))?),
            Stmt::Expr(e) => match pushed(e) {
                // `x.push(v)` on a variable, a field or `this`.
                Some((root, links, call)) => {
                    let place = self.place_of(root, links)?;
                    Statement::Push(place, self.expr(&call.args[0])?)
                }
                None => Statement::Expr(self.expr(e)?),
            },
            Stmt::Block(b) => Statement::Expr(Node::Block(self.block(b.statements())?)),
            Stmt::If(x, _) => Statement::Expr(self.branch(&x.expr, &x.body, &x.branch)?),
            Stmt::Switch(x, _) => Statement::Expr(self.switch(&x.0, &x.1)?),
            Stmt::For(x, _) => {
                let (var, counter, flow) = &**x;
                let over = match &flow.expr {
                    Expr::FnCall(call, _)
                        if call.op_token.is_some() && call.args.len() == 2 && matches!(call.name.as_str(), ".." | "..=") =>
                    {
                        Over::Range(self.expr(&call.args[0])?, self.expr(&call.args[1])?, call.name.as_str() == "..=")
                    }
                    e => Over::Value(self.expr(e)?),
                };
                let depth = self.vars.len();
                let slot = |t: &mut Self, name: &ImmutableString| {
                    let slot = t.slots;
                    t.slots += 1;
                    t.vars.push((name.clone(), slot));
                    slot
                };
                let var = slot(self, &var.name);
                let counter = counter.as_ref().map(|c| slot(self, &c.name));
                let body = self.block(flow.body.statements());
                self.vars.truncate(depth);
                Statement::For(Box::new(Loop { var, counter, over, body: body? }))
            }
            // `break` and `continue` without a value (BREAK marks `break`).
            Stmt::BreakLoop(None, flags, _) if flags.contains(ASTFlags::BREAK) => Statement::Break,
            Stmt::BreakLoop(None, ..) => Statement::Continue,
            Stmt::Return(_, flags, _) if flags.contains(ASTFlags::BREAK) => Statement::Expr(Node::Fail),
            Stmt::Return(Some(e), ..) => Statement::Return(self.expr(e)?),
            Stmt::Return(None, ..) => Statement::Return(Node::Const(Dynamic::UNIT)),
            _ => return None,
        })
    }

    fn branch(&mut self, cond: &Expr, body: &StmtBlock, other: &StmtBlock) -> Option<Node> {
        let cond = self.expr(cond)?;
        let body = self.block(body.statements())?;
        let other = self.block(other.statements())?;
        Some(Node::If(Box::new((cond, body, other))))
    }

    fn switch(&mut self, value: &Expr, cases: &rhai::SwitchCasesCollection) -> Option<Node> {
        let value = self.expr(value)?;
        let arms = cases.expressions.iter().map(|b| Some((self.expr(&b.lhs)?, self.arm(&b.rhs)?))).collect::<Option<Vec<_>>>()?;
        let mut by_hash: Vec<(u64, Vec<usize>)> = cases.cases.iter().map(|(h, list)| (*h, list.blocks.to_vec())).collect();
        by_hash.sort_unstable_by_key(|(h, _)| *h);
        Some(Node::Switch(Box::new(Switch {
            value,
            arms,
            cases: by_hash,
            ranges: cases.ranges.to_vec(),
            default: cases.def_case,
            hashing: rhai_hashing(),
        })))
    }

    /// A `switch` arm: a block in it is in the switch's place (statement or expression).
    fn arm(&mut self, expr: &Expr) -> Option<Node> {
        match expr {
            Expr::Stmt(block) => Some(Node::Block(self.block(block.statements())?)),
            e => self.expr(e),
        }
    }

    /// The target of an assignment.
    fn place(&mut self, expr: &Expr) -> Option<Place> {
        match expr {
            Expr::Variable(..) | Expr::ThisPtr(_) => self.place_of(expr, Vec::new()),
            _ => {
                let (root, links) = chain(expr)?;
                self.place_of(root, links)
            }
        }
    }

    fn place_of(&mut self, root: &Expr, steps: Vec<Link<'_>>) -> Option<Place> {
        let root = match root {
            Expr::ThisPtr(_) => Root::This,
            Expr::Variable(v, ..) if v.2.is_empty() => match self.variable(&v.1)? {
                Node::Local(slot) => Root::Local(slot),
                Node::Param(i) if i >= self.curry => {
                    // An argument is the function's own copy: the body
                    // writes a slot it is copied into.
                    self.written.insert(i);
                    Root::Local(i)
                }
                _ => return None,
            },
            _ => return None,
        };
        let path = steps
            .into_iter()
            .map(|s| match s {
                Link::Field(name) => Some(Step::Field(name.clone())),
                Link::Index(e) => Some(Step::Index(self.expr(e)?)),
                Link::Method(..) => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Place { root, path })
    }

    fn variable(&self, name: &str) -> Option<Node> {
        if let Some((_, slot)) = self.vars.iter().rev().find(|(n, _)| n.as_str() == name) {
            return Some(Node::Local(*slot));
        }
        let i = self.params.iter().position(|p| p.as_str() == name)?;
        Some(if self.written.contains(&i) { Node::Local(i) } else { Node::Param(i) })
    }

    fn exprs(&mut self, list: &[Expr]) -> Option<Vec<Node>> {
        list.iter().map(|e| self.expr(e)).collect()
    }

    pub fn expr(&mut self, expr: &Expr) -> Option<Node> {
        Some(match expr {
            Expr::Variable(v, ..) if v.2.is_empty() => self.variable(&v.1)?,
            Expr::ThisPtr(_) => Node::This,
            Expr::IntegerConstant(i, _) => Node::Const(Dynamic::from_int(*i)),
            Expr::FloatConstant(f, _) => Node::Const(Dynamic::from_float(**f)),
            Expr::StringConstant(s, _) => Node::Const(Dynamic::from(s.clone())),
            Expr::BoolConstant(b, _) => Node::Const(Dynamic::from_bool(*b)),
            Expr::CharConstant(c, _) => Node::Const(Dynamic::from_char(*c)),
            Expr::Unit(_) => Node::Const(Dynamic::UNIT),
            Expr::DynamicConstant(d, _) => Node::Const((**d).clone()),
            Expr::Array(items, _) => Node::Array(self.exprs(items)?),
            Expr::Map(x, _) => {
                let mut entries =
                    x.0.iter().map(|(k, e)| Some((ImmutableString::from(k.name.as_str()), self.expr(e)?))).collect::<Option<Vec<_>>>()?;
                // In the map's order (values are pure: the order they are
                // computed in does not matter), so building it is a few appends.
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                // Keys all different: the entries are the map's keys in its
                // order (`eval` puts each value in place by that).
                debug_assert!(x.1.len() != entries.len() || x.1.keys().map(|k| k.as_str()).eq(entries.iter().map(|(k, _)| k.as_str())));
                Node::Map(Box::new(x.1.clone()), entries)
            }
            Expr::InterpolatedString(parts, _) => Node::Interpolated(self.exprs(parts)?),
            Expr::And(items, _) => Node::And(self.exprs(items)?),
            Expr::Or(items, _) => Node::Or(self.exprs(items)?),
            Expr::Coalesce(items, _) => Node::Coalesce(self.exprs(items)?),
            Expr::Stmt(block) => {
                let effects = std::mem::replace(&mut self.effects, false);
                let block = self.block(block.statements());
                self.effects = effects;
                Node::Block(block?)
            }
            Expr::FnCall(call, _) if call.namespace.is_empty() => {
                let args = &call.args;
                match (call.name.as_str(), args.len(), call.op_token.is_some()) {
                    ("-", 1, true) => Node::Negate(Box::new(self.expr(&args[0])?)),
                    ("!", 1, true) => Node::Not(Box::new(self.expr(&args[0])?)),
                    (name, 2, true) if Op::of(name).is_some() => {
                        Node::Binary(Op::of(name)?, Box::new(self.expr(&args[0])?), Box::new(self.expr(&args[1])?))
                    }
                    (name, n, _) => match Builtin::of(name, n) {
                        Some(builtin) => Node::Call(builtin, self.exprs(args)?),
                        None => {
                            let f = super::NativeFn::nested(self.ast, name, n, &self.stack)?;
                            Node::Script(Box::new(f), self.exprs(args)?)
                        }
                    },
                }
            }
            Expr::Dot(..) | Expr::Index(..) => {
                let (root, steps) = chain(expr)?;
                let mut node = self.expr(root)?;
                for step in steps {
                    node = match step {
                        Link::Field(name) => Node::Field(Box::new(node), name.clone()),
                        Link::Index(e) => Node::Index(Box::new(node), Box::new(self.expr(e)?)),
                        Link::Method(call) => {
                            let builtin = Builtin::of(&call.name, call.args.len() + 1)?;
                            let mut args = vec![node];
                            args.extend(self.exprs(&call.args)?);
                            Node::Call(builtin, args)
                        }
                    };
                }
                node
            }
            _ => return None,
        })
    }
}

/// Whether a statement changes something or emits.
fn effect(stmt: &Stmt) -> bool {
    match stmt {
        Stmt::Assignment(_) => true,
        Stmt::FnCall(call, _) => call.name == "emit",
        Stmt::Expr(e) => pushed(e).is_some(),
        _ => false,
    }
}

/// `place.push(value)`: the place's root and links, and the call.
fn pushed(expr: &Expr) -> Option<(&Expr, Vec<Link<'_>>, &rhai::FnCallExpr)> {
    let (root, mut links) = chain(expr)?;
    match links.pop()? {
        Link::Method(call) if call.name == "push" && call.args.len() == 1 => Some((root, links, call)),
        _ => None,
    }
}

/// A link of a chain of fields, indexes and method calls.
enum Link<'e> {
    Field(&'e ImmutableString),
    Index(&'e Expr),
    Method(&'e rhai::FnCallExpr),
}

/// `a.b[i].c(x)` as its root `a` and its links. Rhai nests a chain to the
/// right, `a . (b [ (i . c(x)) ])`, and flags BREAK the `[...]` whose
/// right side is a whole index (`a[b.c]`) rather than the chain going on.
/// `?.` and `?[` (flagged NEGATED) are left to Rhai.
fn chain(expr: &Expr) -> Option<(&Expr, Vec<Link<'_>>)> {
    let mut links = Vec::new();
    let root = match expr {
        Expr::Dot(x, flags, _) if !flags.contains(ASTFlags::NEGATED) => {
            after_dot(&x.rhs, &mut links)?;
            &x.lhs
        }
        Expr::Index(x, flags, _) if !flags.contains(ASTFlags::NEGATED) => {
            after_index(&x.rhs, *flags, &mut links)?;
            &x.lhs
        }
        _ => return None,
    };
    Some((root, links))
}

/// The links after a `.`.
fn after_dot<'e>(expr: &'e Expr, links: &mut Vec<Link<'e>>) -> Option<()> {
    let first = |e: &'e Expr| match e {
        Expr::Property(p, _) => Some(Link::Field(&p.2)),
        Expr::MethodCall(call, _) if call.namespace.is_empty() => Some(Link::Method(call)),
        _ => None,
    };
    match expr {
        Expr::Dot(x, flags, _) if !flags.contains(ASTFlags::NEGATED) => {
            links.push(first(&x.lhs)?);
            after_dot(&x.rhs, links)
        }
        Expr::Index(x, flags, _) if !flags.contains(ASTFlags::NEGATED) => {
            links.push(first(&x.lhs)?);
            after_index(&x.rhs, *flags, links)
        }
        e => {
            links.push(first(e)?);
            Some(())
        }
    }
}

/// The links from a `[`: the right side of an index flagged `flags`.
fn after_index<'e>(expr: &'e Expr, flags: ASTFlags, links: &mut Vec<Link<'e>>) -> Option<()> {
    if flags.contains(ASTFlags::BREAK) {
        links.push(Link::Index(expr));
        return Some(());
    }
    match expr {
        Expr::Dot(x, flags, _) if !flags.contains(ASTFlags::NEGATED) => {
            links.push(Link::Index(&x.lhs));
            after_dot(&x.rhs, links)
        }
        Expr::Index(x, flags, _) if !flags.contains(ASTFlags::NEGATED) => {
            links.push(Link::Index(&x.lhs));
            after_index(&x.rhs, *flags, links)
        }
        _ => None,
    }
}
