//! Per-(region, model) route state and the pure decisions on it: may this route take a call
//! now, and what did a call's outcome do to it. No I/O; time is passed in.

use std::time::{Duration, Instant};
use switchyard_core::backoff::Backoff;
use switchyard_core::breaker::{Admit, Breaker, BreakerPolicy, BreakerState};
use switchyard_core::labels::DenyReason;
use switchyard_proto::v1::{Outcome, RouteState as WireState};
use switchyard_providers::UpstreamError;
use switchyard_quota::RateState;

/// Lowest share of the configured quota a throttled route drops to.
pub const MIN_RATE_FACTOR: f64 = 0.1;
/// Time for the rate factor to climb from its floor back to 1.0 without further throttles.
pub const RATE_RECOVERY: Duration = Duration::from_secs(60);
/// Default time a denied route is skipped before one request is let through as a probe
/// (`[denial] probe_interval`).
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(300);

/// Why a route was passed over without a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skip {
    pub outcome: Outcome,
    /// When it may serve again.
    pub retry_in: Duration,
    /// With `SkippedDenied`: why the route is denied.
    pub denied: Option<DenyReason>,
}

/// Why and until when a route is denied (the account's fault).
#[derive(Clone, Debug, PartialEq)]
pub struct Denial {
    pub why: DenyReason,
    /// The upstream's error type that denied it (`AccessDeniedException`, `insufficient_quota`).
    pub error_type: String,
    /// When one request may go through as a probe.
    pub next_probe: Instant,
}

/// Local state of one (region, model) route: throttle cool-down, breaker, and the adaptive
/// rate factor. The quota buckets themselves live in the quota store (shared between the
/// tasks of a spoke service when it is Redis).
#[derive(Debug)]
pub struct RouteState {
    cool_until: Option<Instant>,
    consecutive_throttles: u32,
    breaker: Breaker,
    /// Share of the configured quota in force, lowered on throttles, recovering linearly.
    factor: f64,
    factor_at: Instant,
    /// Set while the upstream refuses the account here.
    denied: Option<Denial>,
    /// Time between probes of a denied route.
    probe_interval: Duration,
}

/// A snapshot for `Describe` and `/healthz`.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    pub state: WireState,
    pub headroom: f64,
    pub requests_remaining: u64,
    pub tokens_remaining: u64,
    pub retry_in: Duration,
    pub rate_factor: f64,
    /// With state `Denied`: why, and the upstream's error type.
    pub denied: Option<(DenyReason, String)>,
}

impl RouteState {
    pub fn new(breaker: BreakerPolicy, now: Instant) -> Self {
        Self {
            cool_until: None,
            consecutive_throttles: 0,
            breaker: Breaker::new(breaker),
            factor: 1.0,
            factor_at: now,
            denied: None,
            probe_interval: DEFAULT_PROBE_INTERVAL,
        }
    }

    /// The same state with `interval` between the probes of a denied route.
    pub fn with_probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// Why the route is denied, when it is.
    pub fn denied(&self) -> Option<DenyReason> {
        self.denied.as_ref().map(|d| d.why)
    }

    /// When a denied route's next probe is due (zero when it is due now); `None` when the
    /// route is not denied.
    pub fn next_probe_in(&self, now: Instant) -> Option<Duration> {
        self.denied
            .as_ref()
            .map(|d| d.next_probe.saturating_duration_since(now))
    }

    /// The upstream refused the account here: skip the route until `now + probe_interval`, then
    /// let one request through as a probe. Returns whether the state changed (it was not
    /// denied, or denied for another reason) — what deserves a log line.
    pub fn deny(&mut self, why: DenyReason, error_type: &str, now: Instant) -> bool {
        let changed = self.denied() != Some(why);
        self.denied = Some(Denial {
            why,
            error_type: error_type.to_owned(),
            next_probe: now + self.probe_interval,
        });
        changed
    }

    /// A call on the route succeeded (the probe, or a call of the same region proving the
    /// account works): lifts the denial; returns the reason it had.
    pub fn readmit(&mut self) -> Option<DenyReason> {
        self.denied.take().map(|d| d.why)
    }

    fn cooling(&self, now: Instant) -> Option<Duration> {
        self.cool_until
            .filter(|u| *u > now)
            .map(|u| u.saturating_duration_since(now))
    }

    /// The share of the configured quota in force now (1.0 = all of it).
    pub fn rate_factor(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.factor_at).as_secs_f64();
        let per_sec = (1.0 - MIN_RATE_FACTOR) / RATE_RECOVERY.as_secs_f64();
        (self.factor + elapsed * per_sec).min(1.0)
    }

    /// Local checks before the quota store is asked: denial (until its probe is due),
    /// cool-down, then breaker.
    pub fn check(&self, now: Instant) -> Result<(), Skip> {
        if let Some(d) = &self.denied
            && now < d.next_probe
        {
            return Err(Skip {
                outcome: Outcome::SkippedDenied,
                retry_in: d.next_probe.saturating_duration_since(now),
                denied: Some(d.why),
            });
        }
        if let Some(retry_in) = self.cooling(now) {
            return Err(Skip {
                outcome: Outcome::SkippedCooldown,
                retry_in,
                denied: None,
            });
        }
        if let Admit::No { retry_in } = self.breaker.peek(now) {
            return Err(Skip {
                outcome: Outcome::SkippedBreaker,
                retry_in,
                denied: None,
            });
        }
        Ok(())
    }

    /// Commits to calling the route: takes the half-open probe slot if that is the state, and a
    /// denied route's probe (the next one is then an interval away, whatever this one does).
    pub fn begin(&mut self, now: Instant) -> Result<(), Skip> {
        self.check(now)?;
        if let Some(d) = &mut self.denied {
            d.next_probe = now + self.probe_interval;
        }
        self.breaker.admit(now);
        Ok(())
    }

    pub fn on_success(&mut self) {
        self.breaker.on_success();
        self.consecutive_throttles = 0;
        self.cool_until = None;
        self.denied = None;
    }

    /// The call failed; returns the cool-down applied, if the failure was a throttle.
    pub fn on_error(
        &mut self,
        err: &UpstreamError,
        backoff: &Backoff,
        now: Instant,
    ) -> Option<Duration> {
        match err {
            UpstreamError::Throttled { retry_after, .. } => {
                self.breaker.on_neutral();
                self.consecutive_throttles = self.consecutive_throttles.saturating_add(1);
                let d = backoff.cooldown(self.consecutive_throttles, *retry_after);
                self.cool_until = Some(now + d);
                // The configured quota is a ceiling, not a promise: halve the rate in force.
                self.factor = (self.rate_factor(now) * 0.5).max(MIN_RATE_FACTOR);
                self.factor_at = now;
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
            // The upstream works; this account may not use it here.
            UpstreamError::Denied { why, reason } => {
                self.breaker.on_neutral();
                self.deny(*why, &reason.error_type, now);
                None
            }
        }
    }

    /// Whether a route in `state` takes calls now: ready, a half-open breaker's probe, or a
    /// denied route whose probe is due (so that hubs send the request that may re-admit it).
    pub fn may_serve(state: WireState, retry_in: Duration) -> bool {
        match state {
            WireState::Ready | WireState::HalfOpen => true,
            WireState::Denied => retry_in.is_zero(),
            WireState::Unspecified
            | WireState::Cooling
            | WireState::Open
            | WireState::Exhausted => false,
        }
    }

    /// The route's state given the quota store's view of its allowance.
    pub fn status(&self, quota: &RateState, now: Instant) -> Status {
        let requests_remaining = quota.requests.map_or(u64::MAX, |w| w.remaining);
        let tokens_remaining = quota.tokens.map_or(u64::MAX, |w| w.remaining);
        let mut headroom = quota.headroom();
        let (state, retry_in) = if let Some(d) = &self.denied {
            (
                WireState::Denied,
                d.next_probe.saturating_duration_since(now),
            )
        } else if let Some(d) = self.cooling(now) {
            (WireState::Cooling, d)
        } else {
            match self.breaker.state(now) {
                BreakerState::Open { until } => {
                    (WireState::Open, until.saturating_duration_since(now))
                }
                BreakerState::HalfOpen { .. } => (WireState::HalfOpen, Duration::ZERO),
                BreakerState::Closed if requests_remaining == 0 || tokens_remaining == 0 => {
                    let wait = [quota.requests, quota.tokens]
                        .iter()
                        .flatten()
                        .filter(|w| w.remaining == 0)
                        .map(|w| w.reset)
                        .max()
                        .unwrap_or_default();
                    (WireState::Exhausted, wait)
                }
                BreakerState::Closed => (WireState::Ready, Duration::ZERO),
            }
        };
        if !Self::may_serve(state, retry_in) {
            headroom = 0.0;
        }
        Status {
            state,
            headroom,
            requests_remaining,
            tokens_remaining,
            retry_in,
            rate_factor: self.rate_factor(now),
            denied: self.denied.as_ref().map(|d| (d.why, d.error_type.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_quota::Window;

    fn route() -> RouteState {
        RouteState::new(
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
        let mut r = route();
        r.begin(t0).unwrap();
        let b = Backoff {
            base: Duration::from_millis(1),
            max: Duration::from_millis(1),
        };
        let d = r.on_error(&throttle(Some(Duration::from_secs(2))), &b, t0);
        assert_eq!(d, Some(Duration::from_secs(2)));
        let skip = r.check(t0 + Duration::from_secs(1)).unwrap_err();
        assert_eq!(skip.outcome, Outcome::SkippedCooldown);
        assert_eq!(skip.retry_in, Duration::from_secs(1));
        let st = r.status(&RateState::default(), t0);
        assert_eq!(st.state, WireState::Cooling);
        assert_eq!(st.headroom, 0.0);
        assert!(r.check(t0 + Duration::from_secs(2)).is_ok());
    }

    #[test]
    fn throttles_halve_the_rate_which_recovers_linearly() {
        let t0 = Instant::now();
        let mut r = route();
        let b = Backoff::default();
        assert_eq!(r.rate_factor(t0), 1.0);
        r.on_error(&throttle(None), &b, t0);
        assert_eq!(r.rate_factor(t0), 0.5);
        r.on_error(&throttle(None), &b, t0);
        assert_eq!(r.rate_factor(t0), 0.25);
        for _ in 0..10 {
            r.on_error(&throttle(None), &b, t0);
        }
        assert_eq!(r.rate_factor(t0), MIN_RATE_FACTOR);
        // Full recovery from the floor takes RATE_RECOVERY.
        let half = t0 + RATE_RECOVERY / 2;
        assert!((r.rate_factor(half) - 0.55).abs() < 1e-9);
        assert_eq!(r.rate_factor(t0 + RATE_RECOVERY), 1.0);
        // Success does not jump it back: recovery is gradual.
        r.on_success();
        assert_eq!(r.rate_factor(t0), MIN_RATE_FACTOR);
    }

    #[test]
    fn failures_open_the_breaker_and_a_probe_closes_it() {
        let t0 = Instant::now();
        let mut r = route();
        let b = Backoff::default();
        for _ in 0..2 {
            r.begin(t0).unwrap();
            r.on_error(&UpstreamError::unavailable("503"), &b, t0);
        }
        assert_eq!(r.check(t0).unwrap_err().outcome, Outcome::SkippedBreaker);
        assert_eq!(r.status(&RateState::default(), t0).state, WireState::Open);
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(
            r.status(&RateState::default(), t1).state,
            WireState::HalfOpen
        );
        r.begin(t1).unwrap();
        // While the probe is out, nobody else goes.
        assert_eq!(r.check(t1).unwrap_err().outcome, Outcome::SkippedBreaker);
        r.on_success();
        assert_eq!(r.status(&RateState::default(), t1).state, WireState::Ready);
    }

    #[test]
    fn empty_quota_reports_exhausted_with_its_reset() {
        let r = route();
        let q = RateState {
            requests: Some(Window {
                limit: 2,
                remaining: 0,
                reset: Duration::from_secs(42),
            }),
            tokens: None,
        };
        let st = r.status(&q, Instant::now());
        assert_eq!(st.state, WireState::Exhausted);
        assert_eq!(st.retry_in, Duration::from_secs(42));
        assert_eq!(st.headroom, 0.0);
        assert_eq!(st.requests_remaining, 0);
    }

    #[test]
    fn validation_error_does_not_trip_the_breaker() {
        let t0 = Instant::now();
        let mut r = route();
        for _ in 0..5 {
            r.begin(t0).unwrap();
            r.on_error(
                &UpstreamError::Invalid {
                    reason: "bad".into(),
                },
                &Backoff::default(),
                t0,
            );
        }
        assert!(r.check(t0).is_ok());
    }

    fn denial(why: DenyReason) -> UpstreamError {
        UpstreamError::Denied {
            why,
            reason: "AccessDeniedException".into(),
        }
    }

    #[test]
    fn a_denied_route_is_skipped_then_probed_once_per_interval_and_readmitted_on_success() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(60);
        let mut r = route().with_probe_interval(interval);
        let b = Backoff::default();
        r.begin(t0).unwrap();
        assert_eq!(r.on_error(&denial(DenyReason::ModelAccess), &b, t0), None);
        // Skipped, with its reason, until the probe is due.
        let skip = r.check(t0 + Duration::from_secs(1)).unwrap_err();
        assert_eq!(skip.outcome, Outcome::SkippedDenied);
        assert_eq!(skip.denied, Some(DenyReason::ModelAccess));
        assert_eq!(skip.retry_in, Duration::from_secs(59));
        let st = r.status(&RateState::default(), t0);
        assert_eq!(st.state, WireState::Denied);
        assert_eq!(st.headroom, 0.0);
        assert_eq!(
            st.denied,
            Some((DenyReason::ModelAccess, "AccessDeniedException".to_string()))
        );
        // One probe when due; the next caller waits another interval.
        let due = t0 + interval;
        r.begin(due).unwrap();
        assert_eq!(r.check(due).unwrap_err().outcome, Outcome::SkippedDenied);
        // The probe fails again: still denied, for another interval.
        r.on_error(&denial(DenyReason::ModelAccess), &b, due);
        assert!(r.check(due + interval - Duration::from_secs(1)).is_err());
        // A probe that succeeds re-admits the route.
        r.begin(due + interval).unwrap();
        assert_eq!(r.readmit(), Some(DenyReason::ModelAccess));
        r.on_success();
        assert!(r.check(due + interval).is_ok());
        assert_eq!(
            r.status(&RateState::default(), due + interval).state,
            WireState::Ready
        );
    }

    #[test]
    fn denials_do_not_trip_the_breaker_and_report_changes() {
        let t0 = Instant::now();
        let mut r = route();
        assert!(r.deny(DenyReason::Billing, "insufficient_quota", t0));
        // The same reason again is no change (no new log line); another reason is.
        assert!(!r.deny(DenyReason::Billing, "insufficient_quota", t0));
        assert!(r.deny(DenyReason::Credentials, "invalid_api_key", t0));
        for _ in 0..5 {
            r.on_error(&denial(DenyReason::Credentials), &Backoff::default(), t0);
        }
        assert_eq!(r.readmit(), Some(DenyReason::Credentials));
        // The breaker never counted the denials.
        assert!(r.check(t0).is_ok());
    }
}
