//! The client-facing HTTP API (OpenAI-compatible) and its handlers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::json;

use crate::config::Tenant;
use crate::error::HubError;
use crate::gateway::{self, StreamItem};
use crate::hub::Hub;
use crate::observe::{RequestInfo, RequestRecord, Surface};
use crate::openai::{self, ChatRequest};

pub use crate::gateway::{ROUTE_PREFERENCE, TIMEOUT_MS};

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
        .merge(crate::anthropic::routes())
        .merge(crate::converse::routes())
        .merge(crate::embeddings::routes())
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
    let key = bearer_token(value).ok_or(HubError::Unauthorized)?;
    verify_key(hub, key).await
}

/// The token of an `Authorization: Bearer <token>` value (see [`credentials`]).
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    credentials(value, "bearer")
}

/// The credentials of an `Authorization` value using `scheme`: the scheme matches in any letter
/// case and one or more spaces may follow it (RFC 9110 §11.1, §11.4); the credentials come
/// trimmed. `None` for another scheme or empty credentials.
pub(crate) fn credentials<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.trim_start().split_once(' ')?;
    if !given.eq_ignore_ascii_case(scheme) {
        return None;
    }
    Some(rest.trim()).filter(|t| !t.is_empty())
}

/// Like [`authenticate`], but also accepts the key in `x-api-key` (how the Anthropic SDK sends
/// it, and the header the documented boto3 hook adds). With `x-api-key` present, an
/// `Authorization` header that is not `Bearer` (a SigV4 signature) is ignored; a `Bearer` one
/// as well is refused, so a request cannot pick among identities.
pub(crate) async fn authenticate_x_api_key(
    hub: &Hub,
    headers: &HeaderMap,
) -> Result<Tenant, HubError> {
    let mut all = headers.get_all("x-api-key").iter();
    let value = match (all.next(), all.next()) {
        (None, _) => return authenticate(hub, headers).await,
        (Some(v), None) => v,
        (Some(_), Some(_)) => return Err(HubError::Unauthorized),
    };
    let bearer_too = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .any(|v| {
            v.to_str().ok().is_some_and(|v| {
                v.split_ascii_whitespace()
                    .next()
                    .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
            })
        });
    if bearer_too {
        return Err(HubError::Unauthorized);
    }
    let key = value.to_str().map_err(|_| HubError::Unauthorized)?.trim();
    verify_key(hub, key).await
}

/// An API key or (when `[jwt]` is configured) a JWT, to its tenant.
async fn verify_key(hub: &Hub, key: &str) -> Result<Tenant, HubError> {
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
    let request_id = gateway::request_id(&headers);
    let span = crate::observe::request_span(&headers, &request_id, Surface::OpenAi.operation());
    let rec = RequestRecord::start(
        hub.audit.clone(),
        &request_id,
        span.clone(),
        Surface::OpenAi,
    );
    chat_completions_observed(hub, headers, body, started, &request_id, rec).await
}

/// `POST /v1/chat/completions` for a request whose record was started already (the prompts
/// endpoint starts it before it builds the chat body, so its refusals are recorded too).
pub(crate) async fn chat_completions_observed(
    hub: Arc<Hub>,
    headers: HeaderMap,
    body: Body,
    started: Instant,
    request_id: &str,
    mut rec: RequestRecord,
) -> Response {
    let span = rec.span();
    let chatting = chat(&hub, &headers, body, started, request_id, &mut rec);
    let result = tracing::Instrument::instrument(chatting, span).await;
    rec.finish(result, request_id, IntoResponse::into_response)
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
    let bytes = gateway::read_body(hub, headers, body).await?;
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
    rec.set_request(&alias, &RequestInfo::chat(&req), || {
        crate::observe::chat_messages(&req)
    });
    let inbound = gateway::Inbound {
        headers,
        model: &req.model,
        request: req.to_infer()?,
        needs: req.needs(),
        started,
        request_id,
    };
    // Message limit, alias and content policy: before the cache and before anything leaves.
    let checked = gateway::check(hub, tenant, alias, inbound)?;
    let alias = &checked.alias;
    // Response cache and coalescing (opt-in, deterministic requests only).
    let mut lead = None;
    if let Some((key, ttl)) =
        crate::cache::cacheable(&checked.tenant, alias, &req, &checked.request)
    {
        let deadline = started + hub.settings.request_timeout;
        let reply = crate::cache::Reply::for_request(&req, request_id, deadline);
        match crate::cache::serve(hub, &checked.tenant, key, ttl, reply).await? {
            crate::cache::Served::Done(mut resp) => {
                crate::prompts::mark(&mut resp, prompt_used.as_ref());
                if req.stream {
                    // A replayed or followed stream: the record ends with it.
                    resp = crate::observe::hold_until_body_ends(resp, rec.share_with_stream());
                }
                return Ok(resp);
            }
            crate::cache::Served::Lead(l) => lead = Some(l),
        }
    }
    let cache_miss = lead.is_some();
    let admission = checked.admit(hub).await?;
    let rate_state = admission.rate_state;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let id = format!("chatcmpl-{request_id}");
    let mut resp = if req.stream {
        let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
        let streamed = admission.stream(hub).await?;
        rec.set_route(&streamed.route, None, &streamed.attempts);
        let model = streamed.route.model.clone();
        if let Some(l) = &lead {
            l.set_model(&model);
        }
        let route = streamed.route.clone();
        let meta = ChunkMeta {
            id,
            created,
            model,
            include_usage,
            lead,
            rec: rec.share_with_stream(),
            route: route.clone(),
        };
        let mut resp = openai_sse(streamed.items, meta);
        gateway::route_headers(resp.headers_mut(), &route, started);
        resp
    } else {
        let done = admission.complete(hub).await?;
        if let Some(l) = lead {
            l.finish(crate::cache::Answer::from_response(
                &done.response,
                &done.route,
            ))
            .await;
        }
        rec.set_route(
            &done.route,
            done.response.usage.as_ref(),
            &done.response.attempts,
        );
        let mut out =
            axum::Json(openai::completion_json(&id, created, &done.response)).into_response();
        gateway::route_headers(out.headers_mut(), &done.route, started);
        crate::observe::cost_header(out.headers_mut(), rec.cost());
        out
    };
    crate::quota::ratelimit_headers(resp.headers_mut(), &rate_state);
    crate::cache::mark_miss(&mut resp, cache_miss);
    crate::prompts::mark(&mut resp, prompt_used.as_ref());
    Ok(resp)
}

/// How the SSE chunks of one completion are labelled, and who follows the stream.
struct ChunkMeta {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    /// Feeds identical requests following this one (and the response cache).
    lead: Option<crate::cache::Leader>,
    /// Metrics and the audit line, written when the stream ends.
    rec: RequestRecord,
    route: crate::hub::RouteTaken,
}

/// A committed stream as OpenAI `chat.completion.chunk` SSE events.
fn openai_sse(
    mut items: futures::stream::BoxStream<'static, StreamItem>,
    meta: ChunkMeta,
) -> Response {
    let ChunkMeta {
        id,
        created,
        model,
        include_usage,
        mut lead,
        mut rec,
        route,
    } = meta;
    let events = async_stream::stream! {
        let chunk = |delta: serde_json::Value, finish: Option<&str>| {
            Event::default().data(openai::chunk_json(&id, created, &model, delta, finish, include_usage).to_string())
        };
        yield Ok::<_, Infallible>(chunk(json!({"role": "assistant", "content": ""}), None));
        while let Some(item) = items.next().await {
            match item {
                StreamItem::Delta(d) => {
                    if !d.text.is_empty() {
                        if let Some(l) = &lead {
                            l.delta(&d.text);
                        }
                        rec.first_token();
                        yield Ok(chunk(json!({"content": d.text}), None));
                    }
                    if let Some(tc) = d.tool_call {
                        rec.first_token();
                        yield Ok(chunk(openai::tool_call_delta_json(&tc), None));
                    }
                }
                StreamItem::End(end) => {
                    rec.set_usage(end.usage.as_ref());
                    if let Some(l) = lead.take() {
                        l.finish_stream(&end, &route).await;
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
                StreamItem::Failed(message) => {
                    rec.set_stream_error("stream_interrupted");
                    yield Ok(error_event(message));
                    break;
                }
            }
        }
    };
    Sse::new(events).into_response()
}

/// An SSE error event: the stream ends after it, never with `[DONE]`.
fn error_event(message: &str) -> Event {
    Event::default().data(
        json!({"error": {"message": message, "type": "server_error", "code": "stream_interrupted", "param": null}})
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_in_any_case() {
        for v in [
            "Bearer sk-1",
            "bearer sk-1",
            "BEARER sk-1",
            "bEaReR sk-1",
            "Bearer   sk-1 ",
        ] {
            assert_eq!(bearer_token(v), Some("sk-1"), "{v:?}");
        }
        for v in [
            "Basic sk-1",
            "Bearer",
            "Bearer   ",
            "Bearersk-1",
            "sk-1",
            "",
        ] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
        assert_eq!(
            credentials("BASIC dXNlcjpwdw==", "basic"),
            Some("dXNlcjpwdw==")
        );
    }
}
