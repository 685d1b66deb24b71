//! The loop one instance of a stage runs: a batch enters the head node,
//! each node's output goes straight to the next node of the stage (no
//! channel) or to an outlet for another stage. Records in and out of every
//! node are counted here, per batch, and the time calls take is sampled.

use std::time::{Duration, Instant};

use rhai::Dynamic;
use tokio::sync::mpsc;

use super::align::{Aligner, Offer};
use super::barriers::Barriers;
use super::call::Calls;
use super::channel;
use super::deadline;
use super::error::FlowError;
use super::event_time::Watermarks;
use super::exchange::Outlet;
use super::meter::SAMPLE_EVERY;
use super::operators::{One, Step};
use super::running::Running;
use super::snapshot::{InstanceTaken, Position, Taken};
use super::{Barrier, Delivery, Msg, BATCH, CHUNK};
use crate::workflow::key::Key;

/// Where a node's output port goes.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// Another node of the same stage (index into the stage's nodes).
    Local(usize),
    /// An exchange to another stage (index into the outlets).
    Outlet(usize),
}

/// One instance of one stage.
pub struct StageRun {
    pub names: Vec<String>,
    /// The flat node id of each step, for the counts.
    pub nodes: Vec<usize>,
    /// The input port of each step fed inside the stage (a fused node has
    /// one input edge); the head's input comes with each message.
    pub ports: Vec<usize>,
    pub steps: Vec<Step>,
    /// Per node, per output port: where its records go.
    pub routes: Vec<Vec<Vec<Target>>>,
    pub outlets: Vec<Outlet>,
    /// Per node, calls of its per-record function so far: the first and
    /// then one in [`SAMPLE_EVERY`] are timed.
    pub calls: Vec<u32>,
    /// Which stage, and which instance of it this is, of how many.
    pub stage: usize,
    pub instance: usize,
    pub instances: usize,
    /// Where checkpoints are gathered (none: checkpoints are off).
    pub barriers: Option<std::sync::Arc<Barriers>>,
    /// Restored from a checkpoint: where its source was, and whether it
    /// had ended (then it only ends again).
    pub at: Option<Position>,
    pub done: bool,
    /// Where event time is in this instance.
    pub time: Watermarks,
    /// Whether a node of the stage makes the watermark (`event_time`).
    pub makes_time: bool,
}

enum Input {
    Records(Vec<Dynamic>),
    Keyed(Vec<(Key, Dynamic)>),
}

impl StageRun {
    pub fn run(
        mut self,
        calls: &Calls,
        running: &Running,
        inbox: &mut mpsc::Receiver<Delivery>,
        expected_ends: usize,
    ) -> Result<(), FlowError> {
        if self.done {
            // What it made before its end is downstream already.
            self.report_end();
            for o in &mut self.outlets {
                o.end(running)?;
            }
            return Ok(());
        }
        if matches!(self.steps[0], Step::Source(_)) {
            self.run_source(calls, running)?;
        } else {
            self.run_inbox(calls, running, inbox, expected_ends)?;
        }
        for i in 0..self.steps.len() {
            // The end of the input is the end of time: every window closes
            // and every timer fires — except in a workflow stopped under
            // checkpoints, which keeps them in its last checkpoint for the
            // next deploy.
            if !(running.stop_requested() && self.barriers.is_some()) {
                let outputs = self.steps[i].on_watermark(calls, &self.names[i], f64::INFINITY)?;
                self.emit(calls, running, i, outputs)?;
            }
            let outputs = self.steps[i].finish(calls, &self.names[i])?;
            self.emit(calls, running, i, outputs)?;
        }
        self.flush(running, 1)?;
        // What it holds at its end (the sinks' last lines) is taken before
        // the end markers leave: the last checkpoint waits for it.
        self.report_end();
        for o in &mut self.outlets {
            o.end(running)?;
        }
        Ok(())
    }

    /// Hands what the instance holds at its end to the checkpoints.
    fn report_end(&mut self) {
        if let Some(barriers) = self.barriers.clone() {
            let taken = self.take(true);
            barriers.ended(taken);
        }
    }

    /// What every node of the instance keeps, for a checkpoint.
    fn take(&mut self, done: bool) -> InstanceTaken {
        let mut nodes: Vec<Taken> = self.steps.iter_mut().map(Step::take).collect();
        if let Some(at) = &self.at {
            nodes[0] = Taken::Position(at.clone());
        }
        InstanceTaken { stage: self.stage, instance: self.instance, done, nodes, alignment: Duration::ZERO }
    }

    /// Checkpoint `barrier`: takes the instance's state, sends everything
    /// before the barrier on, then the barrier itself. `alignment`: how
    /// long its inputs took to bring the barrier.
    pub(super) fn pass_barrier(&mut self, running: &Running, barrier: Barrier, alignment: Duration) -> Result<(), FlowError> {
        let mut taken = self.take(false);
        taken.alignment = alignment;
        self.flush(running, 1)?;
        for o in &mut self.outlets {
            o.barrier(running, barrier)?;
        }
        if let Some(barriers) = &self.barriers {
            barriers.took(barrier.id, taken);
        }
        Ok(())
    }

    fn run_inbox(
        &mut self,
        calls: &Calls,
        running: &Running,
        inbox: &mut mpsc::Receiver<Delivery>,
        expected_ends: usize,
    ) -> Result<(), FlowError> {
        let mut aligner = Aligner::new(expected_ends);
        // Since when the barrier being aligned has been arriving.
        let mut aligning: Option<Instant> = None;
        while !aligner.all_ended() {
            // Waiting for input, but not past when a node wants the clock.
            let wake = self.wake().map(|at| Instant::now() + Duration::from_secs_f64((at - super::window::now()).max(0.0)));
            let (from, msg) = match aligner.next_held() {
                Some(held) => held,
                None => match channel::recv_until(running.handle(), inbox, running.ended(), wake).map_err(|_| FlowError::Ended)? {
                    channel::Got::Msg(delivery) => delivery,
                    channel::Got::Timeout => {
                        self.clock(calls, running)?;
                        let min = if inbox.is_empty() { 1 } else { BATCH };
                        self.flush(running, min)?;
                        continue;
                    }
                    channel::Got::Closed => {
                        let why = format!("{}: an upstream stage ended without an end-of-stream marker", self.names[0]);
                        return Err(FlowError::Internal(why));
                    }
                },
            };
            if running.has_ended() {
                return Err(FlowError::Ended);
            }
            if matches!(msg, Msg::Barrier(_)) && aligning.is_none() {
                aligning = Some(Instant::now());
            }
            if matches!(msg, Msg::End) && !self.makes_time {
                // An input that ended holds no window back.
                if let Some(wm) = self.time.ended(from) {
                    self.advance(calls, running, wm)?;
                }
            }
            let offer = aligner.offer(from, msg).map_err(|e| FlowError::Internal(format!("{}: {e}", self.names[0])))?;
            match offer {
                Offer::Process(Msg::Records(port, records)) => {
                    self.process(calls, running, port as usize, Input::Records(records))?;
                    self.made_time(calls, running)?
                }
                Offer::Process(Msg::Lines(port, lines)) => {
                    self.process(calls, running, port as usize, Input::Records(lines.records()))?;
                    self.made_time(calls, running)?
                }
                Offer::Process(Msg::Keyed(port, records)) => {
                    self.process(calls, running, port as usize, Input::Keyed(records))?;
                    self.made_time(calls, running)?
                }
                Offer::Process(Msg::Counts(counts)) => {
                    running.count(self.nodes[0], counts.iter().map(|(_, n)| *n as usize).sum(), 0);
                    self.steps[0].add_counts(&self.names[0], counts)?
                }
                Offer::Process(Msg::Idle) => {
                    if let Some(wm) = self.time.idle(from).filter(|_| !self.makes_time) {
                        self.advance(calls, running, wm)?;
                    }
                }
                Offer::Process(Msg::Watermark(wm)) => {
                    // A stage with an `event_time` makes its own.
                    if let Some(wm) = self.time.input(from, wm).filter(|_| !self.makes_time) {
                        self.advance(calls, running, wm)?;
                    }
                }
                Offer::Process(Msg::End | Msg::Barrier(_)) => unreachable!("the aligner keeps ends and barriers"),
                Offer::Aligned(barrier) => {
                    let took = aligning.take().map_or(Duration::ZERO, |t| t.elapsed());
                    self.pass_barrier(running, barrier, took)?
                }
                Offer::Held | Offer::AllEnded => {}
            }
            self.clock(calls, running)?;
            // Hold records back only while more input is waiting, and not
            // past the batch deadline: an idle stage sends what it has, so
            // a slow stream still flows.
            let min = if inbox.is_empty() { 1 } else { BATCH };
            self.flush(running, min)?;
        }
        Ok(())
    }

    /// Sends the batches of at least `min` records, and whatever has
    /// waited the batch deadline.
    pub(super) fn flush(&mut self, running: &Running, min: usize) -> Result<(), FlowError> {
        let deadline = deadline::get();
        for o in &mut self.outlets {
            o.flush(running, min)?;
            o.flush_due(running, deadline)?;
        }
        Ok(())
    }

    /// Runs one input batch (for the head's input port `port`) through the
    /// stage's nodes, in order.
    fn process(&mut self, calls: &Calls, running: &Running, port: usize, input: Input) -> Result<(), FlowError> {
        self.ports[0] = port;
        let mut pending: Vec<Vec<Dynamic>> = vec![Vec::new(); self.steps.len()];
        match input {
            Input::Records(records) => pending[0] = records,
            Input::Keyed(pairs) if self.steps[0].is_keyed() => {
                let received = pairs.len();
                let began = Instant::now();
                let outputs = self.steps[0].apply_keyed(calls, &self.names[0], port, pairs)?;
                if let Some(late) = self.steps[0].late_port() {
                    running.late(self.nodes[0], outputs.get(late).map_or(0, Vec::len));
                }
                running.time(self.nodes[0], began.elapsed() / received.max(1) as u32);
                running.count(self.nodes[0], received, outputs.iter().map(Vec::len).sum());
                for (out_port, out) in outputs.into_iter().enumerate() {
                    self.deliver(calls, 0, out_port, out, &mut pending)?;
                }
                return self.run_nodes(calls, running, 1, &mut pending);
            }
            Input::Keyed(pairs) => pending[0] = pairs.into_iter().map(|(_, r)| r).collect(),
        }
        self.run_nodes(calls, running, 0, &mut pending)
    }

    /// Runs nodes `from..` of the stage on what is pending for them, in order.
    fn run_nodes(&mut self, calls: &Calls, running: &Running, from: usize, pending: &mut [Vec<Dynamic>]) -> Result<(), FlowError> {
        for i in from..self.steps.len() {
            let batch = std::mem::take(&mut pending[i]);
            if batch.is_empty() {
                continue;
            }
            if self.steps[i].per_record() {
                self.run_chain(calls, running, i, batch, pending)?;
            } else {
                self.apply_and_deliver(calls, running, i, batch, pending)?;
            }
        }
        Ok(())
    }

    /// The last node of the chain of per-record nodes that starts at node
    /// `i`: each feeds only the next (its port 0), so a record can go
    /// through all of them before the next record starts.
    fn chain_end(&self, i: usize) -> usize {
        let mut j = i;
        while j + 1 < self.steps.len()
            && self.steps[j + 1].per_record()
            && matches!(self.routes[j].first().map(Vec::as_slice), Some([Target::Local(next)]) if *next == j + 1)
        {
            j += 1;
        }
        j
    }

    /// Runs the chain of per-record nodes from `first` on `batch`, fused:
    /// each record goes through every function of the chain in turn, and
    /// no batch is made between them. What the chain emits moves on in
    /// small chunks, while the records it made are still in the cache
    /// (keying or sending a whole batch's output afterwards reads them all
    /// back from memory).
    fn run_chain(
        &mut self,
        calls: &Calls,
        running: &Running,
        first: usize,
        batch: Vec<Dynamic>,
        pending: &mut [Vec<Dynamic>],
    ) -> Result<(), FlowError> {
        let last = self.chain_end(first);
        let len = last - first + 1;
        let (mut received, mut emitted) = (vec![0; len], vec![0; len]);
        let mut rejected: Vec<Vec<Dynamic>> = vec![Vec::new(); len];
        // Whether each node has had a record of the current chunk.
        let mut started = vec![false; len];
        let mut stack: Vec<(usize, Dynamic)> = Vec::new();
        let mut records = batch.into_iter();
        // Room for as many records as the last chunk made.
        let mut made = CHUNK;
        while records.len() > 0 {
            let mut out = Vec::with_capacity(made);
            for rec in records.by_ref().take(CHUNK) {
                stack.push((first, rec));
                while let Some((k, rec)) = stack.pop() {
                    if !started[k - first] {
                        // What the nodes before it did is counted before a
                        // node's first call of the chunk: `stats()` shows
                        // where a slow or stuck function is.
                        started[k - first] = true;
                        Self::count_chain(running, &self.nodes[first..=last], &mut received, &mut emitted);
                    }
                    received[k - first] += 1;
                    self.calls[k] = self.calls[k].wrapping_add(1);
                    let result = if self.calls[k] % SAMPLE_EVERY == 1 {
                        let began = Instant::now();
                        let result = self.steps[k].one(calls, &self.names[k], rec);
                        running.time(self.nodes[k], began.elapsed());
                        result
                    } else {
                        self.steps[k].one(calls, &self.names[k], rec)
                    };
                    match result? {
                        One::Emit(v) => {
                            emitted[k - first] += 1;
                            if k == last {
                                out.push(v);
                            } else {
                                stack.push((k + 1, v));
                            }
                        }
                        One::Reject(v) => {
                            emitted[k - first] += 1;
                            rejected[k - first].push(v);
                        }
                        One::Many(items) => {
                            emitted[k - first] += items.len();
                            if k == last {
                                out.extend(items);
                            } else {
                                // Reversed on the stack, so they leave in order.
                                stack.extend(items.into_iter().rev().map(|v| (k + 1, v)));
                            }
                        }
                    }
                }
            }
            made = out.len().max(1);
            Self::count_chain(running, &self.nodes[first..=last], &mut received, &mut emitted);
            started.fill(false);
            self.deliver(calls, last, 0, out, pending)?;
            for (k, rejects) in rejected.iter_mut().enumerate() {
                if !rejects.is_empty() {
                    self.deliver(calls, first + k, 1, std::mem::take(rejects), pending)?;
                }
            }
        }
        Ok(())
    }

    /// Adds what the nodes of a chain received and emitted to the counts.
    fn count_chain(running: &Running, nodes: &[usize], received: &mut [usize], emitted: &mut [usize]) {
        for (k, &node) in nodes.iter().enumerate() {
            if received[k] > 0 || emitted[k] > 0 {
                running.count(node, std::mem::take(&mut received[k]), std::mem::take(&mut emitted[k]));
            }
        }
    }

    /// Runs node `i` on `batch` and sends its output on.
    fn apply_and_deliver(
        &mut self,
        calls: &Calls,
        running: &Running,
        i: usize,
        batch: Vec<Dynamic>,
        pending: &mut [Vec<Dynamic>],
    ) -> Result<(), FlowError> {
        let received = batch.len();
        let began = Instant::now();
        let outputs = self.steps[i].apply(calls, &self.names[i], self.ports[i], batch, running.ended())?;
        running.time(self.nodes[i], began.elapsed() / received.max(1) as u32);
        running.count(self.nodes[i], received, outputs.iter().map(Vec::len).sum());
        for (port, records) in outputs.into_iter().enumerate() {
            self.deliver(calls, i, port, records, pending)?;
        }
        Ok(())
    }

    /// Sends a node's output on: to later nodes of the stage or to outlets.
    fn deliver(
        &mut self,
        calls: &Calls,
        node: usize,
        port: usize,
        records: Vec<Dynamic>,
        pending: &mut [Vec<Dynamic>],
    ) -> Result<(), FlowError> {
        if records.is_empty() {
            return Ok(());
        }
        let targets = &self.routes[node][port];
        let mut records = Some(records);
        for (k, target) in targets.iter().enumerate() {
            let batch = if k + 1 == targets.len() {
                records.take().expect("moved only on the last target")
            } else {
                records.clone().expect("still here before the last target")
            };
            match *target {
                Target::Local(j) => pending[j].extend(batch),
                Target::Outlet(o) => self.outlets[o].push(calls, batch)?,
            }
        }
        Ok(())
    }

    /// Delivers a batch produced outside `process` (by a source or at the end).
    pub(super) fn route(
        &mut self,
        calls: &Calls,
        running: &Running,
        node: usize,
        port: usize,
        records: Vec<Dynamic>,
    ) -> Result<(), FlowError> {
        let mut pending: Vec<Vec<Dynamic>> = vec![Vec::new(); self.steps.len()];
        self.deliver(calls, node, port, records, &mut pending)?;
        self.run_nodes(calls, running, node + 1, &mut pending)
    }
}
