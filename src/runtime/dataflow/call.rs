//! Calling script functions from an instance: each instance has its own
//! engine and its own AST (calls through a shared one contend on its
//! reference counts, which cost the word count a third of its throughput on
//! two cores) and calls functions by name. A [`Callee`] is a function an
//! operator calls per record: it is resolved once, on its first call, and
//! runs in Rust when its body allows it (see [`super::native`]).

use std::cell::OnceCell;
use std::collections::HashMap;

use rhai::{Dynamic, Engine, FnPtr, AST};

use super::error::FlowError;
use super::native::{Computed, NativeFn, NotUndone};
use crate::script::{new_engine, Code, EngineEnv};
use crate::workflow::Func;

pub struct Calls {
    engine: Engine,
    ast: AST,
    /// Script functions of `ast`: name to a bit set of their arities.
    scripts: HashMap<String, u64>,
    /// Whether functions may run in Rust: not under Rhai's limits on the
    /// size of values, which the tree does not check.
    native: bool,
    scope: std::cell::RefCell<rhai::Scope<'static>>,
    /// Calls run in Rust since the last look at the process's memory, and
    /// the limit: Rhai looks every so many operations, the tree every
    /// [`NATIVE_MEMORY_CHECK_EVERY`] calls (a state that grows by `push`
    /// runs in Rust and must stop at the limit all the same).
    native_calls: std::cell::Cell<u32>,
    memory: u64,
}

/// How many calls run in Rust between two looks at resident memory.
const NATIVE_MEMORY_CHECK_EVERY: u32 = 4096;

/// A function an operator calls per record, resolved on its first call.
pub struct Callee {
    pub func: Func,
    arity: usize,
    how: OnceCell<How>,
}

/// How a [`Callee`] is called.
struct How {
    /// Its translation, when its body runs in Rust.
    native: Option<Box<NativeFn>>,
    /// Whether it is a script function of the AST (else a native one).
    script: bool,
}

impl Callee {
    /// `func`, to be called with `arity` arguments besides its captured values.
    pub fn new(func: Func, arity: usize) -> Callee {
        Callee { func, arity, how: OnceCell::new() }
    }
}

impl Calls {
    pub fn new(code: &Code, env: &EngineEnv) -> Result<Calls, FlowError> {
        let mut engine = new_engine(env);
        let ast = if code.sources.is_empty() { (*code.ast).clone() } else { code.compile(&engine).map_err(FlowError::Internal)? };
        // Rhai interns the strings a script makes (interpolations, values
        // bound to variables) in a cache it trims by scanning it whole: per
        // record, that was a fifth of a running count's time.
        engine.set_max_strings_interned(0);
        let mut scripts: HashMap<String, u64> = HashMap::new();
        for f in ast.iter_functions() {
            *scripts.entry(f.name.to_string()).or_default() |= arity_bit(f.params.len());
        }
        let native = engine.max_string_size() == 0 && engine.max_array_size() == 0 && engine.max_map_size() == 0;
        let memory = crate::settings::limits::current().memory_bytes();
        Ok(Calls {
            engine,
            ast,
            scripts,
            native,
            scope: std::cell::RefCell::new(rhai::Scope::new()),
            native_calls: std::cell::Cell::new(0),
            memory,
        })
    }

    fn is_script(&self, name: &str, arity: usize) -> bool {
        self.scripts.get(name).is_some_and(|arities| arities & arity_bit(arity) != 0)
    }

    /// Calls `f` on arguments the caller keeps (for its errors): in Rust
    /// when it can, else in Rhai on copies.
    pub fn call_with<const N: usize>(&self, f: &Callee, args: [&Dynamic; N]) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        match self.native(f, &args) {
            Some(value) => self.counted(value),
            None => self.call_as(&f.func, self.how(f).script, args.map(Dynamic::clone)),
        }
    }

    /// Calls a predicate `f` (a filter's function) on `rec`: its `bool`,
    /// or the name of the type of what else it gave.
    pub fn call_test(&self, f: &Callee, rec: &Dynamic) -> Result<Result<bool, &'static str>, Box<rhai::EvalAltResult>> {
        debug_assert_eq!(f.arity, 1, "`{}` is called with the arguments it was made for", f.func.name);
        if let Some(native) = &self.how(f).native {
            if let Some(kept) = native.test(&f.func.curry, &[rec]) {
                return self.counted(Ok(kept));
            }
        }
        Ok(self.call_as(&f.func, self.how(f).script, [rec.clone()])?.as_bool())
    }

    /// Calls `f` on arguments it may consume: in Rust when it can, else in Rhai.
    pub fn call_owned<const N: usize>(&self, f: &Callee, args: [Dynamic; N]) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        match self.native(f, &args.each_ref()) {
            Some(value) => self.counted(value),
            None => self.call_as(&f.func, self.how(f).script, args),
        }
    }

    /// Calls `f` on a state it may consume and a record the caller keeps
    /// (for its errors): the record is copied only when Rhai runs `f`.
    pub fn call_on_state(&self, f: &Callee, state: Dynamic, rec: &Dynamic) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        self.state_call(f, state, rec, false).map(Computed::into_dynamic)
    }

    /// The same for a reduce function, which returns `[new_state, emitted]`:
    /// a body that ends in such a literal gives the two apart, without the
    /// array (`Computed::Two`); any other value is `Computed::One`.
    pub fn call_reduce(&self, f: &Callee, state: Dynamic, rec: &Dynamic) -> Result<Computed, Box<rhai::EvalAltResult>> {
        self.state_call(f, state, rec, true)
    }

    fn state_call(&self, f: &Callee, state: Dynamic, rec: &Dynamic, two: bool) -> Result<Computed, Box<rhai::EvalAltResult>> {
        debug_assert_eq!(f.arity, 2, "`{}` is called with the arguments it was made for", f.func.name);
        // The state is the call's to change in place.
        let state = match &self.how(f).native {
            None => state,
            Some(native) => match native.eval_owning(&f.func.curry, state, &[rec], two) {
                Ok(Ok(value)) => return self.counted(value),
                Ok(Err(state)) => state,
                Err(NotUndone) => {
                    return Err(
                        format!("internal: `{}` gave up in Rust and its changes to the state could not be undone", f.func.name).into()
                    )
                }
            },
        };
        self.call_as(&f.func, self.how(f).script, [state, rec.clone()]).map(Computed::One)
    }

    /// A value computed in Rust; every so many, the process's memory is
    /// checked against the limit, as Rhai checks it while it runs.
    fn counted<T>(&self, value: T) -> Result<T, Box<rhai::EvalAltResult>> {
        let n = self.native_calls.get() + 1;
        if n < NATIVE_MEMORY_CHECK_EVERY {
            self.native_calls.set(n);
            return Ok(value);
        }
        self.native_calls.set(0);
        match crate::settings::limits::resident() {
            Some(r) if r > self.memory => Err(crate::settings::limits::over_memory_message(self.memory).into()),
            _ => Ok(value),
        }
    }

    fn how<'f>(&self, f: &'f Callee) -> &'f How {
        f.how.get_or_init(|| {
            let arity = f.func.curry.len() + f.arity;
            let script = self.is_script(&f.func.name, arity);
            let native = (self.native && script)
                .then(|| NativeFn::translate(&self.ast, &f.func.name, f.func.curry.len(), arity))
                .flatten()
                .map(Box::new);
            How { native, script }
        })
    }

    /// `f`'s value computed in Rust, if its body allows it and the values
    /// are of the kinds the tree takes.
    fn native<const N: usize>(&self, f: &Callee, args: &[&Dynamic; N]) -> Option<Dynamic> {
        debug_assert_eq!(f.arity, N, "`{}` is called with the arguments it was made for", f.func.name);
        self.how(f).native.as_ref()?.eval(&f.func.curry, args)
    }

    /// Calls `f` by name in this instance's own AST, captured values first:
    /// not through a `FnPtr`, whose closure definition would be shared
    /// between threads (and Rhai makes no pointer to an `anon$` function
    /// from its name).
    pub fn call<const N: usize>(&self, f: &Func, args: [Dynamic; N]) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        self.call_as(f, self.is_script(&f.name, f.curry.len() + N), args)
    }

    /// Calls `f`, a script function of the AST or not (`script`).
    fn call_as<const N: usize>(&self, f: &Func, script: bool, args: [Dynamic; N]) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        let all = CallArgs { curry: &f.curry, args };
        if script {
            let options = rhai::CallFnOptions::new().eval_ast(false).rewind_scope(true);
            return self.engine.call_fn_with_options(options, &mut self.scope.borrow_mut(), &self.ast, &f.name, all);
        }
        // A native function named with Fn("name").
        FnPtr::new(f.name.as_str())?.call::<Dynamic>(&self.engine, &self.ast, all)
    }
}

impl Calls {
    /// Calls the callback `f` with `this` bound to `state`: in Rust when
    /// its body allows it (what it emits goes where `emit` would send it),
    /// else in Rhai.
    pub fn call_this<const N: usize>(
        &self,
        f: &Callee,
        state: &mut Dynamic,
        args: [Dynamic; N],
    ) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        debug_assert_eq!(f.arity, N, "`{}` is called with the arguments it was made for", f.func.name);
        if let Some(native) = &self.how(f).native {
            let done = crate::script::emit::with_collected(|emitted| native.eval_this(&f.func.curry, &args.each_ref(), state, emitted));
            match done {
                Ok(Some(value)) => return self.counted(value),
                Ok(None) => {}
                Err(NotUndone) => {
                    return Err(format!("internal: `{}` gave up in Rust and its changes to `this` could not be undone", f.func.name).into())
                }
            }
        }
        self.call_this_in_rhai(&f.func, state, args)
    }

    fn call_this_in_rhai<const N: usize>(
        &self,
        f: &Func,
        state: &mut Dynamic,
        args: [Dynamic; N],
    ) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        let arity = f.curry.len() + N;
        if !self.is_script(&f.name, arity) {
            return Err(format!("`{}` is not a function of {arity} parameters written in Rhai (a callback needs `this`)", f.name).into());
        }
        let options = rhai::CallFnOptions::new().eval_ast(false).rewind_scope(true).bind_this_ptr(state);
        self.engine.call_fn_with_options(options, &mut self.scope.borrow_mut(), &self.ast, &f.name, CallArgs { curry: &f.curry, args })
    }
}

fn arity_bit(arity: usize) -> u64 {
    1 << arity.min(63)
}

/// A call's arguments, captured values first, handed to Rhai without
/// gathering them in a vector first (a call per record).
struct CallArgs<'a, const N: usize> {
    curry: &'a [Dynamic],
    args: [Dynamic; N],
}

impl<const N: usize> rhai::FuncArgs for CallArgs<'_, N> {
    fn parse<A: Extend<Dynamic>>(self, args: &mut A) {
        args.extend(self.curry.iter().cloned());
        args.extend(self.args);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rhai::{Dynamic, Engine, Scope};

    /// The routes a call per record can take, timed (ns per call). Not a
    /// check: `cargo test --release --lib call::tests::routes -- --ignored
    /// --nocapture` prints them (issue 30's note has the figures).
    #[test]
    #[ignore]
    fn routes() {
        const N: usize = 200_000;
        let mut engine = Engine::new();
        engine.set_max_strings_interned(0);
        let ast = engine
            .compile(
                r#"
                fn f(p) { p[0] }
                fn batch(xs) { let out = []; for p in xs { out.push(f(p)); } out }
                fn batch_map(xs) { xs.map(f) }
                "#,
            )
            .unwrap();
        let rec = Dynamic::from_array(vec![Dynamic::from("w"), Dynamic::from_int(3)]);
        let records: Vec<Dynamic> = (0..N).map(|_| rec.clone()).collect();
        let time = |what: &str, f: &mut dyn FnMut()| {
            let start = Instant::now();
            f();
            eprintln!("{what}: {:.0} ns per record", start.elapsed().as_nanos() as f64 / N as f64);
        };
        let mut scope = Scope::new();
        let native = super::NativeFn::translate(&ast, "f", 0, 1).unwrap();
        time("the tree (the function run in Rust)", &mut || {
            for r in &records {
                let _ = std::hint::black_box(native.eval(&[], &[r]));
            }
        });
        time("call_fn_with_options per record (today's route)", &mut || {
            for r in &records {
                let options = rhai::CallFnOptions::new().eval_ast(false).rewind_scope(true);
                let _: Dynamic = engine.call_fn_with_options(options, &mut scope, &ast, "f", (r.clone(),)).unwrap();
            }
        });
        time("FnPtr::call per record", &mut || {
            let f = rhai::FnPtr::new("f").unwrap();
            for r in &records {
                let _: Dynamic = f.call(&engine, &ast, (r.clone(),)).unwrap();
            }
        });
        for batch in [64, 1024] {
            time(&format!("one call per batch of {batch}, a loop in Rhai calling f"), &mut || {
                for chunk in records.chunks(batch) {
                    let options = rhai::CallFnOptions::new().eval_ast(false).rewind_scope(true);
                    let _: Dynamic =
                        engine.call_fn_with_options(options, &mut scope, &ast, "batch", (Dynamic::from_array(chunk.to_vec()),)).unwrap();
                }
            });
            time(&format!("one call per batch of {batch}, Rhai's array map(f)"), &mut || {
                for chunk in records.chunks(batch) {
                    let options = rhai::CallFnOptions::new().eval_ast(false).rewind_scope(true);
                    let _: Dynamic = engine
                        .call_fn_with_options(options, &mut scope, &ast, "batch_map", (Dynamic::from_array(chunk.to_vec()),))
                        .unwrap();
                }
            });
        }
    }
}
