//! The hub's Prometheus exposition: the metrics recorded along the request path plus the pool
//! gauges, refreshed from the live table at scrape time.

use metrics::gauge;

use crate::live::Table;

/// The Prometheus exposition (text format 0.0.4) with the pool gauges (spoke health, breaker,
/// headroom, in flight) refreshed from `table` first.
pub fn render(table: &Table) -> String {
    for (name, pool) in &table.pools {
        for s in pool.spokes().iter() {
            let snap = s.snapshot();
            let d = snap.described.clone().unwrap_or_default();
            let account = super::label(&d.account).to_string();
            let spoke = snap.addr.to_string();
            let l = [
                ("pool", name.clone()),
                ("spoke", spoke.clone()),
                ("account", account.clone()),
            ];
            gauge!("switchyard_spoke_healthy", &l).set(if snap.healthy { 1.0 } else { 0.0 });
            let open = snap.ejected || snap.outlier_ejected_for.is_some();
            gauge!("switchyard_spoke_breaker_open", &l).set(if open { 1.0 } else { 0.0 });
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
    switchyard_core::prom::render_with_help(METRIC_FAMILIES)
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
            "switchyard_audit_lines_dropped_total",
            Kind::Counter,
            "audit lines lost: the audit buffer was full (the writer could not keep up), a line was larger than [audit] max_buffer_bytes, a write failed (every line of the batch), or the line came after the audit log closed at exit; 0 from start when the audit log is on",
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
            "1 while the spoke is passively ejected: after a connection failure (waiting for a probe), or by outlier detection (for its ejection time)",
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
