//! Issue 15 (fidelity), the hub's request side: every field of every surface reaches the spoke
//! in the internal model (table-driven: field × surface → the `InferRequest` the in-process
//! spoke received), or is refused with a 400 naming it; capability routing picks a capable
//! candidate and falls back, and answers 400 when no candidate's model can honour the request;
//! fields the hub does not know pass through only to same-API spokes (or are refused when the
//! alias turned passthrough off); ignored fields are named in the audit line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;

/// Every contract-1.3 capability on, up to 4 choices.
fn all_caps() -> pb::Capabilities {
    pb::Capabilities {
        tools: true,
        images: true,
        structured_output: true,
        reasoning: true,
        max_choices: 4,
        logprobs: true,
        prompt_caching: true,
        seed: true,
        penalties: true,
        top_k: true,
        tool_choice: true,
        ..default_caps()
    }
}

fn pool(name: &str, s: &SpokeHandle) -> String {
    format!(
        r#"
[[providers]]
name = "{name}"
spokes = [{{ addr = "{}" }}]
health = {{ interval = "1s", unhealthy_threshold = 1 }}
"#,
        s.addr
    )
}

/// One alias `demo` served by one spoke of `provider` with `caps`.
async fn one(provider: &str, caps: pb::Capabilities) -> (SpokeHandle, HubHandle) {
    let s = start_spoke_as("acct", &["m1"], provider, caps).await;
    let hub = start_hub(&format!(
        "[[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"p1\", model = \"m1\" }}]\n{}",
        pool("p1", &s)
    ))
    .await;
    hub.wait_healthy("p1", 1).await;
    (s, hub)
}

async fn openai(hub: &HubHandle, body: Value) -> (u16, Value) {
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn anthropic(hub: &HubHandle, path: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(hub.url(path))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "mid-conversation-system-2026-04-07")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn converse(hub: &HubHandle, body: Value) -> (u16, Option<String>, Value) {
    let r = client()
        .post(hub.url("/model/demo/converse"))
        .header("x-api-key", KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ty = r
        .headers()
        .get("x-amzn-ErrorType")
        .map(|v| v.to_str().unwrap().to_string());
    (status, ty, r.json().await.unwrap_or(Value::Null))
}

fn merge(base: &Value, extra: &Value) -> Value {
    let mut b = base.clone();
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn text(p: &pb::ContentPart) -> Option<&str> {
    match &p.part {
        Some(pb::content_part::Part::Text(t)) => Some(t),
        _ => None,
    }
}

fn params(r: &pb::InferRequest) -> pb::GenerationParams {
    r.params.clone().unwrap_or_default()
}

fn mode(r: &pb::InferRequest) -> Option<pb::tool_choice::Mode> {
    r.tool_choice
        .as_ref()
        .map(|c| pb::tool_choice::Mode::try_from(c.mode).unwrap())
}

fn reasoning(r: &pb::InferRequest) -> Option<(pb::reasoning::Mode, u32, String)> {
    params(r).reasoning.map(|x| {
        (
            pb::reasoning::Mode::try_from(x.mode).unwrap(),
            x.budget_tokens,
            x.effort,
        )
    })
}

fn format_type(r: &pb::InferRequest) -> Option<pb::response_format::Type> {
    r.response_format
        .as_ref()
        .map(|f| pb::response_format::Type::try_from(f.r#type).unwrap())
}

fn passthrough(r: &pb::InferRequest) -> Option<(String, Value)> {
    r.passthrough
        .as_ref()
        .map(|p| (p.api.clone(), serde_json::from_str(&p.fields_json).unwrap()))
}

fn is_cache_point(p: &pb::ContentPart) -> bool {
    matches!(&p.part, Some(pb::content_part::Part::CachePoint(c)) if c.r#type == "ephemeral")
}

type Check = fn(&pb::InferRequest);

#[tokio::test]
async fn openai_fields_reach_the_spoke() {
    let (s, hub) = one("openai", all_caps()).await;
    let user = json!([{"role": "user", "content": "hi"}]);
    let base = json!({"model": "demo", "messages": user});
    let lookup = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let rows: Vec<(Value, Check)> = vec![
        // The issue's inputs.
        (
            json!({"messages": [{"role": "user", "content": "Sky colour?"}], "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}}}),
            |r| {
                assert_eq!(format_type(r), Some(pb::response_format::Type::JsonSchema));
                let f = r.response_format.clone().unwrap();
                assert_eq!(f.name, "a");
                let schema: Value = serde_json::from_str(&f.schema_json).unwrap();
                assert_eq!(schema["required"], json!(["answer"]));
                assert!(!f.strict);
            },
        ),
        (json!({"tools": lookup, "tool_choice": "none"}), |r| {
            assert_eq!(mode(r), Some(pb::tool_choice::Mode::None));
            assert_eq!(r.tools[0].name, "lookup");
        }),
        (json!({"max_completion_tokens": 64}), |r| {
            assert_eq!(params(r).max_tokens, Some(64))
        }),
        // tool_choice, every form, and parallel_tool_calls.
        (json!({"tools": lookup, "tool_choice": "required"}), |r| {
            assert_eq!(mode(r), Some(pb::tool_choice::Mode::Any))
        }),
        (
            json!({"tools": lookup, "tool_choice": {"type": "function", "function": {"name": "lookup"}}, "parallel_tool_calls": false}),
            |r| {
                assert_eq!(mode(r), Some(pb::tool_choice::Mode::Tool));
                assert_eq!(r.tool_choice.as_ref().unwrap().name, "lookup");
                assert_eq!(r.parallel_tool_calls, Some(false));
            },
        ),
        (
            json!({"tools": lookup, "tool_choice": "auto", "parallel_tool_calls": true}),
            |r| {
                // Both are every upstream's default: nothing to carry, no capability needed.
                assert_eq!(mode(r), None);
                assert_eq!(r.parallel_tool_calls, None);
            },
        ),
        (
            json!({"tools": [
                {"type": "function", "function": {"name": "lookup"}},
                {"type": "function", "function": {"name": "other", "strict": true}}],
                "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "other"}}]}}}),
            |r| {
                assert_eq!(mode(r), Some(pb::tool_choice::Mode::Any));
                assert_eq!(r.tools.len(), 1);
                assert_eq!(r.tools[0].name, "other");
                assert!(r.tools[0].strict);
            },
        ),
        // response_format: json_object, text (the default).
        (json!({"response_format": {"type": "json_object"}}), |r| {
            assert_eq!(format_type(r), Some(pb::response_format::Type::JsonObject))
        }),
        (json!({"response_format": {"type": "text"}}), |r| {
            assert_eq!(format_type(r), None)
        }),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "b", "description": "d", "strict": true, "schema": {"type": "object"}}}}),
            |r| {
                let f = r.response_format.clone().unwrap();
                assert!(f.strict);
                assert_eq!(f.description, "d");
            },
        ),
        // Sampling parameters.
        (json!({"n": 3, "seed": 42}), |r| {
            assert_eq!(params(r).n, 3);
            assert_eq!(params(r).seed, Some(42));
        }),
        (json!({"logprobs": true, "top_logprobs": 5}), |r| {
            assert!(params(r).logprobs);
            assert_eq!(params(r).top_logprobs, Some(5));
        }),
        (
            json!({"presence_penalty": 0.5, "frequency_penalty": -0.5, "logit_bias": {"50256": -100}}),
            |r| {
                let p = params(r);
                assert_eq!(p.presence_penalty, Some(0.5));
                assert_eq!(p.frequency_penalty, Some(-0.5));
                assert_eq!(p.logit_bias.get("50256"), Some(&-100.0));
            },
        ),
        // A penalty of 0 is the default: nothing to carry.
        (json!({"presence_penalty": 0, "n": 1}), |r| {
            assert_eq!(params(r).presence_penalty, None);
            assert!(params(r).n <= 1);
        }),
        (json!({"reasoning_effort": "high"}), |r| {
            assert_eq!(
                reasoning(r),
                Some((pb::reasoning::Mode::Enabled, 0, "high".into()))
            )
        }),
        (json!({"reasoning_effort": "none"}), |r| {
            assert_eq!(
                reasoning(r),
                Some((pb::reasoning::Mode::Disabled, 0, "none".into()))
            )
        }),
        (json!({"stop": ["a", "b"], "max_tokens": 9}), |r| {
            assert_eq!(params(r).stop, vec!["a".to_string(), "b".to_string()]);
            assert_eq!(params(r).max_tokens, Some(9));
        }),
        // Leading system/developer messages are the system prompt; later ones stay in place.
        (
            json!({"messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "developer", "content": "now in French"},
                {"role": "user", "content": "again"}]}),
            |r| {
                assert_eq!(r.system, "be brief");
                assert_eq!(r.messages.len(), 3);
                assert_eq!(r.messages[1].role, pb::Role::System as i32);
                assert_eq!(text(&r.messages[1].content[0]), Some("now in French"));
            },
        ),
        // Unknown fields pass through (to this OpenAI-compatible spoke); ignorable ones do not.
        (
            json!({"verbosity": "low", "user": "u-1", "metadata": {"k": "v"}, "store": false}),
            |r| {
                assert_eq!(
                    passthrough(r),
                    Some(("openai".into(), json!({"verbosity": "low"})))
                )
            },
        ),
        (json!({"user": "u-1", "service_tier": "auto"}), |r| {
            assert_eq!(passthrough(r), None)
        }),
    ];
    for (extra, check) in rows {
        for stream in [false, true] {
            let body = merge(&merge(&base, &extra), &json!({"stream": stream}));
            let (status, v) = openai(&hub, body.clone()).await;
            assert_eq!(status, 200, "{body} → {v}");
            check(&s.fake.last().unwrap());
        }
    }
}

#[tokio::test]
async fn openai_refusals_name_the_param() {
    let (s, hub) = one("openai", all_caps()).await;
    let user = json!([{"role": "user", "content": "hi"}]);
    let lookup = json!([{"type": "function", "function": {"name": "lookup"}}]);
    let rows = [
        (json!({"n": 0}), "n"),
        // More than max_choices (default 8), more than OpenAI's 20 top logprobs, 300 biases.
        (json!({"n": 9}), "n"),
        (json!({"n": 4294967295u64}), "n"),
        (
            json!({"logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (json!({"top_logprobs": 2}), "top_logprobs"),
        (
            json!({"logit_bias": (0..301).map(|i| (i.to_string(), json!(1))).collect::<serde_json::Map<_, _>>()}),
            "logit_bias",
        ),
        (json!({"logit_bias": {"abc": 1}}), "logit_bias"),
        (json!({"logit_bias": {"1": 101}}), "logit_bias"),
        (json!({"presence_penalty": 3}), "presence_penalty"),
        (json!({"reasoning_effort": "extreme"}), "reasoning_effort"),
        (
            json!({"response_format": {"type": "xml"}}),
            "response_format",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "big", "schema": {"description": "x".repeat(70_000)}}}}),
            "response_format",
        ),
        (json!({"tool_choice": "required"}), "tool_choice"),
        (
            json!({"tools": lookup, "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "tool_choice",
        ),
        (
            json!({"tools": lookup, "tool_choice": "sometimes"}),
            "tool_choice",
        ),
    ];
    for (extra, param) in rows {
        let body = merge(&json!({"model": "demo", "messages": user}), &extra);
        let (status, v) = openai(&hub, body.clone()).await;
        assert_eq!(status, 400, "{body} → {v}");
        assert_eq!(v["error"]["param"], param, "{body} → {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    assert_eq!(s.fake.calls(), 0, "no refused request reaches a spoke");
}

#[tokio::test]
async fn anthropic_fields_reach_the_spoke() {
    let (s, hub) = one("anthropic", all_caps()).await;
    let base =
        json!({"model": "demo", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]});
    let tools = json!([
        {"name": "final_result", "input_schema": {"type": "object"}},
        {"name": "lookup", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}, "strict": true}
    ]);
    let rows: Vec<(Value, Check)> = vec![
        // The issue's inputs.
        (json!({"thinking": {"type": "adaptive"}}), |r| {
            assert_eq!(
                reasoning(r),
                Some((pb::reasoning::Mode::Adaptive, 0, String::new()))
            )
        }),
        (json!({"thinking": {"type": "disabled"}}), |r| {
            assert_eq!(
                reasoning(r),
                Some((pb::reasoning::Mode::Disabled, 0, String::new()))
            )
        }),
        (
            json!({"tools": tools, "tool_choice": {"type": "any"}}),
            |r| {
                assert_eq!(mode(r), Some(pb::tool_choice::Mode::Any));
                assert!(r.tools[1].strict);
                assert_eq!(
                    r.tools[1].cache_point.as_ref().map(|c| c.r#type.as_str()),
                    Some("ephemeral")
                );
                assert_eq!(r.tools[0].cache_point, None);
            },
        ),
        (
            json!({"tools": tools, "tool_choice": {"type": "tool", "name": "final_result", "disable_parallel_tool_use": true}}),
            |r| {
                assert_eq!(mode(r), Some(pb::tool_choice::Mode::Tool));
                assert_eq!(r.tool_choice.as_ref().unwrap().name, "final_result");
                assert_eq!(r.parallel_tool_calls, Some(false));
            },
        ),
        (
            json!({"tools": tools, "tool_choice": {"type": "none"}}),
            |r| assert_eq!(mode(r), Some(pb::tool_choice::Mode::None)),
        ),
        (
            json!({"system": [{"type": "text", "text": "a long instruction", "cache_control": {"type": "ephemeral", "ttl": "1h"}}, {"type": "text", "text": " and more"}]}),
            |r| {
                assert_eq!(r.system, "a long instruction and more");
                assert_eq!(r.system_parts.len(), 3);
                assert_eq!(text(&r.system_parts[0]), Some("a long instruction"));
                assert!(
                    matches!(&r.system_parts[1].part, Some(pb::content_part::Part::CachePoint(c)) if c.ttl == "1h")
                );
                assert_eq!(text(&r.system_parts[2]), Some(" and more"));
            },
        ),
        (json!({"system": "plain"}), |r| {
            assert_eq!(r.system, "plain");
            assert!(r.system_parts.is_empty());
        }),
        (
            json!({"messages": [
                {"role": "user", "content": "What is 17 * 3?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "17 * 3 = 51", "signature": "sig-abc"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "51."}]},
                {"role": "user", "content": [{"type": "text", "text": "And times 2?", "cache_control": {"type": "ephemeral"}}]}]}),
            |r| {
                let a = &r.messages[1].content;
                assert!(
                    matches!(&a[0].part, Some(pb::content_part::Part::Thinking(t)) if t.text == "17 * 3 = 51" && t.signature == "sig-abc" && !t.redacted)
                );
                assert!(
                    matches!(&a[1].part, Some(pb::content_part::Part::Thinking(t)) if t.redacted && t.data == "opaque")
                );
                assert_eq!(text(&a[2]), Some("51."));
                let u = &r.messages[2].content;
                assert_eq!(text(&u[0]), Some("And times 2?"));
                assert!(is_cache_point(&u[1]));
            },
        ),
        // Automatic caching: a breakpoint after the last block.
        (json!({"cache_control": {"type": "ephemeral"}}), |r| {
            assert!(is_cache_point(r.messages[0].content.last().unwrap()))
        }),
        (json!({"top_k": 5, "stop_sequences": ["END"]}), |r| {
            assert_eq!(params(r).top_k, Some(5));
            assert_eq!(params(r).stop, vec!["END".to_string()]);
        }),
        (
            json!({"thinking": {"type": "enabled", "budget_tokens": 2048}, "output_config": {"effort": "low"}}),
            |r| {
                assert_eq!(
                    reasoning(r),
                    Some((pb::reasoning::Mode::Enabled, 2048, "low".into()))
                )
            },
        ),
        (
            json!({"output_format": {"type": "json_schema", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}),
            |r| {
                assert_eq!(format_type(r), Some(pb::response_format::Type::JsonSchema));
                assert!(
                    r.response_format
                        .as_ref()
                        .unwrap()
                        .schema_json
                        .contains("\"a\"")
                );
            },
        ),
        (
            json!({"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}),
            |r| assert_eq!(format_type(r), Some(pb::response_format::Type::JsonSchema)),
        ),
        (
            json!({"metadata": {"user_id": "u-1"}, "service_tier": "auto", "context_management": {"edits": []}}),
            |r| {
                assert_eq!(
                    passthrough(r),
                    Some((
                        "anthropic".into(),
                        json!({"context_management": {"edits": []}})
                    ))
                )
            },
        ),
    ];
    for (extra, check) in rows {
        for stream in [false, true] {
            let body = merge(&merge(&base, &extra), &json!({"stream": stream}));
            let (status, v) = anthropic(&hub, "/v1/messages", body.clone()).await;
            assert_eq!(status, 200, "{body} → {v}");
            check(&s.fake.last().unwrap());
        }
    }
    // The issue's mid-conversation system message, with the beta header and `?beta=true`.
    let (status, v) = anthropic(
        &hub,
        "/v1/messages?beta=true",
        json!({"model": "demo", "max_tokens": 64, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "Be brief."}]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let r = s.fake.last().unwrap();
    assert_eq!(r.messages[1].role, pb::Role::System as i32);
    assert_eq!(text(&r.messages[1].content[0]), Some("Be brief."));
    // Refusals in Anthropic's shape; the message starts with the field.
    for (body, field) in [
        (json!({"thinking": {"type": "sometimes"}}), "thinking.type"),
        (
            json!({"thinking": {"type": "enabled", "budget_tokens": 2048, "display": "omitted"}}),
            "thinking.display",
        ),
        (
            json!({"tool_choice": {"type": "tool", "name": "nope"}, "tools": tools}),
            "tool_choice.name",
        ),
        (
            json!({"output_config": {"task_budget": {"total": 1}}}),
            "output_config.task_budget",
        ),
        (
            json!({"output_config": {"effort": "huge"}}),
            "output_config.effort",
        ),
    ] {
        let (status, v) = anthropic(&hub, "/v1/messages", merge(&base, &body)).await;
        assert_eq!(status, 400, "{body} → {v}");
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with(field), "{field}: {msg}");
    }
}

#[tokio::test]
async fn converse_fields_reach_the_spoke() {
    let (s, hub) = one("bedrock", all_caps()).await;
    let base = json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]});
    let tools = json!({"tools": [
        {"toolSpec": {"name": "final_result", "inputSchema": {"json": {"type": "object"}}}},
        {"cachePoint": {"type": "default"}}]});
    let rows: Vec<(Value, Check)> = vec![
        (
            json!({"toolConfig": merge(&tools, &json!({"toolChoice": {"any": {}}}))}),
            |r| {
                assert_eq!(mode(r), Some(pb::tool_choice::Mode::Any));
                assert!(r.tools[0].cache_point.is_some());
            },
        ),
        (
            json!({"toolConfig": merge(&tools, &json!({"toolChoice": {"tool": {"name": "final_result"}}}))}),
            |r| {
                assert_eq!(mode(r), Some(pb::tool_choice::Mode::Tool));
                assert_eq!(r.tool_choice.as_ref().unwrap().name, "final_result");
            },
        ),
        (
            json!({"toolConfig": merge(&tools, &json!({"toolChoice": {"auto": {}}}))}),
            |r| assert_eq!(mode(r), None),
        ),
        (
            json!({"additionalModelRequestFields": {"top_k": 40, "thinking": {"type": "enabled", "budget_tokens": 1024}, "anthropic_beta": ["x"]},
                   "additionalModelResponseFieldPaths": ["/stop_sequence"]}),
            |r| {
                assert_eq!(params(r).top_k, Some(40));
                assert_eq!(
                    reasoning(r),
                    Some((pb::reasoning::Mode::Enabled, 1024, String::new()))
                );
                let rest: Value =
                    serde_json::from_str(&r.additional_model_request_fields_json).unwrap();
                assert_eq!(rest, json!({"anthropic_beta": ["x"]}));
                assert_eq!(
                    r.additional_model_response_field_paths,
                    vec!["/stop_sequence"]
                );
            },
        ),
        (
            json!({"additionalModelRequestFields": {"reasoning_config": {"type": "enabled", "budget_tokens": 2000}}}),
            |r| {
                assert_eq!(
                    reasoning(r),
                    Some((pb::reasoning::Mode::Enabled, 2000, String::new()))
                );
                assert!(r.additional_model_request_fields_json.is_empty());
            },
        ),
        (
            json!({"system": [{"text": "long"}, {"cachePoint": {"type": "default"}}],
                   "messages": [
                       {"role": "user", "content": [{"text": "What is 17 * 3?"}, {"cachePoint": {"type": "default"}}]},
                       {"role": "assistant", "content": [
                           {"reasoningContent": {"reasoningText": {"text": "17 * 3 = 51", "signature": "sig"}}},
                           {"reasoningContent": {"redactedContent": "b3BhcXVl"}},
                           {"text": "51."}]},
                       {"role": "user", "content": [{"text": "ok"}]}]}),
            |r| {
                assert_eq!(r.system, "long");
                assert!(is_cache_point(&r.system_parts[1]));
                assert!(is_cache_point(&r.messages[0].content[1]));
                let a = &r.messages[1].content;
                assert!(
                    matches!(&a[0].part, Some(pb::content_part::Part::Thinking(t)) if t.signature == "sig" && t.text == "17 * 3 = 51")
                );
                assert!(
                    matches!(&a[1].part, Some(pb::content_part::Part::Thinking(t)) if t.redacted && t.data == "b3BhcXVl")
                );
            },
        ),
        (
            json!({"outputConfig": {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"name": "a", "schema": "{\"type\":\"object\"}"}}}}}),
            |r| {
                assert_eq!(format_type(r), Some(pb::response_format::Type::JsonSchema));
                assert_eq!(
                    r.response_format.as_ref().unwrap().schema_json,
                    "{\"type\":\"object\"}"
                );
            },
        ),
        (
            json!({"guardrailConfig": {"guardrailIdentifier": "g", "guardrailVersion": "1"}, "requestMetadata": {"team": "a"}, "serviceTier": {"type": "priority"}}),
            |r| {
                let (api, fields) = passthrough(r).unwrap();
                assert_eq!(api, "converse");
                assert_eq!(fields["guardrailConfig"]["guardrailIdentifier"], "g");
                assert_eq!(fields["requestMetadata"]["team"], "a");
                assert!(fields.get("serviceTier").is_none());
            },
        ),
    ];
    for (extra, check) in rows {
        let body = merge(&base, &extra);
        let (status, _, v) = converse(&hub, body.clone()).await;
        assert_eq!(status, 200, "{body} → {v}");
        check(&s.fake.last().unwrap());
    }
}

#[tokio::test]
async fn routes_by_capability_with_fallback_and_refuses_what_no_model_can_do() {
    // p1/m1: no contract-1.3 capability; p2/m2: structured output, reasoning, tool choice.
    let plain = start_spoke_as("plain", &["m1"], "openai", default_caps()).await;
    let capable = start_spoke_as(
        "capable",
        &["m2"],
        "openai",
        pb::Capabilities {
            tools: true,
            structured_output: true,
            reasoning: true,
            tool_choice: true,
            max_choices: 2,
            ..default_caps()
        },
    )
    .await;
    let hub = start_hub(&format!(
        "[[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"p1\", model = \"m1\" }}, {{ provider = \"p2\", model = \"m2\" }}]\n{}{}",
        pool("p1", &plain),
        pool("p2", &capable)
    ))
    .await;
    hub.wait_healthy("p1", 1).await;
    hub.wait_healthy("p2", 1).await;
    let user = json!([{"role": "user", "content": "hi"}]);
    let served_by =
        |h: &reqwest::header::HeaderMap| h["x-switchyard-model"].to_str().unwrap().to_string();
    let send = |body: Value| {
        client()
            .post(hub.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
    };
    // A plain request goes to the first candidate.
    let r = send(json!({"model": "demo", "messages": user}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(served_by(r.headers()), "m1");
    // Each capability skips the first candidate for the capable one.
    for extra in [
        json!({"response_format": {"type": "json_object"}}),
        json!({"reasoning_effort": "low"}),
        json!({"n": 2}),
        json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"}),
    ] {
        let before = plain.fake.calls();
        let r = send(merge(&json!({"model": "demo", "messages": user}), &extra))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{extra}");
        assert_eq!(served_by(r.headers()), "m2", "{extra}");
        assert_eq!(
            plain.fake.calls(),
            before,
            "{extra}: the incapable model is not called"
        );
    }
    // Disabled reasoning needs nothing.
    let r = send(json!({"model": "demo", "messages": user, "reasoning_effort": "none"}))
        .await
        .unwrap();
    assert_eq!(served_by(r.headers()), "m1");
    // What no candidate's model can do: 400 naming the field, nothing called.
    let calls = plain.fake.calls() + capable.fake.calls();
    for (extra, param) in [
        (json!({"seed": 7}), "seed"),
        (json!({"logprobs": true}), "logprobs"),
        (json!({"n": 3}), "n"),
        (json!({"frequency_penalty": 1}), "frequency_penalty"),
        (json!({"logit_bias": {"1": 1}}), "logit_bias"),
    ] {
        let (status, v) = openai(
            &hub,
            merge(&json!({"model": "demo", "messages": user}), &extra),
        )
        .await;
        assert_eq!(status, 400, "{extra} → {v}");
        assert_eq!(v["error"]["param"], param, "{v}");
        assert_eq!(v["error"]["code"], "unsupported_parameter", "{v}");
    }
    let (status, v) = anthropic(
        &hub,
        "/v1/messages",
        json!({"model": "demo", "max_tokens": 8, "top_k": 3, "messages": user}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().starts_with("top_k"),
        "{v}"
    );
    let (status, ty, v) = converse(
        &hub,
        json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
               "additionalModelRequestFields": {"top_k": 3}}),
    )
    .await;
    assert_eq!(
        (status, ty.as_deref()),
        (400, Some("ValidationException")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("additionalModelRequestFields.top_k"),
        "{v}"
    );
    assert_eq!(plain.fake.calls() + capable.fake.calls(), calls);
    // The capable model's spoke down: routing's 503, as for any unhealthy pool.
    capable.set_serving(false).await;
    hub.wait_healthy("p2", 0).await;
    let (status, v) = openai(
        &hub,
        json!({"model": "demo", "messages": user, "response_format": {"type": "json_object"}}),
    )
    .await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "no_route_available");
}

#[tokio::test]
async fn passthrough_reaches_only_same_api_spokes_and_can_be_turned_off() {
    let bedrock = start_spoke_as("b", &["m1"], "bedrock", all_caps()).await;
    let openai_spoke = start_spoke_as("o", &["m2"], "openai", all_caps()).await;
    let sim = start_spoke_as("s", &["m3"], "simulated", default_caps()).await;
    let hub = start_hub(&format!(
        r#"
[[aliases]]
name = "demo"
candidates = [{{ provider = "p1", model = "m1" }}, {{ provider = "p2", model = "m2" }}]

[[aliases]]
name = "strict"
passthrough = false
candidates = [{{ provider = "p2", model = "m2" }}]

[[aliases]]
name = "sim"
candidates = [{{ provider = "p3", model = "m3" }}]
{}{}{}"#,
        pool("p1", &bedrock),
        pool("p2", &openai_spoke),
        pool("p3", &sim)
    ))
    .await;
    for p in ["p1", "p2", "p3"] {
        hub.wait_healthy(p, 1).await;
    }
    let user = json!([{"role": "user", "content": "hi"}]);
    // Without unknown fields, the first candidate (Bedrock) serves an OpenAI request.
    let (status, _) = openai(
        &hub,
        json!({"model": "demo", "messages": user, "user": "u"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(bedrock.fake.calls(), 1);
    // An OpenAI field the hub does not know: only the OpenAI-compatible spoke gets it.
    let (status, v) = openai(
        &hub,
        json!({"model": "demo", "messages": user, "verbosity": "low"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(bedrock.fake.calls(), 1);
    assert_eq!(
        passthrough(&openai_spoke.fake.last().unwrap()),
        Some(("openai".into(), json!({"verbosity": "low"})))
    );
    // A Converse field for Bedrock: the Bedrock spoke.
    let (status, _, v) = converse(
        &hub,
        json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
               "guardrailConfig": {"guardrailIdentifier": "g", "guardrailVersion": "1"}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(bedrock.fake.calls(), 2);
    assert_eq!(
        passthrough(&bedrock.fake.last().unwrap()).unwrap().0,
        "converse"
    );
    // Converse additional fields the hub does not translate: Bedrock only, too.
    let o = openai_spoke.fake.calls();
    let (status, _, _) = converse(
        &hub,
        json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
               "additionalModelRequestFields": {"anthropic_beta": ["b"]}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!((bedrock.fake.calls(), openai_spoke.fake.calls()), (3, o));
    // An Anthropic field: no candidate speaks Anthropic → 400 naming it.
    let (status, v) = anthropic(
        &hub,
        "/v1/messages",
        json!({"model": "demo", "max_tokens": 8, "messages": user, "mcp_servers": []}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("mcp_servers:"),
        "{v}"
    );
    // The simulated upstream takes any API's fields (and ignores them).
    let (status, v) = anthropic(
        &hub,
        "/v1/messages",
        json!({"model": "sim", "max_tokens": 8, "messages": user, "mcp_servers": []}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        passthrough(&sim.fake.last().unwrap()).unwrap().0,
        "anthropic"
    );
    // Passthrough off: unknown fields refused by name, ignorable ones still accepted.
    let (status, v) = openai(
        &hub,
        json!({"model": "strict", "messages": user, "verbosity": "low"}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "verbosity");
    assert_eq!(v["error"]["code"], "unknown_parameter");
    let (status, v) = openai(
        &hub,
        json!({"model": "strict", "messages": user, "user": "u", "metadata": {"a": "b"}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(passthrough(&openai_spoke.fake.last().unwrap()), None);
}

#[tokio::test]
async fn ignored_and_passed_through_fields_are_in_the_audit_line() {
    let s = start_spoke_as("acct", &["m1"], "openai", all_caps()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let hub = start_hub(&format!(
        "[audit]\npath = \"{}\"\n[[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"p1\", model = \"m1\" }}]\n{}",
        path.display(),
        pool("p1", &s)
    ))
    .await;
    hub.wait_healthy("p1", 1).await;
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "audit-ignored-1")
        .json(
            &json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}],
                      "user": "u-1", "metadata": {"k": "v"}, "verbosity": "low"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(hub.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("x-request-id", "audit-ignored-2")
        .json(&json!({"model": "demo", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}],
                      "metadata": {"user_id": "u-1"}, "service_tier": "auto"}))
        .send()
        .await
        .unwrap();
    // Anthropic metadata is ignored; the spoke is OpenAI-compatible, so nothing else is needed.
    assert_eq!(r.status(), 200);
    let line = |id: &str| -> Option<Value> {
        std::fs::read_to_string(&path)
            .ok()?
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["request_id"] == id)
    };
    eventually(std::time::Duration::from_secs(5), || {
        line("audit-ignored-1").is_some() && line("audit-ignored-2").is_some()
    })
    .await;
    let a = line("audit-ignored-1").unwrap();
    assert_eq!(a["ignored"], json!(["metadata", "user"]), "{a}");
    assert_eq!(a["passthrough"], json!(["verbosity"]), "{a}");
    let b = line("audit-ignored-2").unwrap();
    assert_eq!(b["ignored"], json!(["metadata", "service_tier"]), "{b}");
    assert_eq!(b["passthrough"], json!([]), "{b}");
}

#[tokio::test]
async fn a_candidate_not_described_yet_leaves_the_request_to_routing() {
    // p0's spoke never answers (nothing listens there): what m0 can do is unknown, so a request
    // for a capability p1's model lacks is not refused as unsupported; routing answers 503.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let s = start_spoke_as("acct", &["m1"], "openai", default_caps()).await;
    let hub = start_hub(&format!(
        r#"
[[aliases]]
name = "demo"
candidates = [{{ provider = "p0", model = "m0" }}, {{ provider = "p1", model = "m1" }}]

[[providers]]
name = "p0"
spokes = [{{ addr = "{dead_addr}" }}]
{}"#,
        pool("p1", &s)
    ))
    .await;
    hub.wait_healthy("p1", 1).await;
    let user = json!([{"role": "user", "content": "hi"}]);
    let (status, v) = openai(&hub, json!({"model": "demo", "messages": user, "seed": 1})).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "no_route_available");
    let (status, _) = openai(&hub, json!({"model": "demo", "messages": user})).await;
    assert_eq!(status, 200);
    assert_eq!(s.fake.calls(), 1);
}
