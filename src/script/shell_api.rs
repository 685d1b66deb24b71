//! Helpers for interactive sessions, local or remote: `h`, `i`, `v`,
//! `recompile`, `clear`, `exit`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rhai::{Dynamic, Engine, EvalAltResult, FuncRegistration, NativeCallContext, Position};

use super::app::App;
use super::docs::{function_docs, FnDoc};
use super::engine::Output;
use super::host::{Code, Source};
use super::session::compile_file;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

fn err<T>(msg: impl Into<String>) -> RhaiResult<T> {
    Err(EvalAltResult::ErrorRuntime(msg.into().into(), Position::NONE).into())
}

/// What the helpers share with the session that runs them.
#[derive(Clone)]
pub struct ShellState {
    /// The result of every entry, in order (`()` for entries without one).
    pub results: Arc<Mutex<Vec<Dynamic>>>,
    /// Set by `exit()`: the shell leaves after this entry.
    pub exit: Arc<AtomicBool>,
}

impl Default for ShellState {
    fn default() -> Self {
        ShellState { results: Arc::new(Mutex::new(Vec::new())), exit: Arc::new(AtomicBool::new(false)) }
    }
}

impl ShellState {
    pub fn exit_requested(&self) -> bool {
        self.exit.load(Ordering::Relaxed)
    }
}

fn reg(name: &str, params: &[&str], doc: &str) -> FuncRegistration {
    FuncRegistration::new(name).with_params_info(params).with_comments([doc])
}

/// Renders the help for `name`, or an overview when `name` is `None`.
pub fn help(engine: &Engine, name: Option<&str>) -> Result<String, String> {
    let docs = function_docs(engine);
    match name {
        None => Ok(overview(&docs)),
        Some(name) => {
            let found: Vec<&FnDoc> = docs.iter().filter(|d| d.name == name).collect();
            if found.is_empty() {
                let close: Vec<&str> = docs.iter().map(|d| d.name.as_str()).filter(|n| n.contains(name) || name.contains(*n)).collect();
                let mut msg = format!("no documentation for `{name}`");
                if !close.is_empty() {
                    let mut close = close;
                    close.dedup();
                    msg.push_str(&format!(" (did you mean {}?)", close.join(", ")));
                }
                return Err(msg);
            }
            let mut out = String::new();
            let mut seen_docs: Vec<&str> = Vec::new();
            for d in &found {
                out.push_str(&format!("  {}\n", d.signature));
            }
            for d in found {
                if seen_docs.contains(&d.doc.as_str()) {
                    continue;
                }
                seen_docs.push(&d.doc);
                out.push('\n');
                out.push_str(&d.doc);
                out.push('\n');
            }
            Ok(out)
        }
    }
}

fn overview(docs: &[FnDoc]) -> String {
    let mut out = String::from("skitter shell: Rhai, with workflows. h(\"name\") shows a function's documentation.\n");
    let groups: [(&str, &[&str]); 4] = [
        (
            "Building workflows",
            &[
                "workflow",
                "stream_source",
                "read_lines",
                "tcp_source",
                "map",
                "flat_map",
                "filter",
                "keyed_reduce",
                "count",
                "inspect",
                "write_lines",
                "collect",
                "then",
                "node",
                "link",
                "from",
                "name",
                "validate",
                "to_dot",
                "node_names",
            ],
        ),
        ("Running them", &["deploy", "status", "stop", "abort", "wait", "results", "stats", "top", "workflows", "workers", "runtime_info"]),
        ("In the shell", &["h", "i", "v", "recompile", "clear", "exit"]),
        ("Data", &["priv_path", "words"]),
    ];
    for (title, names) in groups {
        out.push_str(&format!("\n{title}:\n"));
        for name in names {
            if let Some(d) = docs.iter().find(|d| d.name == *name) {
                out.push_str(&format!("  {name:<14} {}\n", d.summary()));
            }
        }
    }
    out.push_str("\nMulti-line input continues until it is complete; `#break` on its own line abandons it.\nCtrl-C interrupts a running entry, Ctrl-D or exit() leaves.\n");
    out
}

/// A description of a value, like iex's `i/1`.
pub fn describe(value: &Dynamic) -> String {
    let mut out = format!("Term\n  {value:?}\nData type\n  {}\n", value.type_name());
    if let Some(a) = value.read_lock::<rhai::Array>() {
        out.push_str(&format!("Length\n  {}\n", a.len()));
    } else if let Some(m) = value.read_lock::<rhai::Map>() {
        let keys: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
        out.push_str(&format!("Keys\n  {}\n", keys.join(", ")));
    } else if let Some(s) = value.read_lock::<rhai::ImmutableString>() {
        out.push_str(&format!("Length\n  {} characters, {} bytes\n", s.chars().count(), s.len()));
    } else if let Some(f) = value.read_lock::<rhai::FnPtr>() {
        let kind = if f.fn_name().starts_with("anon$") { "closure" } else { "named function" };
        out.push_str(&format!("Function\n  {kind} {} with {} captured value(s)\n", f.fn_name(), f.curry().len()));
    } else if let Some(wf) = value.read_lock::<crate::workflow::Workflow>() {
        let flat = wf.flatten();
        out.push_str(&format!("Nodes\n  {}\n", flat.nodes.iter().map(|n| format!("{} ({})", n.name, n.op)).collect::<Vec<_>>().join(", ")));
        out.push_str(&format!(
            "Valid\n  {}\n",
            match wf.validate() {
                Ok(()) => "yes".to_string(),
                Err(e) => format!("no: {e}"),
            }
        ));
    }
    out
}

/// Registers the helpers on a session's engine.
pub fn register(engine: &mut Engine, state: &ShellState, code: Arc<RwLock<Code>>, app: Option<App>, output: Output) {
    let out = output.clone();
    reg("h", &["()"], "/// Prints an overview of the functions scripts can use.\n///\n/// ```rhai\n/// h()\n/// ```").register_into_engine(
        engine,
        move |ctx: NativeCallContext| -> RhaiResult<()> {
            out(&help(ctx.engine(), None).or_else(err)?);
            Ok(())
        },
    );

    let out = output.clone();
    reg("h", &["name: &str", "()"], "/// Prints the documentation of a function: its signatures, what it does\n/// and an example.\n///\n/// ```rhai\n/// h(\"deploy\")\n/// ```")
        .register_into_engine(engine, move |ctx: NativeCallContext, name: &str| -> RhaiResult<()> {
            out(&help(ctx.engine(), Some(name)).or_else(err)?);
            Ok(())
        });

    let out = output.clone();
    reg(
        "i",
        &["value: Dynamic", "()"],
        "/// Prints what a value is: its type and details (length, keys, nodes, ...).\n///\n/// ```rhai\n/// i([1, 2, 3])\n/// ```",
    )
    .register_into_engine(engine, move |value: Dynamic| {
        out(&describe(&value));
    });

    let results = state.results.clone();
    reg("v", &["Dynamic"], "/// The result of the previous entry.\n///\n/// ```rhai\n/// 6 * 7\n///\n/// v() / 2   // 21\n/// ```")
        .register_into_engine(engine, move || -> Dynamic { results.lock().expect("results").last().cloned().unwrap_or(Dynamic::UNIT) });

    let results = state.results.clone();
    reg("v", &["n: i64", "Dynamic"], "/// The result of entry `n` (the number in its prompt); a negative `n`\n/// counts back from the latest (`v(-1)` is the previous entry's).\n///\n/// ```rhai\n/// 6 * 7\n///\n/// v(1) + v(-1)   // 84\n/// ```")
        .register_into_engine(engine, move |n: i64| -> RhaiResult<Dynamic> {
            let results = results.lock().expect("results");
            let len = results.len() as i64;
            let index = if n > 0 { n - 1 } else { len + n };
            if n == 0 || index < 0 || index >= len {
                return err(format!("v({n}): there is no such entry (entries so far: {len})"));
            }
            Ok(results[index as usize].clone())
        });

    reg("recompile", &["i64"], "/// Reloads the app's lib/ scripts: their functions replace the old ones.\n/// On a syntax error nothing changes and the error is reported. Returns\n/// the number of files loaded.\n///\n/// ```rhai\n/// recompile()\n/// ```")
        .register_into_engine(engine, move |ctx: NativeCallContext| -> RhaiResult<i64> {
            let Some(app) = &app else { return err("recompile: there is no app here") };
            let files = app.lib_files().or_else(|e| err(e.to_string()))?;
            let mut compiled = Vec::new();
            for path in &files {
                let name = app.display_path(path);
                let (ast, text) = compile_file(ctx.engine(), path, &name).or_else(|e| err(e.to_string()))?;
                compiled.push((ast, Source { name, text }));
            }
            for (ast, source) in compiled {
                super::session::define(&code, &ast, source);
            }
            Ok(files.len() as i64)
        });

    let out = output;
    reg("clear", &["()"], "/// Clears the screen.\n///\n/// ```rhai\n/// clear()\n/// ```")
        .register_into_engine(engine, move || out("\x1b[2J\x1b[H"));

    let exit = state.exit.clone();
    reg("exit", &["()"], "/// Leaves the shell after this entry (running workflows are stopped\n/// gracefully first). In a remote console it only detaches.\n///\n/// ```rhai\n/// exit()\n/// ```")
        .register_into_engine(engine, move || exit.store(true, Ordering::Relaxed));
}
