//! Per-request observability of the spoke: the server span (a child of the hub's attempt span
//! through the `traceparent` gRPC metadata), one span per upstream attempt, and the metrics,
//! recorded once per request by [`SpokeRecord`] when it drops (for streams: when the stream
//! ends). See docs/observability.md.
//!
//! A leaf: it takes the provider and account as plain values and knows nothing of the engine
//! or the HTTP surface (the `/metrics` handler lives in `http`).

use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use switchyard_core::labels::{self, DenyReason, RequestOutcome};
use switchyard_core::telemetry;
use switchyard_proto::v1::{Attempt, InferRequest, Outcome, Usage};
use switchyard_providers::UpstreamError;
use tracing::Span;
use tracing::field::Empty;

use crate::error::SpokeError;

use switchyard_core::prom::Unlabelled;

static IN_FLIGHT_REQUESTS: Unlabelled<metrics::Gauge> =
    Unlabelled::new(|| gauge!("switchyard_spoke_in_flight_requests"));
static IN_FLIGHT_STREAMS: Unlabelled<metrics::Gauge> =
    Unlabelled::new(|| gauge!("switchyard_spoke_in_flight_streams"));

/// gRPC request metadata as a trace-context carrier.
pub struct MetadataExtractor<'a>(pub &'a tonic::metadata::MetadataMap);

impl opentelemetry::propagation::Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// GenAI semantic-convention provider name for an upstream kind.
pub fn genai_provider(kind: &str) -> &str {
    match kind {
        "bedrock" => "aws.bedrock",
        other => other,
    }
}

/// The server span of one `Infer`/`InferStream` call of `account` (served by `provider`);
/// `Span::none()` when tracing is off.
pub fn request_span(
    provider: &str,
    account: &str,
    metadata: &tonic::metadata::MetadataMap,
    req: &InferRequest,
    stream: bool,
) -> Span {
    if !telemetry::tracing_enabled() {
        return Span::none();
    }
    let model = req.models.first().map(String::as_str).unwrap_or("");
    let span = tracing::info_span!(
        "spoke.infer",
        switchyard.span = "spoke.infer",
        otel.name = %format!("chat {model}"),
        otel.kind = "server",
        otel.status_code = Empty,
        switchyard.request_id = %req.request_id,
        switchyard.stream = stream,
        switchyard.route.account = %account,
        switchyard.route.region = Empty,
        switchyard.attempts = Empty,
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = %genai_provider(provider),
        gen_ai.request.model = %model,
        gen_ai.request.max_tokens = Empty,
        gen_ai.request.temperature = Empty,
        gen_ai.request.top_p = Empty,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        error.type = Empty,
    );
    if let Some(p) = &req.params {
        if let Some(m) = p.max_tokens {
            span.record("gen_ai.request.max_tokens", telemetry::int(m));
        }
        if let Some(t) = p.temperature {
            span.record("gen_ai.request.temperature", telemetry::float(t));
        }
        if let Some(t) = p.top_p {
            span.record("gen_ai.request.top_p", telemetry::float(t));
        }
    }
    telemetry::extract(&span, &MetadataExtractor(metadata));
    span
}

/// The span of one upstream call (one model in one region).
pub fn upstream_span(
    provider: &str,
    account: &str,
    region: &str,
    model: &str,
    upstream: &str,
) -> Span {
    if !telemetry::tracing_enabled() {
        return Span::none();
    }
    tracing::info_span!(
        "spoke.upstream_attempt",
        switchyard.span = "spoke.upstream_attempt",
        otel.name = %format!("upstream {upstream}"),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = %genai_provider(provider),
        gen_ai.request.model = %upstream,
        switchyard.model = %model,
        switchyard.route.account = %account,
        switchyard.route.region = %region,
        switchyard.failover.reason = Empty,
        error.type = Empty,
    )
}

/// Records an upstream attempt's result on its span.
pub fn upstream_result(span: &Span, err: Option<&UpstreamError>) {
    if let Some(e) = err {
        let reason = labels::Outcome::from_wire(e.outcome() as i32).as_str();
        span.record("switchyard.failover.reason", reason);
        span.record("error.type", reason);
        span.record("otel.status_code", "ERROR");
    }
}

/// A route went to state `denied` (or changed its reason): one log line and
/// `switchyard_spoke_route_denials_total{provider, account, region, model, reason}`. Called once
/// per change of state, not per skipped request.
pub fn route_denied(
    provider: &'static str,
    account: &str,
    region: &str,
    model: &str,
    why: DenyReason,
    error_type: &str,
    probe_in: Duration,
) {
    tracing::warn!(
        provider,
        account,
        region,
        model,
        reason = why.as_str(),
        error_type,
        probe_in_ms = probe_in.as_millis() as u64,
        "route denied: the upstream refused this account; skipped until a probe succeeds"
    );
    counter!(
        "switchyard_spoke_route_denials_total",
        &route_labels(provider, account, region, model, why)
    )
    .increment(1);
}

/// The labels of the denial counters.
fn route_labels(
    provider: &'static str,
    account: &str,
    region: &str,
    model: &str,
    why: DenyReason,
) -> [(&'static str, String); 5] {
    [
        ("provider", provider.to_string()),
        ("account", account.to_string()),
        ("region", region.to_string()),
        ("model", model.to_string()),
        ("reason", why.as_str().to_string()),
    ]
}

/// A denied route served again (its probe, or a call proving the region's account works): one
/// log line and `switchyard_spoke_route_readmissions_total{provider, account, region, model,
/// reason}` (the reason it had).
pub fn route_readmitted(
    provider: &'static str,
    account: &str,
    region: &str,
    model: &str,
    why: DenyReason,
) {
    tracing::info!(
        provider,
        account,
        region,
        model,
        reason = why.as_str(),
        "route re-admitted: the upstream serves this account again"
    );
    counter!(
        "switchyard_spoke_route_readmissions_total",
        &route_labels(provider, account, region, model, why)
    )
    .increment(1);
}

/// The label names of the request metrics, in the order of their values in the caches below.
const LABELS: [&str; 5] = ["provider", "account", "region", "model", "outcome"];

/// `LABELS` with their values, as the `metrics` macros take them.
fn labelled(values: &[&str]) -> Vec<(&'static str, String)> {
    LABELS
        .iter()
        .zip(values)
        .map(|(k, v)| (*k, (*v).to_string()))
        .collect()
}

/// The handles one request records into, per label set (provider, account, the serving
/// region and model, outcome).
struct SpokeMetrics {
    requests: metrics::Counter,
    duration: metrics::Histogram,
    input_tokens: metrics::Counter,
    output_tokens: metrics::Counter,
    time_to_first_token: metrics::Histogram,
}

impl SpokeMetrics {
    fn new(values: [&str; 5]) -> Self {
        let all = labelled(&values);
        let base = &all[..4];
        let with = |direction: &str| {
            let mut l = base.to_vec();
            l.push(("direction", direction.to_string()));
            l
        };
        SpokeMetrics {
            requests: counter!("switchyard_spoke_requests_total", &all),
            duration: histogram!("switchyard_spoke_request_duration_seconds", &all),
            input_tokens: counter!("switchyard_spoke_tokens_total", &with("input")),
            output_tokens: counter!("switchyard_spoke_tokens_total", &with("output")),
            time_to_first_token: histogram!("switchyard_spoke_time_to_first_token_seconds", base),
        }
    }
}

/// Request metric handles by label set (bounded by the configured regions and models; see
/// [`switchyard_core::prom::HandleCache`]).
static REQUEST_METRICS: std::sync::LazyLock<switchyard_core::prom::HandleCache<5, SpokeMetrics>> =
    std::sync::LazyLock::new(|| switchyard_core::prom::HandleCache::new(10_000));

/// `switchyard_upstream_attempts_total` handles by label set.
static ATTEMPT_METRICS: std::sync::LazyLock<
    switchyard_core::prom::HandleCache<5, metrics::Counter>,
> = std::sync::LazyLock::new(|| switchyard_core::prom::HandleCache::new(10_000));

/// Follows one request through the spoke; emits metrics and span attributes on drop.
pub struct SpokeRecord {
    span: Span,
    provider: &'static str,
    account: String,
    started: Instant,
    stream: bool,
    attempts: Vec<Attempt>,
    route: Option<(String, String)>,
    usage: Option<(u32, u32)>,
    error: Option<&'static str>,
    first_token: Option<Duration>,
    done: bool,
}

impl SpokeRecord {
    /// Starts the record of one request to `account`'s `provider` (the engine's
    /// `provider()` / `account()`); counts it in flight until it drops.
    pub fn start(provider: &'static str, account: &str, span: Span, stream: bool) -> Self {
        IN_FLIGHT_REQUESTS.increment(1.0);
        if stream {
            IN_FLIGHT_STREAMS.increment(1.0);
        }
        Self {
            span,
            provider,
            account: account.to_string(),
            started: Instant::now(),
            stream,
            attempts: Vec::new(),
            route: None,
            usage: None,
            error: None,
            first_token: None,
            done: false,
        }
    }

    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The request succeeded on (region, model) after `attempts`.
    pub fn ok(&mut self, region: &str, model: &str, attempts: &[Attempt], usage: Option<&Usage>) {
        self.route = Some((region.to_string(), model.to_string()));
        self.attempts = attempts.to_vec();
        if let Some(u) = usage {
            self.usage = Some((u.input_tokens, u.output_tokens));
        }
    }

    pub fn failed(&mut self, e: &SpokeError) {
        self.error = Some(e.kind().1);
        self.attempts.extend_from_slice(e.attempts());
    }

    pub fn usage(&mut self, u: Option<&Usage>) {
        if let Some(u) = u {
            self.usage = Some((u.input_tokens, u.output_tokens));
        }
        self.done = true;
    }

    pub fn first_token(&mut self) {
        if self.first_token.is_none() {
            self.first_token = Some(self.started.elapsed());
        }
    }
}

impl Drop for SpokeRecord {
    fn drop(&mut self) {
        IN_FLIGHT_REQUESTS.decrement(1.0);
        if self.stream {
            IN_FLIGHT_STREAMS.decrement(1.0);
        }
        let elapsed = self.started.elapsed();
        let outcome = match (self.error, &self.route) {
            (None, Some(_)) if !self.stream || self.done => RequestOutcome::Ok,
            (None, Some(_)) => RequestOutcome::Cancelled,
            (Some(_), Some(_)) => RequestOutcome::StreamError,
            _ => RequestOutcome::Error,
        }
        .as_str();
        let (region, model) = self
            .route
            .as_ref()
            .map_or(("none", "none"), |(r, m)| (r.as_str(), m.as_str()));
        let values = [self.provider, self.account.as_str(), region, model, outcome];
        let m = REQUEST_METRICS.get(values, || SpokeMetrics::new(values));
        m.requests.increment(1);
        m.duration.record(elapsed.as_secs_f64());
        if let Some(e) = self.error {
            counter!(
                "switchyard_spoke_request_errors_total",
                "provider" => self.provider,
                "account" => self.account.clone(),
                "error" => e
            )
            .increment(1);
        }
        let mut upstream_time = Duration::ZERO;
        let mut calls = 0u32;
        let mut previous: Option<&'static str> = None;
        for a in &self.attempts {
            let (t_region, t_model) = a
                .target
                .as_ref()
                .map_or(("", ""), |t| (t.region.as_str(), t.model.as_str()));
            let name = labels::Outcome::from_wire(a.outcome).as_str();
            let attempt = [
                self.provider,
                self.account.as_str(),
                t_region,
                t_model,
                name,
            ];
            ATTEMPT_METRICS
                .get(attempt, || {
                    counter!("switchyard_upstream_attempts_total", &labelled(&attempt))
                })
                .increment(1);
            upstream_time += Duration::from_millis(u64::from(a.latency_ms));
            let skipped = labels::Outcome::from_wire(a.outcome).is_skip();
            if !skipped {
                calls += 1;
                if calls > 1 {
                    counter!(
                        "switchyard_spoke_retries_total",
                        "provider" => self.provider,
                        "account" => self.account.clone(),
                        "reason" => previous.unwrap_or("none")
                    )
                    .increment(1);
                }
            }
            previous = Some(name);
            if a.outcome != Outcome::Ok as i32 {
                counter!(
                    "switchyard_spoke_failovers_total",
                    "provider" => self.provider,
                    "account" => self.account.clone(),
                    "reason" => name
                )
                .increment(1);
            }
        }
        if let Some((input, output)) = self.usage {
            m.input_tokens.increment(u64::from(input));
            m.output_tokens.increment(u64::from(output));
        }
        if !self.stream && self.route.is_some() {
            histogram!("switchyard_spoke_overhead_seconds")
                .record(elapsed.saturating_sub(upstream_time).as_secs_f64());
        }
        if let Some(t) = self.first_token {
            m.time_to_first_token.record(t.as_secs_f64());
        }
        let s = &self.span;
        if self.route.is_some() {
            s.record("switchyard.route.region", region);
            s.record("gen_ai.response.model", model);
        }
        s.record("switchyard.attempts", telemetry::int(self.attempts.len()));
        if let Some((input, output)) = self.usage {
            s.record("gen_ai.usage.input_tokens", telemetry::int(input));
            s.record("gen_ai.usage.output_tokens", telemetry::int(output));
        }
        if outcome != "ok" {
            s.record("otel.status_code", "ERROR");
            s.record("error.type", self.error.unwrap_or(outcome));
        }
    }
}

/// Every metric family of the spoke, with its `# HELP` text: the meaning column of the spoke's
/// metric table in `docs/observability.md` (tests/observability_e2e.rs checks they agree).
pub const METRIC_FAMILIES: &[switchyard_core::prom::Family] = {
    use switchyard_core::prom::Kind;
    &[
        (
            "switchyard_spoke_requests_total",
            Kind::Counter,
            "Infer / InferStream / POST /inference calls, counted when they end (region/model of the route that served, none when none did)",
        ),
        (
            "switchyard_spoke_request_errors_total",
            Kind::Counter,
            "failed calls by error code (upstream_unavailable, quota_exhausted, deadline_exceeded, …)",
        ),
        (
            "switchyard_spoke_request_duration_seconds",
            Kind::Histogram,
            "whole call (streams: until the stream ends)",
        ),
        (
            "switchyard_upstream_attempts_total",
            Kind::Counter,
            "every route attempt: ok, throttled, unavailable, timeout, invalid (the caller's fault), denied (the account's fault), skipped_quota, skipped_cooldown, skipped_breaker, skipped_denied, failed_mid_stream (names from switchyard_core::labels)",
        ),
        (
            "switchyard_spoke_failovers_total",
            Kind::Counter,
            "attempts that did not serve, by outcome (as above)",
        ),
        (
            "switchyard_spoke_retries_total",
            Kind::Counter,
            "upstream calls after the first within one request, by the outcome of the attempt before (skipped routes included, e.g. skipped_cooldown)",
        ),
        (
            "switchyard_spoke_tokens_total",
            Kind::Counter,
            "tokens used, by direction (input, output)",
        ),
        (
            "switchyard_spoke_in_flight_requests",
            Kind::Gauge,
            "calls in progress",
        ),
        (
            "switchyard_spoke_in_flight_streams",
            Kind::Gauge,
            "streams in progress",
        ),
        (
            "switchyard_spoke_overhead_seconds",
            Kind::Histogram,
            "the spoke's added latency: call time minus upstream time (non-streaming)",
        ),
        (
            "switchyard_spoke_time_to_first_token_seconds",
            Kind::Histogram,
            "streams: call received to first content chunk",
        ),
        (
            "switchyard_route_headroom",
            Kind::Gauge,
            "headroom (0–1) of each route, from the quota store and breaker",
        ),
        (
            "switchyard_route_state",
            Kind::Gauge,
            "1 for the route's current state (ready, cooling, open, exhausted, half_open, denied), 0 for the others — the breaker state, or denied while the upstream refuses the account",
        ),
        (
            "switchyard_secret_refreshes_total",
            Kind::Counter,
            "periodic Secrets Manager refreshes of the upstream API key; on error the last good key stays in use",
        ),
        (
            "switchyard_spoke_serving",
            Kind::Gauge,
            "1 when at least one route can serve and the spoke is not draining",
        ),
    ]
};
