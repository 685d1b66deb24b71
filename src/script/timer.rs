//! `timer(t)` and `timer_after(seconds)`: how an operator's callback asks
//! to be called back (its `on_timer`) once event time reaches `t`, or once
//! the clock has moved on `seconds`, for the record's key (or the
//! instance). Collected on the instance's thread, as `emit` is.

use std::cell::RefCell;

use rhai::{Dynamic, EvalAltResult, Position};

thread_local! {
    /// The times the running callback asked for, while an instance collects.
    static ASKED: RefCell<Option<Vec<Asked>>> = const { RefCell::new(None) };
}

/// A timer a callback asked for: at time `at` (seconds since the epoch),
/// of event time or of the clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Asked {
    pub at: f64,
    pub clock: bool,
}

/// Runs `f` (a callback) and adds the timers it asked for to `out`.
pub fn collect<R>(out: &mut Vec<Asked>, f: impl FnOnce() -> R) -> R {
    ASKED.with(|a| *a.borrow_mut() = Some(std::mem::take(out)));
    let result = f();
    *out = ASKED.with(|a| a.borrow_mut().take()).unwrap_or_default();
    result
}

fn fail(msg: String) -> Result<(), Box<EvalAltResult>> {
    Err(EvalAltResult::ErrorRuntime(msg.into(), Position::NONE).into())
}

fn ask(call: &str, timer: Asked) -> Result<(), Box<EvalAltResult>> {
    ASKED.with(|a| match a.borrow_mut().as_mut() {
        Some(asked) => {
            asked.push(timer);
            Ok(())
        }
        None => fail(format!("{call} asks for an operator's on_timer callback; here no operator is running")),
    })
}

fn timer(t: Dynamic) -> Result<(), Box<EvalAltResult>> {
    match crate::workflow::time::seconds(&t) {
        Some(at) => ask("timer(t)", Asked { at, clock: false }),
        None => fail(format!("timer(t): t must be a time in seconds since the epoch (a number), got {t}")),
    }
}

fn timer_after(seconds: Dynamic) -> Result<(), Box<EvalAltResult>> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    match crate::workflow::time::seconds(&seconds) {
        Some(s) if s >= 0.0 => ask("timer_after(seconds)", Asked { at: now + s, clock: true }),
        _ => fail(format!("timer_after(seconds): seconds must be a number, 0 or more, got {seconds}")),
    }
}

/// Registers `timer` on an engine, with its documentation.
pub fn register(engine: &mut rhai::Engine) {
    rhai::FuncRegistration::new("timer")
        .with_comments([
            "/// In an operator's callback: calls its `on_timer(|t| ...)` once event time\n/// (the watermark) reaches `t` (seconds since the epoch), with `this` the\n/// state of the record's key (or the instance's). Several calls for the\n/// same key and time make one timer; timers fire in the order of their\n/// times, and every one left fires when the input ends.\n///\n/// ```rhai\n/// let op = operator(\"remind\").strategy(keyed(|r| r.user))\n///     .on(\"in\", |r| timer(r.ts + 60))\n///     .on_timer(|t| emit(\"out\", t));\n/// ```",
        ])
        .with_params_info(["t: Dynamic", "()"])
        .register_into_engine(engine, timer);
    rhai::FuncRegistration::new("timer_after")
        .with_comments([
            "/// In an operator's callback: calls its `on_timer(|t| ...)` once `seconds`\n/// have passed on the clock (processing time), with `t` the time it was\n/// due (seconds since the epoch) and `this` the state of the record's key\n/// (or the instance's). Timers on the clock do not fire at the end of\n/// the input: only while the workflow runs.\n///\n/// ```rhai\n/// let op = operator(\"flush\").init(|| [])\n///     .on(\"in\", |r| { this.push(r); if this.len() == 1 { timer_after(1.0) } })\n///     .on_timer(|t| { emit(\"out\", this); this = []; });\n/// ```",
        ])
        .with_params_info(["seconds: Dynamic", "()"])
        .register_into_engine(engine, timer_after);
}
