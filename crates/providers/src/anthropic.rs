//! Anthropic's Messages API (direct third-party access): `POST {base}/messages` with `x-api-key`
//! and `anthropic-version`, JSON and SSE streaming (`message_start`, `content_block_*`,
//! `message_delta`, `message_stop`, `ping`, `error`). 429 and 529 (overloaded) are throttles
//! (with `retry-after`), other 5xx outages; 401/402/403/404 and the credit-balance 400 are the
//! account's faults, other 4xx the caller's (see [`classify`]).

use crate::error::{account_fault_of_status, parse_retry_after};
use crate::openai::{KeySource, transport_error};
use crate::{Call, Chunk, ChunkStream, Completion, DenyReason, Reason, Upstream, UpstreamError};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use switchyard_proto::v1::{Role, StopReason, ToolCall, Usage, content_part::Part};

/// The API version this adapter speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The public API's base URL (a region without `endpoint` uses it).
pub const DEFAULT_ENDPOINT: &str = "https://api.anthropic.com/v1";
/// `max_tokens` is required by the Messages API; used when the request has none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

pub struct AnthropicUpstream {
    http: reqwest::Client,
    /// Region name → base URL including `/v1` (e.g. `https://api.anthropic.com/v1`).
    endpoints: HashMap<String, String>,
    api_key: KeySource,
}

impl AnthropicUpstream {
    pub fn new(
        endpoints: HashMap<String, String>,
        api_key: KeySource,
    ) -> Result<Self, UpstreamError> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| UpstreamError::unavailable(format!("http client: {e}")))?;
        Ok(Self {
            http,
            endpoints,
            api_key,
        })
    }

    async fn send(
        &self,
        call: &Call<'_>,
        stream: bool,
    ) -> Result<reqwest::Response, UpstreamError> {
        let base = self.endpoints.get(call.region).ok_or_else(|| {
            UpstreamError::unavailable(format!("no endpoint for region {}", call.region))
        })?;
        let url = format!("{}/messages", base.trim_end_matches('/'));
        let mut rb = self
            .http
            .post(url)
            .timeout(call.timeout)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(&request_body(call, stream));
        match &self.api_key {
            KeySource::None => {}
            KeySource::Static(key) => rb = rb.header("x-api-key", key.expose()),
            KeySource::Refreshed(cell) => match cell.get() {
                Some(key) => rb = rb.header("x-api-key", key.expose()),
                None => return Err(UpstreamError::unavailable("API key not loaded yet")),
            },
        }
        let resp = rb.send().await.map_err(transport_error)?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, false));
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Err(classify(status, &body, retry_after).scrub(&self.api_key.secrets()))
    }
}

/// Classifies an Anthropic error response (`{"type": "error", "error": {"type", "message"}}`):
///
/// | answer | whose fault |
/// | --- | --- |
/// | 401 `authentication_error` | account: credentials |
/// | 402 `billing_error`; 400 "Your credit balance is too low to access the Anthropic API…" | account: billing |
/// | 403 `permission_error` | account: model access |
/// | 404 `not_found_error` | account: model not found |
/// | 429 `rate_limit_error`, 529 `overloaded_error` | transient: throttled |
/// | 504 `timeout_error` | transient: timeout |
/// | 500 `api_error`, other 5xx | transient: unavailable |
/// | other 4xx (400 `invalid_request_error`, 413 `request_too_large`) | the caller's |
///
/// The reason keeps the error `type` and the message redacted.
pub fn classify(status: u16, body: &Value, retry_after: Option<Duration>) -> UpstreamError {
    let ty = body["error"]["type"].as_str().unwrap_or("unknown_error");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or("no error message");
    let reason = Reason::upstream(ty, message, &[]);
    let denied = |why| UpstreamError::Denied {
        why,
        reason: reason.clone(),
    };
    let lower = message.to_ascii_lowercase();
    if ty == "billing_error" || lower.contains("credit balance is too low") {
        return denied(DenyReason::Billing);
    }
    match (status, ty) {
        (_, "authentication_error") => return denied(DenyReason::Credentials),
        (_, "permission_error") => return denied(DenyReason::ModelAccess),
        (_, "not_found_error") => return denied(DenyReason::ModelNotFound),
        _ => {}
    }
    if let Some(why) = account_fault_of_status(status) {
        return denied(why);
    }
    match status {
        // 529: Anthropic is overloaded; like a throttle, another route may have room.
        429 | 529 => UpstreamError::Throttled {
            reason,
            retry_after,
        },
        _ => UpstreamError::from_status(status, reason, retry_after),
    }
}

/// The Messages API body for a call.
pub fn request_body(call: &Call<'_>, stream: bool) -> Value {
    let req = call.request;
    // The API wants alternating roles: consecutive messages of one role are merged.
    let mut messages: Vec<Value> = Vec::new();
    for m in &req.messages {
        let role = match Role::try_from(m.role).unwrap_or(Role::User) {
            Role::Assistant => "assistant",
            Role::User | Role::Tool | Role::System | Role::Unspecified => "user",
        };
        let blocks: Vec<Value> = m
            .content
            .iter()
            .filter_map(|p| match &p.part {
                Some(Part::Text(t)) if !t.is_empty() => Some(json!({"type": "text", "text": t})),
                Some(Part::Image(img)) => Some(json!({"type": "image", "source": {
                    "type": "base64",
                    "media_type": format!("image/{}", img.format),
                    "data": base64_encode(&img.data),
                }})),
                Some(Part::ToolCall(tc)) => Some(json!({
                    "type": "tool_use", "id": tc.id, "name": tc.name,
                    "input": serde_json::from_str::<Value>(&tc.arguments_json).unwrap_or_else(|_| json!({})),
                })),
                Some(Part::ToolResult(r)) => {
                    let mut b = json!({"type": "tool_result", "tool_use_id": r.tool_call_id, "content": r.content});
                    if r.is_error {
                        b["is_error"] = json!(true);
                    }
                    Some(b)
                }
                _ => None,
            })
            .collect();
        match messages.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(arr) = last["content"].as_array_mut() {
                    arr.extend(blocks);
                }
            }
            _ => messages.push(json!({"role": role, "content": blocks})),
        }
    }
    let p = req.params.clone().unwrap_or_default();
    let mut body = json!({
        "model": call.model,
        "max_tokens": p.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": messages,
    });
    if stream {
        body["stream"] = json!(true);
    }
    if !req.system.is_empty() {
        body["system"] = json!(req.system);
    }
    if let Some(v) = p.temperature {
        body["temperature"] = json!(v);
    }
    if let Some(v) = p.top_p {
        body["top_p"] = json!(v);
    }
    if !p.stop.is_empty() {
        body["stop_sequences"] = json!(p.stop);
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let schema: Value = serde_json::from_str(&t.parameters_json)
                    .unwrap_or_else(|_| json!({"type": "object"}));
                let mut v = json!({"name": t.name, "input_schema": schema});
                if !t.description.is_empty() {
                    v["description"] = json!(t.description);
                }
                v
            })
            .collect();
        body["tools"] = Value::Array(tools);
    }
    body
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn stop_reason(r: Option<&str>) -> StopReason {
    match r {
        Some("max_tokens") | Some("model_context_window_exceeded") => StopReason::MaxTokens,
        Some("stop_sequence") => StopReason::StopSequence,
        Some("tool_use") => StopReason::ToolUse,
        Some("refusal") => StopReason::ContentFiltered,
        _ => StopReason::EndTurn,
    }
}

fn usage(v: &Value) -> Usage {
    Usage {
        input_tokens: v["input_tokens"].as_u64().unwrap_or(0) as u32,
        output_tokens: v["output_tokens"].as_u64().unwrap_or(0) as u32,
        ..Default::default()
    }
}

#[async_trait::async_trait]
impl Upstream for AnthropicUpstream {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    async fn check_credentials(&self) -> Result<(), String> {
        self.api_key.check()
    }

    async fn complete(&self, call: Call<'_>) -> Result<Completion, UpstreamError> {
        let resp = self.send(&call, false).await?;
        let v: Value = resp.json().await.map_err(transport_error)?;
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for b in v["content"].as_array().into_iter().flatten() {
            match b["type"].as_str() {
                Some("text") => text.push_str(b["text"].as_str().unwrap_or_default()),
                Some("tool_use") => tool_calls.push(ToolCall {
                    id: b["id"].as_str().unwrap_or_default().to_owned(),
                    name: b["name"].as_str().unwrap_or_default().to_owned(),
                    arguments_json: b["input"].to_string(),
                }),
                _ => {}
            }
        }
        Ok(Completion {
            text,
            tool_calls,
            stop_reason: stop_reason(v["stop_reason"].as_str()),
            usage: usage(&v["usage"]),
        })
    }

    async fn stream(&self, call: Call<'_>) -> Result<ChunkStream, UpstreamError> {
        let resp = self.send(&call, true).await?;
        let secrets = self.api_key.secrets();
        Ok(sse_chunks(resp.bytes_stream().boxed())
            .map(move |item| item.map_err(|e| e.scrub(&secrets)))
            .boxed())
    }
}

/// Parses an Anthropic SSE body into chunks; public so tests can feed it any bytes.
pub fn sse_chunks(
    bytes: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
) -> ChunkStream {
    let state = SseState {
        bytes,
        buf: Vec::new(),
        tool_blocks: HashMap::new(),
        stop: None,
        usage: Usage::default(),
        queued: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        let item = st.next_chunk().await?;
        Some((item, st))
    })
    .boxed()
}

struct SseState {
    bytes: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
    /// Content block index → tool-call index.
    tool_blocks: HashMap<u64, u32>,
    stop: Option<StopReason>,
    usage: Usage,
    queued: VecDeque<Result<Chunk, UpstreamError>>,
    done: bool,
}

impl SseState {
    async fn next_chunk(&mut self) -> Option<Result<Chunk, UpstreamError>> {
        loop {
            if let Some(c) = self.queued.pop_front() {
                return Some(c);
            }
            if self.done {
                return None;
            }
            // Only `data:` lines matter: each carries its event's `type`.
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                if let Some(data) = line.trim().strip_prefix("data:")
                    && let Ok(v) = serde_json::from_str::<Value>(data.trim())
                {
                    self.on_event(&v);
                }
                continue;
            }
            match self.bytes.next().await {
                Some(Ok(b)) => self.buf.extend_from_slice(&b),
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(transport_error(e)));
                }
                None => {
                    self.done = true;
                    return Some(Err(UpstreamError::unavailable(
                        "stream ended before message_stop",
                    )));
                }
            }
        }
    }

    fn on_event(&mut self, v: &Value) {
        match v["type"].as_str().unwrap_or("") {
            "message_start" => {
                let u = usage(&v["message"]["usage"]);
                self.usage.input_tokens = u.input_tokens;
                self.usage.output_tokens = u.output_tokens;
            }
            "content_block_start" => {
                let b = &v["content_block"];
                if b["type"] == "tool_use" {
                    let index = self.tool_blocks.len() as u32;
                    self.tool_blocks
                        .insert(v["index"].as_u64().unwrap_or(0), index);
                    self.queued.push_back(Ok(Chunk::ToolCall {
                        index,
                        id: b["id"].as_str().unwrap_or_default().to_owned(),
                        name: b["name"].as_str().unwrap_or_default().to_owned(),
                        arguments: String::new(),
                    }));
                }
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => {
                        if let Some(t) = d["text"].as_str().filter(|t| !t.is_empty()) {
                            self.queued.push_back(Ok(Chunk::Delta(t.to_owned())));
                        }
                    }
                    Some("input_json_delta") => {
                        let piece = d["partial_json"].as_str().unwrap_or_default();
                        let block = v["index"].as_u64().unwrap_or(0);
                        match self.tool_blocks.get(&block) {
                            Some(index) if !piece.is_empty() => {
                                self.queued.push_back(Ok(Chunk::ToolCall {
                                    index: *index,
                                    id: String::new(),
                                    name: String::new(),
                                    arguments: piece.to_owned(),
                                }));
                            }
                            Some(_) => {}
                            None => {
                                self.done = true;
                                self.queued.push_back(Err(UpstreamError::unavailable(
                                    "input_json_delta without its tool_use block",
                                )));
                            }
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(r) = v["delta"]["stop_reason"].as_str() {
                    self.stop = Some(stop_reason(Some(r)));
                }
                let u = &v["usage"];
                if let Some(o) = u["output_tokens"].as_u64() {
                    self.usage.output_tokens = o as u32;
                }
                if let Some(i) = u["input_tokens"].as_u64() {
                    self.usage.input_tokens = i as u32;
                }
            }
            "message_stop" => {
                self.done = true;
                self.queued.push_back(Ok(Chunk::End {
                    stop_reason: self.stop.unwrap_or(StopReason::EndTurn),
                    usage: self.usage,
                }));
            }
            "error" => {
                self.done = true;
                let ty = v["error"]["type"].as_str().unwrap_or("error");
                let msg = v["error"]["message"].as_str().unwrap_or("stream error");
                let reason = Reason::upstream(ty, msg, &[]);
                self.queued.push_back(Err(if ty == "overloaded_error" {
                    UpstreamError::Throttled {
                        reason,
                        retry_after: None,
                    }
                } else {
                    UpstreamError::Unavailable { reason }
                }));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_proto::v1::{ContentPart, InferRequest, Message};

    #[test]
    fn classifies_statuses() {
        let body =
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}});
        assert!(matches!(
            classify(529, &body, None),
            UpstreamError::Throttled { .. }
        ));
        assert!(matches!(classify(429, &body, Some(Duration::from_secs(3))),
            UpstreamError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(3)));
        assert!(matches!(
            classify(500, &body, None),
            UpstreamError::Unavailable { .. }
        ));
        assert!(matches!(
            classify(400, &body, None),
            UpstreamError::Invalid { .. }
        ));
    }

    #[test]
    fn merges_consecutive_roles_and_maps_blocks() {
        let part = |p| ContentPart { part: Some(p) };
        let req = InferRequest {
            system: "sys".into(),
            messages: vec![
                Message {
                    role: Role::Tool as i32,
                    content: vec![part(Part::ToolResult(switchyard_proto::v1::ToolResult {
                        tool_call_id: "t1".into(),
                        content: "r".into(),
                        is_error: true,
                    }))],
                },
                Message {
                    role: Role::User as i32,
                    content: vec![part(Part::Text("more".into()))],
                },
            ],
            ..Default::default()
        };
        let call = Call {
            region: "r",
            model: "claude",
            request: &req,
            timeout: Duration::from_secs(1),
        };
        let b = request_body(&call, true);
        assert_eq!(b["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(b["system"], "sys");
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
        assert_eq!(b["messages"][0]["content"][0]["type"], "tool_result");
        assert_eq!(b["messages"][0]["content"][0]["is_error"], true);
        assert_eq!(b["messages"][0]["content"][1]["text"], "more");
    }

    fn why(status: u16, ty: &str, message: &str) -> Option<DenyReason> {
        let body = json!({"type": "error", "error": {"type": ty, "message": message}});
        match classify(status, &body, None) {
            UpstreamError::Denied { why, .. } => Some(why),
            _ => None,
        }
    }

    #[test]
    fn account_faults_are_denials() {
        // Real Anthropic answers (docs.anthropic.com/en/api/errors).
        assert_eq!(
            why(401, "authentication_error", "invalid x-api-key"),
            Some(DenyReason::Credentials)
        );
        assert_eq!(
            why(
                403,
                "permission_error",
                "Your API key does not have permission to use the specified resource."
            ),
            Some(DenyReason::ModelAccess)
        );
        assert_eq!(
            why(404, "not_found_error", "model: claude-9"),
            Some(DenyReason::ModelNotFound)
        );
        assert_eq!(
            why(
                400,
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."
            ),
            Some(DenyReason::Billing)
        );
        assert_eq!(
            why(402, "billing_error", "payment required"),
            Some(DenyReason::Billing)
        );
    }

    #[test]
    fn other_errors_are_not_denials() {
        let e = classify(
            400,
            &json!({"type": "error", "error": {"type": "invalid_request_error",
                "message": "messages: roles must alternate between \"user\" and \"assistant\""}}),
            None,
        );
        assert_eq!(e.fault(), crate::Fault::Caller);
        assert_eq!(e.detail(), "invalid_request_error");
        let e = classify(
            413,
            &json!({"type": "error", "error": {"type": "request_too_large", "message": "too big"}}),
            None,
        );
        assert_eq!(e.fault(), crate::Fault::Caller);
        for (status, ty) in [
            (429, "rate_limit_error"),
            (529, "overloaded_error"),
            (500, "api_error"),
        ] {
            let body = json!({"type": "error", "error": {"type": ty, "message": "m"}});
            assert_eq!(
                classify(status, &body, None).fault(),
                crate::Fault::Transient,
                "{ty}"
            );
        }
        let body = json!({"type": "error", "error": {"type": "timeout_error", "message": "m"}});
        assert_eq!(classify(504, &body, None), UpstreamError::Timeout);
    }
}
