//! End-to-end: the endpoints clients expect besides inference (issue 16) — model lookup
//! (`GET /v1/models/{id}` in OpenAI's and Anthropic's shapes), token counting (Anthropic
//! `count_tokens`, Bedrock `count-tokens`) and CORS for browser apps (preflights, headers on
//! answers and errors, nothing for other origins; a real page in headless Chromium calling the
//! hub with `fetch`, streaming included). Real `hub` and `spoke` binaries on a simulated model.
//! Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_e2e::{Hub, Spoke, spoke_toml};

const KEY: &str = "sk-e2e-key";
/// `printf %s sk-e2e-key | sha256sum`
const KEY_SHA256: &str = "efa5642593240584aa889ebfff15261eedfcf4bef5a8ec85db1be8135774d1a9";
/// A second tenant's key, `printf %s sk-other | sha256sum`.
const OTHER_KEY: &str = "sk-other";
/// A tenant with a content policy (deny rule, PII blocked).
const GUARDED_KEY: &str = "sk-guarded";

struct Stack {
    hub: Hub,
    _sim: Spoke,
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

impl Stack {
    /// Aliases `chat` (tenant `t`) and `secret` (tenant `other` only); `cors` = the `[cors]`
    /// section, or empty.
    async fn start(cors: &str) -> Stack {
        let sim = Spoke::start(&spoke_toml(
            "simulated",
            &[("us-east-1", "http://unused.invalid")],
            "[[models]]\nid = \"m1\"\nstreaming = true\n",
            "[simulated]\nlatency = \"1ms\"\n",
        ))
        .await
        .unwrap();
        let hub = Hub::start(&format!(
            "listen = \"127.0.0.1:0\"\n{cors}\n\
             [[providers]]\nname = \"sim\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
             [[aliases]]\nname = \"chat\"\ncandidates = [{{ provider = \"sim\", model = \"m1\" }}]\n\
             [[aliases]]\nname = \"secret\"\ncandidates = [{{ provider = \"sim\", model = \"m1\" }}]\n\
             [[tenants]]\nname = \"t\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"chat\"]\n\
             [[tenants]]\nname = \"other\"\napi_key_sha256 = [\"{}\"]\naliases = [\"chat\", \"secret\"]\n",
            sim.proc.addr(),
            sha256_hex(OTHER_KEY),
        ))
        .await
        .unwrap();
        hub.wait_healthy(1).await.unwrap();
        Stack { hub, _sim: sim }
    }
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut r = reqwest::Client::new().get(url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    let (status, h) = (r.status().as_u16(), r.headers().clone());
    (status, h, r.json().await.unwrap_or(Value::Null))
}

async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut r = reqwest::Client::new().post(url).json(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    let (status, h) = (r.status().as_u16(), r.headers().clone());
    (status, h, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_lookup_answers_the_aliases_a_key_may_use_in_the_callers_shape() {
    let s = Stack::start("").await;
    let bearer = format!("Bearer {KEY}");
    let auth = [("authorization", bearer.as_str())];

    // OpenAI's `models.retrieve`.
    let (status, _, body) = get(&s.hub.url("/v1/models/chat"), &auth).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"id": "chat", "object": "model", "created": 0, "owned_by": "switchyard"})
    );
    // Listed ids and retrievable ids agree.
    let (_, _, list) = get(&s.hub.url("/v1/models"), &auth).await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["chat"]);

    // Another tenant's alias and an unknown one: the same 404, so nothing leaks.
    for id in ["secret", "nope"] {
        let (status, _, body) = get(&s.hub.url(&format!("/v1/models/{id}")), &auth).await;
        assert_eq!(status, 404, "{id}: {body}");
        assert_eq!(body["error"]["code"], "model_not_found", "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    }
    // The other tenant does see its alias.
    let other = format!("Bearer {OTHER_KEY}");
    let (status, _, _) = get(
        &s.hub.url("/v1/models/secret"),
        &[("authorization", other.as_str())],
    )
    .await;
    assert_eq!(status, 200);
    // No key: 401.
    let (status, _, body) = get(&s.hub.url("/v1/models/chat"), &[]).await;
    assert_eq!(status, 401, "{body}");
    // Lookups carry the request id, as every answer does.
    let r = reqwest::Client::new()
        .get(s.hub.url("/v1/models/chat"))
        .header("authorization", &bearer)
        .header("x-request-id", "lookup-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "lookup-1");
    // Readiness answers JSON too.
    let (status, _, body) = get(&s.hub.url("/readyz"), &[]).await;
    assert_eq!((status, body), (200, json!({"status": "ready"})));

    // Anthropic's `models.retrieve` / `models.list` (the SDK sends `anthropic-version`).
    let anth = [("x-api-key", KEY), ("anthropic-version", "2023-06-01")];
    let (status, _, body) = get(&s.hub.url("/v1/models/chat"), &anth).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "model");
    assert_eq!(body["id"], "chat");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    let (_, _, list) = get(&s.hub.url("/v1/models"), &anth).await;
    assert_eq!(list["has_more"], false);
    assert_eq!(list["first_id"], "chat");
    assert_eq!(list["data"][0]["type"], "model");
    let (status, _, body) = get(&s.hub.url("/v1/models/secret"), &anth).await;
    assert_eq!(status, 404);
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "not_found_error", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_counts_grow_with_the_input_and_say_they_are_estimates() {
    let s = Stack::start("").await;
    let anth = [("x-api-key", KEY), ("anthropic-version", "2023-06-01")];
    let count = |text: String| {
        json!({"model": "chat", "messages": [{"role": "user", "content": text}],
               "system": "Be brief."})
    };
    let (status, h, small) = post(
        &s.hub.url("/v1/messages/count_tokens"),
        &anth,
        &count("hi".into()),
    )
    .await;
    assert_eq!(status, 200, "{small}");
    assert_eq!(h["x-switchyard-token-count"], "estimate");
    assert_eq!(h["x-request-id"], h["request-id"]);
    let small = small["input_tokens"].as_u64().unwrap();
    assert!(small >= 1);
    let (_, _, big) = post(
        &s.hub.url("/v1/messages/count_tokens"),
        &anth,
        &count("word ".repeat(400)),
    )
    .await;
    let big = big["input_tokens"].as_u64().unwrap();
    assert!(
        (450..=600).contains(&big),
        "2000 characters ≈ 500 tokens, got {big}"
    );
    // Tools are part of the prompt.
    let mut with_tools = count("hi".into());
    with_tools["tools"] = json!([{"name": "lookup", "description": "d".repeat(400),
                                  "input_schema": {"type": "object"}}]);
    let (_, _, t) = post(&s.hub.url("/v1/messages/count_tokens"), &anth, &with_tools).await;
    assert!(t["input_tokens"].as_u64().unwrap() >= small + 100, "{t}");
    // Errors in Anthropic's shape: a model the key may not use, no key, a bad body.
    let mut secret = count("hi".into());
    secret["model"] = json!("secret");
    let (status, _, body) = post(&s.hub.url("/v1/messages/count_tokens"), &anth, &secret).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "error");
    let (status, _, body) = post(
        &s.hub.url("/v1/messages/count_tokens"),
        &[("anthropic-version", "2023-06-01")],
        &count("hi".into()),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    let (status, _, body) = post(
        &s.hub.url("/v1/messages/count_tokens"),
        &anth,
        &json!({"model": "chat", "messages": "nope"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");

    // Bedrock CountTokens, Converse input and InvokeModel input.
    let (status, h, body) = post(
        &s.hub.url("/model/chat/count-tokens"),
        &[("x-api-key", KEY)],
        &json!({"input": {"converse": {"messages": [{"role": "user", "content": [{"text": "word ".repeat(400)}]}]}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h["x-switchyard-token-count"], "estimate");
    assert!(
        (450..=600).contains(&body["inputTokens"].as_u64().unwrap()),
        "{body}"
    );
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.encode("x".repeat(400));
    let (status, _, body) = post(
        &s.hub.url("/model/chat/count-tokens"),
        &[("x-api-key", KEY)],
        &json!({"input": {"invokeModel": {"body": raw}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["inputTokens"], 100);
    let (status, h, _) = post(
        &s.hub.url("/model/chat/count-tokens"),
        &[("x-api-key", KEY)],
        &json!({"input": {}}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(h["x-amzn-errortype"], "ValidationException");
}

/// A page server on `listener` (another origin than the hub): `/` is the test page.
async fn page_server(listener: tokio::net::TcpListener, html: String) -> SocketAddr {
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = html.clone();
            async move { axum::response::Html(html) }
        }),
    );
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_lets_an_allowed_origin_call_the_hub_from_a_browser_and_no_other() {
    // The page's origin is only known once its server listens: bind it first.
    let page_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let page_addr = page_listener.local_addr().unwrap();
    drop(page_listener);
    let allowed = format!("http://{page_addr}");
    let s = Stack::start(&format!("[cors]\nallowed_origins = [\"{allowed}\"]\n")).await;
    let chat = s.hub.url("/v1/chat/completions");
    let client = reqwest::Client::new();

    // Preflight from the allowed origin, asking for the SDK's headers.
    let r = client
        .request(reqwest::Method::OPTIONS, &chat)
        .header("origin", &allowed)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-stainless-os",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], allowed.as_str());
    let allow_headers = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allow_headers.contains("x-stainless-os"), "{allow_headers}");
    assert!(
        r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    // Another origin: no CORS headers at all.
    let r = client
        .request(reqwest::Method::OPTIONS, &chat)
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // Errors carry the headers too (a browser could not read a 401 otherwise).
    let r = client
        .post(&chat)
        .header("origin", &allowed)
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["access-control-allow-origin"], allowed.as_str());
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");

    // A real browser: a page on the allowed origin calls the hub (plain and streamed), and the
    // same page served from another origin is refused by the browser.
    let script = format!(
        r#"<!doctype html><html><body><pre id="out">pending</pre><script>
const hub = "{hub}";
const headers = {{"authorization": "Bearer {KEY}", "content-type": "application/json"}};
const body = (stream) => JSON.stringify({{model: "chat", stream, messages: [{{role: "user", content: "hello browser"}}]}});
async function run() {{
  const out = [];
  try {{
    const r = await fetch(hub + "/v1/chat/completions", {{method: "POST", headers, body: body(false)}});
    const j = await r.json();
    out.push("plain:" + r.status + ":" + (j.choices ? "content" : "none") + ":" + (r.headers.get("x-request-id") ? "rid" : "norid"));
  }} catch (e) {{ out.push("plain:blocked"); }}
  try {{
    const r = await fetch(hub + "/v1/chat/completions", {{method: "POST", headers, body: body(true)}});
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let text = "", chunks = 0;
    for (;;) {{ const {{done, value}} = await reader.read(); if (done) break; chunks++; text += dec.decode(value); }}
    out.push("stream:" + r.status + ":" + (text.includes("data: [DONE]") ? "done" : "nodone"));
  }} catch (e) {{ out.push("stream:blocked"); }}
  document.getElementById("out").textContent = "RESULT " + out.join(" ");
}}
run();
</script></body></html>"#,
        hub = s.hub.proc.url()
    );
    let allowed_page = format!(
        "http://{}/",
        page_server(
            tokio::net::TcpListener::bind(page_addr).await.unwrap(),
            script.clone()
        )
        .await
    );
    let other_page = format!(
        "http://{}/",
        page_server(
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            script
        )
        .await
    );

    let dom = chromium_dom(&allowed_page).await;
    assert!(
        dom.contains("RESULT plain:200:content:rid stream:200:done"),
        "DOM: {dom}"
    );
    let dom = chromium_dom(&other_page).await;
    assert!(
        dom.contains("RESULT plain:blocked stream:blocked"),
        "DOM: {dom}"
    );
}

/// The DOM of `url` in headless Chromium once its scripts settled (virtual time: the fetches
/// finish before the dump).
async fn chromium_dom(url: &str) -> String {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "/usr/bin/chromium missing (apt-get install -y chromium; .ci/run installs it)"
    );
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                &format!("--user-data-dir={}", profile.path().display()),
                "--virtual-time-budget=15000",
                "--dump-dom",
                url,
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium timed out")
    .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// An Anthropic, a Bedrock and an OpenAI-compatible spoke in front of their fakes, behind one
/// hub: aliases `direct` (Anthropic `sonnet`), `claude` (Bedrock `haiku`), `gpt` (OpenAI `m1`).
struct CountStack {
    anthropic: switchyard_testkit::anthropic::FakeAnthropic,
    bedrock: switchyard_testkit::bedrock::FakeBedrock,
    openai: switchyard_testkit::openai::FakeOpenAi,
    _spokes: Vec<Spoke>,
    hub: Hub,
}

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

impl CountStack {
    async fn start() -> CountStack {
        let caps = "streaming = true\ntools = true\ncontext_window = 100000\n";
        let anthropic = switchyard_testkit::anthropic::FakeAnthropic::start()
            .await
            .unwrap();
        let bedrock = switchyard_testkit::bedrock::FakeBedrock::start()
            .await
            .unwrap();
        let openai = switchyard_testkit::openai::FakeOpenAi::start()
            .await
            .unwrap();
        let s_anthropic = Spoke::start_with_env(
            &spoke_toml(
                "anthropic",
                &[("direct", &anthropic.url())],
                &format!(
                    "[[models]]\nid = \"sonnet\"\nupstream_id = \"claude-sonnet-4-5\"\n{caps}"
                ),
                "[anthropic]\napi_key_env = \"TEST_ANTHROPIC_KEY\"\n",
            ),
            &[("TEST_ANTHROPIC_KEY", "sk-ant-test")],
        )
        .await
        .unwrap();
        let s_bedrock = Spoke::start(&spoke_toml(
            "bedrock",
            &[("us-east-1", &bedrock.url())],
            &format!("[[models]]\nid = \"haiku\"\nupstream_id = \"{HAIKU}\"\n{caps}"),
            "",
        ))
        .await
        .unwrap();
        let s_openai = Spoke::start(&spoke_toml(
            "openai",
            &[("us-east-1", &openai.url())],
            &format!("[[models]]\nid = \"m1\"\n{caps}"),
            "",
        ))
        .await
        .unwrap();
        let hub = Hub::start(&format!(
            "listen = \"127.0.0.1:0\"\n\
             [[providers]]\nname = \"pa\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
             [[providers]]\nname = \"pb\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
             [[providers]]\nname = \"po\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
             [[aliases]]\nname = \"direct\"\ncandidates = [{{ provider = \"pa\", model = \"sonnet\" }}]\n\
             [[aliases]]\nname = \"claude\"\ncandidates = [{{ provider = \"pb\", model = \"haiku\" }}]\n\
             [[aliases]]\nname = \"gpt\"\ncandidates = [{{ provider = \"po\", model = \"m1\" }}]\n\
             [[tenants]]\nname = \"t\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"*\"]\n\
             [[tenants]]\nname = \"guarded\"\napi_key_sha256 = [\"{}\"]\naliases = [\"*\"]\n\
             [tenants.policy]\ndeny = [\"(?i)project falcon\"]\npii = \"block\"\n",
            s_anthropic.proc.addr(),
            s_bedrock.proc.addr(),
            s_openai.proc.addr(),
            sha256_hex(GUARDED_KEY),
        ))
        .await
        .unwrap();
        hub.wait_healthy(3).await.unwrap();
        CountStack {
            anthropic,
            bedrock,
            openai,
            _spokes: vec![s_anthropic, s_bedrock, s_openai],
            hub,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_counts_come_from_the_upstream_where_the_account_offers_counting() {
    let s = CountStack::start().await;
    let anth = [("x-api-key", KEY), ("anthropic-version", "2023-06-01")];
    // 400 words and a 2-word system prompt: the fakes count 402 (words, 10 per tool), the
    // hub's estimate of the same 2,009 characters is above 500.
    let body = |model: &str| {
        json!({"model": model, "system": "Be brief.",
               "messages": [{"role": "user", "content": "word ".repeat(400)}]})
    };

    // An Anthropic account: its own count_tokens answers, without max_tokens, nothing generated.
    let (status, h, v) = post(
        &s.hub.url("/v1/messages/count_tokens"),
        &anth,
        &body("direct"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(h["x-switchyard-token-count"], "upstream");
    assert_eq!(h["x-switchyard-provider"], "anthropic");
    assert_eq!(h["x-switchyard-model"], "sonnet");
    assert_eq!(v, json!({"input_tokens": 402}));
    let sent = s.anthropic.last_request().unwrap();
    assert_eq!(sent.path, "/v1/messages/count_tokens");
    assert_eq!(sent.body["model"], "claude-sonnet-4-5");
    assert!(sent.body.get("max_tokens").is_none(), "{}", sent.body);
    assert_eq!(s.anthropic.total_calls(), 1, "one call, no completion");
    // Tool definitions are counted too (the fake: 10 a tool).
    let mut with_tool = body("direct");
    with_tool["tools"] = json!([{"name": "lookup", "description": "Looks up.",
                                 "input_schema": {"type": "object"}}]);
    let (_, h, v) = post(&s.hub.url("/v1/messages/count_tokens"), &anth, &with_tool).await;
    assert_eq!(h["x-switchyard-token-count"], "upstream");
    assert_eq!(v["input_tokens"], 412, "{v}");

    // A Bedrock account: CountTokens with the Converse input, from either surface.
    let (status, h, v) = post(
        &s.hub.url("/model/claude/count-tokens"),
        &[("x-api-key", KEY)],
        &json!({"input": {"converse": {
            "system": [{"text": "Be brief."}],
            "messages": [{"role": "user", "content": [{"text": "word ".repeat(400)}]}]}}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(h["x-switchyard-token-count"], "upstream");
    assert_eq!(h["x-switchyard-provider"], "bedrock");
    assert_eq!(h["x-switchyard-model"], "haiku");
    assert_eq!(v, json!({"inputTokens": 402}));
    let sent = s.bedrock.last_request().unwrap();
    assert!(sent.path.ends_with("/count-tokens"), "{}", sent.path);
    assert_eq!(sent.model, HAIKU);
    assert!(
        sent.body["input"]["converse"]["messages"].is_array(),
        "{}",
        sent.body
    );
    let (_, h, v) = post(
        &s.hub.url("/v1/messages/count_tokens"),
        &anth,
        &body("claude"),
    )
    .await;
    assert_eq!(h["x-switchyard-token-count"], "upstream");
    assert_eq!(v["input_tokens"], 402, "{v}");
    // InvokeModel input (a model's native body) is always the estimate.
    let (_, h, _) = post(
        &s.hub.url("/model/claude/count-tokens"),
        &[("x-api-key", KEY)],
        &json!({"input": {"invokeModel": {"body": "eyJ4IjogMX0="}}}),
    )
    .await;
    assert_eq!(h["x-switchyard-token-count"], "estimate");

    // An OpenAI-compatible account offers no counting: the hub's estimate, nothing sent.
    let (status, h, v) = post(&s.hub.url("/v1/messages/count_tokens"), &anth, &body("gpt")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(h["x-switchyard-token-count"], "estimate");
    assert!(h.get("x-switchyard-provider").is_none());
    let n = v["input_tokens"].as_u64().unwrap();
    assert!((450..=600).contains(&n), "the estimate, got {n}");
    assert_eq!(s.openai.total_calls(), 0);

    // The upstream down (503 from Anthropic, a ServiceUnavailableException from Bedrock): the
    // estimate, still 200.
    use switchyard_testkit::behavior::{Behavior, ErrorKind};
    s.anthropic.set_behavior(
        "claude-sonnet-4-5",
        Behavior::Error {
            error: ErrorKind::ServiceUnavailable,
        },
    );
    s.bedrock.set_behavior(
        HAIKU,
        Behavior::Error {
            error: ErrorKind::ServiceUnavailable,
        },
    );
    for model in ["direct", "claude"] {
        let (status, h, v) =
            post(&s.hub.url("/v1/messages/count_tokens"), &anth, &body(model)).await;
        assert_eq!(status, 200, "{model}: {v}");
        assert_eq!(h["x-switchyard-token-count"], "estimate", "{model}");
        let n = v["input_tokens"].as_u64().unwrap();
        assert!((450..=600).contains(&n), "{model}: the estimate, got {n}");
    }
    // The tenant's content policy runs before anything is counted upstream: a deny rule or
    // blocked PII refuses the count, and nothing reaches the upstream.
    let before = s.anthropic.total_calls();
    let guarded = [
        ("x-api-key", GUARDED_KEY),
        ("anthropic-version", "2023-06-01"),
    ];
    for (text, code) in [
        ("status of Project Falcon?", "invalid_request_error"),
        ("mail me at jane.doe@example.com", "invalid_request_error"),
    ] {
        let mut b = body("direct");
        b["messages"][0]["content"] = json!(text);
        let (status, _, v) = post(&s.hub.url("/v1/messages/count_tokens"), &guarded, &b).await;
        assert_eq!(status, 400, "{text}: {v}");
        assert_eq!(v["error"]["type"], code, "{v}");
    }
    assert_eq!(s.anthropic.total_calls(), before, "nothing left the hub");

    // Counting spent no completion anywhere: every recorded call was a count.
    for r in s.anthropic.requests() {
        assert_eq!(r.path, "/v1/messages/count_tokens");
    }
    for r in s.bedrock.requests() {
        assert!(r.path.ends_with("/count-tokens"), "{}", r.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_of_the_wrong_type_is_named_in_json_terms() {
    let s = Stack::start("").await;
    let bearer = format!("Bearer {KEY}");
    let auth = [("authorization", bearer.as_str())];
    let chat = |extra: Value| {
        let mut b = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (extra, param) in [
        (json!({"n": -1}), "n"),
        (json!({"max_tokens": 1_000_000_000_000u64}), "max_tokens"),
        (json!({"top_logprobs": "two"}), "top_logprobs"),
        (
            json!({"messages": [{"role": "user", "content": 7}]}),
            "messages[0].content",
        ),
        (json!({"stop": {"a": 1}}), "stop"),
    ] {
        let (status, _, body) = post(
            &s.hub.url("/v1/chat/completions"),
            &auth,
            &chat(extra.clone()),
        )
        .await;
        assert_eq!(status, 400, "{extra}: {body}");
        assert_eq!(body["error"]["param"], param, "{extra}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        for rust in ["u32", "u64", "struct ", "enum ", "ChatRequest"] {
            assert!(!message.contains(rust), "{extra}: {message}");
        }
    }
    // Anthropic too, in its shape.
    let (status, _, body) = post(
        &s.hub.url("/v1/messages"),
        &[("x-api-key", KEY)],
        &json!({"model": "chat", "max_tokens": -5, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["type"], "error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("max_tokens:"),
        "{body}"
    );
    // A body that is not JSON at all stays a plain invalid request.
    let r = reqwest::Client::new()
        .post(s.hub.url("/v1/chat/completions"))
        .header("authorization", &bearer)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["param"], Value::Null, "{body}");
}
