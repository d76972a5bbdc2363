//! The OpenAI surface: `POST /v1/chat/completions` and `GET /v1/models` (thin handlers here),
//! its wire types and their translation to and from the internal request ([`wire`]), the SSE
//! encoder of a committed stream ([`stream`]) and the rendering of response-cache answers
//! ([`cached`]). Errors take OpenAI's shape (`HubError`'s own `IntoResponse`).

pub mod cached;
pub mod prompts;
pub mod request;
pub mod stream;
pub mod wire;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::HubError;
use crate::gateway::{self, Cached};
use crate::headers;
use crate::observe::{RequestInfo, Surface};
use crate::routing::Api;
use crate::state::Hub;
use crate::surface::frame::{self, Frame};
use wire::ChatRequest;

/// Whether a models request comes from an Anthropic client (it sends `anthropic-version`), so
/// the answer takes the Anthropic Models API's shape instead of OpenAI's.
fn anthropic_client(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version")
}

/// One alias as a model object: OpenAI's (`{"id","object":"model","created":0,"owned_by"}`) or
/// Anthropic's (`{"type":"model","id","display_name","created_at"}`). Aliases have no creation
/// time: 0 / the Unix epoch.
fn model_json(alias: &str, anthropic: bool) -> Value {
    if anthropic {
        json!({"type": "model", "id": alias, "display_name": alias, "created_at": "1970-01-01T00:00:00Z"})
    } else {
        json!({"id": alias, "object": "model", "created": 0, "owned_by": "switchyard"})
    }
}

fn models_error(e: HubError, anthropic: bool) -> Response {
    if anthropic {
        crate::surface::anthropic::error_response(e)
    } else {
        e.into_response()
    }
}

/// `GET /v1/models`: the aliases the key may use (key in `Authorization: Bearer` or
/// `x-api-key`), as OpenAI's list (`{"object":"list","data":[…]}`) or, for an Anthropic client,
/// Anthropic's (`{"data":[…],"has_more":false,"first_id","last_id"}`), sorted by id.
pub async fn models_handler(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    let request_id = frame::request_id(&headers);
    let resp = list_models(&hub, &headers).await;
    frame::with_request_id(resp, &request_id, None)
}

async fn list_models(hub: &Hub, headers: &HeaderMap) -> Response {
    let anthropic = anthropic_client(headers);
    let table = hub.snapshot();
    let tenant = match frame::authenticate_x_api_key(hub, &table, headers).await {
        Ok(t) => t,
        Err(e) => return models_error(e, anthropic),
    };
    let ids: Vec<&String> = table.aliases.keys().filter(|a| tenant.may_use(a)).collect();
    let data: Vec<Value> = ids.iter().map(|a| model_json(a, anthropic)).collect();
    let body = if anthropic {
        json!({"data": data, "has_more": false, "first_id": ids.first(), "last_id": ids.last()})
    } else {
        json!({"object": "list", "data": data})
    };
    axum::Json(body).into_response()
}

/// `GET /v1/models/{model}` (`client.models.retrieve`): the model object of an alias the key
/// may use, in the client's shape (see [`models_handler`]). An alias that does not exist and
/// one the key may not use both answer 404 `model_not_found`, so a key learns nothing of the
/// aliases of other tenants.
pub async fn model_handler(
    State(hub): State<Arc<Hub>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let request_id = frame::request_id(&headers);
    let resp = retrieve_model(&hub, id, &headers).await;
    frame::with_request_id(resp, &request_id, None)
}

async fn retrieve_model(
    hub: &Hub,
    id: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
) -> Response {
    let anthropic = anthropic_client(headers);
    let table = hub.snapshot();
    let tenant = match frame::authenticate_x_api_key(hub, &table, headers).await {
        Ok(t) => t,
        Err(e) => return models_error(e, anthropic),
    };
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return models_error(crate::surface::bad_path(&rejection), anthropic),
    };
    if table.aliases.contains_key(&id) && tenant.may_use(&id) {
        axum::Json(model_json(&id, anthropic)).into_response()
    } else {
        models_error(HubError::ModelNotFound(id), anthropic)
    }
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions_handler(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let frame = Frame::begin(&hub, &headers, Surface::OpenAi);
    chat_in_frame(hub, headers, body, frame).await
}

/// Body: `{"variables": {...}}`, optionally `version`, `model` (default: the prompt's `model`),
/// `stream`, and any chat-completions parameter (`temperature`, `max_tokens`, …). Answered
/// exactly like `POST /v1/chat/completions`, and recorded like it (surface `openai`) — its own
/// refusals (bad key, unknown prompt, bad body) included.
pub async fn prompt_handler(
    State(hub): State<Arc<Hub>>,
    name: Result<Path<String>, PathRejection>,
    mut headers: HeaderMap,
    body: Body,
) -> Response {
    let mut frame = Frame::begin(&hub, &headers, Surface::OpenAi);
    let name = match name {
        Ok(Path(name)) => name,
        Err(rejection) => {
            let e = crate::surface::bad_path(&rejection);
            return frame.finish(Err(e), IntoResponse::into_response, None);
        }
    };
    let span = frame.span();
    let building = prompts::chat_body(&hub, &name, &headers, body, &mut frame);
    match tracing::Instrument::instrument(building, span).await {
        Ok(bytes) => {
            headers.remove(http::header::CONTENT_LENGTH);
            chat_in_frame(hub, headers, Body::from(bytes), frame).await
        }
        Err(e) => frame.finish(Err(e), IntoResponse::into_response, None),
    }
}

/// `POST /v1/chat/completions` in a frame begun already (the prompts endpoint begins it before
/// it builds the chat body, so its refusals are recorded too, and the template comes from the
/// same table snapshot).
pub async fn chat_in_frame(
    hub: Arc<Hub>,
    headers: HeaderMap,
    body: Body,
    mut frame: Frame,
) -> Response {
    let span = frame.span();
    let result = tracing::Instrument::instrument(chat(&hub, headers, body, &mut frame), span).await;
    frame.finish(result, IntoResponse::into_response, None)
}

async fn chat(
    hub: &Arc<Hub>,
    client_headers: HeaderMap,
    body: Body,
    frame: &mut Frame,
) -> Result<Response, HubError> {
    let headers = &client_headers;
    let table = frame.table.clone();
    let tenant = frame::authenticate(hub, &table, headers).await?;
    frame.rec.set_tenant(&tenant.name);
    // The body's bytes go as soon as they are parsed: they share hyper's read buffer, which
    // cannot be reused while they live (an open stream would hold both).
    let mut req: ChatRequest = {
        let bytes = frame::read_body(hub, headers, body).await?;
        crate::surface::parse_body(&bytes)?
    };
    let prompt_used = prompts::expand(&table, &mut req)?;
    if req.messages.len() > hub.settings.max_messages {
        return Err(HubError::BadRequest(format!(
            "`messages` has {} entries; at most {} are accepted",
            req.messages.len(),
            hub.settings.max_messages
        )));
    }
    let alias = table.resolve_alias(&tenant, &req.model)?;
    frame
        .rec
        .set_request(&alias, &request_info(&req), || chat_messages(&req));
    let mut request = req.to_infer()?;
    let extra = std::mem::take(&mut req.extra);
    let sorted = crate::surface::extra::sort(Api::OpenAi, extra, request::IGNORED, &alias)?;
    request.passthrough = sorted.record(&mut frame.rec);
    let inbound = gateway::Inbound {
        table,
        headers,
        model: &req.model,
        needs: crate::routing::Needs::of_request(&request, req.stream),
        asked: req.asked(),
        request,
        started: frame.started,
        request_id: &frame.request_id,
    };
    // Message limit, alias and content policy: before the cache and before anything leaves.
    let checked = gateway::check(hub, tenant, alias, inbound)?;
    // Response cache and coalescing (opt-in, deterministic requests only).
    let mut lead = None;
    if let Some((key, ttl)) = crate::cache::cacheable(
        &checked.tenant,
        &checked.alias,
        &req.model,
        &checked.request,
    ) {
        let deadline = frame.started + hub.settings.request_timeout;
        let reply = cached::Reply::for_request(&req, &frame.request_id, deadline);
        let done = match Box::pin(gateway::lookup(
            hub,
            &checked.tenant,
            key,
            ttl,
            req.stream,
            deadline,
        ))
        .await?
        {
            Cached::Lead(l) => {
                lead = Some(l);
                None
            }
            Cached::Answer {
                answer,
                outcome,
                state,
            } => Some(cached::answer(&reply, &answer, outcome, &state)),
            Cached::Live { flight, state } => Some(cached::live(reply, flight, &state)),
        };
        if let Some(mut resp) = done {
            prompts::mark(&mut resp, prompt_used.as_ref());
            if req.stream {
                // A replayed or followed stream: the record ends with it.
                resp = crate::observe::hold_until_body_ends(resp, frame.rec.share_with_stream());
            }
            return Ok(resp);
        }
    }
    let cache_miss = lead.is_some();
    let admission = checked.admit(hub).await?;
    // The client's headers go once the request is admitted: their values share hyper's read
    // buffer, which hyper cannot reuse while they live, so a handler that waits on the spoke
    // holding them makes every open connection hold a second buffer.
    drop(client_headers);
    let rate_state = admission.rate_state;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let id = format!("chatcmpl-{}", frame.request_id);
    let mut resp = if req.stream {
        let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
        let stream_rec = frame.rec.share_with_stream();
        // A stream that feeds the response cache waits for its route (the cache keeps it).
        let keepalive = lead.is_none();
        let (streamed, late) =
            frame::open_stream(hub, frame, admission, &stream_rec, keepalive).await?;
        // A late stream's chunks name the requested model: the route is not known yet.
        let model = if late {
            req.model.clone()
        } else {
            streamed.route.model.clone()
        };
        if let Some(l) = &lead {
            l.set_model(&model);
        }
        let route = streamed.route.clone();
        let meta = stream::ChunkMeta {
            id,
            created,
            model,
            include_usage,
            lead,
            rec: stream_rec,
            route: route.clone(),
        };
        let mut resp = stream::sse(streamed.items, meta);
        frame::answered_stream(&mut resp, &route, late, frame.started, &rate_state);
        resp
    } else {
        let done = Box::pin(frame::complete(hub, frame, admission, lead)).await?;
        let mut out =
            crate::surface::json_response(&wire::completion_json(&id, created, &done.response));
        frame::answered(
            &mut out,
            &done.route,
            frame.started,
            &rate_state,
            frame.rec.cost(),
        );
        out
    };
    if cache_miss {
        headers::set(resp.headers_mut(), headers::CACHE, "miss");
    }
    prompts::mark(&mut resp, prompt_used.as_ref());
    Ok(resp)
}

/// The span's GenAI request attributes (`max_completion_tokens` wins over `max_tokens`).
pub fn request_info(req: &ChatRequest) -> RequestInfo {
    RequestInfo {
        model: req.model.clone(),
        stream: req.stream,
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
    }
}

/// An OpenAI chat request's messages for content capture: `[{"role","content"}]`.
pub fn chat_messages(req: &ChatRequest) -> Value {
    Value::Array(
        req.messages
            .iter()
            .map(|m| json!({"role": m.role, "content": message_text(m)}))
            .collect(),
    )
}

fn message_text(m: &wire::ChatMessage) -> String {
    match &m.content {
        Some(wire::Content::Text(t)) => t.clone(),
        Some(wire::Content::Parts(ps)) => ps
            .iter()
            .filter_map(|p| p.text.as_deref())
            .collect::<Vec<_>>()
            .join(""),
        None => String::new(),
    }
}
