//! End-to-end observability (issue #6): real `hub` and `spoke` binaries against fake upstreams.
//!
//! - OpenTelemetry: an OTLP/gRPC `TraceService` runs inside the test; one request through the
//!   hub gives one trace (the client's `traceparent`) with spans from both processes, GenAI
//!   attributes, and the failover reason on the failed attempt — and no prompt text.
//! - Prometheus: `/metrics` on hub and spoke, scraped before and after known traffic.
//! - Audit log and cost: one JSON line per request in the audit file; `x-switchyard-cost-usd`.
//! - Admin view: `/admin/routes` JSON, and the HTML page loaded in headless Chromium through a
//!   small header-adding proxy (the admin key never goes into a URL), with a screenshot.
//!
//! Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use serde_json::{Value, json};
use switchyard_e2e::Spoke;
use switchyard_e2e::prom::{scrape, settled, sum};
use switchyard_testkit::behavior::{Behavior, ErrorKind};
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::{Proc, eventually, write_config};

const KEY: &str = "sk-e2e-key";
/// `printf %s sk-e2e-key | sha256sum`
const KEY_SHA256: &str = "efa5642593240584aa889ebfff15261eedfcf4bef5a8ec85db1be8135774d1a9";
const ADMIN_KEY: &str = "admin-e2e-key";
const PROMPT: &str = "one two three four five six seven";

// ---------------------------------------------------------------------------------------------
// Harness

struct Hub {
    proc: Proc,
    _config: tempfile::TempPath,
}

impl Hub {
    async fn start(body: &str, env: &[(&str, &str)]) -> Hub {
        let admin_sha = sha256_hex(ADMIN_KEY);
        let toml = format!(
            "listen = \"127.0.0.1:0\"\ndrain_timeout = \"5s\"\n{body}\n\
             [admin]\napi_key_sha256 = [\"{admin_sha}\"]\n\
             [[tenants]]\nname = \"e2e\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"*\"]\n"
        );
        let path = write_config(&toml, "toml").unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let proc = Proc::spawn(
            "hub",
            &["--config".to_string(), path.to_string_lossy().into_owned()],
            &env,
        )
        .await
        .unwrap();
        Hub {
            proc,
            _config: path,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.proc.url())
    }

    async fn chat(&self, stream: bool, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut b = reqwest::Client::new()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&json!({
                "model": "demo",
                "stream": stream,
                "stream_options": {"include_usage": true},
                "max_tokens": 50,
                "temperature": 0.5,
                "messages": [{"role": "user", "content": PROMPT}],
            }));
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        b.send().await.unwrap()
    }

    async fn wait_healthy(&self, n: usize) {
        let ok = eventually(Duration::from_secs(15), || async {
            self.proc.count_log("spoke healthy") >= n
        })
        .await;
        assert!(
            ok,
            "hub did not see {n} healthy spokes:\n{}",
            self.proc.logs()
        );
    }
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn spoke_config(account: &str, up: &FakeOpenAi, telemetry: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\naccount = \"{account}\"\nprovider = \"openai\"\n\
         default_timeout = \"20s\"\ndrain_timeout = \"2s\"\n{telemetry}\n\
         [[regions]]\nname = \"us-east-1\"\nendpoint = \"{}\"\n\
         [[models]]\nid = \"m1\"\nstreaming = true\ncontext_window = 100000\n",
        up.url()
    )
}

/// Keeps the failing spoke's route closed so every request really tries it.
const NO_BREAKER: &str = "[breaker]\nfailures = 1000\n";

fn pool(name: &str, addr: SocketAddr) -> String {
    format!(
        "[[providers]]\nname = \"{name}\"\nspokes = [{{ addr = \"{addr}\", weight = 1 }}]\n\
         health = {{ interval = \"1s\" }}\n"
    )
}

/// Alias `demo`: pool `p1` first (made to fail in some tests), then pool `p2`.
const DEMO_TWO_POOLS: &str = "[[aliases]]\nname = \"demo\"\ncandidates = [\
    { provider = \"p1\", model = \"m1\", priority = 0 }, \
    { provider = \"p2\", model = \"m1\", priority = 1 }]\n";

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// OTLP receiver

#[derive(Default, Clone)]
struct Collector {
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.requests.lock().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A received span, flattened.
#[derive(Debug, Clone)]
struct RSpan {
    service: String,
    name: String,
    otel_name: String,
    /// OTLP status code: 0 unset, 1 ok, 2 error.
    status: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attrs: BTreeMap<String, String>,
    /// The attributes as exported, with their OTLP value types.
    values: BTreeMap<String, AnyValue>,
}

fn any_text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), any_text(&kv.value)))
        .collect()
}

impl Collector {
    async fn start() -> (Collector, SocketAddr) {
        let c = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = TraceServiceServer::new(c.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        (c, addr)
    }

    fn spans(&self) -> Vec<RSpan> {
        let mut out = Vec::new();
        for req in self.requests.lock().iter() {
            for rs in &req.resource_spans {
                let res = rs.resource.as_ref().map(|r| attrs(&r.attributes));
                let service = res
                    .and_then(|r| r.get("service.name").cloned())
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        let a = attrs(&s.attributes);
                        out.push(RSpan {
                            service: service.clone(),
                            // The tracing span name; the exported name is the GenAI-style
                            // `otel.name` ("chat demo").
                            name: a.get("switchyard.span").cloned().unwrap_or_default(),
                            otel_name: s.name.clone(),
                            status: s.status.as_ref().map_or(0, |st| st.code),
                            trace_id: hex::encode(&s.trace_id),
                            span_id: hex::encode(&s.span_id),
                            parent: hex::encode(&s.parent_span_id),
                            attrs: a,
                            values: s
                                .attributes
                                .iter()
                                .filter_map(|kv| {
                                    let v = kv.value.as_ref()?.value.clone()?;
                                    Some((kv.key.clone(), v))
                                })
                                .collect(),
                        });
                    }
                }
            }
        }
        out
    }
}

/// Two spokes exporting spans to a collector, p1's upstream failing (so a request fails over
/// to p2), and a hub in front of both exporting too.
struct TracedFailover {
    hub: Hub,
    _spokes: [Spoke; 2],
    _upstreams: [FakeOpenAi; 2],
}

impl TracedFailover {
    async fn start(otlp: SocketAddr) -> TracedFailover {
        let endpoint = format!("http://{otlp}");
        let (ua, ub) = (
            FakeOpenAi::start().await.unwrap(),
            FakeOpenAi::start().await.unwrap(),
        );
        ua.set_behavior(
            "m1",
            Behavior::Error {
                error: ErrorKind::ServiceUnavailable,
            },
        );
        let spoke_env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ];
        // Spokes take the endpoint from the environment, the hub from its config.
        let a = Spoke::start_with_env(&spoke_config("acct-a", &ua, NO_BREAKER), &spoke_env)
            .await
            .unwrap();
        let b = Spoke::start_with_env(&spoke_config("acct-b", &ub, ""), &spoke_env)
            .await
            .unwrap();
        let hub = Hub::start(
            &format!(
                "{DEMO_TWO_POOLS}{}{}\n[telemetry]\notlp_endpoint = \"{endpoint}\"\n",
                pool("p1", a.proc.addr()),
                pool("p2", b.proc.addr())
            ),
            &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
        )
        .await;
        hub.wait_healthy(2).await;
        TracedFailover {
            hub,
            _spokes: [a, b],
            _upstreams: [ua, ub],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

/// One request with a client `traceparent`; pool p1's upstream fails, so the hub fails over to
/// p2. The collector gets one trace with spans from both services, parented across the gRPC hop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_one_trace_across_hub_and_spokes_with_genai_attributes() {
    let (collector, otlp) = Collector::start().await;
    let stack = TracedFailover::start(otlp).await;
    let hub = &stack.hub;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_parent = "00f067aa0ba902b7";
    let r = hub
        .chat(
            false,
            &[("traceparent", &format!("00-{trace_id}-{client_parent}-01"))],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-account"), "acct-b");
    assert_eq!(header(&r, "x-switchyard-attempts"), "2");

    let ok = eventually(Duration::from_secs(20), || async {
        let spans = collector.spans();
        let services: BTreeSet<_> = spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .map(|s| s.service.clone())
            .collect();
        let count = |n: &str| spans.iter().filter(|s| s.name == n).count();
        services.contains("hub")
            && services.contains("spoke")
            && count("spoke.upstream_attempt") >= 2
            && count("spoke.infer") >= 2
            && count("hub.spoke_attempt") >= 2
            && count("hub.request") >= 1
    })
    .await;
    let spans = collector.spans();
    assert!(
        ok,
        "collector did not get spans from both tiers: {spans:#?}"
    );

    // One trace: every span of this request (hub and spokes) carries the client's trace id.
    let ours: Vec<&RSpan> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let foreign: Vec<&RSpan> = spans.iter().filter(|s| s.trace_id != trace_id).collect();
    assert!(
        foreign.is_empty(),
        "spans outside the request's trace: {foreign:#?}"
    );

    let find = |service: &str, name: &str| -> Vec<&RSpan> {
        ours.iter()
            .copied()
            .filter(|s| s.service == service && s.name == name)
            .collect()
    };
    let root = find("hub", "hub.request");
    assert_eq!(root.len(), 1, "{ours:#?}");
    let root = root[0];
    assert_eq!(
        root.parent, client_parent,
        "the hub honours the client's traceparent"
    );
    assert_eq!(root.otel_name, "chat demo");
    let a = &root.attrs;
    assert_eq!(a["gen_ai.operation.name"], "chat");
    assert_eq!(a["gen_ai.request.model"], "demo");
    assert_eq!(a["gen_ai.response.model"], "m1");
    assert_eq!(a["gen_ai.provider.name"], "openai");
    assert_eq!(a["gen_ai.request.max_tokens"], "50");
    assert_eq!(a["gen_ai.request.temperature"], "0.5");
    assert_eq!(a["switchyard.route.account"], "acct-b");
    assert_eq!(a["switchyard.route.region"], "us-east-1");
    assert_eq!(a["switchyard.tenant"], "e2e");
    let input: u64 = a["gen_ai.usage.input_tokens"].parse().unwrap();
    let output: u64 = a["gen_ai.usage.output_tokens"].parse().unwrap();
    assert!(input > 0 && output > 0, "{a:?}");
    assert!(!find("hub", "hub.route").is_empty());

    // Two hub attempts: the first failed with a failover reason, the second served.
    let mut attempts = find("hub", "hub.spoke_attempt");
    attempts.sort_by_key(|s| s.attrs["switchyard.attempt"].clone());
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(
        attempts[0].attrs["switchyard.failover.reason"],
        "unavailable"
    );
    assert_eq!(attempts[0].attrs["switchyard.pool"], "p1");
    assert_eq!(attempts[0].status, 2);
    assert_ne!(root.status, 2);
    assert!(!attempts[1].attrs.contains_key("switchyard.failover.reason"));
    assert_eq!(attempts[1].attrs["switchyard.route.account"], "acct-b");
    for at in &attempts {
        assert_eq!(at.parent, root.span_id);
    }

    // Each spoke's server span is a child of the hub attempt that called it (across processes).
    let servers = find("spoke", "spoke.infer");
    assert_eq!(servers.len(), 2, "{servers:#?}");
    for s in &servers {
        assert!(
            attempts.iter().any(|a| a.span_id == s.parent),
            "spoke span not parented by a hub attempt: {s:#?}"
        );
        assert_eq!(s.attrs["gen_ai.operation.name"], "chat");
        assert_eq!(s.attrs["gen_ai.provider.name"], "openai");
        assert_eq!(s.attrs["gen_ai.request.model"], "m1");
    }
    let served = servers
        .iter()
        .find(|s| s.attrs["switchyard.route.account"] == "acct-b")
        .unwrap();
    assert_eq!(served.attrs["gen_ai.response.model"], "m1");
    assert_eq!(served.attrs["gen_ai.usage.input_tokens"], input.to_string());
    assert_eq!(
        served.attrs["gen_ai.usage.output_tokens"],
        output.to_string()
    );
    let failed = servers
        .iter()
        .find(|s| s.attrs["switchyard.route.account"] == "acct-a")
        .unwrap();
    assert_eq!(failed.status, 2, "{failed:#?}");
    assert_eq!(failed.attrs["error.type"], "upstream_unavailable");

    // Upstream attempts: the failing one carries its failover reason.
    let ups = find("spoke", "spoke.upstream_attempt");
    assert!(
        ups.iter().any(|u| u
            .attrs
            .get("switchyard.failover.reason")
            .is_some_and(|r| r == "unavailable")
            && u.attrs["switchyard.route.account"] == "acct-a"),
        "{ups:#?}"
    );
    assert!(
        ups.iter()
            .all(|u| servers.iter().any(|s| s.span_id == u.parent))
    );

    // No prompt or completion text anywhere (capture_content is off).
    for s in &spans {
        for (k, v) in &s.attrs {
            assert!(!v.contains("four five six"), "prompt text in {k} of {s:#?}");
        }
    }
}

/// Known traffic (3 unary + 1 streamed, each failing over from p1 to p2) moves the hub's and the
/// spoke's counters by exactly that much; tokens and cost match the responses; the audit file
/// has one JSON line per request; the cost header matches the price table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_audit_and_cost_after_known_traffic() {
    let (ua, ub) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    ua.set_behavior(
        "m1",
        Behavior::Error {
            error: ErrorKind::ServiceUnavailable,
        },
    );
    // Spoke A has two regions, both failing: two upstream calls (one retry) per request.
    let two_regions = format!(
        "{NO_BREAKER}[[regions]]\nname = \"eu-west-1\"\nendpoint = \"{}\"\n",
        ua.url()
    );
    let a = Spoke::start(&spoke_config("acct-a", &ua, &two_regions))
        .await
        .unwrap();
    let b = Spoke::start(&spoke_config("acct-b", &ub, ""))
        .await
        .unwrap();
    let audit_dir = tempfile::tempdir().unwrap();
    let audit_path = audit_dir.path().join("audit.jsonl");
    // Prices from the table (USD per million tokens): 2.0 in, 8.0 out.
    let hub = Hub::start(
        &format!(
            "{DEMO_TWO_POOLS}{}{}\n[audit]\npath = \"{}\"\n[prices.m1]\ninput = 2.0\noutput = 8.0\n",
            pool("p1", a.proc.addr()),
            pool("p2", b.proc.addr()),
            audit_path.display()
        ),
        &[],
    )
    .await;
    hub.wait_healthy(2).await;

    let hub_metrics = hub.url("/metrics");
    let spoke_metrics = format!("{}/metrics", b.url());
    let spoke_a_metrics = format!("{}/metrics", a.url());
    let h0 = scrape(&hub_metrics).await;
    let s0 = scrape(&spoke_metrics).await;
    let sa0 = scrape(&spoke_a_metrics).await;

    let labels = [
        ("tenant", "e2e"),
        ("alias", "demo"),
        ("account", "acct-b"),
        ("region", "us-east-1"),
        ("model", "m1"),
        ("outcome", "ok"),
    ];
    let (mut tin, mut tout) = (0u64, 0u64);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = hub.chat(false, &[]).await;
        assert_eq!(r.status(), 200);
        ids.push(header(&r, "x-request-id"));
        let cost: f64 = header(&r, "x-switchyard-cost-usd").parse().unwrap();
        let body: Value = r.json().await.unwrap();
        let (i, o) = (
            body["usage"]["prompt_tokens"].as_u64().unwrap(),
            body["usage"]["completion_tokens"].as_u64().unwrap(),
        );
        let want = (i as f64 * 2.0 + o as f64 * 8.0) / 1e6;
        assert!((cost - want).abs() < 1e-6, "cost {cost} want {want}");
        tin += i;
        tout += o;
    }
    // One streamed request; its usage comes in the last chunk.
    let r = hub.chat(true, &[]).await;
    assert_eq!(r.status(), 200);
    ids.push(header(&r, "x-request-id"));
    let text = r.text().await.unwrap();
    let usage: Value = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v["usage"].is_object())
        .unwrap();
    tin += usage["usage"]["prompt_tokens"].as_u64().unwrap();
    tout += usage["usage"]["completion_tokens"].as_u64().unwrap();

    // A refused request (bad key) is counted as an error and audited, with no tenant.
    let r = reqwest::Client::new()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth("sk-wrong")
        .json(&json!({"model": "demo", "messages": [{"role": "user", "content": PROMPT}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Stream records finish when the stream ends: wait until nothing is in flight.
    let h1 = settled(&hub_metrics, "switchyard_in_flight_requests").await;
    let s1 = settled(&spoke_metrics, "switchyard_spoke_in_flight_requests").await;
    let sa1 = settled(&spoke_a_metrics, "switchyard_spoke_in_flight_requests").await;
    let d = |name: &str, want: &[(&str, &str)]| sum(&h1, name, want) - sum(&h0, name, want);
    assert_eq!(d("switchyard_requests_total", &labels), 4.0, "{h1:#?}");
    assert_eq!(d("switchyard_request_duration_seconds_count", &labels), 4.0);
    assert_eq!(
        d(
            "switchyard_failovers_total",
            &[("pool", "p1"), ("reason", "unavailable")]
        ),
        4.0
    );
    assert_eq!(
        d(
            "switchyard_retries_total",
            &[("pool", "p2"), ("reason", "unavailable")]
        ),
        4.0
    );
    assert_eq!(
        d(
            "switchyard_tokens_total",
            &[("account", "acct-b"), ("direction", "input")]
        ),
        tin as f64
    );
    assert_eq!(
        d(
            "switchyard_tokens_total",
            &[("account", "acct-b"), ("direction", "output")]
        ),
        tout as f64
    );
    let micros = d("switchyard_cost_usd_micros_total", &[("account", "acct-b")]);
    let want = (tin as f64 * 2.0 + tout as f64 * 8.0) / 1e6 * 1e6;
    assert!(
        (micros - want).abs() <= 4.0,
        "cost micros {micros} want {want}"
    );
    assert_eq!(d("switchyard_time_to_first_token_seconds_count", &[]), 1.0);
    assert_eq!(d("switchyard_overhead_seconds_count", &[]), 4.0);
    assert_eq!(
        d(
            "switchyard_request_errors_total",
            &[("tenant", "none"), ("error", "invalid_api_key")]
        ),
        1.0
    );
    assert_eq!(
        d(
            "switchyard_requests_total",
            &[("tenant", "none"), ("outcome", "error")]
        ),
        1.0
    );
    assert_eq!(sum(&h1, "switchyard_in_flight_requests", &[]), 0.0);
    assert_eq!(sum(&h1, "switchyard_in_flight_streams", &[]), 0.0);
    assert_eq!(
        sum(
            &h1,
            "switchyard_spoke_healthy",
            &[("pool", "p2"), ("account", "acct-b")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &h1,
            "switchyard_reported_headroom",
            &[("account", "acct-b"), ("model", "m1")]
        ),
        1.0
    );

    // The serving spoke counted 4 requests and the tokens; the failing one 4 errors, 8 failed
    // upstream attempts (two regions) and 4 retries.
    let ds = |name: &str, want: &[(&str, &str)]| sum(&s1, name, want) - sum(&s0, name, want);
    assert_eq!(
        ds(
            "switchyard_spoke_requests_total",
            &[("account", "acct-b"), ("model", "m1"), ("outcome", "ok")]
        ),
        4.0
    );
    assert_eq!(
        ds("switchyard_spoke_tokens_total", &[("direction", "output")]),
        tout as f64
    );
    assert_eq!(
        ds("switchyard_spoke_time_to_first_token_seconds_count", &[]),
        1.0
    );
    assert_eq!(
        sum(
            &s1,
            "switchyard_route_state",
            &[("region", "us-east-1"), ("state", "ready")]
        ),
        1.0
    );
    let dsa = |name: &str, want: &[(&str, &str)]| sum(&sa1, name, want) - sum(&sa0, name, want);
    for region in ["eu-west-1", "us-east-1"] {
        assert_eq!(
            dsa(
                "switchyard_upstream_attempts_total",
                &[("region", region), ("outcome", "unavailable")]
            ),
            4.0,
            "{region}"
        );
    }
    assert_eq!(
        dsa(
            "switchyard_spoke_failovers_total",
            &[("reason", "unavailable")]
        ),
        8.0
    );
    assert_eq!(
        dsa(
            "switchyard_spoke_retries_total",
            &[("reason", "unavailable")]
        ),
        4.0
    );
    assert_eq!(
        dsa("switchyard_spoke_requests_total", &[("outcome", "error")]),
        4.0
    );

    // Audit: one line per request, with the route, both attempts, tokens, cost, latency.
    let mut lines: Vec<Value> = Vec::new();
    let mut ok = false;
    for _ in 0..50 {
        lines = std::fs::read_to_string(&audit_path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 5 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "audit lines: {lines:#?}");
    assert_eq!(lines.len(), 5);
    let refused = lines.pop().unwrap();
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["error"], "invalid_api_key");
    assert_eq!(refused["tenant"], "");
    assert!(refused["route"].is_null());
    assert!(!refused.to_string().contains("sk-wrong"));
    for (line, id) in lines.iter().zip(&ids) {
        assert_eq!(&line["request_id"], id);
        assert_eq!(line["tenant"], "e2e");
        assert_eq!(line["alias"], "demo");
        assert_eq!(line["status"], 200);
        assert_eq!(line["outcome"], "ok");
        assert_eq!(line["route"]["account"], "acct-b");
        assert_eq!(line["route"]["region"], "us-east-1");
        let attempts = line["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{line}");
        assert_eq!(attempts[0]["outcome"], "unavailable");
        assert_eq!(attempts[0]["pool"], "p1");
        assert_eq!(attempts[1]["outcome"], "ok");
        // The serving spoke's own attempt: one region, ok.
        assert_eq!(attempts[1]["upstream"][0]["region"], "us-east-1");
        assert_eq!(attempts[1]["upstream"][0]["outcome"], "ok");
        assert!(line["usage"]["input_tokens"].as_u64().unwrap() > 0);
        assert!(line["cost_usd"].as_f64().unwrap() > 0.0);
        assert!(line["latency_ms"].as_f64().unwrap() > 0.0);
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
        assert!(
            !line.to_string().contains("four five six"),
            "prompt in audit"
        );
        assert!(!line.to_string().contains(KEY), "key in audit");
    }
    assert!(lines[3]["stream"].as_bool().unwrap());
    assert!(lines[3]["time_to_first_token_ms"].as_f64().is_some());
    assert!(lines[0]["time_to_first_token_ms"].is_null());
}

/// A tiny reverse proxy on 127.0.0.1:0 that adds the admin key header to every request, so the
/// browser never sees the key in a URL.
async fn admin_proxy(target: String) -> SocketAddr {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::Response;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: Request| {
        let client = client.clone();
        let target = target.clone();
        async move {
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            let r = client
                .get(format!("{target}{path}"))
                .header("x-admin-key", ADMIN_KEY)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let ct = header(&r, "content-type");
            let body = r.bytes().await.unwrap();
            Response::builder()
                .status(status)
                .header("content-type", ct)
                .body(Body::from(body))
                .unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// `/admin/routes`: JSON with every spoke (one up, one down), refused without the key; the HTML
/// page rendered by headless Chromium shows every row with its health class, and the test keeps
/// a screenshot under `target/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_json_and_page_in_headless_chromium() {
    let ua = FakeOpenAi::start().await.unwrap();
    let a = Spoke::start(&spoke_config("acct-a", &ua, ""))
        .await
        .unwrap();
    // A spoke address where nothing listens: it stays unhealthy.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let hub = Hub::start(
        &format!(
            "{DEMO_TWO_POOLS}{}{}",
            pool("p1", a.proc.addr()),
            pool("p2", dead)
        ),
        &[],
    )
    .await;
    hub.wait_healthy(1).await;
    let client = reqwest::Client::new();

    let r = client.get(hub.url("/admin/routes")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(hub.url("/admin/routes"))
        .header("x-admin-key", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Wait until the dead spoke has been checked (so it shows as unhealthy, not pending).
    let mut table = Value::Null;
    let mut ok = false;
    for _ in 0..100 {
        table = client
            .get(hub.url("/admin/routes"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if table["pools"][1]["spokes"][0]["last_check"].is_string() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "{table:#}");
    let pools = table["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 2);
    let up = &pools[0]["spokes"][0];
    assert_eq!(pools[0]["name"], "p1");
    assert_eq!(up["address"], a.proc.addr().to_string());
    assert_eq!(up["pool"], "p1");
    assert_eq!(up["weight"], 1);
    assert_eq!(up["health"], "healthy");
    assert_eq!(up["breaker"], "closed");
    assert_eq!(up["account"], "acct-a");
    assert_eq!(up["headroom"], 1.0);
    assert_eq!(up["models"], json!(["m1"]));
    assert_eq!(up["regions"][0]["region"], "us-east-1");
    assert_eq!(up["regions"][0]["state"], "ready");
    assert!(up["last_check"].as_str().unwrap().ends_with('Z'));
    let down = &pools[1]["spokes"][0];
    assert_eq!(down["address"], dead.to_string());
    assert_eq!(down["health"], "unhealthy");
    assert!(down["account"].is_null());
    assert!(down["last_error"].is_string());
    let r = client
        .get(hub.url("/admin/routes?format=xml"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The page, through the header-adding proxy, in headless Chromium.
    let chromium = std::path::Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "/usr/bin/chromium missing (apt-get install -y chromium; .ci/run installs it)"
    );
    let proxy = admin_proxy(hub.proc.url()).await;
    let page = format!("http://{proxy}/admin/routes.html");
    let html = reqwest::get(&page).await.unwrap().text().await.unwrap();
    assert!(html.contains("http-equiv=\"refresh\""), "{html}");

    let out_dir = switchyard_testkit::process::bin_dir()
        .unwrap()
        .parent()
        .unwrap()
        .join("observability");
    std::fs::create_dir_all(&out_dir).unwrap();
    let shot = out_dir.join("admin-routes.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let base_args = |extra: &[String]| {
        let mut v = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        v.extend_from_slice(extra);
        v
    };
    let run = |args: Vec<String>| async move {
        tokio::time::timeout(
            Duration::from_secs(90),
            tokio::process::Command::new("/usr/bin/chromium")
                .args(&args)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("chromium timed out")
        .unwrap()
    };
    let dom = run(base_args(&["--dump-dom".into(), page.clone()])).await;
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(dom.contains("<table id=\"routes\""), "DOM: {dom}");
    let rows = dom.matches("<tr class=\"spoke ").count();
    assert_eq!(rows, 2, "DOM: {dom}");
    assert!(dom.contains(&format!(
        "class=\"spoke health-healthy\" data-address=\"{}\"",
        a.proc.addr()
    )));
    assert!(dom.contains(&format!(
        "class=\"spoke health-unhealthy\" data-address=\"{dead}\""
    )));

    let out = run(base_args(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1200,800".into(),
        "--hide-scrollbars".into(),
        page.clone(),
    ]))
    .await;
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}); chromium said: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1200, 800));
    // A blank page compresses to a few KB; a rendered table with colours is larger.
    assert!(png.len() > 10_000, "screenshot only {} bytes", png.len());
    eprintln!("screenshot: {}", shot.display());
}

/// With `capture_content = true` (telemetry and audit), the prompt is on the hub's request span
/// and in the audit line — and only then (the other tests assert its absence by default). The
/// spans reach the collector through the flush when the hub exits on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_content_on_spans_and_audit_and_flush_on_exit() {
    let (collector, otlp) = Collector::start().await;
    let ua = FakeOpenAi::start().await.unwrap();
    let a = Spoke::start(&spoke_config("acct-a", &ua, ""))
        .await
        .unwrap();
    let audit_dir = tempfile::tempdir().unwrap();
    let audit_path = audit_dir.path().join("audit.jsonl");
    let hub = Hub::start(
        &format!(
            "[[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"p1\", model = \"m1\" }}]\n{}\n\
             [telemetry]\notlp_endpoint = \"http://{otlp}\"\ncapture_content = true\n\
             [audit]\npath = \"{}\"\ncapture_content = true\n",
            pool("p1", a.proc.addr()),
            audit_path.display()
        ),
        // The default batch delay (5 s) is longer than this test waits: the spans must arrive
        // through the flush on exit.
        &[],
    )
    .await;
    let mut hub = hub;
    hub.wait_healthy(1).await;
    let r = hub.chat(false, &[]).await;
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        collector.spans().is_empty(),
        "exported before the batch delay"
    );
    hub.proc.sigterm().unwrap();
    let status = hub.proc.wait_exit(Duration::from_secs(15)).await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        collector.spans().iter().any(|s| s.name == "hub.request"),
        "no hub.request span after the hub exited (flush on exit)"
    );
    let spans = collector.spans();
    let root = spans.iter().find(|s| s.name == "hub.request").unwrap();
    let messages: Value = serde_json::from_str(&root.attrs["gen_ai.input.messages"]).unwrap();
    assert_eq!(messages, json!([{"role": "user", "content": PROMPT}]));

    let mut line = Value::Null;
    for _ in 0..50 {
        if let Some(l) = std::fs::read_to_string(&audit_path)
            .unwrap_or_default()
            .lines()
            .next()
        {
            line = serde_json::from_str(l).unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        line["messages"],
        json!([{"role": "user", "content": PROMPT}]),
        "{line}"
    );
    // The trace id in the audit line ties it to the trace.
    assert_eq!(line["trace_id"].as_str().unwrap(), root.trace_id);
}

/// A stream that fails after its first chunk ends as `stream_error`: counted as an error with
/// code `stream_interrupted`, audited with its time to first token, on hub and spoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_failing_mid_way_is_counted_and_audited() {
    let ua = FakeOpenAi::start().await.unwrap();
    ua.set_behavior("m1", Behavior::StreamFailAfter { chunks: 2 });
    let a = Spoke::start(&spoke_config("acct-a", &ua, NO_BREAKER))
        .await
        .unwrap();
    let audit_dir = tempfile::tempdir().unwrap();
    let audit_path = audit_dir.path().join("audit.jsonl");
    let hub = Hub::start(
        &format!(
            "[[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"p1\", model = \"m1\" }}]\n{}\n\
             [audit]\npath = \"{}\"\n",
            pool("p1", a.proc.addr()),
            audit_path.display()
        ),
        &[],
    )
    .await;
    hub.wait_healthy(1).await;
    let hub_metrics = hub.url("/metrics");
    let spoke_metrics = format!("{}/metrics", a.url());
    let (h0, s0) = (scrape(&hub_metrics).await, scrape(&spoke_metrics).await);

    let r = hub.chat(true, &[]).await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains("stream_interrupted"), "{body}");
    assert!(!body.contains("[DONE]"));
    let h1 = settled(&hub_metrics, "switchyard_in_flight_requests").await;
    let s1 = settled(&spoke_metrics, "switchyard_spoke_in_flight_requests").await;
    let d = |name: &str, want: &[(&str, &str)]| sum(&h1, name, want) - sum(&h0, name, want);
    assert_eq!(
        d(
            "switchyard_requests_total",
            &[("account", "acct-a"), ("outcome", "stream_error")]
        ),
        1.0
    );
    assert_eq!(
        d(
            "switchyard_request_errors_total",
            &[("error", "stream_interrupted")]
        ),
        1.0
    );
    assert_eq!(d("switchyard_time_to_first_token_seconds_count", &[]), 1.0);
    assert_eq!(sum(&h1, "switchyard_in_flight_streams", &[]), 0.0);
    let ds = |name: &str, want: &[(&str, &str)]| sum(&s1, name, want) - sum(&s0, name, want);
    assert_eq!(
        ds(
            "switchyard_spoke_requests_total",
            &[("region", "us-east-1"), ("outcome", "stream_error")]
        ),
        1.0
    );
    assert_eq!(sum(&s1, "switchyard_spoke_in_flight_streams", &[]), 0.0);

    let mut line = Value::Null;
    for _ in 0..50 {
        if let Some(l) = std::fs::read_to_string(&audit_path)
            .unwrap_or_default()
            .lines()
            .next()
        {
            line = serde_json::from_str(l).unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(line["outcome"], "stream_error", "{line}");
    assert_eq!(line["error"], "stream_interrupted");
    assert_eq!(line["status"], 200);
    assert_eq!(line["route"]["account"], "acct-a");
    assert!(line["usage"].is_null());
    assert!(line["time_to_first_token_ms"].as_f64().is_some());
}

/// The innermost JSON object around the last `key` in `text` (the Converse stream's `metadata`
/// frame carries its payload as plain JSON inside the binary frame).
fn json_after(text: &str, key: &str) -> Value {
    let at = text.rfind(key).unwrap();
    let start = text[..at].rfind('{').unwrap();
    serde_json::Deserializer::from_str(&text[start..])
        .into_iter::<Value>()
        .next()
        .unwrap()
        .unwrap()
}

/// One answered request of [`every_surface_is_metered_audited_and_costed`], as the client saw it.
#[derive(Debug)]
struct Served {
    id: &'static str,
    surface: &'static str,
    alias: &'static str,
    stream: bool,
    input: u64,
    output: u64,
    /// `x-switchyard-cost-usd`, when the answer had it.
    cost_header: Option<f64>,
}

/// One request through each non-OpenAI surface (Anthropic unary + stream, Converse unary +
/// stream, embeddings) and a refused one per surface: each has exactly one audit line with its
/// `surface`, tenant, alias, route, tokens, cost and status; the RED counters (labelled by
/// surface), tokens, cost and TTFT moved by exactly those requests; the non-streaming answers
/// carry `x-switchyard-cost-usd`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_surface_is_metered_audited_and_costed() {
    let up = FakeOpenAi::start().await.unwrap();
    let spoke = Spoke::start(&format!(
        "{}[[models]]\nid = \"emb\"\nupstream_id = \"text-embedding-3-small\"\n",
        spoke_config("acct-s", &up, "")
    ))
    .await
    .unwrap();
    let audit_dir = tempfile::tempdir().unwrap();
    let audit_path = audit_dir.path().join("audit.jsonl");
    let hub = Hub::start(
        &format!(
            "[[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"p1\", model = \"m1\" }}]\n\
             [[aliases]]\nname = \"vectors\"\ncandidates = [{{ provider = \"p1\", model = \"emb\" }}]\n\
             {}\n[audit]\npath = \"{}\"\n\
             [prices.m1]\ninput = 2.0\noutput = 8.0\n[prices.emb]\ninput = 0.5\noutput = 0.0\n",
            pool("p1", spoke.proc.addr()),
            audit_path.display()
        ),
        &[],
    )
    .await;
    hub.wait_healthy(1).await;
    let hub_metrics = hub.url("/metrics");
    let h0 = scrape(&hub_metrics).await;
    let client = reqwest::Client::new();
    // Each surface authenticated as its SDKs do: `x-api-key` (Anthropic, Converse), Bearer
    // (embeddings).
    let post = |path: &str, id: &str, key: &str, body: Value| {
        let (name, value) = if path.starts_with("/v1/embeddings") {
            ("authorization", format!("Bearer {key}"))
        } else {
            ("x-api-key", key.to_string())
        };
        client
            .post(hub.url(path))
            .header(name, value)
            .header("x-request-id", id)
            .json(&body)
            .send()
    };
    let anthropic_body = |stream: bool| {
        json!({"model": "demo", "max_tokens": 50, "stream": stream, "temperature": 0.5,
               "messages": [{"role": "user", "content": PROMPT}]})
    };
    let converse_body = json!({"messages": [{"role": "user", "content": [{"text": PROMPT}]}],
                               "inferenceConfig": {"maxTokens": 50}});
    let mut seen: Vec<Served> = Vec::new();
    let cost_of = |r: &reqwest::Response| -> Option<f64> {
        r.headers()
            .get("x-switchyard-cost-usd")
            .map(|v| v.to_str().unwrap().parse().unwrap())
    };

    let r = post("/v1/messages", "anth-1", KEY, anthropic_body(false))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cost = cost_of(&r);
    let b: Value = r.json().await.unwrap();
    let u = &b["usage"];
    seen.push(Served {
        id: "anth-1",
        surface: "anthropic",
        alias: "demo",
        stream: false,
        input: u["input_tokens"].as_u64().unwrap(),
        output: u["output_tokens"].as_u64().unwrap(),
        cost_header: cost,
    });

    let r = post("/v1/messages", "anth-2", KEY, anthropic_body(true))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(cost_of(&r).is_none(), "a stream's cost is not in its head");
    let text = r.text().await.unwrap();
    let u = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v["type"] == "message_delta")
        .unwrap()["usage"]
        .clone();
    seen.push(Served {
        id: "anth-2",
        surface: "anthropic",
        alias: "demo",
        stream: true,
        input: u["input_tokens"].as_u64().unwrap(),
        output: u["output_tokens"].as_u64().unwrap(),
        cost_header: None,
    });

    let r = post("/model/demo/converse", "conv-1", KEY, converse_body.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cost = cost_of(&r);
    let b: Value = r.json().await.unwrap();
    let u = &b["usage"];
    seen.push(Served {
        id: "conv-1",
        surface: "converse",
        alias: "demo",
        stream: false,
        input: u["inputTokens"].as_u64().unwrap(),
        output: u["outputTokens"].as_u64().unwrap(),
        cost_header: cost,
    });

    let r = post(
        "/model/demo/converse-stream",
        "conv-2",
        KEY,
        converse_body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(cost_of(&r).is_none());
    let bytes = r.bytes().await.unwrap();
    let u = json_after(&String::from_utf8_lossy(&bytes), "\"inputTokens\"");
    seen.push(Served {
        id: "conv-2",
        surface: "converse",
        alias: "demo",
        stream: true,
        input: u["inputTokens"].as_u64().unwrap(),
        output: u["outputTokens"].as_u64().unwrap(),
        cost_header: None,
    });

    let r = post(
        "/v1/embeddings",
        "emb-1",
        KEY,
        json!({"model": "vectors", "input": ["one two three", "four five"]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let cost = cost_of(&r);
    let b: Value = r.json().await.unwrap();
    seen.push(Served {
        id: "emb-1",
        surface: "embeddings",
        alias: "vectors",
        stream: false,
        input: b["usage"]["prompt_tokens"].as_u64().unwrap(),
        output: 0,
        cost_header: cost,
    });

    // Refused (bad key) on each surface: audited and counted, no tenant, no route.
    // (path, request id, surface, status: Converse answers AccessDeniedException, 403)
    let refused = [
        ("/v1/messages", "bad-anth", "anthropic", 401),
        ("/model/demo/converse", "bad-conv", "converse", 403),
        ("/v1/embeddings", "bad-emb", "embeddings", 401),
    ];
    for (path, id, _, status) in refused {
        let body = if path.contains("embeddings") {
            json!({"model": "vectors", "input": "x"})
        } else {
            anthropic_body(false)
        };
        let r = post(path, id, "sk-wrong", body).await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(header(&r, "x-request-id"), id);
    }

    let h1 = settled(&hub_metrics, "switchyard_in_flight_requests").await;
    let d = |name: &str, want: &[(&str, &str)]| sum(&h1, name, want) - sum(&h0, name, want);
    let price = |alias: &str, i: u64, o: u64| {
        if alias == "vectors" {
            i as f64 * 0.5 / 1e6
        } else {
            (i as f64 * 2.0 + o as f64 * 8.0) / 1e6
        }
    };
    for (surface, alias, n) in [
        ("anthropic", "demo", 2.0),
        ("converse", "demo", 2.0),
        ("embeddings", "vectors", 1.0),
    ] {
        let ok = [
            ("tenant", "e2e"),
            ("alias", alias),
            ("surface", surface),
            ("account", "acct-s"),
            ("region", "us-east-1"),
            ("outcome", "ok"),
        ];
        assert_eq!(d("switchyard_requests_total", &ok), n, "{surface}: {h1:#?}");
        assert_eq!(
            d("switchyard_request_duration_seconds_count", &ok),
            n,
            "{surface}"
        );
        assert_eq!(
            d(
                "switchyard_request_errors_total",
                &[
                    ("tenant", "none"),
                    ("surface", surface),
                    ("error", "invalid_api_key")
                ]
            ),
            1.0,
            "{surface}"
        );
        assert_eq!(
            d(
                "switchyard_requests_total",
                &[("surface", surface), ("outcome", "error")]
            ),
            1.0,
            "{surface}"
        );
    }
    // Nothing went through the OpenAI surface.
    assert_eq!(
        d("switchyard_requests_total", &[("surface", "openai")]),
        0.0
    );
    for (alias, direction, want) in [
        (
            "demo",
            "input",
            seen.iter()
                .filter(|s| s.alias == "demo")
                .map(|s| s.input)
                .sum::<u64>(),
        ),
        (
            "demo",
            "output",
            seen.iter()
                .filter(|s| s.alias == "demo")
                .map(|s| s.output)
                .sum::<u64>(),
        ),
        ("vectors", "input", seen[4].input),
        ("vectors", "output", 0),
    ] {
        assert_eq!(
            d(
                "switchyard_tokens_total",
                &[("alias", alias), ("direction", direction)]
            ),
            want as f64,
            "{alias} {direction}"
        );
    }
    assert!(seen.iter().all(|s| s.input > 0), "{seen:?}");
    let micros = d("switchyard_cost_usd_micros_total", &[("tenant", "e2e")]);
    let want: f64 = seen
        .iter()
        .map(|s| (price(s.alias, s.input, s.output) * 1e6).round())
        .sum();
    assert!(
        (micros - want).abs() < 0.5,
        "cost micros {micros} want {want}"
    );
    assert_eq!(d("switchyard_time_to_first_token_seconds_count", &[]), 2.0);
    assert_eq!(sum(&h1, "switchyard_in_flight_streams", &[]), 0.0);

    // The audit: exactly one line per request.
    let want_lines = seen.len() + refused.len();
    let mut lines: Vec<Value> = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(&audit_path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= want_lines {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lines.len(), want_lines, "{lines:#?}");
    let line_of = |id: &str| -> &Value {
        let mut found = lines.iter().filter(|l| l["request_id"] == id);
        let l = found
            .next()
            .unwrap_or_else(|| panic!("no audit line for {id}"));
        assert!(found.next().is_none(), "two audit lines for {id}");
        l
    };
    for Served {
        id,
        surface,
        alias,
        stream,
        input,
        output,
        cost_header: header_cost,
    } in &seen
    {
        let l = line_of(id);
        assert_eq!(l["surface"], *surface, "{l}");
        assert_eq!(l["tenant"], "e2e");
        assert_eq!(l["alias"], *alias);
        assert_eq!(l["stream"], *stream);
        assert_eq!(l["status"], 200);
        assert_eq!(l["outcome"], "ok");
        assert!(l["error"].is_null());
        assert_eq!(l["route"]["provider"], "openai");
        assert_eq!(l["route"]["account"], "acct-s");
        assert_eq!(l["route"]["region"], "us-east-1");
        assert_eq!(
            l["route"]["model"],
            if *alias == "demo" { "m1" } else { "emb" }
        );
        assert_eq!(l["attempts"].as_array().unwrap().len(), 1);
        assert_eq!(l["usage"]["input_tokens"], *input);
        assert_eq!(l["usage"]["output_tokens"], *output);
        let cost = l["cost_usd"].as_f64().unwrap();
        assert!((cost - price(alias, *input, *output)).abs() < 1e-9, "{l}");
        match header_cost {
            Some(h) => assert_eq!(format!("{cost:.6}"), format!("{h:.6}"), "{id}"),
            None => assert!(*stream, "{id}: non-streaming answer without a cost header"),
        }
        assert_eq!(l["time_to_first_token_ms"].is_number(), *stream, "{l}");
        assert!(!l.to_string().contains("four five six"), "prompt in audit");
        assert!(!l.to_string().contains(KEY), "key in audit");
    }
    for (_, id, surface, status) in refused {
        let l = line_of(id);
        assert_eq!(l["surface"], surface);
        assert_eq!(l["status"], status, "{l}");
        assert_eq!(l["error"], "invalid_api_key");
        assert_eq!(l["tenant"], "");
        assert!(l["route"].is_null());
        assert!(!l.to_string().contains("sk-wrong"));
    }
}

/// Anthropic, Converse (streamed) and embeddings requests, each with a client `traceparent`:
/// each gets a `hub.request` span that is the child of the client's span, named and attributed
/// for its GenAI operation (`chat ALIAS`, `embeddings ALIAS`), with tenant, route and usage; the
/// streamed one has its usage from the end of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_surface_has_a_request_span_under_the_client_traceparent() {
    let (collector, otlp) = Collector::start().await;
    let endpoint = format!("http://{otlp}");
    let up = FakeOpenAi::start().await.unwrap();
    let spoke = Spoke::start(&format!(
        "{}[[models]]\nid = \"emb\"\nupstream_id = \"text-embedding-3-small\"\n",
        spoke_config("acct-s", &up, "")
    ))
    .await
    .unwrap();
    let hub = Hub::start(
        &format!(
            "[[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"p1\", model = \"m1\" }}]\n\
             [[aliases]]\nname = \"vectors\"\ncandidates = [{{ provider = \"p1\", model = \"emb\" }}]\n\
             {}\n[telemetry]\notlp_endpoint = \"{endpoint}\"\n\
             [prices.m1]\ninput = 2.0\noutput = 8.0\n",
            pool("p1", spoke.proc.addr()),
        ),
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
    .await;
    hub.wait_healthy(1).await;
    let parent = "00f067aa0ba902b7";
    // (trace id, path, auth header, body, exported span name, operation, max_tokens)
    let calls = [
        (
            "4bf92f3577b34da6a3ce929d0e0e4701",
            "/v1/messages",
            "x-api-key",
            json!({"model": "demo", "max_tokens": 40, "temperature": 0.25,
                   "messages": [{"role": "user", "content": PROMPT}]}),
            "chat demo",
            "chat",
            "40",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4702",
            "/model/demo/converse-stream",
            "x-api-key",
            json!({"messages": [{"role": "user", "content": [{"text": PROMPT}]}],
                   "inferenceConfig": {"maxTokens": 30}}),
            "chat demo",
            "chat",
            "30",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4703",
            "/v1/embeddings",
            "authorization",
            json!({"model": "vectors", "input": ["a b c"]}),
            "embeddings vectors",
            "embeddings",
            "",
        ),
    ];
    let client = reqwest::Client::new();
    for (trace, path, auth, body, ..) in &calls {
        let key = if *auth == "authorization" {
            format!("Bearer {KEY}")
        } else {
            KEY.to_string()
        };
        let r = client
            .post(hub.url(path))
            .header(*auth, key)
            .header("traceparent", format!("00-{trace}-{parent}-01"))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.bytes().await.unwrap();
    }
    let ok = eventually(Duration::from_secs(20), || async {
        let spans = collector.spans();
        calls.iter().all(|c| {
            spans
                .iter()
                .any(|s| s.trace_id == c.0 && s.name == "hub.request")
        })
    })
    .await;
    let spans = collector.spans();
    assert!(ok, "missing hub.request spans: {spans:#?}");
    for (trace, path, _, _, name, operation, max_tokens) in &calls {
        let s = spans
            .iter()
            .find(|s| s.trace_id == *trace && s.name == "hub.request")
            .unwrap();
        assert_eq!(s.parent, parent, "{path}: not the client's child");
        assert_eq!(s.otel_name, *name, "{path}");
        let a = &s.attrs;
        assert_eq!(a["gen_ai.operation.name"], *operation, "{path}");
        assert_eq!(a["gen_ai.provider.name"], "openai", "{path}");
        assert_eq!(a["switchyard.tenant"], "e2e", "{path}");
        assert_eq!(a["switchyard.route.account"], "acct-s", "{path}");
        assert_eq!(a["http.response.status_code"], "200", "{path}");
        assert!(
            a["gen_ai.usage.input_tokens"].parse::<u64>().unwrap() > 0,
            "{path}: {a:?}"
        );
        assert_eq!(
            a.get("gen_ai.request.max_tokens")
                .map_or("", String::as_str),
            *max_tokens,
            "{path}"
        );
        assert!(!a.contains_key("gen_ai.input.messages"), "{path}");
        // Spoke attempts are children of the request span.
        assert!(
            spans
                .iter()
                .any(|c| c.name == "hub.spoke_attempt" && c.parent == s.span_id),
            "{path}: no attempt span under the request"
        );
    }
    let stream = spans
        .iter()
        .find(|s| s.trace_id == calls[1].0 && s.name == "hub.request")
        .unwrap();
    assert_eq!(stream.attrs["switchyard.stream"], "true");
    assert!(
        stream.attrs["gen_ai.usage.output_tokens"]
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(stream.attrs.contains_key("switchyard.cost_usd"));
    let anth = spans
        .iter()
        .find(|s| s.trace_id == calls[0].0 && s.name == "hub.request")
        .unwrap();
    assert_eq!(anth.attrs["gen_ai.request.temperature"], "0.25");
}

// ---------------------------------------------------------------------------------------------
// Attribute types and metric descriptions (issue 20, part 3)

/// Integer attributes of the semantic conventions (and ours): each must arrive as an OTLP int.
const INT_ATTRIBUTES: &[&str] = &[
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.request.max_tokens",
    "http.response.status_code",
    "switchyard.attempts",
    "switchyard.attempt",
    "switchyard.candidates",
];

/// A request with parameters whose `f32` widening is visible (0.3, 0.9), through a hub whose
/// first pool fails (two attempts), with both tiers exporting to the collector: every integer
/// attribute is an OTLP int and the floats arrive as written, on both tiers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_attributes_keep_their_semantic_convention_types_on_both_tiers() {
    let (collector, otlp) = Collector::start().await;
    let stack = TracedFailover::start(otlp).await;
    let hub = &stack.hub;

    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4737";
    let r = reqwest::Client::new()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({
            "model": "demo", "max_tokens": 50, "temperature": 0.3, "top_p": 0.9,
            "messages": [{"role": "user", "content": PROMPT}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-attempts"), "2");

    let ours = || -> Vec<RSpan> {
        collector
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    };
    let arrived = eventually(Duration::from_secs(20), || async {
        let spans = ours();
        let count = |n: &str| spans.iter().filter(|s| s.name == n).count();
        count("hub.request") == 1
            && count("hub.route") >= 1
            && count("hub.spoke_attempt") == 2
            && count("spoke.infer") == 2
    })
    .await;
    let spans = ours();
    assert!(arrived, "spans missing: {spans:#?}");

    let int = |s: &RSpan, key: &str| -> i64 {
        match s.values.get(key) {
            Some(AnyValue::IntValue(i)) => *i,
            other => panic!("{} {key}: {other:?}, not an int", s.name),
        }
    };
    let double = |s: &RSpan, key: &str| -> f64 {
        match s.values.get(key) {
            Some(AnyValue::DoubleValue(d)) => *d,
            other => panic!("{} {key}: {other:?}, not a double", s.name),
        }
    };
    let one = |name: &str| spans.iter().find(|s| s.name == name).unwrap();

    let root = one("hub.request");
    assert_eq!(int(root, "gen_ai.request.max_tokens"), 50);
    assert_eq!(int(root, "http.response.status_code"), 200);
    assert_eq!(int(root, "switchyard.attempts"), 2);
    assert!(int(root, "gen_ai.usage.input_tokens") > 0);
    assert!(int(root, "gen_ai.usage.output_tokens") > 0);
    assert_eq!(double(root, "gen_ai.request.temperature"), 0.3);
    assert_eq!(double(root, "gen_ai.request.top_p"), 0.9);
    assert!(matches!(
        root.values.get("switchyard.stream"),
        Some(AnyValue::BoolValue(false))
    ));
    assert_eq!(int(one("hub.route"), "switchyard.candidates"), 2);
    let mut attempts: Vec<i64> = spans
        .iter()
        .filter(|s| s.name == "hub.spoke_attempt")
        .map(|s| int(s, "switchyard.attempt"))
        .collect();
    attempts.sort_unstable();
    assert_eq!(attempts, vec![1, 2]);

    let served = spans
        .iter()
        .find(|s| s.name == "spoke.infer" && s.attrs["switchyard.route.account"] == "acct-b")
        .unwrap();
    assert_eq!(int(served, "gen_ai.request.max_tokens"), 50);
    assert_eq!(double(served, "gen_ai.request.temperature"), 0.3);
    assert_eq!(double(served, "gen_ai.request.top_p"), 0.9);
    assert_eq!(
        int(served, "gen_ai.usage.input_tokens"),
        int(root, "gen_ai.usage.input_tokens")
    );
    assert_eq!(
        int(served, "gen_ai.usage.output_tokens"),
        int(root, "gen_ai.usage.output_tokens")
    );
    assert!(int(served, "switchyard.attempts") >= 1);

    // Whatever span carries them, on either tier: integers are ints, never strings.
    for s in &spans {
        for key in INT_ATTRIBUTES {
            if s.values.contains_key(*key) {
                int(s, key);
            }
        }
    }
}

/// A Python with `prometheus_client` (`SWITCHYARD_TEST_PYTHON`, else `tests/.venv`, which
/// `scripts/test` creates, else `python3`).
fn python() -> String {
    std::env::var("SWITCHYARD_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/.venv/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    })
}

/// `text` parsed by `prometheus_client`'s text-format parser (it raises on a malformed line):
/// each family's (name as in the exposition, type, help).
fn parse_with_prometheus_client(text: &str) -> Vec<(String, String, String)> {
    use std::io::Write as _;
    const SCRIPT: &str = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families as parse\n\
        out = []\n\
        for f in parse(sys.stdin.read()):\n\
        \x20   name = f.name + '_total' if f.type == 'counter' else f.name\n\
        \x20   out.append([name, f.type, f.documentation])\n\
        print(json.dumps(out))\n";
    let mut child = std::process::Command::new(python())
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python (run scripts/test, or make tests/.venv with prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The metric table of `section` (`### Hub` / `### Spoke`) in docs/observability.md:
/// name → (type, meaning without Markdown).
fn documented_metrics(section: &str) -> BTreeMap<String, (String, String)> {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/observability.md"),
    )
    .unwrap();
    let start = doc.find(section).unwrap();
    let rest = &doc[start + section.len()..];
    let end = rest.find("\n#").unwrap_or(rest.len());
    rest[..end]
        .lines()
        .filter(|l| l.starts_with("| `switchyard_"))
        .map(|l| {
            let cells: Vec<&str> = l.trim().trim_matches('|').split(" | ").collect();
            (
                cells[0].trim().trim_matches('`').to_string(),
                (
                    cells[1].trim().to_string(),
                    cells[3].trim().replace('`', ""),
                ),
            )
        })
        .collect()
}

/// Checks one tier's exposition: the text format's structure line by line (each family one
/// `# HELP` then one `# TYPE` before its samples, samples named after their family, histogram
/// series complete), `prometheus_client`'s parser, and every HELP text equal to the docs.
fn check_exposition(tier: &str, text: &str, section: &str) -> BTreeSet<String> {
    let mut help: BTreeMap<String, String> = BTreeMap::new();
    let mut kind: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut sampled: BTreeSet<String> = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, h) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(!h.trim().is_empty(), "{tier}: empty HELP for {name}");
            assert!(
                help.insert(name.to_string(), h.to_string()).is_none(),
                "{tier}: a second HELP for {name}"
            );
            assert!(
                !kind.contains_key(name),
                "{tier}: HELP after TYPE for {name}"
            );
            current = Some(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').unwrap();
            assert_eq!(
                current.as_deref(),
                Some(name),
                "{tier}: TYPE {name} without its HELP first"
            );
            assert!(
                kind.insert(name.to_string(), t.to_string()).is_none(),
                "{tier}: a second TYPE for {name}"
            );
        } else {
            assert!(!line.starts_with('#'), "{tier}: stray comment {line:?}");
            let series = line.rsplit_once(' ').unwrap().0;
            let name = series.split('{').next().unwrap();
            let family = current.clone().unwrap_or_default();
            let ok = match kind.get(&family).map(String::as_str) {
                Some("histogram") => [
                    format!("{family}_bucket"),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ]
                .contains(&name.to_string()),
                Some(_) => name == family,
                None => false,
            };
            assert!(ok, "{tier}: sample {line:?} outside its family ({family})");
            sampled.insert(family);
        }
    }
    assert!(!help.is_empty(), "{tier}: no metric families at all");
    for family in &sampled {
        assert!(help.contains_key(family), "{tier}: {family} has no HELP");
    }

    let parsed = parse_with_prometheus_client(text);
    assert_eq!(parsed.len(), help.len(), "{tier}: families {parsed:?}");
    for (name, t, h) in &parsed {
        assert!(
            !h.is_empty(),
            "{tier}: prometheus_client found no HELP for {name}"
        );
        assert_eq!(Some(t), kind.get(name), "{tier}: {name} type");
    }

    let docs = documented_metrics(section);
    for (name, h) in &help {
        let (t, meaning) = docs
            .get(name)
            .unwrap_or_else(|| panic!("{tier}: {name} is not in docs/observability.md {section}"));
        assert_eq!(h, meaning, "{tier}: HELP of {name} differs from the docs");
        assert_eq!(Some(t), kind.get(name), "{tier}: {name} documented as {t}");
    }
    help.into_keys().collect()
}

/// After traffic that touches most metric families (a failover, a stream, a refused request),
/// every family on both tiers has a `# HELP` line with the text of
/// docs/observability.md, and the exposition passes a strict reading of the text format and
/// `prometheus_client`'s parser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_family_has_help_and_the_exposition_parses_strictly() {
    let (ua, ub) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    ua.set_behavior(
        "m1",
        Behavior::Error {
            error: ErrorKind::ServiceUnavailable,
        },
    );
    let a = Spoke::start(&spoke_config("acct-a", &ua, NO_BREAKER))
        .await
        .unwrap();
    let b = Spoke::start(&spoke_config("acct-b", &ub, ""))
        .await
        .unwrap();
    let hub = Hub::start(
        &format!(
            "{DEMO_TWO_POOLS}{}{}",
            pool("p1", a.proc.addr()),
            pool("p2", b.proc.addr())
        ),
        &[],
    )
    .await;
    hub.wait_healthy(2).await;
    assert_eq!(hub.chat(false, &[]).await.status(), 200);
    let r = hub.chat(true, &[]).await;
    assert_eq!(r.status(), 200);
    let _ = r.text().await;
    let refused = reqwest::Client::new()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth("sk-wrong")
        .json(&json!({"model": "demo", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let text = |url: String| async move { reqwest::get(url).await.unwrap().text().await.unwrap() };
    settled(&hub.url("/metrics"), "switchyard_in_flight_requests").await;
    let hub_families = check_exposition("hub", &text(hub.url("/metrics")).await, "### Hub");
    for f in [
        "switchyard_requests_total",
        "switchyard_request_errors_total",
        "switchyard_request_duration_seconds",
        "switchyard_failovers_total",
        "switchyard_spoke_healthy",
        "switchyard_time_to_first_token_seconds",
    ] {
        assert!(
            hub_families.contains(f),
            "hub: {f} missing from {hub_families:?}"
        );
    }
    for spoke in [&a, &b] {
        let url = format!("{}/metrics", spoke.url());
        settled(&url, "switchyard_spoke_in_flight_requests").await;
        let families = check_exposition("spoke", &text(url).await, "### Spoke");
        for f in [
            "switchyard_spoke_requests_total",
            "switchyard_upstream_attempts_total",
            "switchyard_route_state",
        ] {
            assert!(families.contains(f), "spoke: {f} missing from {families:?}");
        }
    }
}
