//! The client-facing HTTP API (OpenAI-compatible) and its handlers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use switchyard_proto::v1 as pb;
use tonic::Streaming;

use crate::config::Tenant;
use crate::error::HubError;
use crate::hub::{CallError, HasRoute, Hub, Plan, RouteTaken, classify};
use crate::openai::{self, ChatRequest};
use crate::routing::Preference;

/// Header a client may send to reorder candidates: `cheapest` (configured price) or `fastest`
/// (observed latency).
pub const ROUTE_PREFERENCE: &str = "x-switchyard-route-preference";
/// Header a client may send to shorten the request deadline (milliseconds).
pub const TIMEOUT_MS: &str = "x-switchyard-timeout-ms";

/// The hub's HTTP routes; no socket needed (tests call it with `tower::ServiceExt::oneshot`).
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions_handler))
        .route("/v1/models", get(models_handler))
        .route("/healthz", get(healthz_handler))
        .route("/readyz", get(readyz_handler))
        .route("/metrics", get(crate::observe::metrics_handler))
        .merge(crate::admin::routes())
        .merge(crate::prompts::routes())
        .fallback(fallback_handler)
        .with_state(hub)
        // Outermost: trace, then turn a panic into a 500 in OpenAI's shape.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    HubError::Internal("panic".into()).into_response()
}

/// Liveness: the process answers. Reports whether the shared quota store (Redis) answers;
/// while it does not, local limits are in force (`"degraded: local limits"`) and requests
/// still flow, so this stays 200.
async fn healthz_handler(State(hub): State<Arc<Hub>>) -> Response {
    let quota = if hub.quota.is_shared_healthy() {
        "ok"
    } else {
        "degraded: local limits"
    };
    axum::Json(json!({"status": "ok", "quota_store": quota})).into_response()
}

/// Ready when at least one spoke of any pool is healthy.
async fn readyz_handler(State(hub): State<Arc<Hub>>) -> Response {
    let table = hub.table.load();
    let ready = table
        .pools
        .values()
        .any(|p| p.spokes().iter().any(|s| s.is_healthy()));
    if ready {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no healthy spoke").into_response()
    }
}

async fn fallback_handler() -> Response {
    HubError::NotFound.into_response()
}

pub(crate) async fn authenticate(hub: &Hub, headers: &HeaderMap) -> Result<Tenant, HubError> {
    let mut all = headers.get_all(http::header::AUTHORIZATION).iter();
    let (Some(value), None) = (all.next(), all.next()) else {
        // None, or several: a request must not be able to pick among identities.
        return Err(HubError::Unauthorized);
    };
    let value = value.to_str().map_err(|_| HubError::Unauthorized)?;
    let key = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(HubError::Unauthorized)?
        .trim();
    // A JWT has three dot-separated parts and starts with a base64url JSON header (`eyJ`);
    // an API key never does.
    if let Some(jwt) = &hub.jwt
        && key.starts_with("eyJ")
        && key.matches('.').count() == 2
    {
        return match jwt.verify(key).await {
            Ok(name) => hub.tenant_named(&name).ok_or_else(|| {
                tracing::info!("JWT refused: unknown tenant in claim");
                HubError::Unauthorized
            }),
            Err(e) => {
                tracing::info!(reason = %e, "JWT refused");
                Err(HubError::Unauthorized)
            }
        };
    }
    hub.authenticate(key).ok_or(HubError::Unauthorized)
}

async fn models_handler(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    let tenant = match authenticate(&hub, &headers).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let table = hub.table.load();
    let data: Vec<_> = table
        .aliases
        .keys()
        .filter(|a| tenant.may_use(a))
        .map(|a| json!({"id": a, "object": "model", "created": 0, "owned_by": "switchyard"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

pub(crate) async fn chat_completions_handler(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let span = crate::observe::request_span(&headers, &request_id);
    let mut rec =
        crate::observe::RequestRecord::start(hub.audit.clone(), &request_id, span.clone());
    let chatting = chat(&hub, &headers, body, started, &request_id, &mut rec);
    let mut resp = match tracing::Instrument::instrument(chatting, span).await {
        Ok(r) => r,
        Err(e) => {
            rec.set_error(&e);
            e.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    rec.finish_response(resp.headers(), resp.status().as_u16());
    resp
}

async fn chat(
    hub: &Arc<Hub>,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
    request_id: &str,
    rec: &mut crate::observe::RequestRecord,
) -> Result<Response, HubError> {
    let tenant = authenticate(hub, headers).await?;
    rec.set_tenant(&tenant.name);
    let limit = hub.settings.max_body_bytes;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(HubError::BodyTooLarge(limit));
    }
    // A body trickled in slowly must not hold the request past its deadline.
    let bytes = match tokio::time::timeout(
        hub.settings.request_timeout,
        axum::body::to_bytes(body, limit),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return Err(HubError::BodyTooLarge(limit)),
        Err(_) => {
            return Err(HubError::BadRequest(
                "the request body was not received in time".into(),
            ));
        }
    };
    let mut req: ChatRequest = serde_json::from_slice(&bytes)
        .map_err(|e| HubError::BadRequest(format!("invalid request body: {e}")))?;
    let prompt_used = crate::prompts::expand(hub, &mut req)?;
    if req.messages.len() > hub.settings.max_messages {
        return Err(HubError::BadRequest(format!(
            "`messages` has {} entries; at most {} are accepted",
            req.messages.len(),
            hub.settings.max_messages
        )));
    }
    let alias = hub.resolve_alias(&tenant, &req.model)?;
    rec.set_request(&alias, &req);
    let mut base = req.to_infer()?;
    // Content controls: before quota admission and before anything leaves the hub.
    tenant.policy.apply(&mut base).map_err(|v| match v {
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
    // Response cache and coalescing (opt-in, deterministic requests only).
    let mut lead = None;
    if let Some((key, ttl)) = crate::cache::cacheable(&tenant, &alias, &req, &base) {
        let deadline = started + hub.settings.request_timeout;
        let reply = crate::cache::Reply::for_request(&req, request_id, deadline);
        match crate::cache::serve(hub, &tenant, key, ttl, reply).await? {
            crate::cache::Served::Done(mut resp) => {
                crate::prompts::mark(&mut resp, prompt_used.as_ref());
                return Ok(resp);
            }
            crate::cache::Served::Lead(l) => lead = Some(l),
        }
    }
    let cache_miss = lead.is_some();
    // Tenant quotas: admission before routing (429 with Retry-After and x-ratelimit-*).
    let admitted = hub.admit(&tenant, &base).await?;
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
            .ok_or_else(|| HubError::BadRequest(format!("{TIMEOUT_MS}: expected milliseconds")))?;
        timeout = timeout.min(Duration::from_millis(ms));
    }
    let plan = Plan {
        candidates: crate::observe::route_span(&alias.name, alias.candidates.len())
            .in_scope(|| hub.order(&alias, pref)),
        needs: req.needs().union(alias.needs),
        deadline: started + timeout,
        request_id: request_id.to_string(),
        allowed_regions: tenant.allowed_regions.clone(),
    };
    tracing::debug!(request_id, tenant = %tenant.name, alias = %alias.name, stream = req.stream, "chat request");
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let id = format!("chatcmpl-{request_id}");
    if req.stream {
        let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
        let mut resp = stream_chat(
            hub,
            plan,
            base,
            started,
            ChunkMeta {
                id,
                created,
                include_usage,
                lead,
            },
            admitted,
            rec.take_for_stream(),
        )
        .await?;
        crate::quota::ratelimit_headers(resp.headers_mut(), &rate_state);
        crate::cache::mark_miss(&mut resp, cache_miss);
        crate::prompts::mark(&mut resp, prompt_used.as_ref());
        Ok(resp)
    } else {
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
        let (resp, route, _guard) = match dispatched {
            Ok(d) => d,
            Err(e) => {
                hub.settle(admitted, None, None).await;
                return Err(e);
            }
        };
        hub.settle(admitted, resp.usage.as_ref(), Some(&route))
            .await;
        if let Some(l) = lead {
            l.finish(crate::cache::Answer::from_response(&resp, &route))
                .await;
        }
        rec.set_route(&route, resp.usage.as_ref(), &resp.attempts);
        let mut out = axum::Json(openai::completion_json(&id, created, &resp)).into_response();
        route_headers(out.headers_mut(), &route, started);
        crate::observe::cost_header(out.headers_mut(), rec.cost());
        crate::quota::ratelimit_headers(out.headers_mut(), &rate_state);
        crate::cache::mark_miss(&mut out, cache_miss);
        crate::prompts::mark(&mut out, prompt_used.as_ref());
        Ok(out)
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

fn route_headers(h: &mut HeaderMap, route: &RouteTaken, started: Instant) {
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

/// How the SSE chunks of one completion are labelled.
struct ChunkMeta {
    id: String,
    created: u64,
    include_usage: bool,
    /// Feeds identical requests following this one (and the response cache).
    lead: Option<crate::cache::Leader>,
}

async fn stream_chat(
    hub: &Arc<Hub>,
    plan: Plan,
    base: pb::InferRequest,
    started: Instant,
    meta: ChunkMeta,
    admitted: crate::quota::Admitted,
    mut rec: crate::observe::RequestRecord,
) -> Result<Response, HubError> {
    let ChunkMeta {
        id,
        created,
        include_usage,
        mut lead,
    } = meta;
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
            rec.set_error(&e);
            return Err(e);
        }
    };
    rec.set_route(
        &route,
        None,
        committed
            .start
            .as_ref()
            .map_or(&[][..], |s| s.attempts.as_slice()),
    );
    let quota_hub = hub.clone();
    let quota_route = route.clone();
    let deadline = plan.deadline;
    let model = route.model.clone();
    if let Some(l) = &lead {
        l.set_model(&model);
    }
    let request_id = plan.request_id.clone();
    let Committed {
        buffered, mut rest, ..
    } = committed;
    let events = async_stream::stream! {
        let _guard = guard;
        let mut rec = rec;
        // Settled exactly once: with the usage at the end, or released on failure.
        let mut admitted = Some(admitted);
        let chunk = |delta: serde_json::Value, finish: Option<&str>| {
            Event::default().data(openai::chunk_json(&id, created, &model, delta, finish, include_usage).to_string())
        };
        yield Ok::<_, Infallible>(chunk(json!({"role": "assistant", "content": ""}), None));
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
                    if !d.text.is_empty() {
                        if let Some(l) = &lead {
                            l.delta(&d.text);
                        }
                        rec.first_token();
                        yield Ok(chunk(json!({"content": d.text}), None));
                    }
                }
                Ok(Some(pb::InferEvent { event: Some(pb::infer_event::Event::End(end)) })) => {
                    rec.set_usage(end.usage.as_ref());
                    if let Some(a) = admitted.take() {
                        quota_hub.settle(a, end.usage.as_ref(), Some(&quota_route)).await;
                    }
                    if let Some(l) = lead.take() {
                        l.finish_stream(&end, &quota_route).await;
                    }
                    yield Ok(chunk(json!({}), Some(openai::finish_reason(end.stop_reason))));
                    if include_usage {
                        yield Ok(Event::default().data(
                            openai::usage_chunk_json(&id, created, &model, end.usage.as_ref()).to_string(),
                        ));
                    }
                    yield Ok(Event::default().data("[DONE]"));
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::warn!(request_id = %request_id, "spoke stream closed without an end event");
                    rec.set_stream_error("stream_interrupted");
                    yield Ok(error_event("the stream ended unexpectedly"));
                    if let Some(a) = admitted.take() {
                        quota_hub.settle(a, None, None).await;
                    }
                    break;
                }
                Err(why) => {
                    tracing::warn!(request_id = %request_id, reason = %why, "stream failed after first chunk");
                    rec.set_stream_error("stream_interrupted");
                    yield Ok(error_event("the upstream failed while streaming"));
                    if let Some(a) = admitted.take() {
                        quota_hub.settle(a, None, None).await;
                    }
                    break;
                }
            }
        }
    };
    let mut resp = Sse::new(events).into_response();
    route_headers(resp.headers_mut(), &route, started);
    Ok(resp)
}

/// An SSE error event: the stream ends after it, never with `[DONE]`.
fn error_event(message: &str) -> Event {
    Event::default().data(
        json!({"error": {"message": message, "type": "server_error", "code": "stream_interrupted", "param": null}})
            .to_string(),
    )
}
