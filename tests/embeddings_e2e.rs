//! End-to-end: `POST /v1/embeddings` through the real `hub` and `spoke` binaries to an
//! OpenAI-compatible upstream and to Bedrock `InvokeModel` (Titan text embeddings v2 and Cohere
//! Embed), against the wire-faithful fakes. Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use switchyard_e2e::{Spoke, spoke_toml};
use switchyard_testkit::bedrock::FakeBedrock;
use switchyard_testkit::behavior::{Behavior, ErrorKind};
use switchyard_testkit::fake_embedding;
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::{Proc, eventually, write_config};

const KEY: &str = "sk-e2e-key";
/// `printf %s sk-e2e-key | sha256sum`
const KEY_SHA256: &str = "efa5642593240584aa889ebfff15261eedfcf4bef5a8ec85db1be8135774d1a9";
const TITAN: &str = "amazon.titan-embed-text-v2:0";
const COHERE: &str = "cohere.embed-english-v3";
const OPENAI_EMBED: &str = "text-embedding-3-small";

struct Stack {
    openai: FakeOpenAi,
    bedrock: FakeBedrock,
    _spokes: Vec<Spoke>,
    hub: Proc,
    _config: tempfile::TempPath,
}

impl Stack {
    async fn start() -> Stack {
        let openai = FakeOpenAi::start().await.unwrap();
        let bedrock = FakeBedrock::start().await.unwrap();
        let s_openai = Spoke::start(&spoke_toml(
            "openai",
            &[("us-east-1", &openai.url())],
            &format!("[[models]]\nid = \"small\"\nupstream_id = \"{OPENAI_EMBED}\"\n"),
            "",
        ))
        .await
        .unwrap();
        let s_bedrock = Spoke::start(&spoke_toml(
            "bedrock",
            &[("us-east-1", &bedrock.url())],
            &format!(
                "[[models]]\nid = \"titan\"\nupstream_id = \"{TITAN}\"\n\
                 [[models]]\nid = \"cohere\"\nupstream_id = \"{COHERE}\"\n"
            ),
            "",
        ))
        .await
        .unwrap();
        let toml = format!(
            "listen = \"127.0.0.1:0\"\ndrain_timeout = \"5s\"\n\
             [[providers]]\nname = \"po\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
             [[providers]]\nname = \"pb\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
             [[aliases]]\nname = \"small\"\ncandidates = [{{ provider = \"po\", model = \"small\" }}]\n\
             [[aliases]]\nname = \"titan\"\ncandidates = [{{ provider = \"pb\", model = \"titan\" }}]\n\
             [[aliases]]\nname = \"cohere\"\ncandidates = [{{ provider = \"pb\", model = \"cohere\" }}]\n\
             [[aliases]]\nname = \"any\"\ncandidates = [{{ provider = \"pb\", model = \"titan\" }}, {{ provider = \"po\", model = \"small\" }}]\n\
             [[tenants]]\nname = \"e2e\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"*\"]\n",
            s_openai.proc.addr(),
            s_bedrock.proc.addr(),
        );
        let path = write_config(&toml, "toml").unwrap();
        let hub = Proc::spawn(
            "hub",
            &["--config".to_string(), path.to_string_lossy().into_owned()],
            &[],
        )
        .await
        .unwrap();
        let ok = eventually(Duration::from_secs(15), || async {
            hub.count_log("spoke healthy") >= 2
        })
        .await;
        assert!(ok, "hub did not see both spokes:\n{}", hub.logs());
        Stack {
            openai,
            bedrock,
            _spokes: vec![s_openai, s_bedrock],
            hub,
            _config: path,
        }
    }

    async fn embed(&self, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/embeddings", self.hub.url()))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.json().await.unwrap_or(Value::Null))
    }
}

fn vector(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_from_openai_titan_and_cohere_in_input_order() {
    let s = Stack::start().await;
    let inputs = ["the first text", "a second one"];
    for (alias, dims) in [("small", 1536), ("titan", 1024), ("cohere", 1024)] {
        let (status, headers, v) = s.embed(json!({"model": alias, "input": inputs})).await;
        assert_eq!(status, 200, "{alias}: {v}");
        assert_eq!(v["object"], "list");
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        for (i, text) in inputs.iter().enumerate() {
            assert_eq!(data[i]["index"], i);
            assert_eq!(data[i]["object"], "embedding");
            assert_eq!(
                vector(&data[i]["embedding"]),
                fake_embedding(text, dims),
                "{alias} #{i}"
            );
        }
        assert!(
            v["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
            "{alias}: {v}"
        );
        let provider = headers["x-switchyard-provider"].to_str().unwrap();
        assert_eq!(
            provider,
            if alias == "small" {
                "openai"
            } else {
                "bedrock"
            }
        );
    }
    // The upstream wire shapes: Titan one text per InvokeModel call, Cohere the batch at once.
    let titan: Vec<_> = s
        .bedrock
        .requests()
        .into_iter()
        .filter(|r| r.model == TITAN)
        .collect();
    assert_eq!(titan.len(), 2);
    assert_eq!(
        titan[0].path,
        "/model/amazon.titan-embed-text-v2%3A0/invoke"
    );
    assert_eq!(titan[0].body, json!({"inputText": "the first text"}));
    let cohere = s
        .bedrock
        .requests()
        .into_iter()
        .find(|r| r.model == COHERE)
        .unwrap();
    assert_eq!(
        cohere.body,
        json!({"texts": inputs, "input_type": "search_document"})
    );
    let openai = s.openai.requests().pop().unwrap();
    assert_eq!(openai.path, "/v1/embeddings");
    assert_eq!(openai.body["model"], OPENAI_EMBED);
    assert_eq!(openai.body["input"], json!(inputs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dimensions_and_base64_encoding() {
    let s = Stack::start().await;
    for alias in ["small", "titan"] {
        let (status, _, v) = s
            .embed(json!({"model": alias, "input": "shorter please", "dimensions": 256, "encoding_format": "base64"}))
            .await;
        assert_eq!(status, 200, "{alias}: {v}");
        let b64 = v["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let floats: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(floats, fake_embedding("shorter please", 256), "{alias}");
    }
    // Cohere Embed has no `dimensions`: the spoke refuses, the client gets a 400.
    let (status, _, v) = s
        .embed(json!({"model": "cohere", "input": "x", "dimensions": 256}))
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "upstream_rejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_embeddings_fail_over_to_the_next_candidate_and_bad_input_is_refused() {
    let s = Stack::start().await;
    s.bedrock.set_behavior(
        TITAN,
        Behavior::Error {
            error: ErrorKind::Throttling,
        },
    );
    let (status, headers, v) = s.embed(json!({"model": "any", "input": "fail over"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(headers["x-switchyard-provider"], "openai");
    assert_eq!(headers["x-switchyard-attempts"], "2");
    assert_eq!(
        vector(&v["data"][0]["embedding"]),
        fake_embedding("fail over", 1536)
    );
    // Only Titan, throttled: a 429 in OpenAI's shape.
    let (status, headers, v) = s.embed(json!({"model": "titan", "input": "x"})).await;
    assert_eq!(status, 429, "{v}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(v["error"]["type"], "rate_limit_error");
    // Token arrays and empty inputs are refused before anything leaves the hub.
    let before = s.openai.total_calls();
    for input in [json!([[1, 2, 3]]), json!([]), json!([""])] {
        let (status, _, v) = s.embed(json!({"model": "small", "input": input})).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    assert_eq!(s.openai.total_calls(), before);
}
