//! The process-wide Prometheus recorder behind the `metrics` facade (`counter!`, `histogram!`,
//! `gauge!`), rendered by `GET /metrics` on the hub and the spoke.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Histogram buckets in seconds (durations, added latency, time to first token).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder on first use (idempotent) and returns its handle. When another
/// recorder is already installed (a test harness), a detached one is returned: `/metrics` then
/// renders nothing, but nothing fails.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = || {
            PrometheusBuilder::new()
                .set_buckets(SECONDS_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new())
        };
        match builder().install_recorder() {
            Ok(h) => h,
            Err(_) => builder().build_recorder().handle(),
        }
    })
}

/// Installs the recorder and keeps its histograms compact (upkeep every 5 s, for as long as the
/// runtime runs). Must run inside a Tokio runtime.
pub fn start() {
    let h = handle();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            h.run_upkeep();
        }
    });
}

/// The Prometheus text exposition of every metric recorded so far.
pub fn render() -> String {
    handle().render()
}
