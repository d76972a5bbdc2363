//! Fidelity of the spoke's upstream adapters (contract 1.3): for each new field of
//! `InferRequest`, the upstream request body the wire-faithful fake recorded (the field in the
//! upstream's own form) and the answer the spoke gave (thinking, more choices, logprobs, usage
//! details, stop reasons derived from content), per adapter, table-driven; then streams,
//! `Describe` capabilities, the spoke's capability guard, and the simulated upstream playing
//! along. The real `spoke` binary serves each adapter against its fake.
//! Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::StreamExt;
use serde_json::{Value, json};
use switchyard_e2e::{FakeUpstream, Spoke, UpstreamKind, request, spoke_toml, text_of};
use switchyard_proto::v1::{
    CachePoint, ContentPart, GenerationParams, InferRequest, InferResponse, Message, Passthrough,
    Reasoning, ResponseFormat, Role, StopReason, ThinkingPart, ToolCall, ToolChoice, ToolSpec,
    content_part::Part, infer_event::Event, reasoning::Mode as ReasoningMode,
    response_format::Type as FormatType, tool_choice::Mode as ChoiceMode,
};
use switchyard_testkit::{schema_sample, thinking_signature, thinking_text};

/// A spoke of `kind` on one fake (region `r1`, label `up`), serving `models`.
async fn serve(kind: UpstreamKind, models: &str) -> (FakeUpstream, Spoke) {
    let fake = FakeUpstream::start(kind, "up").await;
    let (provider, extra) = match kind {
        UpstreamKind::OpenAi => ("openai", ""),
        UpstreamKind::Anthropic => ("anthropic", "[anthropic]\napi_key_env = \"TEST_KEY\"\n"),
        UpstreamKind::Bedrock => ("bedrock", ""),
    };
    let region = if kind == UpstreamKind::Bedrock {
        "us-east-1"
    } else {
        "r1"
    };
    let toml = spoke_toml(provider, &[(region, &fake.url())], models, extra);
    let spoke = Spoke::start_with_env(&toml, &[("TEST_KEY", "sk-test")])
        .await
        .unwrap();
    (fake, spoke)
}

fn part(p: Part) -> ContentPart {
    ContentPart { part: Some(p) }
}

fn msg(role: Role, parts: Vec<Part>) -> Message {
    Message {
        role: role as i32,
        content: parts.into_iter().map(part).collect(),
    }
}

fn tool(name: &str, schema: Value) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: format!("the {name} tool"),
        parameters_json: schema.to_string(),
        ..Default::default()
    }
}

fn choice(mode: ChoiceMode, name: &str) -> Option<ToolChoice> {
    Some(ToolChoice {
        mode: mode as i32,
        name: name.into(),
    })
}

fn params(req: &mut InferRequest) -> &mut GenerationParams {
    req.params.get_or_insert_with(Default::default)
}

fn reasoning(mode: ReasoningMode, budget: u32, effort: &str) -> Option<Reasoning> {
    Some(Reasoning {
        mode: mode as i32,
        budget_tokens: budget,
        effort: effort.into(),
    })
}

/// A `json_schema` response format named `answer`.
fn json_schema(schema: Value) -> Option<ResponseFormat> {
    Some(ResponseFormat {
        r#type: FormatType::JsonSchema as i32,
        name: "answer".into(),
        schema_json: schema.to_string(),
        strict: true,
        ..Default::default()
    })
}

fn answer_schema() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["city", "n"], "additionalProperties": false})
}

fn calls(r: &InferResponse) -> Vec<ToolCall> {
    r.message
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|p| match &p.part {
            Some(Part::ToolCall(c)) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn thinking(r: &InferResponse) -> Vec<ThinkingPart> {
    r.message
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|p| match &p.part {
            Some(Part::Thinking(t)) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

fn stop(r: &InferResponse) -> StopReason {
    StopReason::try_from(r.stop_reason).unwrap()
}

type Edit = fn(&mut InferRequest);
type Check = fn(&Value, &InferResponse);

/// One row: a request (the base one to `model`, edited), the body the fake must have received
/// and the answer the spoke must give.
struct Case {
    name: &'static str,
    model: &'static str,
    edit: Edit,
    check: Check,
}

/// Sends each case's request through the spoke and checks the fake's recorded body and the
/// answer.
async fn run(fake: &FakeUpstream, spoke: &Spoke, cases: &[Case]) {
    let mut client = spoke.grpc().await.unwrap();
    for c in cases {
        let mut req = request(&[c.model], "weather in Paris today");
        (c.edit)(&mut req);
        let before = fake.total_calls();
        let r = match client.infer(req).await {
            Ok(r) => r.into_inner(),
            Err(e) => panic!("{}: {e:?}", c.name),
        };
        assert_eq!(fake.total_calls(), before + 1, "{}", c.name);
        let body = fake.last_request().unwrap().body;
        // A panic inside the check names the row.
        let checked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (c.check)(&body, &r)));
        if let Err(e) = checked {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("case {:?}: {why}\nbody: {body}\nanswer: {r:?}", c.name);
        }
    }
}

/// Sends `edit`ed requests the spoke (or its adapter) must refuse: INVALID_ARGUMENT whose
/// message contains `needle`, and no upstream call when `calls_upstream` is false.
async fn refused(
    fake: &FakeUpstream,
    spoke: &Spoke,
    model: &str,
    rows: &[(&str, Edit, &str, bool)],
) {
    let mut client = spoke.grpc().await.unwrap();
    for (name, edit, needle, calls_upstream) in rows {
        let mut req = request(&[model], "weather in Paris today");
        edit(&mut req);
        let before = fake.total_calls();
        let e = client.infer(req).await.expect_err(name);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{name}: {e:?}");
        assert!(e.message().contains(needle), "{name}: {:?}", e.message());
        assert_eq!(
            fake.total_calls() > before,
            *calls_upstream,
            "{name}: upstream called?"
        );
    }
}

const OPENAI_MODELS: &str = "\
[[models]]\nid = \"gpt\"\nupstream_id = \"gpt-4o\"\ntools = true\nreasoning = true\ntop_k = true\nmax_choices = 4\n\
[[models]]\nid = \"o3\"\nupstream_id = \"o3-mini\"\ntools = true\nreasoning = true\nmax_tokens_field = \"max_completion_tokens\"\n\
[[models]]\nid = \"o3-as-max-tokens\"\nupstream_id = \"o3-mini\"\n\
[[models]]\nid = \"quirky\"\nupstream_id = \"llama-stop-with-calls\"\ntools = true\n\
[[models]]\nid = \"plain\"\nupstream_id = \"gpt-4o\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_adapter_carries_each_field() {
    let (fake, spoke) = serve(UpstreamKind::OpenAi, OPENAI_MODELS).await;
    let cases = [
        Case {
            name: "tool_choice none: text, no call",
            model: "gpt",
            edit: |r| {
                r.tools = vec![tool("lookup", json!({"type": "object"}))];
                r.tool_choice = choice(ChoiceMode::None, "");
            },
            check: |b, r| {
                assert_eq!(b["tool_choice"], "none");
                assert!(calls(r).is_empty());
                assert!(text_of(r.message.as_ref()).starts_with("Hello from up (gpt-4o)"));
                assert_eq!(stop(r), StopReason::EndTurn);
            },
        },
        Case {
            name: "tool_choice any → required",
            model: "gpt",
            edit: |r| {
                r.tools = vec![tool("lookup", json!({"type": "object"}))];
                r.tool_choice = choice(ChoiceMode::Any, "");
            },
            check: |b, r| {
                assert_eq!(b["tool_choice"], "required");
                assert_eq!(calls(r)[0].name, "lookup");
                assert_eq!(stop(r), StopReason::ToolUse);
            },
        },
        Case {
            name: "tool_choice named → function; schema-valid arguments; parallel_tool_calls",
            model: "gpt",
            edit: |r| {
                r.tools = vec![
                    tool("a", json!({"type": "object"})),
                    tool(
                        "b",
                        json!({"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}),
                    ),
                ];
                r.tool_choice = choice(ChoiceMode::Tool, "b");
                r.parallel_tool_calls = Some(false);
                r.tools[1].strict = true;
            },
            check: |b, r| {
                assert_eq!(
                    b["tool_choice"],
                    json!({"type": "function", "function": {"name": "b"}})
                );
                assert_eq!(b["parallel_tool_calls"], false);
                assert_eq!(b["tools"][1]["function"]["strict"], true);
                let c = &calls(r)[0];
                assert_eq!(c.name, "b");
                assert_eq!(
                    serde_json::from_str::<Value>(&c.arguments_json).unwrap(),
                    json!({"id": 0})
                );
            },
        },
        Case {
            name: "response_format json_schema",
            model: "gpt",
            edit: |r| r.response_format = json_schema(answer_schema()),
            check: |b, r| {
                assert_eq!(
                    b["response_format"],
                    json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": answer_schema(), "strict": true}})
                );
                let text: Value = serde_json::from_str(&text_of(r.message.as_ref())).unwrap();
                assert_eq!(text, json!({"city": "…", "n": 0}));
            },
        },
        Case {
            name: "response_format json_object",
            model: "gpt",
            edit: |r| {
                r.response_format = Some(ResponseFormat {
                    r#type: FormatType::JsonObject as i32,
                    ..Default::default()
                })
            },
            check: |b, r| {
                assert_eq!(b["response_format"], json!({"type": "json_object"}));
                let text: Value = serde_json::from_str(&text_of(r.message.as_ref())).unwrap();
                assert!(
                    text["answer"]
                        .as_str()
                        .unwrap()
                        .starts_with("Hello from up")
                );
            },
        },
        Case {
            name: "reasoning effort → reasoning_effort; reasoning_content → thinking",
            model: "gpt",
            edit: |r| params(r).reasoning = reasoning(ReasoningMode::Enabled, 0, "high"),
            check: |b, r| {
                assert_eq!(b["reasoning_effort"], "high");
                let t = thinking(r);
                assert_eq!(t.len(), 1);
                assert_eq!(t[0].text, thinking_text("weather in Paris today"));
                let u = r.usage.unwrap();
                assert!(
                    u.reasoning_tokens > 0 && u.output_tokens > u.reasoning_tokens,
                    "{u:?}"
                );
            },
        },
        Case {
            name: "reasoning budget → effort by the table",
            model: "gpt",
            edit: |r| params(r).reasoning = reasoning(ReasoningMode::Enabled, 3000, ""),
            check: |b, _| assert_eq!(b["reasoning_effort"], "low"),
        },
        Case {
            name: "reasoning disabled leaves the model's default",
            model: "gpt",
            edit: |r| params(r).reasoning = reasoning(ReasoningMode::Disabled, 0, ""),
            check: |b, r| {
                assert!(b.get("reasoning_effort").is_none());
                assert!(thinking(r).is_empty());
            },
        },
        Case {
            name: "sampling: top_k (extension), seed, penalties, logit_bias, stop",
            model: "gpt",
            edit: |r| {
                let p = params(r);
                p.top_k = Some(40);
                p.seed = Some(-7);
                p.presence_penalty = Some(0.5);
                p.frequency_penalty = Some(-0.25);
                p.logit_bias = [("50256".to_string(), -100.0), ("13".to_string(), 2.5)].into();
                p.temperature = Some(0.1);
                p.stop = vec!["END".into()];
            },
            check: |b, _| {
                assert_eq!(b["top_k"], 40);
                assert_eq!(b["seed"], -7);
                assert_eq!(b["presence_penalty"], 0.5);
                assert_eq!(b["frequency_penalty"], -0.25);
                assert_eq!(b["logit_bias"], json!({"13": 2.5, "50256": -100.0}));
                assert_eq!(b["temperature"], 0.1);
                assert_eq!(b["stop"], json!(["END"]));
            },
        },
        Case {
            name: "logprobs and top_logprobs",
            model: "gpt",
            edit: |r| {
                params(r).logprobs = true;
                params(r).top_logprobs = Some(2);
            },
            check: |b, r| {
                assert_eq!(
                    (b["logprobs"].clone(), b["top_logprobs"].clone()),
                    (json!(true), json!(2))
                );
                let lp: Value = serde_json::from_str(&r.logprobs_json).unwrap();
                assert_eq!(lp["content"][0]["token"], "Hello ");
                assert_eq!(
                    lp["content"][0]["top_logprobs"].as_array().unwrap().len(),
                    2
                );
            },
        },
        Case {
            name: "n = 3 → more_choices",
            model: "gpt",
            edit: |r| params(r).n = 3,
            check: |b, r| {
                assert_eq!(b["n"], 3);
                assert_eq!(r.more_choices.len(), 2);
                assert!(
                    text_of(r.more_choices[1].message.as_ref())
                        .starts_with("Hello from up#2 (gpt-4o)")
                );
                assert_eq!(r.more_choices[0].stop_reason, StopReason::EndTurn as i32);
            },
        },
        Case {
            name: "max_tokens as max_completion_tokens for a reasoning model",
            model: "o3",
            edit: |r| params(r).max_tokens = Some(64),
            check: |b, r| {
                assert_eq!(b["max_completion_tokens"], 64);
                assert!(b.get("max_tokens").is_none());
                assert!(text_of(r.message.as_ref()).starts_with("Hello from up (o3-mini)"));
            },
        },
        Case {
            name: "mid-conversation system message in place; thinking and cache points left out",
            model: "gpt",
            edit: |r| {
                r.system = "be brief".into();
                r.messages = vec![
                    msg(Role::User, vec![Part::Text("hi".into())]),
                    msg(
                        Role::Assistant,
                        vec![
                            Part::Thinking(ThinkingPart {
                                text: "hmm".into(),
                                signature: "s".into(),
                                ..Default::default()
                            }),
                            Part::Text("hello".into()),
                            Part::CachePoint(CachePoint {
                                r#type: "ephemeral".into(),
                                ttl: String::new(),
                            }),
                        ],
                    ),
                    msg(Role::System, vec![Part::Text("Answer in French.".into())]),
                    msg(Role::User, vec![Part::Text("weather?".into())]),
                ];
            },
            check: |b, _| {
                assert_eq!(
                    b["messages"],
                    json!([
                        {"role": "system", "content": "be brief"},
                        {"role": "user", "content": "hi"},
                        {"role": "assistant", "content": "hello"},
                        {"role": "system", "content": "Answer in French."},
                        {"role": "user", "content": "weather?"},
                    ])
                );
            },
        },
        Case {
            name: "passthrough merges fields the adapter did not set",
            model: "gpt",
            edit: |r| {
                r.passthrough = Some(Passthrough {
                    api: "openai".into(),
                    fields_json: json!({"user": "u-1", "service_tier": "flex", "model": "evil", "store": false}).to_string(),
                })
            },
            check: |b, _| {
                assert_eq!(
                    (
                        b["user"].clone(),
                        b["service_tier"].clone(),
                        b["store"].clone()
                    ),
                    (json!("u-1"), json!("flex"), json!(false))
                );
                assert_eq!(b["model"], "gpt-4o");
            },
        },
        Case {
            name: "a server saying stop next to calls: tool_use",
            model: "quirky",
            edit: |r| r.tools = vec![tool("lookup", json!({"type": "object"}))],
            check: |_, r| {
                assert_eq!(calls(r).len(), 1);
                assert_eq!(stop(r), StopReason::ToolUse);
            },
        },
    ];
    run(&fake, &spoke, &cases).await;

    refused(
        &fake,
        &spoke,
        "o3-as-max-tokens",
        &[(
            "max_tokens to a model that refuses it: the upstream's 400",
            |r| params(r).max_tokens = Some(64),
            "unsupported_parameter",
            true,
        )],
    )
    .await;
    refused(
        &fake,
        &spoke,
        "plain",
        &[
            (
                "reasoning on a model without it",
                |r| params(r).reasoning = reasoning(ReasoningMode::Enabled, 0, "low"),
                "reasoning",
                false,
            ),
            (
                "n above max_choices",
                |r| params(r).n = 2,
                "max_choices",
                false,
            ),
            (
                "top_k without it",
                |r| params(r).top_k = Some(3),
                "top_k",
                false,
            ),
            (
                "tool_choice without it",
                |r| {
                    r.tools = vec![tool("t", json!({"type": "object"}))];
                    r.tool_choice = choice(ChoiceMode::Any, "");
                },
                "tool_choice",
                false,
            ),
            (
                "passthrough of another API",
                |r| {
                    r.passthrough = Some(Passthrough {
                        api: "anthropic".into(),
                        fields_json: "{\"x\":1}".into(),
                    })
                },
                "passthrough",
                false,
            ),
            (
                "unknown effort",
                |r| params(r).reasoning = reasoning(ReasoningMode::Unspecified, 0, "extreme"),
                "reasoning_effort",
                false,
            ),
            ("n beyond bounds", |r| params(r).n = 100_000, "n:", false),
            (
                "top_logprobs beyond 20",
                |r| params(r).top_logprobs = Some(21),
                "top_logprobs",
                false,
            ),
            (
                "a named tool not offered",
                |r| {
                    r.tools = vec![tool("t", json!({"type": "object"}))];
                    r.tool_choice = choice(ChoiceMode::Tool, "nope");
                },
                "no tool named",
                false,
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_streams_choices_reasoning_and_logprobs() {
    let (_fake, spoke) = serve(UpstreamKind::OpenAi, OPENAI_MODELS).await;
    let mut client = spoke.grpc().await.unwrap();
    let mut req = request(&["gpt"], "weather in Oslo");
    params(&mut req).n = 2;
    params(&mut req).logprobs = true;
    params(&mut req).reasoning = reasoning(ReasoningMode::Unspecified, 0, "medium");
    let mut s = client.infer_stream(req).await.unwrap().into_inner();
    let mut text = [String::new(), String::new()];
    let mut thought = String::new();
    let mut logprob_pieces = 0;
    let mut end = None;
    while let Some(ev) = s.next().await {
        match ev.unwrap().event.unwrap() {
            Event::Delta(d) => {
                text[d.choice as usize].push_str(&d.text);
                if let Some(t) = d.thinking.filter(|_| d.choice == 0) {
                    thought.push_str(&t.text);
                }
                if !d.logprobs_json.is_empty() {
                    let lp: Value = serde_json::from_str(&d.logprobs_json).unwrap();
                    assert_eq!(lp["content"][0]["token"].as_str().unwrap(), d.text);
                    logprob_pieces += 1;
                }
            }
            Event::End(e) => end = Some(e),
            Event::Start(_) => {}
        }
    }
    assert!(text[0].starts_with("Hello from up (gpt-4o)"), "{text:?}");
    assert!(text[1].starts_with("Hello from up#1 (gpt-4o)"), "{text:?}");
    assert_eq!(thought, thinking_text("weather in Oslo"));
    assert!(logprob_pieces >= 8, "{logprob_pieces}");
    let end = end.unwrap();
    assert_eq!(end.more_stop_reasons, vec![StopReason::EndTurn as i32]);
    assert!(end.usage.unwrap().reasoning_tokens > 0);
}

const ANTHROPIC_MODELS: &str = "\
[[models]]\nid = \"claude\"\nupstream_id = \"claude-sonnet-4-5\"\ntools = true\n\
[[models]]\nid = \"claude-native\"\nupstream_id = \"claude-sonnet-4-5\"\ntools = true\nstructured_output_mode = \"native\"\n\
[[models]]\nid = \"claude-nocache\"\nupstream_id = \"claude-sonnet-4-5\"\ntools = true\nprompt_caching = false\n";

fn cache() -> Part {
    Part::CachePoint(CachePoint {
        r#type: "ephemeral".into(),
        ttl: String::new(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_adapter_carries_each_field() {
    let (fake, spoke) = serve(UpstreamKind::Anthropic, ANTHROPIC_MODELS).await;
    let cases = [
        Case {
            name: "tool_choice any",
            model: "claude",
            edit: |r| {
                r.tools = vec![tool(
                    "final_result",
                    json!({"type": "object", "properties": {"ok": {"type": "boolean"}}}),
                )];
                r.tool_choice = choice(ChoiceMode::Any, "");
            },
            check: |b, r| {
                assert_eq!(b["tool_choice"], json!({"type": "any"}));
                let c = &calls(r)[0];
                assert_eq!(c.name, "final_result");
                assert_eq!(
                    serde_json::from_str::<Value>(&c.arguments_json).unwrap(),
                    json!({"ok": true})
                );
                assert_eq!(stop(r), StopReason::ToolUse);
            },
        },
        Case {
            name: "tool_choice tool + disable_parallel_tool_use",
            model: "claude",
            edit: |r| {
                r.tools = vec![
                    tool("a", json!({"type": "object"})),
                    tool("final_result", json!({"type": "object"})),
                ];
                r.tool_choice = choice(ChoiceMode::Tool, "final_result");
                r.parallel_tool_calls = Some(false);
            },
            check: |b, r| {
                assert_eq!(
                    b["tool_choice"],
                    json!({"type": "tool", "name": "final_result", "disable_parallel_tool_use": true})
                );
                assert_eq!(calls(r)[0].name, "final_result");
            },
        },
        Case {
            name: "tool_choice none",
            model: "claude",
            edit: |r| {
                r.tools = vec![tool("a", json!({"type": "object"}))];
                r.tool_choice = choice(ChoiceMode::None, "");
            },
            check: |b, r| {
                assert_eq!(b["tool_choice"], json!({"type": "none"}));
                assert!(calls(r).is_empty());
                assert_eq!(stop(r), StopReason::EndTurn);
            },
        },
        Case {
            name: "thinking enabled with a budget: a signed thinking block",
            model: "claude",
            edit: |r| {
                params(r).max_tokens = Some(4000);
                params(r).reasoning = reasoning(ReasoningMode::Enabled, 2048, "");
            },
            check: |b, r| {
                assert_eq!(
                    b["thinking"],
                    json!({"type": "enabled", "budget_tokens": 2048})
                );
                let t = thinking(r);
                let want = thinking_text("weather in Paris today");
                assert_eq!(
                    (t[0].text.as_str(), t[0].signature.clone()),
                    (want.as_str(), thinking_signature(&want))
                );
                assert!(text_of(r.message.as_ref()).starts_with("Hello from up"));
            },
        },
        Case {
            name: "an effort alone: its budget, fitted under max_tokens",
            model: "claude",
            edit: |r| {
                params(r).max_tokens = Some(5000);
                params(r).reasoning = reasoning(ReasoningMode::Unspecified, 0, "high");
            },
            check: |b, _| {
                assert_eq!(
                    b["thinking"],
                    json!({"type": "enabled", "budget_tokens": 4999})
                )
            },
        },
        Case {
            name: "adaptive with an effort",
            model: "claude",
            edit: |r| params(r).reasoning = reasoning(ReasoningMode::Adaptive, 0, "medium"),
            check: |b, r| {
                assert_eq!(b["thinking"], json!({"type": "adaptive"}));
                assert_eq!(b["output_config"], json!({"effort": "medium"}));
                assert_eq!(thinking(r).len(), 1);
            },
        },
        Case {
            name: "disabled: no thinking sent",
            model: "claude",
            edit: |r| params(r).reasoning = reasoning(ReasoningMode::Disabled, 0, ""),
            check: |b, r| {
                assert!(b.get("thinking").is_none());
                assert!(thinking(r).is_empty());
            },
        },
        Case {
            name: "structured output by a forced tool: the answer is its input",
            model: "claude",
            edit: |r| r.response_format = json_schema(answer_schema()),
            check: |b, r| {
                let tools = b["tools"].as_array().unwrap();
                assert_eq!(tools.len(), 1);
                assert_eq!(
                    (tools[0]["name"].clone(), tools[0]["input_schema"].clone()),
                    (json!("answer"), answer_schema())
                );
                assert_eq!(b["tool_choice"], json!({"type": "tool", "name": "answer"}));
                assert!(calls(r).is_empty());
                let text: Value = serde_json::from_str(&text_of(r.message.as_ref())).unwrap();
                assert_eq!(text, json!({"city": "…", "n": 0}));
                assert_eq!(stop(r), StopReason::EndTurn);
            },
        },
        Case {
            name: "structured output natively: output_config.format",
            model: "claude-native",
            edit: |r| r.response_format = json_schema(answer_schema()),
            check: |b, r| {
                assert_eq!(
                    b["output_config"],
                    json!({"format": {"type": "json_schema", "schema": answer_schema()}})
                );
                assert!(b.get("tools").is_none());
                assert_eq!(
                    text_of(r.message.as_ref()),
                    schema_sample(&answer_schema()).to_string()
                );
            },
        },
        Case {
            name: "cache points → cache_control on system, message and tool blocks",
            model: "claude",
            edit: |r| {
                r.system = "long rules".into();
                r.system_parts = vec![
                    part(Part::Text("long rules".into())),
                    part(Part::CachePoint(CachePoint {
                        r#type: "ephemeral".into(),
                        ttl: "1h".into(),
                    })),
                ];
                r.tools = vec![ToolSpec {
                    cache_point: Some(CachePoint {
                        r#type: "ephemeral".into(),
                        ttl: String::new(),
                    }),
                    ..tool("t", json!({"type": "object"}))
                }];
                r.tool_choice = choice(ChoiceMode::None, "");
                r.messages[0].content.push(part(cache()));
            },
            check: |b, r| {
                assert_eq!(
                    b["system"],
                    json!([{"type": "text", "text": "long rules", "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
                );
                assert_eq!(b["tools"][0]["cache_control"], json!({"type": "ephemeral"}));
                assert_eq!(
                    b["messages"][0]["content"][0]["cache_control"],
                    json!({"type": "ephemeral"})
                );
                let u = r.usage.unwrap();
                assert!(u.cache_write_input_tokens > 0, "{u:?}");
                assert!(u.input_tokens >= u.cache_write_input_tokens);
            },
        },
        Case {
            name: "the same prefix again is read from the cache",
            model: "claude",
            edit: |r| {
                r.system = "long rules".into();
                r.system_parts = vec![
                    part(Part::Text("long rules".into())),
                    part(Part::CachePoint(CachePoint {
                        r#type: "ephemeral".into(),
                        ttl: "1h".into(),
                    })),
                ];
                r.tools = vec![ToolSpec {
                    cache_point: Some(CachePoint {
                        r#type: "ephemeral".into(),
                        ttl: String::new(),
                    }),
                    ..tool("t", json!({"type": "object"}))
                }];
                r.tool_choice = choice(ChoiceMode::None, "");
                r.messages[0].content.push(part(cache()));
            },
            check: |_, r| {
                let u = r.usage.unwrap();
                assert!(
                    u.cache_read_input_tokens > 0 && u.cache_write_input_tokens == 0,
                    "{u:?}"
                );
            },
        },
        Case {
            name: "without prompt_caching, cache points are left out",
            model: "claude-nocache",
            edit: |r| {
                r.system_parts = vec![part(Part::Text("rules".into())), part(cache())];
                r.messages[0].content.push(part(cache()));
            },
            check: |b, _| {
                assert_eq!(b["system"], "rules");
                assert!(
                    b["messages"][0]["content"][0]
                        .get("cache_control")
                        .is_none()
                );
            },
        },
        Case {
            name: "mid-conversation system messages join the system prompt",
            model: "claude",
            edit: |r| {
                r.system = "be brief".into();
                r.messages = vec![
                    msg(Role::User, vec![Part::Text("hi".into())]),
                    msg(Role::System, vec![Part::Text("Be brief.".into())]),
                ];
            },
            check: |b, _| {
                assert_eq!(b["system"], "be brief\n\nBe brief.");
                assert_eq!(b["messages"].as_array().unwrap().len(), 1);
            },
        },
        Case {
            name: "thinking history: signed and redacted blocks kept, unsigned left out",
            model: "claude",
            edit: |r| {
                r.messages = vec![
                    msg(Role::User, vec![Part::Text("what is 17 * 3?".into())]),
                    msg(
                        Role::Assistant,
                        vec![
                            Part::Thinking(ThinkingPart {
                                text: "17*3".into(),
                                signature: "sig-1".into(),
                                ..Default::default()
                            }),
                            Part::Thinking(ThinkingPart {
                                redacted: true,
                                data: "opaque".into(),
                                ..Default::default()
                            }),
                            Part::Thinking(ThinkingPart {
                                text: "from elsewhere".into(),
                                ..Default::default()
                            }),
                            Part::Text("51.".into()),
                        ],
                    ),
                    msg(Role::User, vec![Part::Text("and 17 * 4?".into())]),
                ];
            },
            check: |b, r| {
                assert_eq!(
                    b["messages"][1]["content"],
                    json!([
                        {"type": "thinking", "thinking": "17*3", "signature": "sig-1"},
                        {"type": "redacted_thinking", "data": "opaque"},
                        {"type": "text", "text": "51."},
                    ])
                );
                assert!(text_of(r.message.as_ref()).ends_with("and 17 * 4?"));
            },
        },
        Case {
            name: "top_k and passthrough (what the adapter set wins)",
            model: "claude",
            edit: |r| {
                params(r).top_k = Some(5);
                r.passthrough = Some(Passthrough {
                    api: "anthropic".into(),
                    fields_json: json!({"metadata": {"user_id": "u1"}, "max_tokens": 1, "service_tier": "auto"}).to_string(),
                });
            },
            check: |b, _| {
                assert_eq!(b["top_k"], 5);
                assert_eq!(b["metadata"], json!({"user_id": "u1"}));
                assert_eq!(b["service_tier"], "auto");
                assert_eq!(b["max_tokens"], 100);
            },
        },
    ];
    run(&fake, &spoke, &cases).await;
    refused(
        &fake,
        &spoke,
        "claude",
        &[
            (
                "seed is not a Messages API setting",
                |r| params(r).seed = Some(1),
                "seed",
                false,
            ),
            (
                "a budget at or above max_tokens: Anthropic's 400",
                |r| {
                    params(r).max_tokens = Some(2000);
                    params(r).reasoning = reasoning(ReasoningMode::Enabled, 2000, "");
                },
                "invalid_request_error",
                true,
            ),
            (
                "an effort without room under max_tokens",
                |r| {
                    params(r).max_tokens = Some(500);
                    params(r).reasoning = reasoning(ReasoningMode::Unspecified, 0, "low");
                },
                "max_tokens",
                false,
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_streams_thinking_and_structured_output() {
    let (_fake, spoke) = serve(UpstreamKind::Anthropic, ANTHROPIC_MODELS).await;
    let mut client = spoke.grpc().await.unwrap();
    // Thinking: pieces, then the signature in a last piece.
    let mut req = request(&["claude"], "prime factors of 91");
    params(&mut req).max_tokens = Some(4000);
    params(&mut req).reasoning = reasoning(ReasoningMode::Enabled, 1024, "");
    let mut s = client.infer_stream(req).await.unwrap().into_inner();
    let (mut thought, mut signature, mut text) = (String::new(), String::new(), String::new());
    while let Some(ev) = s.next().await {
        if let Event::Delta(d) = ev.unwrap().event.unwrap() {
            if let Some(t) = d.thinking {
                assert!(text.is_empty(), "thinking comes first");
                thought.push_str(&t.text);
                signature.push_str(&t.signature);
            }
            text.push_str(&d.text);
        }
    }
    let want = thinking_text("prime factors of 91");
    assert_eq!(
        (thought.as_str(), signature),
        (want.as_str(), thinking_signature(&want))
    );
    assert!(text.starts_with("Hello from up"), "{text}");

    // Structured output by a forced tool: the tool's input streams as the text.
    let mut req = request(&["claude"], "capital of France");
    req.response_format = json_schema(answer_schema());
    let mut s = client.infer_stream(req).await.unwrap().into_inner();
    let (mut text, mut end) = (String::new(), None);
    while let Some(ev) = s.next().await {
        match ev.unwrap().event.unwrap() {
            Event::Delta(d) => {
                assert!(d.tool_call.is_none(), "the output tool's call never shows");
                text.push_str(&d.text);
            }
            Event::End(e) => end = Some(e),
            Event::Start(_) => {}
        }
    }
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"city": "…", "n": 0})
    );
    assert_eq!(end.unwrap().stop_reason, StopReason::EndTurn as i32);
}

const BEDROCK_MODELS: &str = "\
[[models]]\nid = \"claude\"\nupstream_id = \"anthropic.claude-sonnet-4-5-v1:0\"\ntools = true\nreasoning = true\ntop_k = true\n\
[[models]]\nid = \"claude-native\"\nupstream_id = \"anthropic.claude-sonnet-4-5-v1:0\"\ntools = true\nstructured_output_mode = \"native\"\n\
[[models]]\nid = \"nova\"\nupstream_id = \"amazon.nova-2-lite-v1:0\"\ntools = true\nreasoning = true\ntop_k = true\n\
[[models]]\nid = \"gpt-oss\"\nupstream_id = \"openai.gpt-oss-120b-1:0\"\nreasoning = true\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_adapter_carries_each_field() {
    let (fake, spoke) = serve(UpstreamKind::Bedrock, BEDROCK_MODELS).await;
    let cases = [
        Case {
            name: "toolChoice any",
            model: "claude",
            edit: |r| {
                r.tools = vec![tool(
                    "final_result",
                    json!({"type": "object", "properties": {"ok": {"type": "boolean"}}}),
                )];
                r.tool_choice = choice(ChoiceMode::Any, "");
            },
            check: |b, r| {
                assert_eq!(b["toolConfig"]["toolChoice"], json!({"any": {}}));
                assert_eq!(
                    serde_json::from_str::<Value>(&calls(r)[0].arguments_json).unwrap(),
                    json!({"ok": true})
                );
                assert_eq!(stop(r), StopReason::ToolUse);
            },
        },
        Case {
            name: "toolChoice tool",
            model: "claude",
            edit: |r| {
                r.tools = vec![
                    tool("a", json!({"type": "object"})),
                    tool("b", json!({"type": "object"})),
                ];
                r.tool_choice = choice(ChoiceMode::Tool, "b");
            },
            check: |b, r| {
                assert_eq!(
                    b["toolConfig"]["toolChoice"],
                    json!({"tool": {"name": "b"}})
                );
                assert_eq!(calls(r)[0].name, "b");
            },
        },
        Case {
            name: "tool choice none without tool history: tools left out",
            model: "claude",
            edit: |r| {
                r.tools = vec![tool("a", json!({"type": "object"}))];
                r.tool_choice = choice(ChoiceMode::None, "");
            },
            check: |b, r| {
                assert!(b.get("toolConfig").is_none());
                assert!(calls(r).is_empty());
            },
        },
        Case {
            name: "parallel_tool_calls false: at most one call kept",
            model: "claude",
            edit: |r| {
                r.tools = vec![tool("a", json!({"type": "object"}))];
                r.parallel_tool_calls = Some(false);
            },
            check: |_, r| assert_eq!(calls(r).len(), 1),
        },
        Case {
            name: "thinking via additionalModelRequestFields; reasoningContent → thinking",
            model: "claude",
            edit: |r| {
                params(r).max_tokens = Some(4000);
                params(r).reasoning = reasoning(ReasoningMode::Enabled, 2048, "");
                params(r).top_k = Some(7);
            },
            check: |b, r| {
                assert_eq!(
                    b["additionalModelRequestFields"],
                    json!({"thinking": {"type": "enabled", "budget_tokens": 2048}, "top_k": 7})
                );
                let t = thinking(r);
                let want = thinking_text("weather in Paris today");
                assert_eq!(
                    (t[0].text.as_str(), t[0].signature.clone()),
                    (want.as_str(), thinking_signature(&want))
                );
            },
        },
        Case {
            name: "an effort without max_tokens: its budget, and room for an answer",
            model: "claude",
            edit: |r| {
                params(r).max_tokens = None;
                params(r).reasoning = reasoning(ReasoningMode::Unspecified, 0, "low");
            },
            check: |b, _| {
                assert_eq!(
                    b["additionalModelRequestFields"]["thinking"],
                    json!({"type": "enabled", "budget_tokens": 2048})
                );
                assert_eq!(b["inferenceConfig"]["maxTokens"], 2048 + 4096);
            },
        },
        Case {
            name: "adaptive thinking with an effort: thinking adaptive, outputConfig.effort",
            model: "claude",
            edit: |r| params(r).reasoning = reasoning(ReasoningMode::Adaptive, 0, "xhigh"),
            check: |b, r| {
                assert_eq!(
                    b["additionalModelRequestFields"],
                    json!({"thinking": {"type": "adaptive"}})
                );
                assert_eq!(b["outputConfig"], json!({"effort": "max"}));
                assert_eq!(thinking(r).len(), 1);
            },
        },
        Case {
            name: "gpt-oss: reasoning_effort",
            model: "gpt-oss",
            edit: |r| params(r).reasoning = reasoning(ReasoningMode::Unspecified, 0, "minimal"),
            check: |b, r| {
                assert_eq!(
                    b["additionalModelRequestFields"],
                    json!({"reasoning_effort": "low"})
                );
                assert!(!thinking(r)[0].text.is_empty());
            },
        },
        Case {
            name: "Nova 2: reasoningConfig and inferenceConfig.topK",
            model: "nova",
            edit: |r| {
                params(r).reasoning = reasoning(ReasoningMode::Enabled, 20000, "");
                params(r).top_k = Some(3);
            },
            check: |b, r| {
                assert_eq!(
                    b["additionalModelRequestFields"],
                    json!({"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}, "inferenceConfig": {"topK": 3}})
                );
                assert_eq!(thinking(r)[0].text, "[REDACTED]");
            },
        },
        Case {
            name: "caller's additionalModelRequestFields and response field paths",
            model: "claude",
            edit: |r| {
                r.additional_model_request_fields_json =
                    json!({"anthropic_beta": ["x"], "top_k": 99}).to_string();
                r.additional_model_response_field_paths = vec!["/stop_sequence".into()];
                params(r).top_k = Some(4);
            },
            check: |b, r| {
                assert_eq!(
                    b["additionalModelRequestFields"],
                    json!({"anthropic_beta": ["x"], "top_k": 4})
                );
                assert_eq!(
                    b["additionalModelResponseFieldPaths"],
                    json!(["/stop_sequence"])
                );
                assert_eq!(
                    serde_json::from_str::<Value>(&r.additional_model_response_fields_json)
                        .unwrap(),
                    json!({"stop_sequence": null})
                );
            },
        },
        Case {
            name: "structured output by a forced tool",
            model: "claude",
            edit: |r| r.response_format = json_schema(answer_schema()),
            check: |b, r| {
                assert_eq!(
                    b["toolConfig"]["toolChoice"],
                    json!({"tool": {"name": "answer"}})
                );
                assert_eq!(
                    b["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
                    answer_schema()
                );
                assert_eq!(
                    serde_json::from_str::<Value>(&text_of(r.message.as_ref())).unwrap(),
                    json!({"city": "…", "n": 0})
                );
                assert_eq!(stop(r), StopReason::EndTurn);
                assert!(calls(r).is_empty());
            },
        },
        Case {
            name: "structured output natively: outputConfig.textFormat",
            model: "claude-native",
            edit: |r| r.response_format = json_schema(answer_schema()),
            check: |b, r| {
                let f = &b["outputConfig"]["textFormat"];
                assert_eq!(f["type"], "json_schema");
                let schema: Value =
                    serde_json::from_str(f["structure"]["jsonSchema"]["schema"].as_str().unwrap())
                        .unwrap();
                assert_eq!(schema, answer_schema());
                assert_eq!(f["structure"]["jsonSchema"]["name"], "answer");
                assert_eq!(
                    text_of(r.message.as_ref()),
                    schema_sample(&answer_schema()).to_string()
                );
            },
        },
        Case {
            name: "cache points → cachePoint blocks; system messages appended; thinking history",
            model: "claude",
            edit: |r| {
                r.system_parts = vec![part(Part::Text("rules".into())), part(cache())];
                r.system = "rules".into();
                r.messages = vec![
                    msg(Role::User, vec![Part::Text("17 * 3?".into()), cache()]),
                    msg(
                        Role::Assistant,
                        vec![
                            Part::Thinking(ThinkingPart {
                                text: "17*3".into(),
                                signature: "sig-1".into(),
                                ..Default::default()
                            }),
                            Part::Text("51.".into()),
                        ],
                    ),
                    msg(Role::System, vec![Part::Text("Be brief.".into())]),
                    msg(Role::User, vec![Part::Text("and 17 * 4?".into())]),
                ];
            },
            check: |b, r| {
                assert_eq!(
                    b["system"],
                    json!([{"text": "rules"}, {"cachePoint": {"type": "default"}}, {"text": "Be brief."}])
                );
                assert_eq!(
                    b["messages"][0]["content"][1],
                    json!({"cachePoint": {"type": "default"}})
                );
                assert_eq!(
                    b["messages"][1]["content"][0],
                    json!({"reasoningContent": {"reasoningText": {"text": "17*3", "signature": "sig-1"}}})
                );
                assert_eq!(b["messages"].as_array().unwrap().len(), 3);
                let u = r.usage.unwrap();
                assert!(
                    u.cache_write_input_tokens > 0 && u.input_tokens > u.cache_write_input_tokens,
                    "{u:?}"
                );
            },
        },
        Case {
            name: "passthrough: known Converse fields onto the SDK request",
            model: "claude",
            edit: |r| {
                r.passthrough = Some(Passthrough {
                    api: "converse".into(),
                    fields_json: json!({
                        "requestMetadata": {"team": "a"},
                        "performanceConfig": {"latency": "optimized"},
                        "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "2"},
                        "serviceTier": {"type": "priority"},
                        "promptVariables": {"topic": {"text": "weather"}},
                    })
                    .to_string(),
                })
            },
            check: |b, _| {
                assert_eq!(b["requestMetadata"], json!({"team": "a"}));
                assert_eq!(b["performanceConfig"], json!({"latency": "optimized"}));
                assert_eq!(b["guardrailConfig"]["guardrailIdentifier"], "gr-1");
                assert_eq!(b["serviceTier"], json!({"type": "priority"}));
                assert_eq!(b["promptVariables"], json!({"topic": {"text": "weather"}}));
            },
        },
    ];
    run(&fake, &spoke, &cases).await;
    refused(
        &fake,
        &spoke,
        "claude",
        &[
            (
                "tool choice none with tool blocks in the history",
                |r| {
                    r.tools = vec![tool("a", json!({"type": "object"}))];
                    r.tool_choice = choice(ChoiceMode::None, "");
                    r.messages = vec![
                        msg(Role::User, vec![Part::Text("go".into())]),
                        msg(
                            Role::Assistant,
                            vec![Part::ToolCall(ToolCall {
                                id: "t1".into(),
                                name: "a".into(),
                                arguments_json: "{}".into(),
                            })],
                        ),
                        msg(
                            Role::Tool,
                            vec![Part::ToolResult(switchyard_proto::v1::ToolResult {
                                tool_call_id: "t1".into(),
                                content: "ok".into(),
                                is_error: false,
                            })],
                        ),
                    ];
                },
                "toolChoice none",
                false,
            ),
            (
                "unknown passthrough fields are named",
                |r| {
                    r.passthrough = Some(Passthrough {
                        api: "converse".into(),
                        fields_json: "{\"fancyNewThing\":1}".into(),
                    })
                },
                "fancyNewThing",
                false,
            ),
            (
                "logprobs has no Converse field",
                |r| params(r).logprobs = true,
                "logprobs",
                false,
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_streams_reasoning_and_response_fields() {
    let (_fake, spoke) = serve(UpstreamKind::Bedrock, BEDROCK_MODELS).await;
    let mut client = spoke.grpc().await.unwrap();
    let mut req = request(&["claude"], "prime factors of 91");
    params(&mut req).max_tokens = Some(4000);
    params(&mut req).reasoning = reasoning(ReasoningMode::Enabled, 1024, "");
    req.additional_model_response_field_paths = vec!["/stop_sequence".into()];
    let mut s = client.infer_stream(req).await.unwrap().into_inner();
    let (mut thought, mut signature, mut text, mut end) =
        (String::new(), String::new(), String::new(), None);
    while let Some(ev) = s.next().await {
        match ev.unwrap().event.unwrap() {
            Event::Delta(d) => {
                if let Some(t) = d.thinking {
                    thought.push_str(&t.text);
                    signature.push_str(&t.signature);
                }
                text.push_str(&d.text);
            }
            Event::End(e) => end = Some(e),
            Event::Start(_) => {}
        }
    }
    let want = thinking_text("prime factors of 91");
    assert_eq!(
        (thought.as_str(), signature),
        (want.as_str(), thinking_signature(&want))
    );
    assert!(text.starts_with("Hello from up"), "{text}");
    let end = end.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&end.additional_model_response_fields_json).unwrap(),
        json!({"stop_sequence": null})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_reports_each_models_capabilities_with_provider_defaults() {
    let (_fake, spoke) = serve(UpstreamKind::OpenAi, OPENAI_MODELS).await;
    let d = spoke
        .grpc()
        .await
        .unwrap()
        .describe(switchyard_proto::v1::DescribeRequest {})
        .await
        .unwrap()
        .into_inner();
    let caps = |id: &str| {
        d.models
            .iter()
            .find(|m| m.id == id)
            .and_then(|m| m.capabilities)
            .unwrap()
    };
    let gpt = caps("gpt");
    assert!(gpt.tools && gpt.tool_choice && gpt.reasoning && gpt.top_k && gpt.structured_output);
    assert!(gpt.seed && gpt.penalties && gpt.logprobs && !gpt.prompt_caching);
    assert_eq!(gpt.max_choices, 4);
    let plain = caps("plain");
    assert!(!plain.tools && !plain.tool_choice && !plain.reasoning && !plain.top_k);
    assert_eq!(plain.max_choices, 1);

    let (_fake, spoke) = serve(UpstreamKind::Anthropic, ANTHROPIC_MODELS).await;
    let d = spoke
        .grpc()
        .await
        .unwrap()
        .describe(switchyard_proto::v1::DescribeRequest {})
        .await
        .unwrap()
        .into_inner();
    let c = d.models[0].capabilities.unwrap();
    assert!(c.tool_choice && c.top_k && c.reasoning && c.prompt_caching && c.structured_output);
    assert!(!c.seed && !c.penalties && !c.logprobs);
    assert!(!d.models[2].capabilities.unwrap().prompt_caching);

    let sim = Spoke::start(&spoke_toml(
        "simulated",
        &[("local", "http://unused")],
        "[[models]]\nid = \"sim\"\n",
        "[simulated]\nlatency = \"1ms\"\n",
    ))
    .await
    .unwrap();
    let d = sim
        .grpc()
        .await
        .unwrap()
        .describe(switchyard_proto::v1::DescribeRequest {})
        .await
        .unwrap()
        .into_inner();
    let c = d.models[0].capabilities.unwrap();
    assert!(c.structured_output && c.reasoning && c.logprobs && c.prompt_caching);
    assert!(c.seed && c.penalties && c.top_k && c.tool_choice);
    assert_eq!(c.max_choices, 8);
}

#[tokio::test]
async fn capability_keys_a_provider_cannot_honour_are_config_errors() {
    for (provider, models, needle) in [
        (
            "anthropic",
            "[[models]]\nid = \"c\"\nseed = true\n",
            "models[0].seed",
        ),
        (
            "bedrock",
            "[[models]]\nid = \"c\"\nmax_choices = 2\n",
            "models[0].max_choices",
        ),
        (
            "bedrock",
            "[[models]]\nid = \"m\"\nupstream_id = \"meta.llama3-70b\"\nreasoning = true\n",
            "models[0].reasoning",
        ),
        (
            "openai",
            "[[models]]\nid = \"c\"\nmax_tokens_field = \"tokens\"\n",
            "models[0].max_tokens_field",
        ),
        (
            "anthropic",
            "[[models]]\nid = \"c\"\nmax_tokens_field = \"max_completion_tokens\"\n",
            "models[0].max_tokens_field",
        ),
        (
            "openai",
            "[[models]]\nid = \"c\"\nstructured_output_mode = \"native\"\n",
            "models[0].structured_output_mode",
        ),
    ] {
        let toml = spoke_toml(
            provider,
            &[("us-east-1", "http://127.0.0.1:9/v1")],
            models,
            "",
        );
        let e = switchyard_spoke::config::parse(&toml).unwrap_err();
        assert!(e.to_string().contains(needle), "{provider}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_upstream_plays_along() {
    let sim = Spoke::start(&spoke_toml(
        "simulated",
        &[("local", "http://unused")],
        "[[models]]\nid = \"sim\"\ntools = true\n",
        "[simulated]\nlatency = \"1ms\"\n",
    ))
    .await
    .unwrap();
    let mut client = sim.grpc().await.unwrap();
    let ask = |edit: Edit| {
        let mut req = request(&["sim"], "weather in Lisbon");
        edit(&mut req);
        req
    };

    // n choices.
    let r = client
        .infer(ask(|r| params(r).n = 3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.more_choices.len(), 2);
    assert!(text_of(r.more_choices[1].message.as_ref()).starts_with("[simulated #2] sim"));

    // Thinking with a signature when reasoning is asked for.
    let r = client
        .infer(ask(|r| {
            params(r).reasoning = reasoning(ReasoningMode::Enabled, 2048, "")
        }))
        .await
        .unwrap()
        .into_inner();
    let t = thinking(&r);
    assert!(
        t[0].text.contains("within 2048 tokens") && t[0].signature.starts_with("sim-"),
        "{t:?}"
    );
    assert!(r.usage.unwrap().reasoning_tokens > 0);

    // Structured output: JSON valid for the schema.
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"},
        "temp": {"type": "number", "minimum": -50}, "unit": {"enum": ["C", "F"]},
        "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["city"]});
    let mut req = ask(|_| {});
    req.response_format = json_schema(schema);
    let r = client.infer(req).await.unwrap().into_inner();
    assert_eq!(
        serde_json::from_str::<Value>(&text_of(r.message.as_ref())).unwrap(),
        json!({"city": "…", "temp": 0.0, "unit": "C", "tags": ["…"]})
    );

    // Tool choice: none → text; a named tool → that call with schema-valid arguments.
    let two = |r: &mut InferRequest| {
        r.tools = vec![
            tool(
                "lookup",
                json!({"type": "object", "properties": {"query": {"type": "string"}}}),
            ),
            tool(
                "book",
                json!({"type": "object", "properties": {"nights": {"type": "integer", "minimum": 1}}, "required": ["nights"]}),
            ),
        ];
    };
    let r = client
        .infer(ask(|r| {
            r.tools = vec![tool("lookup", json!({"type": "object"}))];
            r.tool_choice = choice(ChoiceMode::None, "");
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(calls(&r).is_empty() && text_of(r.message.as_ref()).starts_with("[simulated]"));
    let mut req = ask(|_| {});
    two(&mut req);
    req.tool_choice = choice(ChoiceMode::Tool, "book");
    let r = client.infer(req).await.unwrap().into_inner();
    assert_eq!(calls(&r)[0].name, "book");
    assert_eq!(
        serde_json::from_str::<Value>(&calls(&r)[0].arguments_json).unwrap(),
        json!({"nights": 1})
    );
    assert_eq!(stop(&r), StopReason::ToolUse);

    // Streamed: two choices, thinking first.
    let mut req = ask(|r| params(r).n = 2);
    params(&mut req).reasoning = reasoning(ReasoningMode::Adaptive, 0, "");
    let mut s = client.infer_stream(req).await.unwrap().into_inner();
    let mut text = [String::new(), String::new()];
    let mut signed = false;
    let mut more = vec![];
    while let Some(ev) = s.next().await {
        match ev.unwrap().event.unwrap() {
            Event::Delta(d) => {
                text[d.choice as usize].push_str(&d.text);
                signed |= d.thinking.is_some_and(|t| !t.signature.is_empty());
            }
            Event::End(e) => more = e.more_stop_reasons,
            Event::Start(_) => {}
        }
    }
    assert!(
        text[0].starts_with("[simulated] sim") && text[1].starts_with("[simulated #1] sim"),
        "{text:?}"
    );
    assert!(signed);
    assert_eq!(more, vec![StopReason::EndTurn as i32]);
}
