//! End-to-end: prompt templates through the real `hub` (and spoke, and a fake OpenAI upstream that
//! records what it received). Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;
use switchyard_e2e::Spoke;
use switchyard_e2e::prom::{Samples, settled, sum};
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::{Proc, eventually, write_config};

const KEY: &str = "sk-prompts";

const PROMPTS: &str = r#"
[[prompts]]
name = "summarise"
model = "demo"
default_version = "2"
[[prompts.versions]]
version = "1"
system = "You summarise {{topic}} documents."
user = "Summarise: {{text}}"
[[prompts.versions]]
version = "2"
system = "You are terse about {{topic}}."
user = "TLDR {{text}} in {{words}} words"

[[prompts]]
name = "ab"
model = "demo"
split = { "a" = 50, "b" = 50 }
[[prompts.versions]]
version = "a"
user = "variant a {{q}}"
[[prompts.versions]]
version = "b"
user = "variant b {{q}}"
"#;

struct Stack {
    hub: Proc,
    _config: tempfile::TempPath,
    _spoke: Spoke,
    up: FakeOpenAi,
    client: reqwest::Client,
}

async fn stack() -> Stack {
    stack_with("").await
}

/// The stack with `extra` top-level hub config (e.g. an `[audit]` file).
async fn stack_with(extra: &str) -> Stack {
    let up = FakeOpenAi::start().await.unwrap();
    let spoke = Spoke::start(&format!(
        "listen = \"127.0.0.1:0\"\naccount = \"acct\"\nprovider = \"openai\"\n\
         default_timeout = \"20s\"\ndrain_timeout = \"1s\"\n\
         [[regions]]\nname = \"us-east-1\"\nendpoint = \"{}\"\n\
         [[models]]\nid = \"m1\"\nstreaming = true\n",
        up.url()
    ))
    .await
    .unwrap();
    let config = write_config(
        &format!(
            "listen = \"127.0.0.1:0\"\n{extra}\n\
             [[tenants]]\nname = \"t\"\napi_key_sha256 = [\"{}\"]\naliases = [\"*\"]\n\
             [[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"p\", model = \"m1\" }}]\n\
             [[providers]]\nname = \"p\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
             {PROMPTS}",
            hex::encode(sha2::Sha256::digest(KEY.as_bytes())),
            spoke.proc.addr()
        ),
        "toml",
    )
    .unwrap();
    let hub = Proc::spawn(
        "hub",
        &[
            "--config".to_string(),
            config.to_string_lossy().into_owned(),
        ],
        &[],
    )
    .await
    .unwrap();
    let ok = eventually(Duration::from_secs(15), || async {
        hub.count_log("spoke healthy") >= 1
    })
    .await;
    assert!(ok, "{}", hub.logs());
    Stack {
        hub,
        _config: config,
        _spoke: spoke,
        up,
        client: reqwest::Client::new(),
    }
}

impl Stack {
    async fn post(&self, path: &str, body: Value) -> (u16, String, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.hub.url()))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let prompt = r
            .headers()
            .get("x-switchyard-prompt")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        (
            status,
            prompt,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The messages the upstream received in its last call.
    fn upstream_messages(&self) -> Value {
        self.up.last_request().unwrap().body["messages"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_endpoint_substitutes_variables_and_reports_the_version() {
    let s = stack().await;
    let (status, prompt, body) = s
        .post(
            "/v1/prompts/summarise",
            json!({"variables": {"topic": "legal", "text": "the contract renews yearly", "words": 5}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(prompt, "summarise@2");
    assert_eq!(
        s.upstream_messages(),
        json!([
            {"role": "system", "content": "You are terse about legal."},
            {"role": "user", "content": "TLDR the contract renews yearly in 5 words"},
        ])
    );
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        content.contains("TLDR the contract renews yearly in 5 words"),
        "{content}"
    );

    // Version pinning, and streaming through the named endpoint.
    let (status, prompt, body) = s
        .post(
            "/v1/prompts/summarise",
            json!({"version": "1", "stream": true, "variables": {"topic": "legal", "text": "abc"}}),
        )
        .await;
    assert_eq!((status, prompt.as_str()), (200, "summarise@1"));
    assert!(body.as_str().unwrap().contains("[DONE]"));
    assert_eq!(
        s.upstream_messages(),
        json!([
            {"role": "system", "content": "You summarise legal documents."},
            {"role": "user", "content": "Summarise: abc"},
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_prompt_field_pins_versions_and_errors_are_400() {
    let s = stack().await;
    let (status, prompt, _) = s
        .post(
            "/v1/chat/completions",
            json!({
                "model": "demo",
                "prompt": {"name": "summarise", "version": "1", "variables": {"topic": "x", "text": "pinned"}},
                "messages": [{"role": "user", "content": "follow-up question"}],
            }),
        )
        .await;
    assert_eq!((status, prompt.as_str()), (200, "summarise@1"));
    // The template's messages first, then the request's own.
    assert_eq!(
        s.upstream_messages(),
        json!([
            {"role": "system", "content": "You summarise x documents."},
            {"role": "user", "content": "Summarise: pinned"},
            {"role": "user", "content": "follow-up question"},
        ])
    );
    let calls = s.up.total_calls();

    // A missing variable: 400 in OpenAI's shape, naming it; nothing sent upstream.
    let (status, prompt, body) = s
        .post(
            "/v1/prompts/summarise",
            json!({"variables": {"topic": "x", "text": "t"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(prompt, "");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("`words`"), "{msg}");
    let (status, _, body) = s
        .post(
            "/v1/chat/completions",
            json!({"model": "demo", "prompt": {"name": "summarise", "version": "1", "variables": {"text": "t"}}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`topic`")
    );
    // Unknown version, unknown prompt (field → 400, endpoint → 404), bad body.
    let (status, _, body) = s
        .post(
            "/v1/prompts/summarise",
            json!({"version": "9", "variables": {}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("\"9\""));
    let (status, _, _) = s
        .post(
            "/v1/chat/completions",
            json!({"model": "demo", "prompt": {"name": "nope", "variables": {}}}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _, _) = s.post("/v1/prompts/nope", json!({"variables": {}})).await;
    assert_eq!(status, 404);
    let (status, _, _) = s.post("/v1/prompts/summarise", json!([1, 2])).await;
    assert_eq!(status, 400);
    assert_eq!(
        s.up.total_calls(),
        calls,
        "a rejected request reached upstream"
    );
    // Unauthenticated: 401 before anything else.
    let r = s
        .client
        .post(format!("{}/v1/prompts/summarise", s.hub.url()))
        .json(&json!({"variables": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_split_is_fifty_fifty_within_five_percent() {
    let s = Arc::new(stack().await);
    let n = 1000;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut a = 0u32;
            for i in (w..n).step_by(8) {
                let (status, prompt, body) = s
                    .post("/v1/prompts/ab", json!({"variables": {"q": i}}))
                    .await;
                assert_eq!(status, 200, "{body}");
                let content = body["choices"][0]["message"]["content"].as_str().unwrap();
                // The header names the version whose template reached the upstream.
                match prompt.as_str() {
                    "ab@a" => {
                        assert!(content.contains("variant a"), "{content}");
                        a += 1;
                    }
                    "ab@b" => assert!(content.contains("variant b"), "{content}"),
                    other => panic!("unexpected version header {other:?}"),
                }
            }
            a
        }));
    }
    let mut a = 0;
    for t in tasks {
        a += t.await.unwrap();
    }
    // Binomial sd at n=1000 is 15.8: ±50 is 3.2 sd.
    assert!((450..=550).contains(&a), "version a got {a} of {n}");
}

impl Stack {
    /// The hub's `/metrics` once no request is in flight (records, streams included, finish
    /// when their response ends).
    async fn scrape(&self) -> Samples {
        settled(
            &format!("{}/metrics", self.hub.url()),
            "switchyard_in_flight_requests",
        )
        .await
    }
}

/// `switchyard_prompt_requests_total{prompt,version}` moves by exactly the templated calls
/// (named endpoint and `prompt` field, unary and streamed; refused calls do not count), and the
/// audit line of each call — streamed ones included — names the template version; the named
/// endpoint's own refusals (unknown prompt, bad key) are audited too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_metrics_and_audit_lines_name_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let s = stack_with(&format!("[audit]\npath = \"{}\"\n", audit.display())).await;
    let m0 = s.scrape().await;
    let vars = json!({"topic": "x", "text": "t", "words": 3});
    let (status, prompt, _) = s
        .post("/v1/prompts/summarise", json!({"variables": vars}))
        .await;
    assert_eq!((status, prompt.as_str()), (200, "summarise@2"));
    let (status, prompt, body) = s
        .post(
            "/v1/prompts/summarise",
            json!({"variables": vars, "stream": true}),
        )
        .await;
    assert_eq!((status, prompt.as_str()), (200, "summarise@2"));
    assert!(body.as_str().unwrap().contains("[DONE]"));
    let (status, prompt, _) = s
        .post(
            "/v1/chat/completions",
            json!({"model": "demo", "stream": true,
                   "prompt": {"name": "summarise", "version": "1", "variables": vars}}),
        )
        .await;
    assert_eq!((status, prompt.as_str()), (200, "summarise@1"));
    // Refused: a missing variable (400), an unknown prompt (404), a bad key (401).
    let (status, _, _) = s
        .post(
            "/v1/prompts/summarise",
            json!({"variables": {"topic": "x"}}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _, _) = s.post("/v1/prompts/nope", json!({"variables": {}})).await;
    assert_eq!(status, 404);
    let r = s
        .client
        .post(format!("{}/v1/prompts/summarise", s.hub.url()))
        .bearer_auth("sk-wrong")
        .header("x-request-id", "prompt-bad-key")
        .json(&json!({"variables": vars}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "prompt-bad-key");

    let m1 = s.scrape().await;
    let d = |want: &[(&str, &str)]| {
        sum(&m1, "switchyard_prompt_requests_total", want)
            - sum(&m0, "switchyard_prompt_requests_total", want)
    };
    assert_eq!(
        d(&[("prompt", "summarise"), ("version", "2")]),
        2.0,
        "{m1:#?}"
    );
    assert_eq!(d(&[("prompt", "summarise"), ("version", "1")]), 1.0);
    assert_eq!(d(&[]), 3.0, "refused calls were counted");
    let dr = |want: &[(&str, &str)]| {
        sum(&m1, "switchyard_requests_total", want) - sum(&m0, "switchyard_requests_total", want)
    };
    assert_eq!(dr(&[("surface", "openai"), ("outcome", "ok")]), 3.0);
    assert_eq!(dr(&[("surface", "openai"), ("outcome", "error")]), 3.0);

    let mut lines: Vec<Value> = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let mut prompts: Vec<(String, bool)> = lines
        .iter()
        .filter(|l| l["status"] == 200)
        .map(|l| {
            (
                l["prompt"].as_str().unwrap_or("").to_string(),
                l["stream"].as_bool().unwrap(),
            )
        })
        .collect();
    prompts.sort();
    assert_eq!(
        prompts,
        vec![
            ("summarise@1".to_string(), true),
            ("summarise@2".to_string(), false),
            ("summarise@2".to_string(), true),
        ],
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| l["surface"] == "openai"), "{lines:#?}");
    let mut refused: Vec<(u64, String)> = lines
        .iter()
        .filter(|l| l["status"] != 200)
        .map(|l| {
            (
                l["status"].as_u64().unwrap(),
                l["tenant"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    refused.sort();
    assert_eq!(
        refused,
        vec![
            (400, "t".to_string()),
            (401, String::new()),
            (404, "t".to_string())
        ]
    );
    let bad_key = lines
        .iter()
        .find(|l| l["request_id"] == "prompt-bad-key")
        .unwrap();
    assert_eq!(bad_key["error"], "invalid_api_key");
}
