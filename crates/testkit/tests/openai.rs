//! The fake OpenAI-compatible API, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use switchyard_testkit::{Behavior, ErrorKind, FakeOpenAi};

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

fn chat(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [
            {"role": "system", "content": "you are terse"},
            {"role": "user", "content": "what is up"},
            {"role": "assistant", "content": "not much"},
            {"role": "user", "content": [{"type": "text", "text": "say hello to me"}]},
        ],
    })
}

/// Reads an SSE body into its `data:` payloads; `Err` when the body fails mid-way.
async fn sse(resp: reqwest::Response) -> (Vec<String>, Result<(), reqwest::Error>) {
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut result = Ok(());
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => buf.extend_from_slice(&b),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let text = String::from_utf8(buf).unwrap();
    let events = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap().to_string())
        .collect();
    (events, result)
}

#[tokio::test]
async fn non_stream_completion() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.set_label("oai-1");
    assert!(fake.url().ends_with("/v1"));
    let resp = http()
        .post(format!("{}/chat/completions", fake.url()))
        .bearer_auth("sk-test-123")
        .json(&chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o-mini");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(body["choices"][0]["index"], 0);
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from oai-1 (gpt-4o-mini): say hello to me"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // you are terse (3) + what is up (3) + not much (2) + say hello to me (4)
    assert_eq!(body["usage"]["prompt_tokens"], 12);
    assert_eq!(body["usage"]["completion_tokens"], 8);
    assert_eq!(body["usage"]["total_tokens"], 20);

    assert_eq!(fake.calls("gpt-4o-mini"), 1);
    let req = fake.last_request().unwrap();
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.header("Authorization"), Some("Bearer sk-test-123"));
    assert_eq!(req.body["messages"][0]["role"], "system");
}

#[tokio::test]
async fn max_tokens_truncates() {
    let fake = FakeOpenAi::start().await.unwrap();
    let mut req = chat("m", false);
    req["max_tokens"] = json!(2);
    let body: Value = http()
        .post(format!("{}/chat/completions", fake.url()))
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn stream_completion_with_usage() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.set_chunk_delay(Duration::from_millis(2));
    let mut req = chat("gpt-4o", true);
    req["stream_options"] = json!({"include_usage": true});
    let resp = http()
        .post(format!("{}/chat/completions", fake.url()))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let (events, result) = sse(resp).await;
    result.unwrap();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "gpt-4o");
        assert_eq!(c["id"], chunks[0]["id"]);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello from fake (gpt-4o): say hello to me");
    let n = chunks.len();
    assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert_eq!(chunks[n - 1]["usage"]["completion_tokens"], 8);
    assert_eq!(chunks[n - 1]["usage"]["prompt_tokens"], 12);
    // role + 8 words + finish + usage
    assert_eq!(n, 11);
}

#[tokio::test]
async fn stream_without_usage() {
    let fake = FakeOpenAi::start().await.unwrap();
    let resp = http()
        .post(format!("{}/chat/completions", fake.url()))
        .json(&chat("gpt-4o", true))
        .send()
        .await
        .unwrap();
    let (events, result) = sse(resp).await;
    result.unwrap();
    // role + 8 words + finish + [DONE]
    assert_eq!(events.len(), 11);
    assert!(!events.iter().any(|e| e.contains("\"usage\"")));
}

#[tokio::test]
async fn errors_in_openai_shape() {
    let fake = FakeOpenAi::start().await.unwrap();
    let expected = [
        (ErrorKind::Throttling, 429, "rate_limit_exceeded", Some("1")),
        (ErrorKind::ModelNotReady, 429, "model_not_ready", Some("1")),
        (
            ErrorKind::ServiceUnavailable,
            503,
            "service_unavailable",
            None,
        ),
        (ErrorKind::InternalServer, 500, "internal_error", None),
        (ErrorKind::Validation, 400, "invalid_request", None),
        (ErrorKind::AccessDenied, 401, "invalid_api_key", None),
        (ErrorKind::ModelTimeout, 504, "timeout", None),
    ];
    for (kind, status, code, retry_after) in expected {
        let model = format!("m-{kind:?}");
        fake.set_behavior(&model, Behavior::Error { error: kind });
        for stream in [false, true] {
            let resp = http()
                .post(format!("{}/chat/completions", fake.url()))
                .json(&chat(&model, stream))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), status, "{kind:?}");
            assert_eq!(
                resp.headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap()),
                retry_after,
                "{kind:?}"
            );
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], code);
            assert!(body["error"]["type"].is_string());
            assert!(body["error"]["message"].is_string());
        }
    }

    fake.set_default(Behavior::ThrottleRetryAfter { secs: 9 });
    let resp = http()
        .post(format!("{}/chat/completions", fake.url()))
        .json(&chat("any", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "9");

    // Directives in the model name.
    fake.clear_behaviors();
    let resp = http()
        .post(format!("{}/chat/completions", fake.url()))
        .json(&chat("gpt-err-ThrottlingException", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let resp = http()
        .post(format!("{}/chat/completions", fake.url()))
        .json(&chat("gpt-flaky-1", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let resp = http()
        .post(format!("{}/chat/completions", fake.url()))
        .json(&chat("gpt-flaky-1", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Garbage bodies are 400s.
    let resp = http()
        .post(format!("{}/chat/completions", fake.url()))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

// Multi-threaded, as e2e tests may be: the fake must still flush the chunks before aborting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_fails_mid_way_without_done() {
    let fake = FakeOpenAi::start().await.unwrap();
    for model in ["gpt-midstream-2", "gpt-x"] {
        fake.set_behavior("gpt-x", Behavior::StreamFailAfter { chunks: 2 });
        let resp = http()
            .post(format!("{}/chat/completions", fake.url()))
            .json(&chat(model, true))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let (events, result) = sse(resp).await;
        assert!(result.is_err(), "the body should fail");
        assert!(!events.iter().any(|e| e == "[DONE]"));
        let text: String = events
            .iter()
            .map(|e| serde_json::from_str::<Value>(e).unwrap())
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(String::from)
            })
            .collect();
        assert_eq!(text, "Hello from ");
    }
    let resp = http()
        .post(format!("{}/chat/completions", fake.url()))
        .json(&chat("gpt-midstream-2", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
}

#[tokio::test]
async fn slow_and_hang() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.set_behavior("s", Behavior::Slow { ms: 120 });
    let t = std::time::Instant::now();
    let resp = http()
        .post(format!("{}/chat/completions", fake.url()))
        .json(&chat("s", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(120));

    fake.set_behavior("h", Behavior::Hang);
    let err = http()
        .post(format!("{}/chat/completions", fake.url()))
        .timeout(Duration::from_millis(200))
        .json(&chat("h", false))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(fake.calls("h"), 1);
}

#[tokio::test]
async fn models_list() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.set_behavior("configured", Behavior::Ok);
    http()
        .post(format!("{}/chat/completions", fake.url()))
        .json(&chat("seen", false))
        .send()
        .await
        .unwrap();
    let body: Value = http()
        .get(format!("{}/models", fake.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["configured", "seen"]);
}

#[tokio::test]
async fn control_endpoint() {
    let fake = FakeOpenAi::start().await.unwrap();
    let base = format!("http://{}", fake.addr());
    let resp = http()
        .post(format!("{base}/_control/behavior"))
        .json(&json!({"model": "a", "behavior": {"kind": "error", "error": "ThrottlingException"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http()
        .post(format!("{base}/_control/behavior"))
        .json(&json!({"model": null, "behavior": {"kind": "error", "error": "validation"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    http()
        .post(format!("{base}/_control/label"))
        .json(&json!({"label": "ctl"}))
        .send()
        .await
        .unwrap();
    assert_eq!(fake.label(), "ctl");

    let status = |model: &'static str| {
        let url = format!("{}/chat/completions", fake.url());
        async move {
            http()
                .post(url)
                .json(&chat(model, false))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("a").await, 429);
    assert_eq!(status("b").await, 400);
    assert_eq!(status("b").await, 400);

    let calls: Value = http()
        .get(format!("{base}/_control/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls, json!({"total": 3, "by_model": {"a": 1, "b": 2}}));

    let requests: Value = http()
        .get(format!("{base}/_control/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(requests.as_array().unwrap().len(), 3);

    // Invalid behavior JSON is rejected.
    let resp = http()
        .post(format!("{base}/_control/behavior"))
        .json(&json!({"model": "a", "behavior": {"kind": "explode"}}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error());

    let resp = http()
        .post(format!("{base}/_control/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(fake.total_calls(), 0);
    assert_eq!(status("a").await, 200);
    assert_eq!(fake.calls("a"), 1);
    // Control calls are not counted.
    assert_eq!(fake.total_calls(), 1);
}
