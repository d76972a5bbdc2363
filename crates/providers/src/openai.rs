//! OpenAI-compatible chat completions (third-party APIs and on-prem vLLM / Ollama / TGI), JSON
//! and SSE streaming, over one pooled HTTP client.

use crate::error::{account_fault_of_status, parse_retry_after};
use crate::shape::{self, Think};
use crate::{
    Call, Chunk, ChunkStream, Completion, DenyReason, EmbedCall, Embeddings, Reason,
    StructuredOutputMode, Upstream, UpstreamError,
};
use base64::Engine as _;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;
use switchyard_proto::v1::{
    Choice, ContentPart, Message, Role, StopReason, StreamDelta, ThinkingPart, ToolCall, Usage,
    content_part::Part, response_format::Type as FormatType, tool_choice::Mode as ChoiceMode,
};

/// An API key. Never printed: `Debug` shows only that it is set.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> Self {
        Self(key)
    }

    /// The key itself, for the request header that carries it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

pub struct OpenAiUpstream {
    http: reqwest::Client,
    /// Region name → base URL including `/v1`.
    endpoints: HashMap<String, String>,
    /// Region name → `{base}/chat/completions` and `{base}/embeddings`, parsed once rather than
    /// on every call (`None` when the URL does not parse: the call reports it).
    parsed: HashMap<String, [Option<reqwest::Url>; 2]>,
    api_key: KeySource,
}

/// The paths [`OpenAiUpstream`] posts to, in the order of its parsed URLs.
const PATHS: [&str; 2] = ["chat/completions", "embeddings"];

/// `{base}/{path}`, whether `base` ends with a slash or not.
fn endpoint_url(base: &str, path: &str) -> String {
    format!("{}/{path}", base.trim_end_matches('/'))
}

/// Where the API key comes from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// No `Authorization` header (on-prem servers).
    None,
    /// Read once at start (environment variable or file).
    Static(ApiKey),
    /// Kept current by a refresher (Secrets Manager); `None` until the first load.
    Refreshed(std::sync::Arc<crate::secrets::KeyCell>),
}

impl KeySource {
    /// The key in force, to be scrubbed from any upstream text that is kept (never sent
    /// anywhere else).
    pub(crate) fn secrets(&self) -> Vec<String> {
        match self {
            KeySource::None => Vec::new(),
            KeySource::Static(key) => vec![key.0.clone()],
            KeySource::Refreshed(cell) => cell.get().map(|k| k.0).into_iter().collect(),
        }
    }

    /// Whether a key is at hand (a refreshed secret may not have loaded yet). Never the value.
    pub fn check(&self) -> Result<(), String> {
        match self {
            KeySource::Refreshed(cell) if cell.get().is_none() => {
                Err("API key secret not loaded".into())
            }
            _ => Ok(()),
        }
    }
}

impl OpenAiUpstream {
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
        let parsed = endpoints
            .iter()
            .map(|(region, base)| {
                let url = |path| reqwest::Url::parse(&endpoint_url(base, path)).ok();
                (region.clone(), PATHS.map(url))
            })
            .collect();
        Ok(Self {
            http,
            endpoints,
            parsed,
            api_key,
        })
    }

    fn body(call: &Call<'_>, stream: bool) -> Result<Value, UpstreamError> {
        let req = call.request;
        let mut messages = Vec::new();
        // `system`, or the text of `system_parts` when only those were given (cache points
        // have no OpenAI form and are left out).
        let system = if req.system.is_empty() {
            req.system_parts
                .iter()
                .filter_map(|p| match &p.part {
                    Some(Part::Text(t)) => Some(t.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            req.system.clone()
        };
        if !system.is_empty() {
            messages.push(json!({"role": "system", "content": system}));
        }
        for m in &req.messages {
            messages.extend(message_json(m));
        }
        let mut body = json!({"model": call.model, "messages": messages, "stream": stream});
        if !req.tools.is_empty() {
            let tools: Vec<Value> = req
                .tools
                .iter()
                .map(|t| {
                    let params: Value = serde_json::from_str(&t.parameters_json)
                        .unwrap_or_else(|_| json!({"type": "object"}));
                    let mut f = json!({"name": t.name, "parameters": params});
                    if !t.description.is_empty() {
                        f["description"] = json!(t.description);
                    }
                    if t.strict {
                        f["strict"] = json!(true);
                    }
                    json!({"type": "function", "function": f})
                })
                .collect();
            body["tools"] = Value::Array(tools);
            match shape::tool_choice(req) {
                (ChoiceMode::Auto, _) => {}
                (ChoiceMode::None, _) => body["tool_choice"] = json!("none"),
                (ChoiceMode::Any, _) => body["tool_choice"] = json!("required"),
                (ChoiceMode::Tool, name) => {
                    body["tool_choice"] = json!({"type": "function", "function": {"name": name}})
                }
            }
            if let Some(p) = req.parallel_tool_calls {
                body["parallel_tool_calls"] = json!(p);
            }
        } else if matches!(
            shape::tool_choice(req).0,
            ChoiceMode::Any | ChoiceMode::Tool
        ) {
            return Err(shape::invalid(
                "tool_choice: a tool must be called but none is offered".into(),
            ));
        }
        if let Some(f) = shape::json_format(req) {
            body["response_format"] = if f.r#type == FormatType::JsonObject as i32 {
                json!({"type": "json_object"})
            } else if call.options.structured_output == StructuredOutputMode::JsonObjectSchema {
                json!({"type": "json_object", "schema": shape::format_schema(f)?})
            } else {
                let mut js = json!({
                    "name": if f.name.is_empty() { "response" } else { f.name.as_str() },
                    "schema": shape::format_schema(f)?,
                });
                if !f.description.is_empty() {
                    js["description"] = json!(f.description);
                }
                if f.strict {
                    js["strict"] = json!(true);
                }
                json!({"type": "json_schema", "json_schema": js})
            };
        }
        if let Some(p) = &req.params {
            if let Some(v) = p.max_tokens {
                body[call.options.max_tokens_field.as_str()] = json!(v);
            }
            if let Some(v) = p.temperature {
                body["temperature"] = shape::num(v);
            }
            if let Some(v) = p.top_p {
                body["top_p"] = shape::num(v);
            }
            if !p.stop.is_empty() {
                body["stop"] = json!(p.stop);
            }
            // Not an OpenAI field: the extension vLLM, llama.cpp, TGI and Ollama's OpenAI API take.
            if let Some(v) = p.top_k {
                body["top_k"] = json!(v);
            }
            if let Some(v) = p.seed {
                body["seed"] = json!(v);
            }
            if let Some(v) = p.presence_penalty {
                body["presence_penalty"] = shape::num(v);
            }
            if let Some(v) = p.frequency_penalty {
                body["frequency_penalty"] = shape::num(v);
            }
            if !p.logit_bias.is_empty() {
                let bias: std::collections::BTreeMap<&String, &f32> = p.logit_bias.iter().collect();
                body["logit_bias"] = Value::Object(
                    bias.into_iter()
                        .map(|(k, v)| (k.clone(), shape::num(*v)))
                        .collect(),
                );
            }
            if p.logprobs || p.top_logprobs.is_some() {
                body["logprobs"] = json!(true);
            }
            if let Some(v) = p.top_logprobs {
                body["top_logprobs"] = json!(v);
            }
            if p.n > 1 {
                body["n"] = json!(p.n);
            }
        }
        let said_none = req
            .params
            .as_ref()
            .and_then(|p| p.reasoning.as_ref())
            .is_some_and(|r| r.effort == "none");
        match shape::reasoning(req) {
            // "none" where the caller said so (models before gpt-5.1 refuse it); otherwise a
            // model that does not reason by default is left alone.
            Some(Think::Off) if said_none => body["reasoning_effort"] = json!("none"),
            None | Some(Think::Off) => {}
            Some(Think::Effort(e))
            | Some(Think::Budget(_, Some(e)))
            | Some(Think::Adaptive(Some(e))) => {
                body["reasoning_effort"] = json!(e);
            }
            Some(Think::Budget(b, None)) => {
                body["reasoning_effort"] = json!(shape::effort_for_budget(b))
            }
            // The model decides: its default.
            Some(Think::Adaptive(None)) => {}
        }
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        if let Some(extra) = shape::passthrough(req, "openai")? {
            shape::merge_absent(&mut body, extra);
        }
        Ok(body)
    }

    async fn send(
        &self,
        call: &Call<'_>,
        stream: bool,
    ) -> Result<reqwest::Response, UpstreamError> {
        self.post(
            call.region,
            "chat/completions",
            call.timeout,
            &Self::body(call, stream)?,
        )
        .await
    }

    /// POSTs `body` to `{base}/{path}` of `region`'s endpoint; non-2xx answers become errors.
    async fn post(
        &self,
        region: &str,
        path: &str,
        timeout: Duration,
        body: &Value,
    ) -> Result<reqwest::Response, UpstreamError> {
        let base = self.endpoints.get(region).ok_or_else(|| {
            UpstreamError::unavailable(format!("no endpoint for region {region}"))
        })?;
        let parsed = PATHS
            .iter()
            .position(|p| *p == path)
            .and_then(|i| self.parsed.get(region)?.get(i)?.clone());
        let mut rb = match parsed {
            Some(url) => self.http.post(url),
            None => self.http.post(endpoint_url(base, path)),
        }
        .timeout(timeout)
        .json(body);
        match &self.api_key {
            KeySource::None => {}
            KeySource::Static(key) => rb = rb.bearer_auth(&key.0),
            KeySource::Refreshed(cell) => match cell.get() {
                Some(key) => rb = rb.bearer_auth(&key.0),
                None => {
                    return Err(UpstreamError::unavailable("API key not loaded yet"));
                }
            },
        }
        let resp = rb.send().await.map_err(transport_error)?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header("retry-after-ms")
            .and_then(|v| parse_retry_after(&v, true))
            .or_else(|| header("retry-after").and_then(|v| parse_retry_after(&v, false)));
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Err(classify(status, &body, retry_after).scrub(&self.api_key.secrets()))
    }
}

/// OpenAI's billing codes: the account has no quota or credit left (429 `insufficient_quota`
/// and its specific `error.code`s; `billing_not_active`). Retrying does not help until someone
/// pays.
const BILLING_CODES: [&str; 7] = [
    "insufficient_quota",
    "credit_balance_exhausted",
    "organization_spend_limit_exceeded",
    "project_spend_limit_exceeded",
    "organization_usage_limit_exceeded",
    "billing_hard_limit_reached",
    "billing_not_active",
];

/// Classifies an error answer of an OpenAI-compatible API (`{"error": {"message", "type",
/// "param", "code"}}`; vLLM and others send `{"object": "error", "message", "type", "code"}`):
///
/// | answer | whose fault |
/// | --- | --- |
/// | 429 with `type` or `code` `insufficient_quota` (or another billing code), 402, `billing_not_active` | account: billing |
/// | 401, `code` `invalid_api_key` | account: credentials |
/// | 403 (`unsupported_country_region_territory`, no access to the model) | account: model access |
/// | 404, `code` `model_not_found` | account: model not found |
/// | 429 otherwise (`rate_limit_exceeded`, tokens/requests per minute) | transient: throttled |
/// | 408, 504 | transient: timeout |
/// | 5xx | transient: unavailable |
/// | other 4xx (400 `invalid_request_error`, 413, 422) | the caller's |
///
/// The reason keeps `code` (else `type`, else `HTTP {status}`) as its error type and the
/// message redacted; the adapter also scrubs its configured key.
pub fn classify(status: u16, body: &Value, retry_after: Option<Duration>) -> UpstreamError {
    let err = if body["error"].is_object() {
        &body["error"]
    } else {
        body
    };
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    let ty = text(&err["type"]);
    let code = text(&err["code"]);
    let message = err["message"].as_str().unwrap_or("no error message");
    let error_type = code
        .clone()
        .or_else(|| ty.clone())
        .unwrap_or_else(|| format!("HTTP {status}"));
    let reason = Reason::upstream(&error_type, message, &[]);
    let is = |name: &str| ty.as_deref() == Some(name) || code.as_deref() == Some(name);
    let denied = |why| UpstreamError::Denied {
        why,
        reason: reason.clone(),
    };
    if BILLING_CODES.iter().any(|c| is(c)) || status == 402 {
        return denied(DenyReason::Billing);
    }
    if is("invalid_api_key") {
        return denied(DenyReason::Credentials);
    }
    if is("model_not_found") && status != 403 {
        return denied(DenyReason::ModelNotFound);
    }
    match account_fault_of_status(status) {
        Some(why) => denied(why),
        None => UpstreamError::from_status(status, reason, retry_after),
    }
}

pub(crate) fn transport_error(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout
    } else if e.is_connect() {
        UpstreamError::unavailable("connection failed")
    } else {
        UpstreamError::unavailable(format!("transport: {}", e.without_url()))
    }
}

/// One contract message as OpenAI messages: tool results become one `tool` message each (OpenAI
/// wants them separate), the rest one message of the contract's role.
fn message_json(m: &switchyard_proto::v1::Message) -> Vec<Value> {
    let role = match Role::try_from(m.role).unwrap_or(Role::User) {
        Role::Assistant => "assistant",
        Role::System => "system",
        Role::Tool | Role::User | Role::Unspecified => "user",
    };
    let mut out = Vec::new();
    let mut parts = Vec::new();
    let mut tool_calls = Vec::new();
    let mut has_image = false;
    for p in &m.content {
        match &p.part {
            Some(Part::Text(t)) => parts.push(json!({"type": "text", "text": t})),
            Some(Part::Image(img)) => {
                has_image = true;
                let data = base64::engine::general_purpose::STANDARD.encode(&img.data);
                parts.push(json!({"type": "image_url", "image_url": {
                    "url": format!("data:image/{};base64,{data}", img.format)
                }}));
            }
            Some(Part::ToolCall(tc)) => tool_calls.push(json!({
                "id": tc.id, "type": "function",
                "function": {"name": tc.name, "arguments": tc.arguments_json},
            })),
            Some(Part::ToolResult(r)) => out.push(json!({
                "role": "tool", "tool_call_id": r.tool_call_id, "content": r.content,
            })),
            Some(Part::Thinking(_) | Part::CachePoint(_)) | None => {}
        }
    }
    if parts.is_empty() && tool_calls.is_empty() && !out.is_empty() {
        return out;
    }
    // Text only: a plain string, the form every OpenAI-compatible server accepts.
    let content = if has_image {
        Value::Array(parts)
    } else {
        let text: String = parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("");
        if text.is_empty() && !tool_calls.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        }
    };
    let mut msg = json!({"role": role, "content": content});
    if !tool_calls.is_empty() {
        msg["tool_calls"] = Value::Array(tool_calls);
    }
    out.push(msg);
    out
}

fn stop_reason(finish: Option<&str>) -> StopReason {
    match finish {
        Some("length") => StopReason::MaxTokens,
        Some("tool_calls") | Some("function_call") => StopReason::ToolUse,
        Some("content_filter") => StopReason::ContentFiltered,
        _ => StopReason::EndTurn,
    }
}

/// The reasoning text of a message or delta: `reasoning_content` (DeepSeek, vLLM, llama.cpp)
/// or `reasoning` (newer vLLM, OpenRouter).
fn reasoning_text(m: &Value) -> Option<&str> {
    m["reasoning_content"]
        .as_str()
        .or_else(|| m["reasoning"].as_str())
        .filter(|t| !t.is_empty())
}

/// A `choices[].logprobs` object as JSON text (empty when null).
fn logprobs_text(v: &Value) -> String {
    if v.is_object() {
        v.to_string()
    } else {
        String::new()
    }
}

/// The fields of a `chat.completion` the adapter reads, typed: the answer is parsed straight into
/// these (no `serde_json::Value` tree: building, reading and dropping one was a fifth of the
/// spoke's instructions per request, docs/benchmarks.md). An answer whose shape they do not
/// take (a number where a string belongs, duplicate keys, a choice that is not an object) is
/// read leniently from a `Value` instead ([`WireCompletion::lenient`]), as before: a field of
/// the wrong type counts as absent. Every field is an `Option`: missing or `null` is `None`.
#[derive(Debug, Default, serde::Deserialize)]
struct WireCompletion {
    choices: Option<Vec<WireChoice>>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct WireChoice {
    index: Option<u64>,
    message: Option<WireMessage>,
    finish_reason: Option<String>,
    /// Kept as JSON (an object is passed on as text, anything else dropped).
    logprobs: Option<Value>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct WireMessage {
    content: Option<String>,
    tool_calls: Option<Vec<WireToolCall>>,
    /// DeepSeek, vLLM, llama.cpp.
    reasoning_content: Option<String>,
    /// Newer vLLM, OpenRouter.
    reasoning: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct WireToolCall {
    id: Option<String>,
    function: Option<WireFunction>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct WireFunction {
    name: Option<String>,
    arguments: Option<String>,
}

/// OpenAI's usage: `prompt_tokens` (cached ones included, `prompt_tokens_details.
/// cached_tokens` apart), `completion_tokens` (reasoning included,
/// `completion_tokens_details.reasoning_tokens` apart).
#[derive(Debug, Default, serde::Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<CachedDetails>,
    completion_tokens_details: Option<ReasoningDetails>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct CachedDetails {
    cached_tokens: Option<u64>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ReasoningDetails {
    reasoning_tokens: Option<u64>,
}

impl WireCompletion {
    /// The answer's body: typed, else read leniently from a `Value` (not JSON at all: an error).
    fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
            .or_else(|_| serde_json::from_slice::<Value>(body).map(|v| Self::lenient(&v)))
    }

    /// The same fields read from any JSON value: a field that is missing or of another type
    /// is absent (`None`), a `choices` that is not an array has no choices.
    fn lenient(v: &Value) -> Self {
        let s = |v: &Value| v.as_str().map(str::to_owned);
        let choice = |c: &Value| {
            let m = &c["message"];
            WireChoice {
                index: c["index"].as_u64(),
                message: Some(WireMessage {
                    content: s(&m["content"]),
                    tool_calls: m["tool_calls"].as_array().map(|calls| {
                        calls
                            .iter()
                            .map(|tc| WireToolCall {
                                id: s(&tc["id"]),
                                function: Some(WireFunction {
                                    name: s(&tc["function"]["name"]),
                                    arguments: s(&tc["function"]["arguments"]),
                                }),
                            })
                            .collect()
                    }),
                    reasoning_content: s(&m["reasoning_content"]),
                    reasoning: s(&m["reasoning"]),
                }),
                finish_reason: s(&c["finish_reason"]),
                logprobs: Some(c["logprobs"].clone()),
            }
        };
        WireCompletion {
            choices: v["choices"]
                .as_array()
                .map(|cs| cs.iter().map(choice).collect()),
            usage: Some(WireUsage::lenient(&v["usage"])),
        }
    }
}

impl WireUsage {
    /// The usage fields of any JSON value (a missing or non-integer count is absent).
    fn lenient(u: &Value) -> Self {
        WireUsage {
            prompt_tokens: u["prompt_tokens"].as_u64(),
            completion_tokens: u["completion_tokens"].as_u64(),
            prompt_tokens_details: Some(CachedDetails {
                cached_tokens: u["prompt_tokens_details"]["cached_tokens"].as_u64(),
            }),
            completion_tokens_details: Some(ReasoningDetails {
                reasoning_tokens: u["completion_tokens_details"]["reasoning_tokens"].as_u64(),
            }),
        }
    }

    fn usage(&self) -> Usage {
        let n = |v: Option<u64>| u32::try_from(v.unwrap_or(0)).unwrap_or(u32::MAX);
        Usage {
            input_tokens: n(self.prompt_tokens),
            output_tokens: n(self.completion_tokens),
            cache_read_input_tokens: n(self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)),
            cache_write_input_tokens: 0,
            reasoning_tokens: n(self
                .completion_tokens_details
                .as_ref()
                .and_then(|d| d.reasoning_tokens)),
        }
    }
}

/// A `chat.completion` as a [`Completion`]: choice 0 (by `index`) first, the others as
/// `more_choices`.
fn completion(v: WireCompletion) -> Completion {
    let mut choices = v.choices.unwrap_or_default();
    choices.sort_by_key(|c| c.index.unwrap_or(0));
    let mut c = Completion {
        usage: v.usage.unwrap_or_default().usage(),
        ..Default::default()
    };
    for (i, choice) in choices.into_iter().enumerate() {
        let m = choice.message.unwrap_or_default();
        let text = m.content.unwrap_or_default();
        let calls: Vec<ToolCall> = m
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .map(|tc| {
                let f = tc.function.unwrap_or_default();
                ToolCall {
                    id: tc.id.unwrap_or_default(),
                    name: f.name.unwrap_or_default(),
                    arguments_json: f.arguments.unwrap_or_default(),
                }
            })
            .collect();
        let stop = stop_reason(choice.finish_reason.as_deref());
        let reasoning = m
            .reasoning_content
            .or(m.reasoning)
            .filter(|t| !t.is_empty());
        let thinking: Vec<ThinkingPart> = reasoning
            .map(|text| ThinkingPart {
                text,
                ..Default::default()
            })
            .into_iter()
            .collect();
        let logprobs_json = choice
            .logprobs
            .as_ref()
            .map(logprobs_text)
            .unwrap_or_default();
        if i == 0 {
            c.thinking = thinking;
            c.text = text;
            c.tool_calls = calls;
            c.stop_reason = stop;
            c.logprobs_json = logprobs_json;
            continue;
        }
        let content = thinking
            .into_iter()
            .map(Part::Thinking)
            .chain(std::iter::once(Part::Text(text)))
            .chain(calls.into_iter().map(Part::ToolCall))
            .map(|p| ContentPart { part: Some(p) })
            .collect();
        c.more_choices.push(Choice {
            message: Some(Message {
                role: Role::Assistant as i32,
                content,
            }),
            stop_reason: stop as i32,
            logprobs_json,
        });
    }
    c
}

#[async_trait::async_trait]
impl Upstream for OpenAiUpstream {
    fn kind(&self) -> &'static str {
        "openai"
    }

    async fn check_credentials(&self) -> Result<(), String> {
        self.api_key.check()
    }

    async fn complete(&self, call: Call<'_>) -> Result<Completion, UpstreamError> {
        let resp = self.send(&call, false).await?;
        let body = resp.bytes().await.map_err(transport_error)?;
        let v = WireCompletion::parse(&body)
            // What reqwest's `json()` reported here (the words stay in the spoke's log).
            .map_err(|_| UpstreamError::unavailable("transport: error decoding response body"))?;
        Ok(shape::settle(completion(v), &shape::Finish::default()))
    }

    async fn embed(&self, call: EmbedCall<'_>) -> Result<Embeddings, UpstreamError> {
        let mut body =
            json!({"model": call.model, "input": call.inputs, "encoding_format": "float"});
        if let Some(d) = call.dimensions {
            body["dimensions"] = json!(d);
        }
        let resp = self
            .post(call.region, "embeddings", call.timeout, &body)
            .await?;
        let v: Value = resp.json().await.map_err(transport_error)?;
        let mut data: Vec<&Value> = v["data"].as_array().into_iter().flatten().collect();
        data.sort_by_key(|d| d["index"].as_u64().unwrap_or(0));
        let vectors: Vec<Vec<f32>> = data
            .iter()
            .map(|d| {
                d["embedding"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_f64)
                    .map(|f| f as f32)
                    .collect()
            })
            .collect();
        if vectors.len() != call.inputs.len() {
            return Err(UpstreamError::unavailable(format!(
                "upstream returned {} embeddings for {} inputs",
                vectors.len(),
                call.inputs.len()
            )));
        }
        Ok(Embeddings {
            vectors,
            input_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0) as u32,
        })
    }

    async fn stream(&self, call: Call<'_>) -> Result<ChunkStream, UpstreamError> {
        let resp = self.send(&call, true).await?;
        let input_estimate = crate::text::estimate_input_tokens(call.request) as u32;
        let secrets = self.api_key.secrets();
        let chunks = sse_chunks(resp.bytes_stream().boxed(), input_estimate)
            .map(move |item| item.map_err(|e| e.scrub(&secrets)))
            .boxed();
        Ok(shape::settle_stream(chunks, shape::Finish::default()))
    }
}

/// Parses an OpenAI SSE body (`data: {...}` lines, `data: [DONE]`) into chunks. Called by
/// [`OpenAiUpstream`]'s `stream` with the response body; public so tests can feed it any bytes.
pub fn sse_chunks(
    bytes: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    input_estimate: u32,
) -> ChunkStream {
    let state = SseState {
        bytes,
        buf: Vec::new(),
        finish: Vec::new(),
        usage: None,
        output_chunks: 0,
        input_estimate,
        queued: std::collections::VecDeque::new(),
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
    /// `finish_reason` of each choice seen so far, by index.
    finish: Vec<Option<String>>,
    usage: Option<Usage>,
    output_chunks: u32,
    input_estimate: u32,
    /// Chunks parsed from one SSE event beyond the first (several tool-call pieces).
    queued: std::collections::VecDeque<Chunk>,
    done: bool,
}

impl SseState {
    /// The next chunk of the stream; `None` after the end (or after an error was yielded).
    async fn next_chunk(&mut self) -> Option<Result<Chunk, UpstreamError>> {
        if let Some(c) = self.queued.pop_front() {
            return Some(Ok(c));
        }
        if self.done {
            return None;
        }
        loop {
            while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                let Some(data) = line.trim().strip_prefix("data:") else {
                    continue;
                };
                let data = data.trim();
                if data == "[DONE]" {
                    self.done = true;
                    let usage = self.usage.unwrap_or(Usage {
                        input_tokens: self.input_estimate,
                        output_tokens: self.output_chunks,
                        ..Default::default()
                    });
                    let finish =
                        |i: usize| stop_reason(self.finish.get(i).cloned().flatten().as_deref());
                    return Some(Ok(Chunk::End {
                        stop_reason: finish(0),
                        usage,
                        more_stop_reasons: (1..self.finish.len()).map(finish).collect(),
                        additional_response_fields_json: String::new(),
                    }));
                }
                let Ok(v) = serde_json::from_str::<Value>(data) else {
                    continue;
                };
                if v.get("error").is_some() {
                    self.done = true;
                    let msg = v["error"]["message"].as_str().unwrap_or("stream error");
                    return Some(Err(UpstreamError::Unavailable {
                        reason: Reason::upstream("upstream stream error", msg, &[]),
                    }));
                }
                if v["usage"].is_object() {
                    self.usage = Some(WireUsage::lenient(&v["usage"]).usage());
                }
                for choice in v["choices"].as_array().into_iter().flatten() {
                    self.on_choice(choice);
                }
                if let Some(c) = self.queued.pop_front() {
                    return Some(Ok(c));
                }
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
                        "stream ended before [DONE]",
                    )));
                }
            }
        }
    }
}

impl SseState {
    /// The pieces of one `choices[]` entry of a chunk: choice 0's text and tool calls as plain
    /// chunks, reasoning, logprobs and other choices' pieces in the contract's form.
    fn on_choice(&mut self, choice: &Value) {
        let index = u32::try_from(choice["index"].as_u64().unwrap_or(0)).unwrap_or(u32::MAX);
        let i = index as usize;
        // Bounded by the request's `n` upstream; a server inventing indexes gets one slot per
        // index it sends, never more than 128.
        if i < 128 && self.finish.len() <= i {
            self.finish.resize(i + 1, None);
        }
        if let Some(f) = choice["finish_reason"].as_str()
            && let Some(slot) = self.finish.get_mut(i)
        {
            *slot = Some(f.to_owned());
        }
        let delta = &choice["delta"];
        let mut logprobs = logprobs_text(&choice["logprobs"]);
        if let Some(t) = reasoning_text(delta) {
            self.queued.push_back(Chunk::Part(StreamDelta {
                choice: index,
                thinking: Some(ThinkingPart {
                    text: t.to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }));
        }
        if let Some(t) = delta["content"].as_str()
            && (!t.is_empty() || !logprobs.is_empty())
        {
            self.output_chunks += 1;
            if index == 0 && logprobs.is_empty() {
                self.queued.push_back(Chunk::Delta(t.to_owned()));
            } else {
                self.queued.push_back(Chunk::Part(StreamDelta {
                    text: t.to_owned(),
                    choice: index,
                    logprobs_json: std::mem::take(&mut logprobs),
                    ..Default::default()
                }));
            }
        }
        for tc in delta["tool_calls"].as_array().into_iter().flatten() {
            self.output_chunks += 1;
            let call_index = u32::try_from(tc["index"].as_u64().unwrap_or(0)).unwrap_or(u32::MAX);
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            let (id, name, arguments) = (
                text(&tc["id"]),
                text(&tc["function"]["name"]),
                text(&tc["function"]["arguments"]),
            );
            if index == 0 {
                self.queued.push_back(Chunk::ToolCall {
                    index: call_index,
                    id,
                    name,
                    arguments,
                });
            } else {
                self.queued.push_back(Chunk::Part(StreamDelta {
                    choice: index,
                    tool_call: Some(shape::tool_call_delta(call_index, id, name, arguments)),
                    ..Default::default()
                }));
            }
        }
        // Logprobs without content (a refusal, or a role-only chunk that has them).
        if !logprobs.is_empty() {
            self.queued.push_back(Chunk::Part(StreamDelta {
                choice: index,
                logprobs_json: logprobs,
                ..Default::default()
            }));
        }
    }
}

/// The chat-completions body of a call (also for tests); a request the API cannot express is
/// the caller's fault.
pub fn request_body(call: &Call<'_>, stream: bool) -> Result<Value, UpstreamError> {
    OpenAiUpstream::body(call, stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_proto::v1::InferRequest;

    #[test]
    fn api_key_is_never_printed() {
        let k = ApiKey::new("sk-very-secret".into());
        assert!(!format!("{k:?}").contains("secret"));
    }

    #[test]
    fn body_maps_parameters() {
        let req = InferRequest {
            system: "be brief".into(),
            messages: vec![switchyard_proto::v1::Message {
                role: Role::User as i32,
                content: vec![switchyard_proto::v1::ContentPart {
                    part: Some(Part::Text("hi".into())),
                }],
            }],
            params: Some(switchyard_proto::v1::GenerationParams {
                max_tokens: Some(7),
                temperature: Some(0.5),
                top_p: None,
                stop: vec!["END".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let call = Call {
            region: "r",
            model: "m",
            request: &req,
            timeout: Duration::from_secs(1),
            options: Default::default(),
        };
        let b = request_body(&call, true).unwrap();
        assert_eq!(b["messages"][0]["role"], "system");
        assert_eq!(b["messages"][1]["content"], "hi");
        assert_eq!(b["max_tokens"], 7);
        assert_eq!(b["stop"][0], "END");
        assert_eq!(b["stream_options"]["include_usage"], true);
    }

    fn why(status: u16, body: Value) -> Option<DenyReason> {
        match classify(status, &body, None) {
            UpstreamError::Denied { why, .. } => Some(why),
            _ => None,
        }
    }

    fn openai_error(message: &str, ty: &str, code: Value) -> Value {
        json!({"error": {"message": message, "type": ty, "param": null, "code": code}})
    }

    #[test]
    fn account_faults_are_denials() {
        // Real OpenAI answers (platform.openai.com/docs/guides/error-codes).
        let revoked = openai_error(
            "Incorrect API key provided: sk-proj-********************abcd. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            json!("invalid_api_key"),
        );
        assert_eq!(why(401, revoked), Some(DenyReason::Credentials));
        let quota = openai_error(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            json!("insufficient_quota"),
        );
        assert_eq!(why(429, quota), Some(DenyReason::Billing));
        let spend = openai_error(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            json!("project_spend_limit_exceeded"),
        );
        assert_eq!(why(429, spend), Some(DenyReason::Billing));
        // Old answers had `code: null` and only the type.
        let old = openai_error(
            "You exceeded your current quota",
            "insufficient_quota",
            Value::Null,
        );
        assert_eq!(why(429, old), Some(DenyReason::Billing));
        assert_eq!(why(402, json!({})), Some(DenyReason::Billing));
        let region = openai_error(
            "Country, region, or territory not supported",
            "request_forbidden",
            json!("unsupported_country_region_territory"),
        );
        assert_eq!(why(403, region), Some(DenyReason::ModelAccess));
        let missing = openai_error(
            "The model `gpt-5-turbo` does not exist or you do not have access to it.",
            "invalid_request_error",
            json!("model_not_found"),
        );
        assert_eq!(why(404, missing), Some(DenyReason::ModelNotFound));
        // vLLM's shape: a flat object with a numeric code.
        let vllm = json!({"object": "error", "message": "The model `llama` does not exist.",
            "type": "NotFoundError", "param": null, "code": 404});
        assert_eq!(why(404, vllm), Some(DenyReason::ModelNotFound));
    }

    #[test]
    fn throttles_and_the_callers_faults_are_not_denials() {
        let rate = openai_error(
            "Rate limit reached for gpt-4o in organization org-x on requests per min (RPM): Limit 500, Used 500.",
            "requests",
            json!("rate_limit_exceeded"),
        );
        let e = classify(429, &rate, Some(Duration::from_secs(2)));
        assert!(matches!(
            e,
            UpstreamError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        assert_eq!(e.detail(), "rate_limit_exceeded");
        let bad = openai_error(
            "This model's maximum context length is 128000 tokens.",
            "invalid_request_error",
            json!("context_length_exceeded"),
        );
        let e = classify(400, &bad, None);
        assert_eq!(e.fault(), crate::Fault::Caller);
        assert_eq!(e.detail(), "context_length_exceeded");
        assert_eq!(
            classify(422, &json!({}), None).fault(),
            crate::Fault::Caller
        );
        assert_eq!(
            classify(503, &json!({}), None).fault(),
            crate::Fault::Transient
        );
        assert_eq!(classify(504, &json!({}), None), UpstreamError::Timeout);
    }

    #[test]
    fn an_echoed_key_is_never_kept() {
        let echo = openai_error(
            "bad header: Authorization: Bearer my-configured-key-123",
            "invalid_request_error",
            Value::Null,
        );
        let e = classify(400, &echo, None).scrub(&["my-configured-key-123"]);
        assert!(!e.to_string().contains("my-configured-key-123"), "{e}");
        assert!(!e.detail().contains("my-configured-key-123"));
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    fn feed(lines: &[Value]) -> Vec<Chunk> {
        let mut body = String::new();
        for l in lines {
            body.push_str(&format!("data: {l}\n\n"));
        }
        body.push_str("data: [DONE]\n\n");
        let bytes = futures::stream::iter(vec![Ok(bytes::Bytes::from(body))]).boxed();
        let chunks = shape::settle_stream(sse_chunks(bytes, 1), shape::Finish::default());
        futures::executor::block_on(chunks.collect::<Vec<_>>())
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn choices_reasoning_logprobs_and_usage_details() {
        let lp = json!({"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}]});
        let lp_text = lp.to_string();
        let out = feed(&[
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": "think"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": lp}]}),
            json!({"choices": [{"index": 1, "delta": {"content": "Yo"}}]}),
            json!({"choices": [{"index": 1, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}, {"index": 1, "delta": {}, "finish_reason": "stop"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}}}),
        ]);
        assert!(matches!(&out[0], Chunk::Part(d) if d.thinking.as_ref().unwrap().text == "think"));
        assert!(matches!(&out[1], Chunk::Part(d) if d.text == "Hi" && d.logprobs_json == lp_text));
        assert!(matches!(&out[2], Chunk::Part(d) if d.text == "Yo" && d.choice == 1));
        assert!(
            matches!(&out[3], Chunk::Part(d) if d.choice == 1 && d.tool_call.as_ref().unwrap().name == "f")
        );
        match &out[4] {
            Chunk::End {
                stop_reason,
                usage,
                more_stop_reasons,
                ..
            } => {
                assert_eq!(*stop_reason, StopReason::EndTurn);
                // Choice 1 called a tool next to `stop`: tool_use.
                assert_eq!(more_stop_reasons, &vec![StopReason::ToolUse]);
                assert_eq!(
                    (
                        usage.input_tokens,
                        usage.cache_read_input_tokens,
                        usage.reasoning_tokens
                    ),
                    (10, 4, 2)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// The answer read from `body`'s text, checked against the lenient reading of the same
    /// value (the typed parse must agree with it whenever it succeeds).
    fn read(body: &Value) -> Completion {
        let text = body.to_string();
        let parsed = completion(WireCompletion::parse(text.as_bytes()).unwrap());
        assert_eq!(parsed, completion(WireCompletion::lenient(body)), "{text}");
        parsed
    }

    #[test]
    fn unary_choices_are_ordered_by_index() {
        let c = read(&json!({
            "choices": [
                {"index": 1, "message": {"content": "second", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "stop"},
                {"index": 0, "message": {"content": "first", "reasoning": "why"}, "finish_reason": "length", "logprobs": {"content": []}},
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4},
        }));
        let c = shape::settle(c, &shape::Finish::default());
        assert_eq!(
            (c.text.as_str(), c.stop_reason),
            ("first", StopReason::MaxTokens)
        );
        assert_eq!(c.thinking[0].text, "why");
        assert_eq!(c.logprobs_json, r#"{"content":[]}"#);
        assert_eq!(c.more_choices.len(), 1);
        assert_eq!(c.more_choices[0].stop_reason, StopReason::ToolUse as i32);
    }

    #[test]
    fn odd_shapes_read_as_before() {
        // Fields of another type count as absent; the typed parse gives way to the lenient one.
        for body in [
            json!({}),
            json!({"choices": null, "usage": null}),
            json!({"choices": "none"}),
            json!({"choices": [null, {"index": 0, "message": {"content": "x"}}]}),
            json!({"choices": [{"index": -1, "message": {"content": ["part"]}, "finish_reason": 7}]}),
            json!({"choices": [{"message": {"content": null, "tool_calls": [{"id": 3, "function": null}]}}]}),
            json!({"choices": [{"message": {"content": "a", "reasoning_content": "", "reasoning": "r"}, "logprobs": [1]}]}),
            json!({"usage": {"prompt_tokens": 1.5, "completion_tokens": 9_000_000_000u64,
                "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": null}}),
            json!({"id": "x", "object": "chat.completion", "system_fingerprint": "fp", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": null,
                    "annotations": []}, "finish_reason": "stop", "logprobs": null}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
                    "prompt_tokens_details": {"cached_tokens": 1, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 1}}}),
        ] {
            read(&body);
        }
        let c = read(&json!({"choices": [{"message": {"content": "hi"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 9_000_000_000u64,
                "prompt_tokens_details": {"cached_tokens": 1}}}));
        assert_eq!(c.text, "hi");
        assert_eq!(
            (
                c.usage.input_tokens,
                c.usage.output_tokens,
                c.usage.cache_read_input_tokens
            ),
            (5, u32::MAX, 1)
        );
        // Duplicate keys: the last one wins, as in a `Value`.
        let dup = br#"{"choices": [{"message": {"content": "a", "content": "b"}}]}"#;
        assert_eq!(completion(WireCompletion::parse(dup).unwrap()).text, "b");
        assert!(WireCompletion::parse(b"not json").is_err());
    }
}
