//! A fake Anthropic Messages API:
//!
//! - `POST /v1/messages` → a `message` JSON, or with `"stream": true` SSE events
//!   (`message_start`, `ping`, `content_block_start`, `content_block_delta` with `text_delta` /
//!   `input_json_delta`, `content_block_stop`, `message_delta`, `message_stop`),
//! - `POST /v1/messages/count_tokens` → `{"input_tokens": N}` ([`crate::fake::count_tokens`]),
//! - errors as `{"type":"error","error":{"type","message"}}` with Anthropic's statuses:
//!   `Throttling` 429 `rate_limit_error` (with `retry-after`), `ModelNotReady` 529
//!   `overloaded_error`, `ServiceUnavailable` 503 / `InternalServer` 500 `api_error`,
//!   `Validation` 400 `invalid_request_error`, `AccessDenied` 401 `authentication_error`,
//!   `ModelTimeout` 504 `timeout_error`,
//! - `x-api-key` and `anthropic-version` are required (401 / 400 without them),
//! - account faults as Anthropic answers them ([`crate::behavior::AccountFault::anthropic`]),
//! - a mid-stream failure sends an `error` event (`overloaded_error`) and closes the stream.
//!
//! Tool use follows [`crate::fake::ToolUse`]. See [`crate::fake::FakeServer`] for the shared API.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::behavior::{Action, ErrorKind};
use crate::fake::{Completion, FakeServer, Kind, Shared, ToolUse, collect_text};

/// A fake Anthropic endpoint. Derefs to [`FakeServer`] for behaviors, counters and requests.
#[derive(Debug)]
pub struct FakeAnthropic {
    server: FakeServer,
}

impl FakeAnthropic {
    /// Starts a fake on `127.0.0.1:0` in the current tokio runtime.
    pub async fn start() -> anyhow::Result<FakeAnthropic> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a fake on `listen`.
    pub async fn start_on(listen: SocketAddr) -> anyhow::Result<FakeAnthropic> {
        let server = FakeServer::start(Kind::Anthropic, listen, routes()).await?;
        Ok(FakeAnthropic { server })
    }

    /// The base URL including `/v1`: `http://127.0.0.1:PORT/v1`.
    pub fn url(&self) -> String {
        format!("{}/v1", self.server.base_url())
    }
}

impl Deref for FakeAnthropic {
    type Target = FakeServer;

    fn deref(&self) -> &FakeServer {
        &self.server
    }
}

fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
}

/// The fields `count_tokens` takes; any other is refused ("Extra inputs are not permitted"),
/// `max_tokens` and `stream` included, as the API does.
pub const COUNT_TOKENS_FIELDS: [&str; 9] = [
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "mcp_servers",
    "context_management",
];

/// `POST /v1/messages/count_tokens` → `{"input_tokens": N}` with N from
/// [`crate::fake::count_tokens`]; recorded like every call (by its path), behaviors apply.
async fn count_tokens(
    State(st): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let model = parsed
        .as_ref()
        .and_then(|v| v["model"].as_str())
        .unwrap_or("")
        .to_string();
    let plan = st.begin_call(
        uri.path().to_string(),
        &model,
        &headers,
        parsed.clone().unwrap_or(Value::Null),
    );
    if headers.get("x-api-key").is_none() {
        return error_response(
            ErrorKind::AccessDenied,
            None,
            "x-api-key header is required",
        );
    }
    let Some(req) = parsed.filter(Value::is_object) else {
        return error_response(ErrorKind::Validation, None, "request body is not JSON");
    };
    if let Some(k) = req.as_object().and_then(|o| {
        o.keys()
            .find(|k| !COUNT_TOKENS_FIELDS.contains(&k.as_str()))
    }) {
        let msg = format!("{k}: Extra inputs are not permitted");
        return error_response(ErrorKind::Validation, None, &msg);
    }
    if model.is_empty() || req["messages"].as_array().is_none_or(Vec::is_empty) {
        return error_response(ErrorKind::Validation, None, "messages: Field required");
    }
    match plan.action {
        Action::Ok | Action::StreamFailAfter(_) | Action::EchoAuth => {}
        Action::Fail { kind, retry_after } => {
            let msg = format!("fake anthropic {}: {kind} for model {model}", plan.label);
            return error_response(kind, retry_after, &msg);
        }
        Action::AccountFault(fault) => {
            let (status, ty, message) = fault.anthropic();
            return typed_error(status, ty, message);
        }
        Action::Slow(d) => tokio::time::sleep(d).await,
        Action::Hang => std::future::pending().await,
    }
    let n = crate::fake::count_tokens(&req["system"], &req["messages"], &req["tools"]);
    axum::Json(json!({ "input_tokens": n })).into_response()
}

/// Status and error type of an Anthropic error.
pub fn status_and_type(kind: ErrorKind) -> (u16, &'static str) {
    match kind {
        ErrorKind::Throttling => (429, "rate_limit_error"),
        ErrorKind::ModelNotReady => (529, "overloaded_error"),
        ErrorKind::ServiceUnavailable => (503, "api_error"),
        ErrorKind::InternalServer => (500, "api_error"),
        ErrorKind::Validation => (400, "invalid_request_error"),
        ErrorKind::AccessDenied => (401, "authentication_error"),
        ErrorKind::ModelTimeout => (504, "timeout_error"),
    }
}

/// An Anthropic error response; 429 and 529 carry `retry-after` (`retry_after`, default 1).
pub fn error_response(kind: ErrorKind, retry_after: Option<u64>, message: &str) -> Response {
    let (status, ty) = status_and_type(kind);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"type": "error", "error": {"type": ty, "message": message}});
    let mut resp = (status, axum::Json(body)).into_response();
    let retry_after = match (retry_after, status.as_u16()) {
        (Some(s), _) => Some(s),
        (None, 429 | 529) => Some(1),
        _ => None,
    };
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// An Anthropic error response with any status and `error.type`.
pub fn typed_error(status: u16, ty: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"type": "error", "error": {"type": ty, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// Top-level fields of other APIs (OpenAI chat) that the Messages API does not have: refused
/// ("Extra inputs are not permitted"), as the API does. Fields the fake does not know are
/// accepted and recorded (a newer API version may have them).
pub const FOREIGN_FIELDS: [&str; 12] = [
    "n",
    "seed",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "response_format",
    "reasoning_effort",
    "max_completion_tokens",
    "parallel_tool_calls",
    "stream_options",
];

/// What Anthropic refuses before answering (400 `invalid_request_error`): other APIs' top-level
/// fields ([`FOREIGN_FIELDS`]), a `thinking` budget below 1024 or not below `max_tokens`, thinking with a forced
/// tool (`tool_choice` `any` / `tool`), a `tool` choice naming no offered tool, `thinking`
/// blocks in the history without a `signature`, more than 4 `cache_control` breakpoints.
fn refuse(req: &Value, max_tokens: u64) -> Option<Response> {
    let bad = |m: String| Some(error_response(ErrorKind::Validation, None, &m));
    if let Some(o) = req.as_object()
        && let Some(k) = o.keys().find(|k| FOREIGN_FIELDS.contains(&k.as_str()))
    {
        return bad(format!("{k}: Extra inputs are not permitted"));
    }
    let thinking = req["thinking"]["type"].as_str();
    match thinking {
        None | Some("disabled" | "adaptive") => {}
        Some("enabled") => {
            let budget = req["thinking"]["budget_tokens"].as_u64().unwrap_or(0);
            if budget < 1024 {
                return bad(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                        .into(),
                );
            }
            if budget >= max_tokens {
                return bad("`max_tokens` must be greater than `thinking.budget_tokens`".into());
            }
        }
        Some(other) => {
            return bad(format!(
                "thinking.type: Input tag '{other}' found using 'type' does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'"
            ));
        }
    }
    let choice = req["tool_choice"]["type"].as_str();
    if matches!(thinking, Some("enabled" | "adaptive")) && matches!(choice, Some("any" | "tool")) {
        return bad("Thinking may not be enabled when tool_choice forces tool use.".into());
    }
    if choice == Some("tool") {
        let name = req["tool_choice"]["name"].as_str().unwrap_or("");
        let offered = req["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["name"] == name);
        if !offered {
            return bad(format!(
                "tool_choice: Tool '{name}' not found in provided tools"
            ));
        }
    }
    for (i, m) in req["messages"].as_array().into_iter().flatten().enumerate() {
        for (j, b) in m["content"].as_array().into_iter().flatten().enumerate() {
            if b["type"] == "thinking" && b["signature"].as_str().is_none_or(str::is_empty) {
                return bad(format!(
                    "messages.{i}.content.{j}.thinking.signature: Field required"
                ));
            }
        }
    }
    let breakpoints = count_key(req, "cache_control");
    if breakpoints > 4 {
        return bad(format!(
            "A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}."
        ));
    }
    None
}

/// How many objects under `v` carry `key`.
fn count_key(v: &Value, key: &str) -> usize {
    match v {
        Value::Object(o) => {
            usize::from(o.contains_key(key)) + o.values().map(|v| count_key(v, key)).sum::<usize>()
        }
        Value::Array(a) => a.iter().map(|v| count_key(v, key)).sum(),
        _ => 0,
    }
}

/// The request up to its last `cache_control` breakpoint (tools, then system, then messages),
/// the prefix the API would cache: its JSON (the cache key) and its text; empty without a
/// breakpoint.
fn cached_prefix(req: &Value) -> (String, String) {
    let mut blocks: Vec<&Value> = Vec::new();
    blocks.extend(req["tools"].as_array().into_iter().flatten());
    blocks.extend(req["system"].as_array().into_iter().flatten());
    for m in req["messages"].as_array().into_iter().flatten() {
        blocks.extend(m["content"].as_array().into_iter().flatten());
    }
    let Some(last) = blocks
        .iter()
        .rposition(|b| b.get("cache_control").is_some())
    else {
        return (String::new(), String::new());
    };
    let mut key = String::new();
    let mut text = String::new();
    for b in &blocks[..=last] {
        key.push_str(&b.to_string());
        collect_text(b, &mut text);
    }
    (key, text)
}

fn sse(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

async fn messages(
    State(st): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let model = parsed
        .as_ref()
        .and_then(|v| v["model"].as_str())
        .unwrap_or("")
        .to_string();
    let plan = st.begin_call(
        uri.path().to_string(),
        &model,
        &headers,
        parsed.clone().unwrap_or(Value::Null),
    );
    if headers.get("x-api-key").is_none() {
        return error_response(
            ErrorKind::AccessDenied,
            None,
            "x-api-key header is required",
        );
    }
    if headers.get("anthropic-version").is_none() {
        return error_response(
            ErrorKind::Validation,
            None,
            "anthropic-version: header is required",
        );
    }
    let Some(req) = parsed.filter(Value::is_object) else {
        return error_response(ErrorKind::Validation, None, "request body is not JSON");
    };
    let Some(max_tokens) = req["max_tokens"].as_u64() else {
        return error_response(ErrorKind::Validation, None, "max_tokens: Field required");
    };
    let Some(msgs) = req["messages"].as_array().filter(|m| !m.is_empty()) else {
        return error_response(ErrorKind::Validation, None, "messages: Field required");
    };
    // Roles must alternate, starting with the user.
    for (i, m) in msgs.iter().enumerate() {
        let want = if i % 2 == 0 { "user" } else { "assistant" };
        if m["role"].as_str() != Some(want) {
            return error_response(
                ErrorKind::Validation,
                None,
                &format!(
                    "messages.{i}.role: roles must alternate between \"user\" and \"assistant\""
                ),
            );
        }
    }
    if let Some(resp) = refuse(&req, max_tokens) {
        return resp;
    }
    let streaming = req["stream"].as_bool().unwrap_or(false);
    match plan.action {
        Action::Ok | Action::StreamFailAfter(_) => {}
        Action::Fail { kind, retry_after } => {
            let msg = format!("fake anthropic {}: {kind} for model {model}", plan.label);
            return error_response(kind, retry_after, &msg);
        }
        Action::AccountFault(fault) => {
            let (status, ty, message) = fault.anthropic();
            return typed_error(status, ty, message);
        }
        Action::EchoAuth => {
            let key = headers
                .get("x-api-key")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            return typed_error(
                400,
                "invalid_request_error",
                &format!("invalid header x-api-key: {key}"),
            );
        }
        Action::Slow(d) => tokio::time::sleep(d).await,
        Action::Hang => std::future::pending().await,
    }
    if let (Action::StreamFailAfter(_), false) = (plan.action, streaming) {
        return error_response(
            ErrorKind::InternalServer,
            None,
            "fake anthropic: internal error",
        );
    }

    let mut input_text = String::new();
    collect_text(&req["system"], &mut input_text);
    if let Some(s) = req["system"].as_str() {
        input_text.push_str(s);
    }
    let mut last_user = String::new();
    let mut tool_results = false;
    for m in msgs {
        let content = &m["content"];
        if let Some(s) = content.as_str() {
            input_text.push_str(s);
            input_text.push(' ');
        }
        collect_text(content, &mut input_text);
        if m["role"] == "user" {
            last_user.clear();
            tool_results = false;
            if let Some(s) = content.as_str() {
                last_user.push_str(s);
            }
            for b in content.as_array().into_iter().flatten() {
                match b["type"].as_str() {
                    Some("text") => {
                        last_user.push_str(b["text"].as_str().unwrap_or(""));
                        last_user.push(' ');
                    }
                    // A tool result is echoed like a user message.
                    Some("tool_result") => {
                        tool_results = true;
                        if let Some(s) = b["content"].as_str() {
                            last_user.push_str(s);
                        }
                        collect_text(&b["content"], &mut last_user);
                    }
                    _ => {}
                }
            }
        }
    }
    // Which tool is called: `tool_choice` as Anthropic honours it (`none`: never; `any`: the
    // first tool; `tool`: that one), else the fakes' rule (the first tool, unless answering
    // tool results).
    let tool_names: Vec<&str> = req["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let called = match req["tool_choice"]["type"].as_str() {
        Some("none") => None,
        Some("any") => tool_names.first().copied(),
        Some("tool") => tool_names
            .iter()
            .copied()
            .find(|n| Some(*n) == req["tool_choice"]["name"].as_str()),
        _ => tool_names.first().copied().filter(|_| !tool_results),
    };
    let forced = matches!(req["tool_choice"]["type"].as_str(), Some("any" | "tool"));
    let tool = called.map(|name| {
        if forced {
            let schema = req["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["name"] == name)
                .map(|t| t["input_schema"].clone())
                .unwrap_or(Value::Null);
            ToolUse::forced("toolu_", &plan.request_id, name, &last_user, &schema)
        } else {
            ToolUse::new("toolu_", &plan.request_id, name, &last_user)
        }
    });
    let mut c = Completion::new(
        &plan.label,
        &model,
        &last_user,
        &input_text,
        Some(max_tokens),
    );
    if let Some(schema) = req["output_config"]["format"]["schema"].as_object() {
        let json = crate::fake::schema_sample(&Value::Object(schema.clone())).to_string();
        c.chunks = vec![json.clone()];
        c.text = json;
        c.truncated = false;
    }
    // Thinking (`enabled` or `adaptive`) comes first, signed.
    let thinking = matches!(
        req["thinking"]["type"].as_str(),
        Some("enabled" | "adaptive")
    )
    .then(|| crate::fake::thinking_text(&last_user));
    let thinking_tokens = thinking.as_deref().map_or(0, crate::fake::word_count);
    let (key, prefix_text) = cached_prefix(&req);
    let (cache_read, cache_write) = st.cache_usage(
        &key,
        crate::fake::word_count(&prefix_text).min(c.input_tokens),
    );
    let id = format!("msg_{}", plan.request_id);
    let stop = match (&tool, c.truncated) {
        (Some(_), _) => "tool_use",
        (None, true) => "max_tokens",
        (None, false) => "end_turn",
    };
    let usage = json!({
        "input_tokens": c.input_tokens.saturating_sub(cache_read + cache_write).max(1),
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "output_tokens": c.output_tokens + thinking_tokens,
    });

    if !streaming {
        let mut content: Vec<Value> = Vec::new();
        if let Some(t) = &thinking {
            content.push(json!({"type": "thinking", "thinking": t,
                "signature": crate::fake::thinking_signature(t)}));
        }
        content.push(match &tool {
            Some(t) => json!({"type": "tool_use", "id": t.id, "name": t.name, "input": t.input()}),
            None => json!({"type": "text", "text": c.text}),
        });
        return axum::Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": null,
            "usage": usage,
        }))
        .into_response();
    }

    let mut start_usage = usage.clone();
    start_usage["output_tokens"] = json!(1);
    let mut events = vec![
        sse(
            "message_start",
            &json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
                "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": start_usage}}),
        ),
        sse("ping", &json!({"type": "ping"})),
    ];
    // The thinking block is block 0 when there is one; the answer's block follows it.
    let index = usize::from(thinking.is_some());
    if let Some(t) = &thinking {
        events.push(sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ));
        for w in t.split_inclusive(' ') {
            events.push(sse(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": w}}),
            ));
        }
        events.push(sse(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "signature_delta", "signature": crate::fake::thinking_signature(t)}}),
        ));
        events.push(sse(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ));
    }
    let mut body_events = Vec::new();
    match &tool {
        Some(t) => {
            body_events.push(sse(
                "content_block_start",
                &json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": t.id, "name": t.name, "input": {}}}),
            ));
            for p in t.pieces() {
                body_events.push(sse(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": p}}),
                ));
            }
        }
        None => {
            body_events.push(sse(
                "content_block_start",
                &json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "text", "text": ""}}),
            ));
            for chunk in &c.chunks {
                body_events.push(sse(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": chunk}}),
                ));
            }
        }
    }
    let fail_after = match plan.action {
        // The block start plus `n` deltas, then the error event.
        Action::StreamFailAfter(n) => {
            Some(usize::try_from(n).unwrap_or(usize::MAX).saturating_add(1))
        }
        _ => None,
    };
    match fail_after {
        Some(n) => {
            body_events.truncate(n);
            events.extend(body_events);
            events.push(sse(
                "error",
                &json!({"type": "error", "error": {"type": "overloaded_error",
                "message": format!("fake anthropic {}: overloaded mid-stream", plan.label)}}),
            ));
        }
        None => {
            events.extend(body_events);
            events.push(sse(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
            events.push(sse(
                "message_delta",
                &json!({"type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"output_tokens": c.output_tokens + thinking_tokens}}),
            ));
            events.push(sse("message_stop", &json!({"type": "message_stop"})));
        }
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let delay = plan.chunk_delay;
    tokio::spawn(async move {
        for ev in events {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
