//! A fake Bedrock Runtime speaking the Converse API on the wire (parsed by the real
//! `aws-sdk-bedrockruntime` client):
//!
//! - `POST /model/{modelId}/converse` → Converse JSON,
//! - `POST /model/{modelId}/converse-stream` → `application/vnd.amazon.eventstream` frames
//!   (`messageStart`, `contentBlockDelta`…, `contentBlockStop`, `messageStop`, `metadata`),
//! - `POST /model/{modelId}/count-tokens` → `{"inputTokens": N}` ([`crate::fake::count_tokens`]),
//! - errors with the real status codes, `x-amzn-errortype` header and `{"message": …}` body.
//!
//! SigV4 is not checked (headers are recorded). See [`crate::fake::FakeServer`] for the shared
//! API (behaviors, call counts, control endpoint).

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use aws_smithy_types::event_stream::{Header, HeaderValue as FrameValue, Message};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::behavior::{Action, ErrorKind};
use crate::fake::{
    Completion, FakeServer, Kind, Plan, Shared, ToolUse, collect_text, fake_embedding, word_count,
};

/// Content type of Bedrock event streams.
pub const EVENT_STREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// A fake Bedrock Runtime endpoint. Derefs to [`FakeServer`] for behaviors, counters and
/// requests.
#[derive(Debug)]
pub struct FakeBedrock {
    server: FakeServer,
}

impl FakeBedrock {
    /// Starts a fake on `127.0.0.1:0` in the current tokio runtime.
    pub async fn start() -> anyhow::Result<FakeBedrock> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a fake on `listen`.
    pub async fn start_on(listen: SocketAddr) -> anyhow::Result<FakeBedrock> {
        let server = FakeServer::start(Kind::Bedrock, listen, routes()).await?;
        Ok(FakeBedrock { server })
    }

    /// The endpoint URL for the SDK's `endpoint_url`: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.base_url()
    }
}

impl Deref for FakeBedrock {
    type Target = FakeServer;

    fn deref(&self) -> &FakeServer {
        &self.server
    }
}

fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/model/{model_id}/converse", post(converse))
        .route("/model/{model_id}/converse-stream", post(converse_stream))
        .route("/model/{model_id}/invoke", post(invoke))
        .route("/model/{model_id}/count-tokens", post(count_tokens))
}

/// `POST /model/{modelId}/count-tokens` with `{"input": {"converse": {messages, system,
/// toolConfig, …}}}` → `{"inputTokens": N}` with N from [`crate::fake::count_tokens`]
/// (`toolConfig.tools` are the tools); `invokeModel` input: the words of its decoded body.
/// Recorded like every call (by its path), behaviors apply.
async fn count_tokens(
    State(st): State<Arc<Shared>>,
    Path(model): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let plan = st.begin_call(
        uri.path().to_string(),
        &model,
        &headers,
        parsed.clone().unwrap_or(Value::Null),
    );
    let Some(input) = parsed.as_ref().and_then(|v| v.get("input")) else {
        return malformed(&plan);
    };
    if let Some(resp) = pre_answer(&plan, &model, false, &headers).await {
        return resp;
    }
    let n = if let Some(c) = input.get("converse") {
        if c["messages"].as_array().is_none_or(Vec::is_empty) {
            return error_response(
                ErrorKind::Validation,
                None,
                "messages: at least one message is required",
                &plan.request_id,
            );
        }
        crate::fake::count_tokens(&c["system"], &c["messages"], &c["toolConfig"]["tools"])
    } else if let Some(b) = input.pointer("/invokeModel/body").and_then(Value::as_str) {
        let raw = aws_smithy_types::base64::decode(b).unwrap_or_default();
        word_count(&String::from_utf8_lossy(&raw)).max(1)
    } else {
        return error_response(
            ErrorKind::Validation,
            None,
            "input: exactly one of converse, invokeModel is required",
            &plan.request_id,
        );
    };
    let mut resp = axum::Json(json!({ "inputTokens": n })).into_response();
    if let Ok(v) = HeaderValue::from_str(&plan.request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

/// A parsed Converse request.
struct Request {
    last_user: String,
    input_text: String,
    max_tokens: Option<u64>,
    /// The request carried a `guardrailConfig`.
    guardrail: bool,
    /// The tool called: `toolConfig.toolChoice` `any` → the first tool, `tool` → that one
    /// (both forced: with its input schema); otherwise (`auto`) the first tool when the last
    /// message is a user turn without tool results.
    call_tool: Option<String>,
    forced_schema: Option<Value>,
    /// A reasoning block comes first (`additionalModelRequestFields.thinking` `enabled` /
    /// `adaptive`, `reasoningConfig.type` `enabled`, `reasoning_effort`); `redacted`: Nova's
    /// `[REDACTED]` text without a signature.
    reasoning: Option<bool>,
    /// `outputConfig.textFormat` json schema: the answer is [`crate::fake::schema_sample`] of it.
    output_schema: Option<Value>,
    /// `additionalModelResponseFieldPaths` → `additionalModelResponseFields` (each `/x` as
    /// `"x": null`).
    response_fields: Option<Value>,
    /// The request up to its last `cachePoint` (system, messages, tools): JSON key and text.
    cached: (String, String),
}

/// The message Bedrock returns when a guardrail blocks an answer (the guardrail's configured
/// "blocked output" text).
pub const GUARDRAIL_BLOCKED_TEXT: &str = "Sorry, the model cannot answer this question.";

/// Like a real guardrail configured to deny the topic: a request that carries a
/// `guardrailConfig` and whose last user message contains "forbidden" is blocked.
fn apply_guardrail(mut c: Completion, req: &Request) -> Completion {
    if req.guardrail && req.last_user.to_lowercase().contains("forbidden") {
        c.text = GUARDRAIL_BLOCKED_TEXT.to_owned();
        c.chunks = vec![GUARDRAIL_BLOCKED_TEXT.to_owned()];
        c.truncated = false;
        c.output_tokens = 0;
        c.guardrail_intervened = true;
    }
    c
}

fn parse_request(body: &Value) -> Request {
    let mut input_text = String::new();
    if let Some(system) = body.get("system") {
        collect_text(system, &mut input_text);
    }
    let mut last_user = String::new();
    let mut tool_results = false;
    let mut last_is_user = false;
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for m in messages {
            collect_text(m.get("content").unwrap_or(&Value::Null), &mut input_text);
            if m.get("role").and_then(Value::as_str) == Some("user") {
                last_user.clear();
                tool_results = false;
                for block in m
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = block.get("text").and_then(Value::as_str) {
                        last_user.push_str(t);
                        last_user.push(' ');
                    }
                    // A tool result is echoed like a user message.
                    if let Some(r) = block.get("toolResult") {
                        tool_results = true;
                        collect_text(r.get("content").unwrap_or(&Value::Null), &mut last_user);
                    }
                }
            }
            last_is_user = m.get("role").and_then(Value::as_str) == Some("user");
        }
    }
    let tool_names: Vec<&str> = body
        .pointer("/toolConfig/tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.pointer("/toolSpec/name").and_then(Value::as_str))
        .collect();
    let choice = body.pointer("/toolConfig/toolChoice");
    let call_tool = if choice.is_some_and(|c| c.get("any").is_some()) {
        tool_names.first().map(|n| (*n).to_owned())
    } else if let Some(name) = choice
        .and_then(|c| c.pointer("/tool/name"))
        .and_then(Value::as_str)
    {
        Some(name.to_owned())
    } else {
        tool_names
            .first()
            .filter(|_| last_is_user && !tool_results)
            .map(|n| (*n).to_owned())
    };
    let forced_schema = choice
        .filter(|c| c.get("any").is_some() || c.get("tool").is_some())
        .and_then(|_| {
            let name = call_tool.as_deref()?;
            body.pointer("/toolConfig/tools")?
                .as_array()?
                .iter()
                .find(|t| t.pointer("/toolSpec/name").and_then(Value::as_str) == Some(name))
                .and_then(|t| t.pointer("/toolSpec/inputSchema/json").cloned())
        });
    let max_tokens = body
        .get("inferenceConfig")
        .and_then(|c| c.get("maxTokens"))
        .and_then(Value::as_u64);
    let extra = body.get("additionalModelRequestFields");
    let reasoning = extra.and_then(|x| {
        if matches!(
            x.pointer("/thinking/type").and_then(Value::as_str),
            Some("enabled" | "adaptive")
        ) || x.get("reasoning_effort").is_some()
        {
            Some(false)
        } else if x.pointer("/reasoningConfig/type").and_then(Value::as_str) == Some("enabled") {
            Some(true)
        } else {
            None
        }
    });
    let output_schema = body
        .pointer("/outputConfig/textFormat/structure/jsonSchema/schema")
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok());
    let response_fields = body
        .get("additionalModelResponseFieldPaths")
        .and_then(Value::as_array)
        .map(|paths| {
            Value::Object(
                paths
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|p| (p.trim_start_matches('/').to_owned(), Value::Null))
                    .collect(),
            )
        });
    Request {
        last_user,
        input_text,
        max_tokens,
        guardrail: body.get("guardrailConfig").is_some(),
        call_tool,
        forced_schema,
        reasoning,
        output_schema,
        response_fields,
        cached: cached_prefix(body),
    }
}

/// The request up to its last `cachePoint` block (system, then messages, then tools): its JSON
/// (the cache key) and its text.
fn cached_prefix(body: &Value) -> (String, String) {
    let mut blocks: Vec<&Value> = Vec::new();
    blocks.extend(body["system"].as_array().into_iter().flatten());
    for m in body["messages"].as_array().into_iter().flatten() {
        blocks.extend(m["content"].as_array().into_iter().flatten());
    }
    blocks.extend(
        body.pointer("/toolConfig/tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten(),
    );
    let Some(last) = blocks.iter().rposition(|b| b.get("cachePoint").is_some()) else {
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

/// What Converse refuses before answering (`ValidationException`): a conversation that does not
/// start with the user or does not alternate roles; `toolUse` / `toolResult` blocks without
/// `toolConfig`; a `toolChoice` naming a tool not offered; a `thinking` budget below 1024 or not
/// below `maxTokens`; thinking with a forced tool; a `reasoningText` in the history without its
/// `signature`.
fn refuse(body: &Value) -> Option<String> {
    let messages = body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, m) in messages.iter().enumerate() {
        let want = if i % 2 == 0 { "user" } else { "assistant" };
        if m["role"].as_str() != Some(want) {
            return Some(if i == 0 {
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.".into()
            } else {
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into()
            });
        }
        for b in m["content"].as_array().into_iter().flatten() {
            if (b.get("toolUse").is_some() || b.get("toolResult").is_some())
                && body.get("toolConfig").is_none()
            {
                return Some("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
            }
            if let Some(r) = b.pointer("/reasoningContent/reasoningText")
                && r["signature"].as_str().is_none_or(str::is_empty)
            {
                return Some(format!(
                    "messages.{i}: reasoningText blocks must carry the signature the model gave them"
                ));
            }
        }
    }
    let choice = body.pointer("/toolConfig/toolChoice");
    if let Some(name) = choice
        .and_then(|c| c.pointer("/tool/name"))
        .and_then(Value::as_str)
    {
        let offered = body
            .pointer("/toolConfig/tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|t| t.pointer("/toolSpec/name").and_then(Value::as_str) == Some(name));
        if !offered {
            return Some(format!(
                "The tool {name} in toolChoice is not one of the tools in toolConfig."
            ));
        }
    }
    let thinking = body.pointer("/additionalModelRequestFields/thinking");
    if let Some(t) = thinking
        && t["type"] == "enabled"
    {
        let budget = t["budget_tokens"].as_u64().unwrap_or(0);
        if budget < 1024 {
            return Some(
                "thinking.budget_tokens: Input should be greater than or equal to 1024".into(),
            );
        }
        let max = body
            .pointer("/inferenceConfig/maxTokens")
            .and_then(Value::as_u64);
        if max.is_some_and(|m| budget >= m) {
            return Some("The maximum tokens you requested exceeds the model limit: max_tokens must be greater than thinking.budget_tokens".into());
        }
    }
    let forced = choice.is_some_and(|c| c.get("any").is_some() || c.get("tool").is_some());
    if forced && thinking.is_some_and(|t| t["type"] == "enabled" || t["type"] == "adaptive") {
        return Some("Thinking may not be enabled when tool_choice forces tool use.".into());
    }
    None
}

/// Records the call and parses the body (`None`: not a JSON object; `Some(Err)`: a request
/// Converse refuses, with its message).
fn begin(
    st: &Shared,
    model: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> (Plan, Option<Result<Request, String>>) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let plan = st.begin_call(
        uri.path().to_string(),
        model,
        headers,
        parsed.clone().unwrap_or(Value::Null),
    );
    let req = parsed.filter(Value::is_object).map(|v| match refuse(&v) {
        Some(message) => Err(message),
        None => Ok(parse_request(&v)),
    });
    (plan, req)
}

fn malformed(plan: &Plan) -> Response {
    error_response(
        ErrorKind::Validation,
        None,
        "fake bedrock: request body is not a JSON object",
        &plan.request_id,
    )
}

/// A Bedrock error response: real status, `x-amzn-errortype`, `{"message": …}`.
pub fn error_response(
    kind: ErrorKind,
    retry_after: Option<u64>,
    message: &str,
    request_id: &str,
) -> Response {
    coded_error(
        kind.bedrock_status(),
        kind.bedrock_name(),
        retry_after,
        message,
        request_id,
    )
}

/// A Bedrock error response with any error `code` (e.g. `UnrecognizedClientException`, which
/// has no [`ErrorKind`]).
pub fn coded_error(
    status: u16,
    code: &str,
    retry_after: Option<u64>,
    message: &str,
    request_id: &str,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(json!({ "message": message }))).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    )) {
        h.insert("x-amzn-errortype", v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(secs) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn fail_message(kind: ErrorKind, plan: &Plan, model: &str) -> String {
    format!(
        "fake bedrock {}: {} for model {model}",
        plan.label,
        kind.bedrock_name()
    )
}

/// Applies the failing / waiting part of a plan; `Some` is the response to send instead.
async fn pre_answer(
    plan: &Plan,
    model: &str,
    streaming: bool,
    headers: &HeaderMap,
) -> Option<Response> {
    match plan.action {
        Action::AccountFault(fault) => {
            let (status, code, message) = fault.bedrock();
            Some(coded_error(status, code, None, message, &plan.request_id))
        }
        Action::EchoAuth => {
            let auth = headers
                .get(header::AUTHORIZATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            Some(coded_error(
                400,
                "ValidationException",
                None,
                &format!("Invalid header: Authorization: {auth}"),
                &plan.request_id,
            ))
        }
        Action::Ok => None,
        Action::Fail { kind, retry_after } => Some(error_response(
            kind,
            retry_after,
            &fail_message(kind, plan, model),
            &plan.request_id,
        )),
        Action::Slow(d) => {
            tokio::time::sleep(d).await;
            None
        }
        Action::StreamFailAfter(_) if !streaming => Some(error_response(
            ErrorKind::InternalServer,
            None,
            &fail_message(ErrorKind::InternalServer, plan, model),
            &plan.request_id,
        )),
        Action::StreamFailAfter(_) => None,
        Action::Hang => std::future::pending().await,
    }
}

async fn converse(
    State(st): State<Arc<Shared>>,
    Path(model): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (plan, req) = begin(&st, &model, &uri, &headers, &body);
    let Some(req) = req else {
        return malformed(&plan);
    };
    if let Some(resp) = pre_answer(&plan, &model, false, &headers).await {
        return resp;
    }
    let req = match req {
        Ok(r) => r,
        Err(message) => {
            return error_response(ErrorKind::Validation, None, &message, &plan.request_id);
        }
    };
    let c = completion(&plan, &model, &req);
    let tool = tool_use(&req, &plan);
    let mut content = Vec::new();
    if let Some(r) = reasoning_block(&req) {
        content.push(json!({"reasoningContent": r}));
    }
    let stop = match &tool {
        Some(t) => {
            content
                .push(json!({"toolUse": {"toolUseId": t.id, "name": t.name, "input": t.input()}}));
            "tool_use"
        }
        None => {
            content.push(json!({"text": c.text}));
            stop_reason(&c)
        }
    };
    let mut body = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": usage_of(&st, &req, &c),
        "metrics": {"latencyMs": 1},
    });
    if let Some(f) = &req.response_fields {
        body["additionalModelResponseFields"] = f.clone();
    }
    let mut resp = axum::Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&plan.request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

/// The text answer of a request: the fakes' sentence, or the schema's sample for
/// `outputConfig.textFormat`, then the guardrail.
fn completion(plan: &Plan, model: &str, req: &Request) -> Completion {
    let mut c = Completion::new(
        &plan.label,
        model,
        &req.last_user,
        &req.input_text,
        req.max_tokens,
    );
    if let Some(schema) = &req.output_schema {
        let json = crate::fake::schema_sample(schema).to_string();
        c.chunks = vec![json.clone()];
        c.text = json;
        c.truncated = false;
    }
    apply_guardrail(c, req)
}

/// The `reasoningContent` of an answer that reasons: `reasoningText` with the fakes' thinking
/// text and signature (Nova's: `[REDACTED]`, no signature).
fn reasoning_block(req: &Request) -> Option<Value> {
    let redacted = req.reasoning?;
    Some(if redacted {
        json!({"reasoningText": {"text": "[REDACTED]"}})
    } else {
        let t = crate::fake::thinking_text(&req.last_user);
        json!({"reasoningText": {"text": t, "signature": crate::fake::thinking_signature(&t)}})
    })
}

/// Converse usage with the cache's read / write tokens (`inputTokens` without them) and the
/// reasoning words counted as output.
fn usage_of(st: &Shared, req: &Request, c: &Completion) -> Value {
    let (key, text) = &req.cached;
    let (read, write) = st.cache_usage(key, word_count(text).min(c.input_tokens));
    let reasoning = reasoning_block(req)
        .and_then(|r| {
            r.pointer("/reasoningText/text")
                .and_then(Value::as_str)
                .map(word_count)
        })
        .unwrap_or(0);
    let input = c.input_tokens.saturating_sub(read + write).max(1);
    let output = c.output_tokens + reasoning;
    let mut u = json!({
        "inputTokens": input,
        "outputTokens": output,
        "totalTokens": input + output + read + write,
    });
    if read + write > 0 {
        u["cacheReadInputTokens"] = json!(read);
        u["cacheWriteInputTokens"] = json!(write);
    }
    u
}

fn tool_use(req: &Request, plan: &Plan) -> Option<ToolUse> {
    req.call_tool
        .as_deref()
        .map(|name| match &req.forced_schema {
            Some(schema) => {
                ToolUse::forced("tooluse_", &plan.request_id, name, &req.last_user, schema)
            }
            None => ToolUse::new("tooluse_", &plan.request_id, name, &req.last_user),
        })
}

/// `InvokeModel` for the embedding models: Titan text embeddings (`amazon.titan-embed-*`,
/// `{"inputText", "dimensions"?}` → `{"embedding", "inputTextTokenCount"}`, 1024 values by
/// default) and Cohere Embed (`cohere.embed-*`, `{"texts", "input_type"}` → `{"id",
/// "embeddings", "texts", "response_type": "embeddings_floats"}`, 1024 values). Other models: a
/// `ValidationException`.
async fn invoke(
    State(st): State<Arc<Shared>>,
    Path(model): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let plan = st.begin_call(
        uri.path().to_string(),
        &model,
        &headers,
        parsed.clone().unwrap_or(Value::Null),
    );
    let Some(req) = parsed.filter(Value::is_object) else {
        return malformed(&plan);
    };
    if let Some(resp) = pre_answer(&plan, &model, false, &headers).await {
        return resp;
    }
    let invalid = |msg: &str| error_response(ErrorKind::Validation, None, msg, &plan.request_id);
    let body = if model.starts_with("amazon.titan-embed") {
        let Some(text) = req["inputText"].as_str() else {
            return invalid("Malformed input request: required key [inputText] not found");
        };
        let dims = req["dimensions"].as_u64().unwrap_or(1024) as usize;
        json!({"embedding": fake_embedding(text, dims), "inputTextTokenCount": word_count(text)})
    } else if model.starts_with("cohere.embed") {
        let Some(texts) = req["texts"].as_array() else {
            return invalid("Malformed input request: required key [texts] not found");
        };
        if req["input_type"].as_str().is_none() {
            return invalid("Malformed input request: required key [input_type] not found");
        }
        let texts: Vec<&str> = texts.iter().filter_map(Value::as_str).collect();
        let embeddings: Vec<Vec<f32>> = texts.iter().map(|t| fake_embedding(t, 1024)).collect();
        json!({"id": plan.request_id, "embeddings": embeddings, "texts": texts,
            "response_type": "embeddings_floats"})
    } else {
        return invalid("The provided model identifier is invalid.");
    };
    let mut resp = axum::Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&plan.request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

fn stop_reason(c: &Completion) -> &'static str {
    if c.guardrail_intervened {
        "guardrail_intervened"
    } else if c.truncated {
        "max_tokens"
    } else {
        "end_turn"
    }
}

/// One event-stream frame, encoded.
pub fn encode_frame(headers: Vec<Header>, payload: &Value) -> anyhow::Result<Bytes> {
    let message = Message::new_from_parts(headers, Bytes::from(payload.to_string()));
    let mut buf = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut buf)
        .map_err(|e| anyhow::anyhow!("encoding event-stream frame: {e}"))?;
    Ok(Bytes::from(buf))
}

/// An `:message-type=event` frame of type `event_type` with a JSON payload.
pub fn event_frame(event_type: &'static str, payload: &Value) -> anyhow::Result<Bytes> {
    encode_frame(
        vec![
            Header::new(":message-type", FrameValue::String("event".into())),
            Header::new(":event-type", FrameValue::String(event_type.into())),
            Header::new(
                ":content-type",
                FrameValue::String("application/json".into()),
            ),
        ],
        payload,
    )
}

/// An `:message-type=exception` frame (e.g. `modelStreamErrorException`) with `{"message": …}`.
pub fn exception_frame(exception_type: &'static str, message: &str) -> anyhow::Result<Bytes> {
    encode_frame(
        vec![
            Header::new(":message-type", FrameValue::String("exception".into())),
            Header::new(":exception-type", FrameValue::String(exception_type.into())),
            Header::new(
                ":content-type",
                FrameValue::String("application/json".into()),
            ),
        ],
        &json!({ "message": message }),
    )
}

type Frame = Result<Bytes, std::io::Error>;

async fn converse_stream(
    State(st): State<Arc<Shared>>,
    Path(model): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (plan, req) = begin(&st, &model, &uri, &headers, &body);
    let Some(req) = req else {
        return malformed(&plan);
    };
    if let Some(resp) = pre_answer(&plan, &model, true, &headers).await {
        return resp;
    }
    let req = match req {
        Ok(r) => r,
        Err(message) => {
            return error_response(ErrorKind::Validation, None, &message, &plan.request_id);
        }
    };
    let c = completion(&plan, &model, &req);
    let end = StreamEnd {
        usage: usage_of(&st, &req, &c),
        reasoning: reasoning_block(&req),
        response_fields: req.response_fields.clone(),
    };
    let fail_after = match plan.action {
        Action::StreamFailAfter(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => None,
    };
    let (tx, rx) = mpsc::channel::<Frame>(16);
    let delay = plan.chunk_delay;
    let label = plan.label.clone();
    let tool = tool_use(&req, &plan);
    tokio::spawn(async move {
        // Ends early (returns Err) when the client goes away and the channel closes.
        let _ = match tool {
            Some(t) => write_tool_stream(&tx, &end, &t).await,
            None => write_stream(&tx, &c, &end, fail_after, delay, &label, &model).await,
        };
    });
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(EVENT_STREAM_CONTENT_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(&plan.request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

/// A streamed tool call: `contentBlockStart` with the `toolUse` id and name, the input JSON in
/// pieces, `messageStop` `tool_use`.
async fn write_tool_stream(
    tx: &mpsc::Sender<Frame>,
    end: &StreamEnd,
    t: &ToolUse,
) -> anyhow::Result<()> {
    let send = |frame: anyhow::Result<Bytes>| async move {
        let frame = frame.map_err(|e| std::io::Error::other(e.to_string()));
        tx.send(frame).await.map_err(|_| anyhow::anyhow!("closed"))
    };
    send(event_frame("messageStart", &json!({"role": "assistant"}))).await?;
    let index = write_reasoning(tx, end).await?;
    send(event_frame(
        "contentBlockStart",
        &json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": t.id, "name": t.name}}}),
    ))
    .await?;
    for piece in t.pieces() {
        send(event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}),
        ))
        .await?;
    }
    send(event_frame(
        "contentBlockStop",
        &json!({"contentBlockIndex": index}),
    ))
    .await?;
    send(event_frame("messageStop", &end.stop("tool_use"))).await?;
    send(event_frame(
        "metadata",
        &json!({"usage": end.usage, "metrics": {"latencyMs": 1}}),
    ))
    .await?;
    Ok(())
}

/// What a stream ends with, and the reasoning block it starts with.
struct StreamEnd {
    usage: Value,
    reasoning: Option<Value>,
    response_fields: Option<Value>,
}

impl StreamEnd {
    /// The `messageStop` payload.
    fn stop(&self, reason: &str) -> Value {
        let mut v = json!({ "stopReason": reason });
        if let Some(f) = &self.response_fields {
            v["additionalModelResponseFields"] = f.clone();
        }
        v
    }
}

/// The reasoning block (block 0) when the answer reasons: its text in word pieces, then its
/// signature. Returns the index of the next block.
async fn write_reasoning(tx: &mpsc::Sender<Frame>, end: &StreamEnd) -> anyhow::Result<i32> {
    let Some(r) = &end.reasoning else {
        return Ok(0);
    };
    let send = |frame: anyhow::Result<Bytes>| async move {
        let frame = frame.map_err(|e| std::io::Error::other(e.to_string()));
        tx.send(frame).await.map_err(|_| anyhow::anyhow!("closed"))
    };
    let text = r
        .pointer("/reasoningText/text")
        .and_then(Value::as_str)
        .unwrap_or("");
    for w in text.split_inclusive(' ') {
        send(event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": w}}}),
        ))
        .await?;
    }
    if let Some(sig) = r
        .pointer("/reasoningText/signature")
        .and_then(Value::as_str)
    {
        send(event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": sig}}}),
        ))
        .await?;
    }
    send(event_frame(
        "contentBlockStop",
        &json!({"contentBlockIndex": 0}),
    ))
    .await?;
    Ok(1)
}

async fn write_stream(
    tx: &mpsc::Sender<Frame>,
    c: &Completion,
    end: &StreamEnd,
    fail_after: Option<usize>,
    delay: std::time::Duration,
    label: &str,
    model: &str,
) -> anyhow::Result<()> {
    let send = |frame: anyhow::Result<Bytes>| async move {
        let frame = frame.map_err(|e| std::io::Error::other(e.to_string()));
        tx.send(frame).await.map_err(|_| anyhow::anyhow!("closed"))
    };
    send(event_frame("messageStart", &json!({"role": "assistant"}))).await?;
    let index = write_reasoning(tx, end).await?;
    for (i, chunk) in c.chunks.iter().enumerate() {
        if fail_after == Some(i) {
            break;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        send(event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": index, "delta": {"text": chunk}}),
        ))
        .await?;
    }
    if fail_after.is_some() {
        let message = format!("fake bedrock {label}: stream failed mid-way for model {model}");
        send(exception_frame("modelStreamErrorException", &message)).await?;
        return Ok(());
    }
    send(event_frame(
        "contentBlockStop",
        &json!({"contentBlockIndex": index}),
    ))
    .await?;
    send(event_frame("messageStop", &end.stop(stop_reason(c)))).await?;
    send(event_frame(
        "metadata",
        &json!({"usage": end.usage, "metrics": {"latencyMs": 1}}),
    ))
    .await?;
    Ok(())
}
