//! The fake Bedrock, driven by the real `aws-sdk-bedrockruntime` client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ConversationRole, ConverseStreamOutput,
    InferenceConfiguration, Message, StopReason, SystemContentBlock,
};
use switchyard_testkit::{Behavior, ErrorKind, FakeBedrock, completion_text};

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

async fn client(fake: &FakeBedrock) -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region("us-east-1")
        .endpoint_url(fake.url())
        .credentials_provider(aws_sdk_bedrockruntime::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    Client::new(&config)
}

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.to_string()))
        .build()
        .unwrap()
}

fn assistant(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::Assistant)
        .content(ContentBlock::Text(text.to_string()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn converse_ok() {
    let fake = FakeBedrock::start().await.unwrap();
    fake.set_label("us-east-1");
    let client = client(&fake).await;
    let out = client
        .converse()
        .model_id(HAIKU)
        .system(SystemContentBlock::Text("be brief".into()))
        .messages(user("first question"))
        .messages(assistant("an answer"))
        .messages(user("one two three four five six seven eight nine ten"))
        .send()
        .await
        .unwrap();
    let msg = out.output().unwrap().as_message().unwrap();
    assert_eq!(msg.role(), &ConversationRole::Assistant);
    let text = msg.content()[0].as_text().unwrap();
    assert_eq!(
        text,
        "Hello from us-east-1 (anthropic.claude-3-haiku-20240307-v1:0): one two three four five six seven eight"
    );
    assert_eq!(
        *text,
        completion_text(
            "us-east-1",
            HAIKU,
            "one two three four five six seven eight nine ten"
        )
    );
    assert_eq!(out.stop_reason(), &StopReason::EndTurn);
    let usage = out.usage().unwrap();
    // be brief (2) + first question (2) + an answer (2) + 10
    assert_eq!(usage.input_tokens(), 16);
    assert_eq!(usage.output_tokens(), 12);
    assert_eq!(usage.total_tokens(), 28);
    assert_eq!(out.metrics().unwrap().latency_ms(), 1);

    assert_eq!(fake.calls(HAIKU), 1);
    assert_eq!(fake.total_calls(), 1);
    let req = fake.last_request().unwrap();
    assert_eq!(
        req.path,
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    assert_eq!(req.model, HAIKU);
    assert!(
        req.header("authorization")
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256 Credential=test/")
    );
    assert_eq!(req.body["messages"][2]["role"], "user");
}

#[tokio::test]
async fn converse_max_tokens() {
    let fake = FakeBedrock::start().await.unwrap();
    let client = client(&fake).await;
    let out = client
        .converse()
        .model_id(HAIKU)
        .messages(user("hi"))
        .inference_config(InferenceConfiguration::builder().max_tokens(3).build())
        .send()
        .await
        .unwrap();
    let text = out.output().unwrap().as_message().unwrap().content()[0]
        .as_text()
        .unwrap()
        .clone();
    assert_eq!(text, "Hello from fake");
    assert_eq!(out.stop_reason(), &StopReason::MaxTokens);
    assert_eq!(out.usage().unwrap().output_tokens(), 3);
}

#[tokio::test]
async fn converse_stream_ok() {
    let fake = FakeBedrock::start().await.unwrap();
    fake.set_label("eu-west-1");
    fake.set_chunk_delay(Duration::from_millis(5));
    let client = client(&fake).await;
    let mut out = client
        .converse_stream()
        .model_id(HAIKU)
        .messages(user("tell me a story"))
        .send()
        .await
        .unwrap();
    let mut deltas = Vec::new();
    let mut stop = None;
    let mut usage = None;
    let mut started = false;
    let mut block_stopped = false;
    while let Some(ev) = out.stream.recv().await.unwrap() {
        match ev {
            ConverseStreamOutput::MessageStart(s) => {
                assert_eq!(s.role(), &ConversationRole::Assistant);
                started = true;
            }
            ConverseStreamOutput::ContentBlockDelta(d) => {
                assert_eq!(d.content_block_index(), 0);
                match d.delta().unwrap() {
                    ContentBlockDelta::Text(t) => deltas.push(t.clone()),
                    other => panic!("unexpected delta {other:?}"),
                }
            }
            ConverseStreamOutput::ContentBlockStop(_) => block_stopped = true,
            ConverseStreamOutput::MessageStop(s) => stop = Some(s.stop_reason().clone()),
            ConverseStreamOutput::Metadata(m) => usage = m.usage().cloned(),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(started && block_stopped);
    assert_eq!(
        deltas.concat(),
        "Hello from eu-west-1 (anthropic.claude-3-haiku-20240307-v1:0): tell me a story"
    );
    assert_eq!(deltas.len(), 8);
    assert_eq!(deltas[0], "Hello ");
    assert_eq!(stop, Some(StopReason::EndTurn));
    let usage = usage.unwrap();
    assert_eq!(usage.input_tokens(), 4);
    assert_eq!(usage.output_tokens(), 8);
    assert_eq!(usage.total_tokens(), 12);
    assert_eq!(fake.calls(HAIKU), 1);
    assert!(
        fake.last_request()
            .unwrap()
            .path
            .ends_with("/converse-stream")
    );
}

#[tokio::test]
async fn converse_errors_map_to_sdk_variants() {
    let fake = FakeBedrock::start().await.unwrap();
    let client = client(&fake).await;
    for kind in ErrorKind::ALL {
        let model = format!("m-{kind:?}");
        fake.set_behavior(&model, Behavior::Error { error: kind });
        let err = client
            .converse()
            .model_id(&model)
            .messages(user("hi"))
            .send()
            .await
            .unwrap_err();
        let SdkError::ServiceError(se) = &err else {
            panic!("{kind:?}: not a service error: {err:?}");
        };
        assert_eq!(
            se.raw().status().as_u16(),
            kind.bedrock_status(),
            "{kind:?}"
        );
        let e = se.err();
        assert_eq!(e.code(), Some(kind.bedrock_name()), "{kind:?}");
        assert!(e.message().unwrap().contains(kind.bedrock_name()));
        let matched = match kind {
            ErrorKind::Throttling => matches!(e, ConverseError::ThrottlingException(_)),
            ErrorKind::ServiceUnavailable => {
                matches!(e, ConverseError::ServiceUnavailableException(_))
            }
            ErrorKind::Validation => matches!(e, ConverseError::ValidationException(_)),
            ErrorKind::ModelNotReady => matches!(e, ConverseError::ModelNotReadyException(_)),
            ErrorKind::InternalServer => matches!(e, ConverseError::InternalServerException(_)),
            ErrorKind::AccessDenied => matches!(e, ConverseError::AccessDeniedException(_)),
            ErrorKind::ModelTimeout => matches!(e, ConverseError::ModelTimeoutException(_)),
        };
        assert!(matched, "{kind:?} came back as {e:?}");
        assert_eq!(fake.calls(&model), 1);
    }
}

#[tokio::test]
async fn model_name_directives() {
    let fake = FakeBedrock::start().await.unwrap();
    let client = client(&fake).await;

    let err = client
        .converse()
        .model_id("m-err-ThrottlingException")
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        ConverseError::ThrottlingException(_)
    ));
    let err = client
        .converse()
        .model_id("m-err-ValidationException")
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        ConverseError::ValidationException(_)
    ));
    let err = client
        .converse()
        .model_id("m-err-ServiceUnavailableException")
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        ConverseError::ServiceUnavailableException(_)
    ));

    // flaky-2: two 503s, then OK.
    for _ in 0..2 {
        let err = client
            .converse()
            .model_id("m-flaky-2")
            .messages(user("hi"))
            .send()
            .await
            .unwrap_err();
        assert!(matches!(
            err.into_service_error(),
            ConverseError::ServiceUnavailableException(_)
        ));
    }
    client
        .converse()
        .model_id("m-flaky-2")
        .messages(user("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(fake.calls("m-flaky-2"), 3);

    // slow-150
    let t = Instant::now();
    client
        .converse()
        .model_id("m-slow-150")
        .messages(user("hi"))
        .send()
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(150));

    // A rule (or default) wins over the directive.
    fake.set_default(Behavior::Ok);
    client
        .converse()
        .model_id("m-err-ThrottlingException")
        .messages(user("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(fake.calls("m-err-ThrottlingException"), 2);
}

#[tokio::test]
async fn throttle_retry_after_and_fail_first() {
    let fake = FakeBedrock::start().await.unwrap();
    let client = client(&fake).await;
    fake.set_behavior(HAIKU, Behavior::ThrottleRetryAfter { secs: 7 });
    let err = client
        .converse()
        .model_id(HAIKU)
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    let SdkError::ServiceError(se) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(se.raw().headers().get("retry-after"), Some("7"));
    assert!(matches!(se.err(), ConverseError::ThrottlingException(_)));

    fake.set_behavior(
        HAIKU,
        Behavior::FailFirst {
            n: 1,
            error: ErrorKind::ModelNotReady,
        },
    );
    let err = client
        .converse()
        .model_id(HAIKU)
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        ConverseError::ModelNotReadyException(_)
    ));
    client
        .converse()
        .model_id(HAIKU)
        .messages(user("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(fake.calls(HAIKU), 3);
    fake.reset_calls();
    assert_eq!(fake.calls(HAIKU), 0);
    assert!(fake.requests().is_empty());
    // reset_calls restarts FailFirst.
    assert!(
        client
            .converse()
            .model_id(HAIKU)
            .messages(user("hi"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn stream_errors_before_first_frame() {
    let fake = FakeBedrock::start().await.unwrap();
    let client = client(&fake).await;
    let err = client
        .converse_stream()
        .model_id("x-err-ThrottlingException")
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        ConverseStreamError::ThrottlingException(_)
    ));
    let err = client
        .converse_stream()
        .model_id("x-err-ValidationException")
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        ConverseStreamError::ValidationException(_)
    ));
}

#[tokio::test]
async fn stream_fails_mid_way() {
    let fake = FakeBedrock::start().await.unwrap();
    let client = client(&fake).await;
    for model in ["m-midstream-3", "plain-model"] {
        if model == "plain-model" {
            fake.set_behavior(model, Behavior::StreamFailAfter { chunks: 3 });
        }
        let mut out = client
            .converse_stream()
            .model_id(model)
            .messages(user("tell me a long story please"))
            .send()
            .await
            .unwrap();
        let mut deltas = Vec::new();
        let err = loop {
            match out.stream.recv().await {
                Ok(Some(ConverseStreamOutput::ContentBlockDelta(d))) => {
                    deltas.push(d.delta().unwrap().as_text().unwrap().clone())
                }
                Ok(Some(ConverseStreamOutput::MessageStart(_))) => {}
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(deltas, vec!["Hello ", "from ", "fake "]);
        let SdkError::ServiceError(se) = &err else {
            panic!("{err:?}")
        };
        assert!(
            matches!(
                se.err(),
                ConverseStreamOutputError::ModelStreamErrorException(_)
            ),
            "{err:?}"
        );
    }

    // Non-streaming calls of a mid-stream behavior get a 500.
    let err = client
        .converse()
        .model_id("m-midstream-3")
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        ConverseError::InternalServerException(_)
    ));
}

#[tokio::test]
async fn hang_never_answers() {
    let fake = FakeBedrock::start().await.unwrap();
    let client = client(&fake).await;
    fake.set_behavior(HAIKU, Behavior::Hang);
    let r = tokio::time::timeout(
        Duration::from_millis(300),
        client
            .converse()
            .model_id(HAIKU)
            .messages(user("hi"))
            .send(),
    )
    .await;
    assert!(r.is_err(), "expected a timeout, got {r:?}");
    assert_eq!(fake.calls(HAIKU), 1);
}

#[tokio::test]
async fn stopped_fake_refuses_and_cuts_hanging_calls() {
    let fake = FakeBedrock::start().await.unwrap();
    let client = client(&fake).await;
    fake.set_behavior(HAIKU, Behavior::Hang);
    let call = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .converse()
                .model_id(HAIKU)
                .messages(user("hi"))
                .send()
                .await
        })
    };
    assert!(
        switchyard_testkit::eventually(Duration::from_secs(5), || async { fake.calls(HAIKU) == 1 })
            .await
    );
    fake.stop();
    // The hanging call is cut (a dispatch/response error), not left hanging.
    let r = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the hanging call should be cut")
        .unwrap();
    assert!(r.is_err());
    // New calls are refused.
    let err = client
        .converse()
        .model_id("other")
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");

    fake.restart().await.unwrap();
    fake.clear_behaviors();
    client
        .converse()
        .model_id(HAIKU)
        .messages(user("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(fake.calls(HAIKU), 2);
}

#[tokio::test]
async fn arn_model_ids_are_decoded() {
    let fake = FakeBedrock::start().await.unwrap();
    let client = client(&fake).await;
    let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0";
    fake.set_behavior(arn, Behavior::Slow { ms: 1 });
    let out = client
        .converse()
        .model_id(arn)
        .messages(user("hi"))
        .send()
        .await
        .unwrap();
    let text = out.output().unwrap().as_message().unwrap().content()[0]
        .as_text()
        .unwrap()
        .clone();
    assert!(text.contains(arn), "{text}");
    assert_eq!(fake.calls(arn), 1);
    assert!(fake.last_request().unwrap().path.contains("%2F"));
}
