//! End-to-end, real `hub` and `spoke` binaries (issue 17): every error in the shape of the
//! surface its path falls under — 405 and unknown or undecodable paths included — and the
//! hub's bounds on the inputs that size work (`max_tokens` against the candidates' context
//! windows, embeddings `dimensions`, `n`, tools), each a 400 naming the field, before anything
//! reaches a spoke. Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use switchyard_e2e::{Hub, Spoke, spoke_toml};
use switchyard_testkit::openai::FakeOpenAi;

const KEY: &str = "sk-e2e-key";
/// `printf %s sk-e2e-key | sha256sum`
const KEY_SHA256: &str = "efa5642593240584aa889ebfff15261eedfcf4bef5a8ec85db1be8135774d1a9";

/// A hub with alias `demo` on a simulated spoke (context window 128000, the default) and alias
/// `embed` on an OpenAI-compatible spoke in front of the fake upstream.
struct Stack {
    hub: Hub,
    upstream: FakeOpenAi,
    embed_spoke: Spoke,
    _sim: Spoke,
}

impl Stack {
    async fn start() -> Stack {
        let sim = Spoke::start(&spoke_toml(
            "simulated",
            &[("us-east-1", "http://unused.invalid")],
            "[[models]]\nid = \"m1\"\ncontext_window = 128000\ntools = true\n",
            "[simulated]\nlatency = \"1ms\"\n",
        ))
        .await
        .unwrap();
        let upstream = FakeOpenAi::start().await.unwrap();
        let embed_spoke = Spoke::start(&spoke_toml(
            "openai",
            &[("us-east-1", &upstream.url())],
            "[[models]]\nid = \"e1\"\nupstream_id = \"text-embedding-3-small\"\n",
            "",
        ))
        .await
        .unwrap();
        let hub = Hub::start(&format!(
            "listen = \"127.0.0.1:0\"\ndrain_timeout = \"5s\"\n\
             [[providers]]\nname = \"sim\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
             [[providers]]\nname = \"oa\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
             [[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"sim\", model = \"m1\" }}]\n\
             [[aliases]]\nname = \"embed\"\ncandidates = [{{ provider = \"oa\", model = \"e1\" }}]\n\
             [[prompts]]\nname = \"hello\"\nmodel = \"demo\"\n\
             [[prompts.versions]]\nversion = \"v1\"\nuser = \"hello\"\n\
             [[tenants]]\nname = \"e2e\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"*\"]\n",
            sim.proc.addr(),
            embed_spoke.proc.addr(),
        ))
        .await
        .unwrap();
        hub.wait_healthy(2).await.unwrap();
        Stack {
            hub,
            upstream,
            embed_spoke,
            _sim: sim,
        }
    }

    /// POSTs `body` with the key the way the path's SDK sends it (`x-api-key` on the Anthropic
    /// and Bedrock surfaces, `Authorization: Bearer` on OpenAI's).
    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        let req = reqwest::Client::new().post(self.hub.url(path));
        let req = if path.starts_with("/v1/messages") || path.starts_with("/model/") {
            req.header("x-api-key", KEY)
        } else {
            req.bearer_auth(KEY)
        };
        req.json(&body).send().await.unwrap()
    }
}

/// Which error shape a path's answers take.
#[derive(Debug, Clone, Copy)]
enum Shape {
    OpenAi,
    Anthropic,
    Bedrock,
}

/// Asserts `r` is an error of `status` in `shape`, named `name` (OpenAI `error.code`,
/// Anthropic `error.type`, Bedrock `x-amzn-ErrorType`); returns the body.
async fn assert_shaped(r: reqwest::Response, status: u16, shape: Shape, name: &str) -> Value {
    let what = format!("{} {}", r.url(), r.status());
    assert_eq!(r.status(), status, "{what}");
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        ct.starts_with("application/json"),
        "{what}: content-type {ct}"
    );
    let amzn = r
        .headers()
        .get("x-amzn-errortype")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = r.json().await.unwrap();
    match shape {
        Shape::OpenAi => {
            assert_eq!(body["error"]["code"], name, "{what}: {body}");
            assert!(body["error"]["message"].is_string(), "{what}: {body}");
            assert!(body["error"]["type"].is_string(), "{what}: {body}");
        }
        Shape::Anthropic => {
            assert_eq!(body["type"], "error", "{what}: {body}");
            assert_eq!(body["error"]["type"], name, "{what}: {body}");
            assert!(body["error"]["message"].is_string(), "{what}: {body}");
        }
        Shape::Bedrock => {
            assert_eq!(amzn.as_deref(), Some(name), "{what}: {body}");
            assert!(body["message"].is_string(), "{what}: {body}");
        }
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_takes_the_shape_of_its_surface() {
    let s = Stack::start().await;
    let client = reqwest::Client::new();
    // Other methods on the POST routes: 405 with `Allow: POST`, in the route's shape.
    let post_routes = [
        ("/v1/chat/completions", Shape::OpenAi),
        ("/v1/embeddings", Shape::OpenAi),
        ("/v1/prompts/hello", Shape::OpenAi),
        ("/v1/messages", Shape::Anthropic),
        ("/model/demo/converse", Shape::Bedrock),
        ("/model/demo/converse-stream", Shape::Bedrock),
    ];
    for (path, shape) in post_routes {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let r = client
                .request(method.clone(), s.hub.url(path))
                .header("x-api-key", KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(r.headers()["allow"], "POST", "{method} {path}");
            let name = match shape {
                Shape::OpenAi => "method_not_allowed",
                Shape::Anthropic => "invalid_request_error",
                Shape::Bedrock => "UnknownOperationException",
            };
            let body = assert_shaped(r, 405, shape, name).await;
            assert!(!body.to_string().is_empty());
        }
    }
    // POST on a GET route.
    let r = client.post(s.hub.url("/v1/models")).send().await.unwrap();
    assert_shaped(r, 405, Shape::OpenAi, "method_not_allowed").await;
    // Unknown paths: 404 in the shape of the surface whose prefix they fall under.
    for (path, shape, name) in [
        ("/v1/nope", Shape::OpenAi, "not_found"),
        ("/nope", Shape::OpenAi, "not_found"),
        ("/v1/messages/batches", Shape::Anthropic, "not_found_error"),
        (
            "/v1/messages/batches/msgbatch_1/results",
            Shape::Anthropic,
            "not_found_error",
        ),
        (
            "/model/demo/invoke",
            Shape::Bedrock,
            "UnknownOperationException",
        ),
    ] {
        let r = client.post(s.hub.url(path)).send().await.unwrap();
        assert_shaped(r, 404, shape, name).await;
    }
    // Path parameters that are not UTF-8 once percent-decoded: 400 in shape, path not echoed.
    for (path, shape, name) in [
        (
            "/model/%FF%FE/converse",
            Shape::Bedrock,
            "ValidationException",
        ),
        (
            "/model/%C3%28/converse-stream",
            Shape::Bedrock,
            "ValidationException",
        ),
        ("/v1/prompts/%FF", Shape::OpenAi, "invalid_request"),
    ] {
        let r = s.post(path, json!({"messages": []})).await;
        let body = assert_shaped(r, 400, shape, name).await;
        assert!(!body.to_string().contains("%FF"), "{body}");
    }
    // A malformed body stays in shape on every surface (not axum's text/plain).
    let r = client
        .post(s.hub.url("/model/demo/converse"))
        .header("x-api-key", KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_shaped(r, 400, Shape::Bedrock, "ValidationException").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_beyond_every_context_window_is_a_400_naming_it() {
    let s = Stack::start().await;
    let user = json!([{"role": "user", "content": "hello"}]);
    // One token more than the window: 400 naming max_tokens, no Retry-After (SDKs must not
    // retry it).
    let r = s
        .post(
            "/v1/chat/completions",
            json!({"model": "demo", "max_tokens": 128001, "messages": user}),
        )
        .await;
    assert!(r.headers().get("retry-after").is_none());
    let body = assert_shaped(r, 400, Shape::OpenAi, "invalid_value").await;
    assert_eq!(body["error"]["param"], "max_tokens", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("128000"),
        "{body}"
    );
    let r = s
        .post(
            "/v1/chat/completions",
            json!({"model": "demo", "max_completion_tokens": 200000, "messages": user}),
        )
        .await;
    assert_eq!(
        assert_shaped(r, 400, Shape::OpenAi, "invalid_value").await["error"]["param"],
        "max_tokens"
    );
    let r = s
        .post(
            "/v1/messages",
            json!({"model": "demo", "max_tokens": 128001, "messages": user}),
        )
        .await;
    let body = assert_shaped(r, 400, Shape::Anthropic, "invalid_request_error").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("max_tokens:"),
        "{body}"
    );
    let r = s
        .post(
            "/model/demo/converse",
            json!({"messages": [{"role": "user", "content": [{"text": "hello"}]}],
                   "inferenceConfig": {"maxTokens": 128001}}),
        )
        .await;
    assert_shaped(r, 400, Shape::Bedrock, "ValidationException").await;
    // The window itself fits max_tokens, but not with the input: context_length_exceeded.
    let r = s
        .post(
            "/v1/chat/completions",
            json!({"model": "demo", "max_tokens": 128000, "messages": user}),
        )
        .await;
    let body = assert_shaped(r, 400, Shape::OpenAi, "context_length_exceeded").await;
    assert_eq!(body["error"]["param"], "messages");
    // Within the window: served.
    let r = s
        .post(
            "/v1/chat/completions",
            json!({"model": "demo", "max_tokens": 127000, "messages": user}),
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dimensions_n_and_tools_are_bounded_and_the_spoke_is_unharmed() {
    let s = Stack::start().await;
    // dimensions = 2^32 - 1: refused at the hub, nothing reaches the spoke or its upstream.
    let r = s
        .post(
            "/v1/embeddings",
            json!({"model": "embed", "input": "hello", "dimensions": 4294967295u64}),
        )
        .await;
    let body = assert_shaped(r, 400, Shape::OpenAi, "invalid_value").await;
    assert_eq!(body["error"]["param"], "dimensions", "{body}");
    assert_eq!(s.upstream.total_calls(), 0);
    // The pool still serves: embeddings with a sane size, and the spoke is healthy.
    let r = s
        .post(
            "/v1/embeddings",
            json!({"model": "embed", "input": ["a", "b"], "dimensions": 64}),
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 64);
    let health = reqwest::get(format!("{}/healthz", s.embed_spoke.url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // Too many inputs.
    let many: Vec<String> = (0..2049).map(|i| format!("t{i}")).collect();
    let r = s
        .post("/v1/embeddings", json!({"model": "embed", "input": many}))
        .await;
    assert_eq!(
        assert_shaped(r, 400, Shape::OpenAi, "invalid_value").await["error"]["param"],
        "input"
    );
    // n: the gateway serves one choice; asking for more is refused, not silently dropped.
    let user = json!([{"role": "user", "content": "hello"}]);
    let r = s
        .post(
            "/v1/chat/completions",
            json!({"model": "demo", "n": 4294967295u64, "messages": user}),
        )
        .await;
    assert_eq!(
        assert_shaped(r, 400, Shape::OpenAi, "invalid_value").await["error"]["param"],
        "n"
    );
    let r = s
        .post(
            "/v1/chat/completions",
            json!({"model": "demo", "n": 1, "messages": user}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // Tools: more than `max_tools` (128), or one larger than `max_tool_bytes` (64 KiB).
    let tool = |name: String, schema: Value| json!({"type": "function", "function": {"name": name, "parameters": schema}});
    let tools: Vec<Value> = (0..129)
        .map(|i| tool(format!("t{i}"), json!({"type": "object"})))
        .collect();
    let r = s
        .post(
            "/v1/chat/completions",
            json!({"model": "demo", "messages": user, "tools": tools}),
        )
        .await;
    assert_eq!(
        assert_shaped(r, 400, Shape::OpenAi, "invalid_value").await["error"]["param"],
        "tools"
    );
    let big = json!({"type": "object", "description": "x".repeat(70_000)});
    let r = s
        .post(
            "/v1/messages",
            json!({"model": "demo", "max_tokens": 16, "messages": user,
                   "tools": [{"name": "big", "input_schema": big}]}),
        )
        .await;
    let body = assert_shaped(r, 400, Shape::Anthropic, "invalid_request_error").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("tools.0:"),
        "{body}"
    );
    // 128 small tools are fine.
    let tools: Vec<Value> = (0..128)
        .map(|i| tool(format!("t{i}"), json!({"type": "object"})))
        .collect();
    let r = s
        .post(
            "/v1/chat/completions",
            json!({"model": "demo", "max_tokens": 16, "messages": user, "tools": tools}),
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
}
