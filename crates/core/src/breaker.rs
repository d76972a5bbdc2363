//! A consecutive-failure circuit breaker per upstream target.
//!
//! Closed → (N consecutive failures) → Open for `open_for` → Half-open: one probe call is let
//! through; success closes it, failure opens it again.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub failures: u32,
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures: 3,
            open_for: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open {
        until: Instant,
    },
    /// The probe is out; other calls are refused until it reports.
    HalfOpen {
        probing: bool,
    },
}

#[derive(Clone, Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: BreakerState,
    consecutive_failures: u32,
}

/// What a caller may do with a target right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Yes, as the half-open probe.
    Probe,
    /// No; open until then (or a probe is already out).
    No {
        retry_in: Duration,
    },
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            state: BreakerState::Closed,
            consecutive_failures: 0,
        }
    }

    /// The state as seen at `now` (an expired open breaker reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            BreakerState::Open { until } if now >= until => {
                BreakerState::HalfOpen { probing: false }
            }
            s => s,
        }
    }

    /// Whether a call may go now, without taking the probe slot.
    pub fn peek(&self, now: Instant) -> Admit {
        match self.state(now) {
            BreakerState::Closed => Admit::Yes,
            BreakerState::Open { until } => Admit::No {
                retry_in: until.saturating_duration_since(now),
            },
            BreakerState::HalfOpen { probing: false } => Admit::Probe,
            BreakerState::HalfOpen { probing: true } => Admit::No {
                retry_in: self.policy.open_for,
            },
        }
    }

    /// Asks to make a call; a half-open breaker hands out its single probe slot.
    pub fn admit(&mut self, now: Instant) -> Admit {
        let admit = self.peek(now);
        if admit == Admit::Probe {
            self.state = BreakerState::HalfOpen { probing: true };
        }
        admit
    }

    pub fn on_success(&mut self) {
        self.consecutive_failures = 0;
        self.state = BreakerState::Closed;
    }

    pub fn on_failure(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let reopen = matches!(self.state, BreakerState::HalfOpen { .. })
            || matches!(self.state(now), BreakerState::HalfOpen { .. });
        if reopen || self.consecutive_failures >= self.policy.failures {
            self.state = BreakerState::Open {
                until: now + self.policy.open_for,
            };
        }
    }

    /// A call that ended without saying anything about the target's health (e.g. the
    /// caller's own deadline, or a throttle): give the probe slot back.
    pub fn on_neutral(&mut self) {
        if self.state == (BreakerState::HalfOpen { probing: true }) {
            self.state = BreakerState::HalfOpen { probing: false };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failures: 3,
            open_for: Duration::from_secs(5),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let t0 = Instant::now();
        let mut b = Breaker::new(policy());
        b.on_failure(t0);
        b.on_failure(t0);
        b.on_success();
        b.on_failure(t0);
        b.on_failure(t0);
        assert_eq!(b.admit(t0), Admit::Yes);
        b.on_failure(t0);
        assert_eq!(
            b.admit(t0),
            Admit::No {
                retry_in: Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn half_open_lets_one_probe_and_closes_on_success() {
        let t0 = Instant::now();
        let mut b = Breaker::new(policy());
        for _ in 0..3 {
            b.on_failure(t0);
        }
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(b.admit(t1), Admit::Probe);
        assert!(matches!(b.admit(t1), Admit::No { .. }));
        b.on_success();
        assert_eq!(b.admit(t1), Admit::Yes);
    }

    #[test]
    fn failed_probe_reopens() {
        let t0 = Instant::now();
        let mut b = Breaker::new(policy());
        for _ in 0..3 {
            b.on_failure(t0);
        }
        let t1 = t0 + Duration::from_secs(6);
        assert_eq!(b.admit(t1), Admit::Probe);
        b.on_failure(t1);
        assert_eq!(
            b.admit(t1),
            Admit::No {
                retry_in: Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn neutral_outcome_returns_the_probe_slot() {
        let t0 = Instant::now();
        let mut b = Breaker::new(policy());
        for _ in 0..3 {
            b.on_failure(t0);
        }
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(b.admit(t1), Admit::Probe);
        b.on_neutral();
        assert_eq!(b.admit(t1), Admit::Probe);
    }
}
