//! A histogram of durations with a fixed, logarithmic set of buckets: four
//! per power of two (each at most 25 % wider than its lower end), from 4 ns
//! to well past an hour. Recording is an index computation; histograms from
//! several instances or workers add up bucket by bucket, and a quantile is
//! read back within 25 %.

use serde::{Deserialize, Serialize};

/// How many buckets there are: enough for 2^42 ns (73 minutes).
pub const BUCKETS: usize = 4 * 41 + 1;

/// The bucket of a duration of `ns` nanoseconds.
pub fn bucket(ns: u64) -> usize {
    if ns < 4 {
        return 0;
    }
    let e = 63 - ns.leading_zeros() as usize; // 2 or more
    let sub = ((ns >> (e - 2)) & 3) as usize;
    ((e - 2) * 4 + sub + 1).min(BUCKETS - 1)
}

/// The largest duration (ns) bucket `i` holds.
pub fn upper(i: usize) -> u64 {
    if i == 0 {
        return 3;
    }
    let (e, sub) = ((i - 1) / 4 + 2, ((i - 1) % 4) as u64);
    ((5 + sub) << (e - 2)) - 1
}

/// Counts per bucket, kept sparse: `(bucket, count)` in bucket order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    buckets: Vec<(u16, u64)>,
}

impl Histogram {
    /// From dense counts (one per bucket).
    pub fn from_dense(counts: impl IntoIterator<Item = u64>) -> Histogram {
        let buckets = counts.into_iter().enumerate().filter(|(_, n)| *n > 0).map(|(i, n)| (i as u16, n)).collect();
        Histogram { buckets }
    }

    /// Adds one duration.
    pub fn record(&mut self, ns: u64) {
        let b = bucket(ns) as u16;
        match self.buckets.binary_search_by_key(&b, |(i, _)| *i) {
            Ok(at) => self.buckets[at].1 += 1,
            Err(at) => self.buckets.insert(at, (b, 1)),
        }
    }

    /// Adds another histogram's counts to these.
    pub fn add(&mut self, other: &Histogram) {
        for &(b, n) in &other.buckets {
            match self.buckets.binary_search_by_key(&b, |(i, _)| *i) {
                Ok(at) => self.buckets[at].1 += n,
                Err(at) => self.buckets.insert(at, (b, n)),
            }
        }
    }

    /// How many durations it holds.
    pub fn len(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| n).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The duration (ns) that a fraction `q` of the recorded ones do not
    /// exceed, as the upper end of its bucket; none when it is empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.len();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Some(upper(b as usize));
            }
        }
        self.buckets.last().map(|&(b, _)| upper(b as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_each_holds_its_range() {
        let mut last = 0;
        for ns in [0u64, 3, 4, 5, 7, 8, 9, 100, 1_000, 65_536, 1 << 40] {
            let b = bucket(ns);
            assert!(b >= last, "{ns}");
            assert!(ns <= upper(b), "{ns} fits bucket {b} (<= {})", upper(b));
            if b > 0 {
                assert!(ns > upper(b - 1), "{ns} is past bucket {}", b - 1);
            }
            last = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let mut h = Histogram::default();
        for ns in 1..=1000u64 {
            h.record(ns * 1000);
        }
        let p99 = h.quantile(0.99).unwrap();
        assert!((990_000..=990_000 * 5 / 4).contains(&p99), "{p99}");
        let p50 = h.quantile(0.5).unwrap();
        assert!((500_000..=500_000 * 5 / 4).contains(&p50), "{p50}");
        assert_eq!(Histogram::default().quantile(0.99), None);
    }

    #[test]
    fn histograms_add_up() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        a.record(10);
        a.record(1_000_000);
        b.record(10);
        b.record(50);
        a.add(&b);
        assert_eq!(a.len(), 4);
        assert_eq!(
            a,
            Histogram::from_dense((0..BUCKETS).map(|i| [10, 10, 50, 1_000_000].iter().filter(|&&ns| bucket(ns) == i).count() as u64))
        );
    }
}
