//! Per-request observability of the hub, recorded in one place: a [`RequestRecord`] follows each
//! client request of every surface (OpenAI chat and prompts, Anthropic Messages, Bedrock
//! Converse, embeddings) — into its stream when it streams — and, when its last handle is
//! dropped at the very end, emits the metrics, the audit line and the final span attributes.
//! See docs/observability.md.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};
use metrics::{counter, gauge, histogram};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_core::telemetry::{self, OpenTelemetrySpanExt};
use tracing::Span;
use tracing::field::Empty;

use crate::audit::{AuditAttempt, upstream_attempts};
use crate::config::Candidate;
use crate::error::{AttemptFailure, FailedAttempt, HubError};
use crate::hub::RouteTaken;

/// Response header with the request's cost in USD (non-streaming responses).
pub const COST_HEADER: &str = "x-switchyard-cost-usd";
/// Response headers set by the response cache and prompt templates (#10), copied to the audit.
pub const CACHE_HEADER: &str = "x-switchyard-cache";
pub const PROMPT_HEADER: &str = "x-switchyard-prompt";

/// `[metrics]`: who may read `GET /metrics`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Require the admin key (`[admin]`) on `/metrics` (default false: open, like most
    /// Prometheus targets; put the hub's listener on a private network instead).
    #[serde(default)]
    pub require_admin: bool,
}

/// One model's price, USD per million tokens.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

/// Every metric family of the hub, with its `# HELP` text: the meaning column of the hub's
/// metric table in `docs/observability.md` (tests/observability_e2e.rs checks they agree).
pub const METRIC_FAMILIES: &[switchyard_core::prom::Family] = {
    use switchyard_core::prom::Kind;
    &[
        (
            "switchyard_requests_total",
            Kind::Counter,
            "client requests of every surface, counted when they end",
        ),
        (
            "switchyard_request_errors_total",
            Kind::Counter,
            "requests that did not end ok; error is the error code (invalid_api_key, no_route_available, rate_limit_exceeded, stream_interrupted, …)",
        ),
        (
            "switchyard_request_duration_seconds",
            Kind::Histogram,
            "whole request (streams: until the stream ends)",
        ),
        (
            "switchyard_tokens_total",
            Kind::Counter,
            "tokens used, by direction (input, output)",
        ),
        (
            "switchyard_cost_usd_micros_total",
            Kind::Counter,
            "cost in millionths of a USD (rounded per request; divide by 1e6)",
        ),
        (
            "switchyard_failovers_total",
            Kind::Counter,
            "failed spoke attempts by reason (exhausted, unavailable, transport, not_served, timeout, attempt_timeout)",
        ),
        (
            "switchyard_retries_total",
            Kind::Counter,
            "spoke attempts after the first, by the pool tried and the previous attempt's failure reason",
        ),
        (
            "switchyard_in_flight_requests",
            Kind::Gauge,
            "client requests in progress (streams included)",
        ),
        (
            "switchyard_in_flight_streams",
            Kind::Gauge,
            "streams in progress (OpenAI and Anthropic SSE, Converse event streams)",
        ),
        (
            "switchyard_overhead_seconds",
            Kind::Histogram,
            "the gateway's own added latency: time from request received to response ready (streams: to the stream committing, i.e. its head) minus time spent waiting on spokes",
        ),
        (
            "switchyard_time_to_first_token_seconds",
            Kind::Histogram,
            "streams: from request received to first content chunk",
        ),
        (
            "switchyard_cache_requests_total",
            Kind::Counter,
            "cacheable chat requests by how the response cache served them (refused ones not counted)",
        ),
        (
            "switchyard_prompt_requests_total",
            Kind::Counter,
            "chat requests expanded from a prompt template",
        ),
        (
            "switchyard_config_reloads_total",
            Kind::Counter,
            "config file reloads by result: ok (applied) or rejected (the old config stays)",
        ),
        (
            "switchyard_spoke_healthy",
            Kind::Gauge,
            "1 when the spoke is routable (health checks)",
        ),
        (
            "switchyard_spoke_breaker_open",
            Kind::Gauge,
            "1 while the spoke is passively ejected (waiting for a probe)",
        ),
        (
            "switchyard_spoke_headroom",
            Kind::Gauge,
            "headroom (0–1) the spoke last reported",
        ),
        (
            "switchyard_spoke_in_flight",
            Kind::Gauge,
            "calls in flight on the spoke",
        ),
        (
            "switchyard_reported_headroom",
            Kind::Gauge,
            "headroom per route as the spoke last reported it (Describe)",
        ),
    ]
};

/// `GET /metrics`: Prometheus text. Pool gauges (spoke health, breaker, headroom) are refreshed
/// from the live table at scrape time. Open unless `[metrics] require_admin = true`.
pub async fn metrics_handler(
    axum::extract::State(hub): axum::extract::State<Arc<crate::hub::Hub>>,
    headers: HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if hub.settings.metrics.require_admin
        && let Err(e) = crate::admin::require_admin(&hub, &headers)
    {
        return e.into_response();
    }
    let table = hub.table.load();
    for (name, pool) in &table.pools {
        for s in pool.spokes().iter() {
            let snap = s.snapshot();
            let d = snap.described.clone().unwrap_or_default();
            let account = label(&d.account);
            let spoke = snap.addr.to_string();
            let l = [
                ("pool", name.clone()),
                ("spoke", spoke.clone()),
                ("account", account.clone()),
            ];
            gauge!("switchyard_spoke_healthy", &l).set(if snap.healthy { 1.0 } else { 0.0 });
            gauge!("switchyard_spoke_breaker_open", &l).set(if snap.ejected { 1.0 } else { 0.0 });
            gauge!("switchyard_spoke_headroom", &l).set(d.headroom);
            gauge!("switchyard_spoke_in_flight", &l).set(f64::from(snap.in_flight));
            for r in &d.regions {
                gauge!(
                    "switchyard_reported_headroom",
                    "pool" => name.clone(),
                    "account" => account.clone(),
                    "region" => r.region.clone(),
                    "model" => r.model.clone()
                )
                .set(r.headroom);
            }
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        switchyard_core::prom::render_with_help(METRIC_FAMILIES),
    )
        .into_response()
}

/// gRPC request metadata as a trace-context injection target.
pub struct MetadataInjector<'a>(pub &'a mut tonic::metadata::MetadataMap);

impl opentelemetry::propagation::Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// GenAI semantic-convention provider name for a spoke's provider kind.
pub fn genai_provider(kind: &str) -> &str {
    match kind {
        "bedrock" => "aws.bedrock",
        "anthropic" => "anthropic",
        "openai" => "openai",
        other => other,
    }
}

/// The client surface a request came through: a bounded label (`surface`) on the request
/// metrics and a field of the audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `POST /v1/chat/completions` and `POST /v1/prompts/{name}`.
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /model/{id}/converse` and `/converse-stream`.
    Converse,
    /// `POST /v1/embeddings`.
    Embeddings,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::OpenAi => "openai",
            Surface::Anthropic => "anthropic",
            Surface::Converse => "converse",
            Surface::Embeddings => "embeddings",
        }
    }

    /// The GenAI `gen_ai.operation.name` of the surface's requests.
    pub fn operation(self) -> &'static str {
        match self {
            Surface::Embeddings => "embeddings",
            _ => "chat",
        }
    }
}

/// The request parameters a surface decoded, for the span's GenAI attributes (whatever the
/// wire format).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestInfo {
    /// The model (alias) the client asked for.
    pub model: String,
    pub stream: bool,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
}

impl RequestInfo {
    /// From an OpenAI chat request (`max_completion_tokens` wins over `max_tokens`).
    pub fn chat(req: &crate::openai::ChatRequest) -> Self {
        Self {
            model: req.model.clone(),
            stream: req.stream,
            max_tokens: req.max_completion_tokens.or(req.max_tokens),
            temperature: req.temperature,
            top_p: req.top_p,
        }
    }

    /// From the internal request a surface translated (Anthropic, Converse, embeddings).
    pub fn infer(model: &str, stream: bool, req: &switchyard_proto::v1::InferRequest) -> Self {
        let p = req.params.clone().unwrap_or_default();
        Self {
            model: model.to_string(),
            stream,
            max_tokens: p.max_tokens.filter(|m| *m > 0),
            temperature: p.temperature,
            top_p: p.top_p,
        }
    }
}

/// An OpenAI chat request's messages for content capture: `[{"role","content"}]`.
pub fn chat_messages(req: &crate::openai::ChatRequest) -> Value {
    Value::Array(
        req.messages
            .iter()
            .map(|m| json!({"role": m.role, "content": message_text(m)}))
            .collect(),
    )
}

/// An internal request's messages for content capture: `[{"role","content"}]`, the system
/// prompt first when there is one, each message's text parts joined.
pub fn infer_messages(req: &switchyard_proto::v1::InferRequest) -> Value {
    use switchyard_proto::v1 as pb;
    let mut out = Vec::with_capacity(req.messages.len() + 1);
    if !req.system.is_empty() {
        out.push(json!({"role": "system", "content": req.system}));
    }
    for m in &req.messages {
        let role = match pb::Role::try_from(m.role).unwrap_or(pb::Role::Unspecified) {
            pb::Role::Assistant => "assistant",
            pb::Role::Tool => "tool",
            _ => "user",
        };
        let text: String = m
            .content
            .iter()
            .filter_map(|p| match &p.part {
                Some(pb::content_part::Part::Text(t)) => Some(t.as_str()),
                Some(pb::content_part::Part::ToolResult(r)) => Some(r.content.as_str()),
                _ => None,
            })
            .collect();
        out.push(json!({"role": role, "content": text}));
    }
    Value::Array(out)
}

/// The root span of one client request, child of the client's `traceparent` when it sent one.
/// `operation` is the GenAI operation (`chat`, `embeddings`). `Span::none()` when tracing is off.
pub fn request_span(headers: &HeaderMap, request_id: &str, operation: &'static str) -> Span {
    if !telemetry::tracing_enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "hub.request",
        switchyard.span = "hub.request",
        otel.kind = "server",
        otel.status_code = Empty,
        switchyard.request_id = %request_id,
        switchyard.tenant = Empty,
        switchyard.alias = Empty,
        switchyard.stream = Empty,
        switchyard.attempts = Empty,
        switchyard.route.account = Empty,
        switchyard.route.region = Empty,
        switchyard.cost_usd = Empty,
        gen_ai.operation.name = operation,
        gen_ai.provider.name = Empty,
        gen_ai.request.model = Empty,
        gen_ai.request.max_tokens = Empty,
        gen_ai.request.temperature = Empty,
        gen_ai.request.top_p = Empty,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.input.messages = Empty,
        http.response.status_code = Empty,
        error.type = Empty,
    );
    telemetry::extract(&span, &telemetry::HeaderCarrier(headers));
    span
}

/// The span of route selection (candidate ordering) inside the request span.
pub fn route_span(alias: &str, candidates: usize) -> Span {
    if !telemetry::tracing_enabled() {
        return Span::none();
    }
    tracing::info_span!(
        "hub.route",
        switchyard.span = "hub.route",
        otel.name = "route selection",
        switchyard.alias = %alias,
        switchyard.candidates = telemetry::int(candidates)
    )
}

/// The span of one attempt at a spoke (client side of the gRPC call).
pub fn attempt_span(cand: &Candidate, spoke: std::net::SocketAddr, n: u32) -> Span {
    if !telemetry::tracing_enabled() {
        return Span::none();
    }
    tracing::info_span!(
        "hub.spoke_attempt",
        switchyard.span = "hub.spoke_attempt",
        otel.name = "spoke attempt",
        otel.kind = "client",
        otel.status_code = Empty,
        switchyard.attempt = telemetry::int(n),
        switchyard.spoke = %spoke,
        switchyard.pool = %cand.provider,
        switchyard.route.account = Empty,
        switchyard.route.region = Empty,
        switchyard.failover.reason = Empty,
        gen_ai.request.model = %cand.model,
        gen_ai.response.model = Empty,
        error.type = Empty,
    )
}

/// A reason label for an attempt failure.
pub fn failure_reason(kind: &AttemptFailure) -> &'static str {
    match kind {
        AttemptFailure::Exhausted { .. } => "exhausted",
        AttemptFailure::Unavailable => "unavailable",
        AttemptFailure::Transport => "transport",
        AttemptFailure::NotServed => "not_served",
        AttemptFailure::Timeout => "timeout",
        AttemptFailure::AttemptTimeout => "attempt_timeout",
    }
}

/// Records a failed attempt: span attributes and `switchyard_failovers_total`.
pub fn attempt_failed(span: &Span, pool: &str, kind: &AttemptFailure) {
    let reason = failure_reason(kind);
    span.record("switchyard.failover.reason", reason);
    span.record("error.type", reason);
    span.record("otel.status_code", "ERROR");
    counter!("switchyard_failovers_total", "pool" => pool.to_string(), "reason" => reason)
        .increment(1);
}

/// Records a successful attempt on its span.
pub fn attempt_ok(span: &Span, route: &switchyard_proto::v1::Route) {
    span.record("switchyard.route.account", route.account.as_str());
    span.record("switchyard.route.region", route.region.as_str());
    span.record("gen_ai.response.model", route.model.as_str());
}

/// A retry (an attempt after the first) on `pool`, labelled with the previous attempt's failure.
pub fn retried(pool: &str, after: Option<&FailedAttempt>) {
    let reason = after.map_or("none", |a| failure_reason(&a.kind));
    counter!("switchyard_retries_total", "pool" => pool.to_string(), "reason" => reason)
        .increment(1);
}

#[derive(Debug)]
struct Inner {
    sink: Option<Arc<crate::audit::AuditSink>>,
    span: Span,
    surface: Surface,
    request_id: String,
    started: Instant,
    time: SystemTime,
    tenant: String,
    alias: String,
    stream: bool,
    route: Option<RouteTaken>,
    usage: Option<(u32, u32)>,
    failed: Vec<FailedAttempt>,
    status: u16,
    error: Option<String>,
    first_token: Option<Duration>,
    cache: Option<String>,
    prompt: Option<String>,
    messages: Option<serde_json::Value>,
    in_flight_stream: bool,
    /// The alias's candidate models: the only values the `model` label takes (else "other").
    models: Vec<String>,
    /// The serving spoke's attempts (audit).
    upstream: Vec<Value>,
    /// Time the hub itself added before the response head (total minus waiting on spokes).
    overhead: Option<Duration>,
}

/// The record's state, shared by its handles; emits everything when the last handle goes.
#[derive(Debug)]
struct Shared(Mutex<Inner>);

/// Follows one client request; emits metrics, audit line and span attributes when its last
/// handle is dropped (a streamed request has two: the handler's and the stream's, see
/// [`RequestRecord::share_with_stream`]).
#[derive(Debug, Default)]
pub struct RequestRecord(Option<Arc<Shared>>);

impl RequestRecord {
    pub fn start(
        sink: Option<Arc<crate::audit::AuditSink>>,
        request_id: &str,
        span: Span,
        surface: Surface,
    ) -> Self {
        gauge!("switchyard_in_flight_requests").increment(1.0);
        Self(Some(Arc::new(Shared(Mutex::new(Inner {
            sink,
            span,
            surface,
            request_id: request_id.to_string(),
            started: Instant::now(),
            time: SystemTime::now(),
            tenant: String::new(),
            alias: String::new(),
            stream: false,
            route: None,
            usage: None,
            failed: Vec::new(),
            status: 0,
            error: None,
            first_token: None,
            cache: None,
            prompt: None,
            messages: None,
            in_flight_stream: false,
            models: Vec::new(),
            upstream: Vec::new(),
            overhead: None,
        })))))
    }

    /// Runs `f` on the record's state (no-op on a default, recordless `RequestRecord`).
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> Option<R> {
        let shared = self.0.as_ref()?;
        let mut inner = shared.0.lock();
        Some(f(&mut inner))
    }

    pub fn span(&self) -> Span {
        self.with(|i| i.span.clone()).unwrap_or_else(Span::none)
    }

    pub fn set_tenant(&mut self, tenant: &str) {
        self.with(|i| {
            i.tenant = tenant.to_string();
            i.span.record("switchyard.tenant", tenant);
        });
    }

    /// The resolved alias and the request's parameters. `messages` builds the request's
    /// messages (`[{"role","content"}]`, see [`chat_messages`] and [`infer_messages`]); it is
    /// only called when content capture is on (spans or audit).
    pub fn set_request(
        &mut self,
        alias: &crate::config::Alias,
        req: &RequestInfo,
        messages: impl FnOnce() -> Value,
    ) {
        self.with(|i| {
            i.models = alias.candidates.iter().map(|c| c.model.clone()).collect();
            let alias = alias.name.as_str();
            i.alias = alias.to_string();
            i.stream = req.stream;
            let s = &i.span;
            s.record("switchyard.alias", alias);
            s.record("switchyard.stream", req.stream);
            s.record("gen_ai.request.model", req.model.as_str());
            set_span_name(s, format!("{} {}", i.surface.operation(), req.model));
            if let Some(m) = req.max_tokens {
                s.record("gen_ai.request.max_tokens", telemetry::int(m));
            }
            if let Some(t) = req.temperature {
                s.record("gen_ai.request.temperature", telemetry::float(t));
            }
            if let Some(t) = req.top_p {
                s.record("gen_ai.request.top_p", telemetry::float(t));
            }
            let capture_audit = i.sink.as_ref().is_some_and(|s| s.capture_content);
            if telemetry::capture_content() || capture_audit {
                let msgs = messages();
                if telemetry::capture_content() {
                    s.record("gen_ai.input.messages", msgs.to_string().as_str());
                }
                if capture_audit {
                    i.messages = Some(msgs);
                }
            }
        });
    }

    /// The route that served the request and its usage.
    pub fn set_route(
        &mut self,
        route: &RouteTaken,
        usage: Option<&switchyard_proto::v1::Usage>,
        upstream: &[switchyard_proto::v1::Attempt],
    ) {
        self.with(|i| {
            i.overhead = Some(i.started.elapsed().saturating_sub(route.spoke_time));
            i.upstream = upstream_attempts(upstream);
            i.route = Some(route.clone());
            i.failed = route.failed.clone();
            if let Some(u) = usage {
                i.usage = Some((u.input_tokens, u.output_tokens));
            }
        });
    }

    pub fn set_usage(&mut self, usage: Option<&switchyard_proto::v1::Usage>) {
        if let Some(u) = usage {
            self.with(|i| i.usage = Some((u.input_tokens, u.output_tokens)));
        }
    }

    /// The request failed with `e` (its attempts are kept).
    pub fn set_error(&mut self, e: &HubError) {
        self.with(|i| {
            i.status = e.status().as_u16();
            i.error = Some(e.type_and_code().1.to_string());
            match e {
                HubError::Exhausted { attempts, .. }
                | HubError::NoRoute { attempts }
                | HubError::DeadlineExceeded { attempts } => i.failed = attempts.clone(),
                _ => {}
            }
        });
    }

    /// A streamed request failed after its first chunk (`why` is a label, e.g.
    /// `stream_interrupted`).
    pub fn set_stream_error(&mut self, why: &str) {
        self.with(|i| i.error = Some(why.to_string()));
    }

    /// Marks the first content chunk of a stream (time to first token).
    pub fn first_token(&mut self) {
        self.with(|i| {
            if i.first_token.is_none() {
                i.first_token = Some(i.started.elapsed());
            }
        });
    }

    /// The cost so far (route price × usage), USD.
    pub fn cost(&self) -> Option<f64> {
        self.with(|i| self_cost(i)).flatten()
    }

    /// A second handle on this record for the request's stream, which records the first token,
    /// the usage and a mid-stream failure; counts the stream. The handler keeps its own handle
    /// and still calls [`RequestRecord::finish_response`] once the stream's response head is
    /// complete (so the cache and prompt headers reach the audit line). The record is emitted
    /// when both handles are gone: the handler's at the end of the handler, the stream's when
    /// the stream ends or the client goes away.
    pub fn share_with_stream(&mut self) -> RequestRecord {
        let r = RequestRecord(self.0.clone());
        r.with(|i| {
            i.status = 200;
            if !i.in_flight_stream {
                i.in_flight_stream = true;
                gauge!("switchyard_in_flight_streams").increment(1.0);
            }
        });
        r
    }

    /// The response is ready (non-streaming, or a stream's head): status and #10's headers.
    pub fn finish_response(&mut self, headers: &HeaderMap, status: u16) {
        self.with(|i| {
            i.status = status;
            i.cache = header(headers, CACHE_HEADER);
            i.prompt = header(headers, PROMPT_HEADER);
        });
    }

    /// The last step of every surface's handler: the error (if any) in the surface's own shape,
    /// `x-request-id`, and the response head recorded.
    pub fn finish(
        &mut self,
        result: Result<axum::response::Response, HubError>,
        request_id: &str,
        on_error: impl FnOnce(HubError) -> axum::response::Response,
    ) -> axum::response::Response {
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                self.set_error(&e);
                on_error(e)
            }
        };
        if let Ok(v) = HeaderValue::from_str(request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        self.finish_response(resp.headers(), resp.status().as_u16());
        resp
    }
}

/// Renames the OpenTelemetry span behind `span` (GenAI: "{operation} {model}"). `otel.name` can
/// only be set before the span starts, and this span starts before the body is parsed.
fn set_span_name(span: &Span, name: String) {
    if span.is_none() {
        return;
    }
    let cx = span.context();
    opentelemetry::trace::TraceContextExt::span(&cx).update_name(name);
}

fn message_text(m: &crate::openai::ChatMessage) -> String {
    match &m.content {
        Some(crate::openai::Content::Text(t)) => t.clone(),
        Some(crate::openai::Content::Parts(ps)) => ps
            .iter()
            .filter_map(|p| p.text.as_deref())
            .collect::<Vec<_>>()
            .join(""),
        None => String::new(),
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(128).collect())
}

/// Keeps `rec` (a stream handle, [`RequestRecord::share_with_stream`]) until `resp`'s body has
/// been sent or dropped: for streams whose body the surface did not build around the record
/// (response-cache replays and coalesced followers), so their record ends with the stream.
pub fn hold_until_body_ends(
    resp: axum::response::Response,
    rec: RequestRecord,
) -> axum::response::Response {
    let (parts, body) = resp.into_parts();
    let mut data = body.into_data_stream();
    let held = async_stream::stream! {
        let _rec = rec;
        while let Some(chunk) = futures::StreamExt::next(&mut data).await {
            yield chunk;
        }
    };
    axum::response::Response::from_parts(parts, axum::body::Body::from_stream(held))
}

/// Sets `x-switchyard-cost-usd` (six decimals).
pub fn cost_header(h: &mut HeaderMap, cost: Option<f64>) {
    if let Some(c) = cost
        && let Ok(v) = HeaderValue::from_str(&format!("{c:.6}"))
    {
        h.insert(COST_HEADER, v);
    }
}

fn label(s: &str) -> String {
    if s.is_empty() {
        "none".to_string()
    } else {
        s.to_string()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let i = self.0.get_mut();
        gauge!("switchyard_in_flight_requests").decrement(1.0);
        if i.in_flight_stream {
            gauge!("switchyard_in_flight_streams").decrement(1.0);
        }
        let elapsed = i.started.elapsed();
        let outcome = match (&i.error, i.status) {
            (None, 200..=299) => "ok",
            (None, 0) => "cancelled",
            (Some(_), 200..=299) => "stream_error",
            _ => "error",
        };
        let route = i.route.clone().unwrap_or_default();
        let model = if route.model.is_empty() || i.models.contains(&route.model) {
            label(&route.model)
        } else {
            "other".to_string()
        };
        let (provider, account, region) = (
            label(&route.provider),
            label(&route.account),
            label(&route.region),
        );
        let (tenant, alias) = (label(&i.tenant), label(&i.alias));
        let surface = i.surface.as_str();
        let labels = [
            ("tenant", tenant.clone()),
            ("alias", alias.clone()),
            ("provider", provider.clone()),
            ("account", account.clone()),
            ("region", region.clone()),
            ("model", model.clone()),
        ];
        let mut with_outcome = labels.to_vec();
        with_outcome.push(("surface", surface.to_string()));
        with_outcome.push(("outcome", outcome.to_string()));
        counter!("switchyard_requests_total", &with_outcome).increment(1);
        histogram!("switchyard_request_duration_seconds", &with_outcome)
            .record(elapsed.as_secs_f64());
        if outcome != "ok" {
            let mut l = labels.to_vec();
            l.push(("surface", surface.to_string()));
            l.push((
                "error",
                i.error.clone().unwrap_or_else(|| outcome.to_string()),
            ));
            counter!("switchyard_request_errors_total", &l).increment(1);
        }
        let cost = self_cost(i);
        if let Some((input, output)) = i.usage {
            let mut l = labels.to_vec();
            l.push(("direction", "input".to_string()));
            counter!("switchyard_tokens_total", &l).increment(u64::from(input));
            l.pop();
            l.push(("direction", "output".to_string()));
            counter!("switchyard_tokens_total", &l).increment(u64::from(output));
        }
        if let Some(c) = cost {
            // Micro-dollars as an integer counter would lose nothing at these magnitudes, but
            // Prometheus users expect dollars: an f64 counter via absolute increments.
            counter!("switchyard_cost_usd_micros_total", &labels)
                .increment((c * 1e6).round() as u64);
        }
        if let Some(o) = i.overhead {
            histogram!("switchyard_overhead_seconds").record(o.as_secs_f64());
        }
        if let Some(t) = i.first_token {
            histogram!(
                "switchyard_time_to_first_token_seconds",
                "tenant" => tenant.clone(),
                "alias" => alias.clone(),
                "provider" => provider.clone(),
                "model" => model.clone()
            )
            .record(t.as_secs_f64());
        }
        // Span attributes.
        let s = &i.span;
        if i.alias.is_empty() {
            set_span_name(s, i.surface.operation().to_string());
        }
        if i.route.is_some() {
            s.record("gen_ai.provider.name", genai_provider(&route.provider));
            s.record("gen_ai.response.model", route.model.as_str());
            s.record("switchyard.route.account", route.account.as_str());
            s.record("switchyard.route.region", route.region.as_str());
            s.record("switchyard.attempts", telemetry::int(route.attempts));
        }
        if let Some((input, output)) = i.usage {
            s.record("gen_ai.usage.input_tokens", telemetry::int(input));
            s.record("gen_ai.usage.output_tokens", telemetry::int(output));
        }
        if let Some(c) = cost {
            s.record("switchyard.cost_usd", c);
        }
        s.record("http.response.status_code", telemetry::int(i.status));
        if outcome != "ok" {
            s.record("otel.status_code", "ERROR");
            s.record("error.type", i.error.as_deref().unwrap_or(outcome));
        }
        // Audit line.
        if let Some(sink) = &i.sink {
            let mut attempts: Vec<AuditAttempt> =
                i.failed.iter().map(AuditAttempt::failed).collect();
            if i.route.is_some() {
                attempts.push(AuditAttempt {
                    pool: route.pool.clone(),
                    model: route.model.clone(),
                    spoke: route.spoke.clone(),
                    outcome: "ok".into(),
                    account: Some(route.account.clone()),
                    region: Some(route.region.clone()),
                    upstream: i.upstream.clone(),
                });
            }
            let time = i
                .time
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            let trace_id = {
                let cx = i.span.context();
                let sc = opentelemetry::trace::TraceContextExt::span(&cx)
                    .span_context()
                    .clone();
                sc.is_valid().then(|| sc.trace_id().to_string())
            };
            let mut line = json!({
                "type": "audit",
                "request_id": i.request_id,
                "surface": surface,
                "time": crate::audit::rfc3339(i.time),
                "unix_time": time,
                "tenant": i.tenant,
                "alias": i.alias,
                "stream": i.stream,
                "route": i.route.as_ref().map(|_| json!({
                    "provider": route.provider, "account": route.account,
                    "region": route.region, "model": route.model, "spoke": route.spoke,
                })),
                "attempts": attempts,
                "usage": i.usage.map(|(a, b)| json!({"input_tokens": a, "output_tokens": b})),
                "cost_usd": cost,
                "status": i.status,
                "outcome": outcome,
                "error": i.error,
                "latency_ms": elapsed.as_secs_f64() * 1000.0,
                "time_to_first_token_ms": i.first_token.map(|t| t.as_secs_f64() * 1000.0),
                "cache": i.cache,
                "prompt": i.prompt,
                "trace_id": trace_id,
            });
            if let (Some(m), Some(o)) = (&i.messages, line.as_object_mut()) {
                o.insert("messages".into(), m.clone());
            }
            sink.write(line.to_string());
        }
    }
}

fn self_cost(i: &Inner) -> Option<f64> {
    let route = i.route.as_ref()?;
    let (input, output) = i.usage?;
    if route.price.0.is_none() && route.price.1.is_none() {
        return None;
    }
    Some(crate::quota::cost_usd(
        route.price,
        &switchyard_proto::v1::Usage {
            input_tokens: input,
            output_tokens: output,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
listen = "127.0.0.1:0"
[[tenants]]
name = "t"
api_key_sha256 = ["5f0a5e7d6a0b9d0d3c1b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a"]
aliases = ["demo"]
[[aliases]]
name = "demo"
candidates = [{ provider = "sim", model = "m1" }, { provider = "sim", model = "m2", price_in = 1.0, price_out = 2.0 }]
[[providers]]
name = "sim"
spokes = [{ addr = "127.0.0.1:1" }]
"#;

    fn settings(extra: &str) -> Result<crate::config::Settings, String> {
        crate::config::HubConfig::parse(&format!("{BASE}{extra}"))?
            .validate()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn price_table_fills_candidates_without_their_own_price() {
        let s = settings(
            "[prices.m1]\ninput = 3.0\noutput = 15.0\n[prices.m2]\ninput = 9.0\noutput = 9.0\n",
        )
        .unwrap();
        let c = &s.aliases["demo"].candidates;
        assert_eq!((c[0].price_in, c[0].price_out), (Some(3.0), Some(15.0)));
        // A candidate's own price wins over the table.
        assert_eq!((c[1].price_in, c[1].price_out), (Some(1.0), Some(2.0)));
        let e = settings("[prices.m1]\ninput = -1.0\noutput = 1.0\n").unwrap_err();
        assert!(e.contains("prices.m1.input"), "{e}");
    }

    #[test]
    fn observability_sections_parse_and_validate() {
        let s = settings(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4317\"\n\
             [audit]\npath = \"-\"\n[metrics]\nrequire_admin = true\n",
        )
        .unwrap();
        assert_eq!(
            s.telemetry.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4317")
        );
        assert!(s.metrics.require_admin);
        assert!(s.audit.enabled);
        let defaults = settings("").unwrap();
        assert!(defaults.audit.enabled && defaults.audit.path.is_none());
        assert!(!defaults.audit.capture_content && !defaults.telemetry.capture_content);
        let e = settings("[telemetry]\notlp_endpoint = \"collector:4317\"\n").unwrap_err();
        assert!(e.contains("telemetry.otlp_endpoint"), "{e}");
        assert!(settings("[audit]\nbogus = 1\n").is_err());
    }

    async fn get(app: &axum::Router, path: &str, key: Option<&str>) -> u16 {
        use tower::ServiceExt;
        let mut req = axum::http::Request::get(path);
        if let Some(k) = key {
            req = req.header("x-admin-key", k);
        }
        let resp = app
            .clone()
            .oneshot(req.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        resp.status().as_u16()
    }

    #[tokio::test]
    async fn metrics_open_by_default_or_behind_the_admin_key() {
        // Admin on (a hash of no key in particular); /metrics stays open by default.
        let admin = "[admin]\napi_key_sha256 = [\"d1b4c5f5ea4d0c1c2d6d6de9e1f9ab1c9d1d2c4f1a1a1a1a1a1a1a1a1a1a1a1a\"]\n";
        let open =
            crate::Hub::start(settings(&format!("{admin}[audit]\nenabled = false\n")).unwrap());
        let app = crate::router(open.clone());
        assert_eq!(get(&app, "/metrics", None).await, 200);
        open.stop.cancel();

        let key = "admin-key";
        let hash = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(key.as_bytes()))
        };
        let closed = crate::Hub::start(
            settings(&format!(
                "[admin]\napi_key_sha256 = [\"{hash}\"]\n[metrics]\nrequire_admin = true\n\
                 [audit]\nenabled = false\n"
            ))
            .unwrap(),
        );
        let app = crate::router(closed.clone());
        assert_eq!(get(&app, "/metrics", None).await, 401);
        assert_eq!(get(&app, "/metrics", Some("wrong")).await, 401);
        assert_eq!(get(&app, "/metrics", Some(key)).await, 200);
        assert_eq!(get(&app, "/admin/routes", Some(key)).await, 200);
        assert_eq!(get(&app, "/admin/routes.html", Some(key)).await, 200);
        assert_eq!(get(&app, "/admin/routes", None).await, 401);
        closed.stop.cancel();
    }

    #[test]
    fn genai_provider_names() {
        assert_eq!(genai_provider("bedrock"), "aws.bedrock");
        assert_eq!(genai_provider("openai"), "openai");
    }

    #[test]
    fn request_info_and_messages_from_the_internal_request() {
        use switchyard_proto::v1 as pb;
        let text = |t: &str| pb::ContentPart {
            part: Some(pb::content_part::Part::Text(t.into())),
        };
        let req = pb::InferRequest {
            system: "be brief".into(),
            messages: vec![
                pb::Message {
                    role: pb::Role::User as i32,
                    content: vec![text("hi "), text("there")],
                },
                pb::Message {
                    role: pb::Role::Assistant as i32,
                    content: vec![text("hello")],
                },
            ],
            params: Some(pb::GenerationParams {
                max_tokens: Some(64),
                temperature: Some(0.5),
                top_p: None,
                stop: vec![],
            }),
            ..Default::default()
        };
        let info = RequestInfo::infer("demo", true, &req);
        assert_eq!(
            info,
            RequestInfo {
                model: "demo".into(),
                stream: true,
                max_tokens: Some(64),
                temperature: Some(0.5),
                top_p: None,
            }
        );
        assert_eq!(
            infer_messages(&req),
            json!([
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi there"},
                {"role": "assistant", "content": "hello"},
            ])
        );
        // Embeddings carry max_tokens 0: not a request parameter.
        let embed = pb::InferRequest {
            params: Some(pb::GenerationParams {
                max_tokens: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(RequestInfo::infer("e", false, &embed).max_tokens, None);
        assert_eq!(Surface::Embeddings.operation(), "embeddings");
        assert_eq!(Surface::Converse.operation(), "chat");
    }

    /// A streamed request's audit line is written once, after both the handler (which saw the
    /// response head: cache and prompt headers) and the stream (usage, first token) are done.
    #[test]
    fn stream_audit_line_has_the_head_and_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = crate::audit::AuditSink::open(&crate::audit::AuditConfig {
            enabled: true,
            path: Some(path.clone()),
            capture_content: false,
        });
        let read = || std::fs::read_to_string(&path).unwrap_or_default();
        let mut handler = RequestRecord::start(sink, "rid-1", Span::none(), Surface::Anthropic);
        handler.set_tenant("t");
        let route = RouteTaken {
            provider: "openai".into(),
            model: "m1".into(),
            price: (Some(1.0), Some(2.0)),
            ..Default::default()
        };
        handler.set_route(&route, None, &[]);
        let mut stream = handler.share_with_stream();
        let mut head = HeaderMap::new();
        head.insert(CACHE_HEADER, HeaderValue::from_static("miss"));
        head.insert(PROMPT_HEADER, HeaderValue::from_static("p@2"));
        handler.finish_response(&head, 200);
        drop(handler);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(read(), "", "written before the stream ended");
        stream.first_token();
        stream.set_usage(Some(&switchyard_proto::v1::Usage {
            input_tokens: 10,
            output_tokens: 5,
        }));
        drop(stream);
        let mut line = String::new();
        for _ in 0..100 {
            line = read();
            if !line.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(line.lines().count(), 1, "{line}");
        let v: Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["surface"], "anthropic");
        assert_eq!(v["cache"], "miss");
        assert_eq!(v["prompt"], "p@2");
        assert_eq!(v["status"], 200);
        assert_eq!(v["outcome"], "ok");
        assert_eq!(v["usage"]["output_tokens"], 5);
        assert!(v["time_to_first_token_ms"].is_number());
        assert!((v["cost_usd"].as_f64().unwrap() - 20.0 / 1e6).abs() < 1e-12);
    }

    /// A replayed stream's record ends when its body has been sent, not when the handler returns.
    #[tokio::test]
    async fn a_held_record_ends_with_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = crate::audit::AuditSink::open(&crate::audit::AuditConfig {
            enabled: true,
            path: Some(path.clone()),
            capture_content: false,
        });
        let read = || std::fs::read_to_string(&path).unwrap_or_default();
        let mut handler = RequestRecord::start(sink, "rid-2", Span::none(), Surface::OpenAi);
        let body = axum::body::Body::from_stream(futures::stream::iter([
            Ok::<_, std::io::Error>("data: a\n\n"),
            Ok("data: [DONE]\n\n"),
        ]));
        let resp = hold_until_body_ends(
            axum::response::Response::new(body),
            handler.share_with_stream(),
        );
        let mut head = HeaderMap::new();
        head.insert(CACHE_HEADER, HeaderValue::from_static("hit"));
        handler.finish_response(&head, 200);
        drop(handler);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(read(), "", "written before the body was sent");
        let sent = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        assert!(sent.ends_with(b"[DONE]\n\n"));
        let mut line = String::new();
        for _ in 0..100 {
            line = read();
            if !line.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let v: Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(
            (v["cache"].as_str(), v["status"].as_u64()),
            (Some("hit"), Some(200))
        );
    }

    #[test]
    fn cost_header_six_decimals() {
        let mut h = HeaderMap::new();
        cost_header(&mut h, Some(0.0000125));
        assert_eq!(h.get(COST_HEADER).unwrap(), "0.000013");
        let mut h = HeaderMap::new();
        cost_header(&mut h, None);
        assert!(h.is_empty());
    }
}
