//! What the attempts of one request added up to, and the error the request ends with when no
//! route answered.

use crate::error::SpokeError;
use crate::routes::Skip;
use std::time::Duration;
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
}

impl Tally {
    fn note_retry(&mut self, d: Duration) {
        self.earliest = Some(self.earliest.map_or(d, |e| e.min(d)));
    }

    /// A route passed over without a call.
    pub(super) fn skip(&mut self, attempt: Attempt, skip: Skip) {
        self.attempts.push(attempt);
        if skip.outcome == Outcome::SkippedBreaker {
            self.outage = true;
        }
        self.note_retry(skip.retry_in);
    }

    /// A call that failed; `cooldown` is what a throttle did to the route.
    pub(super) fn failed(
        &mut self,
        attempt: Attempt,
        e: &UpstreamError,
        cooldown: Option<Duration>,
    ) {
        self.attempts.push(attempt);
        match e {
            UpstreamError::Throttled { .. } => {
                if let Some(d) = cooldown {
                    self.note_retry(d);
                }
            }
            UpstreamError::Timeout => {
                self.outage = true;
                self.timed_out = true;
            }
            UpstreamError::Unavailable { .. } => self.outage = true,
            UpstreamError::Invalid { .. } => {}
        }
    }

    /// The request's error once every route of the plan was tried or skipped.
    pub(super) fn into_error(self, deadline: Instant) -> SpokeError {
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
