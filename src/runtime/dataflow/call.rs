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
use super::native::NativeFn;
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
}

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
        Ok(Calls { engine, ast, scripts, native, scope: std::cell::RefCell::new(rhai::Scope::new()) })
    }

    fn is_script(&self, name: &str, arity: usize) -> bool {
        self.scripts.get(name).is_some_and(|arities| arities & arity_bit(arity) != 0)
    }

    /// Calls `f` on arguments the caller keeps (for its errors): in Rust
    /// when it can, else in Rhai on copies.
    pub fn call_with<const N: usize>(&self, f: &Callee, args: [&Dynamic; N]) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        match self.native(f, &args) {
            Some(value) => Ok(value),
            None => self.call_as(&f.func, self.how(f).script, args.map(Dynamic::clone)),
        }
    }

    /// Calls `f` on arguments it may consume: in Rust when it can, else in Rhai.
    pub fn call_owned<const N: usize>(&self, f: &Callee, args: [Dynamic; N]) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        match self.native(f, &args.each_ref()) {
            Some(value) => Ok(value),
            None => self.call_as(&f.func, self.how(f).script, args),
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
            if let Some(value) = done {
                return Ok(value);
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
