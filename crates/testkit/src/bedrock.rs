//! A fake Bedrock Runtime speaking the Converse API on the wire (parsed by the real
//! `aws-sdk-bedrockruntime` client):
//!
//! - `POST /model/{modelId}/converse` → Converse JSON,
//! - `POST /model/{modelId}/converse-stream` → `application/vnd.amazon.eventstream` frames
//!   (`messageStart`, `contentBlockDelta`…, `contentBlockStop`, `messageStop`, `metadata`),
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
}

/// A parsed Converse request.
struct Request {
    last_user: String,
    input_text: String,
    max_tokens: Option<u64>,
    /// The request carried a `guardrailConfig`.
    guardrail: bool,
    /// The first tool of `toolConfig`, when the last message is a user turn without tool results.
    call_tool: Option<String>,
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
    let first_tool = body
        .pointer("/toolConfig/tools/0/toolSpec/name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let call_tool = first_tool.filter(|_| last_is_user && !tool_results);
    let max_tokens = body
        .get("inferenceConfig")
        .and_then(|c| c.get("maxTokens"))
        .and_then(Value::as_u64);
    Request {
        last_user,
        input_text,
        max_tokens,
        guardrail: body.get("guardrailConfig").is_some(),
        call_tool,
    }
}

/// Records the call and parses the body (`None`: not a JSON object).
fn begin(
    st: &Shared,
    model: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> (Plan, Option<Request>) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let plan = st.begin_call(
        uri.path().to_string(),
        model,
        headers,
        parsed.clone().unwrap_or(Value::Null),
    );
    let req = parsed.filter(Value::is_object).map(|v| parse_request(&v));
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
    let c = Completion::new(
        &plan.label,
        &model,
        &req.last_user,
        &req.input_text,
        req.max_tokens,
    );
    let c = apply_guardrail(c, &req);
    let tool = tool_use(&req, &plan);
    let (content, stop) = match &tool {
        Some(t) => (
            json!([{"toolUse": {"toolUseId": t.id, "name": t.name, "input": t.input()}}]),
            "tool_use",
        ),
        None => (json!([{"text": c.text}]), stop_reason(&c)),
    };
    let body = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": usage(&c),
        "metrics": {"latencyMs": 1},
    });
    let mut resp = axum::Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&plan.request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

fn tool_use(req: &Request, plan: &Plan) -> Option<ToolUse> {
    req.call_tool
        .as_deref()
        .map(|name| ToolUse::new("tooluse_", &plan.request_id, name, &req.last_user))
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

fn usage(c: &Completion) -> Value {
    json!({
        "inputTokens": c.input_tokens,
        "outputTokens": c.output_tokens,
        "totalTokens": c.input_tokens + c.output_tokens,
    })
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
    let c = Completion::new(
        &plan.label,
        &model,
        &req.last_user,
        &req.input_text,
        req.max_tokens,
    );
    let c = apply_guardrail(c, &req);
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
            Some(t) => write_tool_stream(&tx, &c, &t).await,
            None => write_stream(&tx, &c, fail_after, delay, &label, &model).await,
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
    c: &Completion,
    t: &ToolUse,
) -> anyhow::Result<()> {
    let send = |frame: anyhow::Result<Bytes>| async move {
        let frame = frame.map_err(|e| std::io::Error::other(e.to_string()));
        tx.send(frame).await.map_err(|_| anyhow::anyhow!("closed"))
    };
    send(event_frame("messageStart", &json!({"role": "assistant"}))).await?;
    send(event_frame(
        "contentBlockStart",
        &json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": t.id, "name": t.name}}}),
    ))
    .await?;
    for piece in t.pieces() {
        send(event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}}),
        ))
        .await?;
    }
    send(event_frame(
        "contentBlockStop",
        &json!({"contentBlockIndex": 0}),
    ))
    .await?;
    send(event_frame(
        "messageStop",
        &json!({"stopReason": "tool_use"}),
    ))
    .await?;
    send(event_frame(
        "metadata",
        &json!({"usage": usage(c), "metrics": {"latencyMs": 1}}),
    ))
    .await?;
    Ok(())
}

async fn write_stream(
    tx: &mpsc::Sender<Frame>,
    c: &Completion,
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
    for (i, chunk) in c.chunks.iter().enumerate() {
        if fail_after == Some(i) {
            break;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        send(event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": chunk}}),
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
        &json!({"contentBlockIndex": 0}),
    ))
    .await?;
    send(event_frame(
        "messageStop",
        &json!({"stopReason": stop_reason(c)}),
    ))
    .await?;
    send(event_frame(
        "metadata",
        &json!({"usage": usage(c), "metrics": {"latencyMs": 1}}),
    ))
    .await?;
    Ok(())
}
