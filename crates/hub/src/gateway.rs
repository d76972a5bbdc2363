//! The surface-independent request path every client surface shares (OpenAI chat, Anthropic
//! Messages, Bedrock Converse): authenticated tenant → content policy → tenant quota admission →
//! plan → route/failover at the spokes → quota settlement.
//!
//! A surface decodes its own wire format into a `switchyard.v1` [`pb::InferRequest`] (the one
//! internal model), resolves the alias, calls [`check`] then [`Checked::admit`], then [`Admission::complete`] or [`Admission::stream`], and
//! encodes the answer (or the [`HubError`]) in its own shape. Nothing here knows a wire format.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue};
use futures::stream::BoxStream;
use switchyard_proto::v1 as pb;
use tonic::Streaming;

use crate::config::Tenant;
use crate::error::HubError;
use crate::hub::{CallError, HasRoute, Hub, Plan, RouteTaken, classify};
use crate::routing::{Needs, Preference};

/// Header a client may send to reorder candidates: `cheapest` (configured price) or `fastest`
/// (observed latency).
pub const ROUTE_PREFERENCE: &str = "x-switchyard-route-preference";
/// Header a client may send to shorten the request deadline (milliseconds).
pub const TIMEOUT_MS: &str = "x-switchyard-timeout-ms";

/// What a surface decoded from one client request.
#[derive(Debug)]
pub struct Inbound<'a> {
    /// The client's headers (route preference, timeout).
    pub headers: &'a HeaderMap,
    /// The model alias the client asked for.
    pub model: &'a str,
    /// The request in the internal model (routing fields are filled here).
    pub request: pb::InferRequest,
    /// Capabilities the request needs besides the alias's own.
    pub needs: Needs,
    pub started: Instant,
    pub request_id: &'a str,
}

/// A request that passed policy and quota admission and is ready to be served. Dropping it
/// without calling [`Admission::complete`] or [`Admission::stream`] leaks nothing but holds the
/// quota reservation until it expires; surfaces always call one of them.
#[derive(Debug)]
pub struct Admission {
    pub tenant: Tenant,
    pub plan: Plan,
    pub request: pb::InferRequest,
    admitted: crate::quota::Admitted,
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
}

/// A committed stream (the route delivered its first content, or its end).
pub struct Streamed {
    pub items: BoxStream<'static, StreamItem>,
    pub route: RouteTaken,
    /// The serving spoke's own attempts (regions, models) before it committed.
    pub attempts: Vec<pb::Attempt>,
}

/// Reads a request body within the hub's size limit and request deadline.
pub async fn read_body(hub: &Hub, headers: &HeaderMap, body: Body) -> Result<Bytes, HubError> {
    let limit = hub.settings.max_body_bytes;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(HubError::BodyTooLarge(limit));
    }
    // A body trickled in slowly must not hold the request past its deadline.
    match tokio::time::timeout(
        hub.settings.request_timeout,
        axum::body::to_bytes(body, limit),
    )
    .await
    {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(HubError::BodyTooLarge(limit)),
        Err(_) => Err(HubError::BadRequest(
            "the request body was not received in time".into(),
        )),
    }
}

/// The request id: the client's `x-request-id` when sane, else a fresh one.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// A request that passed the message limit, alias resolution and the content policy, not yet
/// admitted against the tenant's quotas (the response cache answers here, before admission).
#[derive(Debug)]
pub struct Checked<'a> {
    pub tenant: Tenant,
    pub alias: crate::config::Alias,
    headers: &'a HeaderMap,
    /// The request as the content policy left it (what may leave the hub).
    pub request: pb::InferRequest,
    needs: Needs,
    started: Instant,
    request_id: &'a str,
}

/// Message limit and content policy for one request whose alias the surface resolved (with
/// [`Hub::resolve_alias`], so it can record the alias even when a later check refuses).
pub fn check<'a>(
    hub: &Hub,
    tenant: Tenant,
    alias: crate::config::Alias,
    inbound: Inbound<'a>,
) -> Result<Checked<'a>, HubError> {
    let Inbound {
        headers,
        model: _,
        mut request,
        needs,
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
    // Content controls: before quota admission and before anything leaves the hub.
    tenant.policy.apply(&mut request).map_err(|v| match v {
        crate::policy::Violation::Denied { rule } => {
            tracing::info!(request_id, tenant = %tenant.name, rule, "content policy: deny rule matched");
            HubError::ContentPolicy(rule)
        }
        crate::policy::Violation::Pii(kinds) => {
            let kinds: Vec<&'static str> = kinds.iter().map(|k| k.name()).collect();
            tracing::info!(request_id, tenant = %tenant.name, ?kinds, "content policy: PII blocked");
            HubError::PiiDetected(kinds)
        }
    })?;
    Ok(Checked {
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
            tenant,
            alias,
            headers,
            request,
            needs,
            started,
            request_id,
        } = self;
        // Tenant quotas: admission before routing (429 with Retry-After and x-ratelimit-*).
        let admitted = hub.admit(&tenant, &request).await?;
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
        // Images need a model that takes them, whichever surface they came through.
        let images = request
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .any(|p| matches!(p.part, Some(pb::content_part::Part::Image(_))));
        let needs = Needs {
            images: needs.images || images,
            ..needs
        };
        let plan = Plan {
            candidates: crate::observe::route_span(&alias.name, alias.candidates.len())
                .in_scope(|| hub.order(&alias, pref)),
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

impl Admission {
    /// Serves the request unary (`Infer`) with failover; settles the quota either way.
    pub async fn complete(self, hub: &Hub) -> Result<Completed, HubError> {
        let Admission {
            plan,
            request: base,
            admitted,
            ..
        } = self;
        let dispatched = hub
            .dispatch(&plan, |spoke, routing, remaining| {
                let req = merge(&base, routing);
                let rid = plan.request_id.clone();
                async move {
                    let mut client = spoke.client();
                    let resp = client
                        .infer(grpc_request(req, remaining, &rid))
                        .await
                        .map_err(|s| classify(&s))?;
                    Ok(resp.into_inner())
                }
            })
            .await;
        match dispatched {
            Ok((response, route, _guard)) => {
                hub.settle(admitted, response.usage.as_ref(), Some(&route))
                    .await;
                Ok(Completed { response, route })
            }
            Err(e) => {
                hub.settle(admitted, None, None).await;
                Err(e)
            }
        }
    }

    /// Serves the request streamed (`InferStream`). Failover happens until the first content;
    /// after that the stream is committed and a failure ends it with [`StreamItem::Failed`].
    /// The quota is settled exactly once: at the end, on failure, or here when nothing served.
    pub async fn stream(self, hub: &Arc<Hub>) -> Result<Streamed, HubError> {
        let Admission {
            plan,
            request: base,
            admitted,
            ..
        } = self;
        let dispatched = hub
            .dispatch(&plan, |spoke, routing, remaining| {
                open_stream(
                    spoke,
                    merge(&base, routing),
                    remaining,
                    plan.request_id.clone(),
                )
            })
            .await;
        let (committed, route, guard) = match dispatched {
            Ok(d) => d,
            Err(e) => {
                hub.settle(admitted, None, None).await;
                return Err(e);
            }
        };
        let quota_hub = hub.clone();
        let quota_route = route.clone();
        let deadline = plan.deadline;
        let request_id = plan.request_id.clone();
        let Committed {
            start,
            buffered,
            mut rest,
        } = committed;
        let attempts = start.map(|s| s.attempts).unwrap_or_default();
        let items = async_stream::stream! {
            let _guard = guard;
            let mut admitted = Some(admitted);
            let mut pending: std::collections::VecDeque<pb::InferEvent> = buffered.into();
            loop {
                let next = match pending.pop_front() {
                    Some(ev) => Ok(Some(ev)),
                    None => match tokio::time::timeout_at(deadline.into(), rest.message()).await {
                        Ok(r) => r.map_err(|s| format!("{:?}: {}", s.code(), s.message())),
                        Err(_) => Err("deadline exceeded".to_string()),
                    },
                };
                match next {
                    Ok(Some(pb::InferEvent { event: Some(pb::infer_event::Event::Delta(d)) })) => {
                        yield StreamItem::Delta(d);
                    }
                    Ok(Some(pb::InferEvent { event: Some(pb::infer_event::Event::End(end)) })) => {
                        if let Some(a) = admitted.take() {
                            quota_hub.settle(a, end.usage.as_ref(), Some(&quota_route)).await;
                        }
                        yield StreamItem::End(end);
                        break;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        tracing::warn!(request_id = %request_id, "spoke stream closed without an end event");
                        if let Some(a) = admitted.take() {
                            quota_hub.settle(a, None, None).await;
                        }
                        yield StreamItem::Failed("the stream ended unexpectedly");
                        break;
                    }
                    Err(why) => {
                        tracing::warn!(request_id = %request_id, reason = %why, "stream failed after first chunk");
                        if let Some(a) = admitted.take() {
                            quota_hub.settle(a, None, None).await;
                        }
                        yield StreamItem::Failed("the upstream failed while streaming");
                        break;
                    }
                }
            }
        };
        Ok(Streamed {
            items: Box::pin(items),
            route,
            attempts,
        })
    }
}

impl HasRoute for pb::EmbedResponse {
    fn route(&self) -> pb::Route {
        self.route.clone().unwrap_or_default()
    }
}

impl Admission {
    /// Serves an embeddings request (`Embed`) with failover; settles the quota either way. The
    /// inputs are the text parts of the admitted request's messages, one message per input, as
    /// the content policy left them.
    pub async fn embed(
        self,
        hub: &Hub,
        dimensions: u32,
    ) -> Result<(pb::EmbedResponse, RouteTaken), HubError> {
        let Admission {
            plan,
            request,
            admitted,
            ..
        } = self;
        let inputs: Vec<String> = request
            .messages
            .iter()
            .map(|m| {
                m.content
                    .iter()
                    .filter_map(|p| match &p.part {
                        Some(pb::content_part::Part::Text(t)) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        let dispatched = hub
            .dispatch(&plan, |spoke, routing, remaining| {
                let req = pb::EmbedRequest {
                    request_id: routing.request_id,
                    models: routing.models,
                    inputs: inputs.clone(),
                    dimensions,
                    allowed_regions: routing.allowed_regions,
                    timeout_ms: routing.timeout_ms,
                };
                let rid = plan.request_id.clone();
                async move {
                    let mut client = spoke.client();
                    let resp = client
                        .embed(grpc_request(req, remaining, &rid))
                        .await
                        .map_err(|s| classify(&s))?;
                    Ok(resp.into_inner())
                }
            })
            .await;
        match dispatched {
            Ok((response, route, _guard)) => {
                hub.settle(admitted, response.usage.as_ref(), Some(&route))
                    .await;
                Ok((response, route))
            }
            Err(e) => {
                hub.settle(admitted, None, None).await;
                Err(e)
            }
        }
    }
}

/// `x-switchyard-*` headers naming the route that served a request.
pub fn route_headers(h: &mut HeaderMap, route: &RouteTaken, started: Instant) {
    let overhead = started.elapsed().saturating_sub(route.spoke_time);
    let pairs = [
        ("x-switchyard-provider", route.provider.clone()),
        ("x-switchyard-account", route.account.clone()),
        ("x-switchyard-region", route.region.clone()),
        ("x-switchyard-model", route.model.clone()),
        ("x-switchyard-attempts", route.attempts.to_string()),
        (
            "x-switchyard-overhead-ms",
            format!("{:.3}", overhead.as_secs_f64() * 1000.0),
        ),
    ];
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
}

/// The request body with the routing fields of one attempt.
fn merge(base: &pb::InferRequest, routing: pb::InferRequest) -> pb::InferRequest {
    pb::InferRequest {
        request_id: routing.request_id,
        models: routing.models,
        allowed_regions: routing.allowed_regions,
        timeout_ms: routing.timeout_ms,
        ..base.clone()
    }
}

/// Deadline (`grpc-timeout`) and request id travel as gRPC metadata.
fn grpc_request<T>(msg: T, timeout: Duration, request_id: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    if let Ok(v) = request_id.parse() {
        r.metadata_mut().insert(switchyard_proto::REQUEST_ID, v);
    }
    // W3C trace context of the current (attempt) span, when tracing is on.
    switchyard_core::telemetry::inject(
        &tracing::Span::current(),
        &mut crate::observe::MetadataInjector(r.metadata_mut()),
    );
    r
}

/// A stream that has delivered its first content (or its end): from here on it is committed.
struct Committed {
    start: Option<pb::StreamStart>,
    buffered: Vec<pb::InferEvent>,
    rest: Streaming<pb::InferEvent>,
}

impl HasRoute for Committed {
    fn route(&self) -> pb::Route {
        self.start
            .as_ref()
            .and_then(|s| s.route.clone())
            .unwrap_or_default()
    }
}

/// Opens the stream at a spoke and reads until the first delta: failures before it fail over.
async fn open_stream(
    spoke: Arc<crate::pool::Spoke>,
    req: pb::InferRequest,
    remaining: Duration,
    request_id: String,
) -> Result<Committed, CallError> {
    let mut client = spoke.client();
    let mut rest = client
        .infer_stream(grpc_request(req, remaining, &request_id))
        .await
        .map_err(|s| classify(&s))?
        .into_inner();
    let mut start = None;
    loop {
        match rest.message().await {
            Ok(Some(ev)) => match ev.event {
                Some(pb::infer_event::Event::Start(s)) => start = Some(s),
                Some(e @ (pb::infer_event::Event::Delta(_) | pb::infer_event::Event::End(_))) => {
                    return Ok(Committed {
                        start,
                        buffered: vec![pb::InferEvent { event: Some(e) }],
                        rest,
                    });
                }
                None => {}
            },
            Ok(None) => {
                return Err(CallError::Retry(
                    crate::error::AttemptFailure::Unavailable,
                    "stream closed before any content".into(),
                ));
            }
            Err(s) => return Err(classify(&s)),
        }
    }
}

/// A [`HubError`] as a response in a surface's own error shape: the hub's status, `Retry-After`,
/// `x-switchyard-attempts` and `x-ratelimit-*` headers, with `body` (and `status`, when the
/// surface maps it differently) replacing the OpenAI body.
pub fn error_response(
    e: HubError,
    status: axum::http::StatusCode,
    body: serde_json::Value,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut resp = e.into_response();
    *resp.status_mut() = status;
    *resp.body_mut() = Body::from(body.to_string());
    resp.headers_mut().remove(http::header::CONTENT_LENGTH);
    resp
}
