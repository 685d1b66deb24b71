//! `timer(t)`: how an operator's callback asks to be called back (its
//! `on_timer`) once event time reaches `t`, for the record's key (or the
//! instance). Collected on the instance's thread, as `emit` is.

use std::cell::RefCell;

use rhai::{Dynamic, EvalAltResult, Position};

thread_local! {
    /// The times the running callback asked for, while an instance collects.
    static ASKED: RefCell<Option<Vec<f64>>> = const { RefCell::new(None) };
}

/// Runs `f` (a callback) and adds the times it asked for to `out`.
pub fn collect<R>(out: &mut Vec<f64>, f: impl FnOnce() -> R) -> R {
    ASKED.with(|a| *a.borrow_mut() = Some(std::mem::take(out)));
    let result = f();
    *out = ASKED.with(|a| a.borrow_mut().take()).unwrap_or_default();
    result
}

fn timer(t: Dynamic) -> Result<(), Box<EvalAltResult>> {
    let fail = |msg: String| -> Result<(), Box<EvalAltResult>> { Err(EvalAltResult::ErrorRuntime(msg.into(), Position::NONE).into()) };
    let Some(t) = crate::workflow::time::seconds(&t) else {
        return fail(format!("timer(t): t must be a time in seconds since the epoch (a number), got {t}"));
    };
    ASKED.with(|a| match a.borrow_mut().as_mut() {
        Some(asked) => {
            asked.push(t);
            Ok(())
        }
        None => fail("timer(t) asks for an operator's on_timer callback; here no operator is running".into()),
    })
}

/// Registers `timer` on an engine, with its documentation.
pub fn register(engine: &mut rhai::Engine) {
    rhai::FuncRegistration::new("timer")
        .with_comments([
            "/// In an operator's callback: calls its `on_timer(|t| ...)` once event time\n/// (the watermark) reaches `t` (seconds since the epoch), with `this` the\n/// state of the record's key (or the instance's). Several calls for the\n/// same key and time make one timer; timers fire in the order of their\n/// times, and every one left fires when the input ends.\n///\n/// ```rhai\n/// let op = operator(\"remind\").strategy(keyed(|r| r.user))\n///     .on(\"in\", |r| timer(r.ts + 60))\n///     .on_timer(|t| emit(\"out\", t));\n/// ```",
        ])
        .with_params_info(["t: Dynamic", "()"])
        .register_into_engine(engine, timer);
}
