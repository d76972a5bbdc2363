//! The surface-independent request path every client surface shares (OpenAI chat, Anthropic
//! Messages, Bedrock Converse): authenticated tenant → content policy → tenant quota admission →
//! plan → route/failover at the spokes → quota settlement.
//!
//! A surface decodes its own wire format into a `switchyard.v1` [`pb::InferRequest`] (the one
//! internal model), resolves the alias, calls [`check`] then [`Checked::admit`], then [`Admission::complete`] or [`Admission::stream`], and
//! encodes the answer (or the [`HubError`]) in its own shape. Nothing here knows a wire format.

pub mod bounds;
mod cache;
mod failover;
mod quota;
mod serve;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use futures::stream::BoxStream;
use switchyard_proto::v1 as pb;

use crate::error::HubError;
use crate::headers::{ROUTE_PREFERENCE, TIMEOUT_MS};
use crate::live::Snapshot;
use crate::model::{Alias, RouteTaken, Tenant};
use crate::routing::{AskedBy, Needs, Preference};
use crate::state::Hub;

pub use cache::{Cached, lookup};
pub use failover::{Plan, dispatch};
pub use quota::Admitted;

/// What a surface decoded from one client request.
#[derive(Debug)]
pub struct Inbound<'a> {
    /// The request's one snapshot of the live table (it authenticated and resolved with it).
    pub table: Snapshot,
    /// The client's headers (route preference, timeout).
    pub headers: &'a HeaderMap,
    /// The model alias the client asked for.
    pub model: &'a str,
    /// The request in the internal model (routing fields are filled here).
    pub request: pb::InferRequest,
    /// Capabilities the request needs besides the alias's own.
    pub needs: Needs,
    /// Which request field asked for each capability (names the field in a refusal).
    pub asked: AskedBy,
    pub started: Instant,
    pub request_id: &'a str,
}

/// A request that passed policy and quota admission and is ready to be served. Dropping it
/// without calling [`Admission::complete`] or [`Admission::stream`] (or dropping their futures:
/// the client went away) returns its quota reservation in the background.
#[derive(Debug)]
pub struct Admission {
    pub tenant: Tenant,
    pub plan: Plan,
    pub request: pb::InferRequest,
    admitted: quota::Admitted,
    /// The tenant's rate-limit state at admission (for `x-ratelimit-*`).
    pub rate_state: switchyard_quota::RateState,
    pub started: Instant,
}

/// A finished, non-streamed answer.
#[derive(Debug)]
pub struct Completed {
    pub response: pb::InferResponse,
    pub route: RouteTaken,
}

/// One event of a committed stream, as surfaces see it.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Delta(pb::StreamDelta),
    /// The clean end; the quota is settled before it is yielded.
    End(pb::StreamEnd),
    /// The stream failed after it had been committed; nothing follows. The message is
    /// client-safe.
    Failed(&'static str),
    /// A stream committed before its route answered ([`Opened::Late`]) is still waiting for
    /// its first content: the surface shows it alive (an SSE comment, Anthropic's `ping`).
    Waiting,
    /// A stream committed before its route answered ([`Opened::Late`]) found no route: the
    /// error the caller would have got as a status, rendered in the stream in the surface's
    /// shape; nothing follows.
    Refused(Refusal),
}

/// The error of [`StreamItem::Refused`] (shared, so items stay cheap to clone).
#[derive(Debug, Clone)]
pub struct Refusal(pub Arc<HubError>);

impl PartialEq for Refusal {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// How a stream opened ([`Admission::open_stream`]).
pub enum Opened {
    /// Its route answered within the keep-alive interval: the response status and route
    /// headers are known before anything is sent (as without a keep-alive).
    Now(Streamed),
    /// It had not answered within the interval: the surface commits its response now (200 and
    /// its headers) and renders the items, which begin with [`StreamItem::Waiting`] every
    /// interval and end in the route's items or [`StreamItem::Refused`]. `route` is empty: the
    /// record gets the route when it is known.
    Late(Streamed),
}

/// A committed stream (the route delivered its first content, or its end).
pub struct Streamed {
    pub items: BoxStream<'static, StreamItem>,
    pub route: RouteTaken,
    /// The serving spoke's own attempts (regions, models) before it committed.
    pub attempts: Vec<pb::Attempt>,
}

/// The tenant's content policy on `request` (deny rules, PII handling), in place: what may
/// leave the hub. Errors: 400 `content_policy_violation` (a deny rule matched) or
/// `pii_detected`.
pub fn apply_policy(
    tenant: &Tenant,
    request: &mut pb::InferRequest,
    request_id: &str,
) -> Result<(), HubError> {
    tenant.policy.apply(request).map_err(|v| match v {
        crate::policy::Violation::Denied { rule } => {
            tracing::info!(request_id, tenant = %tenant.name, rule, "content policy: deny rule matched");
            HubError::ContentPolicy(rule)
        }
        crate::policy::Violation::Pii(kinds) => {
            let kinds: Vec<&'static str> = kinds.iter().map(|k| k.name()).collect();
            tracing::info!(request_id, tenant = %tenant.name, ?kinds, "content policy: PII blocked");
            HubError::PiiDetected(kinds)
        }
    })
}

/// A request that passed the message limit, alias resolution and the content policy, not yet
/// admitted against the tenant's quotas (the response cache answers here, before admission).
#[derive(Debug)]
pub struct Checked<'a> {
    table: Snapshot,
    pub tenant: Tenant,
    pub alias: Alias,
    headers: &'a HeaderMap,
    /// The request as the content policy left it (what may leave the hub).
    pub request: pb::InferRequest,
    needs: Needs,
    started: Instant,
    request_id: &'a str,
}

/// Message limit, the bounds on tools, `n`, logprobs, `logit_bias`, the response schema and on
/// `max_tokens` against the candidates' context windows, what the request asks for against what
/// the candidates' models can do ([`bounds`]), and the content policy, for one request whose
/// alias the surface resolved (with [`crate::live::Table::resolve_alias`], so it can record the
/// alias even when a later check refuses).
pub fn check<'a>(
    hub: &Hub,
    tenant: Tenant,
    alias: Alias,
    inbound: Inbound<'a>,
) -> Result<Checked<'a>, HubError> {
    let Inbound {
        table,
        headers,
        model: _,
        mut request,
        needs,
        asked,
        started,
        request_id,
    } = inbound;
    if request.messages.len() > hub.settings.max_messages {
        return Err(HubError::BadRequest(format!(
            "the request has {} messages; at most {} are accepted",
            request.messages.len(),
            hub.settings.max_messages
        )));
    }
    bounds::tools(&request, &hub.settings.bounds)?;
    bounds::params(&request, &hub.settings.bounds, &asked)?;
    bounds::context(&table, &alias, &needs, &request)?;
    bounds::capabilities(&table, &alias, &needs.union(alias.needs), &asked, &request)?;
    // Content controls: before quota admission and before anything leaves the hub.
    apply_policy(&tenant, &mut request, request_id)?;
    Ok(Checked {
        table,
        tenant,
        alias,
        headers,
        request,
        needs,
        started,
        request_id,
    })
}

impl Checked<'_> {
    /// Tenant quota admission and the routing plan.
    pub async fn admit(self, hub: &Hub) -> Result<Admission, HubError> {
        let Checked {
            table,
            tenant,
            alias,
            headers,
            request,
            needs,
            started,
            request_id,
        } = self;
        // Tenant quotas: admission before routing (429 with Retry-After and x-ratelimit-*).
        let admitted = quota::admit(hub, &tenant, &request).await?;
        let rate_state = admitted.state;
        let pref = match headers.get(ROUTE_PREFERENCE) {
            None => Preference::Priority,
            Some(v) => v.to_str().ok().and_then(Preference::parse).ok_or_else(|| {
                HubError::BadRequest(format!(
                    "{ROUTE_PREFERENCE}: expected \"cheapest\" or \"fastest\""
                ))
            })?,
        };
        let mut timeout = hub.settings.request_timeout;
        if let Some(v) = headers.get(TIMEOUT_MS) {
            let ms = v
                .to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|ms| *ms > 0)
                .ok_or_else(|| {
                    HubError::BadRequest(format!("{TIMEOUT_MS}: expected milliseconds"))
                })?;
            timeout = timeout.min(Duration::from_millis(ms));
        }
        let candidates =
            crate::observe::route_span(&alias.name, alias.candidates.len()).in_scope(|| {
                crate::routing::order_candidates(
                    &alias.candidates,
                    pref,
                    &hub.latency.of(),
                    rand::random_range(0..100),
                )
            });
        let plan = Plan {
            table,
            candidates,
            needs: needs.union(alias.needs),
            deadline: started + timeout,
            request_id: request_id.to_string(),
            allowed_regions: tenant.allowed_regions.clone(),
        };
        tracing::debug!(request_id, tenant = %tenant.name, alias = %alias.name, stream = needs.streaming, "request admitted");
        Ok(Admission {
            tenant,
            plan,
            request,
            admitted,
            rate_state,
            started,
        })
    }
}
