//! Event time and windows as Rhai functions: `event_time`, `window`,
//! `window_count`, and the window specs `tumbling`, `sliding`, `session`.

use rhai::plugin::*;

use super::workflow_api::{func, RhaiResult};
use crate::workflow::operator::{Fold, WindowOp};
use crate::workflow::time::{EventTime, WindowSpec};
use crate::workflow::{Body, Operator, Workflow};

fn fail<T>(msg: impl Into<String>) -> RhaiResult<T> {
    Err(EvalAltResult::ErrorRuntime(msg.into().into(), Position::NONE).into())
}

fn chain(wf: Workflow, op: Operator) -> RhaiResult<Workflow> {
    wf.chain(Body::Op(op)).or_else(|e| fail(e.to_string()))
}

/// A number of seconds an option gives, at least 0.
fn secs(op: &str, name: &str, v: &Dynamic) -> RhaiResult<f64> {
    let s = crate::workflow::time::seconds(v);
    match s {
        Some(s) if s >= 0.0 => Ok(s),
        _ => fail(format!("{op}: `{name}` must be a number of seconds (0 or more), got {v}")),
    }
}

/// Checks that `options` has only `known` keys.
fn known(op: &str, options: &rhai::Map, known: &[&str]) -> RhaiResult<()> {
    match options.keys().find(|k| !known.contains(&k.as_str())) {
        Some(other) => fail(format!("{op}: unknown option `{other}` (options: {})", known.join(", "))),
        None => Ok(()),
    }
}

fn spec(r: Result<WindowSpec, crate::workflow::time::WindowSpecError>) -> RhaiResult<WindowSpec> {
    r.or_else(|e| fail(e.to_string()))
}

/// `event_time(ts_fn, options)` as an operator.
fn event_time(ts_fn: Dynamic, options: &rhai::Map) -> RhaiResult<Operator> {
    known("event_time", options, &["out_of_order", "idle"])?;
    let out_of_order = options.get("out_of_order").map(|v| secs("event_time", "out_of_order", v)).transpose()?.unwrap_or(0.0);
    let idle = options.get("idle").map(|v| secs("event_time", "idle", v)).transpose()?;
    Ok(Operator::EventTime(Box::new(EventTime { ts: func("event_time", "time function", ts_fn)?, out_of_order, idle })))
}

/// `window(spec, key_fn, init_fn, fold_fn, options)` as an operator.
fn window(spec: WindowSpec, key: Dynamic, init: Dynamic, fold: Dynamic, options: &rhai::Map) -> RhaiResult<Operator> {
    let fold = Fold { init: func("window", "init function", init)?, fold: func("window", "fold function", fold)?, merge: None };
    window_op("window", spec, key, Some(fold), options)
}

fn window_op(op: &str, spec: WindowSpec, key: Dynamic, fold: Option<Fold>, options: &rhai::Map) -> RhaiResult<Operator> {
    known(op, options, &["allowed_lateness", "merge"])?;
    let lateness = options.get("allowed_lateness").map(|v| secs(op, "allowed_lateness", v)).transpose()?.unwrap_or(0.0);
    let fold = match (fold, options.get("merge")) {
        (Some(f), Some(m)) => Some(Fold { merge: Some(func(op, "merge function", m.clone())?), ..f }),
        (None, Some(_)) => return fail(format!("{op}: counts merge by adding; `merge` is for window(...)")),
        (fold, None) => fold,
    };
    if spec.is_session() && fold.as_ref().is_some_and(|f| f.merge.is_none()) {
        return fail(format!("{op}: a session window joins sessions a record bridges: give it a merge function, #{{ merge: |a, b| ... }}"));
    }
    Ok(Operator::Window(Box::new(WindowOp { spec, key: Some(func(op, "key function", key)?), fold, lateness, ts: None })))
}

#[export_module]
pub mod api {
    use super::*;

    pub type WindowSpec = crate::workflow::time::WindowSpec;
    pub type Operator = crate::workflow::Operator;

    /// Back-to-back windows of `size` seconds, aligned to the epoch.
    ///
    /// ```rhai
    /// let per_minute = tumbling(60);
    /// ```
    #[rhai_fn(name = "tumbling", return_raw)]
    pub fn tumbling(size: Dynamic) -> RhaiResult<WindowSpec> {
        spec(WindowSpec::tumbling(crate::workflow::time::seconds(&size).unwrap_or(f64::NAN)))
    }

    /// Windows of `size` seconds, one starting every `slide` seconds: a
    /// record is in `size / slide` of them.
    ///
    /// ```rhai
    /// let last_hour_every_5_minutes = sliding(3600, 300);
    /// ```
    #[rhai_fn(name = "sliding", return_raw)]
    pub fn sliding(size: Dynamic, slide: Dynamic) -> RhaiResult<WindowSpec> {
        let s = |v: &Dynamic| crate::workflow::time::seconds(v).unwrap_or(f64::NAN);
        spec(WindowSpec::sliding(s(&size), s(&slide)))
    }

    /// A window per burst of a key's records: it closes after `gap`
    /// seconds without one.
    ///
    /// ```rhai
    /// let visits = session(30 * 60);
    /// ```
    #[rhai_fn(name = "session", return_raw)]
    pub fn session(gap: Dynamic) -> RhaiResult<WindowSpec> {
        spec(WindowSpec::session(crate::workflow::time::seconds(&gap).unwrap_or(f64::NAN)))
    }

    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn spec_to_string(spec: &mut WindowSpec) -> String {
        spec.to_string()
    }

    /// Gives records their event time, `ts_fn(record)` in seconds since
    /// the epoch (a float or an integer), and sends watermarks on: the
    /// largest time seen minus `out_of_order` seconds (default 0). Windows
    /// downstream close when the watermark passes their end. With `idle:
    /// seconds`, an instance that has had no record for that long holds
    /// no window back until its next one.
    /// Strategy: immutable-local.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source([#{ ts: 1, user: "a" }])
    ///     .event_time(|r| r.ts, #{ out_of_order: 2.0 })
    ///     .window_count(tumbling(60), |r| r.user)
    ///     .collect();
    /// ```
    #[rhai_fn(name = "event_time", return_raw)]
    pub fn chain_event_time(wf: Workflow, ts_fn: Dynamic, options: rhai::Map) -> RhaiResult<Workflow> {
        chain(wf, super::event_time(ts_fn, &options)?)
    }

    /// `event_time(ts_fn, #{})`: records in order of their time.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source([#{ ts: 1 }, #{ ts: 2 }]).event_time(|r| r.ts).collect();
    /// ```
    #[rhai_fn(name = "event_time", return_raw)]
    pub fn chain_event_time_in_order(wf: Workflow, ts_fn: Dynamic) -> RhaiResult<Workflow> {
        chain_event_time(wf, ts_fn, rhai::Map::new())
    }

    /// Folds each key's records (`key_fn(record)`) into the windows of
    /// `spec` their time falls in — `init_fn()`, then `fold_fn(value,
    /// record)` — and emits `#{ key, start, end, value }` once the
    /// watermark passes the window's end (at the latest when the input
    /// ends). The time is the `event_time` upstream's, else the time the
    /// record arrived. Options: `allowed_lateness` (seconds a window takes
    /// late records after its end, each one emitting it again), `merge`
    /// (`|a, b| ...`, joins two sessions: needed for `session`). Records
    /// later than that leave on port `late`. Strategy: keyed.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source([#{ ts: 1, user: "a", n: 2 }, #{ ts: 3, user: "a", n: 5 }])
    ///     .event_time(|r| r.ts)
    ///     .window(tumbling(10), |r| r.user, || 0, |sum, r| sum + r.n)
    ///     .collect();
    /// ```
    #[rhai_fn(name = "window", return_raw)]
    pub fn chain_window(wf: Workflow, spec: WindowSpec, key_fn: Dynamic, init_fn: Dynamic, fold_fn: Dynamic) -> RhaiResult<Workflow> {
        chain_window_with(wf, spec, key_fn, init_fn, fold_fn, rhai::Map::new())
    }

    /// `window(spec, key_fn, init_fn, fold_fn)` with options.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source([#{ ts: 1, user: "a" }, #{ ts: 2, user: "a" }])
    ///     .event_time(|r| r.ts)
    ///     .window(session(60), |r| r.user, || [], |seen, r| seen + [r.ts], #{ merge: |a, b| a + b, allowed_lateness: 5 })
    ///     .collect();
    /// ```
    #[rhai_fn(name = "window", return_raw)]
    pub fn chain_window_with(
        wf: Workflow,
        spec: WindowSpec,
        key_fn: Dynamic,
        init_fn: Dynamic,
        fold_fn: Dynamic,
        options: rhai::Map,
    ) -> RhaiResult<Workflow> {
        chain(wf, super::window(spec, key_fn, init_fn, fold_fn, &options)?)
    }

    /// Counts each key's records per window of `spec`, natively, and emits
    /// `#{ key, start, end, value }` as `window` does.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source([#{ ts: 1, user: "a" }])
    ///     .event_time(|r| r.ts)
    ///     .window_count(sliding(10, 5), |r| r.user)
    ///     .collect();
    /// ```
    #[rhai_fn(name = "window_count", return_raw)]
    pub fn chain_window_count(wf: Workflow, spec: WindowSpec, key_fn: Dynamic) -> RhaiResult<Workflow> {
        chain(wf, window_op("window_count", spec, key_fn, None, &rhai::Map::new())?)
    }

    /// `window_count(spec, key_fn)` with options (`allowed_lateness`).
    ///
    /// ```rhai
    /// let wf = workflow().stream_source([#{ ts: 1, user: "a" }])
    ///     .event_time(|r| r.ts)
    ///     .window_count(tumbling(10), |r| r.user, #{ allowed_lateness: 30 })
    ///     .collect();
    /// ```
    #[rhai_fn(name = "window_count", return_raw)]
    pub fn chain_window_count_with(wf: Workflow, spec: WindowSpec, key_fn: Dynamic, options: rhai::Map) -> RhaiResult<Workflow> {
        chain(wf, window_op("window_count", spec, key_fn, None, &options)?)
    }

    /// `event_time` as an operator, for `node`.
    ///
    /// ```rhai
    /// let wf = workflow().node("time", event_time(|e| e.ts, #{ out_of_order: 1.0 }));
    /// ```
    #[rhai_fn(name = "event_time", return_raw)]
    pub fn event_time_op(ts_fn: Dynamic, options: rhai::Map) -> RhaiResult<Operator> {
        super::event_time(ts_fn, &options)
    }

    /// `event_time(ts_fn, #{})` as an operator, for `node`.
    ///
    /// ```rhai
    /// let wf = workflow().node("time", event_time(|e| e.ts));
    /// ```
    #[rhai_fn(name = "event_time", return_raw)]
    pub fn event_time_op_in_order(ts_fn: Dynamic) -> RhaiResult<Operator> {
        event_time_op(ts_fn, rhai::Map::new())
    }

    /// `window` as an operator, for `node` (its ports: `in`; `out`, `late`).
    ///
    /// ```rhai
    /// let wf = workflow().node("w", window(tumbling(60), |e| e.user, || 0, |n, e| n + 1));
    /// ```
    #[rhai_fn(name = "window", return_raw)]
    pub fn window_node(spec: WindowSpec, key_fn: Dynamic, init_fn: Dynamic, fold_fn: Dynamic) -> RhaiResult<Operator> {
        window_node_with(spec, key_fn, init_fn, fold_fn, rhai::Map::new())
    }

    /// `window` with options, as an operator.
    ///
    /// ```rhai
    /// let wf = workflow().node("w", window(session(30), |e| e.user, || 0, |n, e| n + 1, #{ merge: |a, b| a + b }));
    /// ```
    #[rhai_fn(name = "window", return_raw)]
    pub fn window_node_with(
        spec: WindowSpec,
        key_fn: Dynamic,
        init_fn: Dynamic,
        fold_fn: Dynamic,
        options: rhai::Map,
    ) -> RhaiResult<Operator> {
        super::window(spec, key_fn, init_fn, fold_fn, &options)
    }

    /// `window_count` as an operator, for `node` (its ports: `in`; `out`, `late`).
    ///
    /// ```rhai
    /// let wf = workflow().node("per_minute", window_count(tumbling(60), |e| e.user));
    /// ```
    #[rhai_fn(name = "window_count", return_raw)]
    pub fn window_count_node(spec: WindowSpec, key_fn: Dynamic) -> RhaiResult<Operator> {
        window_op("window_count", spec, key_fn, None, &rhai::Map::new())
    }

    /// `window_count` with options, as an operator.
    ///
    /// ```rhai
    /// let wf = workflow().node("w", window_count(tumbling(60), |e| e.user, #{ allowed_lateness: 10 }));
    /// ```
    #[rhai_fn(name = "window_count", return_raw)]
    pub fn window_count_node_with(spec: WindowSpec, key_fn: Dynamic, options: rhai::Map) -> RhaiResult<Operator> {
        window_op("window_count", spec, key_fn, None, &options)
    }
}
