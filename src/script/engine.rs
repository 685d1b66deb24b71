//! Engine set-up shared by every engine in the process: the fixed hashing
//! seed, the workflow package, and the natives scripts can always call.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use rhai::{Engine, EvalAltResult, Module, Position, Shared};

type SharedModule = Shared<Module>;

use super::{operator_api, user_operator_api, workflow_api};

/// Rhai names an anonymous function `anon$<hash>` and hashes function
/// signatures with a per-process random seed unless told otherwise. Every
/// node must use the same seed, or a closure shipped from one node would name
/// a different function on another.
pub const HASHING_SEED: [u64; 4] = [0x736b_6974, 0x7465_7221, 0x5268_6169, 0x0000_0001];

/// Sets the fixed hashing seed; must run before any engine is built.
pub fn init_hashing() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if let Err(existing) = rhai::config::hashing::set_hashing_seed(Some(HASHING_SEED)) {
            assert_eq!(existing, Some(HASHING_SEED), "Rhai hashing seed was set elsewhere");
        }
    });
}

/// Where text printed by scripts and `inspect` goes: stdout, or the shell's
/// printer that keeps the line being typed intact.
pub type Output = Arc<dyn Fn(&str) + Send + Sync>;

/// Where a deployed workflow's `inspect` output goes when a remote console
/// deployed it: that console, while it is attached. It returns false once
/// the console has gone; the node's own output takes the text then.
pub type Audience = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Writes each piece of text to stdout as it comes.
pub fn stdout_output() -> Output {
    Arc::new(|text: &str| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    })
}

/// What an engine needs from the process it runs in.
#[derive(Clone)]
pub struct EngineEnv {
    /// The app's `priv/`, for `priv_path`.
    pub priv_dir: Option<PathBuf>,
    /// Set to make the running evaluation stop with "interrupted".
    pub abort: Arc<AtomicBool>,
    pub output: Output,
    /// For a remote console's session: where the workflows it deploys print.
    pub audience: Option<Audience>,
    /// For operator code: what `runtime_info()` tells it (the node it runs on).
    pub operator_info: Option<rhai::Map>,
}

impl EngineEnv {
    pub fn new(priv_dir: Option<PathBuf>, output: Output) -> Self {
        EngineEnv { priv_dir, abort: Arc::new(AtomicBool::new(false)), output, audience: None, operator_info: None }
    }
}

/// How deeply expressions may nest, at the top level and inside functions:
/// a workflow of a few dozen chained steps must parse in every build.
const MAX_EXPR_DEPTH: usize = 256;
const MAX_FN_EXPR_DEPTH: usize = 128;

/// The message an aborted evaluation ends with.
pub const INTERRUPTED: &str = "interrupted";

/// Sleeps in small steps so that an interrupt is noticed.
fn nap(abort: &AtomicBool, seconds: rhai::FLOAT) -> Result<(), Box<EvalAltResult>> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(EvalAltResult::ErrorRuntime(format!("sleep: {seconds} is not a number of seconds").into(), Position::NONE).into());
    }
    let end = std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds);
    loop {
        if abort.load(Ordering::Relaxed) {
            return Err(EvalAltResult::ErrorTerminated(INTERRUPTED.into(), Position::NONE).into());
        }
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(std::time::Duration::from_millis(10)));
    }
}

fn standard_package() -> SharedModule {
    use rhai::packages::Package;
    static PACKAGE: OnceLock<SharedModule> = OnceLock::new();
    PACKAGE.get_or_init(|| rhai::packages::StandardPackage::new().as_shared_module()).clone()
}

fn workflow_package() -> SharedModule {
    static PACKAGE: OnceLock<SharedModule> = OnceLock::new();
    PACKAGE
        .get_or_init(|| {
            let mut module = rhai::exported_module!(workflow_api::api);
            module.combine_flatten(rhai::exported_module!(operator_api::api));
            module.combine_flatten(rhai::exported_module!(user_operator_api::api));
            module.combine_flatten(rhai::exported_module!(super::broker_api::api));
            module.combine_flatten(rhai::exported_module!(super::time_api::api));
            module.into()
        })
        .clone()
}

/// An engine with the workflow API, `priv_path`, printing to `env.output`
/// and stopping when `env.abort` is set.
pub fn new_engine(env: &EngineEnv) -> Engine {
    init_hashing();
    // `Engine::new`, without building Rhai's standard library again: that
    // takes 0.3 ms, and every operator instance has an engine of its own.
    let mut engine = Engine::new_raw();
    engine.set_module_resolver(rhai::module_resolvers::FileModuleResolver::new());
    engine.set_max_strings_interned(256);
    engine.register_global_module(standard_package());
    // Chained builders nest deeply; Rhai's debug-build defaults are too low.
    engine.set_max_expr_depths(MAX_EXPR_DEPTH, MAX_FN_EXPR_DEPTH);
    engine.register_global_module(workflow_package());
    engine.register_type_with_name::<crate::workflow::Workflow>("Workflow");
    engine.register_type_with_name::<crate::workflow::Operator>("Operator");
    engine.register_type_with_name::<user_operator_api::StrategyValue>("Strategy");
    engine.register_type_with_name::<crate::workflow::time::WindowSpec>("WindowSpec");

    let priv_dir = env.priv_dir.clone();
    rhai::FuncRegistration::new("priv_path")
        .with_comments([
            "/// The path of a data file in the app's `priv/` directory.\n///\n/// ```rhai\n/// let p = priv_path(\"words.txt\");\n/// ```",
        ])
        .with_params_info(["name: &str", "String"])
        .register_into_engine(&mut engine, move |name: &str| -> Result<String, Box<EvalAltResult>> {
            match &priv_dir {
                Some(dir) => Ok(dir.join(name).display().to_string()),
                None => Err(EvalAltResult::ErrorRuntime(
                    "priv_path: there is no app here (run inside an app directory or pass --app DIR)".into(),
                    Position::NONE,
                )
                .into()),
            }
        });

    let abort = env.abort.clone();
    rhai::FuncRegistration::new("sleep")
        .with_comments(["/// Waits `seconds` (a float or an integer); Ctrl-C cuts it short.\n///\n/// ```rhai\n/// sleep(0.01);\n/// ```"])
        .with_params_info(["seconds: f64", "()"])
        .register_into_engine(&mut engine, move |seconds: rhai::FLOAT| -> Result<(), Box<EvalAltResult>> { nap(&abort, seconds) });
    let abort = env.abort.clone();
    rhai::FuncRegistration::new("sleep")
        .with_comments(["/// Waits `seconds` (an integer); Ctrl-C cuts it short.\n///\n/// ```rhai\n/// sleep(0);\n/// ```"])
        .with_params_info(["seconds: i64", "()"])
        .register_into_engine(&mut engine, move |seconds: rhai::INT| -> Result<(), Box<EvalAltResult>> {
            nap(&abort, seconds as rhai::FLOAT)
        });

    super::emit::register(&mut engine);
    super::timer::register(&mut engine);
    if let Some(info) = env.operator_info.clone() {
        rhai::FuncRegistration::new("runtime_info")
            .with_comments(["/// In an operator's code: the node it runs on (`node`, `mode`)."])
            .register_into_engine(&mut engine, move || info.clone());
    }

    let print_out = env.output.clone();
    engine.on_print(move |text| print_out(text));
    let debug_out = env.output.clone();
    engine.on_debug(move |text, source, pos| {
        let text = match (source, pos.line()) {
            (Some(src), Some(line)) => format!("[{src}:{line}] {text}"),
            (None, Some(line)) => format!("[{line}] {text}"),
            _ => text.to_string(),
        };
        debug_out(&text)
    });
    let limits = crate::settings::limits::current();
    limits.apply(&mut engine);
    let abort = env.abort.clone();
    let memory = limits.memory_bytes();
    engine.on_progress(move |ops| {
        if abort.load(Ordering::Relaxed) {
            return Some(INTERRUPTED.into());
        }
        if ops % crate::settings::limits::MEMORY_CHECK_EVERY == 0 && crate::settings::limits::resident().is_some_and(|r| r > memory) {
            return Some(crate::settings::limits::over_memory_message(memory).into());
        }
        None
    });
    engine
}
