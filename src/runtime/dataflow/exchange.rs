//! How records leave a stage for another: one small type per exchange
//! (spread, forward, hash), each buffering what it was given and handing out
//! batches per target instance. An [`Outlet`] sends those batches to the
//! target's inbox, here or on another worker. Pushers know nothing of
//! channels, so they are tested alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::Dynamic;

use super::call::{Callee, Calls};
use super::channel::{self, Unsent};
use super::error::{script_error, FlowError};
use super::lines::LineBlock;
use super::running::Running;
use super::{Msg, Remote, BATCH};
use crate::workflow::key::{Key, KeyMap};
use crate::workflow::Func;

/// An instance's inbox, here or on another worker.
#[derive(Clone)]
pub enum Inbox {
    Local(tokio::sync::mpsc::Sender<super::Delivery>),
    Remote { worker: usize, stage: usize, instance: usize },
}

/// Batches go round-robin over the target instances (out of a source).
pub struct Spread {
    /// A line source's blocks, each a batch, sent before `buf` (which only
    /// holds what came after them).
    blocks: std::collections::VecDeque<LineBlock>,
    buf: Vec<Dynamic>,
    next: usize,
    targets: usize,
}

impl Spread {
    pub fn new(targets: usize, start: usize) -> Spread {
        Spread { blocks: Default::default(), buf: Vec::new(), next: start, targets }
    }

    fn push_lines(&mut self, block: LineBlock) {
        match self.buf.is_empty() {
            true => self.blocks.push_back(block),
            // Behind records held here: the lines go out after them.
            false => self.buf.extend(block.records()),
        }
    }

    fn ready(&mut self, min: usize, out: &mut Vec<(usize, Msg)>) {
        while self.blocks.front().is_some_and(|b| b.len() >= min) {
            let block = self.blocks.pop_front().expect("a block is there");
            self.next = (self.next + 1) % self.targets;
            out.push((self.next, Msg::Lines(0, block)));
        }
        if !self.blocks.is_empty() {
            // A short block waits, and what came after it waits behind it.
            return;
        }
        while self.buf.len() >= min {
            let take = self.buf.len().min(BATCH.max(min));
            self.next = (self.next + 1) % self.targets;
            out.push((self.next, Msg::Records(0, self.buf.drain(..take).collect())));
        }
    }
}

/// Instance `i` sends to instance `i`: the data stays on its slot.
pub struct Forward {
    buf: Vec<Dynamic>,
    target: usize,
}

impl Forward {
    pub fn new(targets: usize, instance: usize) -> Forward {
        Forward { buf: Vec::new(), target: instance % targets }
    }

    fn ready(&mut self, min: usize, out: &mut Vec<(usize, Msg)>) {
        while self.buf.len() >= min {
            let take = self.buf.len().min(BATCH.max(min));
            out.push((self.target, Msg::Records(0, self.buf.drain(..take).collect())));
        }
    }
}

/// By the stable hash of the record's key into key groups.
pub struct Hash {
    /// `None`: the record is its own key.
    key: Option<Callee>,
    /// Whether the target needs the record beside its key (a count needs
    /// only the key, so the record is not copied).
    with_record: bool,
    /// For a `count` target: counts per key and target, combined here, so a
    /// word travels once per batch of counts rather than once per occurrence.
    partial: Option<Vec<KeyMap<i64>>>,
    keyed: Vec<Vec<(Key, Dynamic)>>,
}

impl Hash {
    pub fn new(targets: usize, key: Option<Func>, counting: bool) -> Hash {
        Hash {
            key: key.map(|f| Callee::new(f, 1)),
            with_record: !counting,
            partial: counting.then(|| (0..targets).map(|_| KeyMap::default()).collect()),
            keyed: vec![Vec::new(); targets],
        }
    }

    fn push(&mut self, calls: &Calls, operator: &str, records: Vec<Dynamic>) -> Result<(), FlowError> {
        let n = self.keyed.len() as u64;
        for rec in records {
            let (key, rec) = match (&self.key, self.with_record) {
                (None, false) => (Key::new(rec), Dynamic::UNIT),
                (None, true) => (Key::new(rec.clone()), rec),
                (Some(f), keep) => {
                    let key = calls.call_with(f, [&rec]).map_err(|e| script_error(operator, Some(&rec), &e))?;
                    (Key::new(key), if keep { rec } else { Dynamic::UNIT })
                }
            };
            let target = (key.group() % n) as usize;
            match &mut self.partial {
                Some(partial) => *partial[target].entry(key).or_insert(0) += 1,
                None => self.keyed[target].push((key, rec)),
            }
        }
        Ok(())
    }

    fn ready(&mut self, min: usize, out: &mut Vec<(usize, Msg)>) {
        for (i, keyed) in self.keyed.iter_mut().enumerate() {
            if keyed.len() >= min {
                out.push((i, Msg::Keyed(0, std::mem::take(keyed))));
            }
        }
        if let Some(partial) = &mut self.partial {
            for (i, counts) in partial.iter_mut().enumerate() {
                if counts.len() >= min {
                    // Drained, not taken: the map keeps its table for the next batch.
                    out.push((i, Msg::Counts(counts.drain().collect())));
                }
            }
        }
    }
}

/// By the target's route function: `route(record, port, instances)`.
pub struct Route {
    route: Func,
    /// The target's input port, as the function sees it.
    port: Dynamic,
    bufs: Vec<Vec<Dynamic>>,
}

impl Route {
    pub fn new(targets: usize, route: Func, port: &str) -> Route {
        Route { route, port: Dynamic::from(port.to_string()), bufs: vec![Vec::new(); targets] }
    }

    fn push(&mut self, calls: &Calls, operator: &str, records: Vec<Dynamic>) -> Result<(), FlowError> {
        let n = self.bufs.len();
        for rec in records {
            let chosen = calls
                .call(&self.route, [rec.clone(), self.port.clone(), Dynamic::from_int(n as i64)])
                .map_err(|e| script_error(operator, Some(&rec), &e))?;
            match chosen.as_int() {
                Ok(i) if i >= 0 && (i as usize) < n => self.bufs[i as usize].push(rec),
                _ => {
                    return Err(FlowError::Operator {
                        operator: operator.to_string(),
                        reason: format!(
                            "the strategy's route chose instance {chosen} for record {}, but there are {n} (0 to {})",
                            super::error::shown(&rec),
                            n - 1
                        ),
                    })
                }
            }
        }
        Ok(())
    }

    fn ready(&mut self, min: usize, out: &mut Vec<(usize, Msg)>) {
        for (i, buf) in self.bufs.iter_mut().enumerate() {
            if buf.len() >= min {
                out.push((i, Msg::Records(0, std::mem::take(buf))));
            }
        }
    }
}

pub enum Pusher {
    Spread(Spread),
    Forward(Forward),
    Hash(Hash),
    Route(Route),
}

impl Pusher {
    /// Takes records to send; a hash pusher computes their keys here, so
    /// `operator` is the node whose key function runs.
    pub fn push(&mut self, calls: &Calls, operator: &str, records: Vec<Dynamic>) -> Result<(), FlowError> {
        match self {
            Pusher::Spread(p) => p.buf.extend(records),
            Pusher::Forward(p) => p.buf.extend(records),
            Pusher::Hash(p) => p.push(calls, operator, records)?,
            Pusher::Route(p) => p.push(calls, operator, records)?,
        }
        Ok(())
    }

    /// Whether what waits here goes on by the batch deadline. Partial
    /// counts wait for full batches: a count shows nothing until its input
    /// ends, so sending them sooner would only cost.
    fn has_deadline(&self) -> bool {
        !matches!(self, Pusher::Hash(h) if h.partial.is_some())
    }

    /// Whether no record waits here.
    pub fn is_empty(&self) -> bool {
        match self {
            Pusher::Spread(p) => p.blocks.is_empty() && p.buf.is_empty(),
            Pusher::Forward(p) => p.buf.is_empty(),
            Pusher::Hash(p) => p.keyed.iter().all(Vec::is_empty) && p.partial.as_ref().is_none_or(|c| c.iter().all(|m| m.is_empty())),
            Pusher::Route(p) => p.bufs.iter().all(Vec::is_empty),
        }
    }

    /// The batches holding at least `min` records, with their target instance.
    pub fn ready(&mut self, min: usize) -> Vec<(usize, Msg)> {
        let mut out = Vec::new();
        let min = min.max(1);
        match self {
            Pusher::Spread(p) => p.ready(min, &mut out),
            Pusher::Forward(p) => p.ready(min, &mut out),
            Pusher::Hash(p) => p.ready(min, &mut out),
            Pusher::Route(p) => p.ready(min, &mut out),
        }
        out
    }
}

/// The sending side of one edge to another stage.
/// What an outlet tells its targets about event time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Time {
    Watermark(f64),
    Idle,
}

pub struct Outlet {
    pub pusher: Pusher,
    /// The node whose key function the pusher calls (the target).
    pub target_name: String,
    pub targets: Vec<Inbox>,
    /// The target's input port.
    pub port: u32,
    /// Which of the target's input channels this outlet is.
    pub from: u32,
    pub remote: Option<Arc<dyn Remote>>,
    /// Since when the oldest record held here has waited.
    pub held_since: Option<Instant>,
}

impl Outlet {
    pub fn push(&mut self, calls: &Calls, records: Vec<Dynamic>) -> Result<(), FlowError> {
        self.pusher.push(calls, &self.target_name, records)?;
        if self.held_since.is_none() && !self.pusher.is_empty() {
            self.held_since = Some(Instant::now());
        }
        Ok(())
    }

    /// Takes a line source's lines: as one block where the pusher deals
    /// batches out whole (the target makes the records), else as records.
    pub fn push_lines(&mut self, calls: &Calls, block: LineBlock) -> Result<(), FlowError> {
        if block.is_empty() {
            return Ok(());
        }
        match &mut self.pusher {
            Pusher::Spread(p) => p.push_lines(block),
            _ => return self.push(calls, block.records()),
        }
        if self.held_since.is_none() {
            self.held_since = Some(Instant::now());
        }
        Ok(())
    }

    /// Sends every batch holding at least `min` records.
    pub fn flush(&mut self, running: &Running, min: usize) -> Result<(), FlowError> {
        for (target, msg) in self.pusher.ready(min) {
            self.send(running, target, msg.to_port(self.port))?;
        }
        if self.pusher.is_empty() {
            self.held_since = None;
        }
        Ok(())
    }

    /// Sends what is held, full batches or not, once the oldest record
    /// has waited `deadline`.
    pub fn flush_due(&mut self, running: &Running, deadline: Duration) -> Result<(), FlowError> {
        if !self.pusher.has_deadline() {
            return Ok(());
        }
        match self.held_since {
            Some(t) if t.elapsed() >= deadline => self.flush(running, 1),
            _ => Ok(()),
        }
    }

    /// Sends what is left, then the end-of-stream marker to every target.
    pub fn end(&mut self, running: &Running) -> Result<(), FlowError> {
        self.flush(running, 1)?;
        for t in 0..self.targets.len() {
            self.send(running, t, Msg::End)?;
        }
        Ok(())
    }

    /// Sends checkpoint `barrier`'s marker to every target, after what is
    /// held here (flushed by the caller).
    pub fn barrier(&mut self, running: &Running, barrier: super::Barrier) -> Result<(), FlowError> {
        self.flush(running, 1)?;
        for t in 0..self.targets.len() {
            self.send(running, t, Msg::Barrier(barrier))?;
        }
        Ok(())
    }

    /// Sends a watermark (or that the sender is idle) to every target,
    /// after what is held here.
    pub fn time(&mut self, running: &Running, time: Time) -> Result<(), FlowError> {
        self.flush(running, 1)?;
        for t in 0..self.targets.len() {
            self.send(
                running,
                t,
                match time {
                    Time::Watermark(wm) => Msg::Watermark(wm),
                    Time::Idle => Msg::Idle,
                },
            )?;
        }
        Ok(())
    }

    fn send(&self, running: &Running, target: usize, msg: Msg) -> Result<(), FlowError> {
        if running.has_ended() {
            return Err(FlowError::Ended);
        }
        match &self.targets[target] {
            Inbox::Local(to) => channel::send(running.handle(), to, (self.from, msg), running.ended()).map_err(|why| match why {
                Unsent::Ended => FlowError::Ended,
                // An instance here ended before its input did: it failed, and
                // said why.
                Unsent::Closed => FlowError::Ended,
            }),
            Inbox::Remote { worker, stage, instance } => {
                let remote = self.remote.as_ref().ok_or_else(|| FlowError::Internal("a remote instance without a network".into()))?;
                remote.send(*worker, *stage, *instance, self.from, msg, running.ended())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(n: i64) -> Vec<Dynamic> {
        (0..n).map(Dynamic::from_int).collect()
    }

    fn sizes(batches: &[(usize, Msg)]) -> Vec<(usize, usize)> {
        batches
            .iter()
            .map(|(t, m)| match m {
                Msg::Records(_, r) => (*t, r.len()),
                Msg::Lines(_, l) => (*t, l.len()),
                Msg::Keyed(_, r) => (*t, r.len()),
                Msg::Counts(r) => (*t, r.len()),
                Msg::End | Msg::Barrier(_) | Msg::Watermark(_) | Msg::Idle => (*t, 0),
            })
            .collect()
    }

    #[test]
    fn spread_deals_blocks_of_lines_whole_and_what_follows_a_block_after_it() {
        let mut p = Spread::new(2, 0);
        let full: Vec<String> = (0..BATCH).map(|i| i.to_string()).collect();
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        p.push_lines(LineBlock::of(&full));
        p.push_lines(LineBlock::of(&["a", "b"]));
        p.buf.extend(ints(1));
        // Behind held records, lines become records.
        p.push_lines(LineBlock::of(&["c"]));
        let mut out = Vec::new();
        p.ready(BATCH, &mut out);
        assert_eq!(sizes(&out), vec![(1, BATCH)]);
        assert!(matches!(out[0].1, Msg::Lines(..)));
        out.clear();
        // The short block waits for a smaller minimum, and the records behind it too.
        p.ready(2, &mut out);
        assert_eq!(sizes(&out), vec![(0, 2), (1, 2)]);
        let shown: Vec<Vec<String>> = out
            .iter()
            .map(|(_, m)| match m {
                Msg::Lines(_, l) => l.lines().map(String::from).collect(),
                Msg::Records(_, r) => r.iter().map(|v| v.to_string()).collect(),
                other => panic!("not records: {other:?}"),
            })
            .collect();
        assert_eq!(shown, [vec!["a", "b"], vec!["0", "c"]]);
    }

    #[test]
    fn spread_deals_full_batches_round_robin_and_keeps_the_rest_until_asked() {
        let mut p = Spread::new(3, 0);
        p.buf.extend(ints(2 * BATCH as i64 + 5));
        let mut out = Vec::new();
        p.ready(BATCH, &mut out);
        assert_eq!(sizes(&out), vec![(1, BATCH), (2, BATCH)]);
        out.clear();
        p.ready(1, &mut out);
        assert_eq!(sizes(&out), vec![(0, 5)]);
    }

    #[test]
    fn forward_keeps_records_on_their_slot() {
        let mut p = Forward::new(4, 6);
        p.buf.extend(ints(3));
        let mut out = Vec::new();
        p.ready(1, &mut out);
        assert_eq!(sizes(&out), vec![(2, 3)]);
    }

    #[test]
    fn hash_sends_every_key_to_one_target_and_counting_combines_repeats() {
        let calls = Calls::new(&Default::default(), &crate::script::EngineEnv::new(None, Arc::new(|_: &str| {}))).unwrap();
        let words: Vec<Dynamic> = ["a", "b", "a", "c", "a"].iter().map(|w| Dynamic::from(w.to_string())).collect();
        let mut p = Hash::new(2, None, true);
        p.push(&calls, "count", words.clone()).unwrap();
        let mut out = Vec::new();
        p.ready(1, &mut out);
        let total: i64 = out.iter().map(|(_, m)| if let Msg::Counts(c) = m { c.iter().map(|(_, n)| n).sum::<i64>() } else { 0 }).sum();
        assert_eq!(total, 5);
        assert_eq!(out.iter().map(|(_, m)| if let Msg::Counts(c) = m { c.len() } else { 0 }).sum::<usize>(), 3, "a, b, c once each");
        let mut again = Hash::new(2, None, true);
        again.push(&calls, "count", words).unwrap();
        let mut out2 = Vec::new();
        again.ready(1, &mut out2);
        assert_eq!(sizes(&out), sizes(&out2), "the same keys go to the same targets");
    }
}
