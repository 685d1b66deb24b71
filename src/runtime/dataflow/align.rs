//! Barrier alignment for an instance with several input channels (one per
//! upstream instance and edge): once a channel has delivered checkpoint
//! N's barrier, what it sends next is held until every other channel has
//! delivered it too (or ended). The instance's state then covers exactly
//! the records sent before the barrier on every channel — nothing of what
//! follows it, which a restore reads again. No I/O: messages go in, what
//! to do comes out.

use std::collections::VecDeque;

use super::{Barrier, Msg};

/// What to do with a message offered to the aligner.
#[derive(Debug)]
pub enum Offer {
    /// Process it now.
    Process(Msg),
    /// It waits behind a barrier (or is one that others are still missing).
    Held,
    /// Every channel has delivered this barrier or ended: snapshot, pass
    /// the barrier on, then take the held messages (`next_held`).
    Aligned(Barrier),
    /// Every channel has ended.
    AllEnded,
}

pub struct Aligner {
    /// Per channel: it delivered the barrier being aligned.
    blocked: Vec<bool>,
    ended: Vec<bool>,
    /// The barrier being aligned.
    pending: Option<Barrier>,
    held: VecDeque<(u32, Msg)>,
}

/// A message came on a channel the instance does not have, or broke the
/// order barriers keep.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AlignError {
    #[error("a message came on input channel {channel}, but there are {channels}")]
    UnknownChannel { channel: u32, channels: usize },
    #[error("input channel {channel} ended twice")]
    EndedTwice { channel: u32 },
    #[error("checkpoint {got}'s barrier came while checkpoint {aligning}'s was being aligned")]
    OutOfOrder { got: u64, aligning: u64 },
}

impl Aligner {
    pub fn new(channels: usize) -> Aligner {
        Aligner { blocked: vec![false; channels], ended: vec![false; channels], pending: None, held: VecDeque::new() }
    }

    /// A held message whose channel is no longer blocked, to offer again.
    pub fn next_held(&mut self) -> Option<(u32, Msg)> {
        if self.pending.is_some() {
            // Only messages of channels that were blocked wait here, and
            // they are all blocked again until this barrier aligns: no
            // held message may overtake one before it on its channel.
            let i = self.held.iter().position(|(c, _)| !self.blocked[*c as usize])?;
            return self.held.remove(i);
        }
        self.held.pop_front()
    }

    pub fn offer(&mut self, channel: u32, msg: Msg) -> Result<Offer, AlignError> {
        let c = channel as usize;
        if c >= self.blocked.len() {
            return Err(AlignError::UnknownChannel { channel, channels: self.blocked.len() });
        }
        if self.blocked[c] {
            self.held.push_back((channel, msg));
            return Ok(Offer::Held);
        }
        match msg {
            Msg::Barrier(b) => {
                match self.pending {
                    Some(p) if p.id != b.id => return Err(AlignError::OutOfOrder { got: b.id, aligning: p.id }),
                    _ => self.pending = Some(b),
                }
                self.blocked[c] = true;
                Ok(self.aligned().map_or(Offer::Held, Offer::Aligned))
            }
            Msg::End => {
                if self.ended[c] {
                    return Err(AlignError::EndedTwice { channel });
                }
                self.ended[c] = true;
                if let Some(b) = self.aligned() {
                    return Ok(Offer::Aligned(b));
                }
                Ok(if self.ended.iter().all(|&e| e) { Offer::AllEnded } else { Offer::Held })
            }
            other => Ok(Offer::Process(other)),
        }
    }

    /// The pending barrier, released, if every channel delivered it or ended.
    fn aligned(&mut self) -> Option<Barrier> {
        let p = self.pending?;
        if !self.blocked.iter().zip(&self.ended).all(|(&b, &e)| b || e) {
            return None;
        }
        self.pending = None;
        self.blocked.fill(false);
        Some(p)
    }

    /// Whether every channel has ended (nothing is held).
    pub fn all_ended(&self) -> bool {
        self.ended.iter().all(|&e| e) && self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(n: i64) -> Msg {
        Msg::Records(0, vec![rhai::Dynamic::from_int(n)])
    }

    fn barrier(id: u64) -> Msg {
        Msg::Barrier(Barrier { id })
    }

    fn value(m: &Msg) -> i64 {
        match m {
            Msg::Records(_, r) => r[0].as_int().unwrap(),
            other => panic!("not records: {other:?}"),
        }
    }

    /// Offers everything, taking held messages first as the stage does;
    /// returns what was processed and where barriers aligned.
    fn run(a: &mut Aligner, input: Vec<(u32, Msg)>) -> Vec<String> {
        let mut out = Vec::new();
        let mut input = input.into_iter();
        loop {
            let (c, m) = match a.next_held() {
                Some(x) => x,
                None => match input.next() {
                    Some(x) => x,
                    None => return out,
                },
            };
            match a.offer(c, m).unwrap() {
                Offer::Process(m) => out.push(value(&m).to_string()),
                Offer::Held => {}
                Offer::Aligned(b) => out.push(format!("snapshot {}", b.id)),
                Offer::AllEnded => out.push("end".into()),
            }
        }
    }

    #[test]
    fn records_behind_a_barrier_wait_until_every_channel_brought_it() {
        let mut a = Aligner::new(2);
        let got = run(&mut a, vec![(0, recs(1)), (0, barrier(1)), (0, recs(2)), (1, recs(3)), (1, barrier(1)), (1, recs(4))]);
        assert_eq!(got, ["1", "3", "snapshot 1", "2", "4"]);
    }

    #[test]
    fn an_ended_channel_does_not_hold_the_others_back() {
        let mut a = Aligner::new(2);
        let got = run(&mut a, vec![(0, barrier(1)), (0, recs(2)), (1, recs(3)), (1, Msg::End), (0, Msg::End)]);
        assert_eq!(got, ["3", "snapshot 1", "2", "end"]);
        assert!(a.all_ended());
    }

    #[test]
    fn a_second_barrier_on_a_fast_channel_waits_its_turn() {
        let mut a = Aligner::new(2);
        let got = run(&mut a, vec![(0, barrier(1)), (0, recs(1)), (0, barrier(2)), (0, recs(2)), (1, barrier(1)), (1, barrier(2))]);
        assert_eq!(got, ["snapshot 1", "1", "snapshot 2", "2"]);
    }

    #[test]
    fn one_channel_aligns_at_once() {
        let mut a = Aligner::new(1);
        assert_eq!(run(&mut a, vec![(0, recs(1)), (0, barrier(7)), (0, recs(2)), (0, Msg::End)]), ["1", "snapshot 7", "2", "end"]);
    }

    #[test]
    fn a_channel_that_does_not_exist_or_ends_twice_is_an_error() {
        let mut a = Aligner::new(1);
        assert_eq!(a.offer(3, Msg::End).unwrap_err(), AlignError::UnknownChannel { channel: 3, channels: 1 });
        a.offer(0, Msg::End).unwrap();
        assert_eq!(a.offer(0, Msg::End).unwrap_err(), AlignError::EndedTwice { channel: 0 });
    }
}
