//! End-to-end: the client surfaces (OpenAI chat with tools and images, Anthropic Messages)
//! through the real `hub` and `spoke` binaries to both upstream kinds (a wire-faithful fake
//! OpenAI-compatible API and a fake Bedrock Converse). Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_e2e::{Spoke, spoke_toml};
use switchyard_testkit::anthropic::FakeAnthropic;
use switchyard_testkit::bedrock::FakeBedrock;
use switchyard_testkit::behavior::{Behavior, ErrorKind};
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::{Proc, eventually, write_config};

const KEY: &str = "sk-e2e-key";
/// `printf %s sk-e2e-key | sha256sum`
const KEY_SHA256: &str = "efa5642593240584aa889ebfff15261eedfcf4bef5a8ec85db1be8135774d1a9";
const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
/// A 1x1 PNG.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

/// A hub with three providers: `gpt` → an OpenAI-compatible spoke (model `m1`), `claude` → a
/// Bedrock spoke (model `haiku`), `direct` → an Anthropic spoke (model `sonnet`).
struct Stack {
    openai: FakeOpenAi,
    bedrock: FakeBedrock,
    anthropic: FakeAnthropic,
    _spokes: Vec<Spoke>,
    hub: Proc,
    _config: tempfile::TempPath,
}

const MODEL_CAPS: &str = "streaming = true\ntools = true\nimages = true\ncontext_window = 100000\n";

impl Stack {
    async fn start() -> Stack {
        let openai = FakeOpenAi::start().await.unwrap();
        let bedrock = FakeBedrock::start().await.unwrap();
        let anthropic = FakeAnthropic::start().await.unwrap();
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
        let s_openai = Spoke::start(&spoke_toml(
            "openai",
            &[("us-east-1", &openai.url())],
            &format!(
                "[[models]]\nid = \"m1\"\n{MODEL_CAPS}[[models]]\nid = \"m-text\"\nstreaming = true\n"
            ),
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
        let toml = format!(
            "listen = \"127.0.0.1:0\"\ndrain_timeout = \"5s\"\n\
             [[providers]]\nname = \"po\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
             [[providers]]\nname = \"pb\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
             [[providers]]\nname = \"pa\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
             [[aliases]]\nname = \"direct\"\ncandidates = [{{ provider = \"pa\", model = \"sonnet\" }}]\n\
             [[aliases]]\nname = \"textonly\"\ncandidates = [{{ provider = \"po\", model = \"m-text\" }}]\n\
             [[aliases]]\nname = \"gpt\"\ncandidates = [{{ provider = \"po\", model = \"m1\" }}]\n\
             [[aliases]]\nname = \"claude\"\ncandidates = [{{ provider = \"pb\", model = \"haiku\" }}]\n\
             [[tenants]]\nname = \"e2e\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"*\"]\n",
            s_openai.proc.addr(),
            s_bedrock.proc.addr(),
            s_anthropic.proc.addr(),
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
            hub.count_log("spoke healthy") >= 3
        })
        .await;
        assert!(ok, "hub did not see all spokes:\n{}", hub.logs());
        Stack {
            openai,
            bedrock,
            anthropic,
            _spokes: vec![s_openai, s_bedrock, s_anthropic],
            hub,
            _config: path,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.hub.url())
    }

    async fn post(&self, path: &str, auth: (&str, &str), body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url(path))
            .header(auth.0, auth.1)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn chat(&self, body: Value) -> (u16, Value) {
        let r = self
            .post(
                "/v1/chat/completions",
                ("authorization", &format!("Bearer {KEY}")),
                &body,
            )
            .await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn chat_stream(&self, body: Value) -> Vec<Value> {
        let r = self
            .post(
                "/v1/chat/completions",
                ("authorization", &format!("Bearer {KEY}")),
                &body,
            )
            .await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    async fn messages(&self, body: Value) -> reqwest::Response {
        self.post("/v1/messages", ("x-api-key", KEY), &body).await
    }

    /// The last request a fake received.
    fn last_upstream_body(&self, alias: &str) -> Value {
        let reqs = match alias {
            "gpt" => self.openai.requests(),
            "direct" => self.anthropic.requests(),
            _ => self.bedrock.requests(),
        };
        reqs.last().expect("no upstream request").body.clone()
    }
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_tool_calls_round_trip_through_every_upstream() {
    let s = Stack::start().await;
    for alias in ["gpt", "claude", "direct"] {
        // 1. The model calls the tool.
        let (status, v) = s
            .chat(json!({"model": alias, "tools": [weather_tool()],
                "messages": [{"role": "user", "content": "weather in Paris"}]}))
            .await;
        assert_eq!(status, 200, "{alias}: {v}");
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{alias}: {v}");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"query": "weather in Paris"}), "{alias}");
        let call_id = call["id"].as_str().unwrap().to_string();
        assert!(!call_id.is_empty());
        // The upstream saw the tool definition in its own shape.
        let up = s.last_upstream_body(alias);
        if alias == "direct" {
            assert_eq!(up["tools"][0]["name"], "get_weather");
            assert_eq!(up["tools"][0]["input_schema"]["required"][0], "city");
        } else if alias == "gpt" {
            assert_eq!(up["tools"][0]["function"]["name"], "get_weather");
            assert_eq!(
                up["tools"][0]["function"]["parameters"]["required"][0],
                "city"
            );
        } else {
            assert_eq!(
                up["toolConfig"]["tools"][0]["toolSpec"]["name"],
                "get_weather"
            );
            assert_eq!(
                up["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"][0],
                "city"
            );
        }

        // 2. The tool's result goes back; the model answers with text.
        let (status, v) = s
            .chat(
                json!({"model": alias, "tools": [weather_tool()], "messages": [
                    {"role": "user", "content": "weather in Paris"},
                    {"role": "assistant", "content": null, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": call_id, "content": "sunny and 21C"},
                ]}),
            )
            .await;
        assert_eq!(status, 200, "{alias}: {v}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let text = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(text.ends_with("sunny and 21C"), "{alias}: {text}");
        let up = s.last_upstream_body(alias);
        if alias == "direct" {
            let msgs = up["messages"].as_array().unwrap();
            assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
            assert_eq!(msgs[1]["content"][0]["id"], call_id.as_str());
            assert_eq!(msgs[2]["role"], "user");
            assert_eq!(msgs[2]["content"][0]["tool_use_id"], call_id.as_str());
        } else if alias == "gpt" {
            let msgs = up["messages"].as_array().unwrap();
            assert_eq!(msgs[1]["tool_calls"][0]["id"], call_id.as_str());
            assert_eq!(msgs[2]["role"], "tool");
            assert_eq!(msgs[2]["tool_call_id"], call_id.as_str());
        } else {
            let msgs = up["messages"].as_array().unwrap();
            assert_eq!(
                msgs[1]["content"][0]["toolUse"]["toolUseId"],
                call_id.as_str()
            );
            assert_eq!(
                msgs[1]["content"][0]["toolUse"]["input"],
                json!({"query": "weather in Paris"})
            );
            assert_eq!(msgs[2]["role"], "user");
            assert_eq!(
                msgs[2]["content"][0]["toolResult"]["toolUseId"],
                call_id.as_str()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_streamed_tool_call_deltas_from_every_upstream() {
    let s = Stack::start().await;
    for alias in ["gpt", "claude", "direct"] {
        let chunks = s
            .chat_stream(
                json!({"model": alias, "stream": true, "tools": [weather_tool()],
                "messages": [{"role": "user", "content": "weather in Oslo"}]}),
            )
            .await;
        let mut id = String::new();
        let mut name = String::new();
        let mut args = String::new();
        let mut pieces = 0;
        let mut finish = Value::Null;
        for c in &chunks {
            let choice = &c["choices"][0];
            if !choice["finish_reason"].is_null() {
                finish = choice["finish_reason"].clone();
            }
            for tc in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                assert_eq!(tc["index"], 0);
                if let Some(v) = tc["id"].as_str() {
                    id.push_str(v);
                }
                if let Some(v) = tc["function"]["name"].as_str() {
                    name.push_str(v);
                }
                args.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
                pieces += 1;
            }
        }
        assert_eq!(finish, "tool_calls", "{alias}: {chunks:?}");
        assert!(!id.is_empty(), "{alias}");
        assert_eq!(name, "get_weather", "{alias}");
        assert!(
            pieces >= 2,
            "{alias}: arguments were not streamed in pieces"
        );
        let args: Value = serde_json::from_str(&args).unwrap();
        assert_eq!(args, json!({"query": "weather in Oslo"}), "{alias}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_image_data_urls_reach_every_upstream_and_remote_urls_are_refused() {
    let s = Stack::start().await;
    let url = format!("data:image/png;base64,{PNG_B64}");
    for alias in ["gpt", "claude", "direct"] {
        let (status, v) = s
            .chat(
                json!({"model": alias, "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
                ]}]}),
            )
            .await;
        assert_eq!(status, 200, "{alias}: {v}");
        let up = s.last_upstream_body(alias);
        let content = &up["messages"][0]["content"];
        if alias == "direct" {
            assert_eq!(content[1]["type"], "image");
            assert_eq!(content[1]["source"]["media_type"], "image/png");
            assert_eq!(content[1]["source"]["data"], PNG_B64);
        } else if alias == "gpt" {
            assert_eq!(content[1]["type"], "image_url");
            assert_eq!(content[1]["image_url"]["url"], url.as_str());
        } else {
            // Bedrock's JSON protocol carries the bytes base64-encoded.
            assert_eq!(content[1]["image"]["format"], "png");
            assert_eq!(content[1]["image"]["source"]["bytes"], PNG_B64);
        }
    }
    let (status, v) = s
        .chat(
            json!({"model": "gpt", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            ]}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("data:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_messages_text_tools_and_images_through_every_upstream() {
    let s = Stack::start().await;
    let tool = json!({"name": "get_weather", "description": "Weather by city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}});
    for alias in ["gpt", "claude", "direct"] {
        let r = s
            .messages(json!({"model": alias, "max_tokens": 64, "system": "be brief",
                "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "hello there"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                ]}]}))
            .await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("request-id"));
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["stop_reason"], "end_turn");
        assert!(
            v["content"][0]["text"]
                .as_str()
                .unwrap()
                .ends_with("hello there"),
            "{v}"
        );
        assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
        let up = s.last_upstream_body(alias);
        if alias == "direct" {
            assert_eq!(up["system"], "be brief");
            assert_eq!(up["messages"][0]["content"][1]["source"]["data"], PNG_B64);
        } else if alias == "gpt" {
            assert_eq!(
                up["messages"][0],
                json!({"role": "system", "content": "be brief"})
            );
            assert_eq!(
                up["messages"][1]["content"][1]["image_url"]["url"],
                format!("data:image/png;base64,{PNG_B64}")
            );
        } else {
            assert_eq!(up["system"][0]["text"], "be brief");
            assert_eq!(
                up["messages"][0]["content"][1]["image"]["source"]["bytes"],
                PNG_B64
            );
        }

        // Tool use, then the tool result.
        let v: Value = s
            .messages(json!({"model": alias, "max_tokens": 64, "tools": [tool],
                "messages": [{"role": "user", "content": "weather in Rome"}]}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["stop_reason"], "tool_use", "{alias}: {v}");
        let block = v["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "tool_use")
            .unwrap()
            .clone();
        assert_eq!(block["name"], "get_weather");
        assert_eq!(block["input"], json!({"query": "weather in Rome"}));
        let v: Value = s
            .messages(json!({"model": alias, "max_tokens": 64, "tools": [tool], "messages": [
                {"role": "user", "content": "weather in Rome"},
                {"role": "assistant", "content": [block]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "cloudy 18C"}]},
            ]}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["stop_reason"], "end_turn", "{alias}: {v}");
        assert!(
            v["content"][0]["text"]
                .as_str()
                .unwrap()
                .ends_with("cloudy 18C"),
            "{alias}: {v}"
        );
    }
}

/// `(event name, data)` pairs of an SSE body.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut name = String::new();
    for line in body.lines() {
        if let Some(n) = line.strip_prefix("event:") {
            name = n.trim().to_string();
        } else if let Some(d) = line.strip_prefix("data:") {
            out.push((name.clone(), serde_json::from_str(d.trim()).unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_streaming_event_sequence_with_text_and_tool_use() {
    let s = Stack::start().await;
    for alias in ["gpt", "claude", "direct"] {
        let r = s
            .messages(json!({"model": alias, "max_tokens": 64, "stream": true,
                "messages": [{"role": "user", "content": "one two three"}]}))
            .await;
        assert_eq!(r.status(), 200);
        let events = sse_events(&r.text().await.unwrap());
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[..3], ["message_start", "ping", "content_block_start"]);
        assert_eq!(
            names[names.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
        for (n, d) in &events {
            assert_eq!(d["type"], n.as_str(), "event name and data type agree");
        }
        let text: String = events
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, d)| {
                assert_eq!(d["delta"]["type"], "text_delta");
                d["delta"]["text"].as_str().unwrap().to_string()
            })
            .collect();
        assert!(text.ends_with("one two three"), "{alias}: {text}");
        let delta = &events[events.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);

        // A streamed tool call: a tool_use block with input_json_delta pieces.
        let r = s
            .messages(json!({"model": alias, "max_tokens": 64, "stream": true,
                "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
                "messages": [{"role": "user", "content": "find cats"}]}))
            .await;
        let events = sse_events(&r.text().await.unwrap());
        let start = events
            .iter()
            .find(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "tool_use")
            .unwrap_or_else(|| panic!("{alias}: no tool_use block in {events:?}"));
        assert_eq!(start.1["content_block"]["name"], "lookup");
        let index = start.1["index"].clone();
        let json_text: String = events
            .iter()
            .filter(|(n, d)| n == "content_block_delta" && d["index"] == index)
            .map(|(_, d)| {
                assert_eq!(d["delta"]["type"], "input_json_delta");
                d["delta"]["partial_json"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&json_text).unwrap(),
            json!({"query": "find cats"})
        );
        let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_errors_come_in_anthropics_shape() {
    let s = Stack::start().await;
    let ok_body =
        json!({"model": "claude", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]});
    // Wrong key.
    let r = s
        .post("/v1/messages", ("x-api-key", "sk-wrong"), &ok_body)
        .await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "authentication_error", "message": "missing or invalid API key"}})
    );
    // Unknown model.
    let r = s
        .messages(json!({"model": "nope", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "not_found_error"
    );
    // Missing max_tokens; unsupported block.
    for body in [
        json!({"model": "claude", "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "claude", "max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "document"}]}]}),
    ] {
        let r = s.messages(body).await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    // Upstream validation: 400.
    s.bedrock.set_behavior(
        HAIKU,
        Behavior::Error {
            error: ErrorKind::Validation,
        },
    );
    let r = s.messages(ok_body.clone()).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "invalid_request_error"
    );
    // Upstream throttling everywhere (after: it cools the route down): 429 rate_limit_error with retry-after.
    s.bedrock.set_behavior(
        HAIKU,
        Behavior::Error {
            error: ErrorKind::Throttling,
        },
    );
    let r = s.messages(ok_body).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "rate_limit_error"
    );
}

/// The real AWS SDK's Bedrock Runtime client pointed at the hub (static dummy credentials: the
/// SigV4 signature is ignored; the hub key goes in `x-api-key`).
async fn bedrock_client(s: &Stack) -> aws_sdk_bedrockruntime::Client {
    let creds =
        aws_sdk_bedrockruntime::config::Credentials::new("unused", "unused", None, None, "test");
    let conf = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
        .region(aws_sdk_bedrockruntime::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(s.hub.url())
        .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(conf)
}

fn add_key(req: &mut aws_sdk_bedrockruntime::config::http::HttpRequest) {
    req.headers_mut().insert("x-api-key", KEY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converse_tool_calls_and_streams_with_the_aws_sdk_through_every_upstream() {
    use aws_sdk_bedrockruntime::types::{
        ContentBlock, ConversationRole, ConverseStreamOutput, Message, Tool, ToolConfiguration,
        ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolSpecification,
    };
    use aws_smithy_types::Document;
    let s = Stack::start().await;
    let client = bedrock_client(&s).await;
    let tools = ToolConfiguration::builder()
        .tools(Tool::ToolSpec(
            ToolSpecification::builder()
                .name("get_weather")
                .input_schema(ToolInputSchema::Json(Document::Object(
                    [("type".to_string(), Document::String("object".into()))].into(),
                )))
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap();
    let user = |t: &str| {
        Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text(t.into()))
            .build()
            .unwrap()
    };
    for alias in ["gpt", "claude", "direct"] {
        // Plain text.
        let out = client
            .converse()
            .model_id(alias)
            .messages(user("hello converse"))
            .customize()
            .mutate_request(add_key)
            .send()
            .await
            .unwrap();
        let text = out.output().unwrap().as_message().unwrap().content()[0]
            .as_text()
            .unwrap()
            .clone();
        assert!(text.ends_with("hello converse"), "{alias}: {text}");
        assert!(out.usage().unwrap().output_tokens() > 0);

        // A tool call, then its result.
        let out = client
            .converse()
            .model_id(alias)
            .messages(user("weather in Lima"))
            .tool_config(tools.clone())
            .customize()
            .mutate_request(add_key)
            .send()
            .await
            .unwrap();
        assert_eq!(out.stop_reason().as_str(), "tool_use", "{alias}");
        let msg = out.output().unwrap().as_message().unwrap().clone();
        let tool_use = msg
            .content()
            .iter()
            .find_map(|b| b.as_tool_use().ok())
            .unwrap()
            .clone();
        assert_eq!(tool_use.name(), "get_weather");
        let Document::Object(input) = tool_use.input() else {
            panic!("{alias}: input is not an object");
        };
        assert_eq!(input["query"], Document::String("weather in Lima".into()));
        let result = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::ToolResult(
                ToolResultBlock::builder()
                    .tool_use_id(tool_use.tool_use_id())
                    .content(ToolResultContentBlock::Text("warm 25C".into()))
                    .build()
                    .unwrap(),
            ))
            .build()
            .unwrap();
        let out = client
            .converse()
            .model_id(alias)
            .messages(user("weather in Lima"))
            .messages(msg)
            .messages(result)
            .tool_config(tools.clone())
            .customize()
            .mutate_request(add_key)
            .send()
            .await
            .unwrap();
        assert_eq!(out.stop_reason().as_str(), "end_turn", "{alias}");
        let text = out.output().unwrap().as_message().unwrap().content()[0]
            .as_text()
            .unwrap()
            .clone();
        assert!(text.ends_with("warm 25C"), "{alias}: {text}");

        // ConverseStream: a streamed tool call, decoded by the SDK's event-stream parser.
        let mut out = client
            .converse_stream()
            .model_id(alias)
            .messages(user("weather in Quito"))
            .tool_config(tools.clone())
            .customize()
            .mutate_request(add_key)
            .send()
            .await
            .unwrap();
        let (mut name, mut input, mut stop, mut kinds) =
            (String::new(), String::new(), None, vec![]);
        while let Some(ev) = out.stream.recv().await.unwrap() {
            match &ev {
                ConverseStreamOutput::ContentBlockStart(st) => {
                    kinds.push("start");
                    name = st
                        .start()
                        .unwrap()
                        .as_tool_use()
                        .unwrap()
                        .name()
                        .to_string();
                }
                ConverseStreamOutput::ContentBlockDelta(d) => {
                    kinds.push("delta");
                    input.push_str(d.delta().unwrap().as_tool_use().unwrap().input());
                }
                ConverseStreamOutput::MessageStop(m) => {
                    kinds.push("stop");
                    stop = Some(m.stop_reason().as_str().to_string());
                }
                ConverseStreamOutput::Metadata(_) => kinds.push("metadata"),
                ConverseStreamOutput::MessageStart(_) => kinds.push("message_start"),
                ConverseStreamOutput::ContentBlockStop(_) => kinds.push("block_stop"),
                _ => kinds.push("other"),
            }
        }
        assert_eq!(name, "get_weather", "{alias}: {kinds:?}");
        assert_eq!(
            serde_json::from_str::<Value>(&input).unwrap(),
            json!({"query": "weather in Quito"})
        );
        assert_eq!(stop.as_deref(), Some("tool_use"));
        assert_eq!(kinds.first(), Some(&"message_start"));
        assert_eq!(kinds[kinds.len() - 3..], ["block_stop", "stop", "metadata"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converse_errors_are_modelled_bedrock_exceptions() {
    use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
    use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
    let s = Stack::start().await;
    let client = bedrock_client(&s).await;
    let msg = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("hi".into()))
        .build()
        .unwrap();
    let call = |model: &'static str, key: &'static str| {
        client
            .converse()
            .model_id(model)
            .messages(msg.clone())
            .customize()
            .mutate_request(move |r| {
                r.headers_mut().insert("x-api-key", key);
            })
            .send()
    };
    let e = call("claude", "sk-wrong")
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_access_denied_exception(), "{e:?}");
    let e = call("nope", KEY).await.unwrap_err().into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
    s.bedrock.set_behavior(
        HAIKU,
        Behavior::Error {
            error: ErrorKind::Validation,
        },
    );
    let e = call("claude", KEY).await.unwrap_err().into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");
    s.bedrock.set_behavior(
        HAIKU,
        Behavior::Error {
            error: ErrorKind::Throttling,
        },
    );
    let e = call("claude", KEY).await.unwrap_err().into_service_error();
    assert!(e.is_throttling_exception(), "{e:?}");
    assert!(e.message().unwrap().contains("out of quota"), "{e:?}");
    // Raw: the wire shape boto3 reads.
    let r = s
        .post(
            "/model/claude/converse",
            ("x-api-key", KEY),
            &json!({"messages": [{"role": "user", "content": [{"document": {}}]}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-amzn-errortype"], "ValidationException");
    let v: Value = r.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("document"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_stream_failure_ends_each_surface_in_its_own_error_shape() {
    use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
    let s = Stack::start().await;
    s.bedrock
        .set_behavior(HAIKU, Behavior::StreamFailAfter { chunks: 2 });
    // OpenAI: an error data line, no [DONE].
    let r = s
        .post(
            "/v1/chat/completions",
            ("authorization", &format!("Bearer {KEY}")),
            &json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "one two three"}]}),
        )
        .await;
    let body = r.text().await.unwrap();
    assert!(!body.contains("[DONE]"), "{body}");
    let last = body.lines().rfind(|l| l.starts_with("data:")).unwrap();
    assert!(last.contains("stream_interrupted"), "{body}");
    // Anthropic: an `error` event, no message_stop.
    let r = s
        .messages(json!({"model": "claude", "max_tokens": 32, "stream": true,
            "messages": [{"role": "user", "content": "one two three"}]}))
        .await;
    let events = sse_events(&r.text().await.unwrap());
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error", "{events:?}");
    assert_eq!(data["error"]["type"], "api_error");
    assert!(events.iter().any(|(n, _)| n == "content_block_delta"));
    assert!(!events.iter().any(|(n, _)| n == "message_stop"));
    // Converse: the SDK's stream ends with a modelStreamErrorException.
    let client = bedrock_client(&s).await;
    let mut out = client
        .converse_stream()
        .model_id("claude")
        .messages(
            Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text("one two three".into()))
                .build()
                .unwrap(),
        )
        .customize()
        .mutate_request(add_key)
        .send()
        .await
        .unwrap();
    let mut deltas = 0;
    let err = loop {
        match out.stream.recv().await {
            Ok(Some(aws_sdk_bedrockruntime::types::ConverseStreamOutput::ContentBlockDelta(_))) => {
                deltas += 1
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended cleanly after a failure"),
            Err(e) => break e,
        }
    };
    assert_eq!(deltas, 2);
    let e = err.into_service_error();
    assert!(e.is_model_stream_error_exception(), "{e:?}");
    drop(out);

    // Each surface's stream is counted as a `stream_error` with `stream_interrupted`, its time
    // to first token recorded, and nothing left in flight.
    let m = s.settled_metrics().await;
    for surface in ["openai", "anthropic", "converse"] {
        let want = [
            ("surface", surface),
            ("alias", "claude"),
            ("outcome", "stream_error"),
        ];
        assert_eq!(
            metric_sum(&m, "switchyard_requests_total", &want),
            1.0,
            "{surface}: {m:#?}"
        );
        assert_eq!(
            metric_sum(
                &m,
                "switchyard_request_errors_total",
                &[("surface", surface), ("error", "stream_interrupted")]
            ),
            1.0,
            "{surface}"
        );
    }
    assert_eq!(
        metric_sum(&m, "switchyard_time_to_first_token_seconds_count", &[]),
        3.0
    );
    assert_eq!(metric_sum(&m, "switchyard_in_flight_streams", &[]), 0.0);
}

/// Sum of the samples of Prometheus metric `name` whose labels include every `want` pair.
fn metric_sum(m: &[(String, f64)], name: &str, want: &[(&str, &str)]) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            k.strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
                && want
                    .iter()
                    .all(|(l, v)| k.contains(&format!("{l}=\"{v}\"")))
        })
        .map(|(_, v)| v)
        .sum()
}

impl Stack {
    /// The hub's `/metrics` samples once no request is in flight (streams finish their record
    /// when they end).
    async fn settled_metrics(&self) -> Vec<(String, f64)> {
        for _ in 0..200 {
            let text = reqwest::get(self.url("/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let m: Vec<(String, f64)> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (k, v) = l.rsplit_once(' ')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect();
            if metric_sum(&m, "switchyard_in_flight_requests", &[]) == 0.0 {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("requests still in flight");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_routed_only_to_models_that_declare_them() {
    let s = Stack::start().await;
    let (status, v) = s
        .chat(json!({"model": "textonly", "messages": [{"role": "user", "content": "plain text"}]}))
        .await;
    assert_eq!(status, 200, "{v}");
    let before = s.openai.calls("m-text");
    let (status, v) = s
        .chat(json!({"model": "textonly", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_B64}")}},
        ]}]}))
        .await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "no_route_available");
    assert_eq!(
        s.openai.calls("m-text"),
        before,
        "a text-only model got an image"
    );
    // The same through the Anthropic surface, in its own shape.
    let r = s
        .messages(json!({"model": "textonly", "max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        ]}]}))
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "overloaded_error"
    );
}
