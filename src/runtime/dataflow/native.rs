//! Script functions that run in Rust. A function whose body is one pure
//! expression over its parameters — `|w| w`, `|r| r.name`, `|p| p[0]`,
//! `|x| x % 2 == 0`, `|c, w| [c + 1, [w, c + 1]]`, `` |p| `${p[0]} ${p[1]}` ``,
//! `|line| line.split(" ")` — is translated once into a small tree and
//! evaluated here, without Rhai's per-call state (a call costs ~400 ns in
//! Rhai before the body runs).
//!
//! The tree covers only what is certain to mean what Rhai means: integers,
//! strings, booleans and characters, in-bounds indexing, present map fields.
//! Anything else — an overflow, a float, a missing field, a negative index —
//! makes evaluation give up (`None`), and the caller runs the function in
//! Rhai, which gives the result or the error it always did. Nothing here has
//! side effects, so running the function again is always allowed.

use std::borrow::Cow;
use std::fmt::Write as _;

use rhai::{ASTFlags, ASTNode, Array, Dynamic, Expr, ImmutableString, Map, Stmt, AST};

/// Functions the tree evaluates itself (Rhai's `split` and `to_string`,
/// skitter's `words`); a script that defines its own function of one of
/// these names keeps Rhai's calls.
const EMULATED: [&str; 3] = ["split", "to_string", "words"];

/// A script function translated into a tree.
#[derive(Debug)]
pub struct NativeFn {
    body: Node,
}

#[derive(Debug)]
enum Node {
    Param(usize),
    Const(Dynamic),
    Array(Vec<Node>),
    Interpolated(Vec<Node>),
    Binary(Op, Box<Node>, Box<Node>),
    Negate(Box<Node>),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Index(Box<Node>, Box<Node>),
    Field(Box<Node>, ImmutableString),
    Split(Box<Node>, Box<Node>),
    Words(Box<Node>),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl NativeFn {
    /// Translates the script function `name` of `arity` parameters in
    /// `ast`, if its body is an expression the tree covers.
    pub fn translate(ast: &AST, name: &str, arity: usize) -> Option<NativeFn> {
        if ast.iter_functions().any(|f| EMULATED.contains(&f.name)) {
            return None;
        }
        let params: Vec<String> =
            ast.iter_functions().find(|f| f.name == name && f.params.len() == arity)?.params.iter().map(|p| p.to_string()).collect();
        let mut one = ast.clone_functions_only();
        one.retain_functions(|_, _, n, a| n == name && a == arity);
        let mut roots: Vec<Stmt> = Vec::new();
        one.walk(&mut |path: &[ASTNode]| {
            if let [ASTNode::Stmt(stmt)] = path {
                roots.push((*stmt).clone());
            }
            true
        });
        let [stmt] = roots.as_slice() else { return None };
        let body = match stmt {
            Stmt::Expr(expr) => node(expr, &params)?,
            // `throw x` is a `Return` too, flagged BREAK: it fails, and
            // only Rhai fails it the way Rhai does.
            Stmt::Return(Some(expr), flags, _) if !flags.contains(ASTFlags::BREAK) => node(expr, &params)?,
            Stmt::FnCall(call, pos) => node(&Expr::FnCall(call.clone(), *pos), &params)?,
            _ => return None,
        };
        Some(NativeFn { body })
    }

    /// The function's value for its captured values `curry` and `args`,
    /// or `None` where Rhai must decide.
    pub fn eval(&self, curry: &[Dynamic], args: &[&Dynamic]) -> Option<Dynamic> {
        eval(&self.body, &Args { curry, args }).map(Cow::into_owned)
    }
}

/// A call's parameters: captured values first, then the arguments.
struct Args<'a> {
    curry: &'a [Dynamic],
    args: &'a [&'a Dynamic],
}

impl<'a> Args<'a> {
    fn get(&self, i: usize) -> &'a Dynamic {
        match i.checked_sub(self.curry.len()) {
            None => &self.curry[i],
            Some(j) => self.args[j],
        }
    }
}

fn node(expr: &Expr, params: &[String]) -> Option<Node> {
    Some(match expr {
        Expr::Variable(v, ..) if v.2.is_empty() => Node::Param(params.iter().position(|p| p.as_str() == v.1.as_str())?),
        Expr::IntegerConstant(i, _) => Node::Const(Dynamic::from_int(*i)),
        Expr::StringConstant(s, _) => Node::Const(Dynamic::from(s.clone())),
        Expr::BoolConstant(b, _) => Node::Const(Dynamic::from_bool(*b)),
        Expr::CharConstant(c, _) => Node::Const(Dynamic::from_char(*c)),
        Expr::Array(items, _) => Node::Array(items.iter().map(|e| node(e, params)).collect::<Option<_>>()?),
        Expr::InterpolatedString(parts, _) => Node::Interpolated(parts.iter().map(|e| node(e, params)).collect::<Option<_>>()?),
        Expr::And(items, _) => Node::And(items.iter().map(|e| node(e, params)).collect::<Option<_>>()?),
        Expr::Or(items, _) => Node::Or(items.iter().map(|e| node(e, params)).collect::<Option<_>>()?),
        Expr::FnCall(call, _) if call.namespace.is_empty() && call.op_token.is_none() && call.name == "words" && call.args.len() == 1 => {
            Node::Words(Box::new(node(&call.args[0], params)?))
        }
        Expr::FnCall(call, _) if call.namespace.is_empty() && call.op_token.is_some() => {
            let args = &call.args;
            match (call.name.as_str(), args.len()) {
                ("-", 1) => Node::Negate(Box::new(node(&args[0], params)?)),
                ("!", 1) => Node::Not(Box::new(node(&args[0], params)?)),
                (name, 2) => {
                    let op = match name {
                        "+" => Op::Add,
                        "-" => Op::Sub,
                        "*" => Op::Mul,
                        "/" => Op::Div,
                        "%" => Op::Rem,
                        "==" => Op::Eq,
                        "!=" => Op::Ne,
                        "<" => Op::Lt,
                        "<=" => Op::Le,
                        ">" => Op::Gt,
                        ">=" => Op::Ge,
                        _ => return None,
                    };
                    Node::Binary(op, Box::new(node(&args[0], params)?), Box::new(node(&args[1], params)?))
                }
                _ => return None,
            }
        }
        // A chain of fields that ends in a field, `split` or `words`
        // (`r.value.split(" ")`); `a[0][1]` and anything else nest further.
        Expr::Dot(x, ..) => dot(node(&x.lhs, params)?, &x.rhs, params)?,
        Expr::Index(x, ..) if !matches!(x.rhs, Expr::Index(..) | Expr::Dot(..)) => {
            Node::Index(Box::new(node(&x.lhs, params)?), Box::new(node(&x.rhs, params)?))
        }
        _ => return None,
    })
}

/// `lhs` followed by the rest of a dot chain: Rhai nests `a.b.c` as
/// `a . (b . c)`.
fn dot(lhs: Node, rhs: &Expr, params: &[String]) -> Option<Node> {
    let lhs = Box::new(lhs);
    Some(match rhs {
        Expr::Property(p, _) => Node::Field(lhs, p.2.clone()),
        Expr::MethodCall(call, _) if call.namespace.is_empty() && call.name == "split" && call.args.len() == 1 => {
            Node::Split(lhs, Box::new(node(&call.args[0], params)?))
        }
        Expr::MethodCall(call, _) if call.namespace.is_empty() && call.name == "words" && call.args.is_empty() => Node::Words(lhs),
        Expr::Dot(x, ..) => match &x.lhs {
            Expr::Property(p, _) => dot(Node::Field(lhs, p.2.clone()), &x.rhs, params)?,
            _ => return None,
        },
        _ => return None,
    })
}

fn eval<'a>(node: &'a Node, args: &Args<'a>) -> Option<Cow<'a, Dynamic>> {
    Some(match node {
        Node::Param(i) => {
            let v = args.get(*i);
            // A captured variable is shared: its value is read now.
            if v.is_shared() {
                Cow::Owned(v.flatten_clone())
            } else {
                Cow::Borrowed(v)
            }
        }
        Node::Const(v) => Cow::Borrowed(v),
        Node::Array(items) => {
            let mut array = Array::with_capacity(items.len());
            for item in items {
                array.push(eval(item, args)?.into_owned());
            }
            Cow::Owned(Dynamic::from_array(array))
        }
        Node::Interpolated(parts) => {
            let mut text = String::new();
            for part in parts {
                push_shown(&mut text, &*eval(part, args)?)?;
            }
            Cow::Owned(Dynamic::from(ImmutableString::from(text)))
        }
        Node::Binary(op, a, b) => Cow::Owned(binary(*op, &*eval(a, args)?, &*eval(b, args)?)?),
        Node::Negate(a) => Cow::Owned(Dynamic::from_int(eval(a, args)?.as_int().ok()?.checked_neg()?)),
        Node::Not(a) => Cow::Owned(Dynamic::from_bool(!eval(a, args)?.as_bool().ok()?)),
        Node::And(items) => {
            for item in items {
                if !eval(item, args)?.as_bool().ok()? {
                    return Some(Cow::Owned(Dynamic::FALSE));
                }
            }
            Cow::Owned(Dynamic::TRUE)
        }
        Node::Or(items) => {
            for item in items {
                if eval(item, args)?.as_bool().ok()? {
                    return Some(Cow::Owned(Dynamic::TRUE));
                }
            }
            Cow::Owned(Dynamic::FALSE)
        }
        Node::Index(container, index) => {
            let (container, index) = (eval(container, args)?, eval(index, args)?);
            Cow::Owned(element(&container, &index)?)
        }
        Node::Field(container, name) => {
            let container = eval(container, args)?;
            let map = container.read_lock::<Map>()?;
            Cow::Owned(map.get(name.as_str())?.flatten_clone())
        }
        Node::Split(text, delimiter) => {
            let (text, delimiter) = (eval(text, args)?, eval(delimiter, args)?);
            let text = text.read_lock::<ImmutableString>()?;
            let delimiter = delimiter.read_lock::<ImmutableString>()?;
            // As Rhai's `split(string, delimiter)`.
            let parts: Array = if text.is_empty() || (!delimiter.is_empty() && !text.contains(delimiter.as_str())) {
                vec![Dynamic::from(text.clone())]
            } else {
                text.split(delimiter.as_str()).map(|s| Dynamic::from(ImmutableString::from(s))).collect()
            };
            Cow::Owned(Dynamic::from_array(parts))
        }
        Node::Words(text) => {
            let text = eval(text, args)?;
            let text = text.read_lock::<ImmutableString>()?;
            // As skitter's `words(text)`.
            let mut words = Array::with_capacity(8);
            crate::script::workflow_api::for_each_word(&text, |w| words.push(Dynamic::from(ImmutableString::from(w))));
            Cow::Owned(Dynamic::from_array(words))
        }
    })
}

/// Appends a value as an interpolation shows it.
fn push_shown(text: &mut String, v: &Dynamic) -> Option<()> {
    if let Some(s) = v.read_lock::<ImmutableString>() {
        text.push_str(&s);
    } else if let Ok(i) = v.as_int() {
        let _ = write!(text, "{i}"); // Writing to a String cannot fail.
    } else if let Ok(c) = v.as_char() {
        text.push(c);
    } else {
        text.push_str(if v.as_bool().ok()? { "true" } else { "false" });
    }
    Some(())
}

/// `container[index]`: an array's element in bounds, or a map's present entry.
fn element(container: &Dynamic, index: &Dynamic) -> Option<Dynamic> {
    if let Some(array) = container.read_lock::<Array>() {
        let i = usize::try_from(index.as_int().ok()?).ok()?;
        return Some(array.get(i)?.flatten_clone());
    }
    let map = container.read_lock::<Map>()?;
    let key = index.read_lock::<ImmutableString>()?;
    Some(map.get(key.as_str())?.flatten_clone())
}

fn binary(op: Op, a: &Dynamic, b: &Dynamic) -> Option<Dynamic> {
    if let (Ok(x), Ok(y)) = (a.as_int(), b.as_int()) {
        return Some(match op {
            Op::Add => Dynamic::from_int(x.checked_add(y)?),
            Op::Sub => Dynamic::from_int(x.checked_sub(y)?),
            Op::Mul => Dynamic::from_int(x.checked_mul(y)?),
            Op::Div => Dynamic::from_int(x.checked_div(y)?),
            Op::Rem => Dynamic::from_int(x.checked_rem(y)?),
            cmp => Dynamic::from_bool(compare(cmp, x.cmp(&y))?),
        });
    }
    if let (Some(x), Some(y)) = (a.read_lock::<ImmutableString>(), b.read_lock::<ImmutableString>()) {
        return Some(match op {
            Op::Add => {
                let mut s = String::with_capacity(x.len() + y.len());
                s.push_str(&x);
                s.push_str(&y);
                Dynamic::from(ImmutableString::from(s))
            }
            cmp => Dynamic::from_bool(compare(cmp, x.as_str().cmp(y.as_str()))?),
        });
    }
    if let (Ok(x), Ok(y)) = (a.as_char(), b.as_char()) {
        return Some(Dynamic::from_bool(compare(op, x.cmp(&y))?));
    }
    if let (Ok(x), Ok(y)) = (a.as_bool(), b.as_bool()) {
        return match op {
            Op::Eq => Some(Dynamic::from_bool(x == y)),
            Op::Ne => Some(Dynamic::from_bool(x != y)),
            _ => None,
        };
    }
    None
}

/// A comparison's answer for an ordering; `None` for arithmetic.
fn compare(op: Op, ord: std::cmp::Ordering) -> Option<bool> {
    use std::cmp::Ordering::*;
    Some(match op {
        Op::Eq => ord == Equal,
        Op::Ne => ord != Equal,
        Op::Lt => ord == Less,
        Op::Le => ord != Greater,
        Op::Gt => ord == Greater,
        Op::Ge => ord != Less,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `fn f(PARAMS) { BODY }` on `args` both ways; returns what the
    /// tree gave (after checking Rhai agrees) and what Rhai gave.
    fn both(params: &str, body: &str, args: &[Dynamic]) -> (Option<Dynamic>, Result<Dynamic, String>) {
        let engine = rhai::Engine::new();
        let ast = engine.compile(format!("fn f({params}) {{ {body} }}")).unwrap();
        let native = NativeFn::translate(&ast, "f", args.len());
        let rhai: Result<Dynamic, _> = engine.call_fn(&mut rhai::Scope::new(), &ast, "f", args.to_vec()).map_err(|e| e.to_string());
        let value = native.and_then(|n| n.eval(&[], &args.iter().collect::<Vec<_>>()));
        if let Some(v) = &value {
            assert_eq!(Ok(format!("{v:?}")), rhai.as_ref().map(|r| format!("{r:?}")).map_err(Clone::clone), "{body} on {args:?}");
        }
        (value, rhai)
    }

    fn s(text: &str) -> Dynamic {
        Dynamic::from(text.to_string())
    }

    #[test]
    fn pure_expressions_run_in_rust_and_agree_with_rhai() {
        let i = Dynamic::from_int;
        let pair = Dynamic::from_array(vec![s("w"), i(3)]);
        let mut map = Map::new();
        map.insert("name".into(), s("ada"));
        let map = Dynamic::from_map(map);
        let mut record = Map::new();
        record.insert("value".into(), s("a bb c"));
        record.insert("inner".into(), map.clone());
        let record = Dynamic::from_map(record);
        let cases: Vec<(&str, &str, Vec<Dynamic>)> = vec![
            ("w", "w", vec![s("x")]),
            ("c, w", "[c + 1, [w, c + 1]]", vec![i(4), s("x")]),
            ("p", "`${p[0]} ${p[1]}`", vec![pair.clone()]),
            ("p", "`${p[0]}:${true}:${'c'}`", vec![pair.clone()]),
            ("line", r#"line.split(" ")"#, vec![s("a bb  c")]),
            ("line", r#"line.split(" ")"#, vec![s("")]),
            ("line", r#"line.split("")"#, vec![s("abc")]),
            ("r", "r.name", vec![map.clone()]),
            ("r", r#"r.value.split(" ")"#, vec![record.clone()]),
            ("r", "r.inner.name", vec![record.clone()]),
            ("r", r#"r["name"]"#, vec![map.clone()]),
            ("x", "x % 2 == 0", vec![i(7)]),
            ("x", "x > 3 && x != 7 || !(x < 0)", vec![i(7)]),
            ("x", "-x * 2 / 3 - 1", vec![i(10)]),
            ("a, b", "a + b", vec![s("ab"), s("cd")]),
            ("a, b", "a < b", vec![s("ab"), s("b")]),
            ("a, b", "a == b", vec![Dynamic::from_char('a'), Dynamic::from_char('a')]),
            ("a, b", "{ a >= b }", vec![i(1), i(2)]),
            ("a", "return a * 3;", vec![i(5)]),
        ];
        for (params, body, args) in cases {
            let (native, _) = both(params, body, &args);
            assert!(native.is_some(), "`{body}` runs in Rust on {args:?}");
        }
    }

    #[test]
    fn what_the_tree_cannot_decide_is_left_to_rhai() {
        let i = Dynamic::from_int;
        let cases: Vec<(&str, &str, Vec<Dynamic>)> = vec![
            // Errors: Rhai reports them, with its positions.
            ("x", "x + 1", vec![i(i64::MAX)]),
            ("x", "x / 0", vec![i(1)]),
            ("x", "-x", vec![i(i64::MIN)]),
            ("p", "p[5]", vec![Dynamic::from_array(vec![i(1)])]),
            ("r", "r.missing", vec![Dynamic::from_map(Map::new())]),
            ("x", "x && x > 0", vec![i(1)]),
            // Values the tree does not take.
            ("x", "x + 1", vec![Dynamic::from_float(1.5)]),
            ("a, b", "a + b", vec![s("a"), i(1)]),
            ("p", "p[-1]", vec![Dynamic::from_array(vec![i(1)])]),
            ("x", "`${x}`", vec![Dynamic::from_float(2.0)]),
        ];
        for (params, body, args) in cases {
            let (native, _) = both(params, body, &args);
            assert!(native.is_none(), "`{body}` is left to Rhai on {args:?}");
        }
    }

    #[test]
    fn only_single_pure_expressions_are_translated() {
        let engine = rhai::Engine::new();
        for body in [
            "let y = x; y",
            "print(x); x",
            "x.len()",
            "to_upper(x)",
            "x.a.len()",
            "x.split(\" \").len()",
            "x.a[0].b",
            "if x { 1 } else { 2 }",
            "GLOBAL + x",
            // Issue 25: a thrown value is an error, never a result.
            "throw x",
            "throw `bad ${x}`",
        ] {
            let ast = engine.compile(format!("fn f(x) {{ {body} }}")).unwrap();
            assert!(NativeFn::translate(&ast, "f", 1).is_none(), "{body}");
        }
        // A script's own `split` is the one called.
        let ast = engine.compile("fn split(a, b) { [a] } fn f(x) { x.split(\" \") }").unwrap();
        assert!(NativeFn::translate(&ast, "f", 1).is_none());
    }

    #[test]
    fn skitters_words_runs_in_rust_and_agrees_with_it() {
        let env = crate::script::EngineEnv::new(None, std::sync::Arc::new(|_: &str| {}));
        let engine = crate::script::new_engine(&env);
        for body in ["words(line)", "line.words()"] {
            let ast = engine.compile(format!("fn f(line) {{ {body} }}")).unwrap();
            let native = NativeFn::translate(&ast, "f", 1).expect("translated");
            for text in ["the  quick\tbrown fox ", "", "naïve café\u{a0}x"] {
                let arg = s(text);
                let rhai: Dynamic = engine.call_fn(&mut rhai::Scope::new(), &ast, "f", (arg.clone(),)).unwrap();
                assert_eq!(format!("{:?}", native.eval(&[], &[&arg]).unwrap()), format!("{rhai:?}"), "{body} on {text:?}");
            }
        }
    }

    #[test]
    fn captured_values_are_parameters() {
        let engine = rhai::Engine::new();
        let ast = engine.compile("let y = 5; let f = |x| x + y; f").unwrap();
        let f: rhai::FnPtr = engine.eval_ast(&ast).unwrap();
        let native = NativeFn::translate(&ast, f.fn_name(), f.curry().len() + 1).expect("translated");
        let shared = f.curry()[0].clone();
        assert_eq!(native.eval(&[shared], &[&Dynamic::from_int(2)]).unwrap().as_int().unwrap(), 7);
    }
}
