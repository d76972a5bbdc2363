//! The fidelity conformance matrix (issue 15): each request field × each client surface × each
//! upstream kind → what the upstream received (the body the wire-faithful fake recorded), or the
//! 400 and the `param` the caller got when no candidate can honour the field. A new field is one
//! row of [`rows`].
//!
//! One stack: an OpenAI-compatible spoke (alias `o`), an Anthropic spoke (`a`) and a Bedrock
//! spoke (`b`), each in front of its fake and declaring what its API can do (the `[[models]]`
//! capability keys). Real `hub` and `spoke` binaries: run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_e2e::{Spoke, spoke_toml};
use switchyard_testkit::anthropic::FakeAnthropic;
use switchyard_testkit::bedrock::FakeBedrock;
use switchyard_testkit::fake::RecordedRequest;
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::{Proc, eventually, write_config};

const KEY: &str = "sk-e2e-key";
/// `printf %s sk-e2e-key | sha256sum`
const KEY_SHA256: &str = "efa5642593240584aa889ebfff15261eedfcf4bef5a8ec85db1be8135774d1a9";
const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

/// The client API a row is sent with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Api {
    /// `POST /v1/chat/completions`
    Chat,
    /// `POST /v1/messages`
    Messages,
    /// `POST /model/{alias}/converse`
    Converse,
}

/// The upstream kinds, in the order of a row's expectations.
const UPSTREAMS: [&str; 3] = ["openai", "anthropic", "bedrock"];

/// One expectation on what one upstream received, or on the caller's answer.
#[derive(Debug, Clone)]
enum Check {
    /// The recorded upstream body has `value` at this JSON pointer.
    Eq(&'static str, Value),
    /// The recorded upstream body has nothing at this JSON pointer.
    Missing(&'static str),
    /// The recorded upstream body's value at the pointer, as text, contains this.
    Contains(&'static str, &'static str),
    /// The caller got 400 with this `param` (in its surface's error shape) and no upstream call
    /// was made.
    Refused(&'static str),
}

use Check::{Contains, Eq, Missing, Refused};

/// A row: `body` is merged over the surface's minimal request (`model`, one user message
/// "hi", `max_tokens` 32); `expect[i]` is for `UPSTREAMS[i]`.
struct Row {
    name: &'static str,
    api: Api,
    body: Value,
    expect: [Vec<Check>; 3],
}

fn tool_openai() -> Value {
    json!([{"type": "function", "function": {"name": "lookup", "description": "Look a city up",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}
fn tool_anthropic() -> Value {
    json!([{"name": "lookup", "description": "Look a city up",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}
fn tool_converse() -> Value {
    json!({"tools": [{"toolSpec": {"name": "lookup", "description": "Look a city up",
        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}]})
}
fn schema() -> Value {
    json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]})
}

fn rows() -> Vec<Row> {
    vec![
        // ---- OpenAI chat completions
        Row {
            name: "chat tool_choice required",
            api: Api::Chat,
            body: json!({"tools": tool_openai(), "tool_choice": "required"}),
            expect: [
                vec![Eq("/tool_choice", json!("required"))],
                vec![Eq("/tool_choice/type", json!("any"))],
                vec![Eq("/toolConfig/toolChoice", json!({"any": {}}))],
            ],
        },
        Row {
            name: "chat tool_choice named",
            api: Api::Chat,
            body: json!({"tools": tool_openai(),
                         "tool_choice": {"type": "function", "function": {"name": "lookup"}}}),
            expect: [
                vec![Eq("/tool_choice/function/name", json!("lookup"))],
                vec![
                    Eq("/tool_choice/type", json!("tool")),
                    Eq("/tool_choice/name", json!("lookup")),
                ],
                vec![Eq("/toolConfig/toolChoice/tool/name", json!("lookup"))],
            ],
        },
        Row {
            name: "chat tool_choice none",
            api: Api::Chat,
            body: json!({"tools": tool_openai(), "tool_choice": "none"}),
            expect: [
                vec![Eq("/tool_choice", json!("none"))],
                vec![Eq("/tool_choice/type", json!("none"))],
                // Converse has no `none`: the tools are left out.
                vec![Missing("/toolConfig")],
            ],
        },
        Row {
            name: "chat parallel_tool_calls false",
            api: Api::Chat,
            body: json!({"tools": tool_openai(), "parallel_tool_calls": false}),
            expect: [
                vec![Eq("/parallel_tool_calls", json!(false))],
                vec![Eq("/tool_choice/disable_parallel_tool_use", json!(true))],
                // Converse has no such setting: the spoke keeps the answer's first call.
                vec![Contains("/toolConfig", "lookup")],
            ],
        },
        Row {
            name: "chat response_format json_schema",
            api: Api::Chat,
            body: json!({"response_format": {"type": "json_schema",
                "json_schema": {"name": "a", "schema": schema(), "strict": true}}}),
            expect: [
                vec![
                    Eq("/response_format/type", json!("json_schema")),
                    Eq("/response_format/json_schema/schema", schema()),
                ],
                vec![Contains("", "answer")],
                vec![Contains("", "answer")],
            ],
        },
        Row {
            name: "chat max_completion_tokens",
            api: Api::Chat,
            body: json!({"max_tokens": null, "max_completion_tokens": 64}),
            expect: [
                vec![Contains("", "64")],
                vec![Eq("/max_tokens", json!(64))],
                vec![Eq("/inferenceConfig/maxTokens", json!(64))],
            ],
        },
        Row {
            name: "chat stop",
            api: Api::Chat,
            body: json!({"stop": ["END"]}),
            expect: [
                vec![Eq("/stop", json!(["END"]))],
                vec![Eq("/stop_sequences", json!(["END"]))],
                vec![Eq("/inferenceConfig/stopSequences", json!(["END"]))],
            ],
        },
        Row {
            name: "chat seed",
            api: Api::Chat,
            body: json!({"seed": 7}),
            expect: [
                vec![Eq("/seed", json!(7))],
                vec![Refused("seed")],
                vec![Refused("seed")],
            ],
        },
        Row {
            name: "chat n",
            api: Api::Chat,
            body: json!({"n": 2}),
            expect: [
                vec![Eq("/n", json!(2))],
                vec![Refused("n")],
                vec![Refused("n")],
            ],
        },
        Row {
            name: "chat logprobs",
            api: Api::Chat,
            body: json!({"logprobs": true, "top_logprobs": 2}),
            expect: [
                vec![Eq("/logprobs", json!(true)), Eq("/top_logprobs", json!(2))],
                vec![Refused("logprobs")],
                vec![Refused("logprobs")],
            ],
        },
        Row {
            name: "chat penalties",
            api: Api::Chat,
            body: json!({"presence_penalty": 0.5, "frequency_penalty": 0.25}),
            expect: [
                vec![
                    Eq("/presence_penalty", json!(0.5)),
                    Eq("/frequency_penalty", json!(0.25)),
                ],
                vec![Refused("presence_penalty")],
                vec![Refused("presence_penalty")],
            ],
        },
        Row {
            name: "chat reasoning_effort",
            api: Api::Chat,
            body: json!({"reasoning_effort": "low", "max_tokens": 4096}),
            expect: [
                vec![Eq("/reasoning_effort", json!("low"))],
                vec![Eq("/thinking/type", json!("enabled"))],
                vec![Contains("/additionalModelRequestFields", "thinking")],
            ],
        },
        Row {
            name: "chat mid-conversation system message",
            api: Api::Chat,
            body: json!({"messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "and now?"}]}),
            expect: [
                vec![Eq("/messages/2/role", json!("system"))],
                vec![Contains("/system", "Be brief.")],
                vec![Contains("/system", "Be brief.")],
            ],
        },
        Row {
            name: "chat logit_bias",
            api: Api::Chat,
            body: json!({"logit_bias": {"50256": -100}}),
            expect: [
                vec![Eq("/logit_bias/50256", json!(-100))],
                vec![Refused("logit_bias")],
                vec![Refused("logit_bias")],
            ],
        },
        Row {
            name: "chat unknown field passes through to the same API only",
            api: Api::Chat,
            body: json!({"verbosity_next": "low"}),
            expect: [
                vec![Eq("/verbosity_next", json!("low"))],
                vec![Refused("verbosity_next")],
                vec![Refused("verbosity_next")],
            ],
        },
        Row {
            name: "chat user is accepted and not sent",
            api: Api::Chat,
            body: json!({"user": "end-user-7"}),
            expect: [
                vec![Missing("/user")],
                vec![Missing("/user")],
                vec![Missing("/user")],
            ],
        },
        // Out of the caller's API's range: refused by name at the hub, before any upstream.
        Row {
            name: "chat temperature out of range",
            api: Api::Chat,
            body: json!({"temperature": 5}),
            expect: [
                vec![Refused("temperature")],
                vec![Refused("temperature")],
                vec![Refused("temperature")],
            ],
        },
        Row {
            name: "chat max_tokens 0",
            api: Api::Chat,
            body: json!({"max_tokens": 0}),
            expect: [
                vec![Refused("max_tokens")],
                vec![Refused("max_tokens")],
                vec![Refused("max_tokens")],
            ],
        },
        Row {
            name: "chat tool without a name",
            api: Api::Chat,
            body: json!({"tools": [{"type": "function", "function": {"name": "", "parameters": {"type": "object"}}}]}),
            expect: [
                vec![Refused("tools")],
                vec![Refused("tools")],
                vec![Refused("tools")],
            ],
        },
        // ---- Anthropic Messages
        Row {
            name: "messages temperature out of Anthropic's range",
            api: Api::Messages,
            body: json!({"temperature": 1.5}),
            expect: [
                vec![Refused("temperature")],
                vec![Refused("temperature")],
                vec![Refused("temperature")],
            ],
        },
        Row {
            name: "messages tool_choice none",
            api: Api::Messages,
            body: json!({"tools": tool_anthropic(), "tool_choice": {"type": "none"}}),
            expect: [
                vec![Eq("/tool_choice", json!("none"))],
                vec![Eq("/tool_choice/type", json!("none"))],
                vec![Missing("/toolConfig")],
            ],
        },
        Row {
            name: "messages disable_parallel_tool_use",
            api: Api::Messages,
            body: json!({"tools": tool_anthropic(),
                         "tool_choice": {"type": "auto", "disable_parallel_tool_use": true}}),
            expect: [
                vec![Eq("/parallel_tool_calls", json!(false))],
                vec![Eq("/tool_choice/disable_parallel_tool_use", json!(true))],
                vec![Contains("/toolConfig", "lookup")],
            ],
        },
        Row {
            name: "messages cache_control on a tool",
            api: Api::Messages,
            body: json!({"tools": [{"name": "lookup", "input_schema": {"type": "object"},
                                    "cache_control": {"type": "ephemeral"}}]}),
            expect: [
                vec![Missing("/tools/0/cache_control")],
                vec![Eq("/tools/0/cache_control/type", json!("ephemeral"))],
                vec![Contains("/toolConfig/tools", "cachePoint")],
            ],
        },
        Row {
            name: "messages unknown field passes through to the same API only",
            api: Api::Messages,
            body: json!({"context_management_next": {"edits": []}}),
            expect: [
                vec![Refused("context_management_next")],
                vec![Eq("/context_management_next", json!({"edits": []}))],
                vec![Refused("context_management_next")],
            ],
        },
        Row {
            name: "messages thinking enabled",
            api: Api::Messages,
            body: json!({"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048}}),
            expect: [
                vec![Contains("/reasoning_effort", "")],
                vec![Eq(
                    "/thinking",
                    json!({"type": "enabled", "budget_tokens": 2048}),
                )],
                vec![Contains("/additionalModelRequestFields", "2048")],
            ],
        },
        Row {
            name: "messages thinking adaptive",
            api: Api::Messages,
            body: json!({"thinking": {"type": "adaptive"}}),
            expect: [
                vec![Missing("/thinking")],
                vec![Eq("/thinking/type", json!("adaptive"))],
                vec![Contains("/additionalModelRequestFields", "adaptive")],
            ],
        },
        Row {
            name: "messages thinking disabled",
            api: Api::Messages,
            body: json!({"thinking": {"type": "disabled"}}),
            expect: [
                vec![Missing("/reasoning_effort")],
                vec![Missing("/thinking/budget_tokens")],
                vec![Missing(
                    "/additionalModelRequestFields/thinking/budget_tokens",
                )],
            ],
        },
        Row {
            name: "messages tool_choice any",
            api: Api::Messages,
            body: json!({"tools": tool_anthropic(), "tool_choice": {"type": "any"}}),
            expect: [
                vec![Eq("/tool_choice", json!("required"))],
                vec![Eq("/tool_choice/type", json!("any"))],
                vec![Eq("/toolConfig/toolChoice", json!({"any": {}}))],
            ],
        },
        Row {
            name: "messages tool_choice tool",
            api: Api::Messages,
            body: json!({"tools": tool_anthropic(), "tool_choice": {"type": "tool", "name": "lookup"}}),
            expect: [
                vec![Eq("/tool_choice/function/name", json!("lookup"))],
                vec![Eq(
                    "/tool_choice",
                    json!({"type": "tool", "name": "lookup"}),
                )],
                vec![Eq("/toolConfig/toolChoice/tool/name", json!("lookup"))],
            ],
        },
        Row {
            name: "messages top_k",
            api: Api::Messages,
            body: json!({"top_k": 5}),
            expect: [
                vec![Refused("top_k")],
                vec![Eq("/top_k", json!(5))],
                vec![Eq("/additionalModelRequestFields/top_k", json!(5))],
            ],
        },
        Row {
            name: "messages system blocks with cache_control",
            api: Api::Messages,
            body: json!({"system": [{"type": "text", "text": "You are terse.",
                                     "cache_control": {"type": "ephemeral"}}]}),
            expect: [
                vec![Eq("/messages/0/role", json!("system"))],
                vec![Eq("/system/0/cache_control/type", json!("ephemeral"))],
                vec![Contains("/system", "cachePoint")],
            ],
        },
        Row {
            name: "messages role system inside messages",
            api: Api::Messages,
            body: json!({"messages": [{"role": "user", "content": "hi"},
                                      {"role": "system", "content": "Be brief."}]}),
            expect: [
                vec![Contains("/messages", "Be brief.")],
                vec![Contains("", "Be brief.")],
                vec![Contains("/system", "Be brief.")],
            ],
        },
        Row {
            name: "messages thinking block in history",
            api: Api::Messages,
            body: json!({"messages": [
                {"role": "user", "content": "What is 17+34?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "17+34=51", "signature": "sig-abc"},
                    {"type": "text", "text": "51."}]},
                {"role": "user", "content": "And doubled?"}]}),
            expect: [
                vec![Contains("/messages/1", "51.")],
                vec![
                    Eq("/messages/1/content/0/type", json!("thinking")),
                    Eq("/messages/1/content/0/signature", json!("sig-abc")),
                ],
                vec![Contains("/messages/1/content/0", "sig-abc")],
            ],
        },
        // ---- Bedrock Converse
        Row {
            name: "converse temperature out of range",
            api: Api::Converse,
            body: json!({"inferenceConfig": {"maxTokens": 32, "temperature": 5}}),
            expect: [
                vec![Refused("inferenceConfig.temperature")],
                vec![Refused("inferenceConfig.temperature")],
                vec![Refused("inferenceConfig.temperature")],
            ],
        },
        Row {
            name: "converse toolChoice tool",
            api: Api::Converse,
            body: json!({"toolConfig": {"tools": tool_converse()["tools"].clone(),
                                        "toolChoice": {"tool": {"name": "lookup"}}}}),
            expect: [
                vec![Eq("/tool_choice/function/name", json!("lookup"))],
                vec![Eq(
                    "/tool_choice",
                    json!({"type": "tool", "name": "lookup"}),
                )],
                vec![Eq("/toolConfig/toolChoice/tool/name", json!("lookup"))],
            ],
        },
        Row {
            name: "converse toolChoice any",
            api: Api::Converse,
            body: json!({"toolConfig": {"tools": tool_converse()["tools"].clone(),
                                        "toolChoice": {"any": {}}}}),
            expect: [
                vec![Eq("/tool_choice", json!("required"))],
                vec![Eq("/tool_choice/type", json!("any"))],
                vec![Eq("/toolConfig/toolChoice", json!({"any": {}}))],
            ],
        },
        Row {
            name: "converse additionalModelRequestFields top_k",
            api: Api::Converse,
            body: json!({"additionalModelRequestFields": {"top_k": 5}}),
            expect: [
                vec![Refused("additionalModelRequestFields.top_k")],
                vec![Eq("/top_k", json!(5))],
                vec![Eq("/additionalModelRequestFields/top_k", json!(5))],
            ],
        },
        Row {
            name: "converse additionalModelRequestFields unknown key",
            api: Api::Converse,
            body: json!({"additionalModelRequestFields": {"frobnicate": 1}}),
            expect: [
                vec![Refused("additionalModelRequestFields.frobnicate")],
                vec![Refused("additionalModelRequestFields.frobnicate")],
                vec![Eq("/additionalModelRequestFields/frobnicate", json!(1))],
            ],
        },
        Row {
            name: "converse cachePoint in system",
            api: Api::Converse,
            body: json!({"system": [{"text": "You are terse."}, {"cachePoint": {"type": "default"}}]}),
            expect: [
                vec![Contains("/messages/0", "You are terse.")],
                vec![Eq("/system/0/cache_control/type", json!("ephemeral"))],
                vec![Eq("/system/1/cachePoint/type", json!("default"))],
            ],
        },
    ]
}

/// The three spokes and the hub.
struct Stack {
    fakes: (FakeOpenAi, FakeAnthropic, FakeBedrock),
    _spokes: Vec<Spoke>,
    hub: Proc,
    _config: tempfile::TempPath,
}

impl Stack {
    async fn start() -> Stack {
        let openai = FakeOpenAi::start().await.unwrap();
        let anthropic = FakeAnthropic::start().await.unwrap();
        let bedrock = FakeBedrock::start().await.unwrap();
        // What each upstream API can do, as an operator declares it.
        let s_openai = Spoke::start(&spoke_toml(
            "openai",
            &[("us-east-1", &openai.url())],
            "[[models]]\nid = \"m\"\nupstream_id = \"gpt-test\"\nstreaming = true\ntools = true\n\
             structured_output = true\nreasoning = true\nmax_choices = 4\nlogprobs = true\n\
             seed = true\npenalties = true\ntool_choice = true\n",
            "",
        ))
        .await
        .unwrap();
        let s_anthropic = Spoke::start_with_env(
            &spoke_toml(
                "anthropic",
                &[("direct", &anthropic.url())],
                "[[models]]\nid = \"m\"\nupstream_id = \"claude-sonnet-4-5\"\nstreaming = true\n\
                 tools = true\nstructured_output = true\nreasoning = true\nprompt_caching = true\n\
                 top_k = true\ntool_choice = true\n",
                "[anthropic]\napi_key_env = \"TEST_ANTHROPIC_KEY\"\n",
            ),
            &[("TEST_ANTHROPIC_KEY", "sk-ant-test")],
        )
        .await
        .unwrap();
        let s_bedrock = Spoke::start(&spoke_toml(
            "bedrock",
            &[("us-east-1", &bedrock.url())],
            &format!(
                "[[models]]\nid = \"m\"\nupstream_id = \"{HAIKU}\"\nstreaming = true\ntools = true\n\
                 structured_output = true\nreasoning = true\nprompt_caching = true\ntop_k = true\n\
                 tool_choice = true\n"
            ),
            "",
        ))
        .await
        .unwrap();
        let toml = format!(
            "listen = \"127.0.0.1:0\"\n\
             [[providers]]\nname = \"po\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
             [[providers]]\nname = \"pa\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
             [[providers]]\nname = \"pb\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
             [[aliases]]\nname = \"openai\"\ncandidates = [{{ provider = \"po\", model = \"m\" }}]\n\
             [[aliases]]\nname = \"anthropic\"\ncandidates = [{{ provider = \"pa\", model = \"m\" }}]\n\
             [[aliases]]\nname = \"bedrock\"\ncandidates = [{{ provider = \"pb\", model = \"m\" }}]\n\
             [[tenants]]\nname = \"e2e\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"*\"]\n",
            s_openai.proc.addr(),
            s_anthropic.proc.addr(),
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
            hub.count_log("spoke healthy") >= 3
        })
        .await;
        assert!(ok, "hub did not see all spokes:\n{}", hub.logs());
        Stack {
            fakes: (openai, anthropic, bedrock),
            _spokes: vec![s_openai, s_anthropic, s_bedrock],
            hub,
            _config: path,
        }
    }

    fn reset(&self) {
        self.fakes.0.reset();
        self.fakes.1.reset();
        self.fakes.2.reset();
    }

    fn recorded(&self, upstream: &str) -> Vec<RecordedRequest> {
        match upstream {
            "openai" => self.fakes.0.requests(),
            "anthropic" => self.fakes.1.requests(),
            _ => self.fakes.2.requests(),
        }
    }

    /// Sends `row` to the alias of `upstream`: (status, answer body).
    async fn send(&self, row: &Row, upstream: &str) -> (u16, Value) {
        let (path, mut body) = match row.api {
            Api::Chat => (
                "/v1/chat/completions".to_string(),
                json!({"model": upstream, "max_tokens": 32,
                       "messages": [{"role": "user", "content": "hi"}]}),
            ),
            Api::Messages => (
                "/v1/messages".to_string(),
                json!({"model": upstream, "max_tokens": 32,
                       "messages": [{"role": "user", "content": "hi"}]}),
            ),
            Api::Converse => (
                format!("/model/{upstream}/converse"),
                json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                       "inferenceConfig": {"maxTokens": 32}}),
            ),
        };
        for (k, v) in row.body.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.hub.url()))
            .header("authorization", format!("Bearer {KEY}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// The `param` of a 400 in the surface's error shape (OpenAI and Anthropic put it in
/// `error.param`; Bedrock's `ValidationException` names it in its message).
fn refused_param(api: Api, body: &Value) -> String {
    match api {
        Api::Chat | Api::Messages => body["error"]["param"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string()),
        Api::Converse => body["message"].as_str().unwrap_or_default().to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_reaches_every_upstream_translated_or_is_refused_by_name() {
    let stack = Stack::start().await;
    let mut failures = Vec::new();
    let mut checked = 0;
    for row in rows() {
        for (i, upstream) in UPSTREAMS.iter().enumerate() {
            stack.reset();
            let (status, answer) = stack.send(&row, upstream).await;
            let recorded = stack.recorded(upstream);
            let cell = format!("{} → {upstream}", row.name);
            for check in &row.expect[i] {
                checked += 1;
                match check {
                    Refused(param) => {
                        let got = refused_param(row.api, &answer);
                        if status != 400 || !got.contains(param) {
                            failures.push(format!(
                                "{cell}: expected 400 naming {param:?}, got {status} {answer}"
                            ));
                        }
                        if !recorded.is_empty() {
                            failures.push(format!("{cell}: refused, but the upstream was called"));
                        }
                    }
                    _ if status != 200 => {
                        failures.push(format!("{cell}: expected 200, got {status} {answer}"));
                        break;
                    }
                    _ => {
                        let Some(req) = recorded.last() else {
                            failures.push(format!("{cell}: the upstream was not called"));
                            break;
                        };
                        let body = &req.body;
                        match check {
                            Eq(ptr, want) => {
                                let got = body.pointer(ptr);
                                let same = match (got, want) {
                                    (Some(Value::Number(a)), Value::Number(b)) => {
                                        a.as_f64() == b.as_f64()
                                    }
                                    (Some(g), w) => g == w,
                                    (None, _) => false,
                                };
                                if !same {
                                    failures.push(format!(
                                        "{cell}: {ptr} = {got:?}, want {want}; body {body}"
                                    ));
                                }
                            }
                            Missing(ptr) => {
                                if let Some(got) = body.pointer(ptr) {
                                    failures.push(format!(
                                        "{cell}: {ptr} should be absent, is {got}; body {body}"
                                    ));
                                }
                            }
                            Contains(ptr, text) => {
                                let got = body.pointer(ptr).map(Value::to_string);
                                if !got.as_deref().is_some_and(|g| g.contains(text)) {
                                    failures.push(format!(
                                        "{cell}: {ptr:?} should contain {text:?}; body {body}"
                                    ));
                                }
                            }
                            Refused(_) => unreachable!(),
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
