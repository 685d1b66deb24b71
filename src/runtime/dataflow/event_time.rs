//! Event time in an instance: `event_time` (the largest time seen, the
//! watermark it makes, whether it has gone idle) and the watermark an
//! instance is at, from its inputs'.

use rhai::Dynamic;

use super::call::{Callee, Calls};
use super::error::FlowError;
use super::snapshot::Taken;
use super::window::{now, time_of};

/// `event_time`: passes records on, keeping the largest time seen.
pub struct EventTimeStep {
    ts: Callee,
    out_of_order: f64,
    max: f64,
    /// Seconds without a record after which it says it is idle.
    idle: Option<f64>,
    /// When it last had a record (wall clock), and whether it said it is idle.
    last: f64,
    is_idle: bool,
    /// It had records again since it said it was idle.
    resumed: bool,
}

impl EventTimeStep {
    pub fn new(ts: Callee, out_of_order: f64, idle: Option<f64>) -> EventTimeStep {
        EventTimeStep { ts, out_of_order, max: f64::NEG_INFINITY, idle, last: now(), is_idle: false, resumed: false }
    }

    /// When it will be idle, if it is not yet.
    pub fn wake(&self) -> Option<f64> {
        self.idle.filter(|_| !self.is_idle).map(|idle| self.last + idle)
    }

    /// Whether it became idle by `now` (once until its next record).
    pub fn idle_due(&mut self, now: f64) -> bool {
        let due = self.wake().is_some_and(|at| at <= now);
        self.is_idle |= due;
        due
    }

    /// Whether it had records again since it was idle (once).
    pub fn take_resumed(&mut self) -> bool {
        std::mem::take(&mut self.resumed)
    }

    pub fn apply(&mut self, calls: &Calls, name: &str, batch: &[Dynamic]) -> Result<(), FlowError> {
        if !batch.is_empty() && self.idle.is_some() {
            self.last = now();
            self.resumed |= std::mem::take(&mut self.is_idle);
        }
        for rec in batch {
            let t = time_of(calls, &self.ts, name, rec)?;
            if t > self.max {
                self.max = t;
            }
        }
        Ok(())
    }

    /// The watermark: no record to come is expected earlier than this.
    pub fn watermark(&self) -> f64 {
        self.max - self.out_of_order
    }

    pub fn take(&self) -> Taken {
        Taken::Time(self.max)
    }

    pub fn restore(&mut self, max: f64) {
        self.max = max;
    }
}

/// An instance's watermark: the earliest of its input channels' (a channel
/// that ended holds nothing back), or, in a stage with an `event_time`,
/// the one it makes.
#[derive(Debug)]
pub struct Watermarks {
    inputs: Vec<f64>,
    /// Channels whose `event_time` said it is idle (until its next watermark).
    idle: Vec<bool>,
    current: f64,
}

impl Watermarks {
    pub fn new(channels: usize) -> Watermarks {
        Watermarks { inputs: vec![f64::NEG_INFINITY; channels], idle: vec![false; channels], current: f64::NEG_INFINITY }
    }

    /// Channel `channel` brought watermark `wm`: the instance's, when it moved.
    pub fn input(&mut self, channel: u32, wm: f64) -> Option<f64> {
        let slot = self.inputs.get_mut(channel as usize)?;
        *slot = slot.max(wm);
        self.idle[channel as usize] = false;
        self.earliest()
    }

    /// Channel `channel` is idle: it holds nothing back until its next
    /// watermark (unless every channel is idle).
    pub fn idle(&mut self, channel: u32) -> Option<f64> {
        *self.idle.get_mut(channel as usize)? = true;
        self.earliest()
    }

    fn earliest(&mut self) -> Option<f64> {
        let active = self.inputs.iter().zip(&self.idle).filter(|(_, idle)| !**idle).map(|(wm, _)| *wm);
        self.moved(active.fold(f64::INFINITY, f64::min))
    }

    /// Channel `channel` ended.
    pub fn ended(&mut self, channel: u32) -> Option<f64> {
        self.input(channel, f64::INFINITY)
    }

    /// The instance's `event_time` made watermark `wm`.
    /// Where the instance is.
    pub fn current(&self) -> f64 {
        self.current
    }

    pub fn made(&mut self, wm: f64) -> Option<f64> {
        self.moved(wm)
    }

    fn moved(&mut self, wm: f64) -> Option<f64> {
        // Before any input there is none; the end (infinite) is the inputs' end.
        if wm > self.current && wm.is_finite() {
            self.current = wm;
            return Some(wm);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_at_the_earliest_watermark_of_its_inputs_and_an_ended_one_holds_nothing_back() {
        let mut w = Watermarks::new(2);
        assert_eq!(w.input(0, 10.0), None, "channel 1 has said nothing yet");
        assert_eq!(w.input(1, 5.0), Some(5.0));
        assert_eq!(w.input(1, 4.0), None, "a watermark never goes back");
        assert_eq!(w.input(1, 12.0), Some(10.0));
        assert_eq!(w.ended(0), Some(12.0));
        assert_eq!(w.ended(1), None, "every input ended: the end flushes, not a watermark");
    }

    #[test]
    fn an_idle_input_holds_nothing_back_until_it_speaks_again() {
        let mut w = Watermarks::new(2);
        assert_eq!(w.input(0, 10.0), None);
        assert_eq!(w.idle(1), Some(10.0), "channel 1 is idle: channel 0 alone counts");
        assert_eq!(w.input(0, 20.0), Some(20.0));
        assert_eq!(w.input(1, 15.0), None, "back, behind: the watermark does not go back");
        assert_eq!(w.input(0, 30.0), None, "and it holds the others back again");
        assert_eq!(w.input(1, 25.0), Some(25.0));
    }
}
