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
    /// Entries evaluated so far, to name them in messages.
    entries: usize,
    env: EngineEnv,
    /// Sources of the entries evaluated so far, for `recompile` and shipping.
    app: Option<App>,
}

impl Session {
    /// A session with the runtime API of `host` and, if given, the app's
    /// scripts loaded.
    pub fn new(env: EngineEnv, host: Option<Arc<dyn Host>>, app: Option<App>) -> Result<Session, ScriptError> {
        let mut engine = new_engine(&env);
        let code = Arc::new(RwLock::new(Code::default()));
        if let Some(host) = host {
            runtime_api::register(&mut engine, host, code.clone());
        }
        let mut session = Session { engine, scope: Scope::new(), code, entries: 0, env, app };
        session.load_app()?;
        Ok(session)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
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

    /// Adds the functions of `ast`, compiled from `source`, to the library.
    fn define(&self, ast: &AST, source: Source) {
        let functions = ast.clone_functions_only();
        if functions.iter_functions().next().is_none() {
            return;
        }
        let mut code = self.code.write().expect("code lock");
        let mut sources = (*code.sources).clone();
        sources.push(source);
        *code = Code { ast: Arc::new(code.ast.merge(&functions)), sources: Arc::new(sources) };
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
        self.entries += 1;
        self.define(&ast, Source { name: format!("entry {}", self.entries), text: input.to_string() });
        self.run(&ast, Some(input))
    }

    fn run(&mut self, ast: &AST, input: Option<&str>) -> Result<Dynamic, ScriptError> {
        self.env.abort.store(false, Ordering::Relaxed);
        let full = self.lib().merge(ast);
        let result = self.engine.eval_ast_with_scope::<Dynamic>(&mut self.scope, &full);
        self.env.abort.store(false, Ordering::Relaxed);
        result.map_err(|e| eval_error(&e, input))
    }

    /// Re-reads the app's `lib/` scripts; on error the session keeps its old
    /// functions.
    pub fn recompile(&mut self) -> Result<usize, ScriptError> {
        let Some(app) = self.app.clone() else {
            return Err(ScriptError { kind: ErrorKind::Runtime, message: "recompile: there is no app here".into(), excerpt: None });
        };
        let files = app.lib_files().map_err(|e| ScriptError { kind: ErrorKind::Runtime, message: e.to_string(), excerpt: None })?;
        let mut compiled = Vec::new();
        for path in &files {
            let name = app.display_path(path);
            let (ast, text) = compile_file(&self.engine, path, &name)?;
            compiled.push((ast, Source { name, text }));
        }
        for (ast, source) in compiled {
            self.define(&ast, source);
        }
        Ok(files.len())
    }

    pub fn app(&self) -> Option<&App> {
        self.app.as_ref()
    }
}

fn position_text(pos: rhai::Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("line {l}, column {c}"),
        (Some(l), None) => format!("line {l}"),
        _ => "unknown position".into(),
    }
}

/// Compiles one script file, naming it in errors.
pub fn compile_file(engine: &Engine, path: &std::path::Path, name: &str) -> Result<(AST, String), ScriptError> {
    let source = std::fs::read_to_string(path).map_err(|e| ScriptError {
        kind: ErrorKind::Runtime,
        message: format!("cannot read {}: {e}", path.display()),
        excerpt: None,
    })?;
    let mut ast = engine.compile(&source).map_err(|e| {
        let rendered = diagnostic::parse_error(name, &source, &e);
        let (message, excerpt) = match rendered.split_once('\n') {
            Some((m, x)) => (m.to_string(), Some(x.to_string())),
            None => (rendered, None),
        };
        ScriptError { kind: ErrorKind::Syntax, message, excerpt }
    })?;
    ast.set_source(name);
    Ok((ast, source))
}

/// An evaluation error: the innermost message, and the entry's line with a
/// caret when the error happened in the entry itself.
pub fn eval_error(err: &EvalAltResult, input: Option<&str>) -> ScriptError {
    let message = diagnostic::root_message(err);
    if message == INTERRUPTED || matches!(err, EvalAltResult::ErrorTerminated(..)) {
        return ScriptError { kind: ErrorKind::Interrupted, message: INTERRUPTED.into(), excerpt: None };
    }
    let (pos, source) = diagnostic::innermost(err);
    let (message, excerpt) = match source {
        Some(src) => (format!("{message} ({src}, {})", position_text(pos)), None),
        None => (
            format!("{message} ({})", position_text(pos)),
            input.and_then(|text| diagnostic::excerpt(text, pos)),
        ),
    };
    ScriptError { kind: ErrorKind::Runtime, message, excerpt }
}

/// The default place for data paths: the app's `priv/`.
pub fn priv_dir(app: Option<&App>) -> Option<PathBuf> {
    app.map(App::priv_dir)
}
