//! Whether a failed workflow runs again from its last checkpoint, and
//! when: `step(event) -> decision`, no I/O, time enters with the events.
//! A workflow restarts at most `attempts` times within `within`; the
//! n-th restart of that window waits `delay · 2^(n-1)`, at most
//! [`MAX_DELAY`]. Past the attempts it fails with every reason it
//! restarted for.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub use crate::settings::restart::RestartPolicy as Policy;

/// The longest wait before a restart.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run it again from its last checkpoint after `delay`; this is
    /// restart number `attempt` of the window.
    Restart { attempt: u32, delay: Duration },
    /// It fails for good: why, with every reason it restarted for.
    Fail(String),
}

/// The restarts of one workflow.
#[derive(Debug)]
pub struct Restarts {
    policy: Policy,
    /// When it failed and why, within the window.
    failures: VecDeque<(Instant, String)>,
    /// Every restart so far (for `stats(r)`).
    pub total: u64,
}

impl Restarts {
    pub fn new(policy: Policy) -> Restarts {
        Restarts { policy, failures: VecDeque::new(), total: 0 }
    }

    /// The workflow's run failed at `at` for `reason`.
    pub fn failed(&mut self, reason: String, at: Instant) -> Decision {
        while self.failures.front().is_some_and(|(t, _)| at.duration_since(*t) > self.policy.within) {
            self.failures.pop_front();
        }
        self.failures.push_back((at, reason.clone()));
        let attempt = self.failures.len() as u32;
        if attempt > self.policy.attempts {
            if self.policy.attempts == 0 {
                return Decision::Fail(reason);
            }
            let reasons: Vec<String> = self.failures.iter().map(|(_, r)| r.clone()).collect();
            return Decision::Fail(format!(
                "{reason} (restarted {} times within {}, each time from its last checkpoint, and gave up; it failed: {})",
                self.policy.attempts,
                crate::settings::seconds(self.policy.within),
                numbered(&reasons)
            ));
        }
        self.total += 1;
        let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
        let delay = self.policy.delay.saturating_mul(factor).min(MAX_DELAY);
        Decision::Restart { attempt, delay }
    }
}

/// "1. a; 2. b".
fn numbered(reasons: &[String]) -> String {
    reasons.iter().enumerate().map(|(i, r)| format!("{}. {r}", i + 1)).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(attempts: u32) -> Policy {
        Policy { attempts, within: Duration::from_secs(60), delay: Duration::from_millis(100) }
    }

    #[test]
    fn restarts_back_off_and_give_up_naming_every_reason() {
        let mut r = Restarts::new(policy(3));
        let t = Instant::now();
        assert_eq!(r.failed("a".into(), t), Decision::Restart { attempt: 1, delay: Duration::from_millis(100) });
        assert_eq!(r.failed("b".into(), t), Decision::Restart { attempt: 2, delay: Duration::from_millis(200) });
        assert_eq!(r.failed("c".into(), t), Decision::Restart { attempt: 3, delay: Duration::from_millis(400) });
        let Decision::Fail(why) = r.failed("d".into(), t) else { panic!("a fourth failure within the window gives up") };
        assert_eq!(
            why,
            "d (restarted 3 times within 60 s, each time from its last checkpoint, and gave up; it failed: 1. a; 2. b; 3. c; 4. d)"
        );
        assert_eq!(r.total, 3);
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten_and_the_delay_is_capped() {
        let mut r = Restarts::new(Policy { attempts: 40, within: Duration::from_secs(60), delay: Duration::from_secs(1) });
        let t = Instant::now();
        for _ in 0..10 {
            r.failed("x".into(), t);
        }
        assert_eq!(r.failed("x".into(), t), Decision::Restart { attempt: 11, delay: MAX_DELAY });
        let later = t + Duration::from_secs(61);
        assert_eq!(r.failed("y".into(), later), Decision::Restart { attempt: 1, delay: Duration::from_secs(1) });
    }

    #[test]
    fn no_attempts_fails_at_once_as_it_is() {
        assert_eq!(Restarts::new(policy(0)).failed("boom".into(), Instant::now()), Decision::Fail("boom".into()));
    }
}
