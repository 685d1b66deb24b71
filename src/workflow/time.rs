//! Event time as a workflow describes it: how records get their time
//! (`event_time`) and which windows a time falls in (`tumbling`,
//! `sliding`, `session`). Times are seconds since the epoch, as floats;
//! a window is `[start, end)`. No I/O, no state: the runtime's window
//! operator keeps the windows these describe.

use serde::{Deserialize, Serialize};

use super::Func;

/// `event_time(ts_fn, #{ out_of_order, idle })`.
#[derive(Clone, Debug)]
pub struct EventTime {
    /// The record's time, in seconds since the epoch.
    pub ts: Func,
    /// How far behind the largest time seen the watermark stays.
    pub out_of_order: f64,
    /// Seconds without a record after which an instance holds no window
    /// back until its next record (none: it always holds them).
    pub idle: Option<f64>,
}

/// How records are grouped in time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum WindowSpec {
    /// Back-to-back windows of `size` seconds, from the epoch.
    Tumbling { size: f64 },
    /// Windows of `size` seconds starting every `slide` seconds.
    Sliding { size: f64, slide: f64 },
    /// A window per burst of a key's records, closed by a gap of `gap`
    /// seconds without one.
    Session { gap: f64 },
}

/// A window spec that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WindowSpecError {
    #[error("{what} must be a positive number of seconds, got {got}")]
    NotPositive { what: &'static str, got: f64 },
    #[error("sliding: the slide ({slide} s) is longer than the window ({size} s): records between windows would belong to none")]
    Gaps { size: f64, slide: f64 },
}

fn positive(what: &'static str, got: f64) -> Result<f64, WindowSpecError> {
    if got.is_finite() && got > 0.0 {
        Ok(got)
    } else {
        Err(WindowSpecError::NotPositive { what, got })
    }
}

impl WindowSpec {
    pub fn tumbling(size: f64) -> Result<WindowSpec, WindowSpecError> {
        Ok(WindowSpec::Tumbling { size: positive("tumbling: the size", size)? })
    }

    pub fn sliding(size: f64, slide: f64) -> Result<WindowSpec, WindowSpecError> {
        let (size, slide) = (positive("sliding: the size", size)?, positive("sliding: the slide", slide)?);
        if slide > size {
            return Err(WindowSpecError::Gaps { size, slide });
        }
        Ok(WindowSpec::Sliding { size, slide })
    }

    pub fn session(gap: f64) -> Result<WindowSpec, WindowSpecError> {
        Ok(WindowSpec::Session { gap: positive("session: the gap", gap)? })
    }

    /// The fixed windows time `t` falls in, as `(start, end)`, earliest
    /// first (none for a session: a key's sessions depend on its records).
    /// No allocation: it runs per record.
    pub fn windows(&self, t: f64) -> impl Iterator<Item = (f64, f64)> {
        // Tumbling is sliding by its own size; a session has no fixed one.
        let (size, slide) = match *self {
            WindowSpec::Tumbling { size } => (size, size),
            WindowSpec::Sliding { size, slide } => (size, slide),
            WindowSpec::Session { .. } => (0.0, 1.0),
        };
        // Every start k * slide with start <= t < start + size.
        let first = ((t - size) / slide).floor() as i64 + 1;
        let last = (t / slide).floor() as i64;
        (first..=last).map(move |k| (k as f64 * slide, k as f64 * slide + size)).filter(move |&(start, end)| start <= t && t < end)
    }

    pub fn is_session(&self) -> bool {
        matches!(self, WindowSpec::Session { .. })
    }
}

impl std::fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WindowSpec::Tumbling { size } => write!(f, "tumbling({size})"),
            WindowSpec::Sliding { size, slide } => write!(f, "sliding({size}, {slide})"),
            WindowSpec::Session { gap } => write!(f, "session({gap})"),
        }
    }
}

/// A record's time as a function returned it: seconds since the epoch, a
/// float or an integer.
pub fn seconds(v: &rhai::Dynamic) -> Option<f64> {
    if let Ok(f) = v.as_float() {
        return f.is_finite().then_some(f);
    }
    v.as_int().ok().map(|i| i as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_falls_in_one_tumbling_window_from_the_epoch() {
        let w = WindowSpec::tumbling(10.0).unwrap();
        assert_eq!(w.windows(25.0).collect::<Vec<_>>(), vec![(20.0, 30.0)]);
        assert_eq!(w.windows(30.0).collect::<Vec<_>>(), vec![(30.0, 40.0)], "a window's end is not in it");
        assert_eq!(w.windows(-1.0).collect::<Vec<_>>(), vec![(-10.0, 0.0)]);
    }

    #[test]
    fn a_time_falls_in_every_sliding_window_that_covers_it() {
        let w = WindowSpec::sliding(10.0, 5.0).unwrap();
        assert_eq!(w.windows(12.0).collect::<Vec<_>>(), vec![(5.0, 15.0), (10.0, 20.0)]);
        assert_eq!(w.windows(10.0).collect::<Vec<_>>(), vec![(5.0, 15.0), (10.0, 20.0)]);
        let w = WindowSpec::sliding(3.0, 1.0).unwrap();
        assert_eq!(w.windows(2.5).collect::<Vec<_>>(), vec![(0.0, 3.0), (1.0, 4.0), (2.0, 5.0)]);
        assert_eq!(WindowSpec::sliding(5.0, 5.0).unwrap().windows(7.0).collect::<Vec<_>>(), vec![(5.0, 10.0)]);
    }

    #[test]
    fn specs_that_cannot_work_are_refused_naming_why() {
        assert_eq!(WindowSpec::tumbling(0.0), Err(WindowSpecError::NotPositive { what: "tumbling: the size", got: 0.0 }));
        assert_eq!(WindowSpec::sliding(5.0, 10.0), Err(WindowSpecError::Gaps { size: 5.0, slide: 10.0 }));
        assert!(WindowSpec::session(f64::NAN).is_err());
    }
}
