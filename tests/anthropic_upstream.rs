//! The spoke's Anthropic Messages upstream adapter against the wire-faithful `FakeAnthropic`:
//! request shape and headers, answers (text and tool use, JSON and streamed), and failover:
//! 429 and 529 are throttles (with `retry-after`), 5xx an outage, 4xx final.
//! Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::StreamExt;
use serde_json::{Value, json};
use switchyard_e2e::{Spoke, request, spoke_toml, text_of};
use switchyard_proto::v1::{Outcome, StopReason, ToolSpec, content_part::Part, infer_event::Event};
use switchyard_testkit::anthropic::FakeAnthropic;
use switchyard_testkit::behavior::{Behavior, ErrorKind};

const SONNET: &str = "claude-sonnet-4-5";
const UPSTREAM_KEY: &str = "sk-ant-upstream-secret";

/// Two regions on two fakes; model `sonnet` in both.
async fn anthropic_pair() -> (FakeAnthropic, FakeAnthropic, Spoke) {
    let a = FakeAnthropic::start().await.unwrap();
    a.set_label("a");
    let b = FakeAnthropic::start().await.unwrap();
    b.set_label("b");
    let toml = spoke_toml(
        "anthropic",
        &[("direct-a", &a.url()), ("direct-b", &b.url())],
        &format!(
            "[[models]]\nid = \"sonnet\"\nupstream_id = \"{SONNET}\"\nstreaming = true\ntools = true\nimages = true\n"
        ),
        "[anthropic]\napi_key_env = \"TEST_ANTHROPIC_KEY\"\n",
    );
    let spoke = Spoke::start_with_env(&toml, &[("TEST_ANTHROPIC_KEY", UPSTREAM_KEY)])
        .await
        .unwrap();
    (a, b, spoke)
}

fn outcomes(attempts: &[switchyard_proto::v1::Attempt]) -> Vec<(String, Outcome)> {
    attempts
        .iter()
        .map(|a| {
            (
                a.target.clone().unwrap_or_default().region,
                Outcome::try_from(a.outcome).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_call_has_anthropics_headers_and_body_and_answers() {
    let (a, _b, spoke) = anthropic_pair().await;
    let mut client = spoke.grpc().await.unwrap();
    let mut req = request(&["sonnet"], "hello anthropic upstream");
    req.system = "be brief".into();
    let r = client.infer(req).await.unwrap().into_inner();
    assert!(
        text_of(r.message.as_ref()).ends_with("hello anthropic upstream"),
        "{r:?}"
    );
    let route = r.route.unwrap();
    assert_eq!(
        (route.provider.as_str(), route.region.as_str()),
        ("anthropic", "direct-a")
    );
    assert_eq!(r.stop_reason, StopReason::EndTurn as i32);
    assert!(r.usage.unwrap().output_tokens > 0);
    let seen = a.requests().pop().unwrap();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.body["model"], SONNET);
    assert_eq!(seen.body["system"], "be brief");
    assert_eq!(seen.body["max_tokens"], 100);
    assert_eq!(
        seen.body["messages"][0]["content"][0],
        json!({"type": "text", "text": "hello anthropic upstream"})
    );
    // The upstream key never shows up in the spoke's logs.
    assert!(!spoke.proc.logs().contains(UPSTREAM_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttles_429_and_overloaded_529_fail_over_to_the_next_region() {
    let (a, b, spoke) = anthropic_pair().await;
    let mut client = spoke.grpc().await.unwrap();
    for kind in [ErrorKind::Throttling, ErrorKind::ModelNotReady] {
        // A fresh spoke per kind: the first kind leaves region a cooling down.
        let (a, b, spoke) = anthropic_pair().await;
        let mut client = spoke.grpc().await.unwrap();
        a.set_behavior(SONNET, Behavior::Error { error: kind });
        let r = client
            .infer(request(&["sonnet"], "fail over"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            outcomes(&r.attempts),
            vec![
                ("direct-a".to_string(), Outcome::Throttled),
                ("direct-b".to_string(), Outcome::Ok)
            ],
            "{kind:?}"
        );
        assert!(
            r.attempts[0]
                .detail
                .contains(if kind == ErrorKind::Throttling {
                    "rate_limit_error"
                } else {
                    "overloaded_error"
                })
        );
        assert_eq!((a.calls(SONNET), b.calls(SONNET)), (1, 1));
    }
    // Every region throttling with retry-after: RESOURCE_EXHAUSTED carrying the wait.
    a.set_behavior(SONNET, Behavior::ThrottleRetryAfter { secs: 30 });
    b.set_behavior(SONNET, Behavior::ThrottleRetryAfter { secs: 30 });
    let err = client
        .infer(request(&["sonnet"], "everyone is busy"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    let ms: u64 = err
        .metadata()
        .get("retry-after-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((20_000..=30_000).contains(&ms), "retry-after-ms {ms}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_fail_over_and_client_errors_are_final() {
    let (a, b, spoke) = anthropic_pair().await;
    let mut client = spoke.grpc().await.unwrap();
    a.set_behavior(
        SONNET,
        Behavior::Error {
            error: ErrorKind::InternalServer,
        },
    );
    let r = client
        .infer(request(&["sonnet"], "outage"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        outcomes(&r.attempts),
        vec![
            ("direct-a".to_string(), Outcome::Unavailable),
            ("direct-b".to_string(), Outcome::Ok)
        ]
    );
    b.set_behavior(
        SONNET,
        Behavior::Error {
            error: ErrorKind::Validation,
        },
    );
    let before = a.calls(SONNET);
    let err = client.infer(request(&["sonnet"], "bad")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("invalid_request_error"), "{err:?}");
    // Region a (still failing) may be tried first; b's 400 ends the request: b was called once
    // more and nothing was retried after it.
    assert!(a.calls(SONNET) <= before + 1);
    assert_eq!(b.calls(SONNET), 2);
    let attempts: u32 = err
        .metadata()
        .get("x-switchyard-attempts")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(u64::from(attempts), a.calls(SONNET) - before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_use_unary_and_streamed_and_tool_results_go_back() {
    let (a, _b, spoke) = anthropic_pair().await;
    let mut client = spoke.grpc().await.unwrap();
    let mut req = request(&["sonnet"], "weather in Bern");
    req.tools = vec![ToolSpec {
        name: "get_weather".into(),
        description: "Weather by city".into(),
        parameters_json: r#"{"type":"object","properties":{"city":{"type":"string"}}}"#.into(),
        ..Default::default()
    }];
    let r = client.infer(req.clone()).await.unwrap().into_inner();
    assert_eq!(r.stop_reason, StopReason::ToolUse as i32);
    let call = r
        .message
        .as_ref()
        .unwrap()
        .content
        .iter()
        .find_map(|p| match &p.part {
            Some(Part::ToolCall(c)) => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(call.name, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&call.arguments_json).unwrap(),
        json!({"query": "weather in Bern"})
    );
    let seen = a.requests().pop().unwrap();
    assert_eq!(seen.body["tools"][0]["name"], "get_weather");
    assert_eq!(
        seen.body["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );

    // Streamed: the tool call arrives as ToolCallDelta pieces.
    let mut stream = client.infer_stream(req.clone()).await.unwrap().into_inner();
    let (mut name, mut args, mut end) = (String::new(), String::new(), None);
    while let Some(ev) = stream.next().await {
        match ev.unwrap().event {
            Some(Event::Delta(d)) => {
                let tc = d.tool_call.unwrap();
                assert_eq!(tc.index, 0);
                name.push_str(&tc.name);
                args.push_str(&tc.arguments_json);
            }
            Some(Event::End(e)) => end = Some(e),
            _ => {}
        }
    }
    assert_eq!(name, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"query": "weather in Bern"})
    );
    assert_eq!(end.unwrap().stop_reason, StopReason::ToolUse as i32);

    // The result goes back as a tool_result block of a user turn.
    req.messages.push(switchyard_proto::v1::Message {
        role: switchyard_proto::v1::Role::Assistant as i32,
        content: vec![switchyard_proto::v1::ContentPart {
            part: Some(Part::ToolCall(call.clone())),
        }],
    });
    req.messages.push(switchyard_proto::v1::Message {
        role: switchyard_proto::v1::Role::Tool as i32,
        content: vec![switchyard_proto::v1::ContentPart {
            part: Some(Part::ToolResult(switchyard_proto::v1::ToolResult {
                tool_call_id: call.id.clone(),
                content: "snow 2C".into(),
                is_error: false,
            })),
        }],
    });
    let r = client.infer(req).await.unwrap().into_inner();
    assert!(text_of(r.message.as_ref()).ends_with("snow 2C"), "{r:?}");
    let seen = a.requests().pop().unwrap();
    let msgs = seen.body["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
    assert_eq!(
        msgs[1]["content"][0]["input"],
        json!({"query": "weather in Bern"})
    );
    assert_eq!(msgs[2]["role"], "user");
    assert_eq!(msgs[2]["content"][0]["tool_use_id"], call.id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_text_and_a_mid_stream_error_ends_with_an_error_status() {
    let (a, _b, spoke) = anthropic_pair().await;
    let mut client = spoke.grpc().await.unwrap();
    let mut stream = client
        .infer_stream(request(&["sonnet"], "one two three"))
        .await
        .unwrap()
        .into_inner();
    let (mut text, mut end) = (String::new(), None);
    while let Some(ev) = stream.next().await {
        match ev.unwrap().event {
            Some(Event::Delta(d)) => text.push_str(&d.text),
            Some(Event::End(e)) => end = Some(e),
            _ => {}
        }
    }
    assert!(text.ends_with("one two three"), "{text}");
    let end = end.unwrap();
    assert_eq!(end.stop_reason, StopReason::EndTurn as i32);
    assert!(end.usage.unwrap().input_tokens > 0);

    a.set_behavior(SONNET, Behavior::StreamFailAfter { chunks: 2 });
    let mut stream = client
        .infer_stream(request(&["sonnet"], "one two three"))
        .await
        .unwrap()
        .into_inner();
    let mut deltas = 0;
    let mut failed = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(ev) => {
                if matches!(ev.event, Some(Event::Delta(_))) {
                    deltas += 1;
                }
                assert!(
                    !matches!(ev.event, Some(Event::End(_))),
                    "clean end after a failure"
                );
            }
            Err(s) => failed = Some(s),
        }
    }
    assert_eq!(deltas, 2);
    assert!(failed.is_some(), "the stream must end with an error status");
}
