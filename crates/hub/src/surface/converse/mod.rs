//! The Bedrock Converse surface: `POST /model/{modelId}/converse` (JSON) and
//! `POST /model/{modelId}/converse-stream` (`application/vnd.amazon.eventstream` frames:
//! `messageStart`, `contentBlockStart`, `contentBlockDelta`, `contentBlockStop`, `messageStop`,
//! `metadata`), errors with `x-amzn-ErrorType` and `{"message": …}` so AWS SDKs raise their
//! modelled exceptions. `modelId` is the hub's model alias.
//!
//! SigV4 is not the hub's auth: clients send the hub API key in `x-api-key` (or `Authorization:
//! Bearer`); a SigV4 `Authorization` header is ignored. docs/api.md shows the boto3 hook.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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

/// Content type of AWS event streams.
pub const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

fn bad(msg: impl Into<String>) -> HubError {
    HubError::BadRequest(msg.into())
}

/// Bedrock's `stopReason`.
pub fn stop_reason(reason: i32) -> &'static str {
    match pb::StopReason::try_from(reason).unwrap_or(pb::StopReason::Unspecified) {
        pb::StopReason::MaxTokens => "max_tokens",
        pb::StopReason::StopSequence => "stop_sequence",
        pb::StopReason::ToolUse => "tool_use",
        pb::StopReason::ContentFiltered => "content_filtered",
        pb::StopReason::Unspecified | pb::StopReason::EndTurn => "end_turn",
    }
}

/// Bedrock's `stopReason` for an answer that carries tool calls (`calls`) or not: `tool_use`
/// whenever calls are present (unless cut short), never without.
pub fn stop_reason_for(reason: i32, calls: bool) -> &'static str {
    stop_reason(crate::surface::answer::stop_reason(reason, calls) as i32)
}

/// Bedrock's `usage`: `inputTokens` (those neither read from nor written to the prompt cache:
/// the internal count minus both), `outputTokens`, `totalTokens` (every input token plus the
/// output), and `cacheReadInputTokens` / `cacheWriteInputTokens` when the cache was used.
pub(super) fn usage_json(u: Option<&pb::Usage>) -> Value {
    let u = u.copied().unwrap_or_default();
    let (input, read, write) = crate::surface::answer::uncached_split(&u);
    let mut v = json!({
        "inputTokens": input,
        "outputTokens": u.output_tokens,
        "totalTokens": u64::from(input) + u64::from(read) + u64::from(write) + u64::from(u.output_tokens),
    });
    if read > 0 {
        v["cacheReadInputTokens"] = json!(read);
    }
    if write > 0 {
        v["cacheWriteInputTokens"] = json!(write);
    }
    v
}

/// Bedrock's `additionalModelResponseFields` from the spoke's JSON text: an object, else none.
pub(super) fn additional_fields(text: &str) -> Option<Value> {
    Some(crate::surface::answer::json_or_null(text)).filter(Value::is_object)
}

/// The Converse response body for a spoke's answer: `output.message.content` in the answer's
/// order (`reasoningContent` — `reasoningText {text, signature}` or `redactedContent` —, `text`,
/// `toolUse`), `stopReason` derived from the content, `usage` with its cache counts,
/// `additionalModelResponseFields` when the model returned some, `metrics.latencyMs`.
pub fn response_json(resp: &pb::InferResponse, latency_ms: u64) -> Value {
    let mut content = Vec::new();
    for part in resp.message.iter().flat_map(|m| &m.content) {
        match &part.part {
            Some(pb::content_part::Part::Thinking(t)) if t.redacted => {
                content.push(json!({"reasoningContent": {
                    "redactedContent": crate::surface::answer::redacted_base64(&t.data),
                }}));
            }
            Some(pb::content_part::Part::Thinking(t)) => {
                let mut text = json!({"text": t.text});
                if !t.signature.is_empty() {
                    text["signature"] = json!(t.signature);
                }
                content.push(json!({"reasoningContent": {"reasoningText": text}}));
            }
            Some(pb::content_part::Part::Text(t)) if !t.is_empty() => {
                content.push(json!({"text": t}));
            }
            Some(pb::content_part::Part::ToolCall(tc)) => content.push(json!({"toolUse": {
                "toolUseId": tc.id, "name": tc.name,
                "input": serde_json::from_str::<Value>(&tc.arguments_json).unwrap_or_else(|_| json!({})),
            }})),
            _ => {}
        }
    }
    let calls = crate::surface::answer::has_calls(resp.message.as_ref());
    let mut v = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason_for(resp.stop_reason, calls),
        "usage": usage_json(resp.usage.as_ref()),
        "metrics": {"latencyMs": latency_ms},
    });
    if let Some(extra) = additional_fields(&resp.additional_model_response_fields_json) {
        v["additionalModelResponseFields"] = extra;
    }
    v
}

/// The Bedrock exception name and status for a hub error, from the one table.
fn error_type(e: &HubError) -> (StatusCode, &'static str) {
    let (name, status) = e.names().bedrock;
    (status, name)
}

/// A hub error in Bedrock's shape: `x-amzn-ErrorType` and `{"message": …}`.
pub fn error_response(e: HubError) -> Response {
    let (status, ty) = error_type(&e);
    let body = json!({"message": e.client_message()});
    let mut resp = frame::error_response(e, status, body);
    resp.headers_mut()
        .insert(headers::AMZN_ERROR_TYPE, HeaderValue::from_static(ty));
    resp
}

/// The `{modelId}` of the path; one that is not UTF-8 is refused in Bedrock's shape.
type ModelId = Result<Path<String>, PathRejection>;

pub async fn converse_handler(
    State(hub): State<Arc<Hub>>,
    model: ModelId,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(hub, model, headers, body, false).await
}

pub async fn converse_stream_handler(
    State(hub): State<Arc<Hub>>,
    model: ModelId,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(hub, model, headers, body, true).await
}

async fn handle(
    hub: Arc<Hub>,
    model: ModelId,
    headers: HeaderMap,
    body: Body,
    stream: bool,
) -> Response {
    let mut frame = Frame::begin(&hub, &headers, Surface::Converse);
    let result = match model {
        Ok(Path(model)) => {
            let span = frame.span();
            let serving = serve(&hub, &model, headers, body, stream, &mut frame);
            tracing::Instrument::instrument(serving, span).await
        }
        Err(rejection) => Err(crate::surface::bad_path(&rejection)),
    };
    frame.finish(result, error_response, Some(headers::AMZN_REQUEST_ID))
}

async fn serve(
    hub: &Arc<Hub>,
    model: &str,
    client_headers: HeaderMap,
    body: Body,
    stream: bool,
    frame: &mut Frame,
) -> Result<Response, HubError> {
    let headers = &client_headers;
    let table = frame.table.clone();
    let tenant = frame::authenticate_x_api_key(hub, &table, headers).await?;
    frame.rec.set_tenant(&tenant.name);
    // Parsed, the body's bytes go (they share hyper's read buffer).
    let v: Value = {
        let bytes = frame::read_body(hub, headers, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid request body: {e}")))?
    };
    let alias = table.resolve_alias(&tenant, model)?;
    let mut request = to_infer(&v)?;
    let sorted = crate::surface::extra::sort(Api::Converse, unknown(&v), IGNORED, &alias)?;
    request.passthrough = sorted.record(&mut frame.rec);
    frame
        .rec
        .set_request(&alias, &RequestInfo::infer(model, stream, &request), || {
            observe::infer_messages(&request)
        });
    let inbound = gateway::Inbound {
        table,
        headers,
        model,
        needs: Needs::of_request(&request, stream),
        asked: asked(&v),
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
    if stream {
        let stream_rec = frame.rec.share_with_stream();
        let (streamed, late) = frame::open_stream(hub, frame, admission, &stream_rec, true).await?;
        let frames = stream::frames(streamed.items, frame.started, stream_rec);
        let mut resp = Response::new(Body::from_stream(frames));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
        frame::answered_stream(&mut resp, &streamed.route, late, frame.started, &rate_state);
        Ok(resp)
    } else {
        let done = Box::pin(frame::complete(hub, frame, admission, None)).await?;
        let latency = frame.started.elapsed().as_millis() as u64;
        let mut out = axum::Json(response_json(&done.response, latency)).into_response();
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

    #[test]
    fn translates_converse_bodies() {
        let r = to_infer(&json!({
            "system": [{"text": "be brief"}],
            "messages": [
                {"role": "user", "content": [{"text": "hi"}, {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "w", "input": {"a": 1}}}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"json": {"ok": true}}], "status": "error"}}]}
            ],
            "inferenceConfig": {"maxTokens": 9, "temperature": 0.2, "stopSequences": ["X"]},
            "toolConfig": {"tools": [{"toolSpec": {"name": "w", "inputSchema": {"json": {"type": "object"}}}}]}
        }))
        .unwrap();
        assert_eq!(r.system, "be brief");
        assert_eq!(r.params.as_ref().unwrap().max_tokens, Some(9));
        assert_eq!(r.tools[0].parameters_json, "{\"type\":\"object\"}");
        assert_eq!(r.messages[2].role, pb::Role::Tool as i32);
        assert!(matches!(&r.messages[2].content[0].part,
            Some(pb::content_part::Part::ToolResult(t)) if t.is_error && t.content == "{\"ok\":true}"));
    }

    #[test]
    fn refuses_what_it_cannot_carry() {
        for body in [
            json!({"messages": []}),
            json!({"messages": [{"role": "user", "content": [{"document": {}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "inferenceConfig": {"maxTokens": 0}}),
            // A tool must be used, but there is none.
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "toolConfig": {"tools": [], "toolChoice": {"any": {}}}}),
            json!({"messages": [{"role": "user", "content": [{"reasoningContent": {"reasoningText": {"text": "x"}}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"text": "x"}, {"cachePoint": {"type": "forever"}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "additionalModelRequestFields": [1]}),
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "additionalModelRequestFields": {"thinking": {"type": "enabled"}}}),
        ] {
            assert!(
                matches!(to_infer(&body), Err(HubError::BadRequest(_))),
                "{body}"
            );
        }
        assert_eq!(
            error_type(&HubError::Unauthorized).1,
            "AccessDeniedException"
        );
    }
}
