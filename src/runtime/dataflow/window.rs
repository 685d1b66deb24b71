//! Keyed windows (`window`, `window_count`): they fold records into the
//! windows their time falls in and emit each window once the watermark
//! passes its end. A window stays `lateness` seconds
//! longer: a late record within it updates the window and emits it again;
//! a record later than that goes to the `late` port.

use std::collections::BTreeMap;

use rhai::Dynamic;

use super::call::{Callee, Calls};
use super::error::{script_error, shown, FlowError};
use super::snapshot::{Taken, WindowState};
use super::Outputs;
use crate::workflow::key::{Key, KeyMap};
use crate::workflow::time::{seconds, WindowSpec};

/// A time as a key that sorts (times are finite).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct At(pub(super) f64);

impl Eq for At {}

impl PartialOrd for At {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for At {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The time a record's function gave, or the failure naming the record.
pub(super) fn time_of(calls: &Calls, ts: &Callee, name: &str, rec: &Dynamic) -> Result<f64, FlowError> {
    let v = calls.call_with(ts, [rec]).map_err(|e| script_error(name, Some(rec), &e))?;
    seconds(&v).ok_or_else(|| FlowError::Operator {
        operator: name.to_string(),
        reason: format!("the time function must return seconds since the epoch (a number), got {} on record {}", shown(&v), shown(rec)),
    })
}

/// Wall-clock time in seconds since the epoch: windows with no
/// `event_time` upstream, idleness, processing-time timers.
pub(super) fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// A window bound as scripts see it: an integer when it is one.
pub(super) fn bound(t: f64) -> Dynamic {
    if t.fract() == 0.0 && t.abs() < 9.0e15 {
        Dynamic::from_int(t as i64)
    } else {
        Dynamic::from_float(t)
    }
}

/// One window of one key.
#[derive(Clone, Debug)]
struct Win {
    start: f64,
    end: f64,
    value: Dynamic,
    /// Emitted once already (the watermark passed its end).
    fired: bool,
}

/// A window's value as `window` builds it.
pub struct FoldFns {
    pub init: Callee,
    pub fold: Callee,
    pub merge: Option<Callee>,
}

/// What a window folds records into.
pub enum Folding {
    Count,
    Fold(Box<FoldFns>),
}

/// `window` and `window_count`: every key's open windows.
pub struct WindowStep {
    spec: WindowSpec,
    folding: Folding,
    ts: Option<Callee>,
    lateness: f64,
    watermark: f64,
    keys: KeyMap<Vec<Win>>,
    /// When windows end (to emit them) and, past their lateness, go: the
    /// keys that have one then. An entry may be stale (a session grew).
    ends: BTreeMap<At, Vec<Key>>,
    gone: BTreeMap<At, Vec<Key>>,
}

impl WindowStep {
    pub fn new(spec: WindowSpec, folding: Folding, ts: Option<Callee>, lateness: f64) -> WindowStep {
        WindowStep {
            spec,
            folding,
            ts,
            lateness,
            watermark: f64::NEG_INFINITY,
            keys: KeyMap::default(),
            ends: BTreeMap::new(),
            gone: BTreeMap::new(),
        }
    }

    /// Folds keyed records into their windows; returns what leaves now
    /// (windows a late record updated; records too late, on `late`).
    pub fn apply_keyed(&mut self, calls: &Calls, name: &str, pairs: Vec<(Key, Dynamic)>) -> Result<Outputs, FlowError> {
        let (mut out, mut late) = (Vec::new(), Vec::new());
        for (key, rec) in super::warm::in_runs(pairs) {
            let t = match &self.ts {
                Some(ts) => time_of(calls, ts, name, &rec)?,
                None => now(),
            };
            let accepted = if self.spec.is_session() {
                self.fold_session(calls, name, &key, &rec, t, &mut out)?
            } else {
                self.fold_fixed(calls, name, &key, &rec, t, &mut out)?
            };
            if !accepted {
                late.push(rec);
            }
        }
        Ok(vec![out, late])
    }

    /// On processing time (no `event_time` upstream): when the next window
    /// ends, by the clock.
    pub fn wake(&self) -> Option<f64> {
        self.ts.is_none().then(|| self.ends.keys().next().map(|at| at.0)).flatten()
    }

    /// On processing time: the clock is the watermark.
    pub fn on_clock(&mut self, now: f64) -> Outputs {
        if self.ts.is_some() {
            return Vec::new();
        }
        self.on_watermark(now)
    }

    /// Whether a window ending at `end` still takes records.
    fn open(&self, end: f64) -> bool {
        end + self.lateness > self.watermark
    }

    fn fold_fixed(
        &mut self,
        calls: &Calls,
        name: &str,
        key: &Key,
        rec: &Dynamic,
        t: f64,
        out: &mut Vec<Dynamic>,
    ) -> Result<bool, FlowError> {
        let mut accepted = false;
        for (start, end) in self.spec.windows(t) {
            if !self.open(end) {
                continue;
            }
            accepted = true;
            if !self.keys.contains_key(key) {
                self.keys.insert(key.clone(), Vec::new());
            }
            let Self { keys, folding, ends, .. } = self;
            let windows = keys.get_mut(key).expect("inserted");
            let win = match windows.iter().position(|w| w.start == start) {
                Some(i) => &mut windows[i],
                None => {
                    let value = fresh(folding, calls, name)?;
                    ends.entry(At(end)).or_default().push(key.clone());
                    windows.push(Win { start, end, value, fired: false });
                    windows.last_mut().expect("pushed")
                }
            };
            win.value = add(folding, calls, name, std::mem::take(&mut win.value), rec)?;
            if win.fired {
                out.push(result(&key.value, win));
            }
        }
        Ok(accepted)
    }

    fn fold_session(
        &mut self,
        calls: &Calls,
        name: &str,
        key: &Key,
        rec: &Dynamic,
        t: f64,
        out: &mut Vec<Dynamic>,
    ) -> Result<bool, FlowError> {
        let WindowSpec::Session { gap } = self.spec else { unreachable!("a session spec") };
        let (mut start, mut end) = (t, t + gap);
        if !self.open(end) {
            return Ok(false);
        }
        let mut value = add(&self.folding, calls, name, fresh(&self.folding, calls, name)?, rec)?;
        let mut fired = false;
        let windows = self.keys.remove(key).unwrap_or_default();
        let mut kept = Vec::with_capacity(windows.len() + 1);
        // Sessions this record's overlaps join it, earliest first (one
        // that ends where this one starts is apart: a window's end is not in it).
        let (mut touching, others): (Vec<Win>, Vec<Win>) = windows.into_iter().partition(|w| w.start < end && start < w.end);
        touching.sort_by(|a, b| a.start.total_cmp(&b.start));
        for w in touching {
            start = start.min(w.start);
            end = end.max(w.end);
            fired |= w.fired;
            value = merge(&self.folding, calls, name, w.value, value)?;
        }
        kept.extend(others);
        let win = Win { start, end, value, fired };
        if fired {
            out.push(result(&key.value, &win));
        }
        self.ends.entry(At(end)).or_default().push(key.clone());
        kept.push(win);
        self.keys.insert(key.clone(), kept);
        Ok(true)
    }

    /// The watermark moved to `wm`: emits every window that ends by then,
    /// in the order they end, and forgets those past their lateness.
    pub fn on_watermark(&mut self, wm: f64) -> Outputs {
        if wm <= self.watermark {
            return Vec::new();
        }
        self.watermark = wm;
        let mut out = Vec::new();
        while let Some(entry) = self.ends.first_entry() {
            if entry.key().0 > wm {
                break;
            }
            let (At(end), keys) = entry.remove_entry();
            for key in keys {
                let Some(windows) = self.keys.get_mut(&key) else { continue };
                for w in windows.iter_mut().filter(|w| w.end == end && !w.fired) {
                    w.fired = true;
                    out.push(result(&key.value, w));
                }
                self.gone.entry(At(end + self.lateness)).or_default().push(key);
            }
        }
        while let Some(entry) = self.gone.first_entry() {
            if entry.key().0 > wm {
                break;
            }
            for key in entry.remove() {
                if let Some(windows) = self.keys.get_mut(&key) {
                    windows.retain(|w| !(w.fired && w.end + self.lateness <= wm));
                    if windows.is_empty() {
                        self.keys.remove(&key);
                    }
                }
            }
        }
        vec![out]
    }

    pub fn take(&self) -> Taken {
        let windows = self
            .keys
            .iter()
            .flat_map(|(k, ws)| ws.iter().map(move |w| (k.value.clone(), w.start, w.end, w.value.clone(), w.fired)))
            .collect();
        Taken::Windows { watermark: self.watermark, windows }
    }

    pub fn restore(&mut self, state: WindowState<Dynamic>) {
        self.watermark = self.watermark.max(state.watermark);
        for (key, start, end, value, fired) in state.windows {
            let key = Key::new(key);
            let at = if fired { &mut self.gone } else { &mut self.ends };
            at.entry(At(if fired { end + self.lateness } else { end })).or_default().push(key.clone());
            self.keys.entry(key).or_default().push(Win { start, end, value, fired });
        }
    }
}

/// A new window's value.
fn fresh(folding: &Folding, calls: &Calls, name: &str) -> Result<Dynamic, FlowError> {
    match folding {
        Folding::Count => Ok(Dynamic::from_int(0)),
        Folding::Fold(f) => calls.call_with(&f.init, []).map_err(|e| script_error(name, None, &e)),
    }
}

/// `value` with `rec` folded in.
fn add(folding: &Folding, calls: &Calls, name: &str, value: Dynamic, rec: &Dynamic) -> Result<Dynamic, FlowError> {
    match folding {
        Folding::Count => Ok(Dynamic::from_int(value.as_int().unwrap_or(0) + 1)),
        Folding::Fold(f) => calls.call_on_state(&f.fold, value, rec).map_err(|e| script_error(name, Some(rec), &e)),
    }
}

/// Two sessions' values joined.
fn merge(folding: &Folding, calls: &Calls, name: &str, a: Dynamic, b: Dynamic) -> Result<Dynamic, FlowError> {
    match folding {
        Folding::Count => Ok(Dynamic::from_int(a.as_int().unwrap_or(0) + b.as_int().unwrap_or(0))),
        Folding::Fold(f) => match &f.merge {
            Some(merge) => calls.call_owned(merge, [a, b]).map_err(|e| script_error(name, None, &e)),
            None => Err(FlowError::Operator {
                operator: name.to_string(),
                reason: "a record joined two sessions, and the window has no merge function: give #{ merge: |a, b| ... }".into(),
            }),
        },
    }
}

/// A window as it leaves: `#{ key, start, end, value }`.
fn result(key: &Dynamic, w: &Win) -> Dynamic {
    let mut m = rhai::Map::new();
    m.insert("key".into(), key.clone());
    m.insert("start".into(), bound(w.start));
    m.insert("end".into(), bound(w.end));
    m.insert("value".into(), w.value.clone());
    Dynamic::from_map(m)
}
