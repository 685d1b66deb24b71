//! A session: an engine, a scope and the functions defined so far. The app's
//! scripts, the shell and `--deploy` expressions all evaluate in one. Each
//! entry's functions (closures included) join the session's library before
//! the entry runs, so a workflow deployed by that entry can call them.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use rhai::{Dynamic, Engine, EvalAltResult, Scope, AST};

use super::app::App;
use super::diagnostic;
use super::engine::{new_engine, EngineEnv, INTERRUPTED};
use super::host::{Code, Host, Source};
use super::runtime_api;
use super::shell_api::{self, ShellState};

/// An error from loading or evaluating a script, ready to show.
#[derive(Debug, Clone)]
pub struct ScriptError {
    pub kind: ErrorKind,
    /// One line: where and what.
    pub message: String,
    /// The source line with a caret, when the position is known.
    pub excerpt: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Syntax,
    Runtime,
    Interrupted,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(ex) = &self.excerpt {
            write!(f, "\n{ex}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScriptError {}

pub struct Session {
    engine: Engine,
    scope: Scope<'static>,
    /// Every function defined so far and its sources; shared with `deploy`,
    /// which ships it.
    code: Arc<RwLock<Code>>,
    /// Entries evaluated successfully: the prompt's counter and `v(n)`'s index.
    entries: usize,
    /// Entries compiled, to name their sources.
    compiled: usize,
    /// The interactive helpers' state, when there are helpers.
    shell: Option<ShellState>,
    env: EngineEnv,
    /// Sources of the entries evaluated so far, for `recompile` and shipping.
    app: Option<App>,
}

impl Session {
    /// A session with the runtime API of `host` and, if given, the app's
    /// scripts loaded; with `shell`, the interactive helpers too.
    pub fn new(env: EngineEnv, host: Option<Arc<dyn Host>>, app: Option<App>, shell: Option<ShellState>) -> Result<Session, ScriptError> {
        let mut engine = new_engine(&env);
        let code = Arc::new(RwLock::new(Code::default()));
        if let Some(host) = host {
            runtime_api::register(&mut engine, host, code.clone(), env.audience.clone(), env.output.clone());
        }
        if let Some(state) = &shell {
            shell_api::register(&mut engine, state, code.clone(), app.clone(), env.output.clone());
        }
        let mut session = Session { engine, scope: Scope::new(), code, entries: 0, compiled: 0, env, app, shell };
        session.load_app()?;
        Ok(session)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// For registering functions that only some sessions have.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    pub fn scope(&self) -> &Scope<'static> {
        &self.scope
    }

    /// The functions defined so far.
    pub fn lib(&self) -> Arc<AST> {
        self.code().ast
    }

    /// The functions defined so far, with their sources.
    pub fn code(&self) -> Code {
        self.code.read().expect("code lock").clone()
    }

    fn define(&self, ast: &AST, source: Source) {
        define(&self.code, ast, source)
    }

    /// The number of entries evaluated successfully so far.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Names of the variables in scope.
    pub fn variables(&self) -> Vec<String> {
        self.scope.iter().map(|(name, _, _)| name.to_string()).collect()
    }

    /// Names of the script functions defined so far, with their parameters.
    pub fn script_functions(&self) -> Vec<(String, Vec<String>)> {
        self.lib()
            .iter_functions()
            .filter(|f| !f.name.starts_with("anon$"))
            .map(|f| (f.name.to_string(), f.params.iter().map(|p| p.to_string()).collect()))
            .collect()
    }

    pub fn exit_requested(&self) -> bool {
        self.shell.as_ref().is_some_and(ShellState::exit_requested)
    }

    /// The flag that interrupts the running evaluation (Ctrl-C).
    pub fn interrupt_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.env.abort.clone()
    }

    /// Compiles every `lib/*.rhai` of the app, then runs their top-level
    /// statements. Any syntax error stops the load with the file's position.
    fn load_app(&mut self) -> Result<(), ScriptError> {
        let Some(app) = self.app.clone() else { return Ok(()) };
        let files = app.lib_files().map_err(|e| ScriptError { kind: ErrorKind::Runtime, message: e.to_string(), excerpt: None })?;
        let mut merged = AST::empty();
        for path in files {
            let name = app.display_path(&path);
            let (ast, text) = compile_file(&self.engine, &path, &name)?;
            self.define(&ast, Source { name, text });
            merged = merged.merge(&ast);
        }
        self.run(&merged, None).map(|_| ())
    }

    /// Evaluates one entry in the session's scope: its functions are kept
    /// (also when it fails) and so are its variables.
    pub fn eval(&mut self, input: &str) -> Result<Dynamic, ScriptError> {
        let ast = self.engine.compile_with_scope(&self.scope, input).map_err(|e| ScriptError {
            kind: ErrorKind::Syntax,
            message: format!("syntax error: {} ({})", e.err_type(), position_text(e.position())),
            excerpt: diagnostic::excerpt(input, e.position()),
        })?;
        self.compiled += 1;
        self.define(&ast, Source { name: format!("entry {}", self.compiled), text: input.to_string() });
        let value = self.run(&ast, Some(input))?;
        // Like iex, only entries that succeed are counted and kept for `v(n)`.
        self.entries += 1;
        if let Some(state) = &self.shell {
            state.results.lock().expect("results").push(value.clone());
        }
        Ok(value)
    }

    /// Runs `ast`, compiled from `input` (an entry, or the script `name`).
    fn run(&mut self, ast: &AST, input: Option<&str>) -> Result<Dynamic, ScriptError> {
        self.run_named(ast, input, None)
    }

    fn run_named(&mut self, ast: &AST, input: Option<&str>, name: Option<&str>) -> Result<Dynamic, ScriptError> {
        self.env.abort.store(false, Ordering::Relaxed);
        let full = self.lib().merge(ast);
        let before = self.scope.len();
        let result = self.engine.eval_ast_with_scope::<Dynamic>(&mut self.scope, &full);
        self.env.abort.store(false, Ordering::Relaxed);
        if result.as_ref().is_err_and(|e| eval_error(e, None).message.contains(crate::settings::limits::OVER_MEMORY)) {
            // What the entry built is let go, and its memory given back.
            self.scope.rewind(before);
            crate::settings::limits::give_back_memory();
        }
        result.map_err(|e| eval_error_in(&e, input, name))
    }

    /// Evaluates a script file's text (like `.skitter.rhai`) in the session,
    /// naming it `name` in errors; it is not counted as an entry.
    pub fn eval_named(&mut self, text: &str, name: &str) -> Result<Dynamic, ScriptError> {
        let mut ast = self.engine.compile_with_scope(&self.scope, text).map_err(|e| syntax_error(name, text, &e))?;
        ast.set_source(name);
        self.define(&ast, Source { name: name.to_string(), text: text.to_string() });
        self.run_named(&ast, Some(text), Some(name))
    }

    /// Evaluates a `--deploy` expression (not counted as an entry) and
    /// deploys the workflow it returns on `host`; a reference is taken as is.
    /// With `fresh`, it starts over rather than from its last checkpoint.
    pub fn deploy_expr(&mut self, host: &dyn Host, expr: &str, fresh: bool) -> Result<super::WorkflowRef, String> {
        let value = self.eval_named(expr, "--deploy").map_err(|e| format!("--deploy `{expr}`: {e}"))?;
        if value.is::<super::WorkflowRef>() {
            return Ok(value.cast::<super::WorkflowRef>());
        }
        let Some(wf) = value.clone().try_cast::<crate::workflow::Workflow>() else {
            return Err(format!("--deploy `{expr}` returned {} ({value}), not a workflow", value.type_name()));
        };
        let options = super::DeployOptions { expression: Some(expr.to_string()), fresh, ..Default::default() };
        let r = host.deploy(&wf, self.code(), self.env.audience.clone(), &options).map_err(|e| format!("--deploy `{expr}`: {e}"))?;
        host.remember_expression(r, expr);
        Ok(r)
    }

    pub fn app(&self) -> Option<&App> {
        self.app.as_ref()
    }
}

/// Adds the functions of `ast`, compiled from `source`, to the library.
pub fn define(code: &RwLock<Code>, ast: &AST, source: Source) {
    let functions = ast.clone_functions_only();
    if functions.iter_functions().next().is_none() {
        return;
    }
    let mut code = code.write().expect("code lock");
    let mut sources = (*code.sources).clone();
    sources.push(source);
    *code = Code { ast: Arc::new(code.ast.merge(&functions)), sources: Arc::new(sources) };
}

fn position_text(pos: rhai::Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("line {l}, column {c}"),
        (Some(l), None) => format!("line {l}"),
        _ => "unknown position".into(),
    }
}

/// A syntax error in the script `name`: position, message, line and caret.
fn syntax_error(name: &str, text: &str, e: &rhai::ParseError) -> ScriptError {
    let rendered = diagnostic::parse_error(name, text, e);
    let (message, excerpt) = match rendered.split_once('\n') {
        Some((m, x)) => (m.to_string(), Some(x.to_string())),
        None => (rendered, None),
    };
    ScriptError { kind: ErrorKind::Syntax, message, excerpt }
}

/// Compiles one script file, naming it in errors.
pub fn compile_file(engine: &Engine, path: &std::path::Path, name: &str) -> Result<(AST, String), ScriptError> {
    let source = std::fs::read_to_string(path).map_err(|e| ScriptError {
        kind: ErrorKind::Runtime,
        message: format!("cannot read {}: {e}", path.display()),
        excerpt: None,
    })?;
    let mut ast = engine.compile(&source).map_err(|e| syntax_error(name, &source, &e))?;
    ast.set_source(name);
    Ok((ast, source))
}

/// An evaluation error: the innermost message, and the entry's line with a
/// caret when the error happened in the entry itself.
pub fn eval_error(err: &EvalAltResult, input: Option<&str>) -> ScriptError {
    eval_error_in(err, input, None)
}

/// [`eval_error`] for the script `name`: an error at its top level names it.
fn eval_error_in(err: &EvalAltResult, input: Option<&str>, name: Option<&str>) -> ScriptError {
    let message = diagnostic::root_message(err);
    if let EvalAltResult::ErrorTerminated(token, _) = innermost_terminated(err) {
        if let Some(text) = token.read_lock::<rhai::ImmutableString>().filter(|t| t.as_str() != INTERRUPTED) {
            return ScriptError { kind: ErrorKind::Runtime, message: text.to_string(), excerpt: None };
        }
    }
    if message == INTERRUPTED || matches!(err, EvalAltResult::ErrorTerminated(..)) {
        return ScriptError { kind: ErrorKind::Interrupted, message: INTERRUPTED.into(), excerpt: None };
    }
    let message = match crate::settings::limits::hint(&message) {
        Some(hint) => format!("{message}: {hint}"),
        None => message,
    };
    let (pos, source) = diagnostic::innermost(err);
    let (message, excerpt) = match source {
        Some(src) => (format!("{message} ({src}, {})", position_text(pos)), None),
        None => {
            let at = match name {
                Some(name) => format!("{name}, {}", position_text(pos)),
                None => position_text(pos),
            };
            (format!("{message} ({at})"), input.and_then(|text| diagnostic::excerpt(text, pos)))
        }
    };
    ScriptError { kind: ErrorKind::Runtime, message, excerpt }
}

/// The termination inside the errors of nested calls, if that is what ended the evaluation.
fn innermost_terminated(err: &EvalAltResult) -> &EvalAltResult {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) | EvalAltResult::ErrorInModule(_, inner, _) => innermost_terminated(inner),
        other => other,
    }
}

/// The default place for data paths: the app's `priv/`.
pub fn priv_dir(app: Option<&App>) -> Option<PathBuf> {
    app.map(App::priv_dir)
}
