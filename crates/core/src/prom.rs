//! The process-wide Prometheus recorder behind the `metrics` facade (`counter!`, `histogram!`,
//! `gauge!`), rendered by `GET /metrics` on the hub and the spoke.

use std::sync::{Once, OnceLock};
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

/// A metric family's type, for its description (see [`Family`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: its name, type and the text of its `# HELP` line (the meaning column of
/// the metric tables in `docs/observability.md`).
pub type Family = (&'static str, Kind, &'static str);

/// Registers each family's `# HELP` text with the recorder (installing it first). A family keeps
/// the first text it was given.
pub fn describe(families: &[Family]) {
    let _ = handle();
    for &(name, kind, help) in families {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
}

/// [`render`], with every family of `families` described first (once per process), so each
/// family in the exposition has its `# HELP` line. A tier passes its own table.
pub fn render_with_help(families: &[Family]) -> String {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| describe(families));
    render()
}
