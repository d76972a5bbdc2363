//! In-process fakes: a tonic `switchyard.v1.Spoke` server whose behaviour tests switch at run
//! time, and a hub started on 127.0.0.1:0.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::Stream;
use parking_lot::Mutex;
use switchyard_hub::config::HubConfig;
use switchyard_hub::state::Hub;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::spoke_server::{Spoke, SpokeServer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Ok,
    /// RESOURCE_EXHAUSTED with `retry-after-ms`.
    Exhausted(u64),
    /// UNAVAILABLE from the spoke's logic (with attempts metadata).
    Unavailable,
    /// UNAVAILABLE without metadata: looks like a broken connection.
    Broken,
    /// Streams: one delta, then UNAVAILABLE.
    FailAfterFirstDelta,
    /// Sleeps before answering.
    Slow(Duration),
}

pub struct FakeSpoke {
    pub account: String,
    /// `Describe.provider` and the route's provider (`"fake"` unless set with
    /// [`start_spoke_as`]).
    pub provider: String,
    /// The capabilities `Describe` reports for every model (see [`default_caps`]).
    pub caps: Mutex<pb::Capabilities>,
    /// Every request received (unary and streamed), in order.
    pub requests: Mutex<Vec<pb::InferRequest>>,
    pub models: Vec<String>,
    pub mode: Mutex<Mode>,
    pub headroom: Mutex<f64>,
    pub calls: AtomicU64,
    pub last_request: Mutex<Option<(pb::InferRequest, Option<String>, Option<String>)>>,
    pub chunks: usize,
    pub chunk_delay: Duration,
    /// Answers a test set ([`FakeSpoke::answer_with`], [`FakeSpoke::stream_with`]).
    pub scripted: Mutex<Scripted>,
}

/// What the fake answers instead of its made-up text, when a test sets it.
#[derive(Debug, Default, Clone)]
pub struct Scripted {
    /// `Infer`'s answer (request id and, when unset, route filled in).
    pub response: Option<pb::InferResponse>,
    /// `InferStream`'s events after the fake's own `start` (each after the spoke's
    /// `chunk_delay`): deltas and an end.
    pub events: Option<Vec<pb::InferEvent>>,
}

/// A stream delta event.
pub fn delta_event(d: pb::StreamDelta) -> pb::InferEvent {
    pb::InferEvent {
        event: Some(pb::infer_event::Event::Delta(d)),
    }
}

/// A stream end event.
pub fn end_event(e: pb::StreamEnd) -> pb::InferEvent {
    pb::InferEvent {
        event: Some(pb::infer_event::Event::End(e)),
    }
}

impl FakeSpoke {
    pub fn set_mode(&self, m: Mode) {
        *self.mode.lock() = m;
    }
    /// `Infer` answers `resp` from now on (thinking parts, `more_choices`, logprobs, usage
    /// details: whatever the test gives).
    pub fn answer_with(&self, resp: pb::InferResponse) {
        self.scripted.lock().response = Some(resp);
    }
    /// `InferStream` streams `events` (after its start event) from now on.
    pub fn stream_with(&self, events: Vec<pb::InferEvent>) {
        self.scripted.lock().events = Some(events);
    }
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
    /// The last request received (unary or streamed).
    pub fn last(&self) -> Option<pb::InferRequest> {
        self.requests.lock().last().cloned()
    }
    fn route(&self, req: &pb::InferRequest) -> pb::Route {
        pb::Route {
            provider: self.provider.clone(),
            account: self.account.clone(),
            region: "us-test-1".into(),
            model: req.models.first().cloned().unwrap_or_default(),
        }
    }
    fn error(&self, mode: &Mode) -> Option<Status> {
        let mut s = match mode {
            Mode::Exhausted(ms) => {
                let mut s = Status::resource_exhausted("account quota exhausted");
                s.metadata_mut().insert(
                    switchyard_proto::RETRY_AFTER_MS,
                    ms.to_string().parse().unwrap(),
                );
                s
            }
            Mode::Unavailable => Status::unavailable("upstream 503"),
            Mode::Broken => return Some(Status::unavailable("connection reset")),
            Mode::Ok | Mode::FailAfterFirstDelta | Mode::Slow(_) => return None,
        };
        s.metadata_mut()
            .insert(switchyard_proto::ATTEMPTS, "1".parse().unwrap());
        Some(s)
    }
}

#[derive(Clone)]
pub struct Svc(pub Arc<FakeSpoke>);

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::InferEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Spoke for Svc {
    async fn infer(
        &self,
        request: Request<pb::InferRequest>,
    ) -> Result<Response<pb::InferResponse>, Status> {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        let rid = request
            .metadata()
            .get(switchyard_proto::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let req = request.into_inner();
        self.0.requests.lock().push(req.clone());
        *self.0.last_request.lock() = Some((req.clone(), rid, timeout));
        let mode = self.0.mode.lock().clone();
        if let Mode::Slow(d) = mode {
            tokio::time::sleep(d).await;
        }
        if let Some(s) = self.0.error(&mode) {
            return Err(s);
        }
        if let Some(mut resp) = self.0.scripted.lock().response.clone() {
            resp.request_id.clone_from(&req.request_id);
            if resp.route.is_none() {
                resp.route = Some(self.0.route(&req));
            }
            return Ok(Response::new(resp));
        }
        Ok(Response::new(pb::InferResponse {
            request_id: req.request_id.clone(),
            message: Some(pb::Message {
                role: pb::Role::Assistant as i32,
                content: vec![pb::ContentPart {
                    part: Some(pb::content_part::Part::Text(format!(
                        "hello from {}",
                        self.0.account
                    ))),
                }],
            }),
            stop_reason: pb::StopReason::EndTurn as i32,
            usage: Some(pb::Usage {
                input_tokens: 5,
                output_tokens: 3,
                ..Default::default()
            }),
            route: Some(self.0.route(&req)),
            attempts: vec![],
            ..Default::default()
        }))
    }

    type InferStreamStream = EventStream;

    async fn infer_stream(
        &self,
        request: Request<pb::InferRequest>,
    ) -> Result<Response<Self::InferStreamStream>, Status> {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        let req = request.into_inner();
        self.0.requests.lock().push(req.clone());
        let mode = self.0.mode.lock().clone();
        if let Some(s) = self.0.error(&mode) {
            return Err(s);
        }
        let route = self.0.route(&req);
        if let Some(events) = self.0.scripted.lock().events.clone() {
            let start = pb::InferEvent {
                event: Some(pb::infer_event::Event::Start(pb::StreamStart {
                    request_id: req.request_id.clone(),
                    route: Some(route),
                    attempts: vec![],
                })),
            };
            let delay = self.0.chunk_delay;
            let s = async_stream::stream! {
                yield Ok(start);
                for ev in events {
                    tokio::time::sleep(delay).await;
                    yield Ok(ev);
                }
            };
            return Ok(Response::new(Box::pin(s)));
        }
        let chunks = self.0.chunks;
        let delay = self.0.chunk_delay;
        let account = self.0.account.clone();
        let s = async_stream::stream! {
                    if let Mode::Slow(d) = mode { tokio::time::sleep(d).await; }
                    yield Ok(pb::InferEvent { event: Some(pb::infer_event::Event::Start(pb::StreamStart {
                        request_id: req.request_id.clone(), route: Some(route), attempts: vec![] })) });
                    for i in 0..chunks {
                        if i > 0 { tokio::time::sleep(delay).await; }
                        yield Ok(pb::InferEvent { event: Some(pb::infer_event::Event::Delta(pb::StreamDelta {
                            text: format!("{account}-{i} "), tool_call: None
        , ..Default::default()
        })) });
                        if mode == Mode::FailAfterFirstDelta {
                            let mut s = Status::unavailable("upstream died mid-stream");
                            s.metadata_mut().insert(switchyard_proto::ATTEMPTS, "1".parse().unwrap());
                            yield Err(s);
                            return;
                        }
                    }
                    yield Ok(pb::InferEvent { event: Some(pb::infer_event::Event::End(pb::StreamEnd {
                        stop_reason: pb::StopReason::EndTurn as i32,
                        usage: Some(pb::Usage { input_tokens: 5, output_tokens: chunks as u32, ..Default::default() }),
                        ..Default::default() })) });
                };
        Ok(Response::new(Box::pin(s)))
    }

    async fn embed(
        &self,
        _request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        Err(Status::unimplemented(
            "the in-process test spoke does not embed",
        ))
    }

    async fn count_tokens(
        &self,
        _request: Request<pb::InferRequest>,
    ) -> Result<Response<pb::CountTokensResponse>, Status> {
        Err(Status::unimplemented(
            "the in-process test spoke does not count tokens",
        ))
    }

    async fn describe(
        &self,
        _request: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::DescribeResponse>, Status> {
        let headroom = *self.0.headroom.lock();
        let caps = *self.0.caps.lock();
        Ok(Response::new(pb::DescribeResponse {
            provider: self.0.provider.clone(),
            account: self.0.account.clone(),
            models: self
                .0
                .models
                .iter()
                .map(|m| pb::ModelStatus {
                    id: m.clone(),
                    capabilities: Some(caps),
                    regions: vec![],
                })
                .collect(),
            headroom,
            serving: headroom > 0.0,
            draining: false,
        }))
    }
}

pub struct SpokeHandle {
    pub addr: SocketAddr,
    pub fake: Arc<FakeSpoke>,
    pub stop: CancellationToken,
    pub health: tonic_health::server::HealthReporter,
}

impl SpokeHandle {
    pub async fn set_serving(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.health.set_service_status("", status).await;
    }
}

impl Drop for SpokeHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn start_spoke(account: &str, models: &[&str]) -> SpokeHandle {
    start_spoke_with(account, models, 3, Duration::ZERO, "127.0.0.1:0").await
}

/// What the fake spoke's `Describe` reports unless a test sets `caps`: streaming, no tools, no
/// images, a 100 000-token window, none of the contract-1.3 capabilities.
pub fn default_caps() -> pb::Capabilities {
    pb::Capabilities {
        streaming: true,
        tools: false,
        images: false,
        context_window: 100_000,
        ..Default::default()
    }
}

/// A fake spoke whose `Describe` says `provider` (`"openai"`, `"anthropic"`, `"bedrock"`,
/// `"simulated"`, …) and `caps` for every model.
pub async fn start_spoke_as(
    account: &str,
    models: &[&str],
    provider: &str,
    caps: pb::Capabilities,
) -> SpokeHandle {
    start_spoke_full(
        account,
        models,
        3,
        Duration::ZERO,
        "127.0.0.1:0",
        provider,
        caps,
    )
    .await
}

pub async fn start_spoke_with(
    account: &str,
    models: &[&str],
    chunks: usize,
    chunk_delay: Duration,
    listen: &str,
) -> SpokeHandle {
    start_spoke_full(
        account,
        models,
        chunks,
        chunk_delay,
        listen,
        "fake",
        default_caps(),
    )
    .await
}

async fn start_spoke_full(
    account: &str,
    models: &[&str],
    chunks: usize,
    chunk_delay: Duration,
    listen: &str,
    provider: &str,
    caps: pb::Capabilities,
) -> SpokeHandle {
    let fake = Arc::new(FakeSpoke {
        account: account.into(),
        provider: provider.into(),
        caps: Mutex::new(caps),
        requests: Mutex::new(Vec::new()),
        models: models.iter().map(|m| m.to_string()).collect(),
        mode: Mutex::new(Mode::Ok),
        headroom: Mutex::new(1.0),
        calls: AtomicU64::new(0),
        last_request: Mutex::new(None),
        chunks,
        chunk_delay,
        scripted: Mutex::new(Scripted::default()),
    });
    let listener = TcpListener::bind(listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    let stop = CancellationToken::new();
    let s = stop.clone();
    let svc = SpokeServer::new(Svc(fake.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(health_svc)
            .add_service(svc)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                s.cancelled_owned(),
            )
            .await
            .unwrap();
    });
    SpokeHandle {
        addr,
        fake,
        stop,
        health,
    }
}

pub struct HubHandle {
    pub addr: SocketAddr,
    pub hub: Arc<Hub>,
    pub stop: CancellationToken,
    pub done: tokio::task::JoinHandle<()>,
}

impl HubHandle {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    pub fn healthy_count(&self, provider: &str) -> usize {
        let t = self.hub.table.load();
        t.pools[provider]
            .spokes()
            .iter()
            .filter(|s| s.is_healthy())
            .count()
    }
    pub async fn wait_healthy(&self, provider: &str, n: usize) {
        eventually(Duration::from_secs(10), || {
            self.healthy_count(provider) == n
        })
        .await;
    }
}

impl Drop for HubHandle {
    fn drop(&mut self) {
        self.stop.cancel();
        self.hub.stop.cancel();
    }
}

pub const KEY: &str = "sk-test-key";
pub const OTHER_KEY: &str = "sk-limited-key";

pub fn sha(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// Standard tenants: `KEY` may use everything, `OTHER_KEY` only `demo`.
pub fn tenants_toml() -> String {
    format!(
        r#"
[[tenants]]
name = "full"
api_key_sha256 = ["{}"]
aliases = ["*"]

[[tenants]]
name = "limited"
api_key_sha256 = ["{}"]
aliases = ["demo"]
"#,
        sha(KEY),
        sha(OTHER_KEY)
    )
}

pub async fn start_hub(body: &str) -> HubHandle {
    let text = format!("listen = \"127.0.0.1:0\"\n{body}\n{}", tenants_toml());
    let settings = HubConfig::parse(&text).unwrap().validate().unwrap();
    let drain = settings.drain_timeout;
    let hub = Hub::start(settings);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let app = switchyard_hub::router(hub.clone());
    let done = tokio::spawn(async move {
        switchyard_hub::serve::serve(listener, app, None, s.cancelled_owned(), drain)
            .await
            .unwrap();
    });
    HubHandle {
        addr,
        hub,
        stop,
        done,
    }
}

pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "stream": stream,
        "stream_options": {"include_usage": true},
        "max_tokens": 16,
    })
}

/// Parses an SSE body into its `data:` payloads.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim().to_string())
        .collect()
}
