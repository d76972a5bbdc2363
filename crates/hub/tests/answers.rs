//! The answer side of every surface (issue 15), against the in-process fake spoke scripted to
//! answer with reasoning (signed and redacted thinking), several choices, logprobs, tool calls,
//! usage details and Bedrock additional response fields: the exact JSON, SSE events and
//! event-stream frames each API's clients read; the stop reason derived from the content; the
//! response cache replaying the whole answer; the audit line's usage details. The official SDKs
//! parse the same answers (`tests/python/sdk_answers.py`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;

fn config(alias_extra: &str, extra: &str, s: &SpokeHandle) -> String {
    format!(
        r#"
{extra}
[[aliases]]
name = "demo"
candidates = [{{ provider = "p1", model = "m1" }}]
{alias_extra}

[[providers]]
name = "p1"
spokes = [{{ addr = "{}" }}]
health = {{ interval = "1s", unhealthy_threshold = 1 }}
"#,
        s.addr
    )
}

async fn stack(alias_extra: &str, extra: &str) -> (SpokeHandle, HubHandle) {
    let s = start_spoke("acct-a", &["m1"]).await;
    let hub = start_hub(&config(alias_extra, extra, &s)).await;
    hub.wait_healthy("p1", 1).await;
    (s, hub)
}

fn part(p: pb::content_part::Part) -> pb::ContentPart {
    pb::ContentPart { part: Some(p) }
}

fn text(t: &str) -> pb::ContentPart {
    part(pb::content_part::Part::Text(t.into()))
}

fn thinking(t: &str, signature: &str) -> pb::ContentPart {
    part(pb::content_part::Part::Thinking(pb::ThinkingPart {
        text: t.into(),
        signature: signature.into(),
        ..Default::default()
    }))
}

fn redacted(data: &str) -> pb::ContentPart {
    part(pb::content_part::Part::Thinking(pb::ThinkingPart {
        redacted: true,
        data: data.into(),
        ..Default::default()
    }))
}

fn call(id: &str, name: &str, args: &str) -> pb::ContentPart {
    part(pb::content_part::Part::ToolCall(pb::ToolCall {
        id: id.into(),
        name: name.into(),
        arguments_json: args.into(),
    }))
}

fn assistant(content: Vec<pb::ContentPart>) -> Option<pb::Message> {
    Some(pb::Message {
        role: pb::Role::Assistant as i32,
        content,
    })
}

/// 100 input tokens of which 80 read from the prompt cache and 5 written to it; 20 output
/// tokens of which 7 reasoning.
fn usage() -> pb::Usage {
    pb::Usage {
        input_tokens: 100,
        output_tokens: 20,
        cache_read_input_tokens: 80,
        cache_write_input_tokens: 5,
        reasoning_tokens: 7,
    }
}

const LOGPROBS: &str = r#"{"content":[{"token":"Paris","logprob":-0.25,"bytes":[80,97,114,105,115],"top_logprobs":[{"token":"Paris","logprob":-0.25,"bytes":[80,97,114,105,115]},{"token":"Lyon","logprob":-3.5,"bytes":[76,121,111,110]}]},{"token":".","logprob":-0.01,"bytes":[46],"top_logprobs":[]}]}"#;

const END: i32 = pb::StopReason::EndTurn as i32;
const MAX: i32 = pb::StopReason::MaxTokens as i32;
const TOOL: i32 = pb::StopReason::ToolUse as i32;

/// Three choices: reasoning (signed and redacted) + text with logprobs; text cut at max tokens;
/// text + a tool call reported as END_TURN (the upstream said "stop" next to a call).
fn openai_answer() -> pb::InferResponse {
    pb::InferResponse {
        message: assistant(vec![
            thinking("The capital of France.", "sig-1"),
            redacted("b3BhcXVl"),
            text("Paris."),
        ]),
        stop_reason: END,
        logprobs_json: LOGPROBS.into(),
        more_choices: vec![
            pb::Choice {
                message: assistant(vec![text("It is Paris")]),
                stop_reason: MAX,
                logprobs_json: String::new(),
            },
            pb::Choice {
                message: assistant(vec![
                    text("Let me look."),
                    call("call_1", "lookup", r#"{"q":"France"}"#),
                ]),
                stop_reason: END,
                logprobs_json: String::new(),
            },
        ],
        usage: Some(usage()),
        ..Default::default()
    }
}

/// One choice: signed and redacted reasoning, text, a tool call, reported as END_TURN.
fn reasoning_answer() -> pb::InferResponse {
    pb::InferResponse {
        message: assistant(vec![
            thinking("The capital of France.", "sig-1"),
            redacted("b3BhcXVl"),
            text("Paris."),
            call("toolu_1", "lookup", r#"{"q":"France"}"#),
        ]),
        stop_reason: END,
        usage: Some(usage()),
        additional_model_response_fields_json: r#"{"trace":{"id":"t-1"}}"#.into(),
        ..Default::default()
    }
}

fn d(f: impl FnOnce(&mut pb::StreamDelta)) -> pb::InferEvent {
    let mut delta = pb::StreamDelta::default();
    f(&mut delta);
    delta_event(delta)
}

fn thinking_delta(t: &str, signature: &str) -> pb::InferEvent {
    d(|d| {
        d.thinking = Some(pb::ThinkingPart {
            text: t.into(),
            signature: signature.into(),
            ..Default::default()
        })
    })
}

fn call_delta(choice: u32, id: &str, name: &str, args: &str) -> pb::InferEvent {
    d(|d| {
        d.choice = choice;
        d.tool_call = Some(pb::ToolCallDelta {
            index: 0,
            id: id.into(),
            name: name.into(),
            arguments_json: args.into(),
        })
    })
}

/// The streamed form of [`openai_answer`], choices interleaved.
fn openai_stream() -> Vec<pb::InferEvent> {
    vec![
        thinking_delta("The capital", ""),
        thinking_delta(" of France.", ""),
        thinking_delta("", "sig-1"),
        d(|d| {
            d.thinking = Some(pb::ThinkingPart {
                redacted: true,
                data: "b3BhcXVl".into(),
                ..Default::default()
            })
        }),
        d(|d| {
            d.text = "Paris.".into();
            d.logprobs_json = LOGPROBS.into();
        }),
        d(|d| {
            d.choice = 1;
            d.text = "It is".into();
        }),
        d(|d| {
            d.choice = 2;
            d.text = "Let me look.".into();
        }),
        call_delta(2, "call_1", "lookup", r#"{"q":"#),
        d(|d| {
            d.choice = 1;
            d.text = " Paris".into();
        }),
        call_delta(2, "", "", r#""France"}"#),
        end_event(pb::StreamEnd {
            stop_reason: END,
            usage: Some(usage()),
            more_stop_reasons: vec![MAX, END],
            ..Default::default()
        }),
    ]
}

/// The streamed form of [`reasoning_answer`].
fn reasoning_stream() -> Vec<pb::InferEvent> {
    vec![
        thinking_delta("The capital", ""),
        thinking_delta(" of France.", ""),
        thinking_delta("", "sig-1"),
        d(|d| {
            d.thinking = Some(pb::ThinkingPart {
                redacted: true,
                data: "b3BhcXVl".into(),
                ..Default::default()
            })
        }),
        d(|d| d.text = "Paris.".into()),
        call_delta(0, "toolu_1", "lookup", r#"{"q":"#),
        call_delta(0, "", "", r#""France"}"#),
        end_event(pb::StreamEnd {
            stop_reason: END,
            usage: Some(usage()),
            additional_model_response_fields_json: r#"{"trace":{"id":"t-1"}}"#.into(),
            ..Default::default()
        }),
    ]
}

fn chat(stream: bool) -> Value {
    json!({
        "model": "demo",
        "messages": [{"role": "user", "content": "Capital of France?"}],
        "stream": stream,
        "stream_options": {"include_usage": true},
        "temperature": 0,
    })
}

async fn post(hub: &HubHandle, path: &str, body: &Value) -> reqwest::Response {
    let rb = client().post(hub.url(path));
    // The OpenAI SDK's header, and the Anthropic SDK's (which the Converse surface takes too).
    let rb = if path.starts_with("/v1/chat") {
        rb.bearer_auth(KEY)
    } else {
        rb.header("x-api-key", KEY)
    };
    let r = rb
        .header("x-request-id", "req-1")
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r
}

const OPENAI_USAGE: &str = r#"{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120,
    "prompt_tokens_details":{"cached_tokens":80},"completion_tokens_details":{"reasoning_tokens":7}}"#;

fn openai_completion(created: &Value) -> Value {
    json!({
        "id": "chatcmpl-req-1",
        "object": "chat.completion",
        "created": created,
        "model": "m1",
        "choices": [
            {"index": 0, "finish_reason": "stop",
             "message": {"role": "assistant", "content": "Paris.", "refusal": null,
                         "reasoning_content": "The capital of France."},
             "logprobs": serde_json::from_str::<Value>(LOGPROBS).unwrap()},
            {"index": 1, "finish_reason": "length",
             "message": {"role": "assistant", "content": "It is Paris", "refusal": null},
             "logprobs": null},
            {"index": 2, "finish_reason": "tool_calls",
             "message": {"role": "assistant", "content": "Let me look.", "refusal": null,
                         "tool_calls": [{"id": "call_1", "type": "function",
                                         "function": {"name": "lookup", "arguments": "{\"q\":\"France\"}"}}]},
             "logprobs": null},
        ],
        "usage": serde_json::from_str::<Value>(OPENAI_USAGE).unwrap(),
    })
}

#[tokio::test]
async fn openai_json_renders_every_choice_reasoning_logprobs_and_usage_details() {
    let (s, hub) = stack("", "").await;
    s.fake.answer_with(openai_answer());
    let body: Value = post(&hub, "/v1/chat/completions", &chat(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body, openai_completion(&body["created"]));
}

/// The chunks of an OpenAI stream with `id`/`created` checked and then left out.
fn openai_chunks(body: &str) -> Vec<Value> {
    let data = sse_data(body);
    assert_eq!(data.last().unwrap(), "[DONE]", "{body}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let created = chunks[0]["created"].clone();
    chunks
        .into_iter()
        .map(|mut c| {
            assert_eq!(c["id"], "chatcmpl-req-1");
            assert_eq!(c["created"], created);
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["model"], "m1");
            let o = c.as_object_mut().unwrap();
            for k in ["id", "created", "object", "model"] {
                o.remove(k);
            }
            c
        })
        .collect()
}

/// What [`openai_stream`] (or the replay of a stored [`openai_answer`]) renders as: one chunk
/// per delta with its choice's index (each choice's first chunk with the role), nothing for a
/// signature or a redacted block, a finish chunk per choice (derived from its content), the usage
/// chunk.
fn c(index: u32, delta: Value, finish: Value, logprobs: Value) -> Value {
    json!({"choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}], "usage": null})
}

#[tokio::test]
async fn openai_stream_carries_each_choice_reasoning_logprobs_and_final_usage() {
    let (s, hub) = stack("", "").await;
    s.fake.stream_with(openai_stream());
    let r = post(&hub, "/v1/chat/completions", &chat(true)).await;
    let chunks = openai_chunks(&r.text().await.unwrap());
    let lp: Value = serde_json::from_str(LOGPROBS).unwrap();
    let n = Value::Null;
    let expected = vec![
        c(
            0,
            json!({"role": "assistant", "content": ""}),
            n.clone(),
            n.clone(),
        ),
        c(
            0,
            json!({"reasoning_content": "The capital"}),
            n.clone(),
            n.clone(),
        ),
        c(
            0,
            json!({"reasoning_content": " of France."}),
            n.clone(),
            n.clone(),
        ),
        c(0, json!({"content": "Paris."}), n.clone(), lp),
        c(
            1,
            json!({"role": "assistant", "content": "It is"}),
            n.clone(),
            n.clone(),
        ),
        c(
            2,
            json!({"role": "assistant", "content": "Let me look."}),
            n.clone(),
            n.clone(),
        ),
        c(
            2,
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": "{\"q\":"}}]}),
            n.clone(),
            n.clone(),
        ),
        c(1, json!({"content": " Paris"}), n.clone(), n.clone()),
        c(
            2,
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"France\"}"}}]}),
            n.clone(),
            n.clone(),
        ),
        c(0, json!({}), json!("stop"), n.clone()),
        c(1, json!({}), json!("length"), n.clone()),
        c(2, json!({}), json!("tool_calls"), n.clone()),
        json!({"choices": [], "usage": serde_json::from_str::<Value>(OPENAI_USAGE).unwrap()}),
    ];
    assert_eq!(chunks, expected);
}

/// An SSE body as (event name, data) pairs.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut name = String::new();
    for line in body.lines() {
        if let Some(n) = line.strip_prefix("event:") {
            name = n.trim().to_string();
        } else if let Some(data) = line.strip_prefix("data:") {
            out.push((name.clone(), serde_json::from_str(data.trim()).unwrap()));
        }
    }
    out
}

fn messages_body(stream: bool) -> Value {
    json!({"model": "demo", "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": "Capital of France?"}]})
}

const ANTHROPIC_USAGE: &str = r#"{"input_tokens":15,"output_tokens":20,
    "cache_creation_input_tokens":5,"cache_read_input_tokens":80}"#;

#[tokio::test]
async fn anthropic_json_has_thinking_blocks_cache_usage_and_tool_use_stop() {
    let (s, hub) = stack("", "").await;
    s.fake.answer_with(reasoning_answer());
    let body: Value = post(&hub, "/v1/messages", &messages_body(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        json!({
            "id": "msg_req-1", "type": "message", "role": "assistant", "model": "demo",
            "content": [
                {"type": "thinking", "thinking": "The capital of France.", "signature": "sig-1"},
                {"type": "redacted_thinking", "data": "b3BhcXVl"},
                {"type": "text", "text": "Paris."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "France"}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": serde_json::from_str::<Value>(ANTHROPIC_USAGE).unwrap(),
        })
    );
}

#[tokio::test]
async fn anthropic_stream_has_thinking_signature_and_redacted_blocks_in_order() {
    let (s, hub) = stack("", "").await;
    s.fake.stream_with(reasoning_stream());
    let r = post(&hub, "/v1/messages", &messages_body(true)).await;
    let events: Vec<(String, Value)> = sse_events(&r.text().await.unwrap())
        .into_iter()
        .filter(|(n, _)| n != "ping")
        .collect();
    for (name, data) in &events {
        assert_eq!(&data["type"], name.as_str(), "event name = data type");
    }
    let data: Vec<Value> = events.into_iter().map(|(_, v)| v).collect();
    let start = |i: u32, block: Value| json!({"type": "content_block_start", "index": i, "content_block": block});
    let delta =
        |i: u32, delta: Value| json!({"type": "content_block_delta", "index": i, "delta": delta});
    let stop = |i: u32| json!({"type": "content_block_stop", "index": i});
    assert_eq!(data[0]["type"], "message_start");
    assert_eq!(
        data[1..],
        [
            start(
                0,
                json!({"type": "thinking", "thinking": "", "signature": ""})
            ),
            delta(
                0,
                json!({"type": "thinking_delta", "thinking": "The capital"})
            ),
            delta(
                0,
                json!({"type": "thinking_delta", "thinking": " of France."})
            ),
            delta(0, json!({"type": "signature_delta", "signature": "sig-1"})),
            stop(0),
            start(1, json!({"type": "redacted_thinking", "data": "b3BhcXVl"})),
            stop(1),
            start(2, json!({"type": "text", "text": ""})),
            delta(2, json!({"type": "text_delta", "text": "Paris."})),
            stop(2),
            start(
                3,
                json!({"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}})
            ),
            delta(
                3,
                json!({"type": "input_json_delta", "partial_json": "{\"q\":"})
            ),
            delta(
                3,
                json!({"type": "input_json_delta", "partial_json": "\"France\"}"})
            ),
            stop(3),
            json!({"type": "message_delta",
                   "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                   "usage": serde_json::from_str::<Value>(ANTHROPIC_USAGE).unwrap()}),
            json!({"type": "message_stop"}),
        ]
    );
}

fn converse_body() -> Value {
    json!({"messages": [{"role": "user", "content": [{"text": "Capital of France?"}]}]})
}

const CONVERSE_USAGE: &str = r#"{"inputTokens":15,"outputTokens":20,"totalTokens":120,
    "cacheReadInputTokens":80,"cacheWriteInputTokens":5}"#;

#[tokio::test]
async fn converse_json_has_reasoning_content_cache_usage_and_additional_fields() {
    let (s, hub) = stack("", "").await;
    s.fake.answer_with(reasoning_answer());
    let mut body: Value = post(&hub, "/model/demo/converse", &converse_body())
        .await
        .json()
        .await
        .unwrap();
    assert!(body["metrics"]["latencyMs"].is_u64());
    body["metrics"]["latencyMs"] = json!(0);
    assert_eq!(
        body,
        json!({
            "output": {"message": {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "The capital of France.", "signature": "sig-1"}}},
                {"reasoningContent": {"redactedContent": "b3BhcXVl"}},
                {"text": "Paris."},
                {"toolUse": {"toolUseId": "toolu_1", "name": "lookup", "input": {"q": "France"}}},
            ]}},
            "stopReason": "tool_use",
            "usage": serde_json::from_str::<Value>(CONVERSE_USAGE).unwrap(),
            "metrics": {"latencyMs": 0},
            "additionalModelResponseFields": {"trace": {"id": "t-1"}},
        })
    );
}

/// An event-stream body as (`:event-type`, payload) pairs; every frame must be an event.
fn frames(mut body: &[u8]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let m = aws_smithy_eventstream::frame::read_message_from(&mut body).unwrap();
        let header = |name: &str| {
            m.headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_string())
        };
        assert_eq!(header(":message-type").as_deref(), Some("event"));
        out.push((
            header(":event-type").unwrap(),
            serde_json::from_slice(m.payload()).unwrap(),
        ));
    }
    out
}

#[tokio::test]
async fn converse_stream_has_reasoning_deltas_usage_and_additional_fields() {
    let (s, hub) = stack("", "").await;
    s.fake.stream_with(reasoning_stream());
    let r = post(&hub, "/model/demo/converse-stream", &converse_body()).await;
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let mut got = frames(&r.bytes().await.unwrap());
    let (name, meta) = got.last_mut().unwrap();
    assert_eq!(name, "metadata");
    assert!(meta["metrics"]["latencyMs"].is_u64());
    meta["metrics"]["latencyMs"] = json!(0);
    let f = |name: &str, v: Value| (name.to_string(), v);
    let delta = |i: u32, d: Value| {
        f(
            "contentBlockDelta",
            json!({"contentBlockIndex": i, "delta": d}),
        )
    };
    let stop = |i: u32| f("contentBlockStop", json!({"contentBlockIndex": i}));
    assert_eq!(
        got,
        vec![
            f("messageStart", json!({"role": "assistant"})),
            delta(0, json!({"reasoningContent": {"text": "The capital"}})),
            delta(0, json!({"reasoningContent": {"text": " of France."}})),
            delta(0, json!({"reasoningContent": {"signature": "sig-1"}})),
            stop(0),
            delta(
                1,
                json!({"reasoningContent": {"redactedContent": "b3BhcXVl"}})
            ),
            stop(1),
            delta(2, json!({"text": "Paris."})),
            stop(2),
            f(
                "contentBlockStart",
                json!({"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "toolu_1", "name": "lookup"}}})
            ),
            delta(3, json!({"toolUse": {"input": "{\"q\":"}})),
            delta(3, json!({"toolUse": {"input": "\"France\"}"}})),
            stop(3),
            f(
                "messageStop",
                json!({"stopReason": "tool_use", "additionalModelResponseFields": {"trace": {"id": "t-1"}}})
            ),
            f(
                "metadata",
                json!({"usage": serde_json::from_str::<Value>(CONVERSE_USAGE).unwrap(), "metrics": {"latencyMs": 0}})
            ),
        ]
    );
}

/// The stop reason follows the content on every surface: END_TURN next to a call is a tool
/// stop; TOOL_USE without a call is not; MAX_TOKENS stays (the call may be cut short).
#[tokio::test]
async fn stop_reason_follows_the_content_on_every_surface() {
    let (s, hub) = stack("", "").await;
    let cases = [
        (END, true, "tool_calls", "tool_use"),
        (TOOL, false, "stop", "end_turn"),
        (MAX, true, "length", "max_tokens"),
        (
            pb::StopReason::StopSequence as i32,
            true,
            "tool_calls",
            "tool_use",
        ),
    ];
    for (reason, with_call, openai, others) in cases {
        let mut content = vec![text("ok")];
        if with_call {
            content.push(call("c1", "lookup", "{}"));
        }
        s.fake.answer_with(pb::InferResponse {
            message: assistant(content.clone()),
            stop_reason: reason,
            ..Default::default()
        });
        let o: Value = post(&hub, "/v1/chat/completions", &chat(false))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(o["choices"][0]["finish_reason"], openai, "{reason}");
        let a: Value = post(&hub, "/v1/messages", &messages_body(false))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(a["stop_reason"], others, "{reason}");
        let b: Value = post(&hub, "/model/demo/converse", &converse_body())
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(b["stopReason"], others, "{reason}");
        // Streamed, the same.
        let mut events = vec![d(|d| d.text = "ok".into())];
        if with_call {
            events.push(call_delta(0, "c1", "lookup", "{}"));
        }
        events.push(end_event(pb::StreamEnd {
            stop_reason: reason,
            ..Default::default()
        }));
        s.fake.stream_with(events);
        let r = post(&hub, "/v1/chat/completions", &chat(true)).await;
        let chunks = openai_chunks(&r.text().await.unwrap());
        let finish: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["finish_reason"].as_str().map(|_| c))
            .collect();
        assert_eq!(finish.len(), 1);
        assert_eq!(finish[0]["choices"][0]["finish_reason"], openai, "{reason}");
        let r = post(&hub, "/v1/messages", &messages_body(true)).await;
        let md = sse_events(&r.text().await.unwrap())
            .into_iter()
            .find(|(n, _)| n == "message_delta")
            .unwrap()
            .1;
        assert_eq!(md["delta"]["stop_reason"], others, "{reason}");
        let r = post(&hub, "/model/demo/converse-stream", &converse_body()).await;
        let stop = frames(&r.bytes().await.unwrap())
            .into_iter()
            .find(|(n, _)| n == "messageStop")
            .unwrap()
            .1;
        assert_eq!(stop["stopReason"], others, "{reason}");
    }
}

/// A cached answer is replayed whole: JSON hits equal the original, a streamed hit replays every
/// choice with its reasoning, logprobs and usage details; an answer first streamed is stored
/// assembled and served as JSON later. One upstream call per distinct request.
#[tokio::test]
async fn the_response_cache_replays_the_whole_answer() {
    let (s, hub) = stack("cache = { ttl = \"5m\" }", "").await;
    s.fake.answer_with(openai_answer());
    let first = post(&hub, "/v1/chat/completions", &chat(false)).await;
    assert_eq!(first.headers()["x-switchyard-cache"], "miss");
    let first: Value = first.json().await.unwrap();
    assert_eq!(first, openai_completion(&first["created"]));
    let hit = post(&hub, "/v1/chat/completions", &chat(false)).await;
    assert_eq!(hit.headers()["x-switchyard-cache"], "hit");
    let hit: Value = hit.json().await.unwrap();
    assert_eq!(hit, openai_completion(&hit["created"]));
    assert_eq!(s.fake.calls(), 1);

    // A streamed hit of the same answer: every choice, reasoning, logprobs, finish reasons,
    // usage details, as the live stream would have them (text a word a chunk).
    let r = post(&hub, "/v1/chat/completions", &chat(true)).await;
    assert_eq!(r.headers()["x-switchyard-cache"], "hit");
    let chunks = openai_chunks(&r.text().await.unwrap());
    assert_eq!(s.fake.calls(), 1);
    let lp: Value = serde_json::from_str(LOGPROBS).unwrap();
    let n = Value::Null;
    assert_eq!(
        chunks,
        vec![
            c(
                0,
                json!({"role": "assistant", "content": ""}),
                n.clone(),
                n.clone()
            ),
            c(
                0,
                json!({"reasoning_content": "The capital of France."}),
                n.clone(),
                n.clone()
            ),
            c(0, json!({"content": "Paris."}), n.clone(), lp),
            c(
                1,
                json!({"role": "assistant", "content": "It "}),
                n.clone(),
                n.clone()
            ),
            c(1, json!({"content": "is "}), n.clone(), n.clone()),
            c(1, json!({"content": "Paris"}), n.clone(), n.clone()),
            c(
                2,
                json!({"role": "assistant", "content": "Let "}),
                n.clone(),
                n.clone()
            ),
            c(2, json!({"content": "me "}), n.clone(), n.clone()),
            c(2, json!({"content": "look."}), n.clone(), n.clone()),
            c(
                2,
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "lookup", "arguments": "{\"q\":\"France\"}"}}]}),
                n.clone(),
                n.clone()
            ),
            c(0, json!({}), json!("stop"), n.clone()),
            c(1, json!({}), json!("length"), n.clone()),
            c(2, json!({}), json!("tool_calls"), n.clone()),
            json!({"choices": [], "usage": serde_json::from_str::<Value>(OPENAI_USAGE).unwrap()}),
        ]
    );

    // A streamed miss is stored assembled: its JSON hit is the unary answer.
    s.fake.stream_with(openai_stream());
    let mut other = chat(true);
    other["messages"][0]["content"] = json!("And of Italy?");
    let r = post(&hub, "/v1/chat/completions", &other).await;
    assert_eq!(r.headers()["x-switchyard-cache"], "miss");
    openai_chunks(&r.text().await.unwrap());
    other["stream"] = json!(false);
    let hit = post(&hub, "/v1/chat/completions", &other).await;
    assert_eq!(hit.headers()["x-switchyard-cache"], "hit");
    let hit: Value = hit.json().await.unwrap();
    assert_eq!(hit, openai_completion(&hit["created"]));
    assert_eq!(s.fake.calls(), 2);
}

/// A streaming request that follows an identical one in flight gets the leader's stream as the
/// spoke sent it: every choice, reasoning, logprobs, tool calls, finish reasons, usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coalesced_stream_follows_the_whole_answer_live() {
    let s = start_spoke_with(
        "acct-a",
        &["m1"],
        0,
        Duration::from_millis(100),
        "127.0.0.1:0",
    )
    .await;
    let hub = start_hub(&config("cache = { ttl = \"0s\" }", "", &s)).await;
    hub.wait_healthy("p1", 1).await;
    s.fake.stream_with(openai_stream());
    let leader = tokio::spawn({
        let url = hub.url("/v1/chat/completions");
        async move {
            let r = client()
                .post(url)
                .bearer_auth(KEY)
                .header("x-request-id", "req-1")
                .json(&chat(true))
                .send()
                .await
                .unwrap();
            let cache = r.headers()["x-switchyard-cache"]
                .to_str()
                .unwrap()
                .to_string();
            (cache, r.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let follower = post(&hub, "/v1/chat/completions", &chat(true)).await;
    assert_eq!(follower.headers()["x-switchyard-cache"], "coalesced");
    let followed = openai_chunks(&follower.text().await.unwrap());
    let (cache, led) = leader.await.unwrap();
    assert_eq!(cache, "miss");
    assert_eq!(followed, openai_chunks(&led));
    assert_eq!(s.fake.calls(), 1);
    assert!(followed.iter().any(|c| c["choices"][0]["index"] == 2));
    assert!(
        followed
            .iter()
            .any(|c| c["choices"][0]["delta"]["reasoning_content"].is_string())
    );
}

/// The audit line's usage carries the cache and reasoning details.
#[tokio::test]
async fn the_audit_line_carries_usage_details() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (s, hub) = stack(
        "",
        &format!(
            "[audit]\nenabled = true\npath = {:?}\n",
            path.display().to_string()
        ),
    )
    .await;
    s.fake.answer_with(reasoning_answer());
    post(&hub, "/v1/messages", &messages_body(false)).await;
    s.fake.stream_with(reasoning_stream());
    let r = post(&hub, "/model/demo/converse-stream", &converse_body()).await;
    r.bytes().await.unwrap();
    let lines = || -> Vec<Value> {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    eventually(Duration::from_secs(10), || lines().len() == 2).await;
    for line in lines() {
        assert_eq!(
            line["usage"],
            json!({"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 80,
                   "cache_write_input_tokens": 5, "reasoning_tokens": 7}),
            "{line}"
        );
    }
}

/// The official SDKs read the same answers: the openai SDK's `choices[1]`, `reasoning_content`,
/// logprobs and usage details (JSON and streamed); the anthropic SDK's `messages.stream`
/// accumulating thinking, signature and redacted blocks; boto3's `converse` and
/// `converse_stream` with `reasoningContent`. (`tests/python/sdk_answers.py`; the venv of
/// `scripts/test`, or `SWITCHYARD_TEST_PYTHON`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_parse_the_answers() {
    let openai = start_spoke("acct-o", &["m1"]).await;
    openai.fake.answer_with(openai_answer());
    openai.fake.stream_with(openai_stream());
    let (s, hub) = stack("", "").await;
    s.fake.answer_with(reasoning_answer());
    s.fake.stream_with(reasoning_stream());
    let other = start_hub(&config("", "", &openai)).await;
    other.wait_healthy("p1", 1).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/sdk_answers.py");
    let out = tokio::process::Command::new(python())
        .arg(script)
        .env("OPENAI_HUB", other.url(""))
        .env("HUB", hub.url(""))
        .env("HUB_KEY", KEY)
        .output()
        .await
        .expect("python (run scripts/test, or make tests/.venv with openai, anthropic, boto3)");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "openai ok\nanthropic ok\nboto3 ok"
    );
}

/// A Python with the official SDKs (`SWITCHYARD_TEST_PYTHON`, else the workspace's
/// `tests/.venv`, else `python3`).
fn python() -> String {
    std::env::var("SWITCHYARD_TEST_PYTHON").unwrap_or_else(|_| {
        let venv =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/.venv/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    })
}
