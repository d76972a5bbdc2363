//! The Anthropic Messages surface: `POST /v1/messages`, JSON and SSE (`message_start`,
//! `content_block_start`, `content_block_delta` with `thinking_delta` / `signature_delta` /
//! `text_delta` / `input_json_delta`,
//! `content_block_stop`, `message_delta`, `message_stop`, `ping`), errors as
//! `{"type":"error","error":{"type","message"}}`. Authenticates with `x-api-key` (as the
//! Anthropic SDK sends it) or `Authorization: Bearer`. A thin translation to and from
//! `switchyard.v1`; the request path itself is [`crate::gateway`]'s.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;

mod request;
mod stream;

pub use request::*;

use crate::error::HubError;
use crate::gateway;
use crate::headers;
use crate::observe::{self, RequestInfo, Surface};
use crate::routing::{Api, Needs};
use crate::state::Hub;
use crate::surface::frame::{self, Frame};

/// Anthropic's `stop_reason`.
pub fn stop_reason(reason: i32) -> &'static str {
    match pb::StopReason::try_from(reason).unwrap_or(pb::StopReason::Unspecified) {
        pb::StopReason::MaxTokens => "max_tokens",
        pb::StopReason::StopSequence => "stop_sequence",
        pb::StopReason::ToolUse => "tool_use",
        pb::StopReason::ContentFiltered => "refusal",
        pb::StopReason::Unspecified | pb::StopReason::EndTurn => "end_turn",
    }
}

/// Anthropic's `usage`: `input_tokens` (those neither read from nor written to the prompt
/// cache: the internal count minus both), `output_tokens`, `cache_creation_input_tokens`,
/// `cache_read_input_tokens`.
pub(super) fn usage_json(u: Option<&pb::Usage>) -> Value {
    let u = u.copied().unwrap_or_default();
    let (input, read, write) = crate::surface::answer::uncached_split(&u);
    json!({
        "input_tokens": input,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
    })
}

/// Anthropic's `stop_reason` for an answer that carries tool calls (`calls`) or not: `tool_use`
/// whenever calls are present (unless cut short), never without.
pub fn stop_reason_for(reason: i32, calls: bool) -> &'static str {
    stop_reason(crate::surface::answer::stop_reason(reason, calls) as i32)
}

/// A thinking part as its content block: `thinking` (with `signature`, empty when the upstream
/// gave none) or `redacted_thinking` (with `data`).
fn thinking_block(t: &pb::ThinkingPart) -> Value {
    if t.redacted {
        json!({"type": "redacted_thinking", "data": t.data})
    } else {
        json!({"type": "thinking", "thinking": t.text, "signature": t.signature})
    }
}

/// The `message` body for a spoke's answer: `content` blocks in the answer's order (`thinking` /
/// `redacted_thinking`, `text`, `tool_use`), `stop_reason` derived from the content, `usage`
/// with its cache counts. Only choice 0 (`n` is not an Anthropic parameter).
pub fn message_json(id: &str, model: &str, resp: &pb::InferResponse) -> Value {
    let mut content = Vec::new();
    for part in resp.message.iter().flat_map(|m| &m.content) {
        match &part.part {
            Some(pb::content_part::Part::Thinking(t)) => content.push(thinking_block(t)),
            Some(pb::content_part::Part::Text(t)) if !t.is_empty() => {
                content.push(json!({"type": "text", "text": t}));
            }
            Some(pb::content_part::Part::ToolCall(tc)) => content.push(json!({
                "type": "tool_use", "id": tc.id, "name": tc.name,
                "input": serde_json::from_str::<Value>(&tc.arguments_json).unwrap_or_else(|_| json!({})),
            })),
            _ => {}
        }
    }
    let calls = crate::surface::answer::has_calls(resp.message.as_ref());
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason_for(resp.stop_reason, calls),
        "stop_sequence": null,
        "usage": usage_json(resp.usage.as_ref()),
    })
}

/// Anthropic's error `type` (and status) for a hub error, from the one table.
fn error_type(e: &HubError) -> (StatusCode, &'static str) {
    let n = e.names();
    (n.status, n.anthropic)
}

/// A hub error in Anthropic's shape.
pub fn error_response(e: HubError) -> Response {
    let (status, ty) = error_type(&e);
    let body = json!({"type": "error", "error": {"type": ty, "message": e.client_message()}});
    frame::error_response(e, status, body)
}

pub async fn messages_handler(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut frame = Frame::begin(&hub, &headers, Surface::Anthropic);
    let span = frame.span();
    let result =
        tracing::Instrument::instrument(messages(&hub, headers, body, &mut frame), span).await;
    frame.finish(result, error_response, Some(headers::ANTHROPIC_REQUEST_ID))
}

async fn messages(
    hub: &Arc<Hub>,
    client_headers: HeaderMap,
    body: Body,
    frame: &mut Frame,
) -> Result<Response, HubError> {
    let headers = &client_headers;
    let table = frame.table.clone();
    let tenant = frame::authenticate_x_api_key(hub, &table, headers).await?;
    frame.rec.set_tenant(&tenant.name);
    // Parsed, the body's bytes go (they share hyper's read buffer).
    let mut req: MessagesRequest = {
        let bytes = frame::read_body(hub, headers, body).await?;
        crate::surface::parse_body(&bytes)?
    };
    let alias = table.resolve_alias(&tenant, &req.model)?;
    let mut request = req.to_infer()?;
    let extra = std::mem::take(&mut req.extra);
    let sorted = crate::surface::extra::sort(Api::Anthropic, extra, IGNORED, &alias)?;
    request.passthrough = sorted.record(&mut frame.rec);
    frame.rec.set_request(
        &alias,
        &RequestInfo::infer(&req.model, req.stream, &request),
        || observe::infer_messages(&request),
    );
    let inbound = gateway::Inbound {
        table,
        headers,
        model: &req.model,
        needs: Needs::of_request(&request, req.stream),
        asked: req.asked(),
        request,
        started: frame.started,
        request_id: &frame.request_id,
    };
    let admission = gateway::check(hub, tenant, alias, inbound)?
        .admit(hub)
        .await?;
    // The client's headers go once the request is admitted: their values share hyper's read
    // buffer, which hyper cannot reuse while they live, so a handler that waits on the spoke
    // holding them makes every open connection hold a second buffer.
    drop(client_headers);
    let rate_state = admission.rate_state;
    let id = format!("msg_{}", frame.request_id);
    if req.stream {
        let stream_rec = frame.rec.share_with_stream();
        let (streamed, late) = frame::open_stream(hub, frame, admission, &stream_rec, true).await?;
        let mut resp = stream::sse(streamed.items, id, req.model.clone(), stream_rec);
        frame::answered_stream(&mut resp, &streamed.route, late, frame.started, &rate_state);
        Ok(resp)
    } else {
        let done = Box::pin(frame::complete(hub, frame, admission, None)).await?;
        let mut out = axum::Json(message_json(&id, &req.model, &done.response)).into_response();
        frame::answered(
            &mut out,
            &done.route,
            frame.started,
            &rate_state,
            frame.rec.cost(),
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> MessagesRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn translates_blocks_tools_and_results() {
        let req = parse(json!({
            "model": "demo", "max_tokens": 50, "system": [{"type": "text", "text": "be brief"}],
            "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "weather", "input": {"q": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]}
            ]
        }));
        let r = req.to_infer().unwrap();
        assert_eq!(r.system, "be brief");
        assert_eq!(r.tools[0].name, "weather");
        assert!(matches!(
            r.messages[0].content[1].part,
            Some(pb::content_part::Part::Image(_))
        ));
        assert!(
            matches!(&r.messages[1].content[0].part, Some(pb::content_part::Part::ToolCall(c)) if c.arguments_json == "{\"q\":1}")
        );
        assert_eq!(r.messages[2].role, pb::Role::Tool as i32);
        assert!(
            matches!(&r.messages[2].content[0].part, Some(pb::content_part::Part::ToolResult(t)) if t.content == "sunny")
        );
        assert!(Needs::of_request(&r, req.stream).tools);
    }

    #[test]
    fn refuses_what_it_cannot_carry() {
        for body in [
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "wizard", "content": "x"}]}),
            json!({"model": "m", "max_tokens": 5, "messages": []}),
            // `enabled` needs a budget.
            json!({"model": "m", "max_tokens": 5, "thinking": {"type": "enabled"}, "messages": [{"role": "user", "content": "x"}]}),
            // A tool must be used, but there is none.
            json!({"model": "m", "max_tokens": 5, "tool_choice": {"type": "any"}, "messages": [{"role": "user", "content": "x"}]}),
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "thinking", "thinking": "x", "signature": "s"}]}]}),
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "forever"}}]}]}),
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}]}]}),
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document"}]}]}),
        ] {
            assert!(matches!(
                parse(body).to_infer(),
                Err(HubError::BadRequest(_))
            ));
        }
    }

    #[test]
    fn errors_have_anthropics_shape() {
        assert_eq!(
            error_type(&HubError::Unauthorized).1,
            "authentication_error"
        );
        assert_eq!(
            error_type(&HubError::NoRoute { attempts: vec![] }).1,
            "overloaded_error"
        );
        assert_eq!(stop_reason(pb::StopReason::ToolUse as i32), "tool_use");
    }
}
