//! The tree against Rhai on generated functions and records: wherever the
//! tree gives a value, Rhai gives the same value (not an error), and a
//! callback changes `this` and emits exactly as Rhai's run does. A fixed
//! seed runs in the suite; `SKITTER_DIFFERENTIAL=N` runs N cases per test
//! and `SKITTER_DIFFERENTIAL_SEED=K` another round (`scripts/bench --only
//! differential` runs larger rounds).

use rhai::{Dynamic, Engine, Map, Scope};

use super::{Computed, NativeFn};

/// A small deterministic generator (xorshift64*).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const INTS: [&str; 9] = ["0", "1", "2", "-1", "3", "10", "9223372036854775807", "-9223372036854775808", "7"];
const FLOATS: [&str; 7] = ["0.0", "1.5", "-2.25", "0.1", "1e20", "3.0", "1e-9"];
const STRINGS: [&str; 9] = [r#""""#, r#""a""#, r#""a b""#, r#"" 12 ""#, r#""3.5""#, r#""héllo""#, r#""x,y,z""#, r#""B""#, r#""name""#];
const CHARS: [&str; 3] = ["'a'", "'é'", "' '"];
const BINARY: [&str; 11] = ["+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">="];
/// Methods and the number of arguments they take besides the receiver.
const METHODS: [(&str, usize); 24] = [
    ("len", 0),
    ("is_empty", 0),
    ("contains", 1),
    ("starts_with", 1),
    ("ends_with", 1),
    ("index_of", 1),
    ("sub_string", 2),
    ("to_upper", 0),
    ("to_lower", 0),
    ("split", 1),
    ("to_string", 0),
    ("parse_int", 0),
    ("parse_float", 0),
    ("to_int", 0),
    ("to_float", 0),
    ("abs", 0),
    ("floor", 0),
    ("ceiling", 0),
    ("round", 0),
    ("sqrt", 0),
    ("min", 1),
    ("max", 1),
    ("keys", 0),
    ("values", 0),
];

/// A random literal.
fn literal(g: &mut Gen) -> String {
    match g.below(7) {
        0 | 1 => g.pick(&INTS).into(),
        2 => g.pick(&FLOATS).into(),
        3 | 4 => g.pick(&STRINGS).into(),
        5 => g.pick(&CHARS).into(),
        _ => g.pick(&["true", "false", "()"]).into(),
    }
}

/// A random expression over `vars`.
fn expr(g: &mut Gen, vars: &[&str], depth: usize) -> String {
    if depth == 0 {
        return if g.below(2) == 0 { g.pick(vars).into() } else { literal(g) };
    }
    let d = depth - 1;
    match g.below(17) {
        0 | 1 => g.pick(vars).into(),
        2 => literal(g),
        3..=5 => format!("({} {} {})", expr(g, vars, d), g.pick(&BINARY), expr(g, vars, d)),
        6 => {
            let (name, n) = METHODS[g.below(METHODS.len())];
            let args: Vec<String> = (0..n).map(|_| expr(g, vars, d)).collect();
            format!("{}.{name}({})", expr(g, vars, d), args.join(", "))
        }
        7 => format!("{}[{}]", g.pick(vars), g.pick(&["0", "1", "-1", "2", r#""a""#, r#""name""#])),
        8 => format!("{}.{}", g.pick(vars), g.pick(&["a", "b", "name"])),
        // Two steps along a value: a map in a map, a map in an array.
        16 => format!("{}{}{}", g.pick(vars), g.pick(&[".a", "[0]", "[-1]", ".name"]), g.pick(&[".a", ".name", "[0]", "[1]", r#"["a"]"#])),
        9 => format!("`{}-${{{}}}:${{{}}}`", g.pick(&["", "v"]), expr(g, vars, d), expr(g, vars, d)),
        10 => format!("[{}, {}]", expr(g, vars, d), expr(g, vars, d)),
        // A key given twice: the last value is the one kept.
        11 if g.below(4) == 0 => format!("#{{b: {}, a: {}, b: {}}}", expr(g, vars, d), expr(g, vars, d), expr(g, vars, d)),
        11 => format!("#{{a: {}, b: {}}}", expr(g, vars, d), expr(g, vars, d)),
        12 => format!("(if {} {{ {} }} else {{ {} }})", expr(g, vars, d), expr(g, vars, d), expr(g, vars, d)),
        13 => format!(
            "(switch {} {{ 1 => {}, \"a\" | 'a' => {}, 2..5 => {}, _ => {} }})",
            expr(g, vars, d),
            expr(g, vars, d),
            expr(g, vars, d),
            expr(g, vars, d),
            expr(g, vars, d)
        ),
        14 => format!("({} {} {})", expr(g, vars, d), g.pick(&["&&", "||", "??", "in"]), expr(g, vars, d)),
        _ => format!("{}{}", g.pick(&["-", "!"]), expr(g, vars, d)),
    }
}

/// A random body of statements over the parameters `x` and `y`.
fn body(g: &mut Gen) -> String {
    let mut vars = vec!["x", "y"];
    let mut out = String::new();
    for _ in 0..g.below(4) {
        match g.below(4) {
            0 if vars.len() < 4 => {
                let name = ["t", "u"][vars.len() - 2];
                out += &format!("let {name} = {}; ", expr(g, &vars, 2));
                vars.push(name);
            }
            1 => out += &format!("{} {} {}; ", g.pick(&vars), g.pick(&["=", "+=", "-=", "*="]), expr(g, &vars, 2)),
            2 => out += &format!("{}.{} = {}; ", g.pick(&vars), g.pick(&["a", "name"]), expr(g, &vars, 1)),
            _ => out += &format!("if {} {{ return {}; }} ", expr(g, &vars, 1), expr(g, &vars, 1)),
        }
    }
    // Ending in a pair, as a reduce function does (`[state, emitted]`).
    match g.below(4) {
        0 => out + format!("[{}, {}]", g.pick(&vars), expr(g, &vars, 2)).as_str(),
        _ => out + expr(g, &vars, 3).as_str(),
    }
}

/// The types of well-typed expressions (`typed`).
#[derive(Clone, Copy)]
enum Ty {
    Int,
    Float,
    Str,
    Bool,
}

fn pick(g: &mut Gen, tys: &[Ty]) -> Ty {
    tys[g.below(tys.len())]
}

fn typed_any(g: &mut Gen, tys: &[Ty], vars: &[(&str, Ty)], depth: usize) -> String {
    let ty = pick(g, tys);
    typed(g, ty, vars, depth)
}

/// A random expression of type `ty` (mostly: integer arithmetic may
/// overflow, `parse_int` may fail) over a record `r` (`name`, `city`:
/// strings, `age`: integer, `score`: float, `tags`: strings), an integer
/// `n`, and the variables `vars` of their types.
fn typed(g: &mut Gen, ty: Ty, vars: &[(&str, Ty)], depth: usize) -> String {
    let own: Vec<&str> = vars.iter().filter(|(_, t)| std::mem::discriminant(t) == std::mem::discriminant(&ty)).map(|(v, _)| *v).collect();
    let d = depth.saturating_sub(1);
    let leaf = depth == 0 || g.below(4) == 0;
    match ty {
        Ty::Int if leaf => match g.below(4) {
            0 if !own.is_empty() => g.pick(&own).into(),
            1 => "r.age".into(),
            2 => "n".into(),
            _ => g.pick(&["0", "1", "7", "-3", "100"]).into(),
        },
        Ty::Int => match g.below(8) {
            0 | 1 => format!("({} {} {})", typed(g, Ty::Int, vars, d), g.pick(&["+", "-", "*", "/", "%"]), typed(g, Ty::Int, vars, d)),
            2 => format!("{}.len()", typed(g, Ty::Str, vars, d)),
            3 => format!("parse_int({})", g.pick(&["r.name", "r.city", r#""42""#, r#"" 7 ""#])),
            4 => format!("{}.to_int()", typed(g, Ty::Float, vars, d)),
            5 => format!("{}.index_of({})", typed(g, Ty::Str, vars, d), typed(g, Ty::Str, vars, d)),
            6 => format!("max({}, {})", typed(g, Ty::Int, vars, d), typed(g, Ty::Int, vars, d)),
            _ => format!(
                "(if {} {{ {} }} else {{ {} }})",
                typed(g, Ty::Bool, vars, d),
                typed(g, Ty::Int, vars, d),
                typed(g, Ty::Int, vars, d)
            ),
        },
        Ty::Float if leaf => match g.below(3) {
            0 if !own.is_empty() => g.pick(&own).into(),
            1 => "r.score".into(),
            _ => g.pick(&["0.5", "2.0", "-1.25", "1e10", "0.1"]).into(),
        },
        Ty::Float => match g.below(6) {
            0 | 1 => format!(
                "({} {} {})",
                typed(g, Ty::Float, vars, d),
                g.pick(&["+", "-", "*", "/"]),
                typed_any(g, &[Ty::Int, Ty::Float], vars, d)
            ),
            2 => format!("{}.to_float()", typed(g, Ty::Int, vars, d)),
            3 => format!("parse_float({})", g.pick(&[r#""1.5""#, r#"" 2 ""#, "r.city"])),
            4 => format!("{}.{}()", typed(g, Ty::Float, vars, d), g.pick(&["floor", "round", "ceiling", "abs", "sqrt"])),
            _ => format!("min({}, {})", typed(g, Ty::Float, vars, d), typed(g, Ty::Float, vars, d)),
        },
        Ty::Str if leaf => match g.below(4) {
            0 if !own.is_empty() => g.pick(&own).into(),
            1 => "r.name".into(),
            2 => "r.tags[0]".into(),
            _ => g.pick(&[r#""a""#, r#"" ""#, r#""""#, r#""x,y""#, r#""Zoë""#]).into(),
        },
        Ty::Str => match g.below(9) {
            0 | 1 => format!("{} + {}", typed(g, Ty::Str, vars, d), typed_any(g, &[Ty::Int, Ty::Float, Ty::Str, Ty::Bool], vars, d)),
            2 => format!(
                "`${{{}}}:${{{}}}`",
                typed_any(g, &[Ty::Int, Ty::Float, Ty::Str, Ty::Bool], vars, d),
                typed_any(g, &[Ty::Int, Ty::Float, Ty::Str, Ty::Bool], vars, d)
            ),
            3 => format!("{}.{}()", typed(g, Ty::Str, vars, d), g.pick(&["to_upper", "to_lower", "to_string"])),
            4 => format!("{}.sub_string({}, {})", typed(g, Ty::Str, vars, d), g.pick(&["0", "1", "2"]), g.pick(&["0", "1", "3"])),
            5 => format!(
                "{}.split({}){}",
                typed(g, Ty::Str, vars, d),
                g.pick(&[r#"",""#, r#"" ""#, r#""""#, r#"", ""#, r#""ë""#]),
                g.pick(&["[0]", "[-1]"])
            ),
            6 => format!(
                "(switch {} {{ 1 => {}, 2 | 3 => {}, 4..10 => {}, _ => {} }})",
                typed(g, Ty::Int, vars, d),
                typed(g, Ty::Str, vars, d),
                typed(g, Ty::Str, vars, d),
                typed(g, Ty::Str, vars, d),
                typed(g, Ty::Str, vars, d)
            ),
            7 => format!("{}.to_string()", typed_any(g, &[Ty::Int, Ty::Float, Ty::Bool], vars, d)),
            // A function of the script (see `HELPERS`).
            _ => format!("{}({}, {})", g.pick(&["shout", "label"]), typed(g, Ty::Str, vars, d), typed(g, Ty::Int, vars, d)),
        },
        Ty::Bool if leaf => g.pick(&["true", "false", "(r.age > 30)", "(n == 7)"]).into(),
        Ty::Bool => match g.below(6) {
            0 | 1 => {
                let t = pick(g, &[Ty::Int, Ty::Float, Ty::Str]);
                let u = if matches!(t, Ty::Str) { t } else { pick(g, &[Ty::Int, Ty::Float]) };
                format!("({} {} {})", typed(g, t, vars, d), g.pick(&["==", "!=", "<", "<=", ">", ">="]), typed(g, u, vars, d))
            }
            2 => format!("({} {} {})", typed(g, Ty::Bool, vars, d), g.pick(&["&&", "||"]), typed(g, Ty::Bool, vars, d)),
            3 => format!(
                "{}.{}({})",
                typed(g, Ty::Str, vars, d),
                g.pick(&["contains", "starts_with", "ends_with"]),
                typed(g, Ty::Str, vars, d)
            ),
            4 => format!("({} in r.tags)", typed(g, Ty::Str, vars, d)),
            _ => format!("!{}", typed(g, Ty::Bool, vars, d)),
        },
    }
}

/// Functions of the script the typed bodies call.
const HELPERS: &str = r#"
fn shout(s, n) { let t = s.to_upper(); if n > 3 { t + "!" } else { t } }
fn label(s, n) { switch n { 0 => "none", 1 | 2 => `${s}:few`, _ => shout(s, n) + n } }
"#;

/// A random body of statements as users write them, over a record `r` and an integer `n`.
fn typed_body(g: &mut Gen) -> String {
    let tys = [Ty::Int, Ty::Float, Ty::Str, Ty::Bool];
    let mut vars: Vec<(&str, Ty)> = Vec::new();
    let mut out = String::new();
    for name in ["a", "b", "c"].iter().take(g.below(4)) {
        let ty = tys[g.below(4)];
        out += &match g.below(5) {
            0 => format!("r.{} = {}; ", g.pick(&["name", "city"]), typed(g, Ty::Str, &vars, 2)),
            1 => format!("r.age += {}; ", typed(g, Ty::Int, &vars, 1)),
            2 => format!("if {} {{ return {}; }} ", typed(g, Ty::Bool, &vars, 1), typed(g, ty, &vars, 1)),
            // A constant chosen by `if` or `switch` (the tree holds which).
            3 => {
                let value = match g.below(3) {
                    0 => format!("if {} {{ {} }} else {{ {} }}", typed(g, Ty::Bool, &vars, 1), constant(g, ty), constant(g, ty)),
                    1 => format!(
                        "if {} {{ {} }} else if {} {{ {} }} else {{ {} }}",
                        typed(g, Ty::Bool, &vars, 1),
                        constant(g, ty),
                        typed(g, Ty::Bool, &vars, 1),
                        constant(g, ty),
                        constant(g, ty)
                    ),
                    _ => format!(
                        "switch {} {{ 1 => {}, 2 | 3 => {}, _ => {} }}",
                        typed(g, Ty::Int, &vars, 1),
                        constant(g, ty),
                        constant(g, ty),
                        constant(g, ty)
                    ),
                };
                vars.push((name, ty));
                format!("let {name} = {value}; ")
            }
            _ => {
                let s = format!("let {name} = {}; ", typed(g, ty, &vars, 2));
                vars.push((name, ty));
                s
            }
        };
    }
    let last = match g.below(4) {
        0 => format!(
            "#{{ name: {}, n: {}, ok: {} }}",
            typed(g, Ty::Str, &vars, 2),
            typed(g, Ty::Int, &vars, 2),
            typed(g, Ty::Bool, &vars, 1)
        ),
        1 => "r".into(),
        _ => typed_any(g, &tys, &vars, 3),
    };
    out + last.as_str()
}

/// A constant of type `ty`.
fn constant(g: &mut Gen, ty: Ty) -> &'static str {
    match ty {
        Ty::Int => g.pick(&["0", "7", "-3"]),
        Ty::Float => g.pick(&["1.5", "-0.0", "100.0"]),
        Ty::Str => g.pick(&[r#""a""#, r#""Zoë""#, r#""""#]),
        Ty::Bool => g.pick(&["true", "false"]),
    }
}

/// A random record for `typed_body`.
fn record(g: &mut Gen, engine: &Engine) -> Dynamic {
    let text = format!(
        "#{{ name: {}, city: {}, age: {}, score: {}, tags: [{}, {}] }}",
        g.pick(&[r#""ada""#, r#""Zoë""#, r#""""#, r#""12""#]),
        g.pick(&[r#""Gent""#, r#"" 3.5 ""#, r#""a,b""#]),
        g.pick(&["0", "36", "-7", "9223372036854775807"]),
        g.pick(&["0.0", "1.5", "-2.5", "1e300"]),
        g.pick(&[r#""a""#, r#""x""#]),
        g.pick(&[r#""""#, r#""Zoë""#])
    );
    engine.eval::<Dynamic>(&text).expect("a record evaluates")
}

/// A random argument.
fn value(g: &mut Gen, engine: &Engine) -> Dynamic {
    let text = match g.below(7) {
        0 => format!("[{}, {}]", literal(g), literal(g)),
        1 => format!("#{{a: {}, name: {}}}", literal(g), literal(g)),
        2 => format!("[#{{a: {}, name: {}}}, #{{a: {}}}]", literal(g), literal(g), literal(g)),
        3 => format!("#{{a: #{{a: {}, name: {}}}, name: [{}, {}]}}", literal(g), literal(g), literal(g), literal(g)),
        _ => literal(g),
    };
    engine.eval::<Dynamic>(&text).expect("a literal evaluates")
}

fn shown(v: &Dynamic) -> String {
    format!("{v:?}")
}

/// Checks that Rhai's `f` gives `got` (the tree's value) on `args`, not an error.
fn agree(engine: &Engine, ast: &rhai::AST, got: &Dynamic, args: [Dynamic; 2], what: impl Fn() -> String) {
    let on = format!("on {:?}, {:?}", args[0], args[1]);
    match engine.call_fn::<Dynamic>(&mut Scope::new(), ast, "f", args.to_vec()) {
        Ok(want) => assert_eq!(shown(got), shown(&want), "{} {on}", what()),
        Err(e) => panic!("{} {on}: the tree gave {got:?}, Rhai failed: {e}", what()),
    }
}

/// Runs `cases` functions on generated arguments; returns how many the
/// tree answered itself.
fn run(seed: u64, cases: usize) -> usize {
    crate::script::engine::init_hashing();
    let engine = Engine::new();
    let mut g = Gen(seed);
    let mut answered = 0;
    for _ in 0..cases {
        let body = body(&mut g);
        let Ok(ast) = engine.compile(format!("fn f(x, y) {{ {body} }}")) else { continue };
        let Some(native) = NativeFn::translate(&ast, "f", 0, 2) else { continue };
        for _ in 0..4 {
            let (x, y) = (value(&mut g, &engine), value(&mut g, &engine));
            // `x` given to own, as a reduce function's state: the same
            // value, or `x` given back as it was. Half the time asked for
            // a pair's two values apart.
            let two = g.below(2) == 0;
            let owning = native.eval_owning(&[], x.clone(), &[&y], two).expect("changes undone").map(Computed::into_dynamic);
            let Some(got) = native.eval(&[], &[&x, &y]) else {
                match owning {
                    Ok(v) => panic!("fn f(x, y) {{ {body} }} on {x:?}, {y:?}: owning gave {v:?}, borrowing gave up"),
                    Err(back) => assert_eq!(shown(&back), shown(&x), "fn f(x, y) {{ {body} }}: the state given back"),
                }
                continue;
            };
            assert_eq!(owning.as_ref().map(shown).ok(), Some(shown(&got)), "fn f(x, y) {{ {body} }} on {x:?}, {y:?}: owning");
            // As a filter's predicate: the same `bool`, or Rhai decides.
            if let Some(kept) = native.test(&[], &[&x, &y]) {
                assert_eq!(Some(kept), got.as_bool().ok(), "fn f(x, y) {{ {body} }} on {x:?}, {y:?}: as a predicate");
            }
            answered += 1;
            agree(&engine, &ast, &got, [x, y], || format!("fn f(x, y) {{ {body} }}"));
        }
    }
    answered
}

/// A callback's changes to `this` and its emits, both ways.
fn run_callbacks(seed: u64, cases: usize) -> usize {
    crate::script::engine::init_hashing();
    let mut engine = Engine::new();
    crate::script::emit::register(&mut engine);
    let mut g = Gen(seed);
    let mut answered = 0;
    for _ in 0..cases {
        let mut stmts = String::new();
        for _ in 0..1 + g.below(4) {
            stmts += &match g.below(6) {
                5 => format!("for v in {} {{ if v == x {{ continue; }} emit(\"seen\", v); }} ", g.pick(&["this.seen", "0..this.n", "x"])),
                0 => format!("this.n {} {}; ", g.pick(&["=", "+=", "-="]), expr(&mut g, &["x", "this.n"], 1)),
                1 => format!("this.seen.push({}); ", expr(&mut g, &["x"], 1)),
                2 => format!("this[{}] = {}; ", g.pick(&[r#""k""#, r#""n""#, "x"]), expr(&mut g, &["x"], 1)),
                3 => format!("emit(\"out\", [{}, this.n]); ", expr(&mut g, &["x"], 1)),
                _ => format!("if {} {{ throw \"no\" }} ", expr(&mut g, &["x", "this.n"], 1)),
            };
        }
        let Ok(ast) = engine.compile(format!("fn cb(x) {{ {stmts} }}")) else { continue };
        let Some(native) = NativeFn::translate(&ast, "cb", 0, 1) else { continue };
        let x = value(&mut g, &engine);
        let state = Dynamic::from_map(Map::from_iter([
            ("n".into(), Dynamic::from_int(g.below(3) as i64)),
            ("seen".into(), Dynamic::from_array(vec![])),
        ]));
        let mut mine = state.clone();
        let mut sent = Vec::new();
        let got = native.eval_this(&[], &[&x], &mut mine, Some(&mut sent)).expect("a give-up is undone");
        if got.is_none() {
            assert_eq!(shown(&mine), shown(&state), "fn cb(x) {{ {stmts} }} on {x:?} gave up and left this as it was");
            assert!(sent.is_empty(), "fn cb(x) {{ {stmts} }} gave up and emitted nothing");
            continue;
        }
        answered += 1;
        let mut theirs = state.clone();
        let mut their_sent = Vec::new();
        let options = rhai::CallFnOptions::new().eval_ast(false).bind_this_ptr(&mut theirs);
        let want = crate::script::emit::collect(&mut their_sent, || {
            engine.call_fn_with_options::<Dynamic>(options, &mut Scope::new(), &ast, "cb", (x.clone(),))
        });
        let what = format!("fn cb(x) {{ {stmts} }} on x = {x:?}, this = {state:?}");
        assert!(want.is_ok(), "{what}: the tree ran it, Rhai failed: {want:?}");
        assert_eq!(shown(&mine), shown(&theirs), "{what}: this");
        assert_eq!(format!("{sent:?}"), format!("{their_sent:?}"), "{what}: emitted");
    }
    answered
}

/// Typed functions over a record and an integer: mostly valid, as users write them.
fn run_typed(seed: u64, cases: usize) -> usize {
    crate::script::engine::init_hashing();
    let mut engine = Engine::new();
    engine.set_max_expr_depths(0, 0);
    let mut g = Gen(seed);
    let mut answered = 0;
    for _ in 0..cases {
        let body = typed_body(&mut g);
        let ast = match engine.compile(format!("{HELPERS} fn f(r, n) {{ {body} }}")) {
            Ok(ast) => ast,
            Err(e) => panic!("fn f(r, n) {{ {body} }} compiles: {e}"),
        };
        let Some(native) = NativeFn::translate(&ast, "f", 0, 2) else { panic!("fn f(r, n) {{ {body} }} is translated") };
        for _ in 0..3 {
            let (r, n) = (record(&mut g, &engine), Dynamic::from_int([0, 7, 3, -1][g.below(4)]));
            let Some(got) = native.eval(&[], &[&r, &n]) else { continue };
            answered += 1;
            agree(&engine, &ast, &got, [r, n], || format!("fn f(r, n) {{ {body} }}"));
        }
    }
    answered
}

fn cases() -> usize {
    std::env::var("SKITTER_DIFFERENTIAL").ok().and_then(|n| n.parse().ok()).unwrap_or(3000)
}

/// The seeds: fixed, or moved by `SKITTER_DIFFERENTIAL_SEED` for another round.
fn seed(base: u64) -> u64 {
    base ^ std::env::var("SKITTER_DIFFERENTIAL_SEED").ok().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0).wrapping_mul(0x9e37_79b9)
}

#[test]
fn generated_functions_agree_with_rhai() {
    let n = cases();
    let answered = run(seed(0x5eed_0030), n);
    eprintln!("the tree answered {answered} of {} calls", n * 4);
    // The tree answers much of what users write; a change that makes it
    // give up everywhere would pass the comparison and fail here.
    assert!(answered > n / 4, "the tree answered {answered} of {} calls", n * 4);
}

#[test]
fn generated_typed_functions_agree_with_rhai() {
    let n = cases();
    let answered = run_typed(seed(0x5eed_0032), n);
    assert!(answered > n * 3 / 2, "the tree answered {answered} of {} calls", n * 3);
}

/// A piece of `f`, a split: read, parsed, appended or compared.
fn piece_use(g: &mut Gen) -> String {
    let k = g.pick(&["0", "1", "2", "3"]);
    let j = g.pick(&["0", "1", "2"]);
    match g.below(9) {
        0 => format!("f[{k}]"),
        1 => format!("parse_int(f[{k}])"),
        2 => format!("parse_float(f[{k}])"),
        3 => format!("`${{f[{k}]}}-${{f[{j}]}}`"),
        4 => format!("f[{k}] + \":\" + f[{j}] + 1"),
        5 => format!("f[{k}].len()"),
        6 => format!("(if f[{k}] == \"a\" {{ f[{j}] }} else {{ x }})"),
        7 => format!("#{{ a: f[{k}], b: parse_int(f[{j}]) }}"),
        _ => format!("[f[{k}], f[{j}]]"),
    }
}

/// `let f = TEXT.split(D); ...` read at constant indexes (the text kept,
/// pieces found when read), or also as a whole (a plain array).
fn run_splits(seed: u64, cases: usize) -> (usize, usize) {
    crate::script::engine::init_hashing();
    let engine = Engine::new();
    let mut g = Gen(seed);
    let (mut answered, mut kept) = (0, 0);
    for _ in 0..cases {
        let text = g.pick(&["x", "y", "x + y"]);
        let d = g.pick(&[r#"",""#, r#"" ""#, r#"", ""#, r#""""#, r#""é""#]);
        let mut body = format!("let f = {text}.split({d}); ");
        if g.below(3) == 0 {
            body += &format!("let t = {}; ", piece_use(&mut g));
        }
        body += &match g.below(6) {
            0 => format!("[{}, f.len()]", piece_use(&mut g)),
            1 => format!("{} + {}", piece_use(&mut g), piece_use(&mut g)),
            _ => piece_use(&mut g),
        };
        let Ok(ast) = engine.compile(format!("fn f(x, y) {{ {body} }}")) else { continue };
        let Some(native) = NativeFn::translate(&ast, "f", 0, 2) else { continue };
        kept += usize::from(format!("{native:?}").contains("Piece"));
        for _ in 0..4 {
            let line =
                |g: &mut Gen| Dynamic::from(g.pick(&["a,1,2.5", "a, b ,c", "", ",", "7 8 9", "x", "1é2é3", "é", "a,,b,"]).to_string());
            let (x, y) = (line(&mut g), line(&mut g));
            let Some(got) = native.eval(&[], &[&x, &y]) else { continue };
            answered += 1;
            agree(&engine, &ast, &got, [x, y], || format!("fn f(x, y) {{ {body} }}"));
        }
    }
    (answered, kept)
}

#[test]
fn generated_splits_agree_with_rhai() {
    let n = cases();
    let (answered, kept) = run_splits(seed(0x5eed_0033), n);
    // Most keep their text; those read whole (`f.len()`) do not. Many
    // calls fail in Rhai (a piece out of bounds, "a" parsed as a number).
    assert!(kept > n / 2, "{kept} of {n} splits kept their text");
    assert!(answered > n / 4, "the tree answered {answered} of {} calls", n * 4);
}

#[test]
fn generated_callbacks_agree_with_rhai() {
    let n = cases();
    let answered = run_callbacks(seed(0x5eed_0031), n);
    // Most generated callbacks fail in Rhai (`this.n - "a"`): those give up.
    assert!(answered > n / 10, "the tree answered {answered} of {n} callbacks");
}
