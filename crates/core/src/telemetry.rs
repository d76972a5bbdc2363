//! Logging and tracing setup for the binaries.
//!
//! Logs: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), human-readable by default
//! or JSON lines with `SWITCHYARD_LOG_FORMAT=json`.
//!
//! Traces (optional): an OpenTelemetry layer exporting spans over OTLP/gRPC, on when `[telemetry]
//! otlp_endpoint` is set in the config or `OTEL_EXPORTER_OTLP_ENDPOINT` in the environment. Off
//! otherwise, and then no exporter, layer or span is built at all ([`tracing_enabled`] is false
//! and the request paths create `Span::none()`). W3C trace context (`traceparent`) is the
//! propagation format; see [`inject`] / [`extract`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use serde::Deserialize;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use tracing_opentelemetry::OpenTelemetrySpanExt;

static TRACING: AtomicBool = AtomicBool::new(false);
static CAPTURE_CONTENT: AtomicBool = AtomicBool::new(false);

/// `[telemetry]` in the hub and spoke configs.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`. Unset: `OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// and when that is unset too, tracing is off.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Put prompt and completion text on spans (`gen_ai.input.messages` /
    /// `gen_ai.output.messages`). Off by default: spans carry no content.
    #[serde(default)]
    pub capture_content: bool,
}

impl TelemetryConfig {
    /// The endpoint in force: the config's, else `OTEL_EXPORTER_OTLP_ENDPOINT`, else none.
    pub fn endpoint(&self) -> Option<String> {
        self.otlp_endpoint
            .clone()
            .filter(|e| !e.trim().is_empty())
            .or_else(|| {
                std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .ok()
                    .filter(|e| !e.trim().is_empty())
            })
    }

    /// Problems with the section, for config validation.
    pub fn problems(&self) -> Vec<String> {
        match &self.otlp_endpoint {
            Some(e) if !(e.starts_with("http://") || e.starts_with("https://")) => vec![format!(
                "telemetry.otlp_endpoint: {e:?} must start with http:// or https://"
            )],
            _ => vec![],
        }
    }
}

/// Whether spans are exported (an OTLP endpoint is configured).
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// Whether prompt/completion text may go on spans (`capture_content = true`).
pub fn capture_content() -> bool {
    CAPTURE_CONTENT.load(Ordering::Relaxed)
}

/// Logging only (no tracing): for tools and for errors before the config is read.
pub fn init_logging() {
    install(None);
}

fn install(tracer: Option<opentelemetry_sdk::trace::SdkTracer>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("SWITCHYARD_LOG_FORMAT").is_ok_and(|v| v == "json");
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let plain = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(ansi)
    });
    let structured = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(false)
    });
    let otel = tracer.map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t)
            .with_tracked_inactivity(false)
    });
    // A second init (tests) is harmless; ignore it.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(plain)
        .with(structured)
        .with(otel)
        .try_init();
}

/// Keeps the tracer provider (and the small runtime its exporter runs on) alive; flushes and
/// shuts it down on drop, so the spans of the last requests reach the collector on exit.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TelemetryGuard {
    /// Flushes pending spans now (blocking, bounded by the exporter timeout).
    pub fn flush(&self) {
        if let Some(p) = &self.provider
            && let Err(e) = p.force_flush()
        {
            tracing::warn!("telemetry flush: {e}");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("telemetry shutdown: {e}");
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Logging plus, when an OTLP endpoint is configured, the OpenTelemetry layer for `service`
/// (`service.name` of every span). Keep the guard until the process exits.
pub fn init(service: &'static str, cfg: &TelemetryConfig) -> TelemetryGuard {
    CAPTURE_CONTENT.store(cfg.capture_content, Ordering::Relaxed);
    let Some(endpoint) = cfg.endpoint() else {
        init_logging();
        return TelemetryGuard::default();
    };
    match build_provider(service, &endpoint) {
        Ok((provider, runtime)) => {
            install(Some(provider.tracer("switchyard")));
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            TRACING.store(true, Ordering::Relaxed);
            tracing::info!(endpoint = %endpoint, service, "OpenTelemetry tracing on (OTLP/gRPC)");
            TelemetryGuard {
                provider: Some(provider),
                runtime: Some(runtime),
            }
        }
        Err(e) => {
            init_logging();
            tracing::error!(endpoint = %endpoint, "OpenTelemetry tracing off: {e}");
            TelemetryGuard::default()
        }
    }
}

fn build_provider(
    service: &'static str,
    endpoint: &str,
) -> Result<(SdkTracerProvider, tokio::runtime::Runtime), String> {
    use opentelemetry_otlp::WithExportConfig;
    // The SDK's batch processor exports from its own thread without a Tokio reactor; the tonic
    // channel needs one. A one-thread runtime owned by the guard runs every export.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let exporter = {
        let _enter = runtime.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?
    };
    let exporter = OnRuntime {
        inner: std::sync::Arc::new(exporter),
        handle: runtime.handle().clone(),
    };
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build();
    Ok((provider, runtime))
}

/// Runs another exporter's `export` on a Tokio runtime.
#[derive(Debug)]
struct OnRuntime {
    inner: std::sync::Arc<opentelemetry_otlp::SpanExporter>,
    handle: tokio::runtime::Handle,
}

impl SpanExporter for OnRuntime {
    async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        let inner = self.inner.clone();
        match self
            .handle
            .spawn(async move { inner.export(batch).await })
            .await
        {
            Ok(r) => r,
            Err(e) => Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                e.to_string(),
            )),
        }
    }

    fn shutdown_with_timeout(
        &mut self,
        timeout: Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        match std::sync::Arc::get_mut(&mut self.inner) {
            Some(e) => e.shutdown_with_timeout(timeout),
            None => Ok(()),
        }
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        if let Some(e) = std::sync::Arc::get_mut(&mut self.inner) {
            e.set_resource(resource);
        }
    }
}

/// A span attribute value for an integer, exported as an OTLP `int`: `tracing` hands unsigned
/// integers to the OpenTelemetry layer through `Debug`, which exports them as strings, so every
/// integer attribute (token counts, `max_tokens`, status codes, counts) goes through here.
/// Saturates at `i64::MAX`.
pub fn int(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// A span attribute value for an `f32` request parameter (temperature, top_p), exported as an
/// OTLP `double`: the shortest decimal that reads back as the same `f32`, so `0.3` arrives as
/// `0.3`, not as the widened `0.30000001192092896`.
pub fn float(v: f32) -> f64 {
    if !v.is_finite() {
        return f64::from(v);
    }
    v.to_string().parse().unwrap_or(f64::from(v))
}

/// Writes the current span's W3C trace context (`traceparent`, `tracestate`) into `carrier`.
pub fn inject(span: &tracing::Span, carrier: &mut dyn Injector) {
    if !tracing_enabled() {
        return;
    }
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, carrier);
}

/// Makes `span` a child of the W3C trace context found in `carrier` (if any).
pub fn extract(span: &tracing::Span, carrier: &dyn Extractor) {
    if !tracing_enabled() || carrier.get("traceparent").is_none() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(carrier);
    let _ = span.set_parent(cx);
}

/// `http::HeaderMap` as a propagation carrier.
pub struct HeaderCarrier<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Mutable `http::HeaderMap` as an injection target.
pub struct HeaderInjector<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_config_wins_and_blank_is_off() {
        let c = TelemetryConfig {
            otlp_endpoint: Some("http://127.0.0.1:4317".into()),
            capture_content: false,
        };
        assert_eq!(c.endpoint().as_deref(), Some("http://127.0.0.1:4317"));
        assert!(c.problems().is_empty());
        let bad = TelemetryConfig {
            otlp_endpoint: Some("127.0.0.1:4317".into()),
            capture_content: false,
        };
        assert_eq!(bad.problems().len(), 1);
    }

    #[test]
    fn attribute_values_keep_their_types() {
        assert_eq!(int(7u32), 7i64);
        assert_eq!(int(200u16), 200i64);
        assert_eq!(int(u64::MAX), i64::MAX);
        assert_eq!(float(0.3), 0.3f64);
        assert_eq!(float(0.7), 0.7f64);
        assert_eq!(float(1.0), 1.0f64);
        assert_eq!(float(0.1234567), 0.1234567f64);
        assert_ne!(f64::from(0.3f32), 0.3f64);
    }

    #[test]
    fn off_means_no_injection() {
        let mut h = http::HeaderMap::new();
        inject(&tracing::Span::none(), &mut HeaderInjector(&mut h));
        assert!(h.is_empty());
    }
}
