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
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;

mod stream;

use crate::error::HubError;
use crate::gateway;
use crate::headers;
use crate::observe::{self, RequestInfo, Surface};
use crate::routing::Needs;
use crate::state::Hub;
use crate::surface::frame::{self, Frame};

/// `POST /v1/messages` body. Unknown fields (`metadata`, `service_tier`, …) are ignored.
#[derive(Debug, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    pub messages: Vec<InMessage>,
    #[serde(default)]
    pub system: Option<Content>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stop_sequences: Vec<String>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Accepted and not forwarded (the contract has no top-k).
    pub top_k: Option<u32>,
    #[serde(default)]
    pub tools: Vec<ToolDef>,
    pub tool_choice: Option<Value>,
    pub thinking: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct InMessage {
    pub role: String,
    pub content: Content,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<Value>),
}

#[derive(Debug, Deserialize)]
pub struct ToolDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub input_schema: Option<Value>,
    /// Server tools (`web_search_…`, `bash_…`) have a type; custom tools do not (or `custom`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

fn bad(msg: impl Into<String>) -> HubError {
    HubError::BadRequest(msg.into())
}

fn text_part(t: String) -> pb::ContentPart {
    pb::ContentPart {
        part: Some(pb::content_part::Part::Text(t)),
    }
}

/// The text of a `system` or `tool_result` content: a string or text blocks.
fn plain_text(c: &Content, what: &str) -> Result<String, HubError> {
    match c {
        Content::Text(s) => Ok(s.clone()),
        Content::Blocks(blocks) => {
            let mut out = String::new();
            for b in blocks {
                match (b["type"].as_str(), b["text"].as_str()) {
                    (Some("text"), Some(t)) => out.push_str(t),
                    (ty, _) => {
                        return Err(bad(format!(
                            "{what}: block of type {:?} is not supported (only text)",
                            ty.unwrap_or("")
                        )));
                    }
                }
            }
            Ok(out)
        }
    }
}

impl MessagesRequest {
    /// Translates to the spoke contract (routing fields are filled by the gateway).
    pub fn to_infer(&self) -> Result<pb::InferRequest, HubError> {
        if self.messages.is_empty() {
            return Err(bad("messages: at least one message is required"));
        }
        if self.max_tokens == 0 {
            return Err(bad("max_tokens: must be at least 1"));
        }
        if self.thinking.is_some() {
            return Err(bad(
                "thinking: extended thinking is not supported by this gateway",
            ));
        }
        match self.tool_choice.as_ref().and_then(|c| c["type"].as_str()) {
            None | Some("auto") => {}
            Some(other) => {
                return Err(bad(format!(
                    "tool_choice: {other:?} is not supported (only \"auto\")"
                )));
            }
        }
        for (name, v) in [("temperature", self.temperature), ("top_p", self.top_p)] {
            if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                return Err(bad(format!("{name}: must be a non-negative number")));
            }
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.iter().enumerate() {
            let role = match m.role.as_str() {
                "user" => pb::Role::User,
                "assistant" => pb::Role::Assistant,
                other => {
                    return Err(bad(format!(
                        "messages.{i}.role: {other:?} is not one of user, assistant"
                    )));
                }
            };
            let blocks = match &m.content {
                Content::Text(t) => {
                    messages.push(pb::Message {
                        role: role as i32,
                        content: vec![text_part(t.clone())],
                    });
                    continue;
                }
                Content::Blocks(b) => b,
            };
            let mut content = Vec::with_capacity(blocks.len());
            let mut has_results = false;
            for (j, b) in blocks.iter().enumerate() {
                let at = format!("messages.{i}.content.{j}");
                let part = match b["type"].as_str().unwrap_or("") {
                    "text" => pb::content_part::Part::Text(
                        b["text"]
                            .as_str()
                            .ok_or_else(|| bad(format!("{at}.text: required")))?
                            .to_owned(),
                    ),
                    "image" if role == pb::Role::User => {
                        let src = &b["source"];
                        if src["type"].as_str() != Some("base64") {
                            return Err(bad(format!(
                                "{at}.source: only base64 image sources are supported"
                            )));
                        }
                        let p = crate::media::image_part(
                            src["media_type"].as_str().unwrap_or(""),
                            src["data"].as_str().unwrap_or(""),
                        )
                        .map_err(|e| bad(format!("{at}: {e}")))?;
                        content.push(p);
                        continue;
                    }
                    "tool_use" if role == pb::Role::Assistant => {
                        pb::content_part::Part::ToolCall(pb::ToolCall {
                            id: b["id"].as_str().unwrap_or_default().to_owned(),
                            name: b["name"]
                                .as_str()
                                .ok_or_else(|| bad(format!("{at}.name: required")))?
                                .to_owned(),
                            arguments_json: match &b["input"] {
                                Value::Null => "{}".to_owned(),
                                v => v.to_string(),
                            },
                        })
                    }
                    "tool_result" if role == pb::Role::User => {
                        has_results = true;
                        let text = match b.get("content") {
                            None | Some(Value::Null) => String::new(),
                            Some(c) => plain_text(
                                &serde_json::from_value(c.clone())
                                    .map_err(|_| bad(format!("{at}.content: invalid")))?,
                                &format!("{at}.content"),
                            )?,
                        };
                        pb::content_part::Part::ToolResult(pb::ToolResult {
                            tool_call_id: b["tool_use_id"]
                                .as_str()
                                .ok_or_else(|| bad(format!("{at}.tool_use_id: required")))?
                                .to_owned(),
                            content: text,
                            is_error: b["is_error"].as_bool().unwrap_or(false),
                        })
                    }
                    other => {
                        return Err(bad(format!(
                            "{at}: block of type {other:?} is not supported in a {} message",
                            m.role
                        )));
                    }
                };
                content.push(pb::ContentPart { part: Some(part) });
            }
            let role = if has_results { pb::Role::Tool } else { role };
            messages.push(pb::Message {
                role: role as i32,
                content,
            });
        }
        let mut tools = Vec::with_capacity(self.tools.len());
        for (i, t) in self.tools.iter().enumerate() {
            if t.kind.as_deref().is_some_and(|k| k != "custom") {
                return Err(bad(format!(
                    "tools.{i}.type: server tools are not supported (only custom tools)"
                )));
            }
            tools.push(pb::ToolSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters_json: t
                    .input_schema
                    .as_ref()
                    .map(Value::to_string)
                    .unwrap_or_else(|| "{\"type\":\"object\"}".into()),
                ..Default::default()
            });
        }
        Ok(pb::InferRequest {
            system: match &self.system {
                Some(s) => plain_text(s, "system")?,
                None => String::new(),
            },
            messages,
            params: Some(pb::GenerationParams {
                max_tokens: Some(self.max_tokens),
                temperature: self.temperature,
                top_p: self.top_p,
                stop: self.stop_sequences.clone(),
                ..Default::default()
            }),
            tools,
            ..Default::default()
        })
    }
}

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
        tracing::Instrument::instrument(messages(&hub, &headers, body, &mut frame), span).await;
    frame.finish(result, error_response, Some(headers::ANTHROPIC_REQUEST_ID))
}

async fn messages(
    hub: &Arc<Hub>,
    headers: &HeaderMap,
    body: Body,
    frame: &mut Frame,
) -> Result<Response, HubError> {
    let table = frame.table.clone();
    let tenant = frame::authenticate_x_api_key(hub, &table, headers).await?;
    frame.rec.set_tenant(&tenant.name);
    let bytes = frame::read_body(hub, headers, body).await?;
    let req: MessagesRequest =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid request body: {e}")))?;
    let alias = table.resolve_alias(&tenant, &req.model)?;
    let request = req.to_infer()?;
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
        request,
        started: frame.started,
        request_id: &frame.request_id,
    };
    let admission = gateway::check(hub, tenant, alias, inbound)?
        .admit(hub)
        .await?;
    let rate_state = admission.rate_state;
    let id = format!("msg_{}", frame.request_id);
    if req.stream {
        let streamed = admission.stream(hub, &frame.rec).await?;
        frame
            .rec
            .set_route(&streamed.route, None, &streamed.attempts);
        let mut resp = stream::sse(
            streamed.items,
            id,
            req.model.clone(),
            frame.rec.share_with_stream(),
        );
        frame::answered(&mut resp, &streamed.route, frame.started, &rate_state, None);
        Ok(resp)
    } else {
        let done = admission.complete(hub).await?;
        frame.rec.set_route(
            &done.route,
            done.response.usage.as_ref(),
            &done.response.attempts,
        );
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
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
            json!({"model": "m", "max_tokens": 5, "messages": []}),
            json!({"model": "m", "max_tokens": 5, "thinking": {"type": "enabled"}, "messages": [{"role": "user", "content": "x"}]}),
            json!({"model": "m", "max_tokens": 5, "tool_choice": {"type": "any"}, "messages": [{"role": "user", "content": "x"}]}),
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
