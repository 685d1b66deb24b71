//! The data the pages show, as JSON: the overview (this node, its workers,
//! its workflows) and one workflow (its operators, edges and graph).

use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

use super::rates::Rates;
use crate::script::{Host, WorkflowRef};
use crate::workflow::dot::{crossed, micros, per_second};
use crate::workflow::layout::{to_svg, NodeBox, State};
use crate::workflow::Stats;

/// A rhai value as JSON, for the maps the host describes itself with.
fn plain(v: &rhai::Dynamic) -> Value {
    if let Ok(i) = v.as_int() {
        json!(i)
    } else if let Ok(f) = v.as_float() {
        json!(f)
    } else if let Ok(b) = v.as_bool() {
        json!(b)
    } else if v.is_unit() {
        Value::Null
    } else if let Some(a) = v.read_lock::<rhai::Array>() {
        Value::Array(a.iter().map(plain).collect())
    } else if let Some(m) = v.read_lock::<rhai::Map>() {
        Value::Object(m.iter().map(|(k, v)| (k.to_string(), plain(v))).collect())
    } else {
        json!(v.to_string())
    }
}

/// Each node's records (in, out).
fn counts(stats: &Stats) -> Vec<(u64, u64)> {
    stats.nodes.iter().map(|n| (n.records_in, n.records_out)).collect()
}

fn checkpoint(stats: &Stats) -> Value {
    match &stats.checkpoints {
        None => Value::Null,
        Some(c) => json!({
            "completed": c.completed, "last_id": c.last_id, "last_ms": c.last_ms, "last_at_ms": c.last_at_ms,
            "bytes": c.bytes, "failed": c.failed, "last_failure": c.last_failure, "summary": c.summary(),
        }),
    }
}

/// A workflow's name: the one its checkpoints are kept under, when it has one.
fn name(stats: &Stats) -> Value {
    stats.checkpoints.as_ref().map_or(Value::Null, |c| json!(c.name))
}

pub fn overview(host: &dyn Host, started: Instant, rates: &Mutex<Rates>, actions: bool) -> Value {
    let info = plain(&rhai::Dynamic::from_map(host.runtime_info()));
    let health = host.worker_health();
    let workers: Vec<Value> = host
        .workers()
        .iter()
        .map(|w| {
            let mut w = plain(w);
            let name = w["name"].as_str().unwrap_or_default().to_string();
            if let (Some(h), Some(map)) = (health.get(&name), w.as_object_mut()) {
                map.insert("rss_bytes".into(), json!(h.rss_bytes));
                map.insert("uptime".into(), json!(h.uptime));
                map.insert("heard".into(), json!(h.heard));
            }
            w
        })
        .collect();
    let all = host.workflows();
    let mut rates = rates.lock().expect("rates lock");
    rates.keep(&all.iter().map(|(r, _)| r.id).collect::<Vec<_>>());
    let mut workflows = Vec::new();
    for (r, status) in all {
        let Ok(stats) = host.stats(r) else { continue };
        let counts = counts(&stats);
        let per = rates.of(r.id, stats.elapsed, &counts, !status.is_done());
        let (records_in, records_out) = (stats.read(), stats.written());
        let (in_rate, out_rate) = stats.ends(|i| per[i]);
        workflows.push(json!({
            "id": r.id, "name": name(&stats), "status": status.to_string(), "running": !status.is_done(),
            "elapsed": stats.elapsed, "records_in": records_in, "records_out": records_out,
            "in_rate": in_rate, "out_rate": out_rate, "checkpoint": checkpoint(&stats),
        }));
    }
    json!({
        "node": { "name": host.node_name(), "info": info, "uptime": crate::runtime::process::uptime().unwrap_or(started.elapsed().as_secs_f64()),
                  "rss_bytes": crate::runtime::process::resident_bytes() },
        "workers": workers,
        "workflows": workflows,
        "actions": actions,
    })
}

pub fn workflow(host: &dyn Host, id: u64, rates: &Mutex<Rates>, actions: bool) -> Option<Value> {
    let r = WorkflowRef { id };
    let status = host.status(r).ok()?;
    let stats = host.stats(r).ok()?;
    let graph = stats.graph();
    let counts = counts(&stats);
    let per = rates.lock().expect("rates lock").of(id, stats.elapsed, &counts, !status.is_done());
    let placement = host.placement(r);
    let mut operators = Vec::new();
    let mut boxes = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let s = &stats.nodes[i];
        let state = State::of(s.queued, s.capacity, s.errors);
        let mut lines = vec![format!("in {}/s · out {}/s", per_second(per[i].0), per_second(per[i].1))];
        let mut second = Vec::new();
        if let Some(p99) = s.p99_us() {
            second.push(format!("p99 {}", micros(p99)));
        }
        if s.capacity > 0 {
            second.push(format!("queue {}/{}", s.queued, s.capacity));
        }
        if let Some(lag) = s.lag() {
            second.push(format!("event time {lag:.1} s behind"));
        }
        if s.errors > 0 {
            second.push(format!("{} error(s)", s.errors));
        }
        if !second.is_empty() {
            lines.push(second.join(" · "));
        }
        boxes.push(NodeBox { title: node.name.clone(), lines, state });
        operators.push(json!({
            "name": node.name, "op": node.op.to_string(), "records_in": s.records_in, "records_out": s.records_out,
            "in_rate": per[i].0, "out_rate": per[i].1, "queued": s.queued, "capacity": s.capacity, "errors": s.errors,
            "p99_us": s.p99_us(), "watermark_ms": s.watermark_ms, "late": s.late,
            "runs_on": placement.get(i).cloned().unwrap_or_default(),
            "state": match state { State::Flowing => "flowing", State::Busy => "busy", State::Full => "full", State::Failed => "failed" },
        }));
    }
    let edge_rates: Vec<Option<f64>> = graph.edges.iter().map(|e| crossed(graph, e, |i| per[i])).collect();
    let labels: Vec<Option<String>> = edge_rates.iter().map(|r| r.map(|r| format!("{}/s", per_second(r)))).collect();
    let edges: Vec<Value> =
        graph.edges.iter().zip(&edge_rates).map(|(e, rate)| json!({ "from": e.from, "to": e.to, "rate": rate })).collect();
    let (records_in, records_out) = (stats.read(), stats.written());
    Some(json!({
        "id": id, "name": name(&stats), "status": status.to_string(), "running": !status.is_done(), "elapsed": stats.elapsed,
        "failed": match &status { crate::workflow::Status::Failed(why) => Some(why.clone()), _ => None },
        "records_in": records_in, "records_out": records_out,
        "checkpoint": checkpoint(&stats),
        "recovery": stats.recovery.as_ref().and_then(|r| r.summary()),
        "operators": operators, "edges": edges,
        "svg": to_svg(graph, &boxes, &labels),
        "actions": actions,
    }))
}
