//! The tree against Rhai on chosen functions (`differential` tries many).
use rhai::{Dynamic, Map};

use super::{Computed, NativeFn};

/// Runs `fn f(PARAMS) { BODY }` on `args` both ways; returns what the
/// tree gave (after checking Rhai agrees) and what Rhai gave.
fn both(params: &str, body: &str, args: &[Dynamic]) -> (Option<Dynamic>, Result<Dynamic, String>) {
    // As in skitter: Rhai hashes (`switch` cases) with skitter's seed.
    crate::script::engine::init_hashing();
    let engine = rhai::Engine::new();
    let ast = engine.compile(format!("fn f({params}) {{ {body} }}")).unwrap();
    let native = NativeFn::translate(&ast, "f", 0, args.len());
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
        ("x", "parse_int(x)", vec![s("12a")]),
        // Found by `differential`: Rhai checks the argument's type first.
        ("x, y", "x.index_of(y)", vec![s(""), Dynamic::from_float(0.1)]),
        ("x", "x.to_int()", vec![Dynamic::from_float(1e30)]),
        ("p", "p[-2]", vec![Dynamic::from_array(vec![i(1)])]),
        // A thrown value is an error, never a result (issue 25).
        ("x", "throw x", vec![i(1)]),
        ("x", "if x > 0 { throw `bad ${x}` } x", vec![i(1)]),
        // A long loop: Rhai's operation counter watches it (interrupts, memory).
        ("x", "let s = 0; for i in 0..x { s += i; } s", vec![i(20_000)]),
        // Values the tree does not take.
        ("a, b", "a + b", vec![Dynamic::from_array(vec![]), i(1)]),
        ("x", "`${x}`", vec![Dynamic::from_array(vec![i(2)])]),
        ("a, b", "a == b", vec![s("a"), Dynamic::from_char('a')]),
    ];
    for (params, body, args) in cases {
        let (native, _) = both(params, body, &args);
        assert!(native.is_none(), "`{body}` is left to Rhai on {args:?}");
    }
}

#[test]
fn what_rhai_alone_can_run_is_not_translated() {
    let engine = rhai::Engine::new();
    for body in [
        "print(x); x",
        "GLOBAL + x",
        "for i in x { print(i); } x",
        "while x { }",
        "x?.a",
        "x.trim()",
        "g(x)",
        "fact(x)",
        "let y = if x { emit(\"out\", 1); 1 } else { 2 }; y",
        "let y = { x = 2; 3 }; y",
    ] {
        // `g` is left to Rhai (it prints); `fact` calls itself.
        let ast = engine
            .compile(format!("fn g(x) {{ print(x); x }} fn fact(n) {{ if n < 2 {{ 1 }} else {{ n * fact(n - 1) }} }} fn f(x) {{ {body} }}"))
            .unwrap();
        assert!(NativeFn::translate(&ast, "f", 0, 1).is_none(), "{body}");
    }
    // A script's own `split` (or `len`, `emit`...) is the one called.
    let ast = engine.compile("fn split(a, b) { [a] } fn f(x) { x.split(\" \") }").unwrap();
    assert!(NativeFn::translate(&ast, "f", 0, 1).is_none());
    // A captured variable is shared with the script: never written here.
    let ast = engine.compile("let y = 5; let f = |x| { y += x; y }; f").unwrap();
    let f: rhai::FnPtr = engine.eval_ast(&ast).unwrap();
    assert!(NativeFn::translate(&ast, f.fn_name(), 1, 2).is_none());
}

#[test]
fn statements_run_in_rust_and_agree_with_rhai() {
    let i = Dynamic::from_int;
    let f = Dynamic::from_float;
    let cases: Vec<(&str, &str, Vec<Dynamic>)> = vec![
        ("a, n", r#"a + " " + n"#, vec![s("w"), i(3)]),
        ("a, n", r#"n + ":" + a + 'c' + 1.5 + true + ()"#, vec![s("w"), i(3)]),
        ("l", r#"let f = l.split(","); #{ name: f[0], age: parse_int(f[1]), score: parse_float(f[2]) }"#, vec![s("ada, 36,1.5")]),
        ("r", r#"if r.score > 1.0 && r.name.starts_with("a") { "yes" } else { "no" }"#, vec![rec()]),
        ("r", r#"let r2 = r; r2.age += 1; r2.tag = "x"; r2"#, vec![rec()]),
        ("r", r#"r.age = r.age * 2; r"#, vec![rec()]),
        ("x", "let y = x * 2; let y = y + 1; if y > 10 { return y; } y - 1", vec![i(7)]),
        ("x", "switch x { 1 => \"one\", 2 | 3 => \"few\", 4..10 => \"some\", _ => \"many\" }", vec![i(3)]),
        ("x", "switch x { 1 => \"one\", 2 | 3 => \"few\", 4..10 => \"some\", _ => \"many\" }", vec![i(7)]),
        ("x", "switch x { 1 => \"one\", 2 | 3 => \"few\", 4..10 => \"some\", _ => \"many\" }", vec![i(70)]),
        ("x", "switch x { \"a\" if false => 1, \"a\" => 2, _ => 3 }", vec![s("a")]),
        ("x", "x.to_upper() + x.to_lower() + x.len() + x.contains(\"B\") + x.index_of('c')", vec![s("aBcd")]),
        ("x", "(x / 3.0).floor().to_int() * 10 + x.to_int()", vec![f(17.5)]),
        ("x", "[x.abs(), max(x, 2), min(x, 2.5), x.to_float(), x.to_string()]", vec![i(-4)]),
        ("x", "x == 0.3 && x < 1 && 1 > x && x != 0.31", vec![f(0.1 + 0.2)]),
        ("m", "[m.keys(), m.values(), \"name\" in m, m.len(), m.name ?? 1]", vec![rec()]),
        ("a", "let b = a; b.push(3); b[0] = 9; b[-1] += 1; [a, b, 3 in b]", vec![Dynamic::from_array(vec![i(1)])]),
        (
            "a",
            "let s = 0; for x in a { if x == 2 { continue; } if x > 5 { break; } s += x; } s",
            vec![Dynamic::from_array(vec![i(1), i(2), i(3), i(9), i(4)])],
        ),
        (
            "x",
            "let out = []; for (c, i) in x { out.push(`${i}${c}`); } for n in 1..=3 { out.push(n); } for n in 3..1 { out.push(n); } out",
            vec![s("hé")],
        ),
        // Found by `differential`: `char += ""` keeps the character.
        ("x, y", "y += x; y", vec![s(""), Dynamic::from_char('é')]),
        ("x, y", "y += x; y", vec![s("a"), Dynamic::from_char('é')]),
        ("x", "x.sub_string(1, 2) + x[0] + x[-1]", vec![s("héllo")]),
    ];
    for (params, body, args) in cases {
        let (native, _) = both(params, body, &args);
        assert!(native.is_some(), "`{body}` runs in Rust on {args:?}");
    }
}

fn rec() -> Dynamic {
    let mut m = Map::new();
    m.insert("name".into(), s("ada"));
    m.insert("age".into(), Dynamic::from_int(36));
    m.insert("score".into(), Dynamic::from_float(1.5));
    Dynamic::from_map(m)
}

#[test]
fn a_callback_changes_this_and_emits_and_a_give_up_undoes_both() {
    let engine = rhai::Engine::new();
    let ast = engine
        .compile(r#"fn cb(x) { this.n += 1; this.seen.push(x); this.last = x; emit("out", [x, this.n]); if x > 5 { throw "big" } }"#)
        .unwrap();
    let native = NativeFn::translate(&ast, "cb", 0, 1).expect("translated");
    let mut state = Dynamic::from_map(Map::from_iter([("n".into(), Dynamic::from_int(0)), ("seen".into(), Dynamic::from_array(vec![]))]));
    let mut sent = Vec::new();
    assert!(native.eval_this(&[], &[&Dynamic::from_int(2)], &mut state, Some(&mut sent)).expect("undone").is_some());
    assert_eq!(format!("{state:?}"), "#{\"last\": 2, \"n\": 1, \"seen\": [2]}");
    assert_eq!(format!("{sent:?}"), "[(\"out\", [2, 1])]");
    let before = format!("{state:?}");
    assert!(native.eval_this(&[], &[&Dynamic::from_int(9)], &mut state, Some(&mut sent)).expect("undone").is_none());
    assert_eq!(format!("{state:?}"), before, "the state is as it was");
    assert_eq!(sent.len(), 1, "nothing more was emitted");
    // Outside an operator, `emit` is Rhai's to fail.
    assert!(native.eval_this(&[], &[&Dynamic::from_int(2)], &mut state, None).expect("undone").is_none());
    assert_eq!(format!("{state:?}"), before);
}

#[test]
fn skitters_words_runs_in_rust_and_agrees_with_it() {
    let env = crate::script::EngineEnv::new(None, std::sync::Arc::new(|_: &str| {}));
    let engine = crate::script::new_engine(&env);
    for body in ["words(line)", "line.words()"] {
        let ast = engine.compile(format!("fn f(line) {{ {body} }}")).unwrap();
        let native = NativeFn::translate(&ast, "f", 0, 1).expect("translated");
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
    let native = NativeFn::translate(&ast, f.fn_name(), f.curry().len(), f.curry().len() + 1).expect("translated");
    let shared = f.curry()[0].clone();
    assert_eq!(native.eval(&[shared], &[&Dynamic::from_int(2)]).unwrap().as_int().unwrap(), 7);
}

#[test]
fn a_state_given_to_own_is_changed_in_place_and_given_back_as_it_was_when_the_tree_gives_up() {
    let engine = rhai::Engine::new();
    let body = "acc.n += 1; acc.total += r.age; acc.seen.push(r.age); [acc, `${acc.n} ${acc.total}`]";
    let ast = engine.compile(format!("fn f(acc, r) {{ {body} }}")).unwrap();
    let native = NativeFn::translate(&ast, "f", 0, 2).expect("translated");
    let state: Dynamic = engine.eval("#{ n: 1, total: 40, seen: [40] }").unwrap();
    let record: Dynamic = engine.eval("#{ age: 2 }").unwrap();
    let want: Dynamic = engine.call_fn(&mut rhai::Scope::new(), &ast, "f", (state.clone(), record.clone())).unwrap();
    let got = native.eval_owning(&[], state.clone(), &[&record], false).expect("undone").expect("computed");
    assert!(matches!(got, Computed::One(_)), "one value when not asked for two");
    assert_eq!(format!("{:?}", got.into_dynamic()), format!("{want:?}"));
    // Asked for them, the two of the `[state, emitted]` it ends with, apart.
    let Computed::Two([acc, emitted]) = native.eval_owning(&[], state.clone(), &[&record], true).expect("undone").expect("computed") else {
        panic!("a body that ends in `[acc, ...]` gives two values")
    };
    assert_eq!(format!("{:?}", Dynamic::from_array(vec![acc, emitted])), format!("{want:?}"));
    // `acc.total += r.age` overflows after `n` changed and before the push:
    // Rhai decides, on the state as it was.
    let record: Dynamic = engine.eval("#{ age: 9223372036854775807 }").unwrap();
    let given_back = native.eval_owning(&[], state.clone(), &[&record], true).expect("undone").expect_err("gives up");
    assert_eq!(format!("{given_back:?}"), format!("{state:?}"));
    // A give-up after the push (the record has no `age` to show): the push is undone too.
    let body = "acc.n += 1; acc.seen.push(r.x); acc.total = r.age; acc";
    let ast = engine.compile(format!("fn f(acc, r) {{ {body} }}")).unwrap();
    let native = NativeFn::translate(&ast, "f", 0, 2).expect("translated");
    let record: Dynamic = engine.eval("#{ x: 1 }").unwrap();
    let given_back = native.eval_owning(&[], state.clone(), &[&record], false).expect("undone").expect_err("gives up");
    assert_eq!(format!("{given_back:?}"), format!("{state:?}"));
}

#[test]
fn a_split_kept_in_a_loop_finds_the_pieces_of_each_turns_text() {
    // Each turn splits another line: a piece found in the line before
    // must not be where the search goes on from.
    let lines = Dynamic::from_array(vec![s("aaaaaaaa,1,xx"), s("b,22,y"), s("cc,3,zzzz")]);
    let (value, rhai) = both("x", r#"let n = ""; for l in x { let f = l.split(","); n += f[2] + parse_int(f[1]); } n"#, &[lines]);
    assert_eq!(rhai.unwrap().to_string(), "xx1y22zzzz3");
    assert!(value.is_some(), "the tree answered");
}

#[test]
fn a_predicate_is_decided_straight_to_a_bool_and_left_to_rhai_when_it_is_not_one() {
    let engine = rhai::Engine::new();
    let decide = |body: &str, arg: Dynamic| {
        let ast = engine.compile(format!("fn f(l) {{ {body} }}")).unwrap();
        NativeFn::translate(&ast, "f", 0, 1).expect("translated").test(&[], &[&arg])
    };
    let line = |s: &str| Dynamic::from(s.to_string());
    let either = r#"l.contains(" ERROR ") || l.contains(" WARN ")"#;
    assert_eq!(decide(either, line("10:00 WARN disk")), Some(true));
    assert_eq!(decide(either, line("10:00 INFO disk")), Some(false));
    assert_eq!(decide(r#"if l.len() > 3 { return false; } true"#, line("long line")), Some(false));
    assert_eq!(decide(r#"if l.len() > 3 { return false; } true"#, line("ok")), Some(true));
    // Not a `bool`: Rhai gives the value, and the filter its error.
    assert_eq!(decide("l.len()", line("x")), None);
    assert_eq!(decide(r#"if l.len() > 3 { return "yes"; } true"#, line("long line")), None);
    assert_eq!(decide("let n = l.len();", line("x")), None);
}
