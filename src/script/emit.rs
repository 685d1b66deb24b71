//! `emit(port, value)`: how an operator's callback sends records on. The
//! instance running the callback collects what it emits on its own thread
//! (every instance is a thread), so emitting costs a push, not a lock.

use std::cell::RefCell;

use rhai::{Dynamic, EvalAltResult, ImmutableString, Position};

thread_local! {
    /// What the running callback emitted, while an instance collects.
    static EMITTED: RefCell<Option<Vec<(ImmutableString, Dynamic)>>> = const { RefCell::new(None) };
}

/// Runs `f` (a callback) and returns what it emitted, in order.
pub fn collect<R>(out: &mut Vec<(ImmutableString, Dynamic)>, f: impl FnOnce() -> R) -> R {
    EMITTED.with(|e| *e.borrow_mut() = Some(std::mem::take(out)));
    let result = f();
    *out = EMITTED.with(|e| e.borrow_mut().take()).unwrap_or_default();
    result
}

/// Runs `f` with the records the running callback emitted so far, to
/// add to (`None` outside a callback, where `emit` fails).
pub fn with_collected<R>(f: impl FnOnce(Option<&mut Vec<(ImmutableString, Dynamic)>>) -> R) -> R {
    EMITTED.with(|e| f(e.borrow_mut().as_mut()))
}

/// The native `emit`: pushes to the collecting instance, or fails outside one.
pub fn emit(port: ImmutableString, value: Dynamic) -> Result<(), Box<EvalAltResult>> {
    EMITTED.with(|e| match e.borrow_mut().as_mut() {
        Some(out) => {
            out.push((port, value));
            Ok(())
        }
        None => Err(EvalAltResult::ErrorRuntime(
            "emit(port, value) sends a record from an operator's callback; here no operator is running".into(),
            Position::NONE,
        )
        .into()),
    })
}

/// Registers `emit` on an engine, with its documentation.
pub fn register(engine: &mut rhai::Engine) {
    rhai::FuncRegistration::new("emit")
        .with_comments([
            "/// Sends `value` on the output port `port` of the operator whose callback\n/// is running (see `operator`). An unknown port fails the workflow, naming\n/// the operator, the port and the record.\n///\n/// ```rhai\n/// let op = operator(\"double\").on(\"in\", |x| emit(\"out\", x * 2));\n/// ```",
        ])
        .with_params_info(["port: &str", "value: Dynamic", "()"])
        .register_into_engine(engine, emit);
}
