//! Per-(region, model) route state and the pure decisions on it: may this route take a call
//! now, and what did a call's outcome do to it. No I/O; time is passed in.

use std::time::{Duration, Instant};
use switchyard_core::backoff::Backoff;
use switchyard_core::breaker::{Admit, Breaker, BreakerPolicy, BreakerState};
use switchyard_core::bucket::TokenBucket;
use switchyard_proto::v1::{Outcome, RouteState as WireState};
use switchyard_providers::UpstreamError;

/// Why a route was passed over without a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skip {
    pub outcome: Outcome,
    /// When it may serve again.
    pub retry_in: Duration,
}

/// A reservation taken at admission, reconciled when the call ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub tokens: u64,
}

#[derive(Debug)]
pub struct RouteState {
    rpm: Option<TokenBucket>,
    tpm: Option<TokenBucket>,
    cool_until: Option<Instant>,
    consecutive_throttles: u32,
    breaker: Breaker,
}

/// A snapshot for `Describe` and `/healthz`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Status {
    pub state: WireState,
    pub headroom: f64,
    pub requests_remaining: u64,
    pub tokens_remaining: u64,
    pub retry_in: Duration,
}

impl RouteState {
    pub fn new(rpm: Option<u64>, tpm: Option<u64>, breaker: BreakerPolicy, now: Instant) -> Self {
        Self {
            rpm: rpm.map(|l| TokenBucket::per_minute(l, now)),
            tpm: tpm.map(|l| TokenBucket::per_minute(l, now)),
            cool_until: None,
            consecutive_throttles: 0,
            breaker: Breaker::new(breaker),
        }
    }

    fn cooling(&self, now: Instant) -> Option<Duration> {
        self.cool_until
            .filter(|u| *u > now)
            .map(|u| u.saturating_duration_since(now))
    }

    /// Admits a call estimated at `tokens`, or says why not. Order: cool-down, breaker, quota.
    pub fn admit(&mut self, tokens: u64, now: Instant) -> Result<Reservation, Skip> {
        if let Some(retry_in) = self.cooling(now) {
            return Err(Skip {
                outcome: Outcome::SkippedCooldown,
                retry_in,
            });
        }
        if let Admit::No { retry_in } = self.breaker.peek(now) {
            return Err(Skip {
                outcome: Outcome::SkippedBreaker,
                retry_in,
            });
        }
        let rpm_wait = self
            .rpm
            .as_mut()
            .map(|b| b.time_until(1, now))
            .unwrap_or_default();
        let tpm_wait = self
            .tpm
            .as_mut()
            .map(|b| b.time_until(tokens, now))
            .unwrap_or_default();
        if !rpm_wait.is_zero() || !tpm_wait.is_zero() {
            return Err(Skip {
                outcome: Outcome::SkippedQuota,
                retry_in: rpm_wait.max(tpm_wait),
            });
        }
        self.breaker.admit(now);
        if let Some(b) = self.rpm.as_mut() {
            b.try_take(1, now);
        }
        if let Some(b) = self.tpm.as_mut() {
            b.try_take(tokens, now);
        }
        Ok(Reservation { tokens })
    }

    /// The call succeeded and used `used_tokens`.
    pub fn on_success(&mut self, r: Reservation, used_tokens: u64, now: Instant) {
        self.breaker.on_success();
        self.consecutive_throttles = 0;
        self.cool_until = None;
        if let Some(b) = self.tpm.as_mut() {
            b.reconcile(r.tokens as i64 - used_tokens as i64, now);
        }
    }

    /// The call failed; returns the cool-down applied, if the failure was a throttle.
    pub fn on_error(
        &mut self,
        r: Reservation,
        err: &UpstreamError,
        backoff: &Backoff,
        now: Instant,
    ) -> Option<Duration> {
        // Nothing was generated: give the reserved tokens back.
        if let Some(b) = self.tpm.as_mut() {
            b.reconcile(r.tokens as i64, now);
        }
        match err {
            UpstreamError::Throttled { retry_after, .. } => {
                self.breaker.on_neutral();
                self.consecutive_throttles = self.consecutive_throttles.saturating_add(1);
                let d = backoff.cooldown(self.consecutive_throttles, *retry_after);
                self.cool_until = Some(now + d);
                Some(d)
            }
            UpstreamError::Unavailable { .. } | UpstreamError::Timeout => {
                self.breaker.on_failure(now);
                None
            }
            UpstreamError::Invalid { .. } => {
                self.breaker.on_neutral();
                None
            }
        }
    }

    pub fn status(&mut self, now: Instant) -> Status {
        let mut requests_remaining = u64::MAX;
        let mut tokens_remaining = u64::MAX;
        let mut headroom: f64 = 1.0;
        if let Some(b) = self.rpm.as_mut() {
            requests_remaining = b.available(now);
            headroom = headroom.min(b.headroom(now));
        }
        if let Some(b) = self.tpm.as_mut() {
            tokens_remaining = b.available(now);
            headroom = headroom.min(b.headroom(now));
        }
        let (state, retry_in) = if let Some(d) = self.cooling(now) {
            (WireState::Cooling, d)
        } else {
            match self.breaker.state(now) {
                BreakerState::Open { until } => {
                    (WireState::Open, until.saturating_duration_since(now))
                }
                BreakerState::HalfOpen { .. } => (WireState::HalfOpen, Duration::ZERO),
                BreakerState::Closed if requests_remaining == 0 => {
                    let wait = self
                        .rpm
                        .as_mut()
                        .map(|b| b.time_until(1, now))
                        .unwrap_or_default();
                    (WireState::Exhausted, wait)
                }
                BreakerState::Closed => (WireState::Ready, Duration::ZERO),
            }
        };
        if !matches!(state, WireState::Ready | WireState::HalfOpen) {
            headroom = 0.0;
        }
        Status {
            state,
            headroom,
            requests_remaining,
            tokens_remaining,
            retry_in,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(rpm: Option<u64>) -> RouteState {
        RouteState::new(
            rpm,
            None,
            BreakerPolicy {
                failures: 2,
                open_for: Duration::from_secs(5),
            },
            Instant::now(),
        )
    }

    fn throttle(ra: Option<Duration>) -> UpstreamError {
        UpstreamError::Throttled {
            reason: "t".into(),
            retry_after: ra,
        }
    }

    #[test]
    fn throttle_cools_down_for_retry_after_then_recovers() {
        let t0 = Instant::now();
        let mut r = route(None);
        let res = r.admit(10, t0).unwrap();
        let b = Backoff {
            base: Duration::from_millis(1),
            max: Duration::from_millis(1),
        };
        let d = r.on_error(res, &throttle(Some(Duration::from_secs(2))), &b, t0);
        assert_eq!(d, Some(Duration::from_secs(2)));
        let skip = r.admit(10, t0 + Duration::from_secs(1)).unwrap_err();
        assert_eq!(skip.outcome, Outcome::SkippedCooldown);
        assert_eq!(skip.retry_in, Duration::from_secs(1));
        assert_eq!(r.status(t0).state, WireState::Cooling);
        assert_eq!(r.status(t0).headroom, 0.0);
        assert!(r.admit(10, t0 + Duration::from_secs(2)).is_ok());
    }

    #[test]
    fn failures_open_the_breaker_and_a_probe_closes_it() {
        let t0 = Instant::now();
        let mut r = route(None);
        let b = Backoff::default();
        for _ in 0..2 {
            let res = r.admit(1, t0).unwrap();
            r.on_error(res, &UpstreamError::unavailable("503"), &b, t0);
        }
        assert_eq!(r.admit(1, t0).unwrap_err().outcome, Outcome::SkippedBreaker);
        assert_eq!(r.status(t0).state, WireState::Open);
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(r.status(t1).state, WireState::HalfOpen);
        let probe = r.admit(1, t1).unwrap();
        // While the probe is out, nobody else goes.
        assert_eq!(r.admit(1, t1).unwrap_err().outcome, Outcome::SkippedBreaker);
        r.on_success(probe, 1, t1);
        assert_eq!(r.status(t1).state, WireState::Ready);
    }

    #[test]
    fn empty_bucket_skips_with_quota_and_reports_exhausted() {
        let t0 = Instant::now();
        let mut r = route(Some(2));
        assert!(r.admit(1, t0).is_ok());
        assert!(r.admit(1, t0).is_ok());
        let skip = r.admit(1, t0).unwrap_err();
        assert_eq!(skip.outcome, Outcome::SkippedQuota);
        assert_eq!(skip.retry_in, Duration::from_secs(30));
        let st = r.status(t0);
        assert_eq!(st.state, WireState::Exhausted);
        assert_eq!(st.requests_remaining, 0);
    }

    #[test]
    fn validation_error_does_not_trip_the_breaker() {
        let t0 = Instant::now();
        let mut r = route(None);
        for _ in 0..5 {
            let res = r.admit(1, t0).unwrap();
            r.on_error(
                res,
                &UpstreamError::Invalid {
                    reason: "bad".into(),
                },
                &Backoff::default(),
                t0,
            );
        }
        assert!(r.admit(1, t0).is_ok());
    }
}
