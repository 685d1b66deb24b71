//! A checkpoint taken with some number of instances per stage, laid out
//! for another (more slots, more or fewer workers): keyed state moves with
//! its keys — a key's group picks its instance, as the hash exchange does —
//! and any state that belongs to one instance cannot be split, which is
//! refused naming its operator.

use std::collections::BTreeMap;

use crate::net::value::Value;
use crate::runtime::dataflow::snapshot::{InstanceState, NodeState};
use crate::workflow::key::Key;

/// `states` taken with `then` instances per stage, for `now`.
pub fn rescale(states: Vec<InstanceState>, then: &[u32], now: &[u32], names: &[Vec<String>]) -> Result<Vec<InstanceState>, String> {
    if then == now {
        return Ok(states);
    }
    let mut by_stage: BTreeMap<u32, Vec<InstanceState>> = BTreeMap::new();
    for st in states {
        by_stage.entry(st.stage).or_default().push(st);
    }
    let mut out = Vec::new();
    for (stage, old) in by_stage {
        let (was, is) = (then.get(stage as usize).copied().unwrap_or(0), now.get(stage as usize).copied().unwrap_or(0));
        if was == is {
            out.extend(old);
            continue;
        }
        let name = |pos: usize| names.get(stage as usize).and_then(|n| n.get(pos)).cloned().unwrap_or_else(|| "?".into());
        let done = old.iter().filter(|st| st.done).count();
        if done != 0 && done != old.len() {
            return Err(format!("operator `{}` ran with {was} instances, now {is}, and some of them had ended: start it over", name(0)));
        }
        let nodes = old.iter().map(|st| st.nodes.len()).max().unwrap_or(0);
        let mut fresh: Vec<InstanceState> =
            (0..is).map(|i| InstanceState { stage, instance: i, done: done > 0, nodes: Vec::with_capacity(nodes) }).collect();
        for pos in 0..nodes {
            let mut kind = Kind::Nothing;
            let mut pairs: Vec<(Value, Pair)> = Vec::new();
            for st in &old {
                match st.nodes.get(pos).cloned().unwrap_or(NodeState::Nothing) {
                    NodeState::Nothing | NodeState::Collected(_) => {}
                    NodeState::Reduce(p) => {
                        kind = Kind::Reduce;
                        pairs.extend(p.into_iter().map(|(k, v)| (k, Pair::Value(v))));
                    }
                    NodeState::Count(p) => {
                        kind = Kind::Count;
                        pairs.extend(p.into_iter().map(|(k, n)| (k, Pair::Count(n))));
                    }
                    NodeState::User { state: None, keyed } => {
                        kind = Kind::User;
                        pairs.extend(keyed.into_iter().map(|(k, v)| (k, Pair::Value(v))));
                    }
                    NodeState::UserTimed { state: None, keyed, timers } if timers.iter().all(|(k, ..)| k.is_some()) => {
                        kind = Kind::User;
                        pairs.extend(keyed.into_iter().map(|(k, v)| (k, Pair::Value(v))));
                        pairs.extend(timers.into_iter().filter_map(|(k, t, clock)| Some((k?, Pair::Timer(t, clock)))));
                    }
                    NodeState::User { state: Some(_), .. } | NodeState::UserTimed { .. } => {
                        return Err(format!(
                            "operator `{}` keeps a state per instance and ran with {was} instances, now {is}: its state cannot be split",
                            name(pos)
                        ))
                    }
                    NodeState::Time(max) => {
                        // Each instance's own; the earliest holds every one back.
                        kind = Kind::Time(match kind {
                            Kind::Time(m) => m.min(max),
                            _ => max,
                        });
                    }
                    NodeState::Windows(w) => {
                        kind = Kind::Windows(match kind {
                            Kind::Windows(m) => m.min(w.watermark),
                            _ => w.watermark,
                        });
                        pairs.extend(w.windows.into_iter().map(|(k, s, e, v, f)| (k, Pair::Window(s, e, v, f))));
                    }
                    NodeState::Position(_) => {
                        return Err(format!(
                            "source `{}` ran with {was} instances, now {is}: where each read to cannot be split",
                            name(pos)
                        ))
                    }
                }
            }
            let mut split: Vec<Vec<(Value, Pair)>> = (0..is).map(|_| Vec::new()).collect();
            for (k, v) in pairs {
                let group = Key::new(k.clone().into_dynamic()).group();
                split[(group % is as u64) as usize].push((k, v));
            }
            for (i, mine) in split.into_iter().enumerate() {
                fresh[i].nodes.push(kind.state(mine));
            }
        }
        out.extend(fresh);
    }
    Ok(out)
}

enum Kind {
    Nothing,
    Reduce,
    Count,
    User,
    Time(f64),
    Windows(f64),
}

enum Pair {
    Value(Value),
    Count(i64),
    Window(f64, f64, Value, bool),
    /// A key's timer, at this time, of the clock or of event time.
    Timer(f64, bool),
}

impl Kind {
    fn state(&self, pairs: Vec<(Value, Pair)>) -> NodeState {
        let values =
            || pairs.iter().filter_map(|(k, v)| if let Pair::Value(v) = v { Some((k.clone(), v.clone())) } else { None }).collect();
        match self {
            Kind::Nothing => NodeState::Nothing,
            Kind::Reduce => NodeState::Reduce(values()),
            Kind::User => {
                let timers: Vec<(Option<Value>, f64, bool)> = pairs
                    .iter()
                    .filter_map(|(k, v)| if let Pair::Timer(t, clock) = v { Some((Some(k.clone()), *t, *clock)) } else { None })
                    .collect();
                if timers.is_empty() {
                    NodeState::User { state: None, keyed: values() }
                } else {
                    NodeState::UserTimed { state: None, keyed: values(), timers }
                }
            }
            Kind::Time(max) => NodeState::Time(*max),
            Kind::Windows(watermark) => NodeState::Windows(crate::runtime::dataflow::snapshot::WindowState {
                watermark: *watermark,
                windows: pairs
                    .iter()
                    .filter_map(|(k, v)| if let Pair::Window(s, e, v, f) = v { Some((k.clone(), *s, *e, v.clone(), *f)) } else { None })
                    .collect(),
            }),
            Kind::Count => NodeState::Count(
                pairs.iter().filter_map(|(k, v)| if let Pair::Count(n) = v { Some((k.clone(), *n)) } else { None }).collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(stage: u32, instance: u32, pairs: &[(&str, i64)]) -> InstanceState {
        let pairs = pairs.iter().map(|(k, n)| (Value::Str((*k).into()), *n)).collect();
        InstanceState { stage, instance, done: false, nodes: vec![NodeState::Nothing, NodeState::Count(pairs)] }
    }

    #[test]
    fn keyed_state_moves_with_its_keys_to_the_instance_the_exchange_picks() {
        let words = ["a", "b", "c", "d", "e", "f", "g"];
        let then =
            vec![count(0, 0, &[]), count(1, 0, &[("a", 1), ("b", 2), ("c", 3)]), count(1, 1, &[("d", 4), ("e", 5), ("f", 6), ("g", 7)])];
        let now = rescale(then, &[1, 2], &[1, 3], &[vec!["src".into()], vec!["m".into(), "c".into()]]).unwrap();
        let stage1: Vec<&InstanceState> = now.iter().filter(|s| s.stage == 1).collect();
        assert_eq!(stage1.len(), 3);
        let mut seen = 0;
        for st in stage1 {
            let NodeState::Count(pairs) = &st.nodes[1] else { panic!() };
            for (k, _) in pairs {
                let group = Key::new(k.clone().into_dynamic()).group();
                assert_eq!(group % 3, st.instance as u64, "key {k:?} is where the exchange sends it");
                seen += 1;
            }
        }
        assert_eq!(seen, words.len(), "every key once");
    }

    #[test]
    fn a_state_per_instance_cannot_be_split() {
        let st = |i| InstanceState {
            stage: 0,
            instance: i,
            done: false,
            nodes: vec![NodeState::User { state: Some(Value::Int(1)), keyed: vec![] }],
        };
        let err = rescale(vec![st(0), st(1)], &[2], &[4], &[vec!["tally".into()]]).unwrap_err();
        assert_eq!(err, "operator `tally` keeps a state per instance and ran with 2 instances, now 4: its state cannot be split");
    }
}
