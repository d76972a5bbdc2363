//! Slow first tokens (issue 16): a stream whose route has not delivered content within
//! `stream_keepalive` is committed — status 200 and headers at once — and kept alive until the
//! first content (SSE comments on the OpenAI surface; `message_start` then `ping` events on the
//! Anthropic surface). When every route then fails, the error goes in the stream in the
//! surface's shape.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn config(spoke: &SpokeHandle) -> String {
    format!(
        r#"stream_keepalive = "200ms"

[[aliases]]
name = "demo"
candidates = [{{ provider = "p1", model = "m1" }}]

[[providers]]
name = "p1"
spokes = [{{ addr = "{}" }}]
health = {{ interval = "1s", unhealthy_threshold = 1 }}
"#,
        spoke.addr
    )
}

fn anthropic_body() -> serde_json::Value {
    serde_json::json!({"model": "demo", "max_tokens": 16, "stream": true,
                       "messages": [{"role": "user", "content": "hi"}]})
}

/// Sends a streaming request; returns (time to the response head, the response, its whole body).
async fn stream(
    hub: &HubHandle,
    path: &str,
    body: serde_json::Value,
    extra: Option<(&str, &str)>,
) -> (Duration, reqwest::Response) {
    let started = Instant::now();
    let mut r = client()
        .post(hub.url(path))
        .bearer_auth(KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body);
    if let Some((k, v)) = extra {
        r = r.header(k, v);
    }
    let r = r.send().await.unwrap();
    (started.elapsed(), r)
}

#[tokio::test]
async fn a_slow_first_token_gets_headers_at_once_then_keepalives_then_the_answer() {
    let a = start_spoke("acct-a", &["m1"]).await;
    let hub = start_hub(&config(&a)).await;
    hub.wait_healthy("p1", 1).await;
    a.fake.set_mode(Mode::Slow(Duration::from_millis(1500)));

    // OpenAI: the head arrives long before the content; SSE comments fill the wait.
    let (head, r) = stream(&hub, "/v1/chat/completions", chat_body("demo", true), None).await;
    assert_eq!(r.status(), 200);
    assert!(head < Duration::from_millis(1000), "head after {head:?}");
    assert!(
        r.headers().get("x-switchyard-provider").is_none(),
        "the route is not known when the head goes"
    );
    assert!(r.headers().get("x-request-id").is_some());
    let body = r.text().await.unwrap();
    let keepalives = body.lines().filter(|l| *l == ": keep-alive").count();
    assert!(keepalives >= 3, "{keepalives} keep-alives in:\n{body}");
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{body}");
    let content: String = data
        .iter()
        .filter(|d| d.starts_with('{'))
        .filter_map(|d| {
            let v: serde_json::Value = serde_json::from_str(d).unwrap();
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(!content.is_empty(), "{body}");
    // The first data chunk (the role) went out before any keep-alive.
    let first_data = body.lines().position(|l| l.starts_with("data:")).unwrap();
    let first_comment = body.lines().position(|l| l == ": keep-alive").unwrap();
    assert!(first_data < first_comment, "{body}");

    // Anthropic: message_start, then ping events until the content.
    let (head, r) = stream(&hub, "/v1/messages", anthropic_body(), None).await;
    assert_eq!(r.status(), 200);
    assert!(head < Duration::from_millis(1000), "head after {head:?}");
    let body = r.text().await.unwrap();
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"message_start"), "{body}");
    let pings_before_content = events
        .iter()
        .take_while(|e| **e != "content_block_start")
        .filter(|e| **e == "ping")
        .count();
    assert!(pings_before_content >= 3, "{events:?}");
    assert_eq!(events.last(), Some(&"message_stop"), "{events:?}");

    // The audit record still gets the route: the metrics count the request as served by p1.
    assert_eq!(a.fake.calls(), 2);
}

#[tokio::test]
async fn a_fast_stream_keeps_its_status_and_route_headers() {
    let a = start_spoke("acct-a", &["m1"]).await;
    let hub = start_hub(&config(&a)).await;
    hub.wait_healthy("p1", 1).await;
    let (_, r) = stream(&hub, "/v1/chat/completions", chat_body("demo", true), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-model"], "m1");
    let body = r.text().await.unwrap();
    assert!(!body.contains(": keep-alive"), "{body}");
    // And a refusal that comes fast is still a status.
    a.fake.set_mode(Mode::Unavailable);
    let (_, r) = stream(&hub, "/v1/chat/completions", chat_body("demo", true), None).await;
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn a_late_failure_is_an_error_in_the_stream_in_the_surface_shape() {
    let a = start_spoke("acct-a", &["m1"]).await;
    let hub = start_hub(&config(&a)).await;
    hub.wait_healthy("p1", 1).await;
    a.fake.set_mode(Mode::Slow(Duration::from_secs(5)));
    let deadline = Some(("x-switchyard-timeout-ms", "900"));

    let (_, r) = stream(
        &hub,
        "/v1/chat/completions",
        chat_body("demo", true),
        deadline,
    )
    .await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let data = sse_data(&body);
    assert!(!data.iter().any(|d| d == "[DONE]"), "{body}");
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "timeout", "{body}");
    assert!(body.contains(": keep-alive"), "{body}");

    let (_, r) = stream(&hub, "/v1/messages", anthropic_body(), deadline).await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let mut lines = body.lines().rev().filter(|l| !l.is_empty());
    let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
    assert_eq!(lines.next(), Some("event: error"), "{body}");
    let err: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(err["type"], "error");
    assert!(
        err["error"]["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("_error")),
        "{err}"
    );
    assert!(!body.contains("message_stop"), "{body}");
}
