//! The request's spans: the root span of a client request (child of the client's
//! `traceparent`), route selection, and one span per attempt at a spoke, with the GenAI
//! semantic-convention attributes. `Span::none()` and no work when tracing is off.

use axum::http::HeaderMap;
use metrics::counter;
use switchyard_core::telemetry::{self, OpenTelemetrySpanExt};
use tracing::Span;
use tracing::field::Empty;

use crate::error::{AttemptFailure, FailedAttempt};
use crate::model::Candidate;

/// GenAI semantic-convention provider name for a spoke's provider kind.
pub fn genai_provider(kind: &str) -> &str {
    match kind {
        "bedrock" => "aws.bedrock",
        "anthropic" => "anthropic",
        "openai" => "openai",
        other => other,
    }
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
        AttemptFailure::Rejected => "rejected",
        AttemptFailure::Denied { .. } => "denied",
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

/// Renames the OpenTelemetry span behind `span` (GenAI: "{operation} {model}"). `otel.name` can
/// only be set before the span starts, and this span starts before the body is parsed.
pub(crate) fn set_span_name(span: &Span, name: String) {
    if span.is_none() {
        return;
    }
    let cx = span.context();
    opentelemetry::trace::TraceContextExt::span(&cx).update_name(name);
}
