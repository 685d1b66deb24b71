//! Time in a stage instance: the watermark its `event_time` makes or its
//! inputs bring, moved through its nodes (windows close, timers fire) and
//! sent on; and the clock, for the nodes that want it (timers of the
//! clock, windows on processing time, an `event_time` going idle).

use super::call::Calls;
use super::error::FlowError;
use super::exchange::Time;
use super::operators::Step;
use super::running::Running;
use super::stage::StageRun;

impl StageRun {
    /// After a batch: the watermark the stage's `event_time` makes, on
    /// its way when it moved.
    pub(super) fn made_time(&mut self, calls: &Calls, running: &Running) -> Result<(), FlowError> {
        if !self.makes_time {
            return Ok(());
        }
        let made = self.steps.iter().filter_map(Step::watermark).fold(f64::INFINITY, f64::min);
        let resumed = self.steps.iter_mut().fold(false, |r, s| s.resumed() | r);
        match self.time.made(made) {
            Some(wm) => self.advance(calls, running, wm),
            // Back from idle: its watermark holds the others back again.
            None if resumed => self.outlets.iter_mut().try_for_each(|o| o.time(running, Time::Watermark(self.time.current()))),
            None => Ok(()),
        }
    }

    /// When a node of the stage wants the clock's attention.
    pub(super) fn wake(&self) -> Option<f64> {
        self.steps.iter().filter_map(Step::wake).reduce(f64::min)
    }

    /// Gives the clock to the nodes when one wanted it by now: timers of
    /// the clock fire, windows on processing time close, an `event_time`
    /// with no record for its `idle` seconds says so downstream.
    pub(super) fn clock(&mut self, calls: &Calls, running: &Running) -> Result<(), FlowError> {
        let Some(wake) = self.wake() else { return Ok(()) };
        let now = super::window::now();
        if wake > now {
            return Ok(());
        }
        for i in 0..self.steps.len() {
            let outputs = self.steps[i].on_clock(calls, &self.names[i], now)?;
            self.emit(calls, running, i, outputs)?;
        }
        let idle = self.steps.iter_mut().fold(false, |r, s| s.idle_due(now) | r);
        if idle {
            for o in &mut self.outlets {
                o.time(running, Time::Idle)?;
            }
        }
        Ok(())
    }

    /// The instance's watermark moved to `wm`: every node, in order, emits
    /// what it closes (windows), then the watermark follows what was sent
    /// on every outlet.
    pub(super) fn advance(&mut self, calls: &Calls, running: &Running, wm: f64) -> Result<(), FlowError> {
        for i in 0..self.steps.len() {
            running.watermark(self.nodes[i], self.instance, wm);
            let outputs = self.steps[i].on_watermark(calls, &self.names[i], wm)?;
            self.emit(calls, running, i, outputs)?;
        }
        for o in &mut self.outlets {
            o.time(running, Time::Watermark(wm))?;
        }
        Ok(())
    }

    /// Counts and sends on what node `i` emitted outside its input (at a
    /// watermark, at its end).
    pub(super) fn emit(&mut self, calls: &Calls, running: &Running, i: usize, outputs: super::Outputs) -> Result<(), FlowError> {
        let emitted: usize = outputs.iter().map(Vec::len).sum();
        if emitted > 0 {
            running.count(self.nodes[i], 0, emitted);
        }
        for (port, out) in outputs.into_iter().enumerate() {
            if !out.is_empty() {
                self.route(calls, running, i, port, out)?;
            }
        }
        Ok(())
    }
}
