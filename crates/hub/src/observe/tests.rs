//! Tests of the request record, spans, metrics and their config.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use tracing::Span;

use super::spans::genai_provider;
use super::*;
use crate::headers::{CACHE as CACHE_HEADER, PROMPT as PROMPT_HEADER};
use crate::model::RouteTaken;

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
    for bad in [
        "flush_interval = \"0s\"",
        "flush_interval = \"11s\"",
        "flush_interval = \"soon\"",
        "max_buffer_bytes = 1024",
    ] {
        let e = settings(&format!("[audit]\n{bad}\n")).unwrap_err();
        assert!(e.contains("audit."), "{bad}: {e}");
    }
    let tuned =
        settings("[audit]\nflush_interval = \"250ms\"\nmax_buffer_bytes = 65536\n").unwrap();
    assert_eq!(tuned.audit.flush_interval(), Duration::from_millis(250));
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
    let open = crate::Hub::start(settings(&format!("{admin}[audit]\nenabled = false\n")).unwrap());
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
            ..Default::default()
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
    let sink = super::audit::AuditSink::open(&crate::config::AuditConfig {
        enabled: true,
        path: Some(path.clone()),
        capture_content: false,
        ..Default::default()
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
        ..Default::default()
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
    let sink = super::audit::AuditSink::open(&crate::config::AuditConfig {
        enabled: true,
        path: Some(path.clone()),
        capture_content: false,
        ..Default::default()
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
