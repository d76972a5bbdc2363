//! Hub behaviour against in-process fake spokes (real gRPC and HTTP sockets on 127.0.0.1:0).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn one_pool(spokes: &[(&SpokeHandle, u32)]) -> String {
    let list: Vec<String> = spokes
        .iter()
        .map(|(s, w)| format!("{{ addr = \"{}\", weight = {w} }}", s.addr))
        .collect();
    format!(
        r#"
[[aliases]]
name = "demo"
candidates = [{{ provider = "p1", model = "m1" }}]

[[aliases]]
name = "premium"
candidates = [{{ provider = "p1", model = "m1" }}]

[[providers]]
name = "p1"
spokes = [{}]
health = {{ interval = "1s", unhealthy_threshold = 1 }}
"#,
        list.join(", ")
    )
}

#[tokio::test]
async fn non_streaming_call_with_route_headers() {
    let s = start_spoke("acct-a", &["m1"]).await;
    let hub = start_hub(&one_pool(&[(&s, 1)])).await;
    hub.wait_healthy("p1", 1).await;
    let resp = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "req-123")
        .json(&chat_body("demo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["x-switchyard-provider"], "fake");
    assert_eq!(h["x-switchyard-account"], "acct-a");
    assert_eq!(h["x-switchyard-region"], "us-test-1");
    assert_eq!(h["x-switchyard-model"], "m1");
    assert_eq!(h["x-switchyard-attempts"], "1");
    assert_eq!(h["x-request-id"], "req-123");
    let overhead: f64 = h["x-switchyard-overhead-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(overhead >= 0.0);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "hello from acct-a"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["total_tokens"], 8);
    // What reached the spoke: translated request, deadline and request id in metadata.
    let (req, rid, timeout) = s.fake.last_request.lock().clone().unwrap();
    assert_eq!(req.system, "be brief");
    assert_eq!(req.models, vec!["m1".to_string()]);
    assert_eq!(req.params.unwrap().max_tokens, Some(16));
    assert!(req.timeout_ms > 0 && req.timeout_ms <= 60_000);
    assert_eq!(rid.as_deref(), Some("req-123"));
    assert!(timeout.is_some(), "grpc-timeout must be sent");
}

#[tokio::test]
async fn client_errors_have_openai_shape_and_status() {
    let s = start_spoke("acct-a", &["m1"]).await;
    let hub = start_hub(&format!("max_body_bytes = 2000\n{}", one_pool(&[(&s, 1)]))).await;
    let c = client();
    let url = hub.url("/v1/chat/completions");
    let check = |status: u16, code: &'static str| {
        move |r: (u16, Value)| {
            assert_eq!(r.0, status, "{}", r.1);
            assert_eq!(r.1["error"]["code"], code, "{}", r.1);
            assert!(r.1["error"]["message"].is_string());
            assert!(r.1["error"]["type"].is_string());
        }
    };
    async fn send(rb: reqwest::RequestBuilder) -> (u16, Value) {
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }
    check(401, "invalid_api_key")(send(c.post(&url).json(&chat_body("demo", false))).await);
    check(401, "invalid_api_key")(
        send(
            c.post(&url)
                .bearer_auth("sk-wrong")
                .json(&chat_body("demo", false)),
        )
        .await,
    );
    check(404, "model_not_found")(
        send(
            c.post(&url)
                .bearer_auth(KEY)
                .json(&chat_body("nope", false)),
        )
        .await,
    );
    check(403, "model_not_allowed")(
        send(
            c.post(&url)
                .bearer_auth(OTHER_KEY)
                .json(&chat_body("premium", false)),
        )
        .await,
    );
    check(400, "invalid_request")(
        send(
            c.post(&url)
                .bearer_auth(KEY)
                .body("{not json")
                .header("content-type", "application/json"),
        )
        .await,
    );
    let big = serde_json::json!({"model": "demo", "messages": [{"role": "user", "content": "x".repeat(5000)}]});
    check(413, "request_too_large")(send(c.post(&url).bearer_auth(KEY).json(&big)).await);
    check(400, "invalid_request")(
        send(
            c.post(&url)
                .bearer_auth(KEY)
                .header("x-switchyard-route-preference", "random")
                .json(&chat_body("demo", false)),
        )
        .await,
    );
    assert_eq!(s.fake.calls(), 0, "no error path may reach a spoke");
}

#[tokio::test]
async fn models_lists_the_tenants_aliases() {
    let s = start_spoke("acct-a", &["m1"]).await;
    let hub = start_hub(&one_pool(&[(&s, 1)])).await;
    let ids = |v: Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    let full: Value = client()
        .get(hub.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(full), ["demo", "premium"]);
    let limited: Value = client()
        .get(hub.url("/v1/models"))
        .bearer_auth(OTHER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(limited), ["demo"]);
    let r = client().get(hub.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn weighted_three_to_one() {
    let a = start_spoke("acct-a", &["m1"]).await;
    let b = start_spoke("acct-b", &["m1"]).await;
    let hub = start_hub(&one_pool(&[(&a, 3), (&b, 1)])).await;
    hub.wait_healthy("p1", 2).await;
    let n = 400;
    for _ in 0..n {
        let r = client()
            .post(hub.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body("demo", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let share = a.fake.calls() as f64 / n as f64;
    // Expected 0.75; binomial sd at n=400 is ~0.022, so ±0.08 is > 3.5 sd.
    assert!(
        (0.67..=0.83).contains(&share),
        "share of the weight-3 spoke: {share}"
    );
    assert_eq!(a.fake.calls() + b.fake.calls(), n);
}

#[tokio::test]
async fn exhausted_account_fails_over_then_429_with_retry_after() {
    let a = start_spoke("acct-a", &["m1"]).await;
    let b = start_spoke("acct-b", &["m1"]).await;
    let hub = start_hub(&one_pool(&[(&a, 1), (&b, 1)])).await;
    hub.wait_healthy("p1", 2).await;
    a.fake.set_mode(Mode::Exhausted(2500));
    for _ in 0..20 {
        let r = client()
            .post(hub.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body("demo", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-switchyard-account"], "acct-b");
    }
    // After the first RESOURCE_EXHAUSTED the hub routes around acct-a until retry-after passes.
    assert!(
        a.fake.calls() <= 2,
        "exhausted spoke called {} times",
        a.fake.calls()
    );
    b.fake.set_mode(Mode::Exhausted(1200));
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("demo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn broken_connection_ejects_spoke_at_once() {
    let a = start_spoke("acct-a", &["m1"]).await;
    let b = start_spoke("acct-b", &["m1"]).await;
    // A long interval: only passive ejection can explain a quick exit from routing.
    let cfg = one_pool(&[(&a, 1), (&b, 1)]).replace("interval = \"1s\"", "interval = \"30s\"");
    let hub = start_hub(&cfg).await;
    hub.wait_healthy("p1", 2).await;
    a.fake.set_mode(Mode::Broken);
    a.set_serving(false).await;
    for _ in 0..30 {
        let r = client()
            .post(hub.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body("demo", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "client must not see the broken spoke");
    }
    assert_eq!(a.fake.calls(), 1, "ejected after the first failure");
    assert_eq!(hub.healthy_count("p1"), 1);
    // Half-open probe brings it back quickly once it serves again.
    a.fake.set_mode(Mode::Ok);
    a.set_serving(true).await;
    hub.wait_healthy("p1", 2).await;
}

#[tokio::test]
async fn provider_fallback_to_next_candidate() {
    let a = start_spoke("acct-a", &["m1"]).await;
    let b = start_spoke("acct-b", &["m2"]).await;
    let cfg = format!(
        r#"
[[aliases]]
name = "demo"
candidates = [{{ provider = "p1", model = "m1" }}, {{ provider = "p2", model = "m2" }}]

[[providers]]
name = "p1"
spokes = [{{ addr = "{}" }}]
health = {{ interval = "1s" }}

[[providers]]
name = "p2"
spokes = [{{ addr = "{}" }}]
health = {{ interval = "1s" }}
"#,
        a.addr, b.addr
    );
    let hub = start_hub(&cfg).await;
    hub.wait_healthy("p1", 1).await;
    hub.wait_healthy("p2", 1).await;
    a.fake.set_mode(Mode::Unavailable);
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("demo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-model"], "m2");
    assert_eq!(r.headers()["x-switchyard-attempts"], "2");
    // Both providers down → 503.
    b.fake.set_mode(Mode::Unavailable);
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("demo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_route_available");
}

#[tokio::test]
async fn deadline_gives_504() {
    let a = start_spoke("acct-a", &["m1"]).await;
    let hub = start_hub(&one_pool(&[(&a, 1)])).await;
    hub.wait_healthy("p1", 1).await;
    a.fake.set_mode(Mode::Slow(Duration::from_secs(3)));
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-switchyard-timeout-ms", "300")
        .json(&chat_body("demo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
}

#[tokio::test]
async fn streaming_with_usage_and_done() {
    let a = start_spoke("acct-a", &["m1"]).await;
    let hub = start_hub(&one_pool(&[(&a, 1)])).await;
    hub.wait_healthy("p1", 1).await;
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("demo", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["x-switchyard-account"], "acct-a");
    let data = sse_data(&r.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "acct-a-0 acct-a-1 acct-a-2 ");
    let finish = chunks
        .iter()
        .find(|c| c["choices"][0]["finish_reason"].is_string())
        .unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert_eq!(usage["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn streaming_fails_over_before_first_chunk() {
    let a = start_spoke("acct-a", &["m1"]).await;
    let b = start_spoke("acct-b", &["m1"]).await;
    let hub = start_hub(&one_pool(&[(&a, 1), (&b, 1)])).await;
    hub.wait_healthy("p1", 2).await;
    a.fake.set_mode(Mode::Exhausted(1000));
    b.fake.set_mode(Mode::Unavailable);
    // Both refuse before any content: 429 (quota involved).
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("demo", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    b.fake.set_mode(Mode::Ok);
    for _ in 0..5 {
        let r = client()
            .post(hub.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body("demo", true))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-switchyard-account"], "acct-b");
        let data = sse_data(&r.text().await.unwrap());
        assert_eq!(data.last().unwrap(), "[DONE]");
    }
}

#[tokio::test]
async fn streaming_error_after_first_chunk_ends_with_error_event() {
    let a = start_spoke("acct-a", &["m1"]).await;
    let b = start_spoke("acct-b", &["m1"]).await;
    let hub = start_hub(&one_pool(&[(&a, 1), (&b, 0)])).await;
    hub.wait_healthy("p1", 2).await;
    a.fake.set_mode(Mode::FailAfterFirstDelta);
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("demo", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let data = sse_data(&r.text().await.unwrap());
    assert!(!data.iter().any(|d| d == "[DONE]"), "{data:?}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "stream_interrupted");
    assert!(data.iter().any(|d| d.contains("acct-a-0")));
    assert_eq!(
        b.fake.calls(),
        0,
        "no failover after content reached the client"
    );
}

#[tokio::test]
async fn graceful_shutdown_drains_a_stream() {
    let a = start_spoke_with(
        "acct-a",
        &["m1"],
        10,
        Duration::from_millis(100),
        "127.0.0.1:0",
    )
    .await;
    let hub = start_hub(&one_pool(&[(&a, 1)])).await;
    hub.wait_healthy("p1", 1).await;
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("demo", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The first chunks are flowing: stop the hub now.
    hub.stop.cancel();
    let text = r.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]", "{text}");
    assert!(text.contains("acct-a-9"));
    // And the server stopped accepting.
    tokio::time::timeout(Duration::from_secs(5), async {
        while !hub.done.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert!(client().get(hub.url("/healthz")).send().await.is_err());
}

#[tokio::test]
async fn tenant_override_and_split() {
    let a = start_spoke("acct-a", &["m1", "m2"]).await;
    let cfg = format!(
        r#"
[[aliases]]
name = "demo"
candidates = [{{ provider = "p1", model = "m1", weight = 80 }}, {{ provider = "p1", model = "m2", weight = 20 }}]

[[aliases]]
name = "strong"
candidates = [{{ provider = "p1", model = "m2" }}]

[[providers]]
name = "p1"
spokes = [{{ addr = "{}" }}]
health = {{ interval = "1s" }}

[[tenants]]
name = "premium"
api_key_sha256 = ["{}"]
aliases = ["demo"]
alias_overrides = {{ demo = "strong" }}
"#,
        a.addr,
        sha("sk-premium")
    );
    let hub = start_hub(&cfg).await;
    hub.wait_healthy("p1", 1).await;
    let mut m2 = 0;
    for _ in 0..200 {
        let r = client()
            .post(hub.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body("demo", false))
            .send()
            .await
            .unwrap();
        if r.headers()["x-switchyard-model"] == "m2" {
            m2 += 1;
        }
    }
    assert!((20..=65).contains(&m2), "20% split gave {m2}/200");
    for _ in 0..5 {
        let r = client()
            .post(hub.url("/v1/chat/completions"))
            .bearer_auth("sk-premium")
            .json(&chat_body("demo", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-switchyard-model"], "m2");
    }
}

#[tokio::test]
async fn route_preference_and_capabilities() {
    let a = start_spoke("acct-a", &["m1", "m2"]).await;
    let cfg = format!(
        r#"
[[aliases]]
name = "demo"
candidates = [{{ provider = "p1", model = "m1", price_in = 10.0, price_out = 30.0 }}, {{ provider = "p1", model = "m2", price_in = 1.0, price_out = 2.0 }}]

[[aliases]]
name = "long"
candidates = [{{ provider = "p1", model = "m1" }}]
needs = {{ min_context_window = 500000 }}

[[providers]]
name = "p1"
spokes = [{{ addr = "{}" }}]
health = {{ interval = "1s" }}
"#,
        a.addr
    );
    let hub = start_hub(&cfg).await;
    hub.wait_healthy("p1", 1).await;
    let send = |pref: Option<&'static str>, body: Value| {
        let mut rb = client()
            .post(hub.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&body);
        if let Some(p) = pref {
            rb = rb.header("x-switchyard-route-preference", p);
        }
        rb.send()
    };
    let r = send(None, chat_body("demo", false)).await.unwrap();
    assert_eq!(r.headers()["x-switchyard-model"], "m1");
    let r = send(Some("cheapest"), chat_body("demo", false))
        .await
        .unwrap();
    assert_eq!(r.headers()["x-switchyard-model"], "m2");
    // The fake's models have no tool support: no candidate matches → 503.
    let mut body = chat_body("demo", false);
    body["tools"] = serde_json::json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let r = send(None, body).await.unwrap();
    assert_eq!(r.status(), 503);
    // Alias needs a larger context window than the spoke reports (100k) → 503.
    let r = send(None, chat_body("long", false)).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(a.fake.calls(), 2);
}

#[tokio::test]
async fn attempt_timeout_moves_a_hung_spoke_s_requests_to_the_next_spoke() {
    let slow = start_spoke("acct-slow", &["m1"]).await;
    let fast = start_spoke("acct-fast", &["m1"]).await;
    // The slow spoke gets nearly all first picks.
    let hub = start_hub(&format!(
        "attempt_timeout = \"300ms\"\n{}",
        one_pool(&[(&slow, 1000), (&fast, 1)])
    ))
    .await;
    hub.wait_healthy("p1", 2).await;
    slow.fake.set_mode(Mode::Slow(Duration::from_secs(10)));
    let mut moved = 0;
    for stream in [false, true, false, true] {
        let started = std::time::Instant::now();
        let r = client()
            .post(hub.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body("demo", stream))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-switchyard-account"], "acct-fast");
        if r.headers()["x-switchyard-attempts"] == "2" {
            moved += 1;
        }
        let text = r.text().await.unwrap();
        assert!(text.contains("acct-fast"), "{text}");
        // One 300 ms attempt on the hung spoke, then the answer; never the 10 s it would take.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
    }
    assert!(moved >= 1, "no request was moved off the hung spoke");
    assert!(slow.fake.calls() >= 1);

    // Without attempt_timeout the request waits for the spoke until its own deadline.
    let hub2 = start_hub(&one_pool(&[(&slow, 1)])).await;
    hub2.wait_healthy("p1", 1).await;
    let r = client()
        .post(hub2.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-switchyard-timeout-ms", "800")
        .json(&chat_body("demo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
}

#[tokio::test]
async fn admin_pages_take_the_key_as_bearer_header_or_http_basic_password() {
    use base64::Engine;
    let a = start_spoke("acct-a", &["m1"]).await;
    let admin_key = "adm-0123456789";
    let hub = start_hub(&format!(
        "[admin]\napi_key_sha256 = [\"{}\"]\n{}",
        sha(admin_key),
        one_pool(&[(&a, 1)])
    ))
    .await;
    hub.wait_healthy("p1", 1).await;
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let get = |path: &'static str, header: Option<(&'static str, String)>| {
        let mut r = client().get(hub.url(path));
        if let Some((k, v)) = header {
            r = r.header(k, v);
        }
        r.send()
    };
    // No credentials: 401 that makes a browser ask (WWW-Authenticate: Basic).
    let r = get("/admin/routes.html", None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );
    // The key as the Basic password (any user), as a bearer token, or in x-admin-key.
    for header in [
        ("authorization", basic("operator", admin_key)),
        ("authorization", format!("Bearer {admin_key}")),
        ("x-admin-key", admin_key.to_string()),
    ] {
        let r = get("/admin/routes.html", Some(header.clone()))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{header:?}");
        assert!(r.text().await.unwrap().contains("acct-a"));
    }
    // Wrong password, a tenant's API key, garbage: refused.
    for header in [
        ("authorization", basic("operator", "wrong")),
        ("authorization", basic(admin_key, "")),
        ("authorization", format!("Bearer {KEY}")),
        ("authorization", "Basic !!!not-base64".to_string()),
    ] {
        let r = get("/admin/routes", Some(header.clone())).await.unwrap();
        assert_eq!(r.status(), 401, "{header:?}");
    }
}
