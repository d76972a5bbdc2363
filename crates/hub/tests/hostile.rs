//! Hostile input: slow clients (slowloris), oversized heads, too many messages, and property
//! tests that the request parser, the config loader and the HTTP surface never panic and answer
//! bad input with a 4xx and a reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use common::*;
use proptest::prelude::*;
use serde_json::{Value, json};
use switchyard_hub::HubConfig;
use switchyard_hub::serve::{ConnLimits, serve_with};
use switchyard_hub::surface::openai::wire::ChatRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

const BODY: &str = r#"
max_messages = 3
[[aliases]]
name = "demo"
candidates = [{ provider = "p1", model = "m1" }]
[[providers]]
name = "p1"
spokes = [{ addr = "127.0.0.1:1" }]
health = { interval = "1s" }
"#;

fn settings() -> switchyard_hub::Settings {
    let text = format!("listen = \"127.0.0.1:0\"\n{BODY}\n{}", tenants_toml());
    HubConfig::parse(&text).unwrap().validate().unwrap()
}

/// A hub serving with a 1 s head deadline and 16 KiB heads; returns its address.
async fn start_limited() -> (std::net::SocketAddr, tokio_util::sync::CancellationToken) {
    let hub = switchyard_hub::Hub::start(settings());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        serve_with(
            listener,
            switchyard_hub::router(hub),
            None,
            s.cancelled_owned(),
            Duration::from_secs(1),
            ConnLimits {
                header_read_timeout: Duration::from_secs(1),
                max_header_bytes: 16 * 1024,
            },
        )
        .await
        .unwrap()
    });
    (addr, stop)
}

/// Reads until the server closes the connection; returns what it sent and when it closed.
async fn read_until_closed(stream: &mut tokio::net::tcp::OwnedReadHalf) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, started.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open for 10 s"),
        }
    }
}

#[tokio::test]
async fn slowloris_request_head_is_cut_off() {
    let (addr, _stop) = start_limited().await;
    let (mut rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
    // One byte every 100 ms, never finishing the head: each byte arrives well within any
    // per-read timeout, but the whole head never does.
    let writer = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            .iter()
        {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (_, took) = read_until_closed(&mut rd).await;
    assert!(took < Duration::from_secs(3), "closed only after {took:?}");
    writer.abort();
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed() {
    let (addr, _stop) = start_limited().await;
    // Connects and says nothing.
    let (mut rd, _wr) = TcpStream::connect(addr).await.unwrap().into_split();
    let (got, took) = read_until_closed(&mut rd).await;
    assert!(took < Duration::from_secs(3), "closed only after {took:?}");
    assert!(got.is_empty());

    // A stalled HTTP/2 preface.
    let (mut rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
    wr.write_all(b"PRI * HTTP/2").await.unwrap();
    let (_, took) = read_until_closed(&mut rd).await;
    assert!(took < Duration::from_secs(3), "closed only after {took:?}");

    // One complete request, then an idle keep-alive connection.
    let (mut rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
    wr.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (got, took) = read_until_closed(&mut rd).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(took < Duration::from_secs(3), "idle for {took:?}");
}

#[tokio::test]
async fn oversized_request_head_is_refused() {
    let (addr, _stop) = start_limited().await;
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .header("x-big", "a".repeat(64 * 1024))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), 431),
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    // Normal requests are unaffected.
    let r = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn call(app: &axum::Router, body: Body) -> (u16, Value) {
    let req = http::Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn too_many_messages_is_a_400_with_a_reason() {
    let app = switchyard_hub::router(switchyard_hub::Hub::start(settings()));
    let msgs: Vec<Value> = (0..4)
        .map(|i| json!({"role": "user", "content": format!("m{i}")}))
        .collect();
    let (status, body) = call(
        &app,
        Body::from(json!({"model": "demo", "messages": msgs}).to_string()),
    )
    .await;
    assert_eq!(status, 400);
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("at most 3"), "{msg}");
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("user"),
            Just("system"),
            Just("assistant"),
            Just("tool"),
            Just("text"),
            Just("function"),
            Just("demo")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("model".to_string()),
                    Just("messages".to_string()),
                    Just("role".to_string()),
                    Just("content".to_string()),
                    Just("type".to_string()),
                    Just("text".to_string()),
                    Just("tools".to_string()),
                    Just("tool_calls".to_string()),
                    Just("stop".to_string()),
                    Just("max_tokens".to_string()),
                    Just("temperature".to_string()),
                    Just("stream".to_string()),
                    ".{0,6}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A chat request whose messages are arbitrary JSON.
fn chatish() -> impl Strategy<Value = Value> {
    (proptest::collection::vec(json_value(), 0..5), json_value())
        .prop_map(|(msgs, extra)| json!({"model": "demo", "messages": msgs, "stop": extra}))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn chat_request_parser_never_panics(v in prop_oneof![json_value(), chatish()]) {
        if let Ok(req) = serde_json::from_value::<ChatRequest>(v) {
            match req.to_infer() {
                Ok(r) => {
                    let _ = switchyard_hub::routing::Needs::of_request(&r, req.stream);
                }
                Err(e) => {
                    prop_assert!(e.status().is_client_error());
                    prop_assert!(!e.client_message().is_empty());
                }
            }
        }
    }

    #[test]
    fn chat_request_parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(req) = serde_json::from_slice::<ChatRequest>(&bytes) {
            let _ = req.to_infer();
        }
    }

    #[test]
    fn hub_config_loader_never_panics(text in ".{0,200}") {
        if let Ok(c) = HubConfig::parse(&text) {
            let _ = c.validate();
        }
    }

    #[test]
    fn hub_config_loader_never_panics_on_mutated_configs(
        cut in 0usize..400, insert in "[\\[\\]\"=a-z0-9_.\n ]{0,8}"
    ) {
        let good = format!("listen = \"127.0.0.1:0\"\n{BODY}\n{}", tenants_toml());
        let at = cut.min(good.len());
        let at = (0..=at).rev().find(|i| good.is_char_boundary(*i)).unwrap_or(0);
        let text = format!("{}{insert}{}", &good[..at], &good[at..]);
        if let Ok(c) = HubConfig::parse(&text) {
            let _ = c.validate();
        }
    }
}

#[test]
fn bad_http_bodies_get_a_4xx_with_a_reason() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(async { switchyard_hub::router(switchyard_hub::Hub::start(settings())) });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    });
    let strategy = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        chatish().prop_map(|v| v.to_string().into_bytes()),
    ];
    runner
        .run(&strategy, |bytes| {
            let (status, body) = rt.block_on(call(&app, Body::from(bytes.clone())));
            // A well-formed request reaches routing (no spoke runs: 503); anything else is the
            // caller's fault.
            prop_assert!(
                (400..500).contains(&status) || status == 503,
                "status {} for {:?}",
                status,
                String::from_utf8_lossy(&bytes)
            );
            let msg = body["error"]["message"].as_str().unwrap_or("");
            prop_assert!(
                !msg.is_empty(),
                "no reason for {:?}",
                String::from_utf8_lossy(&bytes)
            );
            Ok(())
        })
        .unwrap();
}
