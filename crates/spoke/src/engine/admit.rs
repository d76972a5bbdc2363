//! Admission of one attempt (cool-down, breaker, account quota) and the bookkeeping when it
//! ends: what the route's state and the quota store learn from the outcome.

use super::Engine;
use super::table::Route;
use super::tally::Tally;
use crate::error::SpokeError;
use crate::routes::Skip;
use std::time::{Duration, Instant as StdInstant};
use switchyard_core::labels::{DenyReason, DenyScope};
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

    /// Records an upstream failure on the route (for a credentials or billing denial: on every
    /// route of its region) and returns its quota reservation. Returns when the route may
    /// serve again: the cool-down of a throttle, the next probe of a denial.
    async fn fail(&self, route: &Route, ticket: Ticket, err: &UpstreamError) -> Option<Duration> {
        let now = std::time::Instant::now();
        let (again, changed) = {
            let mut st = route.state.lock();
            let before = st.denied();
            let cooldown = st.on_error(err, &self.backoff, now);
            let again = cooldown.or_else(|| st.next_probe_in(now));
            (again, st.denied() != before)
        };
        tracing::info!(model = %route.model, region = %route.region, error = %err, "upstream attempt failed");
        if let UpstreamError::Denied { why, reason } = err {
            if changed {
                crate::observe::route_denied(
                    self.provider,
                    &self.account,
                    &route.region,
                    &route.model,
                    *why,
                    &reason.error_type,
                    again.unwrap_or_default(),
                );
            }
            if why.scope() == DenyScope::Region {
                self.deny_region(route, *why, &reason.error_type, now);
            }
        }
        release(&*self.store, ticket).await;
        again
    }

    /// Credentials and billing belong to the account behind the region's endpoint: every other
    /// route of `origin`'s region is denied too, each logged once when its state changes.
    fn deny_region(&self, origin: &Route, why: DenyReason, error_type: &str, now: StdInstant) {
        let table = self.table.load();
        for r in table.routes.iter().flatten() {
            if r.region != origin.region || r.model == origin.model {
                continue;
            }
            let (changed, again) = {
                let mut st = r.state.lock();
                (st.deny(why, error_type, now), st.next_probe_in(now))
            };
            if changed {
                crate::observe::route_denied(
                    self.provider,
                    &self.account,
                    &r.region,
                    &r.model,
                    why,
                    error_type,
                    again.unwrap_or_default(),
                );
            }
        }
    }

    /// The upstream served `route`: a denial it had is lifted (a region-wide one on every route
    /// of its region denied for the same reason), each logged once.
    pub(super) fn readmit(&self, route: &Route) {
        let lifted = route.state.lock().readmit();
        let Some(why) = lifted else {
            return;
        };
        crate::observe::route_readmitted(
            self.provider,
            &self.account,
            &route.region,
            &route.model,
            why,
        );
        if why.scope() != DenyScope::Region {
            return;
        }
        let table = self.table.load();
        for r in table.routes.iter().flatten() {
            if r.region != route.region || r.model == route.model {
                continue;
            }
            let lifted = {
                let mut st = r.state.lock();
                if st.denied() == Some(why) {
                    st.readmit()
                } else {
                    None
                }
            };
            if lifted.is_some() {
                crate::observe::route_readmitted(
                    self.provider,
                    &self.account,
                    &r.region,
                    &r.model,
                    why,
                );
            }
        }
    }

    pub(super) async fn succeed(&self, route: &Route, ticket: Ticket, usage: &Usage) {
        self.readmit(route);
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
                        denied: None,
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
                let detail = skip
                    .denied
                    .map(|why| why.as_str().to_owned())
                    .unwrap_or_default();
                tally.skip(
                    self.attempt(route, skip.outcome, Duration::ZERO, detail),
                    skip,
                );
                Ok(None)
            }
        }
    }

    /// Records a failed attempt; the caller's fault ends the request (no failover), anything
    /// else lets the next route be tried. The attempt's detail is the error's short type, never
    /// the upstream's message.
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
            self.attempt(route, e.outcome(), latency, e.detail()),
            &e,
            cooldown,
        );
        match e {
            UpstreamError::Invalid { reason } => Err(SpokeError::Rejected {
                error_type: reason.error_type,
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
