//! The runtime API scripts call: `deploy`, `status`, `stop`, `results`, ...
//! Each is a thin call on the node's [`Host`].

use std::sync::{Arc, RwLock};

use rhai::{Array, Dynamic, Engine, EvalAltResult, FuncRegistration, Map, NativeCallContext, Position};

use super::engine::{Audience, Output};
use super::host::{Code, DeployOptions, Host, WorkflowRef};

use crate::workflow::Workflow;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

fn err<T>(msg: impl Into<String>) -> RhaiResult<T> {
    Err(EvalAltResult::ErrorRuntime(msg.into().into(), Position::NONE).into())
}

/// A stop deadline given in seconds by a script.
fn deadline(seconds: rhai::FLOAT) -> RhaiResult<std::time::Duration> {
    if !(seconds.is_finite() && seconds >= 0.0) {
        return err(format!("stop: the deadline must be a number of seconds, 0 or more, got {seconds}"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

fn reg(name: &str, params: &[&str], doc: &str) -> FuncRegistration {
    FuncRegistration::new(name).with_params_info(params).with_comments([doc])
}

pub fn register(engine: &mut Engine, host: Arc<dyn Host>, code: Arc<RwLock<Code>>, audience: Option<Audience>, output: Output) {
    engine.register_type_with_name::<WorkflowRef>("WorkflowRef");
    engine.register_fn("to_string", |r: &mut WorkflowRef| r.to_string());
    engine.register_fn("to_debug", |r: &mut WorkflowRef| r.to_string());
    engine.register_fn("==", |a: WorkflowRef, b: WorkflowRef| a == b);
    engine.register_get("id", |r: &mut WorkflowRef| r.id as i64);

    for with_options in [false, true] {
        let (h, lib, to) = (host.clone(), code.clone(), audience.clone());
        let deploy_expr = move |ctx: NativeCallContext, expr: &str, options: Map| -> RhaiResult<WorkflowRef> {
            let mut options = DeployOptions::from_map(&options).or_else(|e| err(format!("deploy `{expr}`: {e}")))?;
            options.expression = Some(expr.to_string());
            let ast = ctx.engine().compile(expr).or_else(|e| err(format!("deploy `{expr}`: {e}")))?;
            super::session::define(&lib, &ast, super::host::Source { name: "deploy expression".into(), text: expr.to_string() });
            let merged = lib.read().expect("code lock").ast.merge(&ast);
            let value: Dynamic = ctx.engine().eval_ast(&merged).or_else(|e| err(format!("deploy `{expr}`: {e}")))?;
            let Some(wf) = value.clone().try_cast::<Workflow>() else {
                return err(format!("deploy `{expr}` returned {} ({value}), not a workflow", value.type_name()));
            };
            if let Err(e) = wf.validate() {
                return err(format!("deploy `{expr}`: {e}"));
            }
            let code = lib.read().expect("code lock").clone();
            let r = h.deploy(&wf, code, to.clone(), &options).or_else(|e| err(format!("deploy `{expr}`: {e}")))?;
            h.remember_expression(r, expr);
            Ok(r)
        };
        if with_options {
            reg(
                "deploy",
                &["expr: String", "options: Map", "WorkflowRef"],
                "\
/// `deploy(expr)` with options: `name` (the name its checkpoints are kept\n\
/// under; by default derived from the expression), `fresh: true` (start\n\
/// over rather than from its last checkpoint), `checkpoint_interval`\n\
/// (seconds; 0 turns checkpoints off), `restart_attempts`,\n\
/// `restart_delay`, `restart_within` (how a failed run restarts from its\n\
/// last checkpoint on a cluster: default 10 times within 600 s, after\n\
/// 0.2 s, doubled each time; 0 attempts: never).\n\
///\n\
/// ```rhai\n\
/// let r = deploy(\"workflow().stream_source(|n| n).count()\", #{ name: \"ticks\" });\n\
/// ```",
            )
            .register_into_engine(engine, deploy_expr);
        } else {
            reg(
                "deploy",
                &["expr: String", "WorkflowRef"],
                "\
/// Evaluates `expr`, a Rhai expression returning a workflow, and deploys\n\
/// what it returns. The node remembers the expression: an upgrade to a new\n\
/// release stops the workflow (drained) and deploys the expression again\n\
/// with the new release's code. A workflow with checkpoints resumes from\n\
/// the last one of its name (derived from the expression).\n\
///\n\
/// ```rhai\n\
/// let r = deploy(\"workflow().stream_source([1, 2]).collect()\");\n\
/// wait(r);\n\
/// ```",
            )
            .register_into_engine(engine, move |ctx: NativeCallContext, expr: &str| deploy_expr(ctx, expr, Map::new()));
        }
    }

    let h = host.clone();
    reg(
        "running_deploys",
        &["Array"],
        "\
/// The expressions of the running workflows that were deployed from one\n\
/// (`deploy(\"expr\")`, `--deploy`, `deploy` in skitter.toml): what an\n\
/// upgrade deploys again.\n\
///\n\
/// ```rhai\n\
/// let running = running_deploys();\n\
/// ```",
    )
    .register_into_engine(engine, move || -> Array { h.running_expressions().into_iter().map(|(_, e)| e.into()).collect() });

    for with_options in [false, true] {
        let (h, code, audience) = (host.clone(), code.clone(), audience.clone());
        let deploy = move |wf: Workflow, options: Map| -> RhaiResult<WorkflowRef> {
            let options = DeployOptions::from_map(&options).or_else(|e| err(format!("deploy: {e}")))?;
            if let Err(e) = wf.validate() {
                return err(format!("deploy: {e}"));
            }
            let code = code.read().expect("code lock").clone();
            h.deploy(&wf, code, audience.clone(), &options).or_else(|e| err(format!("deploy: {e}")))
        };
        if with_options {
            reg(
                "deploy",
                &["wf: Workflow", "options: Map", "WorkflowRef"],
                "\
/// `deploy(wf)` with options: `name` (the name its checkpoints are kept\n\
/// under), `fresh: true` (start over rather than from its last\n\
/// checkpoint), `checkpoint_interval` (seconds; 0 turns checkpoints off),\n\
/// `restart_attempts`, `restart_delay`, `restart_within` (how a failed\n\
/// run restarts from its last checkpoint on a cluster).\n\
///\n\
/// ```rhai\n\
/// let r = deploy(workflow().stream_source(|n| n).count(), #{ name: \"ticks\", checkpoint_interval: 5 });\n\
/// ```",
            )
            .register_into_engine(engine, deploy);
        } else {
            reg(
                "deploy",
                &["wf: Workflow", "WorkflowRef"],
                "\
/// Validates a workflow and starts it on this node's workers; returns a\n\
/// reference for `status`, `stop`, `wait` and `results`.\n\
///\n\
/// ```rhai\n\
/// let r = deploy(workflow().stream_source([1, 2, 3]).map(|x| x * 10).collect());\n\
/// wait(r);\n\
/// results(r)   // [10, 20, 30] in some order\n\
/// ```",
            )
            .register_into_engine(engine, move |wf: Workflow| deploy(wf, Map::new()));
        }
    }

    let h = host.clone();
    reg(
        "checkpoint",
        &["r: WorkflowRef", "i64"],
        "\
/// Takes a checkpoint of a running workflow now; returns its id once it is\n\
/// durable (and its output written).\n\
///\n\
/// ```rhai\n\
/// let r = deploy(workflow().stream_source(|n| n).count(), #{ name: \"ticks\" });\n\
/// let id = checkpoint(r);\n\
/// ```",
    )
    .register_into_engine(engine, move |r: WorkflowRef| -> RhaiResult<i64> {
        h.checkpoint(r).map(|id| id as i64).or_else(|e| err(format!("checkpoint: {e}")))
    });

    let h = host.clone();
    reg(
        "checkpoints",
        &["name: String", "Array"],
        "\
/// The completed checkpoints kept for the workflow named `name`, oldest\n\
/// first: `#{ id, kind, taken, age_s, bytes, duration_ms }` (`kind`:\n\
/// periodic, savepoint or finished).\n\
///\n\
/// ```rhai\n\
/// checkpoints(\"ticks\")\n\
/// ```",
    )
    .register_into_engine(engine, move |name: &str| -> RhaiResult<Array> {
        h.checkpoints(name).or_else(|e| err(format!("checkpoints: {e}")))
    });

    let h = host.clone();
    reg(
        "status",
        &["r: WorkflowRef", "String"],
        "\
/// The status of a deployed workflow: `running`, `finished`, `stopped` or\n\
/// `failed: <reason>`.\n\
///\n\
/// ```rhai\n\
/// let r = deploy(workflow().stream_source([1]).collect());\n\
/// wait(r);\n\
/// status(r)   // \"finished\"\n\
/// ```",
    )
    .register_into_engine(engine, move |r: WorkflowRef| -> RhaiResult<String> { h.status(r).map(|s| s.to_string()).or_else(err) });

    let h = host.clone();
    reg(
        "stop",
        &["r: WorkflowRef", "String"],
        "\
/// Stops a workflow gracefully: its sources stop, every record already read\n\
/// is processed, sinks are flushed. What has not drained within 10 seconds\n\
/// is aborted. Returns the final status.\n\
///\n\
/// ```rhai\n\
/// let r = deploy(workflow().stream_source(|n| n).collect());\n\
/// stop(r)   // \"stopped\"\n\
/// ```",
    )
    .register_into_engine(engine, move |r: WorkflowRef| -> RhaiResult<String> {
        h.stop(r, crate::settings::STOP_DEADLINE).map(|s| s.to_string()).or_else(err)
    });

    let h = host.clone();
    reg(
        "stop",
        &["r: WorkflowRef", "seconds: float", "String"],
        "\
/// Stops a workflow gracefully, aborting what has not drained within\n\
/// `seconds`. Returns the final status: `stopped`, or `aborted: ...` naming\n\
/// the operators that were running.\n\
///\n\
/// ```rhai\n\
/// let r = deploy(workflow().stream_source(|n| n).collect());\n\
/// stop(r, 2.5)   // \"stopped\"\n\
/// ```",
    )
    .register_into_engine(engine, move |r: WorkflowRef, seconds: rhai::FLOAT| -> RhaiResult<String> {
        let deadline = deadline(seconds)?;
        h.stop(r, deadline).map(|s| s.to_string()).or_else(err)
    });

    let h = host.clone();
    reg(
        "stop",
        &["r: WorkflowRef", "seconds: int", "String"],
        "\
/// Stops a workflow gracefully, aborting what has not drained within `seconds`.\n\
///\n\
/// ```rhai\n\
/// let r = deploy(workflow().stream_source(|n| n).collect());\n\
/// stop(r, 2)   // \"stopped\"\n\
/// ```",
    )
    .register_into_engine(engine, move |r: WorkflowRef, seconds: rhai::INT| -> RhaiResult<String> {
        let deadline = deadline(seconds as rhai::FLOAT)?;
        h.stop(r, deadline).map(|s| s.to_string()).or_else(err)
    });

    let h = host.clone();
    reg(
        "abort",
        &["r: WorkflowRef", "String"],
        "\
/// Stops a workflow at once: operator code is interrupted, records in flight\n\
/// are dropped, files are kept as `.incomplete`. Returns the final status,\n\
/// `aborted: ...`, naming the operators that were running.\n\
///\n\
/// ```rhai\n\
/// let r = deploy(workflow().stream_source(|n| n).map(|x| { loop {} }).collect());\n\
/// abort(r)   // \"aborted: aborted by the user; operator `map1` was running\"\n\
/// ```",
    )
    .register_into_engine(engine, move |r: WorkflowRef| -> RhaiResult<String> { h.abort(r).map(|s| s.to_string()).or_else(err) });

    let h = host.clone();
    reg(
        "stats",
        &["r: WorkflowRef", "Map"],
        "\
/// Counts to check a run by: `read` (records the sources emitted), `written`\n\
/// (records the sinks took), `elapsed` (seconds it ran) and, per operator,\n\
/// records `in` and `out`, `errors`, `queued` and `queue_capacity` (batches\n\
/// waiting in its inboxes, and how many fit) and `p99_us` (99th percentile\n\
/// of its time per record, in microseconds; `()` before it ran). Live while\n\
/// the workflow runs, final once it ended; summed over every worker.\n\
///\n\
/// ```rhai\n\
/// let r = deploy(workflow().stream_source(1..=10).filter(|x| x > 3).collect());\n\
/// wait(r);\n\
/// let s = stats(r);\n\
/// [s.read, s.written]   // [10, 7]\n\
/// ```",
    )
    .register_into_engine(engine, move |r: WorkflowRef| -> RhaiResult<Map> { h.stats(r).map(|s| s.to_map()).or_else(err) });

    let h = host.clone();
    reg(
        "top",
        &["()"],
        "\
/// At an interactive prompt (local or remote), a live table of the running\n\
/// workflows' operators — records in and out per second and in all, queue\n\
/// fill, errors, p99 time per record — redrawn every second until `q` or\n\
/// Ctrl-C. Anywhere else (a script, `rpc`, inside an expression) it prints\n\
/// the table once, with rates averaged since each workflow started.\n\
///\n\
/// ```rhai\n\
/// top();\n\
/// ```",
    )
    .register_into_engine(engine, move || {
        let title = format!("skitter top - {}", h.node_name());
        output(&crate::workflow::watch::frame(&title, &[], &h.watch()));
    });

    let h = host.clone();
    reg(
        "to_dot",
        &["r: WorkflowRef", "String"],
        "\
/// Renders a deployed workflow as a Graphviz `dot` graph, each operator\n\
/// labelled with its records in and out, their average rate per second\n\
/// over the time it ran, its errors and p99 time per record, and each link\n\
/// with the records that crossed it. Render it with `dot -Tsvg`.\n\
///\n\
/// ```rhai\n\
/// let r = deploy(workflow().stream_source(1..=10).map(|x| x * 2).collect());\n\
/// wait(r);\n\
/// let dot = to_dot(r);   // ... \"map_1\\nmap\\nin 10 (...), out 10 (...)\" ...\n\
/// ```",
    )
    .register_into_engine(engine, move |r: WorkflowRef| -> RhaiResult<String> {
        h.stats(r).map(|s| crate::workflow::dot::to_dot_stats(&s)).or_else(err)
    });

    let h = host.clone();
    reg(
        "wait",
        &["r: WorkflowRef", "String"],
        "\
/// Waits until a workflow is no longer running and returns its status.\n\
///\n\
/// ```rhai\n\
/// let r = deploy(workflow().stream_source(1..100).collect());\n\
/// wait(r)   // \"finished\"\n\
/// ```",
    )
    .register_into_engine(engine, move |r: WorkflowRef| -> RhaiResult<String> { h.wait(r).map(|s| s.to_string()).or_else(err) });

    let h = host.clone();
    reg(
        "results",
        &["r: WorkflowRef", "Array"],
        "\
/// What the workflow's `collect()` sink has gathered so far.\n\
///\n\
/// ```rhai\n\
/// let r = deploy(workflow().stream_source([\"a\", \"b\", \"a\"]).count().collect());\n\
/// wait(r);\n\
/// results(r)   // [[\"a\", 2], [\"b\", 1]] in some order\n\
/// ```",
    )
    .register_into_engine(engine, move |r: WorkflowRef| -> RhaiResult<Array> { h.results(r, None).or_else(err) });

    let h = host.clone();
    reg(
        "results",
        &["r: WorkflowRef", "sink: &str", "Array"],
        "\
/// What the `collect()` node named `sink` has gathered, when a workflow has several.\n\
///\n\
/// ```rhai\n\
/// let wf = workflow().stream_source(1..=4).filter(|x| x > 2).name(\"f\").collect().name(\"big\")\n\
///     .from(\"f.reject\").collect().name(\"small\");\n\
/// let r = deploy(wf);\n\
/// wait(r);\n\
/// results(r, \"small\")   // [1, 2]\n\
/// ```",
    )
    .register_into_engine(engine, move |r: WorkflowRef, sink: &str| -> RhaiResult<Array> { h.results(r, Some(sink)).or_else(err) });

    let h = host.clone();
    reg(
        "workflows",
        &["Array"],
        "\
/// Every workflow deployed on this node, as `#{ref, status}` maps.\n\
///\n\
/// ```rhai\n\
/// let all = workflows();\n\
/// ```",
    )
    .register_into_engine(engine, move || -> Array {
        h.workflows()
            .into_iter()
            .map(|(r, s)| {
                let mut m = Map::new();
                m.insert("ref".into(), Dynamic::from(r));
                m.insert("status".into(), s.to_string().into());
                Dynamic::from(m)
            })
            .collect()
    });

    let h = host.clone();
    reg(
        "workers",
        &["Array"],
        "\
/// The workers this node places operator instances on.\n\
///\n\
/// ```rhai\n\
/// let ws = workers();\n\
/// ```",
    )
    .register_into_engine(engine, move || -> Array { h.workers() });

    let h = host.clone();
    reg(
        "with_tag",
        &["tag: &str", "Array"],
        "\
/// The workers started with tag `tag` (`skitter worker -t tag`).\n\
///\n\
/// ```rhai\n\
/// let gpus = with_tag(\"gpu\");\n\
/// ```",
    )
    .register_into_engine(engine, move |tag: &str| -> Array { h.with_tag(tag) });

    let h = host;
    reg(
        "runtime_info",
        &["Map"],
        "\
/// Facts about this node's runtime: mode, node name, version, and the\n\
/// settings in force: env, app, app_version, slots, tick_time, batch_deadline_ms,\n\
/// log_level, limits.\n\
///\n\
/// ```rhai\n\
/// let info = runtime_info();\n\
/// info.mode   // \"local\"\n\
/// ```",
    )
    .register_into_engine(engine, move || -> Map {
        let mut info = h.runtime_info();
        crate::settings::node::add_to(&mut info);
        info
    });
}
