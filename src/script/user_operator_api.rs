//! Operators written in Rhai, as Skitter's `defoperator`: named ports, a
//! state per instance or per key, a callback per input port, an optional
//! end callback, and a strategy. A user operator is an `Operator` like the
//! built-in ones: chained with `apply`, or a `node` whose ports all link.

use rhai::plugin::*;

use super::workflow_api::{func, RhaiResult};
use crate::workflow::operator::{Place, Restrategized, Strategy, UserOp};
use crate::workflow::{Func, Operator, SourceSpec};

fn fail<T>(msg: impl Into<String>) -> RhaiResult<T> {
    Err(EvalAltResult::ErrorRuntime(msg.into().into(), Position::NONE).into())
}

/// A distribution strategy, as scripts hold it.
#[derive(Clone, Debug)]
pub struct StrategyValue {
    pub kind: Strategy,
    pub key: Option<Func>,
    pub place: Option<Place>,
    pub route: Option<Func>,
}

impl StrategyValue {
    fn of(kind: Strategy) -> StrategyValue {
        StrategyValue { kind, key: None, place: None, route: None }
    }
}

fn user(op: Operator, what: &str) -> RhaiResult<Box<UserOp>> {
    match op {
        Operator::User(u) => Ok(u),
        other => fail(format!("{what} is for operators made with operator(\"name\"), not {}", other.kind())),
    }
}

fn names(what: &str, op: &str, list: rhai::Array) -> RhaiResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for v in list {
        let Some(name) = v.clone().into_immutable_string().ok().map(|s| s.to_string()) else {
            return fail(format!("operator `{op}`: {what} are names (strings), got {}", v.type_name()));
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return fail(format!("operator `{op}`: `{name}` is not a valid port name: use letters, digits, `_` and `-`"));
        }
        if out.contains(&name) {
            return fail(format!("operator `{op}`: the port `{name}` is named twice"));
        }
        out.push(name);
    }
    Ok(out)
}

/// `op` with strategy `s`, where that makes sense.
pub fn with_strategy(op: Operator, s: StrategyValue) -> Result<Operator, String> {
    let keyed_builtin = matches!(op, Operator::KeyedReduce { .. } | Operator::Count { .. });
    match op {
        Operator::User(_) if s.kind == Strategy::Source => {
            Err("source() is the strategy of sources (stream_source, read_lines, tcp_source)".into())
        }
        Operator::User(mut u) => {
            u.strategy = s.kind;
            u.key = s.key;
            u.place = s.place;
            u.route = s.route;
            Ok(Operator::User(u))
        }
        Operator::Source(_) if s.kind == Strategy::Source && s.place.is_none() => Ok(op),
        // A Kafka source spreads the topic's partitions over its instances.
        Operator::Source(SourceSpec::Kafka(_)) if s.kind == Strategy::Keyed || s.route.is_some() => {
            Err("kafka_source spreads the topic's partitions over its instances: give it immutable_local(), tagged(tag) or a strategy with `place`, not keys or routes".into())
        }
        Operator::Source(SourceSpec::Kafka(_)) if s.kind != Strategy::Single => {
            Ok(Operator::With(Box::new(Restrategized { op, strategy: s.kind, key: None, place: s.place, route: None })))
        }
        Operator::Source(_) => Err("a source's strategy is fixed: it runs once, on the first worker (only kafka_source takes one)".into()),
        _ if s.kind == Strategy::Source => Err("source() is the strategy of sources (stream_source, read_lines, tcp_source)".into()),
        Operator::With(w) => with_strategy(w.op, s),
        op if keyed_builtin && (s.kind != Strategy::Keyed && s.place.is_none() || s.route.is_some()) => {
            Err(format!("{} is keyed: give it keyed(|r| key), tagged(tag) or a strategy with `place` (it routes by its key)", op.kind()))
        }
        op => {
            let strategy = if keyed_builtin { Strategy::Keyed } else { s.kind };
            Ok(Operator::With(Box::new(Restrategized { op, strategy, key: s.key, place: s.place, route: s.route })))
        }
    }
}

/// Checks a user operator before it goes into a workflow: every input has
/// its callback.
pub fn check(op: &Operator) -> RhaiResult<()> {
    op.missing_callback().map_or(Ok(()), fail)
}

#[export_module]
pub mod api {
    use super::*;

    pub type Strategy = super::StrategyValue;

    /// Starts an operator of your own named `name`: one input `in`, one output
    /// `out`, state `()`, strategy immutable-local. Give it ports, a state,
    /// callbacks and a strategy with the methods below; use it with
    /// `wf.apply(op)` or `wf.node("name", op)`.
    ///
    /// ```rhai
    /// let running_total = operator("running_total")
    ///     .init(|| 0)
    ///     .on("in", |x| { this += x; emit("out", this); });
    /// let wf = workflow().stream_source([1, 2, 3]).apply(running_total).collect();
    /// ```
    #[rhai_fn(name = "operator", return_raw)]
    pub fn operator(name: &str) -> RhaiResult<crate::workflow::Operator> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return fail(format!("`{name}` is not a valid operator name: use letters, digits, `_` and `-`"));
        }
        Ok(Operator::User(Box::new(UserOp::new(name))))
    }

    /// The operator's input ports, by name (default `["in"]`). Each needs a
    /// callback (`on`).
    ///
    /// ```rhai
    /// let join = operator("join").inputs(["left", "right"]);
    /// ```
    #[rhai_fn(name = "inputs", return_raw)]
    pub fn inputs(op: crate::workflow::Operator, ports: rhai::Array) -> RhaiResult<crate::workflow::Operator> {
        let mut u = user(op, "inputs")?;
        let ports = names("inputs", &u.name, ports)?;
        if ports.is_empty() {
            return fail(format!("operator `{}`: give it at least one input", u.name));
        }
        // Callbacks given already stay with their ports.
        let old: Vec<(String, Option<Func>)> = u.inputs.drain(..).zip(u.on.drain(..)).collect();
        u.on = ports.iter().map(|p| old.iter().find(|(q, _)| q == p).and_then(|(_, f)| f.clone())).collect();
        u.inputs = ports;
        Ok(Operator::User(u))
    }

    /// The operator's output ports, by name (default `["out"]`); `emit`
    /// sends on them.
    ///
    /// ```rhai
    /// let split = operator("split").outputs(["small", "large"]);
    /// ```
    #[rhai_fn(name = "outputs", return_raw)]
    pub fn outputs(op: crate::workflow::Operator, ports: rhai::Array) -> RhaiResult<crate::workflow::Operator> {
        let mut u = user(op, "outputs")?;
        u.outputs = names("outputs", &u.name, ports)?;
        Ok(Operator::User(u))
    }

    /// The function that makes the initial state: one per instance, or one
    /// per key under a keyed strategy. Without it the state is `()`.
    ///
    /// ```rhai
    /// let avg = operator("avg").init(|| #{ sum: 0, n: 0 });
    /// ```
    #[rhai_fn(name = "init", return_raw)]
    pub fn init(op: crate::workflow::Operator, f: Dynamic) -> RhaiResult<crate::workflow::Operator> {
        let mut u = user(op, "init")?;
        u.init = Some(func("init", "state function", f)?);
        Ok(Operator::User(u))
    }

    /// The callback of input port `port`: called with each record that
    /// arrives there, with `this` bound to the state (change it in place).
    /// `emit(port, value)` in it sends on.
    ///
    /// ```rhai
    /// let counter = operator("counter").init(|| 0).on("in", |r| { this += 1; emit("out", [r, this]); });
    /// ```
    #[rhai_fn(name = "on", return_raw)]
    pub fn on(op: crate::workflow::Operator, port: &str, f: Dynamic) -> RhaiResult<crate::workflow::Operator> {
        let mut u = user(op, "on")?;
        let Some(i) = u.inputs.iter().position(|p| p == port) else {
            return fail(format!("operator `{}` has no input `{port}` (inputs: {})", u.name, u.inputs.join(", ")));
        };
        u.on[i] = Some(func("on", "callback", f)?);
        Ok(Operator::User(u))
    }

    /// A callback run once every input has ended, with `this` bound to the
    /// state (once per key under a keyed strategy): to emit totals.
    ///
    /// ```rhai
    /// let total = operator("total").init(|| 0).on("in", |x| { this += x; }).on_end(|| emit("out", this));
    /// ```
    #[rhai_fn(name = "on_end", return_raw)]
    pub fn on_end(op: crate::workflow::Operator, f: Dynamic) -> RhaiResult<crate::workflow::Operator> {
        let mut u = user(op, "on_end")?;
        u.on_end = Some(func("on_end", "callback", f)?);
        Ok(Operator::User(u))
    }

    /// The callback of the timers its callbacks set with `timer(t)`: called
    /// with `t` once event time (the watermark) reaches it, `this` bound
    /// to the state of the key that set it (or the instance's).
    ///
    /// ```rhai
    /// let idle = operator("idle").strategy(keyed(|r| r.user)).init(|| 0)
    ///     .on("in", |r| { this = r.ts; timer(r.ts + 300); })
    ///     .on_timer(|t| if this + 300 <= t { emit("out", t) });
    /// ```
    #[rhai_fn(name = "on_timer", return_raw)]
    pub fn on_timer(op: crate::workflow::Operator, f: Dynamic) -> RhaiResult<crate::workflow::Operator> {
        let mut u = user(op, "on_timer")?;
        u.on_timer = Some(func("on_timer", "callback", f)?);
        Ok(Operator::User(u))
    }

    /// How the operator's instances are distributed: `immutable_local()`
    /// (the default: an instance per slot of every worker, records stay
    /// where they are), `keyed(|r| key)` (state per key, records routed by
    /// key) or `single()` (one instance in the cluster).
    ///
    /// ```rhai
    /// let per_sensor = operator("last").strategy(keyed(|r| r.sensor));
    /// ```
    #[rhai_fn(name = "strategy", return_raw)]
    pub fn strategy(op: crate::workflow::Operator, s: Strategy) -> RhaiResult<crate::workflow::Operator> {
        let u = user(op, "strategy")?;
        let name = u.name.clone();
        super::with_strategy(Operator::User(u), s).or_else(|e| fail(format!("operator `{name}`: {e}")))
    }

    /// The immutable-local strategy: an instance per slot of every worker;
    /// a record stays on the slot that made it.
    ///
    /// ```rhai
    /// let s = immutable_local();
    /// ```
    pub fn immutable_local() -> Strategy {
        StrategyValue::of(crate::workflow::Strategy::ImmutableLocal)
    }

    /// The keyed strategy: `key(record)` picks the record's key; all records
    /// of a key go to one instance, and the state is per key.
    ///
    /// ```rhai
    /// let s = keyed(|r| r.sensor);
    /// ```
    #[rhai_fn(name = "keyed", return_raw)]
    pub fn keyed(key: Dynamic) -> RhaiResult<Strategy> {
        Ok(StrategyValue { key: Some(func("keyed", "key function", key)?), ..StrategyValue::of(crate::workflow::Strategy::Keyed) })
    }

    /// The source strategy: one instance, on the first worker. It is what
    /// sources have; other operators refuse it.
    ///
    /// ```rhai
    /// let s = source();
    /// ```
    pub fn source() -> Strategy {
        StrategyValue::of(crate::workflow::Strategy::Source)
    }

    /// The single strategy: one instance in the whole cluster, which sees
    /// every record (on the first worker).
    ///
    /// ```rhai
    /// let s = single();
    /// ```
    pub fn single() -> Strategy {
        StrategyValue::of(crate::workflow::Strategy::Single)
    }

    /// A strategy of your own: `place(workers)` says where instances go
    /// (an array of `#{ worker: name, instances: n }`; `workers` is
    /// `workers()`: `#{ name, addr, tags, slots }` each), `route(record,
    /// port, instances)` which instance gets a record (a number from 0).
    /// Give either or both; without `route`, batches go round-robin, and
    /// with `key` (a function) records are routed by key and state is per
    /// key. Placed on the master at deploy; nothing placed fails the deploy.
    ///
    /// ```rhai
    /// let on_gpus = strategy(#{
    ///     place: |workers| workers.filter(|w| "gpu" in w.tags).map(|w| #{ worker: w.name, instances: w.slots }),
    ///     route: |record, port, instances| record % instances,
    /// });
    /// ```
    #[rhai_fn(name = "strategy", return_raw)]
    pub fn custom(spec: rhai::Map) -> RhaiResult<Strategy> {
        if let Some(other) = spec.keys().find(|k| !["place", "route", "key"].contains(&k.as_str())) {
            return fail(format!("strategy: unknown part `{other}` (parts: place, route, key)"));
        }
        let part = |name: &str| spec.get(name).cloned().map(|f| func("strategy", name, f)).transpose();
        let (place, route, key) = (part("place")?, part("route")?, part("key")?);
        if place.is_none() && route.is_none() {
            return fail("strategy: give `place`, `route` or both");
        }
        let kind = if key.is_some() { crate::workflow::Strategy::Keyed } else { crate::workflow::Strategy::ImmutableLocal };
        if key.is_some() && route.is_some() {
            return fail("strategy: a keyed strategy routes by its key; give `key` or `route`, not both");
        }
        Ok(StrategyValue { kind, key, place: place.map(Place::Func), route })
    }

    /// A stable hash of a value (a non-negative integer): the same on every
    /// node and in every run, as keyed strategies use it. For routes:
    /// `|record, port, instances| hash(record) % instances`.
    ///
    /// ```rhai
    /// let same = hash("word") == hash("word");
    /// ```
    #[rhai_fn(name = "hash")]
    pub fn stable_hash(value: Dynamic) -> i64 {
        (crate::workflow::key::Key::new(value).hash >> 1) as i64
    }

    /// Places an operator on the workers tagged `tag` (`skitter worker -t
    /// tag`), an instance per slot, and nowhere else; deploying fails,
    /// naming the operator and the tag, when no worker has it. In local
    /// mode the one node stands for every tag.
    ///
    /// ```rhai
    /// let gpu_only = tagged("gpu");
    /// ```
    pub fn tagged(tag: &str) -> Strategy {
        StrategyValue { place: Some(Place::Tagged(tag.to_string())), ..StrategyValue::of(crate::workflow::Strategy::ImmutableLocal) }
    }

    /// Appends an operator (yours, or a built-in one) and links the
    /// previous step to its first input; chaining goes on from its first
    /// output.
    ///
    /// ```rhai
    /// let double = operator("double").on("in", |x| emit("out", x * 2));
    /// let wf = workflow().stream_source([1, 2]).apply(double).collect();
    /// ```
    #[rhai_fn(name = "apply", return_raw)]
    pub fn apply(wf: crate::workflow::Workflow, op: crate::workflow::Operator) -> RhaiResult<crate::workflow::Workflow> {
        check(&op)?;
        wf.chain(crate::workflow::Body::Op(op)).or_else(|e| fail(e.to_string()))
    }

    /// Gives the step added last a strategy: any operator takes one where it
    /// makes sense (a source's is fixed; a keyed operator keeps routing by
    /// a key, so it takes `keyed`, `tagged` or a strategy with `place`).
    ///
    /// ```rhai
    /// let wf = workflow().stream_source(1..=10).map(|x| x * 2).with_strategy(single()).collect();
    /// ```
    #[rhai_fn(name = "with_strategy", return_raw)]
    pub fn with_strategy(wf: crate::workflow::Workflow, s: Strategy) -> RhaiResult<crate::workflow::Workflow> {
        wf.map_last_op(|op| super::with_strategy(op, s)).or_else(|e| fail(e.to_string()))
    }

    #[rhai_fn(name = "to_string", pure)]
    pub fn strategy_to_string(s: &mut Strategy) -> String {
        s.kind.name().to_string()
    }

    #[rhai_fn(name = "to_debug", pure)]
    pub fn strategy_to_debug(s: &mut Strategy) -> String {
        s.kind.name().to_string()
    }
}
