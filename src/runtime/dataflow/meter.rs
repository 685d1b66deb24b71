//! What an instance thread records about a node as it runs, without a lock:
//! records in and out, errors, and a histogram of time per record. Every
//! instance of the node adds to the same meter; a reader takes a
//! [`NodeStats`] when it likes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::workflow::histogram::{bucket, Histogram, BUCKETS};
use crate::workflow::NodeStats;

/// One record in this many is timed in per-record operators.
pub const SAMPLE_EVERY: u32 = 64;

pub struct Meter {
    records_in: AtomicU64,
    records_out: AtomicU64,
    errors: AtomicU64,
    time: Box<[AtomicU64]>,
    late: AtomicU64,
    /// Each instance's watermark (ms), once it has one: set once per batch
    /// at most, never per record.
    watermarks: std::sync::Mutex<Vec<(usize, i64)>>,
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            time: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            late: AtomicU64::new(0),
            watermarks: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl Meter {
    pub fn count(&self, records_in: usize, records_out: usize) {
        if records_in > 0 {
            self.records_in.fetch_add(records_in as u64, Ordering::Relaxed);
        }
        if records_out > 0 {
            self.records_out.fetch_add(records_out as u64, Ordering::Relaxed);
        }
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the time one record took (or a batch's average).
    pub fn time(&self, per_record: Duration) {
        let ns = u64::try_from(per_record.as_nanos()).unwrap_or(u64::MAX);
        self.time[bucket(ns)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn late(&self, records: usize) {
        self.late.fetch_add(records as u64, Ordering::Relaxed);
    }

    /// Instance `instance` is at watermark `wm` (seconds).
    pub fn watermark(&self, instance: usize, wm: f64) {
        let ms = (wm * 1000.0).floor() as i64;
        let mut all = self.watermarks.lock().expect("watermarks lock");
        match all.iter_mut().find(|(i, _)| *i == instance) {
            Some(slot) => slot.1 = ms,
            None => all.push((instance, ms)),
        }
    }

    /// What it holds now (no queue: that is the stage's).
    pub fn read(&self) -> NodeStats {
        NodeStats {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            queued: 0,
            capacity: 0,
            time: Histogram::from_dense(self.time.iter().map(|b| b.load(Ordering::Relaxed))),
            watermark_ms: self.watermarks.lock().expect("watermarks lock").iter().map(|(_, ms)| *ms).min(),
            late: self.late.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_reads_back_what_was_recorded() {
        let m = Meter::default();
        m.count(3, 2);
        m.count(1, 0);
        m.error();
        m.time(Duration::from_micros(5));
        m.time(Duration::from_micros(5));
        let s = m.read();
        assert_eq!((s.records_in, s.records_out, s.errors, s.time.len()), (4, 2, 1, 2));
        let p99 = s.p99_us().unwrap();
        assert!((5.0..=6.25).contains(&p99), "{p99}");
    }
}
