//! When checkpoints start, complete and are given up, for a workflow
//! whose parts run in `parts` processes: `step(event) -> actions`, no I/O,
//! time enters as events. One checkpoint is in flight at a time; the next
//! starts an interval after the last one started (or at once when one is
//! asked for), and one whose parts do not all answer within the timeout is
//! given up. When the workflow's instances have all ended, a last
//! checkpoint records where they ended.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Tick(Instant),
    /// Someone asked for a checkpoint now (`checkpoint(r)`).
    Asked(Instant),
    /// Part `part` has answered for checkpoint `id`.
    Taken {
        id: u64,
        part: usize,
    },
    /// Checkpoint `id` is durable.
    Stored {
        id: u64,
        at: Instant,
    },
    /// Every instance of the workflow has ended.
    Ended,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask the sources for checkpoint `id`'s barriers.
    Start(u64),
    /// Every part answered: write checkpoint `id`.
    Store(u64),
    /// Checkpoint `id` completed, `took` after it started.
    Completed { id: u64, took: Duration },
    /// Checkpoint `id` will not complete.
    GiveUp { id: u64, reason: String },
    /// Write the last checkpoint, `id`, of the ended instances.
    StoreLast(u64),
}

struct InFlight {
    id: u64,
    started: Instant,
    got: BTreeSet<usize>,
    storing: bool,
}

pub struct Coordinator {
    /// Zero: only when asked.
    interval: Duration,
    timeout: Duration,
    parts: usize,
    next_id: u64,
    last_start: Instant,
    in_flight: Option<InFlight>,
    asked: bool,
    ended: bool,
    last_after_store: bool,
}

impl Coordinator {
    /// `first_id` follows the checkpoint a workflow resumed from.
    pub fn new(interval: Duration, timeout: Duration, parts: usize, first_id: u64, now: Instant) -> Coordinator {
        Coordinator {
            interval,
            timeout,
            parts,
            next_id: first_id.max(1),
            last_start: now,
            in_flight: None,
            asked: false,
            ended: false,
            last_after_store: false,
        }
    }

    /// The checkpoint in flight, if any.
    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight.as_ref().map(|f| f.id)
    }

    pub fn step(&mut self, event: Event) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Tick(now) => {
                if let Some(f) = &self.in_flight {
                    if !f.storing && now.duration_since(f.started) >= self.timeout {
                        let missing: Vec<String> = (0..self.parts).filter(|p| !f.got.contains(p)).map(|p| p.to_string()).collect();
                        let reason = format!(
                            "it did not complete within {} (parts not answered: {})",
                            crate::settings::seconds(self.timeout),
                            missing.join(", ")
                        );
                        actions.push(Action::GiveUp { id: f.id, reason });
                        self.in_flight = None;
                    }
                }
                self.maybe_start(now, &mut actions);
            }
            Event::Asked(now) => {
                self.asked = true;
                self.maybe_start(now, &mut actions);
            }
            Event::Taken { id, part } => {
                if let Some(f) = self.in_flight.as_mut().filter(|f| f.id == id && !f.storing) {
                    f.got.insert(part);
                    if f.got.len() >= self.parts {
                        f.storing = true;
                        actions.push(Action::Store(id));
                    }
                }
            }
            Event::Stored { id, at } => {
                if let Some(f) = self.in_flight.take_if(|f| f.id == id) {
                    actions.push(Action::Completed { id, took: at.duration_since(f.started) });
                }
                if self.last_after_store {
                    self.last_after_store = false;
                    actions.push(self.last());
                }
            }
            Event::Ended => {
                self.ended = true;
                match self.in_flight.take() {
                    Some(f) if f.storing => {
                        // Its write is under way: the last one follows it.
                        self.in_flight = Some(f);
                        self.last_after_store = true;
                    }
                    // The last checkpoint covers what it would have.
                    Some(_) => actions.push(self.last()),
                    None => actions.push(self.last()),
                }
            }
        }
        actions
    }

    /// The workflow ended and its last checkpoint takes in whatever was
    /// in flight: its id. Nothing starts after it.
    pub fn finish(&mut self) -> u64 {
        self.ended = true;
        self.in_flight = None;
        self.last_after_store = false;
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn last(&mut self) -> Action {
        let id = self.next_id;
        self.next_id += 1;
        Action::StoreLast(id)
    }

    fn maybe_start(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.in_flight.is_some() || self.ended {
            return;
        }
        let due = !self.interval.is_zero() && now.duration_since(self.last_start) >= self.interval;
        if !(due || self.asked) {
            return;
        }
        self.asked = false;
        let id = self.next_id;
        self.next_id += 1;
        self.last_start = now;
        self.in_flight = Some(InFlight { id, started: now, got: BTreeSet::new(), storing: false });
        actions.push(Action::Start(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn checkpoints_start_an_interval_apart_and_complete_when_every_part_answered() {
        let t0 = Instant::now();
        let mut c = Coordinator::new(S, 10 * S, 2, 1, t0);
        assert!(c.step(Event::Tick(t0 + S / 2)).is_empty());
        assert_eq!(c.step(Event::Tick(t0 + S)), [Action::Start(1)]);
        assert!(c.step(Event::Tick(t0 + 3 * S)).is_empty(), "one at a time");
        assert!(c.step(Event::Taken { id: 1, part: 0 }).is_empty());
        assert!(c.step(Event::Taken { id: 1, part: 0 }).is_empty(), "a part counts once");
        assert_eq!(c.step(Event::Taken { id: 1, part: 1 }), [Action::Store(1)]);
        assert_eq!(c.step(Event::Stored { id: 1, at: t0 + 3 * S }), [Action::Completed { id: 1, took: 2 * S }]);
        assert_eq!(c.step(Event::Tick(t0 + 3 * S)), [Action::Start(2)], "the interval since the last start has passed");
    }

    #[test]
    fn a_checkpoint_whose_parts_do_not_answer_is_given_up_naming_them() {
        let t0 = Instant::now();
        let mut c = Coordinator::new(S, 5 * S, 3, 7, t0);
        assert_eq!(c.step(Event::Asked(t0)), [Action::Start(7)]);
        c.step(Event::Taken { id: 7, part: 1 });
        let actions = c.step(Event::Tick(t0 + 5 * S));
        assert!(
            matches!(&actions[0], Action::GiveUp { id: 7, reason } if reason.contains("within 5 s") && reason.contains("answered: 0, 2")),
            "{actions:?}"
        );
        assert_eq!(actions[1], Action::Start(8));
        assert!(c.step(Event::Taken { id: 7, part: 0 }).is_empty(), "a late answer to a given-up checkpoint is ignored");
    }

    #[test]
    fn the_end_supersedes_a_checkpoint_in_flight_but_waits_for_one_being_written() {
        let t0 = Instant::now();
        let mut c = Coordinator::new(Duration::ZERO, 5 * S, 1, 1, t0);
        assert!(c.step(Event::Tick(t0 + 100 * S)).is_empty(), "interval 0: only when asked");
        c.step(Event::Asked(t0));
        let actions = c.step(Event::Ended);
        assert_eq!(actions, [Action::StoreLast(2)], "the last checkpoint covers the one in flight");
        assert!(c.step(Event::Asked(t0)).is_empty(), "nothing starts after the end");

        let mut c = Coordinator::new(S, 5 * S, 1, 1, t0);
        c.step(Event::Tick(t0 + S));
        assert_eq!(c.step(Event::Taken { id: 1, part: 0 }), [Action::Store(1)]);
        assert!(c.step(Event::Ended).is_empty());
        assert_eq!(c.step(Event::Stored { id: 1, at: t0 + S }), [Action::Completed { id: 1, took: Duration::ZERO }, Action::StoreLast(2)]);
    }
}
