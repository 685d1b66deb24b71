//! Where strategies of the user's put their operators' instances: decided
//! once per deploy, where the workflow is deployed (the master, or the
//! local node), from the workers as scripts see them (`#{name, tags,
//! slots}`), and shipped with the workflow. A strategy that places nothing
//! fails the deploy, naming the operator and why.

use std::collections::HashMap;

use rhai::{Dynamic, Map};

use super::call::Calls;
use super::error::{script_error, FlowError};
use crate::script::{Code, EngineEnv};
use crate::workflow::operator::Place;
use crate::workflow::Plan;

/// Per placed stage, the instances on each worker (in `workers`' order).
pub type Placement = HashMap<usize, Vec<usize>>;

/// Places every stage whose head has a placing strategy. `local` is local
/// mode, whose one node stands for every tag.
pub fn place(plan: &Plan, code: &Code, env: &EngineEnv, workers: &[Map], local: bool) -> Result<Placement, FlowError> {
    let mut placement = Placement::new();
    let mut calls = None;
    for (s, stage) in plan.stages.iter().enumerate() {
        let head = &plan.graph.nodes[stage.nodes[0]];
        let Some(place) = head.op.placed() else { continue };
        let name = &head.name;
        let counts = match place {
            Place::Tagged(tag) => tagged(name, tag, workers, local)?,
            Place::Func(f) => {
                if calls.is_none() {
                    calls = Some(Calls::new(code, env)?);
                }
                let calls = calls.as_ref().expect("made above");
                let list = Dynamic::from_array(workers.iter().cloned().map(Dynamic::from_map).collect());
                let chosen = calls.call(f, [list]).map_err(|e| script_error(name, None, &e))?;
                from_function(name, chosen, workers)?
            }
        };
        placement.insert(s, counts);
    }
    Ok(placement)
}

fn text(m: &Map, key: &str) -> String {
    m.get(key).map(|v| v.to_string()).unwrap_or_default()
}

fn slots(m: &Map) -> usize {
    m.get("slots").and_then(|v| v.as_int().ok()).unwrap_or(1).max(1) as usize
}

fn tagged(operator: &str, tag: &str, workers: &[Map], local: bool) -> Result<Vec<usize>, FlowError> {
    let has =
        |m: &Map| m.get("tags").and_then(|t| t.clone().try_cast::<rhai::Array>()).is_some_and(|t| t.iter().any(|x| x.to_string() == tag));
    let counts: Vec<usize> = workers.iter().map(|w| if local || has(w) { slots(w) } else { 0 }).collect();
    if counts.iter().all(|&n| n == 0) {
        let known: Vec<String> = workers
            .iter()
            .map(|w| {
                let tags = w.get("tags").and_then(|t| t.clone().try_cast::<rhai::Array>()).unwrap_or_default();
                let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
                format!("{} [{}]", text(w, "name"), tags.join(", "))
            })
            .collect();
        return Err(FlowError::Operator {
            operator: operator.to_string(),
            reason: format!("its strategy places it on workers tagged `{tag}`, and no worker has that tag (workers: {})", known.join("; ")),
        });
    }
    Ok(counts)
}

fn from_function(operator: &str, chosen: Dynamic, workers: &[Map]) -> Result<Vec<usize>, FlowError> {
    let wrong = |reason: String| FlowError::Operator { operator: operator.to_string(), reason };
    let Some(list) = chosen.clone().try_cast::<rhai::Array>() else {
        return Err(wrong(format!("its strategy's place must return an array of #{{ worker: name, instances: n }}, got {chosen}")));
    };
    let mut counts = vec![0usize; workers.len()];
    for item in list {
        let Some(m) = item.clone().try_cast::<Map>() else {
            return Err(wrong(format!("its strategy's place returned {item}, not #{{ worker: name, instances: n }}")));
        };
        let worker = text(&m, "worker");
        let Some(i) = workers.iter().position(|w| text(w, "name") == worker) else {
            let names: Vec<String> = workers.iter().map(|w| text(w, "name")).collect();
            return Err(wrong(format!(
                "its strategy placed instances on `{worker}`, which is not a worker (workers: {})",
                names.join(", ")
            )));
        };
        let n = match m.get("instances").map(|v| v.as_int()) {
            None => 1,
            Some(Ok(n)) if n >= 0 => n as usize,
            Some(_) => return Err(wrong(format!("its strategy's place gave `{worker}` a number of instances that is not a count"))),
        };
        counts[i] += n;
    }
    if counts.iter().all(|&n| n == 0) {
        return Err(wrong("its strategy's place put no instance anywhere".into()));
    }
    Ok(counts)
}
