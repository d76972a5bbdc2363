//! The OpenAI Responses surface: `POST /v1/responses` (JSON or SSE), `GET` and
//! `DELETE /v1/responses/{id}` (thin handlers here); the body and its translation to the
//! internal request ([`request`]), the output items and response object ([`output`]), the SSE
//! encoder ([`stream`]). Stored responses (`store`, `previous_response_id`) live in the hub's
//! [`crate::store`], per tenant. Errors take OpenAI's shape, `param` naming the field.

pub mod output;
pub mod request;
pub mod stream;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::error::HubError;
use crate::gateway::{self, Cached};
use crate::headers;
use crate::observe::{RequestInfo, Surface};
use crate::state::Hub;
use crate::surface::frame::{self, Frame};
use output::{Head, Output, Show};
use request::Refusal;

/// `POST /v1/responses`.
pub async fn create_handler(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut frame = Frame::begin(&hub, &headers, Surface::Responses);
    let span = frame.span();
    let result =
        tracing::Instrument::instrument(create(&hub, headers, body, &mut frame), span).await;
    frame.finish(
        result.map_err(|Refusal(e)| *e),
        IntoResponse::into_response,
        None,
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn store_failed(e: crate::store::StoreError) -> HubError {
    HubError::Internal(e.to_string())
}

async fn create(
    hub: &Arc<Hub>,
    client_headers: HeaderMap,
    body: Body,
    frame: &mut Frame,
) -> Result<Response, Refusal> {
    let headers = &client_headers;
    let table = frame.table.clone();
    let tenant = frame::authenticate(hub, &table, headers).await?;
    frame.rec.set_tenant(&tenant.name);
    // Parsed, the body's bytes go (they share hyper's read buffer).
    let req = {
        let bytes = frame::read_body(hub, headers, body).await?;
        request::parse(&bytes, hub.settings.max_messages)?
    };
    // Fields accepted and not carried: named in the audit line (`ignored`).
    frame.rec.set_extra_fields(req.ignored.clone(), Vec::new());
    let alias = table.resolve_alias(&tenant, &req.model)?;
    // The stored conversation this request continues, if any: the tenant's own only.
    let mut conversation = Vec::new();
    if let Some(prev) = &req.previous_response_id {
        match hub
            .responses
            .get(&tenant.name, prev)
            .await
            .map_err(store_failed)?
        {
            Some(stored) => conversation = stored.conversation,
            None => {
                return Err(request::refuse(
                    "previous_response_id",
                    "previous_response_not_found",
                    format!(
                        "Previous response with id '{}' not found.",
                        if crate::store::plausible_id(prev) {
                            prev.as_str()
                        } else {
                            "(invalid id)"
                        }
                    ),
                ));
            }
        }
    }
    conversation.extend(req.input.iter().cloned());
    let infer = request::assemble(req.instructions.as_deref(), &conversation, &req.base)?;
    frame.rec.set_request(
        &alias,
        &RequestInfo::infer(&req.model, req.stream, &infer),
        || crate::observe::infer_messages(&infer),
    );
    let inbound = gateway::Inbound {
        table,
        headers,
        model: &req.model,
        needs: crate::routing::Needs::of_request(&infer, req.stream),
        asked: req.asked(),
        request: infer,
        started: frame.started,
        request_id: &frame.request_id,
    };
    // Message limit, bounds and content policy: before anything leaves the hub.
    let checked = gateway::check(hub, tenant, alias, inbound)?;
    // What is stored passed the same content policy (PII redacted as it was sent).
    let keep = if req.store {
        let mut scrubbed = switchyard_proto::v1::InferRequest {
            messages: conversation,
            ..Default::default()
        };
        if checked.tenant.policy.apply(&mut scrubbed).is_err() {
            scrubbed.messages.clear();
        }
        Some(stream::Keep {
            store: hub.responses.clone(),
            tenant: checked.tenant.name.clone(),
            conversation: scrubbed.messages,
        })
    } else {
        None
    };
    let show = Show {
        summary: req.reasoning_summary,
        encrypted: req.encrypted_reasoning,
    };
    let mut head = Head {
        id: format!("resp_{}", uuid::Uuid::new_v4().simple()),
        created_at: now_secs(),
        model: String::new(),
        echo: req.echo.clone(),
    };
    // Response cache and coalescing (opt-in, deterministic requests only): the cache knows no
    // wire format, so a stored answer is rendered here like a fresh one.
    let mut lead = None;
    if let Some((key, ttl)) = crate::cache::cacheable(
        &checked.tenant,
        &checked.alias,
        &req.model,
        &checked.request,
    ) {
        let deadline = frame.started + hub.settings.request_timeout;
        let (answer, outcome, state, flight) = match Box::pin(gateway::lookup(
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
                (None, "miss", None, None)
            }
            Cached::Answer {
                answer,
                outcome,
                state,
            } => (Some(answer), outcome, Some(state), None),
            Cached::Live { flight, state } => (None, "coalesced", Some(state), Some(flight)),
        };
        if let Some(state) = state {
            let model = match (&answer, &flight) {
                (Some(a), _) => a.model.clone(),
                (None, Some(f)) => f.model(),
                (None, None) => String::new(),
            };
            head.model.clone_from(&model);
            let mut resp = if req.stream {
                let items = match (&answer, flight) {
                    (Some(a), _) => stream::replay(a),
                    (None, Some(f)) => stream::follow(f, deadline),
                    (None, None) => futures::stream::empty().boxed(),
                };
                let meta = stream::StreamMeta {
                    head,
                    show,
                    keep,
                    rec: frame.rec.share_with_stream(),
                    lead: None,
                };
                stream::sse(items, meta)
            } else {
                let Some(a) = &answer else {
                    return Err(
                        HubError::Internal("a unary lookup followed a stream".into()).into(),
                    );
                };
                unary(&head, show, &a.response(), keep).await
            };
            let h = resp.headers_mut();
            headers::set(h, headers::CACHE, outcome);
            if let Some(a) = &answer {
                headers::route(h, &a.provider, &a.account, &a.region, &a.model, 0);
            }
            headers::ratelimit(h, &state);
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
    let mut resp = if req.stream {
        let rec = frame.rec.share_with_stream();
        // A stream that feeds the response cache waits for its route (the cache keeps it).
        let keepalive = lead.is_none();
        let (streamed, late) = frame::open_stream(hub, frame, admission, &rec, keepalive).await?;
        // A late stream (no content within `stream_keepalive`) is committed at once:
        // response.created goes out, as OpenAI sends it, and SSE comments keep it alive. The
        // serving model is not known yet: the response names the requested model (the audit
        // line has the route).
        head.model = if late {
            req.model.clone()
        } else {
            streamed.route.model.clone()
        };
        if let Some(l) = &lead {
            l.set_model(&head.model);
        }
        let route = streamed.route.clone();
        let meta = stream::StreamMeta {
            head,
            show,
            keep,
            rec,
            lead: lead.map(|l| (l, route.clone())),
        };
        let mut resp = stream::sse(streamed.items, meta);
        frame::answered_stream(&mut resp, &route, late, frame.started, &rate_state);
        resp
    } else {
        let done = Box::pin(frame::complete(hub, frame, admission, lead)).await?;
        head.model.clone_from(&done.route.model);
        let mut resp = unary(&head, show, &done.response, keep).await;
        frame::answered(
            &mut resp,
            &done.route,
            frame.started,
            &rate_state,
            frame.rec.cost(),
        );
        resp
    };
    if cache_miss {
        headers::set(resp.headers_mut(), headers::CACHE, "miss");
    }
    Ok(resp)
}

/// A whole answer as the response object (JSON), stored first when `keep` says so.
async fn unary(
    head: &Head,
    show: Show,
    answer: &switchyard_proto::v1::InferResponse,
    keep: Option<stream::Keep>,
) -> Response {
    let (status, incomplete) = output::status(answer.stop_reason);
    let out = Output::of_message(
        show,
        answer.message.as_ref(),
        &answer.logprobs_json,
        status == "incomplete",
    );
    let body = output::response_json(
        head,
        status,
        out.items_json(),
        output::usage_json(answer.usage.as_ref()),
        incomplete,
        Value::Null,
    );
    if let Some(k) = keep {
        k.put(&body, out.message()).await;
    }
    axum::Json(body).into_response()
}

/// 404 for a response id this tenant has not stored (or that expired, or another tenant's).
fn not_found(id: &str) -> Response {
    let shown = if crate::store::plausible_id(id) {
        id
    } else {
        "(invalid id)"
    };
    frame::error_response(
        HubError::NotFound,
        StatusCode::NOT_FOUND,
        json!({"error": {"message": format!("Response with id '{shown}' not found."),
            "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

/// The tenant of a `GET` / `DELETE`, and the id asked about.
async fn lookup(
    hub: &Hub,
    headers: &HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<(crate::model::Tenant, String), Response> {
    let table = hub.snapshot();
    let tenant = frame::authenticate(hub, &table, headers)
        .await
        .map_err(IntoResponse::into_response)?;
    match id {
        Ok(Path(id)) => Ok((tenant, id)),
        Err(rejection) => Err(crate::surface::bad_path(&rejection).into_response()),
    }
}

/// `GET /v1/responses/{id}`: the stored response object, as it was returned; 404 when this
/// tenant has none by that id.
pub async fn get_handler(
    State(hub): State<Arc<Hub>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let resp = match lookup(&hub, &headers, id).await {
        Err(r) => r,
        Ok((tenant, id)) => match hub.responses.get(&tenant.name, &id).await {
            Ok(Some(stored)) => axum::Json(stored.response).into_response(),
            Ok(None) => not_found(&id),
            Err(e) => store_failed(e).into_response(),
        },
    };
    frame::with_request_id(resp, &frame::request_id(&headers), None)
}

/// `DELETE /v1/responses/{id}`: `{"id","object":"response","deleted":true}`; 404 when this
/// tenant has none by that id.
pub async fn delete_handler(
    State(hub): State<Arc<Hub>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let resp = match lookup(&hub, &headers, id).await {
        Err(r) => r,
        Ok((tenant, id)) => match hub.responses.delete(&tenant.name, &id).await {
            Ok(true) => {
                axum::Json(json!({"id": id, "object": "response", "deleted": true})).into_response()
            }
            Ok(false) => not_found(&id),
            Err(e) => store_failed(e).into_response(),
        },
    };
    frame::with_request_id(resp, &frame::request_id(&headers), None)
}
