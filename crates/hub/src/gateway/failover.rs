//! The failover loop, owned by one function ([`dispatch`]): which spoke to call next, and what
//! a failed attempt means. It asks the attempt's error only whether it may retry; what a gRPC
//! status means is decided where it is read (`outbound::call::classify`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_proto::v1 as pb;

use crate::error::{AttemptFailure, FailedAttempt, HubError};
use crate::live::Snapshot;
use crate::model::{Candidate, RouteTaken};
use crate::outbound::call::{CallError, HasRoute};
use crate::outbound::pool::{InFlight, Spoke};
use crate::routing::{self, Needs};
use crate::state::Hub;

/// One resolved request, ready for the failover loop.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The request's one snapshot of the live table.
    pub table: Snapshot,
    pub candidates: Vec<Candidate>,
    pub needs: Needs,
    pub deadline: Instant,
    pub request_id: String,
    pub allowed_regions: Vec<String>,
}

/// The failover loop. `call` performs one attempt against one spoke with the time left; the
/// loop tries the next spoke of the candidate, then the next candidate, within the deadline,
/// `max_attempts` and the retry budget. The pools are the plan's snapshot: the ones the request
/// was authenticated and resolved with.
pub async fn dispatch<T, F, Fut>(
    hub: &Hub,
    plan: &Plan,
    mut call: F,
) -> Result<(T, RouteTaken, InFlight), HubError>
where
    F: FnMut(Arc<Spoke>, pb::InferRequest, Duration) -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
    T: HasRoute,
{
    hub.budget.record_request();
    let mut failed: Vec<FailedAttempt> = Vec::new();
    let mut made = 0u32;
    let mut spoke_time = Duration::ZERO;
    // A candidate had no spoke left to try while some of its spokes' accounts still refuse
    // the model: the request is answered as refused by every account, not as "no route".
    let mut routed_around_denied = false;
    for cand in &plan.candidates {
        let Some(pool) = plan.table.pools.get(&cand.provider) else {
            continue;
        };
        let mut exclude = Vec::new();
        loop {
            let views = pool.views();
            let picked = {
                let mut rng = rand::rng();
                routing::pick_spoke(&views, &cand.model, &plan.needs, &exclude, &mut rng)
            };
            let Some(id) = picked else {
                let now = Instant::now();
                routed_around_denied |= pool
                    .spokes()
                    .iter()
                    .any(|s| !exclude.contains(&s.id) && s.denies(&cand.model, now));
                break;
            };
            exclude.push(id);
            let Some(spoke) = pool.get(id) else { continue };
            if made >= hub.settings.max_attempts {
                return Err(final_error(failed, routed_around_denied));
            }
            if made > 0 && !hub.budget.try_retry() {
                tracing::warn!(request_id = %plan.request_id, "retry budget exhausted");
                return Err(final_error(failed, routed_around_denied));
            }
            let now = Instant::now();
            if now >= plan.deadline {
                return Err(HubError::DeadlineExceeded { attempts: failed });
            }
            let remaining = plan.deadline - now;
            made += 1;
            let req = pb::InferRequest {
                request_id: plan.request_id.clone(),
                models: vec![cand.model.clone()],
                allowed_regions: plan.allowed_regions.clone(),
                timeout_ms: u64::try_from(remaining.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
                ..Default::default()
            };
            if made > 1 {
                crate::observe::retried(&cand.provider, failed.last());
            }
            let span = crate::observe::attempt_span(cand, spoke.addr, made);
            let guard = spoke.begin();
            let started = Instant::now();
            // One attempt may take `attempt_timeout` (unary: the answer; streams: the first
            // content), so a hung spoke costs that, not the whole deadline. The call itself
            // keeps the whole remaining deadline as its `grpc-timeout` (a stream may run
            // long once it started).
            let limit = hub
                .settings
                .attempt_timeout
                .map_or(remaining, |a| a.min(remaining));
            // Boxed where it is made: the timeout, the span and this loop's state then move a
            // pointer, not the call's future (the request and the gRPC call's state).
            let attempt = Box::pin(call(spoke.clone(), req, remaining));
            let result = match tokio::time::timeout(
                limit,
                tracing::Instrument::instrument(attempt, span.clone()),
            )
            .await
            {
                Ok(r) => r,
                Err(_) if limit < remaining => Err(CallError::Retry(
                    AttemptFailure::AttemptTimeout,
                    format!(
                        "no answer within attempt_timeout ({} ms)",
                        limit.as_millis()
                    ),
                )),
                Err(_) => Err(CallError::Retry(AttemptFailure::Timeout, "deadline".into())),
            };
            let took = started.elapsed();
            spoke_time += took;
            // Passive outlier detection sees every call's outcome (a deadline that passed is
            // the request's, not the spoke's).
            let past_deadline = Instant::now() >= plan.deadline;
            match &result {
                Ok(_) => spoke.record_outcome(None, &pool.outlier_detection),
                Err(CallError::Retry(kind, _)) if !past_deadline => {
                    spoke.record_outcome(Some(kind), &pool.outlier_detection);
                }
                Err(CallError::Retry(..)) => {}
                Err(CallError::Final(_)) => {
                    spoke.record_outcome(Some(&AttemptFailure::Rejected), &pool.outlier_detection);
                }
            }
            match result {
                Ok(v) => {
                    hub.latency.observe(cand, took);
                    let r = v.route();
                    crate::observe::attempt_ok(&span, &r);
                    let route = RouteTaken {
                        pool: cand.provider.clone(),
                        spoke: spoke.addr.to_string(),
                        failed: failed.clone(),
                        price: (cand.price_in, cand.price_out),
                        provider: if r.provider.is_empty() {
                            cand.provider.clone()
                        } else {
                            r.provider.clone()
                        },
                        account: if r.account.is_empty() {
                            spoke.account().unwrap_or_default()
                        } else {
                            r.account.clone()
                        },
                        region: r.region.clone(),
                        model: if r.model.is_empty() {
                            cand.model.clone()
                        } else {
                            r.model.clone()
                        },
                        attempts: made,
                        spoke_time,
                    };
                    return Ok((v, route, guard));
                }
                Err(CallError::Final(mut e)) => {
                    // The upstream refused the request itself: no other route is tried. The
                    // refusing spoke and its account go with the error (audit, log).
                    let detail = e.to_string();
                    if let HubError::UpstreamRejected { attempts, .. } = &mut e {
                        tracing::info!(
                            request_id = %plan.request_id, spoke = %spoke.addr, provider = %cand.provider,
                            model = %cand.model, "request rejected by the upstream"
                        );
                        failed.push(FailedAttempt {
                            provider: cand.provider.clone(),
                            model: cand.model.clone(),
                            spoke: spoke.addr.to_string(),
                            account: spoke.account(),
                            kind: AttemptFailure::Rejected,
                            detail,
                        });
                        *attempts = failed;
                    }
                    return Err(e);
                }
                Err(CallError::Retry(kind, detail)) => {
                    drop(guard);
                    // Past the deadline every failure is a timeout (the spoke or tonic may
                    // report it as CANCELLED): no ejection, no further attempts.
                    let kind = if past_deadline || Instant::now() >= plan.deadline {
                        AttemptFailure::Timeout
                    } else {
                        kind
                    };
                    match kind {
                        AttemptFailure::Transport => spoke.eject(&detail),
                        AttemptFailure::Exhausted { retry_after_ms } => {
                            spoke.mark_exhausted(retry_after_ms.map(Duration::from_millis));
                        }
                        AttemptFailure::Denied { retry_after_ms } => {
                            spoke
                                .deny_model(&cand.model, retry_after_ms.map(Duration::from_millis));
                        }
                        AttemptFailure::Unavailable
                        | AttemptFailure::NotServed
                        | AttemptFailure::Timeout
                        | AttemptFailure::AttemptTimeout
                        | AttemptFailure::Rejected => {}
                    }
                    crate::observe::attempt_failed(&span, &cand.provider, &kind);
                    tracing::info!(
                        request_id = %plan.request_id, spoke = %spoke.addr, provider = %cand.provider,
                        model = %cand.model, failure = ?kind, detail = %detail, "attempt failed"
                    );
                    failed.push(FailedAttempt {
                        provider: cand.provider.clone(),
                        model: cand.model.clone(),
                        spoke: spoke.addr.to_string(),
                        account: spoke.account(),
                        kind,
                        detail,
                    });
                    if !kind.is_retryable() {
                        return Err(HubError::DeadlineExceeded { attempts: failed });
                    }
                }
            }
        }
    }
    Err(final_error(failed, routed_around_denied))
}

/// The error when no attempt succeeded: any quota exhaustion → 429 with the earliest retry time;
/// every attempt refused for its account's reasons (or none made because every spoke left
/// still refuses the model: `routed_around_denied`) → 503 `AccountsDenied`; otherwise 503.
fn final_error(failed: Vec<FailedAttempt>, routed_around_denied: bool) -> HubError {
    let exhausted: Vec<Option<u64>> = failed
        .iter()
        .filter_map(|a| match a.kind {
            AttemptFailure::Exhausted { retry_after_ms } => Some(retry_after_ms),
            AttemptFailure::Denied { .. }
            | AttemptFailure::Unavailable
            | AttemptFailure::Transport
            | AttemptFailure::NotServed
            | AttemptFailure::Timeout
            | AttemptFailure::AttemptTimeout
            | AttemptFailure::Rejected => None,
        })
        .collect();
    if (routed_around_denied || !failed.is_empty())
        && failed
            .iter()
            .all(|a| matches!(a.kind, AttemptFailure::Denied { .. }))
    {
        return HubError::AccountsDenied { attempts: failed };
    }
    if exhausted.is_empty() {
        HubError::NoRoute { attempts: failed }
    } else {
        let retry_after = exhausted
            .iter()
            .flatten()
            .min()
            .map(|ms| Duration::from_millis(*ms));
        HubError::Exhausted {
            retry_after,
            attempts: failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_error_prefers_429_with_earliest_retry() {
        let a = |kind| FailedAttempt {
            provider: "p".into(),
            model: "m".into(),
            spoke: "s".into(),
            account: None,
            kind,
            detail: String::new(),
        };
        let e = final_error(
            vec![
                a(AttemptFailure::Exhausted {
                    retry_after_ms: Some(3000),
                }),
                a(AttemptFailure::Exhausted {
                    retry_after_ms: Some(1200),
                }),
                a(AttemptFailure::Unavailable),
            ],
            false,
        );
        assert!(
            matches!(e, HubError::Exhausted { retry_after: Some(d), .. } if d == Duration::from_millis(1200))
        );
        assert!(matches!(
            final_error(vec![], false),
            HubError::NoRoute { .. }
        ));
    }

    #[test]
    fn routed_around_refusing_accounts_is_accounts_denied() {
        let denied = FailedAttempt {
            provider: "p".into(),
            model: "m".into(),
            spoke: "s".into(),
            account: None,
            kind: AttemptFailure::Denied {
                retry_after_ms: Some(1000),
            },
            detail: String::new(),
        };
        assert!(matches!(
            final_error(vec![], true),
            HubError::AccountsDenied { .. }
        ));
        assert!(matches!(
            final_error(vec![denied.clone()], false),
            HubError::AccountsDenied { .. }
        ));
        let mut down = denied.clone();
        down.kind = AttemptFailure::Unavailable;
        assert!(matches!(
            final_error(vec![denied, down], true),
            HubError::NoRoute { .. }
        ));
    }
}
