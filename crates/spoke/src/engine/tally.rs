//! What the attempts of one request added up to, and the error the request ends with when no
//! route answered: the account's fault (every route denied), an outage, exhausted quota, or the
//! deadline.

use crate::error::SpokeError;
use crate::routes::Skip;
use std::time::Duration;
use switchyard_core::labels::DenyReason;
use switchyard_proto::v1::{Attempt, Outcome};
use switchyard_providers::UpstreamError;
use tokio::time::Instant;

/// What the attempts of one request added up to.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) attempts: Vec<Attempt>,
    /// Earliest time a capacity-limited route frees up.
    earliest: Option<Duration>,
    /// Whether any route failed for a reason other than capacity (5xx, timeout, breaker).
    outage: bool,
    timed_out: bool,
    /// The account's faults met, distinct, in plan order.
    denied: Vec<DenyReason>,
    /// Earliest time a denied route is probed again.
    denied_retry: Option<Duration>,
    /// Whether any route was passed over or failed for a reason other than a denial.
    other: bool,
}

impl Tally {
    fn note_retry(&mut self, d: Duration) {
        self.earliest = Some(self.earliest.map_or(d, |e| e.min(d)));
    }

    fn note_denied(&mut self, why: DenyReason, again: Option<Duration>) {
        if !self.denied.contains(&why) {
            self.denied.push(why);
        }
        if let Some(d) = again {
            self.denied_retry = Some(self.denied_retry.map_or(d, |e| e.min(d)));
        }
    }

    /// A route passed over without a call.
    pub(super) fn skip(&mut self, attempt: Attempt, skip: Skip) {
        self.attempts.push(attempt);
        if let (Outcome::SkippedDenied, Some(why)) = (skip.outcome, skip.denied) {
            self.note_denied(why, Some(skip.retry_in));
            return;
        }
        self.other = true;
        if skip.outcome == Outcome::SkippedBreaker {
            self.outage = true;
        }
        self.note_retry(skip.retry_in);
    }

    /// A call that failed; `again` is when the route may serve again (a throttle's cool-down,
    /// a denial's next probe).
    pub(super) fn failed(&mut self, attempt: Attempt, e: &UpstreamError, again: Option<Duration>) {
        self.attempts.push(attempt);
        if let UpstreamError::Denied { why, .. } = e {
            self.note_denied(*why, again);
            return;
        }
        self.other = true;
        match e {
            UpstreamError::Throttled { .. } => {
                if let Some(d) = again {
                    self.note_retry(d);
                }
            }
            UpstreamError::Timeout => {
                self.outage = true;
                self.timed_out = true;
            }
            UpstreamError::Unavailable { .. } => self.outage = true,
            UpstreamError::Invalid { .. } | UpstreamError::Denied { .. } => {}
        }
    }

    /// The request's error once every route of the plan was tried or skipped: the account's
    /// fault when every route was denied, else the outage / quota / deadline the others met.
    pub(super) fn into_error(self, deadline: Instant) -> SpokeError {
        if !self.other && !self.denied.is_empty() {
            return SpokeError::AccountDenied {
                reasons: self.denied,
                // At least a millisecond, like every retry-after the spoke sends.
                retry_after: self
                    .denied_retry
                    .unwrap_or(Duration::from_secs(1))
                    .max(Duration::from_millis(1)),
                attempts: self.attempts,
            };
        }
        if self.timed_out && Instant::now() >= deadline {
            return SpokeError::DeadlineExceeded {
                attempts: self.attempts,
            };
        }
        if self.outage {
            SpokeError::Unavailable {
                retry_after: self.earliest,
                attempts: self.attempts,
            }
        } else {
            SpokeError::Exhausted {
                // At least a second: a zero Retry-After invites a hot loop.
                retry_after: self
                    .earliest
                    .unwrap_or(Duration::from_secs(1))
                    .max(Duration::from_millis(1)),
                attempts: self.attempts,
            }
        }
    }
}
