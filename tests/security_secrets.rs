//! Secret-leak test through both tiers: a tenant API key and the spoke's upstream API key, each
//! a known distinctive value, must not appear in either process's logs (at `RUST_LOG=debug`),
//! in the traces both export over OTLP (received by a collector inside the test), in the hub's
//! audit records, in `/metrics`, in any response body or header, nor in `/healthz` — across
//! successful, streaming, failing and unauthenticated requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod security_common;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use parking_lot::Mutex;
use security_common::{Hub, hub_toml, openai_spoke, tenant};
use serde_json::json;
use switchyard_testkit::behavior::{Behavior, ErrorKind};
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::eventually;

const TENANT_KEY: &str = "sk-tenant-CANARY-7f3a9c1e5b";
const UPSTREAM_KEY: &str = "sk-upstream-CANARY-2d8e4b6f0a";

/// An OTLP trace receiver that keeps everything it is sent, as text.
#[derive(Default, Clone)]
struct Collector(Arc<Mutex<Vec<String>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().push(format!("{:?}", request.into_inner()));
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn collector() -> (Collector, String) {
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
    (c, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_appears_in_logs_bodies_or_health_of_either_tier() {
    let fake = FakeOpenAi::start().await.unwrap();
    let (traces, otlp) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.jsonl");
    let debug = [
        ("RUST_LOG", "debug"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
    ];
    let spoke = openai_spoke(
        &fake.url(),
        "[openai]\napi_key_env = \"SY_SECRET_TEST_UPSTREAM_KEY\"\n",
        &[
            ("RUST_LOG", "debug"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
            ("SY_SECRET_TEST_UPSTREAM_KEY", UPSTREAM_KEY),
        ],
    )
    .await;
    let hub = Hub::start(
        &hub_toml(
            &spoke,
            &tenant("t", TENANT_KEY, &["chat"], ""),
            &format!("[audit]\npath = \"{}\"\n", audit_path.display()),
        ),
        &debug,
    )
    .await;
    let client = reqwest::Client::new();
    let mut seen = String::new();

    // Success, unary and streaming.
    let r = hub.chat(TENANT_KEY, "chat", "hello").await;
    assert_eq!(r.status(), 200);
    let (h, b) = (r.headers().clone(), r.text().await.unwrap());
    seen.push_str(&format!("{h:?}\n{b}\n"));
    let r = client
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(TENANT_KEY)
        .json(&json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (h, b) = (r.headers().clone(), r.text().await.unwrap());
    seen.push_str(&format!("{h:?}\n{b}\n"));
    // The upstream really got the upstream key, and never the tenant's.
    let last = fake.last_request().unwrap();
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert!(
        !format!("{:?}", fake.requests()).contains(TENANT_KEY),
        "the tenant key reached the upstream"
    );

    // Upstream failures of every kind (401 from the upstream included).
    for kind in [
        ErrorKind::AccessDenied,
        ErrorKind::Validation,
        ErrorKind::ServiceUnavailable,
        ErrorKind::InternalServer,
    ] {
        fake.set_behavior("gpt", Behavior::Error { error: kind });
        let r = hub.chat(TENANT_KEY, "chat", "hello").await;
        assert!(!r.status().is_success(), "{kind:?}");
        let body = r.text().await.unwrap();
        seen.push_str(&body);
    }
    fake.clear_behaviors();

    // Wrong keys: near misses, a key in the wrong scheme, a model the tenant may not use.
    for auth in [
        format!("Bearer {TENANT_KEY}x"),
        format!("Basic {TENANT_KEY}"),
        format!("Bearer {UPSTREAM_KEY}"),
        TENANT_KEY.to_string(),
    ] {
        let r = client
            .post(hub.url("/v1/chat/completions"))
            .header("authorization", auth)
            .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let body = r.text().await.unwrap();
        seen.push_str(&body);
    }
    let r = hub.chat(TENANT_KEY, "other", "hello").await;
    assert_eq!(r.status(), 403);
    let h = r.headers().clone();
    let body = r.text().await.unwrap();
    seen.push_str(&format!("{h:?}\n{body}\n"));

    // Health and metrics of both tiers.
    for url in [
        hub.url("/healthz"),
        hub.url("/readyz"),
        spoke.url() + "/healthz",
        hub.url("/metrics"),
        spoke.url() + "/metrics",
    ] {
        let r = client.get(&url).send().await.unwrap();
        let body = r.text().await.unwrap();
        seen.push_str(&body);
    }

    let logs = format!("{}\n{}", hub.proc.logs(), spoke.proc.logs());
    assert!(
        logs.contains("DEBUG") || logs.contains("debug"),
        "debug logging was not on"
    );
    // Traces from both processes and the audit records were really captured …
    assert!(
        eventually(Duration::from_secs(20), || {
            let t = traces.0.lock().join("\n");
            async move { t.contains("\"hub\"") && t.contains("\"spoke\"") }
        })
        .await,
        "no spans from both tiers arrived"
    );
    let audit = std::fs::read_to_string(&audit_path).unwrap_or_default();
    assert!(
        audit.lines().count() >= 10,
        "audit records missing:\n{audit}"
    );
    assert!(seen.contains("switchyard_"), "metrics not scraped");
    let traces = traces.0.lock().join("\n");
    // … and none of them holds a secret.
    for secret in [TENANT_KEY, UPSTREAM_KEY, "CANARY"] {
        assert!(!seen.contains(secret), "{secret} in a response:\n{seen}");
        assert!(!logs.contains(secret), "{secret} in the logs");
        assert!(!traces.contains(secret), "{secret} in the traces");
        assert!(!audit.contains(secret), "{secret} in the audit records");
    }
}
