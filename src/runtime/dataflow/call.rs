//! Calling script functions from an instance: each instance has its own
//! engine and its own AST (calls through a shared one contend on its
//! reference counts, which cost the word count a third of its throughput on
//! two cores) and calls functions by name.

use std::collections::HashMap;

use rhai::{Dynamic, Engine, FnPtr, AST};

use super::error::FlowError;
use crate::script::{new_engine, Code, EngineEnv};
use crate::workflow::Func;

pub struct Calls {
    engine: Engine,
    ast: AST,
    /// Script functions of `ast`: name to a bit set of their arities.
    scripts: HashMap<String, u64>,
    scope: std::cell::RefCell<rhai::Scope<'static>>,
}

impl Calls {
    pub fn new(code: &Code, env: &EngineEnv) -> Result<Calls, FlowError> {
        let engine = new_engine(env);
        let ast = if code.sources.is_empty() { (*code.ast).clone() } else { code.compile(&engine).map_err(FlowError::Internal)? };
        let mut scripts: HashMap<String, u64> = HashMap::new();
        for f in ast.iter_functions() {
            *scripts.entry(f.name.to_string()).or_default() |= arity_bit(f.params.len());
        }
        Ok(Calls { engine, ast, scripts, scope: std::cell::RefCell::new(rhai::Scope::new()) })
    }

    /// Calls `f` by name in this instance's own AST, captured values first:
    /// not through a `FnPtr`, whose closure definition would be shared
    /// between threads (and Rhai makes no pointer to an `anon$` function
    /// from its name).
    pub fn call<const N: usize>(&self, f: &Func, args: [Dynamic; N]) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        let arity = f.curry.len() + N;
        let all = CallArgs { curry: &f.curry, args };
        if self.scripts.get(f.name.as_str()).is_some_and(|arities| arities & arity_bit(arity) != 0) {
            let options = rhai::CallFnOptions::new().eval_ast(false).rewind_scope(true);
            return self.engine.call_fn_with_options(options, &mut self.scope.borrow_mut(), &self.ast, &f.name, all);
        }
        // A native function named with Fn("name").
        FnPtr::new(f.name.as_str())?.call::<Dynamic>(&self.engine, &self.ast, all)
    }
}

impl Calls {
    /// Calls the script function (or closure) `f` with `this` bound to
    /// `state`: an operator's callback.
    pub fn call_this<const N: usize>(
        &self,
        f: &Func,
        state: &mut Dynamic,
        args: [Dynamic; N],
    ) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        let arity = f.curry.len() + N;
        if self.scripts.get(f.name.as_str()).is_none_or(|arities| arities & arity_bit(arity) == 0) {
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
