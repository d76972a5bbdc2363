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
    let tool = req
        .pointer("/tools/0/function/name")
        .and_then(Value::as_str)
        .filter(|_| last_is_user)
        .map(|name| ToolUse::new("call_", &plan.request_id, name, &last_user));
    let max_tokens = req
        .get("max_completion_tokens")
        .or_else(|| req.get("max_tokens"))
        .and_then(Value::as_u64);
    let c = Completion::new(&plan.label, &model, &last_user, &input_text, max_tokens);
    let id = format!("chatcmpl-{}", plan.request_id);
    let created = now_secs();
    let finish_reason = if tool.is_some() {
        "tool_calls"
    } else if c.truncated {
        "length"
    } else {
        "stop"
    };
    let usage = json!({
        "prompt_tokens": c.input_tokens,
        "completion_tokens": c.output_tokens,
        "total_tokens": c.input_tokens + c.output_tokens,
    });

    if !streaming {
        let message = match &tool {
            Some(t) => {
                json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                    {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                ]})
            }
            None => json!({"role": "assistant", "content": c.text, "refusal": null}),
        };
        return axum::Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
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
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
        None,
    );
    let contents: Vec<Bytes> = match &tool {
        Some(t) => {
            let first = json!({"tool_calls": [{"index": 0, "id": t.id, "type": "function",
                "function": {"name": t.name, "arguments": ""}}]});
            std::iter::once(first)
                .chain(t.pieces().into_iter().map(|p| {
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
                }))
                .map(|delta| {
                    chunk(
                        json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]),
                        None,
                    )
                })
                .collect()
        }
        None => c
            .chunks
            .iter()
            .map(|text| {
                chunk(
                    json!([{"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}]),
                    None,
                )
            })
            .collect(),
    };
    let mut tail = vec![chunk(
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason}]),
        None,
    )];
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
