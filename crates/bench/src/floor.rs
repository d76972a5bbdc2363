//! The floor relay: the gateway's two hops (HTTP/1.1 JSON → gRPC → HTTP/1.1 JSON) with the same
//! libraries (axum/hyper, tonic/h2, prost, reqwest, serde_json, a default multi-thread tokio
//! runtime) and none of the gateway's logic — no authentication, routing, quotas, retries,
//! failover, policy, cache, metrics, audit log, tracing or request records. What it costs per
//! request is the floor those libraries set on this machine; the gateway's figures are read
//! against it.
//!
//! Two processes, like hub and spoke:
//!
//! - [`run_back`] (`floor-relay back`): a tonic server implementing `switchyard.v1.Spoke/Infer`
//!   and `InferStream` (every other RPC answers `UNIMPLEMENTED`). It turns the [`InferRequest`]
//!   into an OpenAI chat body, POSTs it with one pooled reqwest client to
//!   `{upstream}/v1/chat/completions`, parses the JSON answer and returns the text and usage as
//!   an [`InferResponse`] — or, for `InferStream`, asks for a stream and relays the SSE body as it
//!   arrives, one [`InferEvent`] per content chunk ([`stream`]).
//! - [`run_front`] (`floor-relay front`): an axum HTTP/1.1 server on
//!   `POST /v1/chat/completions` that parses the JSON body, builds an [`InferRequest`] (model,
//!   messages as text parts, `max_tokens`), calls the back over one tonic `Channel` (h2c) and
//!   renders an OpenAI `chat.completion` — or, with `"stream": true`, calls `InferStream` and
//!   answers `text/event-stream`, one `chat.completion.chunk` per event, then `data: [DONE]`.
//!
//! Both log `… listening on ADDR` on stderr once bound, which is what
//! `switchyard_testkit::process::Proc` waits for. Accepted and outgoing sockets set
//! `TCP_NODELAY`, as the gateway's do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use switchyard_proto::v1::content_part::Part;
use switchyard_proto::v1::spoke_client::SpokeClient;
use switchyard_proto::v1::spoke_server::{Spoke, SpokeServer};
use switchyard_proto::v1::{
    ContentPart, CountTokensResponse, DescribeRequest, DescribeResponse, EmbedRequest,
    EmbedResponse, GenerationParams, InferEvent, InferRequest, InferResponse, Message, Role,
    StopReason, Usage,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

mod stream;

/// One chat message as the OpenAI API carries it (text content only).
#[derive(Debug, Deserialize, Serialize)]
struct ChatMessage<'a> {
    #[serde(borrow)]
    role: &'a str,
    content: String,
}

/// The fields of an OpenAI chat request the floor reads (the rest is ignored).
#[derive(Debug, Deserialize)]
struct ChatRequest<'a> {
    #[serde(borrow)]
    model: &'a str,
    #[serde(borrow)]
    messages: Vec<ChatMessage<'a>>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    stream: bool,
}

/// The body the back sends upstream.
#[derive(Debug, Serialize)]
struct UpstreamRequest<'a> {
    model: &'a str,
    messages: Vec<UpstreamMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    /// With `stream`: `{"include_usage": true}`, as the spoke asks, so the end carries usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Debug, Serialize)]
struct UpstreamMessage<'a> {
    role: &'static str,
    content: &'a str,
}

/// The fields of an OpenAI `chat.completion` the back reads.
#[derive(Debug, Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<CompletionChoice>,
    #[serde(default)]
    usage: Option<CompletionUsage>,
}

#[derive(Debug, Deserialize)]
struct CompletionChoice {
    message: CompletionMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CompletionMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct CompletionUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
    #[serde(default)]
    total_tokens: u32,
}

/// The `chat.completion` the front answers.
#[derive(Debug, Serialize)]
struct CompletionOut<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChoiceOut<'a>; 1],
    usage: CompletionUsage,
}

#[derive(Debug, Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    message: MessageOut<'a>,
    finish_reason: &'static str,
}

#[derive(Debug, Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: &'a str,
}

/// The back: `Infer` over one pooled HTTP client to the upstream.
#[derive(Debug, Clone)]
struct Back {
    http: reqwest::Client,
    /// `{upstream}/v1/chat/completions`, parsed once.
    url: reqwest::Url,
}

fn role_name(role: i32) -> &'static str {
    match Role::try_from(role) {
        Ok(Role::Assistant) => "assistant",
        Ok(Role::System) => "system",
        Ok(Role::Tool) => "tool",
        _ => "user",
    }
}

fn text_of(m: &Message) -> &str {
    m.content
        .iter()
        .find_map(|p| match &p.part {
            Some(Part::Text(t)) => Some(t.as_str()),
            _ => None,
        })
        .unwrap_or("")
}

fn stop_reason(finish: Option<&str>) -> StopReason {
    match finish {
        Some("length") => StopReason::MaxTokens,
        Some("tool_calls") => StopReason::ToolUse,
        Some("content_filter") => StopReason::ContentFiltered,
        _ => StopReason::EndTurn,
    }
}

fn finish_reason(stop: i32) -> &'static str {
    match StopReason::try_from(stop) {
        Ok(StopReason::MaxTokens) => "length",
        Ok(StopReason::ToolUse) => "tool_calls",
        Ok(StopReason::ContentFiltered) => "content_filter",
        _ => "stop",
    }
}

/// The upstream body for `req`: its first model, its system prompt and messages as text, its
/// `max_tokens`; with `stream`, `"stream": true` and usage in the stream.
fn upstream_body(req: &InferRequest, stream: bool) -> Result<Vec<u8>, Status> {
    let model = req
        .models
        .first()
        .ok_or_else(|| Status::invalid_argument("no model"))?;
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if !req.system.is_empty() {
        messages.push(UpstreamMessage {
            role: "system",
            content: &req.system,
        });
    }
    messages.extend(req.messages.iter().map(|m| UpstreamMessage {
        role: role_name(m.role),
        content: text_of(m),
    }));
    serde_json::to_vec(&UpstreamRequest {
        model,
        messages,
        max_tokens: req.params.as_ref().and_then(|p| p.max_tokens),
        stream,
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
    })
    .map_err(|e| Status::internal(e.to_string()))
}

/// The [`InferResponse`] for the upstream's JSON answer.
fn infer_response(request_id: String, body: &[u8]) -> Result<InferResponse, Status> {
    let answer: Completion = serde_json::from_slice(body)
        .map_err(|e| Status::unavailable(format!("upstream answer: {e}")))?;
    let usage = answer.usage.unwrap_or_default();
    let (text, finish) = answer
        .choices
        .into_iter()
        .next()
        .map(|c| (c.message.content.unwrap_or_default(), c.finish_reason))
        .unwrap_or_default();
    Ok(InferResponse {
        request_id,
        message: Some(Message {
            role: Role::Assistant.into(),
            content: vec![ContentPart {
                part: Some(Part::Text(text)),
            }],
        }),
        stop_reason: stop_reason(finish.as_deref()).into(),
        usage: Some(Usage {
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            ..Usage::default()
        }),
        ..InferResponse::default()
    })
}

impl Back {
    /// POSTs `body` upstream.
    async fn post(&self, body: Vec<u8>) -> Result<reqwest::Response, Status> {
        self.http
            .post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| Status::unavailable(format!("upstream: {e}")))
    }
}

#[tonic::async_trait]
impl Spoke for Back {
    async fn infer(
        &self,
        request: Request<InferRequest>,
    ) -> Result<tonic::Response<InferResponse>, Status> {
        let req = request.into_inner();
        let resp = self.post(upstream_body(&req, false)?).await?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Status::unavailable(format!("upstream body: {e}")))?;
        if !status.is_success() {
            return Err(Status::unavailable(format!("upstream status {status}")));
        }
        infer_response(req.request_id, &bytes).map(tonic::Response::new)
    }

    type InferStreamStream = tonic::codegen::BoxStream<InferEvent>;

    /// Answers once the upstream's headers are in; the events follow as its body arrives.
    async fn infer_stream(
        &self,
        request: Request<InferRequest>,
    ) -> Result<tonic::Response<Self::InferStreamStream>, Status> {
        let resp = self.post(upstream_body(request.get_ref(), true)?).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Status::unavailable(format!("upstream status {status}")));
        }
        let events = stream::infer_events(resp.bytes_stream().boxed());
        Ok(tonic::Response::new(Box::pin(events)))
    }

    async fn describe(
        &self,
        _request: Request<DescribeRequest>,
    ) -> Result<tonic::Response<DescribeResponse>, Status> {
        Err(Status::unimplemented("the floor relay has no Describe"))
    }

    async fn embed(
        &self,
        _request: Request<EmbedRequest>,
    ) -> Result<tonic::Response<EmbedResponse>, Status> {
        Err(Status::unimplemented("the floor relay has no Embed"))
    }

    async fn count_tokens(
        &self,
        _request: Request<InferRequest>,
    ) -> Result<tonic::Response<CountTokensResponse>, Status> {
        Err(Status::unimplemented("the floor relay has no CountTokens"))
    }
}

/// Serves the back on `listen` (port 0 picks one; the bound address is logged as
/// `floor-relay back listening on ADDR`), relaying `Infer` to `upstream` (a base URL such as
/// `http://127.0.0.1:8080`; `/v1/chat/completions` is appended). Runs until the process ends.
pub async fn run_back(listen: SocketAddr, upstream: &str) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(&format!(
        "{}/v1/chat/completions",
        upstream.trim_end_matches('/')
    ))
    .with_context(|| format!("--upstream {upstream} is not a URL"))?;
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let incoming = tonic::transport::server::TcpIncoming::bind(listen)
        .with_context(|| format!("binding {listen}"))?
        .with_nodelay(Some(true));
    let addr = incoming.local_addr()?;
    eprintln!("floor-relay back listening on {addr} upstream={url}");
    tonic::transport::Server::builder()
        .add_service(SpokeServer::new(Back { http, url }))
        .serve_with_incoming(incoming)
        .await
        .context("serving gRPC")
}

/// The front's state: one channel to the back, shared by every request.
#[derive(Debug)]
struct Front {
    back: SpokeClient<Channel>,
    next_id: AtomicU64,
}

impl Front {
    /// A fresh `chatcmpl-floor-N` id.
    fn completion_id(&self) -> String {
        format!(
            "chatcmpl-floor-{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The [`InferRequest`] for an OpenAI chat body: the first `system` message becomes the system
/// prompt, every other message a text part.
fn infer_request(chat: ChatRequest<'_>) -> InferRequest {
    let mut system = String::new();
    let mut messages = Vec::with_capacity(chat.messages.len());
    for m in chat.messages {
        let role = match m.role {
            "system" | "developer" if system.is_empty() && messages.is_empty() => {
                system = m.content;
                continue;
            }
            "assistant" => Role::Assistant,
            "system" | "developer" => Role::System,
            "tool" => Role::Tool,
            _ => Role::User,
        };
        messages.push(Message {
            role: role.into(),
            content: vec![ContentPart {
                part: Some(Part::Text(m.content)),
            }],
        });
    }
    InferRequest {
        models: vec![chat.model.to_string()],
        system,
        messages,
        params: Some(GenerationParams {
            max_tokens: chat.max_tokens,
            ..GenerationParams::default()
        }),
        ..InferRequest::default()
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"error": {"message": message, "type": "floor_relay_error"}});
    (status, axum::Json(body)).into_response()
}

async fn chat_completions(State(front): State<Arc<Front>>, body: Bytes) -> Response {
    let chat: ChatRequest<'_> = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let model = chat.model;
    let stream = chat.stream;
    let req = infer_request(chat);
    let mut client = front.back.clone();
    if stream {
        let events = match client.infer_stream(req).await {
            Ok(r) => r.into_inner(),
            Err(s) => return json_error(StatusCode::BAD_GATEWAY, s.message()),
        };
        let body = stream::sse_body(events, front.completion_id(), unix_now(), model.to_string());
        return (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(body),
        )
            .into_response();
    }
    let answer = match client.infer(req).await {
        Ok(r) => r.into_inner(),
        Err(s) => return json_error(StatusCode::BAD_GATEWAY, s.message()),
    };
    let text = answer.message.as_ref().map(text_of).unwrap_or("");
    let usage = answer.usage.unwrap_or_default();
    let out = CompletionOut {
        id: front.completion_id(),
        object: "chat.completion",
        created: unix_now(),
        model,
        choices: [ChoiceOut {
            index: 0,
            message: MessageOut {
                role: "assistant",
                content: text,
            },
            finish_reason: finish_reason(answer.stop_reason),
        }],
        usage: CompletionUsage {
            prompt_tokens: usage.input_tokens,
            completion_tokens: usage.output_tokens,
            total_tokens: usage.input_tokens.saturating_add(usage.output_tokens),
        },
    };
    match serde_json::to_vec(&out) {
        Ok(b) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Serves the front on `listen` (port 0 picks one; the bound address is logged as
/// `floor-relay front listening on ADDR`), relaying `POST /v1/chat/completions` to the back at
/// `back` over one HTTP/2 channel (connected lazily). Runs until the process ends.
pub async fn run_front(listen: SocketAddr, back: SocketAddr) -> anyhow::Result<()> {
    use axum::serve::ListenerExt as _;

    let channel = Endpoint::from_shared(format!("http://{back}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    let front = Arc::new(Front {
        back: SpokeClient::new(channel),
        next_id: AtomicU64::new(1),
    });
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .with_state(front);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    eprintln!("floor-relay front listening on {addr} back={back}");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.context("serving HTTP")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_to_infer_to_upstream_body() -> anyhow::Result<()> {
        let body = br#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"max_tokens":7}"#;
        let req = infer_request(serde_json::from_slice(body)?);
        assert_eq!(req.models, ["m"]);
        assert_eq!(req.system, "be brief");
        assert_eq!(req.messages.len(), 1);
        assert_eq!(text_of(&req.messages[0]), "hi");
        let up: serde_json::Value = serde_json::from_slice(&upstream_body(&req, false)?)?;
        assert_eq!(
            up,
            serde_json::json!({"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"max_tokens":7})
        );
        Ok(())
    }

    #[test]
    fn streamed_chat_asks_for_a_stream_with_usage() -> anyhow::Result<()> {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let chat: ChatRequest<'_> = serde_json::from_slice(body)?;
        assert!(chat.stream);
        let up: serde_json::Value =
            serde_json::from_slice(&upstream_body(&infer_request(chat), true)?)?;
        assert_eq!(
            up,
            serde_json::json!({"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}})
        );
        Ok(())
    }

    #[test]
    fn upstream_answer_to_response() -> anyhow::Result<()> {
        let body = br#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#;
        let r = infer_response("rid".into(), body)?;
        assert_eq!(r.request_id, "rid");
        assert_eq!(r.message.as_ref().map(text_of), Some("hello"));
        assert_eq!(finish_reason(r.stop_reason), "length");
        let u = r.usage.unwrap_or_default();
        assert_eq!((u.input_tokens, u.output_tokens), (3, 5));
        Ok(())
    }
}
