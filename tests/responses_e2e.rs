//! End-to-end: the OpenAI Responses surface of the real `hub`, through real `spoke`s, to every
//! upstream kind (a wire-faithful fake OpenAI-compatible API, Bedrock Converse and Anthropic
//! Messages): a function-call round trip in items (stateless and with `previous_response_id`),
//! streamed function-call events, and stored responses continued across two hub replicas
//! sharing Redis (127.0.0.1:6379). Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_e2e::{Hub, Spoke, audit_lines, spoke_toml};
use switchyard_testkit::anthropic::FakeAnthropic;
use switchyard_testkit::bedrock::FakeBedrock;
use switchyard_testkit::openai::FakeOpenAi;

const KEY: &str = "sk-e2e-key";
/// `printf %s sk-e2e-key | sha256sum`
const KEY_SHA256: &str = "efa5642593240584aa889ebfff15261eedfcf4bef5a8ec85db1be8135774d1a9";
const OTHER_KEY: &str = "sk-other";
const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const MODEL_CAPS: &str = "streaming = true\ntools = true\nimages = true\ncontext_window = 100000\n";

fn sha(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn tenants() -> String {
    format!(
        "[[tenants]]\nname = \"e2e\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"*\"]\n\
         [[tenants]]\nname = \"other\"\napi_key_sha256 = [\"{}\"]\naliases = [\"*\"]\n",
        sha(OTHER_KEY)
    )
}

async fn post(hub: &Hub, key: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(hub.url("/v1/responses"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post_stream(hub: &Hub, body: &Value) -> Vec<Value> {
    let r = reqwest::Client::new()
        .post(hub.url("/v1/responses"))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text()
        .await
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect()
}

fn weather_tool() -> Value {
    json!({"type": "function", "name": "get_weather", "description": "Weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call_round_trip_through_every_upstream() {
    let openai = FakeOpenAi::start().await.unwrap();
    let bedrock = FakeBedrock::start().await.unwrap();
    let anthropic = FakeAnthropic::start().await.unwrap();
    let s_openai = Spoke::start(&spoke_toml(
        "openai",
        &[("us-east-1", &openai.url())],
        &format!("[[models]]\nid = \"m1\"\n{MODEL_CAPS}"),
        "",
    ))
    .await
    .unwrap();
    let s_bedrock = Spoke::start(&spoke_toml(
        "bedrock",
        &[("us-east-1", &bedrock.url())],
        &format!("[[models]]\nid = \"haiku\"\nupstream_id = \"{HAIKU}\"\n{MODEL_CAPS}"),
        "",
    ))
    .await
    .unwrap();
    let s_anthropic = Spoke::start_with_env(
        &spoke_toml(
            "anthropic",
            &[("direct", &anthropic.url())],
            &format!(
                "[[models]]\nid = \"sonnet\"\nupstream_id = \"claude-sonnet-4-5\"\n{MODEL_CAPS}"
            ),
            "[anthropic]\napi_key_env = \"TEST_ANTHROPIC_KEY\"\n",
        ),
        &[("TEST_ANTHROPIC_KEY", "sk-ant-test")],
    )
    .await
    .unwrap();
    let hub = Hub::start(&format!(
        "listen = \"127.0.0.1:0\"\ndrain_timeout = \"5s\"\n\
         [[providers]]\nname = \"po\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
         [[providers]]\nname = \"pb\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
         [[providers]]\nname = \"pa\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
         [[aliases]]\nname = \"gpt\"\ncandidates = [{{ provider = \"po\", model = \"m1\" }}]\n\
         [[aliases]]\nname = \"claude\"\ncandidates = [{{ provider = \"pb\", model = \"haiku\" }}]\n\
         [[aliases]]\nname = \"direct\"\ncandidates = [{{ provider = \"pa\", model = \"sonnet\" }}]\n{}",
        s_openai.proc.addr(),
        s_bedrock.proc.addr(),
        s_anthropic.proc.addr(),
        tenants()
    ))
    .await
    .unwrap();
    hub.wait_healthy(3).await.unwrap();
    let last_body = |alias: &str| -> Value {
        let reqs = match alias {
            "gpt" => openai.requests(),
            "direct" => anthropic.requests(),
            _ => bedrock.requests(),
        };
        reqs.last().expect("no upstream request").body.clone()
    };
    for alias in ["gpt", "claude", "direct"] {
        let question = json!({"role": "user", "content": [{"type": "input_text", "text": "weather in Paris"}]});
        // 1. The model calls the tool: a function_call item.
        let (status, first) = post(
            &hub,
            KEY,
            &json!({"model": alias, "instructions": "use tools", "tools": [weather_tool()],
                    "input": [question]}),
        )
        .await;
        assert_eq!(status, 200, "{alias}: {first}");
        let call = first["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["type"] == "function_call")
            .unwrap_or_else(|| panic!("{alias}: no call in {first}"))
            .clone();
        assert_eq!(call["name"], "get_weather");
        assert_eq!(call["status"], "completed");
        // An answer that only calls a tool has no (empty) message item, as its stream has none.
        assert!(
            !first["output"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["type"] == "message" && o["content"][0]["text"] == ""),
            "{alias}: {first}"
        );
        assert!(call["id"].as_str().unwrap().starts_with("fc_"));
        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"query": "weather in Paris"}), "{alias}");
        let call_id = call["call_id"].as_str().unwrap().to_string();
        assert!(!call_id.is_empty());
        // The upstream saw the flat function tool in its own shape, and the instructions.
        let up = last_body(alias);
        match alias {
            "gpt" => {
                assert_eq!(up["tools"][0]["function"]["name"], "get_weather");
                assert_eq!(up["messages"][0]["role"], "system");
            }
            "direct" => {
                assert_eq!(up["tools"][0]["name"], "get_weather");
                assert_eq!(up["tools"][0]["input_schema"]["required"][0], "city");
                assert_eq!(up["system"], "use tools");
            }
            _ => {
                assert_eq!(
                    up["toolConfig"]["tools"][0]["toolSpec"]["name"],
                    "get_weather"
                );
                assert_eq!(up["system"][0]["text"], "use tools");
            }
        }

        // 2. Stateless: the items sent back, the call's output last.
        let (status, second) = post(
            &hub,
            KEY,
            &json!({"model": alias, "tools": [weather_tool()], "input": [
                question, call,
                {"type": "function_call_output", "call_id": call_id, "output": "sunny, 24C"}]}),
        )
        .await;
        assert_eq!(status, 200, "{alias}: {second}");
        let text = second["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(text.contains("sunny, 24C"), "{alias}: {second}");
        // The upstream got the call and its result, paired by id, in its own shape.
        let up = last_body(alias);
        match alias {
            "gpt" => {
                let msgs = up["messages"].as_array().unwrap();
                let assistant = msgs.iter().find(|m| m["role"] == "assistant").unwrap();
                assert_eq!(assistant["tool_calls"][0]["id"], call_id.as_str());
                let tool = msgs.iter().find(|m| m["role"] == "tool").unwrap();
                assert_eq!(tool["tool_call_id"], call_id.as_str());
                assert_eq!(tool["content"], "sunny, 24C");
            }
            "direct" => {
                let msgs = up["messages"].as_array().unwrap();
                assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
                assert_eq!(msgs[1]["content"][0]["id"], call_id.as_str());
                assert_eq!(msgs[2]["content"][0]["tool_use_id"], call_id.as_str());
            }
            _ => {
                let msgs = up["messages"].as_array().unwrap();
                assert_eq!(
                    msgs[1]["content"][0]["toolUse"]["toolUseId"],
                    call_id.as_str()
                );
                assert_eq!(
                    msgs[2]["content"][0]["toolResult"]["toolUseId"],
                    call_id.as_str()
                );
            }
        }

        // 3. Stateful: only the output, continuing the stored response.
        let (status, third) = post(
            &hub,
            KEY,
            &json!({"model": alias, "tools": [weather_tool()], "previous_response_id": first["id"],
                    "input": [{"type": "function_call_output", "call_id": call_id, "output": "rain"}]}),
        )
        .await;
        assert_eq!(status, 200, "{alias}: {third}");
        let text = third["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(text.contains("rain"), "{alias}: {third}");

        // 4. Streamed: the call's item and argument events.
        let events = post_stream(
            &hub,
            &json!({"model": alias, "tools": [weather_tool()], "stream": true,
                    "input": "weather in Rome"}),
        )
        .await;
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        let added = events
            .iter()
            .find(|e| {
                e["type"] == "response.output_item.added" && e["item"]["type"] == "function_call"
            })
            .unwrap_or_else(|| panic!("{alias}: {types:?}"));
        assert_eq!(added["item"]["name"], "get_weather");
        assert_eq!(added["item"]["status"], "in_progress");
        let args_done = events
            .iter()
            .find(|e| e["type"] == "response.function_call_arguments.done")
            .unwrap();
        let deltas: String = events
            .iter()
            .filter(|e| e["type"] == "response.function_call_arguments.delta")
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(args_done["arguments"].as_str().unwrap(), deltas);
        let args: Value = serde_json::from_str(&deltas).unwrap();
        assert_eq!(args, json!({"query": "weather in Rome"}), "{alias}");
        assert_eq!(*types.last().unwrap(), "response.completed");
        let done = events.last().unwrap();
        let item = done["response"]["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["type"] == "function_call")
            .unwrap();
        assert_eq!(item["id"], added["item"]["id"]);
        assert_eq!(item["arguments"].as_str().unwrap(), deltas);
    }
}

/// A hub whose `[responses]` store is Redis under `prefix`, in front of `spoke`.
async fn replica(spoke: &Spoke, prefix: &str, audit: &std::path::Path) -> Hub {
    let hub = Hub::start(&format!(
        "listen = \"127.0.0.1:0\"\ndrain_timeout = \"5s\"\n\
         [responses]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"\nkey_prefix = \"{prefix}\"\nttl = \"10m\"\n\
         [audit]\npath = \"{}\"\n\
         [[providers]]\nname = \"po\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
         [[aliases]]\nname = \"gpt\"\ncandidates = [{{ provider = \"po\", model = \"m1\" }}]\n{}",
        audit.display(),
        spoke.proc.addr(),
        tenants()
    ))
    .await
    .unwrap();
    hub.wait_healthy(1).await.unwrap();
    hub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_response_id_across_two_hub_replicas_sharing_redis() {
    let openai = FakeOpenAi::start().await.unwrap();
    let spoke = Spoke::start(&spoke_toml(
        "openai",
        &[("us-east-1", &openai.url())],
        &format!("[[models]]\nid = \"m1\"\n{MODEL_CAPS}"),
        "",
    ))
    .await
    .unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("sy-responses-test-{nanos:x}-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let (audit_a, audit_b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let a = replica(&spoke, &prefix, &audit_a).await;
    let b = replica(&spoke, &prefix, &audit_b).await;

    let (status, first) = post(
        &a,
        KEY,
        &json!({"model": "gpt", "input": "remember the number 4242",
                "metadata": {"ticket": "T-1"}, "user": "end-user-7"}),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let id = first["id"].as_str().unwrap().to_string();

    // Replica B continues what replica A stored: the stored turns reach the upstream.
    let (status, second) = post(
        &b,
        KEY,
        &json!({"model": "gpt", "input": "which number?", "previous_response_id": id, "stream": false}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let up = openai.requests().last().unwrap().body.clone();
    let msgs = up["messages"].as_array().unwrap();
    let texts: Vec<String> = msgs.iter().map(|m| m["content"].to_string()).collect();
    assert_eq!(msgs.len(), 3, "{up}");
    assert!(texts[0].contains("remember the number 4242"), "{texts:?}");
    assert_eq!(msgs[1]["role"], "assistant");
    assert!(texts[2].contains("which number?"));

    // B reads it; another tenant cannot, on either replica; B deletes it, A no longer has it.
    let client = reqwest::Client::new();
    let get = |hub: &Hub, key: &'static str| {
        client
            .get(hub.url(&format!("/v1/responses/{id}")))
            .bearer_auth(key)
            .send()
    };
    let got = get(&b, KEY).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.json::<Value>().await.unwrap(), first);
    assert_eq!(get(&a, OTHER_KEY).await.unwrap().status(), 404);
    assert_eq!(get(&b, OTHER_KEY).await.unwrap().status(), 404);
    let (status, e) = post(
        &b,
        OTHER_KEY,
        &json!({"model": "gpt", "input": "which number?", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(e["error"]["code"], "previous_response_not_found");
    let del = client
        .delete(b.url(&format!("/v1/responses/{id}")))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(get(&a, KEY).await.unwrap().status(), 404);

    // Both replicas audited their requests under the `responses` surface.
    let ok = switchyard_testkit::process::eventually(Duration::from_secs(5), || async {
        audit_lines(&audit_a)
            .iter()
            .any(|l| l["surface"] == "responses")
            && audit_lines(&audit_b).len() >= 2
    })
    .await;
    assert!(
        ok,
        "{:?} {:?}",
        audit_lines(&audit_a),
        audit_lines(&audit_b)
    );
    // Fields that cannot change the answer are named in the audit line.
    let first_line = audit_lines(&audit_a)
        .into_iter()
        .find(|l| l["surface"] == "responses")
        .unwrap();
    assert_eq!(
        first_line["ignored"],
        json!(["metadata", "user"]),
        "{first_line}"
    );
    let refused = audit_lines(&audit_b)
        .into_iter()
        .find(|l| l["tenant"] == "other")
        .unwrap();
    assert_eq!(refused["status"], 400);
}
