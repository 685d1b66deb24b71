//! An instance of an operator written in Rhai: its state (one, or one per
//! key), a callback per input port called with `this` bound to the state,
//! and what the callbacks `emit` sorted onto the output ports.

use std::collections::{BTreeMap, HashSet};

use rhai::{Dynamic, ImmutableString};

use super::call::{Callee, Calls};
use super::error::{script_error, shown, FlowError};
use super::snapshot::Taken;
use super::window::At;
use super::Outputs;
use crate::script::timer::Asked;
use crate::workflow::key::{Key, KeyMap};
use crate::workflow::operator::{Strategy, UserOp};

pub struct UserStep {
    op: Box<UserOp>,
    /// The callbacks of the input ports, the end and timers, resolved on first call.
    on: Vec<Option<Callee>>,
    on_end: Option<Callee>,
    on_timer: Option<Callee>,
    /// The instance's state, made on first use.
    state: Option<Dynamic>,
    /// Under a keyed strategy: the state of each key seen.
    states: KeyMap<Dynamic>,
    emitted: Vec<(ImmutableString, Dynamic)>,
    /// Timers a callback asked for, while it ran.
    asked: Vec<Asked>,
    /// Timers set, of event time ([0]) and of the clock ([1]): per time,
    /// the keys (none: the instance) to call back.
    timers: [BTreeMap<At, Vec<Option<Key>>>; 2],
    /// The same, to set each key's timer at a time once.
    set: HashSet<(u64, bool, Option<Key>)>,
}

impl UserStep {
    pub fn new(op: &UserOp) -> UserStep {
        UserStep {
            op: Box::new(op.clone()),
            on: op.on.iter().map(|f| f.clone().map(|f| Callee::new(f, 1))).collect(),
            on_end: op.on_end.clone().map(|f| Callee::new(f, 0)),
            on_timer: op.on_timer.clone().map(|f| Callee::new(f, 1)),
            state: None,
            states: KeyMap::default(),
            emitted: Vec::new(),
            asked: Vec::new(),
            timers: [BTreeMap::new(), BTreeMap::new()],
            set: HashSet::new(),
        }
    }

    pub fn is_keyed(&self) -> bool {
        self.op.strategy == Strategy::Keyed
    }

    fn initial(&self, calls: &Calls, name: &str) -> Result<Dynamic, FlowError> {
        match &self.op.init {
            Some(f) => calls.call(f, []).map_err(|e| script_error(name, None, &e)),
            None => Ok(Dynamic::UNIT),
        }
    }

    fn outputs(&self) -> Outputs {
        vec![Vec::new(); self.op.outputs.len()]
    }

    /// Sorts what a callback emitted onto the output ports.
    fn sort(&mut self, name: &str, out: &mut Outputs, record: Option<&Dynamic>) -> Result<(), FlowError> {
        for (port, value) in self.emitted.drain(..) {
            match self.op.outputs.iter().position(|p| p.as_str() == port.as_str()) {
                Some(i) => out[i].push(value),
                None => {
                    let during = record.map_or_else(|| "at the end".to_string(), |r| format!("on record {}", shown(r)));
                    return Err(FlowError::Operator {
                        operator: name.to_string(),
                        reason: format!(
                            "emit to unknown port `{port}` (outputs: {}) of value {}, {during}",
                            self.op.outputs.join(", "),
                            shown(&value)
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Runs the callback of input `port` on each record, with the instance's state.
    pub fn apply(&mut self, calls: &Calls, name: &str, port: usize, batch: Vec<Dynamic>) -> Result<Outputs, FlowError> {
        self.callback(name, port)?;
        let mut state = match self.state.take() {
            Some(s) => s,
            None => self.initial(calls, name)?,
        };
        let mut out = self.outputs();
        let mut result = Ok(());
        for rec in batch {
            let f = self.on[port].as_ref().expect("checked above");
            let called = collecting(&mut self.emitted, &mut self.asked, || calls.call_this(f, &mut state, [rec.clone()]));
            if let Err(e) = called {
                result = Err(script_error(name, Some(&rec), &e));
                break;
            }
            self.set_timers(None);
            if let Err(e) = self.sort(name, &mut out, Some(&rec)) {
                result = Err(e);
                break;
            }
        }
        self.state = Some(state);
        result.map(|()| out)
    }

    /// The same under a keyed strategy: each record meets its key's state.
    pub fn apply_keyed(&mut self, calls: &Calls, name: &str, port: usize, pairs: Vec<(Key, Dynamic)>) -> Result<Outputs, FlowError> {
        self.callback(name, port)?;
        let mut out = self.outputs();
        for (key, rec) in super::warm::in_runs(pairs) {
            let state = match self.states.get_mut(&key) {
                Some(s) => s,
                None => {
                    let initial = self.initial(calls, name)?;
                    self.states.entry(key.clone()).or_insert(initial)
                }
            };
            let f = self.on[port].as_ref().expect("checked above");
            let called = collecting(&mut self.emitted, &mut self.asked, || calls.call_this(f, state, [rec.clone()]));
            // What a callback returns is not used: its records go out by `emit`.
            let _ = called.map_err(|e| script_error(name, Some(&rec), &e))?;
            self.set_timers(Some(&key));
            self.sort(name, &mut out, Some(&rec))?;
        }
        Ok(out)
    }

    /// Once every input has ended: the end callback, with the instance's
    /// state, or once per key with that key's state.
    pub fn finish(&mut self, calls: &Calls, name: &str) -> Result<Outputs, FlowError> {
        if self.on_end.is_none() {
            return Ok(Vec::new());
        }
        let mut out = self.outputs();
        // The states stay (with what the callback made of them): a
        // checkpoint taken at the end keeps them.
        if !self.is_keyed() && self.state.is_none() {
            self.state = Some(self.initial(calls, name)?);
        }
        let mut emitted = std::mem::take(&mut self.emitted);
        let states: Box<dyn Iterator<Item = &mut Dynamic>> =
            if self.is_keyed() { Box::new(self.states.values_mut()) } else { Box::new(self.state.iter_mut()) };
        let mut result = Ok(());
        for state in states {
            let f = self.on_end.as_ref().expect("checked above");
            let called = crate::script::emit::collect(&mut emitted, || calls.call_this(f, state, []));
            if let Err(e) = called {
                result = Err(script_error(name, None, &e));
                break;
            }
        }
        self.emitted = emitted;
        result?;
        self.sort(name, &mut out, None)?;
        Ok(out)
    }

    /// Sets the timers the last callback asked for, for `key` (or the instance).
    fn set_timers(&mut self, key: Option<&Key>) {
        for Asked { at, clock } in self.asked.drain(..) {
            if self.set.insert((at.to_bits(), clock, key.cloned())) {
                self.timers[clock as usize].entry(At(at)).or_default().push(key.cloned());
            }
        }
    }

    /// Event time reached `wm`: calls `on_timer(t)` for every timer of
    /// event time set at or before it.
    pub fn on_watermark(&mut self, calls: &Calls, name: &str, wm: f64) -> Result<Outputs, FlowError> {
        self.fire(calls, name, false, wm)
    }

    /// The clock reached `now`: calls `on_timer(t)` for every timer of the
    /// clock due by then.
    pub fn on_clock(&mut self, calls: &Calls, name: &str, now: f64) -> Result<Outputs, FlowError> {
        self.fire(calls, name, true, now)
    }

    /// When the next timer of the clock is due.
    pub fn wake(&self) -> Option<f64> {
        self.timers[1].keys().next().map(|at| at.0)
    }

    /// Calls `on_timer(t)` for every timer (of the clock, or of event time)
    /// set at or before `upto`, in the order of their times, with the state
    /// of the key that set it (or the instance's).
    fn fire(&mut self, calls: &Calls, name: &str, clock: bool, upto: f64) -> Result<Outputs, FlowError> {
        let mut out = self.outputs();
        if self.on_timer.is_none() {
            return Ok(Vec::new());
        }
        while let Some(entry) = self.timers[clock as usize].first_entry() {
            if entry.key().0 > upto {
                break;
            }
            let (At(t), keys) = entry.remove_entry();
            let at = super::window::bound(t);
            for key in keys {
                self.set.remove(&(t.to_bits(), clock, key.clone()));
                let mut state = match &key {
                    Some(k) => match self.states.remove(k) {
                        Some(s) => s,
                        None => self.initial(calls, name)?,
                    },
                    None => match self.state.take() {
                        Some(s) => s,
                        None => self.initial(calls, name)?,
                    },
                };
                let f = self.on_timer.as_ref().expect("checked above");
                let called = collecting(&mut self.emitted, &mut self.asked, || calls.call_this(f, &mut state, [at.clone()]));
                match &key {
                    Some(k) => drop(self.states.insert(k.clone(), state)),
                    None => self.state = Some(state),
                }
                let _ = called.map_err(|e| script_error(name, None, &e))?; // what it returns is not used
                self.set_timers(key.as_ref());
                self.sort(name, &mut out, None)?;
            }
        }
        Ok(out)
    }

    /// Checks input `port` has a callback.
    fn callback(&self, name: &str, port: usize) -> Result<(), FlowError> {
        match self.on.get(port) {
            Some(Some(_)) => Ok(()),
            _ => Err(FlowError::Operator {
                operator: name.to_string(),
                reason: format!("no callback for input `{}`", self.op.inputs.get(port).map_or("?", String::as_str)),
            }),
        }
    }
}

/// Runs a callback, collecting what it emits and the timers it asks for.
fn collecting<R>(emitted: &mut Vec<(ImmutableString, Dynamic)>, asked: &mut Vec<Asked>, f: impl FnOnce() -> R) -> R {
    crate::script::timer::collect(asked, || crate::script::emit::collect(emitted, f))
}

impl UserStep {
    /// The state for a checkpoint (a clone: the operator goes on with it).
    pub fn take(&self) -> Taken {
        Taken::User {
            state: self.state.clone(),
            keyed: self.states.iter().map(|(k, v)| (k.value.clone(), v.clone())).collect(),
            timers: self
                .timers
                .iter()
                .enumerate()
                .flat_map(|(clock, timers)| timers.iter().map(move |(t, keys)| (clock == 1, t.0, keys)))
                .flat_map(|(clock, t, keys)| keys.iter().map(move |k| (k.as_ref().map(|k| k.value.clone()), t, clock)))
                .collect(),
        }
    }

    /// Puts back a saved state.
    pub fn restore(
        &mut self,
        state: Option<Dynamic>,
        keyed: impl Iterator<Item = (Key, Dynamic)>,
        timers: Vec<(Option<Dynamic>, f64, bool)>,
    ) {
        self.state = state;
        self.states.extend(keyed);
        for (key, at, clock) in timers {
            self.asked.push(Asked { at, clock });
            self.set_timers(key.map(Key::new).as_ref());
        }
    }
}
