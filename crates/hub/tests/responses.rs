//! The Responses API surface (`/v1/responses`) against in-process fake spokes: the answer's
//! shape, the stream's event sequence, a mid-stream failure, stored responses continued with
//! `previous_response_id`, `GET` / `DELETE`, and tenant isolation of all three.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;

fn pool(s: &SpokeHandle) -> String {
    format!(
        r#"
[[aliases]]
name = "demo"
candidates = [{{ provider = "p1", model = "m1" }}]

[[providers]]
name = "p1"
spokes = [{{ addr = "{}" }}]
health = {{ interval = "1s", unhealthy_threshold = 1 }}
"#,
        s.addr
    )
}

async fn setup() -> (SpokeHandle, HubHandle) {
    setup_with(default_caps()).await
}

/// A spoke whose model declares `caps`.
async fn setup_with(caps: pb::Capabilities) -> (SpokeHandle, HubHandle) {
    let s = start_spoke_as("acct-a", &["m1"], "fake", caps).await;
    let hub = start_hub(&pool(&s)).await;
    hub.wait_healthy("p1", 1).await;
    (s, hub)
}

async fn post(hub: &HubHandle, key: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(hub.url("/v1/responses"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn call(hub: &HubHandle, method: reqwest::Method, key: &str, id: &str) -> (u16, Value) {
    let r = client()
        .request(method, hub.url(&format!("/v1/responses/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The texts of the messages the spoke last received (unary calls), with their roles.
fn upstream_turns(s: &SpokeHandle) -> (String, Vec<(i32, String)>) {
    let (req, _, _) = s.fake.last_request.lock().clone().unwrap();
    let turns = req
        .messages
        .iter()
        .map(|m| {
            let text: String = m
                .content
                .iter()
                .filter_map(|p| match &p.part {
                    Some(pb::content_part::Part::Text(t)) => Some(t.as_str()),
                    _ => None,
                })
                .collect();
            (m.role, text)
        })
        .collect();
    (req.system, turns)
}

#[tokio::test]
async fn string_input_answers_a_response_object() {
    let (s, hub) = setup().await;
    let (status, v) = post(
        &hub,
        KEY,
        json!({"model": "demo", "input": "hi there", "instructions": "be brief",
               "max_output_tokens": 40, "metadata": {"team": "a"}, "user": "u-1"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "response");
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "m1");
    assert_eq!(v["instructions"], "be brief");
    assert_eq!(v["max_output_tokens"], 40);
    assert_eq!(v["metadata"], json!({"team": "a"}));
    assert_eq!(v["store"], true);
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["incomplete_details"], Value::Null);
    let out = &v["output"][0];
    assert_eq!(out["type"], "message");
    assert_eq!(out["role"], "assistant");
    assert_eq!(out["status"], "completed");
    assert!(out["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(out["content"][0]["type"], "output_text");
    assert_eq!(out["content"][0]["text"], "hello from acct-a");
    assert_eq!(out["content"][0]["annotations"], json!([]));
    assert_eq!(v["usage"]["input_tokens"], 5);
    assert_eq!(v["usage"]["output_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 8);
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 0);
    let (system, turns) = upstream_turns(&s);
    assert_eq!(system, "be brief");
    assert_eq!(turns, [(pb::Role::User as i32, "hi there".to_string())]);
    let (req, _, _) = s.fake.last_request.lock().clone().unwrap();
    assert_eq!(req.params.unwrap().max_tokens, Some(40));
}

#[tokio::test]
async fn stream_events_in_order_with_sequence_numbers() {
    let (_s, hub) = setup().await;
    let r = client()
        .post(hub.url("/v1/responses"))
        .bearer_auth(KEY)
        .json(&json!({"model": "demo", "input": "hi", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let body = r.text().await.unwrap();
    let names: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    let events: Vec<Value> = sse_data(&body)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(names, types, "each event is named after its type");
    let mut want = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    want.extend(["response.output_text.delta"; 3]);
    want.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(types, want);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "{e}");
    }
    assert_eq!(events[0]["response"]["status"], "in_progress");
    assert_eq!(events[0]["response"]["output"], json!([]));
    let item_id = events[2]["item"]["id"].as_str().unwrap();
    for e in &events[3..9] {
        assert_eq!(e["item_id"], item_id);
        assert_eq!(e["output_index"], 0);
    }
    let text = "acct-a-0 acct-a-1 acct-a-2 ";
    assert_eq!(events[7]["text"], text);
    assert_eq!(events[9]["item"]["status"], "completed");
    assert_eq!(events[9]["item"]["content"][0]["text"], text);
    let done = &events[10]["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["id"], events[0]["response"]["id"]);
    assert_eq!(done["output"][0]["id"], item_id);
    assert_eq!(done["usage"]["output_tokens"], 3);
    // Streamed responses are stored too.
    let id = done["id"].as_str().unwrap();
    let (status, got) = call(&hub, reqwest::Method::GET, KEY, id).await;
    assert_eq!(status, 200);
    assert_eq!(&got, done);
}

#[tokio::test]
async fn a_failure_mid_stream_ends_with_response_failed() {
    let (s, hub) = setup().await;
    s.fake.set_mode(Mode::FailAfterFirstDelta);
    let body = client()
        .post(hub.url("/v1/responses"))
        .bearer_auth(KEY)
        .json(&json!({"model": "demo", "input": "hi", "stream": true}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = sse_data(&body)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.failed", "{body}");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(last["response"]["error"]["code"], "server_error");
    assert_eq!(
        last["response"]["output"][0]["content"],
        json!([]),
        "the item open when it failed is shown as it stood"
    );
    // A failed response is not stored.
    let id = last["response"]["id"].as_str().unwrap();
    assert_eq!(call(&hub, reqwest::Method::GET, KEY, id).await.0, 404);
}

#[tokio::test]
async fn previous_response_id_continues_the_stored_conversation() {
    let (s, hub) = setup().await;
    let (_, first) = post(
        &hub,
        KEY,
        json!({"model": "demo", "instructions": "first rules",
               "input": [{"role": "developer", "content": "dev note"},
                         {"role": "user", "content": "my name is Ada"}]}),
    )
    .await;
    let id = first["id"].as_str().unwrap();
    let (status, second) = post(
        &hub,
        KEY,
        json!({"model": "demo", "input": "what is my name?", "previous_response_id": id,
               "instructions": "second rules"}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["previous_response_id"], id);
    // The stored input and answer went upstream before the new input; the first request's
    // instructions did not (a continuation does not inherit them), its developer message did.
    let (system, turns) = upstream_turns(&s);
    assert_eq!(system, "second rules\ndev note");
    assert_eq!(
        turns,
        [
            (pb::Role::User as i32, "my name is Ada".to_string()),
            (pb::Role::Assistant as i32, "hello from acct-a".to_string()),
            (pb::Role::User as i32, "what is my name?".to_string()),
        ]
    );
    // A chain: the third sees all of it.
    let (_, third) = post(
        &hub,
        KEY,
        json!({"model": "demo", "input": "and again?",
               "previous_response_id": second["id"]}),
    )
    .await;
    assert_eq!(third["status"], "completed");
    let (system, turns) = upstream_turns(&s);
    assert_eq!(system, "dev note");
    assert_eq!(turns.len(), 5);
    // `store: false` is not retrievable nor continuable.
    let (_, unstored) = post(
        &hub,
        KEY,
        json!({"model": "demo", "input": "x", "store": false}),
    )
    .await;
    assert_eq!(unstored["store"], false);
    let uid = unstored["id"].as_str().unwrap();
    assert_eq!(call(&hub, reqwest::Method::GET, KEY, uid).await.0, 404);
    let (status, e) = post(
        &hub,
        KEY,
        json!({"model": "demo", "input": "x", "previous_response_id": uid}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(e["error"]["code"], "previous_response_not_found");
    assert_eq!(e["error"]["param"], "previous_response_id");
}

#[tokio::test]
async fn get_and_delete_and_tenant_isolation() {
    let (s, hub) = setup().await;
    let (_, first) = post(&hub, KEY, json!({"model": "demo", "input": "secret plan"})).await;
    let id = first["id"].as_str().unwrap();
    let calls_before = s.fake.calls();

    // Another tenant: the response does not exist for it, in every way it could ask.
    let (status, e) = call(&hub, reqwest::Method::GET, OTHER_KEY, id).await;
    assert_eq!(status, 404, "{e}");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    let (status, _) = call(&hub, reqwest::Method::DELETE, OTHER_KEY, id).await;
    assert_eq!(status, 404);
    let (status, e) = post(
        &hub,
        OTHER_KEY,
        json!({"model": "demo", "input": "what was the plan?", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(e["error"]["code"], "previous_response_not_found");
    assert_eq!(s.fake.calls(), calls_before, "nothing went upstream");
    // Exactly what an id that never existed answers.
    let (status, never) = call(&hub, reqwest::Method::GET, OTHER_KEY, "resp_0000").await;
    assert_eq!(status, 404);
    assert_eq!(
        never["error"]["message"]
            .as_str()
            .unwrap()
            .replace("resp_0000", id),
        e_message_for(id)
    );

    // The owner still has it, and deletes it.
    let (status, got) = call(&hub, reqwest::Method::GET, KEY, id).await;
    assert_eq!(status, 200);
    assert_eq!(got, first);
    let (status, del) = call(&hub, reqwest::Method::DELETE, KEY, id).await;
    assert_eq!(status, 200);
    assert_eq!(
        del,
        json!({"id": id, "object": "response", "deleted": true})
    );
    assert_eq!(call(&hub, reqwest::Method::GET, KEY, id).await.0, 404);
    assert_eq!(call(&hub, reqwest::Method::DELETE, KEY, id).await.0, 404);
    // Without a key: 401.
    let r = client()
        .get(hub.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

fn e_message_for(id: &str) -> String {
    format!("Response with id '{id}' not found.")
}

#[tokio::test]
async fn hosted_features_and_unknown_fields_are_refused_by_name() {
    let (s, hub) = setup().await;
    let cases = [
        (
            json!({"model": "demo", "input": "x", "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "demo", "input": "x", "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "demo", "input": "x", "tools": [{"type": "computer_use_preview"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "demo", "input": "x", "tools": [{"type": "mcp", "server_label": "x"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "demo", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "demo", "input": "x", "conversation": {"id": "conv_1"}}),
            "conversation",
        ),
        (
            json!({"model": "demo", "input": "x", "prompt": {"id": "pmpt_1"}}),
            "prompt",
        ),
        (
            json!({"model": "demo", "input": "x", "frobnicate": 3}),
            "frobnicate",
        ),
    ];
    for (body, param) in cases {
        let (status, e) = post(&hub, KEY, body.clone()).await;
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["error"]["param"], param, "{body}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error");
    }
    assert_eq!(s.fake.calls(), 0, "nothing refused went upstream");
}

fn part(p: pb::content_part::Part) -> pb::ContentPart {
    pb::ContentPart { part: Some(p) }
}

const LOGPROBS: &str = r#"{"content":[{"token":"Paris","logprob":-0.25,"bytes":[80,97,114,105,115],"top_logprobs":[]}]}"#;

/// Signed and redacted reasoning, text with logprobs, a tool call; usage with cache and
/// reasoning details.
fn reasoning_answer() -> pb::InferResponse {
    pb::InferResponse {
        message: Some(pb::Message {
            role: pb::Role::Assistant as i32,
            content: vec![
                part(pb::content_part::Part::Thinking(pb::ThinkingPart {
                    text: "The capital of France.".into(),
                    signature: "sig-1".into(),
                    ..Default::default()
                })),
                part(pb::content_part::Part::Thinking(pb::ThinkingPart {
                    redacted: true,
                    data: "b3BhcXVl".into(),
                    ..Default::default()
                })),
                part(pb::content_part::Part::Text("Paris".into())),
                part(pb::content_part::Part::ToolCall(pb::ToolCall {
                    id: "toolu_1".into(),
                    name: "lookup".into(),
                    arguments_json: r#"{"q":"France"}"#.into(),
                })),
            ],
        }),
        stop_reason: pb::StopReason::EndTurn as i32,
        logprobs_json: LOGPROBS.into(),
        usage: Some(pb::Usage {
            input_tokens: 100,
            output_tokens: 20,
            cache_read_input_tokens: 80,
            cache_write_input_tokens: 5,
            reasoning_tokens: 7,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn reasoning_logprobs_and_usage_details_and_encrypted_reasoning_round_trips() {
    let (s, hub) = setup_with(pb::Capabilities {
        tools: true,
        reasoning: true,
        logprobs: true,
        ..default_caps()
    })
    .await;
    s.fake.answer_with(reasoning_answer());
    let tool = json!({"type": "function", "name": "lookup", "parameters": {"type": "object"}});
    let (status, v) = post(
        &hub,
        KEY,
        json!({"model": "demo", "input": "capital of France?", "tools": [tool],
               "reasoning": {"effort": "low", "summary": "auto"},
               "include": ["reasoning.encrypted_content", "message.output_text.logprobs"],
               "top_logprobs": 2, "store": false}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (req, _, _) = s.fake.last_request.lock().clone().unwrap();
    let p = req.params.unwrap();
    assert_eq!(p.reasoning.unwrap().effort, "low");
    assert!(p.logprobs);
    assert_eq!(p.top_logprobs, Some(2));
    let out = v["output"].as_array().unwrap();
    let types: Vec<&str> = out.iter().map(|o| o["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["reasoning", "reasoning", "message", "function_call"]
    );
    assert_eq!(out[0]["summary"][0]["type"], "summary_text");
    assert_eq!(out[0]["summary"][0]["text"], "The capital of France.");
    assert_eq!(out[1]["summary"], json!([]), "a redacted block has no text");
    assert_eq!(out[2]["content"][0]["text"], "Paris");
    assert_eq!(out[2]["content"][0]["logprobs"][0]["token"], "Paris");
    assert_eq!(out[3]["call_id"], "toolu_1");
    assert_eq!(v["usage"]["input_tokens"], 100);
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 80);
    assert_eq!(v["usage"]["input_tokens_details"]["cache_write_tokens"], 5);
    assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 7);
    assert_eq!(v["usage"]["total_tokens"], 120);

    // Stateless continuation: the output items sent back restore the signed and redacted
    // blocks from `encrypted_content`, in one assistant turn with the text and the call.
    let mut input = vec![json!({"role": "user", "content": "capital of France?"})];
    input.extend(out.iter().cloned());
    input.push(
        json!({"type": "function_call_output", "call_id": "toolu_1", "output": "Paris it is"}),
    );
    let (status, _) = post(
        &hub,
        KEY,
        json!({"model": "demo", "input": input, "tools": [tool], "store": false}),
    )
    .await;
    assert_eq!(status, 200);
    let (req, _, _) = s.fake.last_request.lock().clone().unwrap();
    assert_eq!(req.messages.len(), 3);
    let turn = &req.messages[1];
    assert_eq!(turn.role, pb::Role::Assistant as i32);
    assert_eq!(turn.content, reasoning_answer().message.unwrap().content);

    // Without `include` and a summary, reasoning shows neither text nor encrypted content.
    let (_, plain) = post(&hub, KEY, json!({"model": "demo", "input": "again"})).await;
    assert_eq!(plain["output"][0]["summary"], json!([]));
    assert!(plain["output"][0].get("encrypted_content").is_none());
    // …but the stored conversation keeps the signed block for a continuation.
    post(
        &hub,
        KEY,
        json!({"model": "demo", "input": "more", "previous_response_id": plain["id"]}),
    )
    .await;
    let (req, _, _) = s.fake.last_request.lock().clone().unwrap();
    assert_eq!(
        req.messages[1].content,
        reasoning_answer().message.unwrap().content
    );
}

#[tokio::test]
async fn streamed_reasoning_summary_and_calls() {
    let (s, hub) = setup().await;
    let d = |f: &dyn Fn(&mut pb::StreamDelta)| {
        let mut delta = pb::StreamDelta::default();
        f(&mut delta);
        delta_event(delta)
    };
    s.fake.stream_with(vec![
        d(&|d| {
            d.thinking = Some(pb::ThinkingPart {
                text: "The capital".into(),
                ..Default::default()
            })
        }),
        d(&|d| {
            d.thinking = Some(pb::ThinkingPart {
                text: " of France.".into(),
                ..Default::default()
            })
        }),
        d(&|d| {
            d.thinking = Some(pb::ThinkingPart {
                signature: "sig-1".into(),
                ..Default::default()
            })
        }),
        d(&|d| d.text = "Paris".into()),
        d(&|d| {
            d.tool_call = Some(pb::ToolCallDelta {
                index: 0,
                id: "toolu_1".into(),
                name: "lookup".into(),
                arguments_json: r#"{"q":"#.into(),
            })
        }),
        d(&|d| {
            d.tool_call = Some(pb::ToolCallDelta {
                index: 0,
                arguments_json: r#""France"}"#.into(),
                ..Default::default()
            })
        }),
        end_event(pb::StreamEnd {
            stop_reason: pb::StopReason::ToolUse as i32,
            usage: Some(pb::Usage {
                input_tokens: 10,
                output_tokens: 4,
                reasoning_tokens: 2,
                ..Default::default()
            }),
            ..Default::default()
        }),
    ]);
    let body = client()
        .post(hub.url("/v1/responses"))
        .bearer_auth(KEY)
        .json(&json!({"model": "demo", "input": "capital?", "stream": true,
                      "reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = sse_data(&body)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ],
        "{body}"
    );
    assert_eq!(events[6]["text"], "The capital of France.");
    let reasoning = &events[8]["item"];
    assert_eq!(reasoning["summary"][0]["text"], "The capital of France.");
    assert!(
        reasoning["encrypted_content"]
            .as_str()
            .unwrap()
            .starts_with("sy1.")
    );
    assert_eq!(events[18]["arguments"], r#"{"q":"France"}"#);
    assert_eq!(events[18]["output_index"], 2);
    let done = &events[20]["response"];
    assert_eq!(done["output"][2]["call_id"], "toolu_1");
    assert_eq!(
        done["usage"]["output_tokens_details"]["reasoning_tokens"],
        2
    );
    // The stored turn is the signed block, the text and the call.
    post(
        &hub,
        KEY,
        json!({"model": "demo", "input": [{"type": "function_call_output", "call_id": "toolu_1", "output": "ok"}],
               "previous_response_id": done["id"]}),
    )
    .await;
    let (req, _, _) = s.fake.last_request.lock().clone().unwrap();
    let turn = &req.messages[1].content;
    assert!(matches!(&turn[0].part,
        Some(pb::content_part::Part::Thinking(t)) if t.signature == "sig-1" && t.text == "The capital of France."));
    assert_eq!(turn.len(), 3);
}

#[tokio::test]
async fn the_response_cache_serves_responses_too() {
    let s = start_spoke("acct-a", &["m1"]).await;
    let hub = start_hub(&pool(&s).replace(
        "candidates = [{ provider = \"p1\", model = \"m1\" }]",
        "candidates = [{ provider = \"p1\", model = \"m1\" }]\ncache = { ttl = \"1m\" }",
    ))
    .await;
    hub.wait_healthy("p1", 1).await;
    let body = json!({"model": "demo", "input": "cache me", "temperature": 0});
    let send = |stream: bool| {
        let mut b = body.clone();
        b["stream"] = json!(stream);
        client()
            .post(hub.url("/v1/responses"))
            .bearer_auth(KEY)
            .json(&b)
            .send()
    };
    let first = send(false).await.unwrap();
    assert_eq!(first.headers()["x-switchyard-cache"], "miss");
    let first: Value = first.json().await.unwrap();
    let hit = send(false).await.unwrap();
    assert_eq!(hit.headers()["x-switchyard-cache"], "hit");
    assert_eq!(hit.headers()["x-switchyard-model"], "m1");
    let hit: Value = hit.json().await.unwrap();
    assert_ne!(
        hit["id"], first["id"],
        "a new response, stored under its own id"
    );
    assert_eq!(hit["output"][0]["content"][0]["text"], "hello from acct-a");
    assert_eq!(hit["usage"], first["usage"]);
    // Streamed from the same entry, replayed as the upstream would stream it.
    let streamed = send(true).await.unwrap();
    assert_eq!(streamed.headers()["x-switchyard-cache"], "hit");
    let events: Vec<Value> = sse_data(&streamed.text().await.unwrap())
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    assert_eq!(
        last["response"]["output"][0]["content"][0]["text"],
        "hello from acct-a"
    );
    assert_eq!(s.fake.calls(), 1, "one upstream call for all three");
    // The hit is stored and continuable like any response.
    let id = last["response"]["id"].as_str().unwrap();
    assert_eq!(call(&hub, reqwest::Method::GET, KEY, id).await.0, 200);
}

/// Raw SSE lines of a streamed request (comments included).
async fn stream_lines(hub: &HubHandle, timeout_ms: Option<u64>) -> Vec<String> {
    let mut r = client()
        .post(hub.url("/v1/responses"))
        .bearer_auth(KEY)
        .json(&json!({"model": "demo", "input": "slow one", "stream": true}));
    if let Some(ms) = timeout_ms {
        r = r.header("x-switchyard-timeout-ms", ms.to_string());
    }
    let resp = r.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text()
        .await
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_slow_first_token_is_kept_alive_and_a_late_refusal_fails_in_the_stream() {
    let s = start_spoke("acct-a", &["m1"]).await;
    let hub = start_hub(&format!("stream_keepalive = \"200ms\"\n{}", pool(&s))).await;
    hub.wait_healthy("p1", 1).await;
    s.fake
        .set_mode(Mode::Slow(std::time::Duration::from_millis(900)));
    let lines = stream_lines(&hub, None).await;
    let created = lines
        .iter()
        .position(|l| l == "event: response.created")
        .unwrap();
    let comments: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with(':'))
        .map(|(i, _)| i)
        .collect();
    assert!(comments.len() >= 2, "{lines:?}");
    assert!(created < comments[0], "response.created goes out first");
    let first_item = lines
        .iter()
        .position(|l| l == "event: response.output_item.added")
        .unwrap();
    assert!(comments.iter().all(|c| *c < first_item), "{lines:?}");
    assert!(
        lines.iter().any(|l| l == "event: response.completed"),
        "{lines:?}"
    );
    let events: Vec<Value> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i);
    }
    assert_eq!(
        events.last().unwrap()["response"]["output"][0]["content"][0]["text"],
        "acct-a-0 acct-a-1 acct-a-2 "
    );

    // The deadline passes before the route answers: the refusal comes in the stream.
    s.fake
        .set_mode(Mode::Slow(std::time::Duration::from_secs(5)));
    let lines = stream_lines(&hub, Some(700)).await;
    let last: Value = serde_json::from_str(
        lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("data:"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(last["type"], "response.failed", "{lines:?}");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(last["response"]["error"]["code"], "server_error");
}

#[tokio::test]
async fn fields_no_model_of_the_alias_can_honour_are_refused_by_their_responses_name() {
    let (s, hub) = setup().await;
    let cases = [
        (
            json!({"text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}}}}),
            "text.format",
        ),
        (
            json!({"text": {"format": {"type": "json_object"}}}),
            "text.format",
        ),
        (json!({"reasoning": {"effort": "high"}}), "reasoning.effort"),
        (
            json!({"include": ["message.output_text.logprobs"], "top_logprobs": 2}),
            "include",
        ),
    ];
    for (extra, param) in cases {
        let mut body = json!({"model": "demo", "input": "x"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, e) = post(&hub, KEY, body.clone()).await;
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["error"]["param"], param, "{body}: {e}");
    }
    assert_eq!(s.fake.calls(), 0);
    // `reasoning.effort: none` asks for nothing a model lacks.
    let (status, _) = post(
        &hub,
        KEY,
        json!({"model": "demo", "input": "x", "reasoning": {"effort": "none"}}),
    )
    .await;
    assert_eq!(status, 200);
}
