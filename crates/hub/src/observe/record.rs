//! The per-request record: one [`RequestRecord`] follows each client request of every surface
//! (into its stream when it streams) and, when its last handle is dropped, emits the metrics,
//! the audit line and the final span attributes.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};
use metrics::{counter, gauge, histogram};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use switchyard_core::labels::RequestOutcome;
use switchyard_core::telemetry::{self, OpenTelemetrySpanExt};
use tracing::Span;

use super::audit::{AuditAttempt, AuditSink};
use super::spans::set_span_name;
use super::{RequestInfo, Surface};
use crate::error::{AttemptFailure, FailedAttempt, HubError};
use crate::headers;
use crate::model::RouteTaken;

use switchyard_core::prom::Unlabelled;

static IN_FLIGHT_REQUESTS: Unlabelled<metrics::Gauge> =
    Unlabelled::new(|| gauge!("switchyard_in_flight_requests"));
static IN_FLIGHT_STREAMS: Unlabelled<metrics::Gauge> =
    Unlabelled::new(|| gauge!("switchyard_in_flight_streams"));
static OVERHEAD: Unlabelled<metrics::Histogram> =
    Unlabelled::new(|| histogram!("switchyard_overhead_seconds"));

#[derive(Debug)]
struct Inner {
    sink: Option<Arc<AuditSink>>,
    span: Span,
    surface: Surface,
    request_id: String,
    started: Instant,
    time: SystemTime,
    tenant: String,
    alias: String,
    stream: bool,
    route: Option<RouteTaken>,
    /// The answer's usage, its cache and reasoning details included.
    usage: Option<switchyard_proto::v1::Usage>,
    failed: Vec<FailedAttempt>,
    status: u16,
    error: Option<String>,
    first_token: Option<Duration>,
    cache: Option<String>,
    prompt: Option<String>,
    messages: Option<serde_json::Value>,
    in_flight_stream: bool,
    /// A committed stream the client dropped before its end (outcome `cancelled`).
    cancelled: bool,
    /// The alias's candidate models: the only values the `model` label takes (else "other").
    models: Vec<String>,
    /// The serving spoke's attempts (audit; kept only when the audit log is on).
    upstream: Vec<switchyard_proto::v1::Attempt>,
    /// Time the hub itself added before the response head (total minus waiting on spokes).
    overhead: Option<Duration>,
    /// Request fields accepted and not carried (they cannot change the answer).
    ignored: Vec<String>,
    /// Request fields the hub does not know, passed through to a same-API upstream.
    passthrough: Vec<String>,
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
        sink: Option<Arc<AuditSink>>,
        request_id: &str,
        span: Span,
        surface: Surface,
    ) -> Self {
        IN_FLIGHT_REQUESTS.increment(1.0);
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
            cancelled: false,
            models: Vec::new(),
            upstream: Vec::new(),
            overhead: None,
            ignored: Vec::new(),
            passthrough: Vec::new(),
        })))))
    }

    /// Runs `f` on the record's state (no-op on a default, recordless `RequestRecord`).
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> Option<R> {
        let shared = self.0.as_ref()?;
        let mut inner = shared.0.lock();
        Some(f(&mut inner))
    }

    /// Another handle on this record, with no other effect (the gateway's stream holds one, so
    /// the record is emitted after a cancelled stream settled).
    pub fn handle(&self) -> RequestRecord {
        RequestRecord(self.0.clone())
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
        alias: &crate::model::Alias,
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

    /// The request's fields that were accepted and not carried (`ignored` in the audit line)
    /// and those passed through to a same-API upstream (`passthrough`).
    pub fn set_extra_fields(&mut self, ignored: Vec<String>, passthrough: Vec<String>) {
        self.with(|i| {
            i.ignored = ignored;
            i.passthrough = passthrough;
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
            if i.sink.is_some() {
                i.upstream = upstream.to_vec();
            }
            i.route = Some(route.clone());
            i.failed = route.failed.clone();
            if let Some(u) = usage {
                i.usage = Some(*u);
            }
        });
    }

    pub fn set_usage(&mut self, usage: Option<&switchyard_proto::v1::Usage>) {
        if let Some(u) = usage {
            self.with(|i| i.usage = Some(*u));
        }
    }

    /// A committed stream was dropped before its end (the client went away): outcome
    /// `cancelled`, with `usage` (estimated so far) unless the stream's own usage arrived.
    pub fn set_cancelled(&mut self, usage: &switchyard_proto::v1::Usage) {
        self.with(|i| {
            i.cancelled = true;
            if i.usage.is_none() {
                i.usage = Some(*usage);
            }
        });
    }

    /// The request failed with `e` (its attempts are kept; for a rejection, the refusing
    /// spoke's is the last and names the route in the audit line and the metrics).
    pub fn set_error(&mut self, e: &HubError) {
        self.with(|i| {
            i.status = e.status().as_u16();
            i.error = Some(e.type_and_code().1.to_string());
            if !e.attempts().is_empty() {
                i.failed = e.attempts().to_vec();
            }
        });
    }

    /// A stream committed before its route answered found no route (`e`, in the stream): the
    /// error and its attempts are recorded; the status stays the 200 that was sent.
    pub fn set_late_error(&mut self, e: &HubError) {
        self.with(|i| {
            i.error = Some(e.type_and_code().1.to_string());
            if !e.attempts().is_empty() {
                i.failed = e.attempts().to_vec();
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
                IN_FLIGHT_STREAMS.increment(1.0);
            }
        });
        r
    }

    /// The response is ready (non-streaming, or a stream's head): status and #10's headers.
    pub fn finish_response(&mut self, headers: &HeaderMap, status: u16) {
        self.with(|i| {
            i.status = status;
            i.cache = headers::text(headers, headers::CACHE);
            i.prompt = headers::text(headers, headers::PROMPT);
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
            resp.headers_mut().insert(headers::REQUEST_ID, v);
        }
        self.finish_response(resp.headers(), resp.status().as_u16());
        resp
    }
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

impl Drop for Shared {
    fn drop(&mut self) {
        let i = self.0.get_mut();
        IN_FLIGHT_REQUESTS.decrement(1.0);
        if i.in_flight_stream {
            IN_FLIGHT_STREAMS.decrement(1.0);
        }
        let elapsed = i.started.elapsed();
        let outcome = match (&i.error, i.status) {
            (None, 200..=299) if i.cancelled => RequestOutcome::Cancelled,
            (None, 200..=299) => RequestOutcome::Ok,
            (None, 0) => RequestOutcome::Cancelled,
            (Some(_), 200..=299) => RequestOutcome::StreamError,
            _ => RequestOutcome::Error,
        }
        .as_str();
        // A request the upstream refused names the refusing route (pool, spoke, account).
        let refused = match (&i.route, i.failed.last()) {
            (None, Some(a)) if a.kind == AttemptFailure::Rejected => Some(RouteTaken {
                provider: a.provider.clone(),
                pool: a.provider.clone(),
                account: a.account.clone().unwrap_or_default(),
                model: a.model.clone(),
                spoke: a.spoke.clone(),
                ..Default::default()
            }),
            _ => None,
        };
        let none = RouteTaken::default();
        let route = i.route.as_ref().or(refused.as_ref()).unwrap_or(&none);
        let model = if route.model.is_empty() || i.models.contains(&route.model) {
            super::label(&route.model)
        } else {
            "other"
        };
        let (provider, account, region) = (
            super::label(&route.provider),
            super::label(&route.account),
            super::label(&route.region),
        );
        let (tenant, alias) = (super::label(&i.tenant), super::label(&i.alias));
        let surface = i.surface.as_str();
        let values = [
            tenant, alias, provider, account, region, model, surface, outcome,
        ];
        let m = REQUEST_METRICS.get(values, || RequestMetrics::new(values));
        m.requests.increment(1);
        m.duration.record(elapsed.as_secs_f64());
        if outcome != "ok" {
            let mut l: Vec<(&'static str, String)> = LABELS
                .iter()
                .zip(values)
                .take(7)
                .map(|(k, v)| (*k, v.to_string()))
                .collect();
            l.push((
                "error",
                i.error.clone().unwrap_or_else(|| outcome.to_string()),
            ));
            counter!("switchyard_request_errors_total", &l).increment(1);
        }
        let cost = self_cost(i);
        if let Some(u) = i.usage {
            m.input_tokens.increment(u64::from(u.input_tokens));
            m.output_tokens.increment(u64::from(u.output_tokens));
        }
        if let Some(c) = cost {
            // Micro-dollars as an integer counter would lose nothing at these magnitudes, but
            // Prometheus users expect dollars: an f64 counter via absolute increments.
            m.cost_micros.increment((c * 1e6).round() as u64);
        }
        if let Some(o) = i.overhead {
            OVERHEAD.record(o.as_secs_f64());
        }
        if let Some(t) = i.first_token {
            m.time_to_first_token.record(t.as_secs_f64());
        }
        // Span attributes.
        let s = &i.span;
        if i.alias.is_empty() {
            set_span_name(s, i.surface.operation().to_string());
        }
        if i.route.is_some() {
            s.record(
                "gen_ai.provider.name",
                super::spans::genai_provider(&route.provider),
            );
            s.record("gen_ai.response.model", route.model.as_str());
            s.record("switchyard.route.account", route.account.as_str());
            s.record("switchyard.route.region", route.region.as_str());
            s.record("switchyard.attempts", telemetry::int(route.attempts));
        }
        if let Some(u) = i.usage {
            s.record("gen_ai.usage.input_tokens", telemetry::int(u.input_tokens));
            s.record(
                "gen_ai.usage.output_tokens",
                telemetry::int(u.output_tokens),
            );
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
                    pool: &route.pool,
                    model: &route.model,
                    spoke: &route.spoke,
                    outcome: "ok",
                    account: Some(&route.account),
                    region: Some(&route.region),
                    upstream: &i.upstream,
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
            let line = AuditLine {
                kind: "audit",
                request_id: &i.request_id,
                surface,
                time: super::audit::rfc3339(i.time),
                unix_time: time,
                tenant: &i.tenant,
                alias: &i.alias,
                stream: i.stream,
                route: (i.route.is_some() || refused.is_some()).then_some(AuditRoute {
                    provider: &route.provider,
                    account: &route.account,
                    region: &route.region,
                    model: &route.model,
                    spoke: &route.spoke,
                }),
                attempts: &attempts,
                usage: i.usage.as_ref().map(AuditUsage::from),
                cost_usd: cost,
                status: i.status,
                outcome,
                error: i.error.as_deref(),
                latency_ms: elapsed.as_secs_f64() * 1000.0,
                time_to_first_token_ms: i.first_token.map(|t| t.as_secs_f64() * 1000.0),
                cache: i.cache.as_deref(),
                prompt: i.prompt.as_deref(),
                ignored: &i.ignored,
                passthrough: &i.passthrough,
                trace_id,
                messages: i.messages.as_ref(),
            };
            sink.write(&line);
        }
    }
}

/// The label names of the request metrics, in the order of their values in [`REQUEST_METRICS`].
const LABELS: [&str; 8] = [
    "tenant", "alias", "provider", "account", "region", "model", "surface", "outcome",
];

/// The handles one request records into, per label set (tenant, alias, route, surface,
/// outcome).
struct RequestMetrics {
    requests: metrics::Counter,
    duration: metrics::Histogram,
    input_tokens: metrics::Counter,
    output_tokens: metrics::Counter,
    cost_micros: metrics::Counter,
    time_to_first_token: metrics::Histogram,
}

impl RequestMetrics {
    fn new(values: [&str; 8]) -> Self {
        let all: Vec<(&'static str, String)> = LABELS
            .iter()
            .zip(values)
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        // Tokens and cost: the route's labels without surface and outcome.
        let route = &all[..6];
        let with = |direction: &str| {
            let mut l = route.to_vec();
            l.push(("direction", direction.to_string()));
            l
        };
        let ttft: Vec<(&'static str, String)> =
            [0, 1, 2, 5].iter().map(|&i| all[i].clone()).collect();
        RequestMetrics {
            requests: counter!("switchyard_requests_total", &all),
            duration: histogram!("switchyard_request_duration_seconds", &all),
            input_tokens: counter!("switchyard_tokens_total", &with("input")),
            output_tokens: counter!("switchyard_tokens_total", &with("output")),
            cost_micros: counter!("switchyard_cost_usd_micros_total", route),
            time_to_first_token: histogram!("switchyard_time_to_first_token_seconds", &ttft),
        }
    }
}

/// The request metrics' handles by label set (bounded by the configured tenants, aliases and
/// routes; see [`switchyard_core::prom::HandleCache`]).
static REQUEST_METRICS: std::sync::LazyLock<switchyard_core::prom::HandleCache<8, RequestMetrics>> =
    std::sync::LazyLock::new(|| switchyard_core::prom::HandleCache::new(10_000));

/// One audit line (docs/observability.md lists its fields), serialised straight into the
/// audit buffer: borrowed fields, no intermediate JSON value.
#[derive(Serialize)]
struct AuditLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    request_id: &'a str,
    surface: &'a str,
    time: String,
    unix_time: f64,
    tenant: &'a str,
    alias: &'a str,
    stream: bool,
    route: Option<AuditRoute<'a>>,
    attempts: &'a [AuditAttempt<'a>],
    usage: Option<AuditUsage>,
    cost_usd: Option<f64>,
    status: u16,
    outcome: &'a str,
    error: Option<&'a str>,
    latency_ms: f64,
    time_to_first_token_ms: Option<f64>,
    cache: Option<&'a str>,
    prompt: Option<&'a str>,
    ignored: &'a [String],
    passthrough: &'a [String],
    trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a Value>,
}

/// The audit line's `route`.
#[derive(Serialize)]
struct AuditRoute<'a> {
    provider: &'a str,
    account: &'a str,
    region: &'a str,
    model: &'a str,
    spoke: &'a str,
}

/// The audit line's `usage`: `input_tokens` (every input token, cached ones included),
/// `output_tokens` (reasoning included), and — when non-zero — `cache_read_input_tokens`,
/// `cache_write_input_tokens`, `reasoning_tokens`.
#[derive(Serialize)]
struct AuditUsage {
    input_tokens: u32,
    output_tokens: u32,
    #[serde(skip_serializing_if = "is_zero")]
    cache_read_input_tokens: u32,
    #[serde(skip_serializing_if = "is_zero")]
    cache_write_input_tokens: u32,
    #[serde(skip_serializing_if = "is_zero")]
    reasoning_tokens: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl From<&switchyard_proto::v1::Usage> for AuditUsage {
    fn from(u: &switchyard_proto::v1::Usage) -> Self {
        AuditUsage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
            cache_write_input_tokens: u.cache_write_input_tokens,
            reasoning_tokens: u.reasoning_tokens,
        }
    }
}

fn self_cost(i: &Inner) -> Option<f64> {
    let route = i.route.as_ref()?;
    let usage = i.usage?;
    if route.price.0.is_none() && route.price.1.is_none() {
        return None;
    }
    // Cached input tokens are priced like the others (they are part of `input_tokens`): the
    // price table has no cache price yet.
    Some(crate::model::cost_usd(route.price, &usage))
}
