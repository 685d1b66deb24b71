//! The loop a source instance runs: it reads batch after batch and sends
//! them on, passes checkpoint barriers where they fall between batches, and
//! notes where the source was when it stops. A line source whose lines all
//! leave by one outlet hands them over as blocks of text (`lines`): the
//! stage they go to makes the records.

use std::time::Duration;

use super::call::Calls;
use super::error::FlowError;
use super::operators::Step;
use super::running::Running;
use super::source::SourceReader;
use super::stage::{StageRun, Target};
use super::{Barrier, BATCH};

impl StageRun {
    pub(super) fn run_source(&mut self, calls: &Calls, running: &Running) -> Result<(), FlowError> {
        let Step::Source(spec) = &self.steps[0] else { unreachable!("checked by caller") };
        let mut reader = SourceReader::open(spec.clone(), &self.names[0], (self.instance, self.instances), running, self.at.clone())?;
        if self.routes[0].get(1).is_some_and(|targets| !targets.is_empty()) {
            reader.keep_rejects();
        }
        // A line source whose lines all leave by one outlet hands them over
        // as blocks of text: the stage they go to makes the records.
        let lines_out = match self.routes[0].split_first() {
            Some((first, rest)) if reader.reads_lines() && rest.iter().all(Vec::is_empty) => match first.as_slice() {
                [Target::Outlet(o)] => Some(*o),
                _ => None,
            },
            _ => None,
        };
        let seen = std::cell::Cell::new(0);
        let barriers = self.barriers.clone();
        let barrier_due = || barriers.as_ref().and_then(|b| b.due(seen.get()));
        let stopping = || running.stop_requested() || running.has_ended() || barrier_due().is_some();
        loop {
            if running.has_ended() {
                return Err(FlowError::Ended);
            }
            if let Some(id) = barrier_due() {
                seen.set(id);
                reader.mark(id);
                self.at = Some(reader.position());
                self.pass_barrier(running, Barrier { id }, Duration::ZERO)?;
            }
            if running.stop_requested() {
                self.at = Some(reader.position());
                return Ok(());
            }
            // What was read, sent on: how many records, and whether a full batch.
            let sent = match lines_out {
                Some(o) => match reader.next_lines(&self.names[0], &stopping)? {
                    Some(block) => {
                        let n = block.len();
                        running.count(self.nodes[0], 0, n);
                        self.outlets[o].push_lines(calls, block)?;
                        Some((n, n >= BATCH))
                    }
                    None => None,
                },
                None => match reader.next_batch(calls, &self.names[0], &stopping)? {
                    Some(batch) => {
                        let full = batch.len() >= BATCH;
                        let rejects = reader.take_rejects();
                        let n = batch.len() + rejects.len();
                        running.count(self.nodes[0], 0, n);
                        if !batch.is_empty() {
                            self.route(calls, running, 0, 0, batch)?;
                        }
                        if !rejects.is_empty() {
                            self.route(calls, running, 0, 1, rejects)?;
                        }
                        Some((n, full))
                    }
                    None => None,
                },
            };
            let Some((n, full)) = sent else {
                self.at = Some(reader.position());
                return Ok(());
            };
            if n > 0 {
                self.made_time(calls, running)?;
            }
            self.clock(calls, running)?;
            self.flush(running, if full { BATCH } else { 1 })?;
        }
    }
}
