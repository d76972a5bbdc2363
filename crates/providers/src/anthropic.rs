//! Anthropic's Messages API (direct third-party access): `POST {base}/messages` with `x-api-key`
//! and `anthropic-version`, JSON and SSE streaming (`message_start`, `content_block_*`,
//! `message_delta`, `message_stop`, `ping`, `error`). 429 and 529 (overloaded) are throttles
//! (with `retry-after`), other 5xx outages; 401/402/403/404 and the credit-balance 400 are the
//! account's faults, other 4xx the caller's (see [`classify`]).

use crate::error::{account_fault_of_status, parse_retry_after};
use crate::openai::{KeySource, transport_error};
use crate::shape::{self, OutputTool, Think};
use crate::{Call, Chunk, ChunkStream, Completion, DenyReason, Reason, Upstream, UpstreamError};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use switchyard_proto::v1::{
    CachePoint, InferRequest, Role, StopReason, ThinkingPart, ToolCall, Usage, content_part::Part,
    tool_choice::Mode as ChoiceMode,
};

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
        body: &Value,
    ) -> Result<reqwest::Response, UpstreamError> {
        self.send_to(call, "messages", body).await
    }

    /// POSTs `body` to `{base}/{path}` of the call's region; a non-2xx answer is classified.
    async fn send_to(
        &self,
        call: &Call<'_>,
        path: &str,
        body: &Value,
    ) -> Result<reqwest::Response, UpstreamError> {
        let base = self.endpoints.get(call.region).ok_or_else(|| {
            UpstreamError::unavailable(format!("no endpoint for region {}", call.region))
        })?;
        let url = format!("{}/{path}", base.trim_end_matches('/'));
        let mut rb = self
            .http
            .post(url)
            .timeout(call.timeout)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(body);
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

/// The Messages API body for a call, and the structured-output tool it offers (when the answer
/// must be JSON and the model's `structured_output_mode` is `tool`). A request the API cannot
/// express is the caller's fault.
///
/// - `ROLE_SYSTEM` messages leave `messages`: their text is appended to `system` (as more
///   text blocks when `system` is blocks).
/// - `ThinkingPart`s become `thinking` (with `signature`) or `redacted_thinking` (`data`)
///   blocks; one without a signature cannot be verified by the API and is left out.
/// - `CachePoint`s (with `prompt_caching`) become `cache_control` on the block before them
///   (`{"type":"ephemeral"}`, with `ttl` when given), on a tool with `ToolSpec.cache_point`.
/// - Reasoning: `disabled` → no `thinking` (the API's default), a budget → `{"type":"enabled",
///   "budget_tokens"}`, an effort alone → its budget from [`shape::EFFORT_BUDGETS`] (at least
///   1024, below `max_tokens`), `adaptive` → `{"type":"adaptive"}` with `output_config.effort`.
pub fn request_body(
    call: &Call<'_>,
    stream: bool,
) -> Result<(Value, Option<OutputTool>), UpstreamError> {
    let req = call.request;
    shape::refuse_unsupported(req, "Anthropic Messages API", true)?;
    let caching = call.options.prompt_caching;
    // The API wants alternating roles: consecutive messages of one role are merged.
    let mut messages: Vec<Value> = Vec::new();
    for m in &req.messages {
        let role = match Role::try_from(m.role).unwrap_or(Role::User) {
            Role::System => continue,
            Role::Assistant => "assistant",
            Role::User | Role::Tool | Role::Unspecified => "user",
        };
        let mut blocks: Vec<Value> = Vec::new();
        for p in &m.content {
            let block = match &p.part {
                Some(Part::Text(t)) if !t.is_empty() => json!({"type": "text", "text": t}),
                Some(Part::Image(img)) => json!({"type": "image", "source": {
                    "type": "base64",
                    "media_type": format!("image/{}", img.format),
                    "data": base64_encode(&img.data),
                }}),
                Some(Part::ToolCall(tc)) => json!({
                    "type": "tool_use", "id": tc.id, "name": tc.name,
                    "input": serde_json::from_str::<Value>(&tc.arguments_json).unwrap_or_else(|_| json!({})),
                }),
                Some(Part::ToolResult(r)) => {
                    let mut b = json!({"type": "tool_result", "tool_use_id": r.tool_call_id, "content": r.content});
                    if r.is_error {
                        b["is_error"] = json!(true);
                    }
                    b
                }
                Some(Part::Thinking(t)) if t.redacted && !t.data.is_empty() => {
                    json!({"type": "redacted_thinking", "data": t.data})
                }
                Some(Part::Thinking(t)) if !t.redacted && !t.signature.is_empty() => {
                    json!({"type": "thinking", "thinking": t.text, "signature": t.signature})
                }
                Some(Part::CachePoint(cp)) => {
                    if caching {
                        mark_cache(blocks.last_mut(), cp);
                    }
                    continue;
                }
                _ => continue,
            };
            blocks.push(block);
        }
        // A turn left with nothing the API takes (only unverifiable thinking) is left out.
        if blocks.is_empty() {
            continue;
        }
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
    let think = shape::reasoning(req);
    let budget = match &think {
        Some(t) => shape::think_budget(t)?,
        None => None,
    };
    let max_tokens = match (p.max_tokens, budget) {
        (Some(m), _) => m,
        // Thinking counts against max_tokens: room for the budget and an answer.
        (None, Some(b)) => b.saturating_add(DEFAULT_MAX_TOKENS),
        (None, None) => DEFAULT_MAX_TOKENS,
    };
    let mut body = json!({
        "model": call.model,
        "max_tokens": max_tokens,
        "messages": messages,
    });
    if stream {
        body["stream"] = json!(true);
    }
    if let Some(system) = system(req, caching) {
        body["system"] = system;
    }
    if let Some(v) = p.temperature {
        body["temperature"] = shape::num(v);
    }
    if let Some(v) = p.top_p {
        body["top_p"] = shape::num(v);
    }
    if let Some(v) = p.top_k {
        body["top_k"] = json!(v);
    }
    if !p.stop.is_empty() {
        body["stop_sequences"] = json!(p.stop);
    }
    match think {
        None | Some(Think::Off) => {}
        Some(Think::Adaptive(effort)) => {
            body["thinking"] = json!({"type": "adaptive"});
            if let Some(e) = effort {
                body["output_config"] = json!({"effort": shape::anthropic_effort(&e)});
            }
        }
        Some(Think::Budget(b, _)) => {
            body["thinking"] = json!({"type": "enabled", "budget_tokens": b})
        }
        Some(Think::Effort(_)) => {
            if let Some(b) = budget {
                // The effort's budget, fitted under max_tokens (the API wants 1024 ≤ budget <
                // max_tokens); no room for the smallest budget is the caller's to fix.
                let b = b.min(max_tokens.saturating_sub(1));
                if b < shape::MIN_THINKING_BUDGET {
                    return Err(shape::invalid(format!(
                        "max_tokens: {max_tokens} leaves no room for reasoning (Anthropic's smallest thinking budget is {} tokens)",
                        shape::MIN_THINKING_BUDGET
                    )));
                }
                body["thinking"] = json!({"type": "enabled", "budget_tokens": b});
            }
        }
    }
    let plan = shape::tool_plan(req, call.options.structured_output)?;
    if plan.output.is_some() && body.get("thinking").is_some() {
        return Err(shape::invalid(
            "response_format: with thinking, Anthropic takes no forced tool; the model needs structured_output_mode = \"native\"".into(),
        ));
    }
    let mut tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| {
            let schema: Value = serde_json::from_str(&t.parameters_json)
                .unwrap_or_else(|_| json!({"type": "object"}));
            let mut v = json!({"name": t.name, "input_schema": schema});
            if !t.description.is_empty() {
                v["description"] = json!(t.description);
            }
            if t.strict {
                v["strict"] = json!(true);
            }
            if caching && let Some(cp) = &t.cache_point {
                mark_cache(Some(&mut v), cp);
            }
            v
        })
        .collect();
    if let Some(out) = &plan.output {
        tools.push(json!({"name": out.name, "description": out.description, "input_schema": out.input_schema}));
    }
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
        let mut choice = match plan.mode {
            ChoiceMode::Auto => json!({"type": "auto"}),
            ChoiceMode::Any => json!({"type": "any"}),
            ChoiceMode::None => json!({"type": "none"}),
            ChoiceMode::Tool => json!({"type": "tool", "name": plan.name}),
        };
        if req.parallel_tool_calls == Some(false) && plan.mode != ChoiceMode::None {
            choice["disable_parallel_tool_use"] = json!(true);
        }
        // `auto` is the API's default: sent only when it says more than that.
        if choice != json!({"type": "auto"}) {
            body["tool_choice"] = choice;
        }
    } else if matches!(plan.mode, ChoiceMode::Any | ChoiceMode::Tool) {
        return Err(shape::invalid(
            "tool_choice: a tool must be called but none is offered".into(),
        ));
    }
    if plan.output.is_none()
        && let Some(f) = shape::json_format(req)
    {
        // Native structured output (output_config.format).
        let format = json!({"type": "json_schema", "schema": shape::format_schema(f)?});
        match body.get_mut("output_config").and_then(Value::as_object_mut) {
            Some(o) => {
                o.insert("format".into(), format);
            }
            None => body["output_config"] = json!({"format": format}),
        }
    }
    if let Some(extra) = shape::passthrough(req, "anthropic")? {
        shape::merge_absent(&mut body, extra);
    }
    Ok((body, plan.output))
}

/// `system`: the plain string, or text blocks when the caller gave cache breakpoints in it;
/// the text of mid-conversation system messages appended.
fn system(req: &InferRequest, caching: bool) -> Option<Value> {
    let appended = shape::system_message_texts(req);
    let has_cache = caching
        && req
            .system_parts
            .iter()
            .any(|p| matches!(p.part, Some(Part::CachePoint(_))));
    if !has_cache {
        let mut text = req.system.clone();
        if req.system.is_empty() {
            let parts: Vec<&str> = req
                .system_parts
                .iter()
                .filter_map(|p| match &p.part {
                    Some(Part::Text(t)) => Some(t.as_str()),
                    _ => None,
                })
                .collect();
            text = parts.join("\n");
        }
        for a in appended {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&a);
        }
        return (!text.is_empty()).then_some(Value::String(text));
    }
    let mut blocks: Vec<Value> = Vec::new();
    for p in &req.system_parts {
        match &p.part {
            Some(Part::Text(t)) if !t.is_empty() => blocks.push(json!({"type": "text", "text": t})),
            Some(Part::CachePoint(cp)) => mark_cache(blocks.last_mut(), cp),
            _ => {}
        }
    }
    blocks.extend(
        appended
            .into_iter()
            .map(|t| json!({"type": "text", "text": t})),
    );
    Some(Value::Array(blocks))
}

/// Puts a cache breakpoint on `block` (the one before the `CachePoint`): `cache_control`
/// `{"type":"ephemeral"}`, with `ttl` when given. Thinking blocks cannot carry one.
fn mark_cache(block: Option<&mut Value>, cp: &CachePoint) {
    let Some(b) = block else {
        return;
    };
    if matches!(b["type"].as_str(), Some("thinking" | "redacted_thinking")) {
        return;
    }
    let mut cc = json!({"type": "ephemeral"});
    if !cp.ttl.is_empty() {
        cc["ttl"] = json!(cp.ttl);
    }
    b["cache_control"] = cc;
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

/// Anthropic's usage: `input_tokens` counts only the tokens after the last cache breakpoint,
/// so the contract's `input_tokens` adds `cache_creation_input_tokens` and
/// `cache_read_input_tokens` (given apart too). `output_tokens` includes thinking.
fn usage(v: &Value) -> Usage {
    let n = |v: &Value| u32::try_from(v.as_u64().unwrap_or(0)).unwrap_or(u32::MAX);
    let (input, write, read) = (
        n(&v["input_tokens"]),
        n(&v["cache_creation_input_tokens"]),
        n(&v["cache_read_input_tokens"]),
    );
    Usage {
        input_tokens: input.saturating_add(write).saturating_add(read),
        output_tokens: n(&v["output_tokens"]),
        cache_read_input_tokens: read,
        cache_write_input_tokens: write,
        reasoning_tokens: 0,
    }
}

/// A `message` as a [`Completion`] (before [`shape::settle`]).
fn completion(v: &Value) -> Completion {
    let mut c = Completion {
        stop_reason: stop_reason(v["stop_reason"].as_str()),
        usage: usage(&v["usage"]),
        ..Default::default()
    };
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    for b in v["content"].as_array().into_iter().flatten() {
        match b["type"].as_str() {
            Some("text") => c.text.push_str(b["text"].as_str().unwrap_or_default()),
            Some("tool_use") => c.tool_calls.push(ToolCall {
                id: s(&b["id"]),
                name: s(&b["name"]),
                arguments_json: b["input"].to_string(),
            }),
            Some("thinking") => c.thinking.push(ThinkingPart {
                text: s(&b["thinking"]),
                signature: s(&b["signature"]),
                ..Default::default()
            }),
            Some("redacted_thinking") => c.thinking.push(ThinkingPart {
                redacted: true,
                data: s(&b["data"]),
                ..Default::default()
            }),
            _ => {}
        }
    }
    c
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
        let (body, output) = request_body(&call, false)?;
        let resp = self.send(&call, &body).await?;
        let v: Value = resp.json().await.map_err(transport_error)?;
        Ok(shape::settle(
            completion(&v),
            &shape::Finish {
                output,
                single_call: false,
            },
        ))
    }

    /// `POST {base}/messages/count_tokens` → `{"input_tokens": N}`.
    async fn count_tokens(&self, call: Call<'_>) -> Result<Option<u32>, UpstreamError> {
        let body = count_tokens_body(&call)?;
        let resp = self.send_to(&call, "messages/count_tokens", &body).await?;
        let v: Value = resp.json().await.map_err(transport_error)?;
        let n = v["input_tokens"].as_u64().ok_or_else(|| {
            UpstreamError::unavailable("count_tokens answer without input_tokens")
        })?;
        Ok(Some(u32::try_from(n).unwrap_or(u32::MAX)))
    }

    async fn stream(&self, call: Call<'_>) -> Result<ChunkStream, UpstreamError> {
        let (body, output) = request_body(&call, true)?;
        let resp = self.send(&call, &body).await?;
        let secrets = self.api_key.secrets();
        let chunks = sse_chunks(resp.bytes_stream().boxed())
            .map(move |item| item.map_err(|e| e.scrub(&secrets)))
            .boxed();
        Ok(shape::settle_stream(
            chunks,
            shape::Finish {
                output,
                single_call: false,
            },
        ))
    }
}

/// The fields of a Messages body that `POST /v1/messages/count_tokens` takes (the API refuses
/// the others: `max_tokens`, `stream`, sampling settings, `metadata`, …).
pub const COUNT_TOKENS_FIELDS: [&str; 7] = [
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
];

/// The `count_tokens` body of a call: its Messages body reduced to [`COUNT_TOKENS_FIELDS`].
pub fn count_tokens_body(call: &Call<'_>) -> Result<Value, UpstreamError> {
    let (body, _) = request_body(call, false)?;
    let mut out = serde_json::Map::new();
    if let Value::Object(fields) = body {
        for (k, v) in fields {
            if COUNT_TOKENS_FIELDS.contains(&k.as_str()) {
                out.insert(k, v);
            }
        }
    }
    Ok(Value::Object(out))
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
                self.usage = usage(&v["message"]["usage"]);
            }
            "content_block_start" => {
                let b = &v["content_block"];
                if b["type"] == "redacted_thinking" {
                    self.queued.push_back(Ok(Chunk::thinking(ThinkingPart {
                        redacted: true,
                        data: b["data"].as_str().unwrap_or_default().to_owned(),
                        ..Default::default()
                    })));
                }
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
                    Some("thinking_delta") => {
                        if let Some(t) = d["thinking"].as_str().filter(|t| !t.is_empty()) {
                            self.queued.push_back(Ok(Chunk::thinking(ThinkingPart {
                                text: t.to_owned(),
                                ..Default::default()
                            })));
                        }
                    }
                    Some("signature_delta") => {
                        if let Some(sig) = d["signature"].as_str().filter(|t| !t.is_empty()) {
                            self.queued.push_back(Ok(Chunk::thinking(ThinkingPart {
                                signature: sig.to_owned(),
                                ..Default::default()
                            })));
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
                // Cumulative counts; a field absent here keeps its message_start value.
                let u = &v["usage"];
                if let Some(o) = u["output_tokens"].as_u64() {
                    self.usage.output_tokens = u32::try_from(o).unwrap_or(u32::MAX);
                }
                if u["input_tokens"].is_u64()
                    || u["cache_read_input_tokens"].is_u64()
                    || u["cache_creation_input_tokens"].is_u64()
                {
                    let mut merged = json!({
                        "input_tokens": self.usage.input_tokens
                            .saturating_sub(self.usage.cache_read_input_tokens)
                            .saturating_sub(self.usage.cache_write_input_tokens),
                        "cache_read_input_tokens": self.usage.cache_read_input_tokens,
                        "cache_creation_input_tokens": self.usage.cache_write_input_tokens,
                    });
                    for k in [
                        "input_tokens",
                        "cache_read_input_tokens",
                        "cache_creation_input_tokens",
                    ] {
                        if u[k].is_u64() {
                            merged[k] = u[k].clone();
                        }
                    }
                    let output = self.usage.output_tokens;
                    self.usage = usage(&merged);
                    self.usage.output_tokens = output;
                }
            }
            "message_stop" => {
                self.done = true;
                self.queued.push_back(Ok(Chunk::end(
                    self.stop.unwrap_or(StopReason::EndTurn),
                    self.usage,
                )));
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
            options: Default::default(),
        };
        let (b, _) = request_body(&call, true).unwrap();
        assert_eq!(b["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(b["system"], "sys");
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
        assert_eq!(b["messages"][0]["content"][0]["type"], "tool_result");
        assert_eq!(b["messages"][0]["content"][0]["is_error"], true);
        assert_eq!(b["messages"][0]["content"][1]["text"], "more");
    }

    #[test]
    fn count_tokens_body_keeps_only_what_count_tokens_takes() {
        let req = InferRequest {
            system: "sys".into(),
            messages: vec![Message {
                role: Role::User as i32,
                content: vec![ContentPart {
                    part: Some(Part::Text("hi".into())),
                }],
            }],
            params: Some(switchyard_proto::v1::GenerationParams {
                max_tokens: Some(50),
                temperature: Some(0.5),
                ..Default::default()
            }),
            ..Default::default()
        };
        let call = Call {
            region: "r",
            model: "claude",
            request: &req,
            timeout: Duration::from_secs(1),
            options: Default::default(),
        };
        let b = count_tokens_body(&call).unwrap();
        let keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 3, "{b}");
        for k in ["model", "messages", "system"] {
            assert!(keys.contains(&k), "{b}");
        }
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

#[cfg(test)]
mod stream_tests {
    use super::*;

    fn feed(events: &[Value]) -> Vec<Chunk> {
        let mut body = String::new();
        for e in events {
            body.push_str(&format!(
                "event: {}\ndata: {e}\n\n",
                e["type"].as_str().unwrap()
            ));
        }
        let bytes = futures::stream::iter(vec![Ok(bytes::Bytes::from(body))]).boxed();
        futures::executor::block_on(sse_chunks(bytes).collect::<Vec<_>>())
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn thinking_signature_redacted_and_cache_usage() {
        let out = feed(&[
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 5, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 7, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "opaque"}}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "51"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ]);
        let thinking = |c: &Chunk| match c {
            Chunk::Part(d) => d.thinking.clone().unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(thinking(&out[0]).text, "hmm");
        assert_eq!(thinking(&out[1]).signature, "EqQB");
        let r = thinking(&out[2]);
        assert!(r.redacted && r.data == "opaque");
        assert_eq!(out[3], Chunk::Delta("51".into()));
        match &out[4] {
            Chunk::End { usage, .. } => {
                assert_eq!(
                    (
                        usage.input_tokens,
                        usage.cache_write_input_tokens,
                        usage.cache_read_input_tokens,
                        usage.output_tokens
                    ),
                    (112, 100, 7, 9)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_message_with_thinking_and_cache_usage() {
        let c = completion(&json!({
            "content": [
                {"type": "thinking", "thinking": "t", "signature": "s"},
                {"type": "redacted_thinking", "data": "d"},
                {"type": "text", "text": "ok"},
            ],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "cache_read_input_tokens": 10, "output_tokens": 2},
        }));
        assert_eq!(c.thinking.len(), 2);
        assert_eq!(
            (
                c.thinking[0].signature.as_str(),
                c.thinking[1].data.as_str()
            ),
            ("s", "d")
        );
        assert_eq!(
            (c.usage.input_tokens, c.usage.cache_read_input_tokens),
            (11, 10)
        );
    }
}
