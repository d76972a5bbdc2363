//! Admission of one attempt (cool-down, breaker, account quota) and the bookkeeping when it
//! ends: what the route's state and the quota store learn from the outcome.

use super::Engine;
use super::table::Route;
use super::tally::Tally;
use crate::error::SpokeError;
use crate::routes::Skip;
use std::time::Duration;
use switchyard_proto::v1::{Attempt, Outcome, Route as WireRoute, Usage};
use switchyard_providers::UpstreamError;
use switchyard_quota::{Admission, Limits, QuotaStore, Reservation};
use tokio::time::Instant;

/// What admission took for one attempt, returned when the attempt ends.
#[derive(Debug)]
pub(super) struct Ticket {
    quota: Option<(Reservation, Limits)>,
}

impl Engine {
    /// The span of one upstream call on `r` (`Span::none()` when tracing is off).
    pub(super) fn upstream_span(&self, r: &Route) -> tracing::Span {
        crate::observe::upstream_span(
            self.provider,
            &self.account,
            &r.region,
            &r.model,
            &r.upstream_model,
        )
    }

    pub(super) fn wire_route(&self, r: &Route) -> WireRoute {
        WireRoute {
            provider: self.provider.to_owned(),
            account: self.account.clone(),
            region: r.region.clone(),
            model: r.model.clone(),
        }
    }

    pub(super) fn attempt(
        &self,
        r: &Route,
        outcome: Outcome,
        latency: Duration,
        detail: String,
    ) -> Attempt {
        Attempt {
            target: Some(self.wire_route(r)),
            outcome: outcome as i32,
            latency_ms: latency.as_millis().min(u128::from(u32::MAX)) as u32,
            detail,
        }
    }

    /// Records an upstream failure on the route and returns its quota reservation; returns the
    /// cool-down if it was a throttle.
    async fn fail(&self, route: &Route, ticket: Ticket, err: &UpstreamError) -> Option<Duration> {
        let cooldown = route
            .state
            .lock()
            .on_error(err, &self.backoff, std::time::Instant::now());
        tracing::info!(model = %route.model, region = %route.region, error = %err, "upstream attempt failed");
        release(&*self.store, ticket).await;
        cooldown
    }

    pub(super) async fn succeed(&self, route: &Route, ticket: Ticket, usage: &Usage) {
        route.state.lock().on_success();
        settle(&*self.store, ticket, usage).await;
    }

    /// Local checks (cool-down, breaker), then the account quota in the store.
    async fn admit(&self, route: &Route, tokens: u64) -> Result<Ticket, Skip> {
        let factor = {
            let st = route.state.lock();
            let now = std::time::Instant::now();
            st.check(now)?;
            st.rate_factor(now)
        };
        let mut quota = None;
        if !route.limits.is_unlimited() {
            let limits = route.limits.scaled(factor);
            match self.store.admit(&route.scope, &limits, tokens).await {
                Ok(Admission::Admitted { reservation, .. }) => quota = Some((reservation, limits)),
                Ok(Admission::Refused { retry_after, .. }) => {
                    return Err(Skip {
                        outcome: Outcome::SkippedQuota,
                        retry_in: retry_after,
                    });
                }
                // The fallback store never fails; a bare store that does must not fail requests.
                Err(e) => tracing::warn!(scope = %route.scope, "quota store: {e}; admitting"),
            }
        }
        let ticket = Ticket { quota };
        let begun = route.state.lock().begin(std::time::Instant::now());
        match begun {
            Ok(()) => Ok(ticket),
            Err(skip) => {
                release(&*self.store, ticket).await;
                Err(skip)
            }
        }
    }

    /// The start of every attempt, unary or streamed: the time left (or the deadline error),
    /// then admission. `Ok(None)`: the route was skipped, and the skip is in `tally`.
    pub(super) async fn begin_attempt(
        &self,
        route: &Route,
        deadline: Instant,
        estimate: u64,
        tally: &mut Tally,
    ) -> Result<Option<(Ticket, Duration)>, SpokeError> {
        let Some(budget) = self.attempt_budget(deadline) else {
            return Err(SpokeError::DeadlineExceeded {
                attempts: std::mem::take(&mut tally.attempts),
            });
        };
        match self.admit(route, estimate).await {
            Ok(ticket) => Ok(Some((ticket, budget))),
            Err(skip) => {
                tally.skip(
                    self.attempt(route, skip.outcome, Duration::ZERO, String::new()),
                    skip,
                );
                Ok(None)
            }
        }
    }

    /// Records a failed attempt; a rejection by the upstream ends the request (no failover).
    pub(super) async fn record_failure(
        &self,
        route: &Route,
        ticket: Ticket,
        e: UpstreamError,
        latency: Duration,
        tally: &mut Tally,
    ) -> Result<(), SpokeError> {
        let cooldown = self.fail(route, ticket, &e).await;
        tally.failed(
            self.attempt(route, e.outcome(), latency, e.to_string()),
            &e,
            cooldown,
        );
        match e {
            UpstreamError::Invalid { reason } => Err(SpokeError::Rejected {
                reason,
                attempts: std::mem::take(&mut tally.attempts),
            }),
            _ => Ok(()),
        }
    }
}

/// Gives an attempt's quota reservation back (the call failed or never happened).
pub(super) async fn release(store: &dyn QuotaStore, ticket: Ticket) {
    if let Some((r, limits)) = ticket.quota
        && let Err(e) = store.release(&r, &limits).await
    {
        tracing::warn!("quota store: {e}");
    }
}

/// Settles an attempt's quota reservation with the real usage.
pub(super) async fn settle(store: &dyn QuotaStore, ticket: Ticket, usage: &Usage) {
    if let Some((r, limits)) = ticket.quota {
        let used = u64::from(usage.input_tokens) + u64::from(usage.output_tokens);
        if let Err(e) = store.settle(&r, &limits, used, 0.0).await {
            tracing::warn!("quota store: {e}");
        }
    }
}
