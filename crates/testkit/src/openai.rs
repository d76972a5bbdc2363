//! A fake OpenAI-compatible API:
//!
//! - `POST /v1/chat/completions` → `chat.completion` JSON, or with `"stream": true` SSE
//!   `data: {chat.completion.chunk}` lines ending with `data: [DONE]` (plus a usage chunk when
//!   `stream_options.include_usage` is set),
//! - `GET /v1/models` → the models seen in calls or named by rules,
//! - errors as `{"error": {"message", "type", "param", "code"}}` with OpenAI's status codes
//!   (429s carry `Retry-After`), account faults as OpenAI answers them
//!   ([`account_fault_response`]).
//!
//! A mid-stream failure aborts the connection without `[DONE]`. See
//! [`crate::fake::FakeServer`] for the shared API.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::behavior::{AccountFault, Action, ErrorKind};
use crate::fake::{Completion, FakeServer, Kind, Shared, ToolUse, fake_embedding, word_count};

/// A fake OpenAI-compatible endpoint. Derefs to [`FakeServer`] for behaviors, counters and
/// requests.
#[derive(Debug)]
pub struct FakeOpenAi {
    server: FakeServer,
}

impl FakeOpenAi {
    /// Starts a fake on `127.0.0.1:0` in the current tokio runtime.
    pub async fn start() -> anyhow::Result<FakeOpenAi> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a fake on `listen`.
    pub async fn start_on(listen: SocketAddr) -> anyhow::Result<FakeOpenAi> {
        let server = FakeServer::start(Kind::OpenAi, listen, routes()).await?;
        Ok(FakeOpenAi { server })
    }

    /// The base URL including `/v1`: `http://127.0.0.1:PORT/v1`.
    pub fn url(&self) -> String {
        format!("{}/v1", self.server.base_url())
    }
}

impl Deref for FakeOpenAi {
    type Target = FakeServer;

    fn deref(&self) -> &FakeServer {
        &self.server
    }
}

fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(list_models))
}

async fn list_models(State(st): State<Arc<Shared>>) -> Response {
    debug_assert_eq!(st.kind, Kind::OpenAi);
    let data: Vec<Value> = st
        .known_models()
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "fake"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// `(type, code)` of an OpenAI error.
fn error_type_code(kind: ErrorKind) -> (&'static str, &'static str) {
    match kind {
        ErrorKind::Throttling => ("requests", "rate_limit_exceeded"),
        ErrorKind::ModelNotReady => ("server_error", "model_not_ready"),
        ErrorKind::ServiceUnavailable => ("server_error", "service_unavailable"),
        ErrorKind::InternalServer => ("server_error", "internal_error"),
        ErrorKind::Validation => ("invalid_request_error", "invalid_request"),
        ErrorKind::AccessDenied => ("invalid_request_error", "invalid_api_key"),
        ErrorKind::ModelTimeout => ("server_error", "timeout"),
    }
}

/// An OpenAI error response. 429s always carry `Retry-After` (`retry_after`, default 1).
pub fn error_response(kind: ErrorKind, retry_after: Option<u64>, message: &str) -> Response {
    let status =
        StatusCode::from_u16(kind.openai_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (ty, code) = error_type_code(kind);
    let body = json!({"error": {"message": message, "type": ty, "param": null, "code": code}});
    let mut resp = (status, axum::Json(body)).into_response();
    let retry_after = match (retry_after, status) {
        (Some(s), _) => Some(s),
        (None, StatusCode::TOO_MANY_REQUESTS) => Some(1),
        (None, _) => None,
    };
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// OpenAI's answer to an account fault (see [`AccountFault`]): 401 `invalid_api_key` (echoing
/// the key masked the way OpenAI does), 403 / 404 `model_not_found`, 429 `insufficient_quota`.
pub fn account_fault_response(fault: AccountFault, model: &str, headers: &HeaderMap) -> Response {
    let (status, message, ty, code) = match fault {
        AccountFault::Credentials => {
            let key = bearer(headers);
            let chars: Vec<char> = key.chars().collect();
            let masked = if chars.len() > 12 {
                let head: String = chars[..8].iter().collect();
                let tail: String = chars[chars.len() - 4..].iter().collect();
                format!("{head}{}{tail}", "*".repeat(chars.len() - 12))
            } else {
                "*".repeat(chars.len())
            };
            (
                401,
                format!(
                    "Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."
                ),
                "invalid_request_error",
                json!("invalid_api_key"),
            )
        }
        AccountFault::ModelAccess => (
            403,
            format!("Project `proj_fake` does not have access to model `{model}`"),
            "invalid_request_error",
            json!("model_not_found"),
        ),
        AccountFault::ModelNotFound => (
            404,
            format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            json!("model_not_found"),
        ),
        AccountFault::Billing => (
            429,
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.".to_string(),
            "insufficient_quota",
            json!("insufficient_quota"),
        ),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": {"message": message, "type": ty, "param": null, "code": code}});
    (status, axum::Json(body)).into_response()
}

/// A 400 whose message echoes the `Authorization` header verbatim (a leaking upstream).
pub fn echo_auth_response(headers: &HeaderMap) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let body = json!({"error": {"message": format!("Invalid header: Authorization: {auth}"),
        "type": "invalid_request_error", "param": null, "code": null}});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// The bearer token of a request (empty without one).
fn bearer(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string()
}

fn content_text(content: &Value, out: &mut String) {
    match content {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Array(parts) => {
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    out.push_str(t);
                    out.push(' ');
                }
            }
        }
        _ => {}
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `POST /v1/embeddings`: [`fake_embedding`] of each input (1536 values, or `dimensions`).
async fn embeddings(
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
    match plan.action {
        Action::Ok | Action::StreamFailAfter(_) => {}
        Action::Fail { kind, retry_after } => {
            let msg = format!("fake openai {}: {kind} for model {model}", plan.label);
            return error_response(kind, retry_after, &msg);
        }
        Action::AccountFault(fault) => return account_fault_response(fault, &model, &headers),
        Action::EchoAuth => return echo_auth_response(&headers),
        Action::Slow(d) => tokio::time::sleep(d).await,
        Action::Hang => std::future::pending().await,
    }
    let req = parsed.unwrap_or(Value::Null);
    let inputs: Vec<String> = match &req["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => vec![],
    };
    if inputs.is_empty() {
        return error_response(
            ErrorKind::Validation,
            None,
            "'input' is a required property",
        );
    }
    let dims = req["dimensions"].as_u64().unwrap_or(1536) as usize;
    let tokens: u64 = inputs.iter().map(|t| word_count(t)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": fake_embedding(t, dims)}))
        .collect();
    axum::Json(json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
    .into_response()
}

async fn chat_completions(
    State(st): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let model = parsed
        .as_ref()
        .and_then(|v| v.get("model"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let plan = st.begin_call(
        uri.path().to_string(),
        &model,
        &headers,
        parsed.clone().unwrap_or(Value::Null),
    );
    let Some(req) = parsed.filter(Value::is_object) else {
        return error_response(
            ErrorKind::Validation,
            None,
            "fake openai: request body is not a JSON object",
        );
    };
    if model.is_empty() {
        return error_response(
            ErrorKind::Validation,
            None,
            "you must provide a model parameter",
        );
    }
    let streaming = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    match plan.action {
        Action::Ok | Action::StreamFailAfter(_) => {}
        Action::Fail { kind, retry_after } => {
            let msg = format!("fake openai {}: {kind} for model {model}", plan.label);
            return error_response(kind, retry_after, &msg);
        }
        Action::AccountFault(fault) => return account_fault_response(fault, &model, &headers),
        Action::EchoAuth => return echo_auth_response(&headers),
        Action::Slow(d) => tokio::time::sleep(d).await,
        Action::Hang => std::future::pending().await,
    }
    if let (Action::StreamFailAfter(_), false) = (plan.action, streaming) {
        let msg = format!(
            "fake openai {}: internal error for model {model}",
            plan.label
        );
        return error_response(ErrorKind::InternalServer, None, &msg);
    }

    if let Some(resp) = refuse_unsupported(&model, &req) {
        return resp;
    }

    let mut input_text = String::new();
    let mut last_user = String::new();
    for m in req
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let content = m.get("content").unwrap_or(&Value::Null);
        content_text(content, &mut input_text);
        // A tool result is echoed like a user message.
        if matches!(m.get("role").and_then(Value::as_str), Some("user" | "tool")) {
            last_user.clear();
            content_text(content, &mut last_user);
        }
    }
    let last_is_user = req
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        == Some("user");
    // Which tool is called: `tool_choice` as OpenAI honours it (`none`: never; `required`: the
    // first tool; a named function: that one), else the fakes' rule (the first tool, when the
    // last message is the user's).
    let tool_names: Vec<&str> = req["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    let called = match &req["tool_choice"] {
        Value::String(c) if c == "none" => None,
        Value::String(c) if c == "required" => match tool_names.first() {
            Some(n) => Some(*n),
            None => {
                return invalid_param(
                    "tool_choice",
                    "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                );
            }
        },
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            match tool_names.iter().find(|n| **n == name) {
                Some(n) => Some(*n),
                None => {
                    return invalid_param(
                        "tool_choice",
                        &format!(
                            "Invalid value for 'tool_choice': no function named '{name}' was specified in the 'tools' parameter."
                        ),
                    );
                }
            }
        }
        _ => tool_names.first().copied().filter(|_| last_is_user),
    };
    let forced =
        matches!(&req["tool_choice"], Value::Object(_)) || req["tool_choice"] == json!("required");
    let tool = called.map(|name| {
        if forced {
            let schema = req["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["function"]["name"] == name)
                .map(|t| t["function"]["parameters"].clone())
                .unwrap_or(Value::Null);
            ToolUse::forced("call_", &plan.request_id, name, &last_user, &schema)
        } else {
            ToolUse::new("call_", &plan.request_id, name, &last_user)
        }
    });
    let max_tokens = req
        .get("max_completion_tokens")
        .or_else(|| req.get("max_tokens"))
        .and_then(Value::as_u64);
    let n = req["n"].as_u64().unwrap_or(1).clamp(1, 128) as usize;
    // Choice i > 0 is labelled `{label}#{i}`.
    let choices: Vec<Completion> = (0..n)
        .map(|i| {
            let label = if i == 0 {
                plan.label.clone()
            } else {
                format!("{}#{i}", plan.label)
            };
            let mut c = Completion::new(&label, &model, &last_user, &input_text, max_tokens);
            if let Some(json) = structured_answer(&req, &c.text) {
                c.chunks = json_pieces(&json);
                c.text = json;
                c.truncated = false;
            }
            c
        })
        .collect();
    let c = &choices[0];
    // A server quirk some OpenAI-compatible servers have: `stop` next to tool calls.
    let finish_with_calls = if model.contains("stop-with-calls") {
        "stop"
    } else {
        "tool_calls"
    };
    let finish_of = |c: &Completion| {
        if tool.is_some() {
            finish_with_calls
        } else if c.truncated {
            "length"
        } else {
            "stop"
        }
    };
    let reasoning = req["reasoning_effort"]
        .as_str()
        .filter(|e| *e != "none")
        .map(|_| crate::fake::thinking_text(&last_user));
    let reasoning_tokens = reasoning.as_deref().map_or(0, word_count);
    let completion_tokens: u64 =
        choices.iter().map(|c| c.output_tokens).sum::<u64>() + reasoning_tokens * n as u64;
    let usage = json!({
        "prompt_tokens": c.input_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": c.input_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens * n as u64},
    });
    let logprobs = logprobs_request(&req);
    let id = format!("chatcmpl-{}", plan.request_id);
    let created = now_secs();

    if !streaming {
        let choices_json: Vec<Value> = choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut message = match &tool {
                    Some(t) => {
                        json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                            {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                        ]})
                    }
                    None => json!({"role": "assistant", "content": c.text, "refusal": null}),
                };
                if let Some(r) = &reasoning {
                    message["reasoning_content"] = json!(r);
                }
                let lp = match (logprobs, &tool) {
                    (Some(top), None) => logprobs_json(&c.chunks, top),
                    _ => Value::Null,
                };
                json!({"index": i, "message": message, "logprobs": lp, "finish_reason": finish_of(c)})
            })
            .collect();
        return axum::Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": choices_json,
            "usage": usage,
            "system_fingerprint": null,
        }))
        .into_response();
    }

    let include_usage = req
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let fail_after = match plan.action {
        Action::StreamFailAfter(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => None,
    };
    let chunk = move |choices: Value, usage: Option<&Value>| -> Bytes {
        let mut v = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u.clone();
        }
        Bytes::from(format!("data: {v}\n\n"))
    };
    let role = chunk(
        Value::Array(
            (0..n)
                .map(|i| json!({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}))
                .collect(),
        ),
        None,
    );
    let mut contents: Vec<Bytes> = Vec::new();
    for (i, c) in choices.iter().enumerate() {
        let piece = |delta: Value, lp: Value| {
            chunk(
                json!([{"index": i, "delta": delta, "logprobs": lp, "finish_reason": null}]),
                None,
            )
        };
        if let Some(r) = &reasoning {
            for w in r.split_inclusive(' ') {
                contents.push(piece(json!({"reasoning_content": w}), Value::Null));
            }
        }
        match &tool {
            Some(t) => {
                let first = json!({"tool_calls": [{"index": 0, "id": t.id, "type": "function",
                    "function": {"name": t.name, "arguments": ""}}]});
                contents.push(piece(first, Value::Null));
                for p in t.pieces() {
                    contents.push(piece(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}),
                        Value::Null,
                    ));
                }
            }
            None => {
                for text in &c.chunks {
                    let lp = match logprobs {
                        Some(top) => logprobs_json(std::slice::from_ref(text), top),
                        None => Value::Null,
                    };
                    contents.push(piece(json!({"content": text}), lp));
                }
            }
        }
    }
    let mut tail: Vec<Bytes> = choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            chunk(
                json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": finish_of(c)}]),
                None,
            )
        })
        .collect();
    if include_usage {
        tail.push(chunk(json!([]), Some(&usage)));
    }
    tail.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let events = SseEvents {
        role,
        contents,
        tail,
    };

    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let delay = plan.chunk_delay;
    tokio::spawn(write_sse(tx, events, fail_after, delay));
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// A 400 `invalid_request_error` naming `param`, as OpenAI answers a bad field.
fn invalid_param(param: &str, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error",
        "param": param, "code": "invalid_value"}});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// What OpenAI refuses about a request before answering: `max_tokens` to a reasoning model
/// (ids starting `o1`, `o3`, `o4`, `gpt-5`: "use max_completion_tokens"), `top_logprobs`
/// without `logprobs` or above 20, `n` above 128, a `json_schema` format without a schema.
fn refuse_unsupported(model: &str, req: &Value) -> Option<Response> {
    let reasoning_model = ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|p| model.starts_with(p) || model.contains(&format!("/{p}")));
    if reasoning_model && req.get("max_tokens").is_some() {
        let body = json!({"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
            "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}});
        return Some((StatusCode::BAD_REQUEST, axum::Json(body)).into_response());
    }
    if req.get("top_logprobs").is_some() && req["logprobs"] != json!(true) {
        return Some(invalid_param(
            "top_logprobs",
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is specified.",
        ));
    }
    if req["top_logprobs"].as_u64().is_some_and(|k| k > 20) {
        return Some(invalid_param(
            "top_logprobs",
            "Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20.",
        ));
    }
    if req["n"].as_u64().is_some_and(|n| n > 128) {
        return Some(invalid_param(
            "n",
            "Invalid 'n': integer above maximum value. Expected a value <= 128.",
        ));
    }
    if req["response_format"]["type"] == "json_schema"
        && !req["response_format"]["json_schema"]["schema"].is_object()
    {
        return Some(invalid_param(
            "response_format",
            "Missing required parameter: 'response_format.json_schema.schema'.",
        ));
    }
    None
}

/// The JSON text a structured-output request gets instead of prose: `json_schema` →
/// [`crate::fake::schema_sample`] of the schema, `json_object` → `{"answer": <the text>}`.
fn structured_answer(req: &Value, text: &str) -> Option<String> {
    let f = &req["response_format"];
    match f["type"].as_str() {
        Some("json_schema") => {
            Some(crate::fake::schema_sample(&f["json_schema"]["schema"]).to_string())
        }
        Some("json_object") => Some(json!({ "answer": text }).to_string()),
        _ => None,
    }
}

/// JSON text in two streamed pieces.
fn json_pieces(json: &str) -> Vec<String> {
    let mid = json
        .char_indices()
        .map(|(i, _)| i)
        .find(|i| *i >= json.len() / 2)
        .unwrap_or(0);
    vec![json[..mid].to_string(), json[mid..].to_string()]
}

/// `Some(top_logprobs)` when the request asks for logprobs.
fn logprobs_request(req: &Value) -> Option<u64> {
    (req["logprobs"] == json!(true)).then(|| req["top_logprobs"].as_u64().unwrap_or(0))
}

/// OpenAI's `logprobs` object for the text `pieces` (one token each): logprob -0.5, and `top`
/// alternatives at -0.5, -1.5, ….
pub fn logprobs_json(pieces: &[String], top: u64) -> Value {
    let content: Vec<Value> = pieces
        .iter()
        .map(|t| {
            let alternatives: Vec<Value> = (0..top.min(20))
                .map(|i| {
                    let token = if i == 0 { t.clone() } else { format!("{t}~{i}") };
                    json!({"token": token, "logprob": -0.5 - i as f64, "bytes": token.as_bytes()})
                })
                .collect();
            json!({"token": t, "logprob": -0.5, "bytes": t.as_bytes(), "top_logprobs": alternatives})
        })
        .collect();
    json!({"content": content, "refusal": null})
}

/// The SSE events of one streamed completion.
struct SseEvents {
    role: Bytes,
    contents: Vec<Bytes>,
    /// Finish chunk, optional usage chunk, `[DONE]`.
    tail: Vec<Bytes>,
}

/// Sends the role chunk, the content chunks (each after `delay`) and the tail; with
/// `fail_after = Some(n)` the connection is aborted after `n` content chunks instead.
async fn write_sse(
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    events: SseEvents,
    fail_after: Option<usize>,
    delay: Duration,
) {
    if tx.send(Ok(events.role)).await.is_err() {
        return;
    }
    for (i, ev) in events.contents.into_iter().enumerate() {
        if fail_after == Some(i) {
            break;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if tx.send(Ok(ev)).await.is_err() {
            return;
        }
    }
    if fail_after.is_some() {
        // An error item makes hyper abort the connection (no terminating chunk, no [DONE]).
        // Hyper drops body data it has buffered but not yet written when the body fails, so
        // first let it take and flush the chunks sent so far.
        wait_drained(&tx).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
        let _ = tx
            .send(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "fake openai: mid-stream failure",
            )))
            .await;
        return;
    }
    for ev in events.tail {
        if tx.send(Ok(ev)).await.is_err() {
            return;
        }
    }
}

/// Waits (up to 5 s) until the body has taken every item out of the channel.
async fn wait_drained<T>(tx: &mpsc::Sender<T>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tx.capacity() < tx.max_capacity() && tokio::time::Instant::now() < deadline {
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
