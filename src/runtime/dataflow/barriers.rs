//! The meeting point of a process's instances and its checkpoint driver:
//! the driver asks for checkpoint N, sources see it between two batches
//! and send its barrier on; every instance here hands in what it took as
//! the barrier passed, or what it had when it ended. Once every instance
//! here has answered, this process's part of N goes to the driver.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::snapshot::{InstanceTaken, Taken};

/// What the driver hears from the instances.
#[derive(Debug)]
pub enum PartEvent {
    /// Every instance here passed checkpoint `id`'s barrier (or had ended).
    Taken { id: u64, instances: Vec<InstanceTaken> },
    /// Every instance here has ended: what they held last, and what their
    /// sinks were given since the last checkpoint.
    Ended { instances: Vec<InstanceTaken> },
}

pub struct Barriers {
    /// The checkpoint whose barrier sources send next (0: none yet).
    requested: AtomicU64,
    /// Instances in this process.
    instances: usize,
    gathered: Mutex<Gathered>,
    events: mpsc::UnboundedSender<PartEvent>,
}

#[derive(Default)]
struct Gathered {
    /// The checkpoint being gathered, with what each instance took for it.
    current: u64,
    got: HashMap<(usize, usize), InstanceTaken>,
    /// What ended instances held last. Their sinks' output since their
    /// last barrier goes to the first checkpoint after their end; later
    /// ones carry the state alone.
    ended: HashMap<(usize, usize), InstanceTaken>,
}

impl Barriers {
    pub fn new(instances: usize) -> (Barriers, mpsc::UnboundedReceiver<PartEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        (Barriers { requested: AtomicU64::new(0), instances, gathered: Mutex::default(), events }, rx)
    }

    /// Asks the sources for checkpoint `id`'s barrier.
    pub fn request(&self, id: u64) {
        let mut g = self.gathered.lock().expect("barriers lock");
        g.current = id;
        g.got.clear();
        self.requested.store(id, Ordering::Release);
        self.check(&mut g);
    }

    /// The checkpoint a source should send a barrier for, if it is newer
    /// than `seen` (the last one it sent).
    pub fn due(&self, seen: u64) -> Option<u64> {
        let id = self.requested.load(Ordering::Acquire);
        (id > seen).then_some(id)
    }

    /// An instance passed checkpoint `id`'s barrier and took this.
    pub fn took(&self, id: u64, taken: InstanceTaken) {
        let mut g = self.gathered.lock().expect("barriers lock");
        if id != g.current {
            return; // An abandoned checkpoint.
        }
        g.got.insert((taken.stage, taken.instance), taken);
        self.check(&mut g);
    }

    /// An instance ended, holding this.
    pub fn ended(&self, taken: InstanceTaken) {
        let mut g = self.gathered.lock().expect("barriers lock");
        g.ended.insert((taken.stage, taken.instance), taken);
        self.check(&mut g);
        if g.ended.len() == self.instances {
            let instances = g.ended.drain().map(|(_, t)| t).collect();
            let _ = self.events.send(PartEvent::Ended { instances });
        }
    }

    /// Hands the current checkpoint to the driver once every instance here
    /// answered for it.
    fn check(&self, g: &mut Gathered) {
        if g.current == 0 || g.got.len() + g.ended.keys().filter(|k| !g.got.contains_key(k)).count() < self.instances {
            return;
        }
        let mut instances: Vec<InstanceTaken> = g.got.drain().map(|(_, t)| t).collect();
        for taken in g.ended.values_mut() {
            if instances.iter().any(|t| (t.stage, t.instance) == (taken.stage, taken.instance)) {
                continue;
            }
            instances.push(taken.clone());
            // The output goes with this checkpoint, once.
            for node in &mut taken.nodes {
                match node {
                    Taken::Lines(bytes) => bytes.clear(),
                    Taken::Collected(records) => records.clear(),
                    _ => {}
                }
            }
        }
        let id = std::mem::take(&mut g.current);
        let _ = self.events.send(PartEvent::Taken { id, instances });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(stage: usize, done: bool, line: &str) -> InstanceTaken {
        InstanceTaken { stage, instance: 0, done, nodes: vec![Taken::Lines(line.as_bytes().to_vec())], alignment: Default::default() }
    }

    fn lines(t: &InstanceTaken) -> String {
        match &t.nodes[0] {
            Taken::Lines(b) => String::from_utf8(b.clone()).unwrap(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_part_is_handed_over_once_every_instance_answered() {
        let (b, mut rx) = Barriers::new(2);
        assert_eq!(b.due(0), None);
        b.request(1);
        assert_eq!(b.due(0), Some(1));
        assert_eq!(b.due(1), None);
        b.took(1, taken(0, false, "a"));
        assert!(rx.try_recv().is_err());
        b.took(1, taken(1, false, "b"));
        let PartEvent::Taken { id: 1, instances } = rx.try_recv().unwrap() else { panic!() };
        assert_eq!(instances.len(), 2);
    }

    #[test]
    fn an_ended_instance_answers_for_later_checkpoints_and_its_output_goes_once() {
        let (b, mut rx) = Barriers::new(2);
        b.ended(taken(1, true, "last\n"));
        b.request(1);
        b.took(1, taken(0, false, ""));
        let PartEvent::Taken { instances, .. } = rx.try_recv().unwrap() else { panic!() };
        let ended = instances.iter().find(|t| t.stage == 1).unwrap();
        assert_eq!(lines(ended), "last\n");
        b.request(2);
        b.took(1, taken(0, false, "")); // stale: ignored
        b.took(2, taken(0, false, ""));
        let PartEvent::Taken { id: 2, instances } = rx.try_recv().unwrap() else { panic!() };
        assert_eq!(lines(instances.iter().find(|t| t.stage == 1).unwrap()), "", "its output went with checkpoint 1");
        b.ended(taken(0, true, "end\n"));
        let PartEvent::Ended { instances } = rx.try_recv().unwrap() else { panic!() };
        assert_eq!(instances.len(), 2);
    }
}
