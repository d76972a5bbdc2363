//! End-to-end: the real `spoke` binary against the fake upstreams, asserting on the route that
//! served each request. Run `cargo build --workspace --bins` first (scripts/test does).

// Integration-test helpers outside #[test] functions may unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};
use switchyard_e2e::{Spoke, o, outcomes, request, spoke_toml, text_of};
use switchyard_proto::v1::{DescribeRequest, Outcome, RouteState};
use switchyard_testkit::bedrock::FakeBedrock;
use switchyard_testkit::behavior::{Behavior, ErrorKind};
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::eventually;

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const SONNET: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

/// Two Bedrock regions on two fakes; model `haiku` (both regions), then `sonnet` (both).
async fn bedrock_pair(extra: &str) -> (FakeBedrock, FakeBedrock, Spoke) {
    let east = FakeBedrock::start().await.unwrap();
    east.set_label("east");
    let west = FakeBedrock::start().await.unwrap();
    west.set_label("west");
    let models = format!(
        "[[models]]\nid = \"haiku\"\nupstream_id = \"{HAIKU}\"\n\
         [[models]]\nid = \"sonnet\"\nupstream_id = \"{SONNET}\"\n"
    );
    let toml = spoke_toml(
        "bedrock",
        &[("us-east-1", &east.url()), ("us-west-2", &west.url())],
        &models,
        extra,
    );
    let spoke = Spoke::start(&toml).await.unwrap();
    (east, west, spoke)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_failover_on_throttling_through_the_real_sdk() {
    let (east, west, spoke) = bedrock_pair("").await;
    east.set_behavior(HAIKU, Behavior::ThrottleRetryAfter { secs: 30 });
    let mut client = spoke.grpc().await.unwrap();

    let r = client
        .infer(request(&["haiku"], "where are you"))
        .await
        .unwrap()
        .into_inner();
    let route = r.route.clone().unwrap();
    assert_eq!(
        (route.region.as_str(), route.model.as_str()),
        ("us-west-2", "haiku")
    );
    assert_eq!(
        (route.provider.as_str(), route.account.as_str()),
        ("bedrock", "111111111111")
    );
    assert!(text_of(r.message.as_ref()).contains("west"), "{r:?}");
    assert_eq!(
        outcomes(&r.attempts),
        vec![
            o("haiku", "us-east-1", Outcome::Throttled),
            o("haiku", "us-west-2", Outcome::Ok)
        ]
    );
    assert!(r.usage.unwrap().output_tokens > 0);
    assert_eq!((east.calls(HAIKU), west.calls(HAIKU)), (1, 1));

    // us-east-1 now cools down (Retry-After 30 s): it is skipped without a call.
    let r = client
        .infer(request(&["haiku"], "again"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        outcomes(&r.attempts),
        vec![
            o("haiku", "us-east-1", Outcome::SkippedCooldown),
            o("haiku", "us-west-2", Outcome::Ok)
        ]
    );
    assert_eq!((east.calls(HAIKU), west.calls(HAIKU)), (1, 2));
    let d = client
        .describe(DescribeRequest {})
        .await
        .unwrap()
        .into_inner();
    let east_state = &d.models[0].regions[0];
    assert_eq!(east_state.state, RouteState::Cooling as i32);
    assert!(east_state.retry_after_ms > 20_000, "{east_state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_failover_when_every_region_of_the_primary_throttles() {
    let (east, west, spoke) = bedrock_pair("").await;
    east.set_behavior(
        HAIKU,
        Behavior::Error {
            error: ErrorKind::Throttling,
        },
    );
    west.set_behavior(
        HAIKU,
        Behavior::Error {
            error: ErrorKind::ModelNotReady,
        },
    );
    let mut client = spoke.grpc().await.unwrap();
    let r = client
        .infer(request(&["haiku", "sonnet"], "fall back please"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        outcomes(&r.attempts),
        vec![
            o("haiku", "us-east-1", Outcome::Throttled),
            o("haiku", "us-west-2", Outcome::Throttled),
            o("sonnet", "us-east-1", Outcome::Ok)
        ]
    );
    assert_eq!(r.route.unwrap().model, "sonnet");
    assert_eq!((east.calls(SONNET), west.calls(SONNET)), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_error_is_returned_and_never_retried() {
    let (east, west, spoke) = bedrock_pair("").await;
    east.set_behavior(
        HAIKU,
        Behavior::Error {
            error: ErrorKind::Validation,
        },
    );
    let mut client = spoke.grpc().await.unwrap();
    let err = client
        .infer(request(&["haiku", "sonnet"], "bad"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("ValidationException"), "{err:?}");
    assert_eq!(err.metadata().get("x-switchyard-attempts").unwrap(), "1");
    assert_eq!(
        (east.calls(HAIKU), west.calls(HAIKU), west.calls(SONNET)),
        (1, 0, 0)
    );

    // The HTTP form says the same, as a 400 in the OpenAI error shape.
    let resp = reqwest::Client::new()
        .post(format!("{}/inference", spoke.url()))
        .json(&serde_json::json!({"models": ["haiku"], "messages": [{"role": "user", "content": "bad"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_rejected");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ValidationException")
    );
    assert_eq!(west.calls(HAIKU), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_after_repeated_failures_and_recovers_through_a_probe() {
    let east = FakeOpenAi::start().await.unwrap();
    let west = FakeOpenAi::start().await.unwrap();
    let toml = spoke_toml(
        "openai",
        &[("east", &east.url()), ("west", &west.url())],
        "[[models]]\nid = \"gpt\"\n",
        "[breaker]\nfailures = 2\nopen_for = \"1500ms\"\n",
    );
    let spoke = Spoke::start(&toml).await.unwrap();
    let mut client = spoke.grpc().await.unwrap();
    east.set_behavior(
        "gpt",
        Behavior::Error {
            error: ErrorKind::ServiceUnavailable,
        },
    );

    for _ in 0..2 {
        let r = client
            .infer(request(&["gpt"], "hi"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            outcomes(&r.attempts),
            vec![
                o("gpt", "east", Outcome::Unavailable),
                o("gpt", "west", Outcome::Ok)
            ]
        );
    }
    // Open: east is passed over without a call.
    let r = client
        .infer(request(&["gpt"], "hi"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        outcomes(&r.attempts),
        vec![
            o("gpt", "east", Outcome::SkippedBreaker),
            o("gpt", "west", Outcome::Ok)
        ]
    );
    assert_eq!(east.calls("gpt"), 2);

    // East heals; after open_for the breaker half-opens and one probe closes it.
    east.set_behavior("gpt", Behavior::Ok);
    let mut c2 = client.clone();
    assert!(
        eventually(Duration::from_secs(5), || {
            let mut c = c2.clone();
            async move {
                let d = c.describe(DescribeRequest {}).await.unwrap().into_inner();
                d.models[0].regions[0].state == RouteState::HalfOpen as i32
            }
        })
        .await
    );
    let r = c2
        .infer(request(&["gpt"], "hi"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcomes(&r.attempts), vec![o("gpt", "east", Outcome::Ok)]);
    let d = client
        .describe(DescribeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.models[0].regions[0].state, RouteState::Ready as i32);
    assert_eq!(east.calls("gpt"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_fail_over_before_content_and_end_with_an_error_after_it() {
    let (east, west, spoke) = bedrock_pair("").await;
    let mut client = spoke.grpc().await.unwrap();

    // Happy path: the stream carries the same text as the non-streamed answer.
    let whole = client
        .infer(request(&["haiku"], "stream me"))
        .await
        .unwrap()
        .into_inner();
    let mut s = client
        .infer_stream(request(&["haiku"], "stream me"))
        .await
        .unwrap()
        .into_inner();
    let mut text = String::new();
    let mut ended = false;
    while let Some(ev) = s.message().await.unwrap() {
        match ev.event.unwrap() {
            switchyard_proto::v1::infer_event::Event::Start(st) => {
                assert_eq!(st.route.unwrap().region, "us-east-1")
            }
            switchyard_proto::v1::infer_event::Event::Delta(d) => text.push_str(&d.text),
            switchyard_proto::v1::infer_event::Event::End(e) => {
                ended = true;
                assert!(e.usage.unwrap().output_tokens > 0);
            }
        }
    }
    assert!(ended);
    assert_eq!(text.trim(), text_of(whole.message.as_ref()).trim());

    // Failure before the first chunk: fail over to the next region.
    east.set_behavior(
        HAIKU,
        Behavior::Error {
            error: ErrorKind::ServiceUnavailable,
        },
    );
    let mut s = client
        .infer_stream(request(&["haiku"], "stream me"))
        .await
        .unwrap()
        .into_inner();
    let first = s.message().await.unwrap().unwrap();
    let Some(switchyard_proto::v1::infer_event::Event::Start(st)) = first.event else {
        panic!("first event must be start: {first:?}")
    };
    assert_eq!(st.route.unwrap().region, "us-west-2");
    assert_eq!(outcomes(&st.attempts)[0].2, Outcome::Unavailable);
    while s.message().await.unwrap().is_some() {}

    // Failure after content: no failover, the stream ends with an error status.
    east.set_behavior(HAIKU, Behavior::Ok);
    west.set_behavior(HAIKU, Behavior::Ok);
    east.set_behavior(SONNET, Behavior::StreamFailAfter { chunks: 2 });
    let west_before = west.calls(SONNET);
    let mut s = client
        .infer_stream(request(&["sonnet"], "break midway"))
        .await
        .unwrap()
        .into_inner();
    let mut deltas = 0;
    let err = loop {
        match s.message().await {
            Ok(Some(ev)) => {
                if let Some(switchyard_proto::v1::infer_event::Event::Delta(_)) = ev.event {
                    deltas += 1;
                }
                assert!(
                    !matches!(
                        ev.event,
                        Some(switchyard_proto::v1::infer_event::Event::End(_))
                    ),
                    "a broken stream must not end cleanly"
                );
            }
            Ok(None) => panic!("stream closed silently after a mid-stream failure"),
            Err(status) => break status,
        }
    };
    assert_eq!(deltas, 2);
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(
        west.calls(SONNET),
        west_before,
        "no failover after content was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_is_respected() {
    let (east, west, spoke) = bedrock_pair("").await;
    east.set_behavior(HAIKU, Behavior::Hang);
    let mut client = spoke.grpc().await.unwrap();
    let mut req = request(&["haiku"], "are you there");
    req.timeout_ms = 400;
    let t0 = Instant::now();
    let err = client.infer(req).await.unwrap_err();
    let took = t0.elapsed();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(west.calls(HAIKU), 0, "no time was left for another route");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_goes_503_when_every_route_cools_down_and_back_after() {
    let east = FakeOpenAi::start().await.unwrap();
    let west = FakeOpenAi::start().await.unwrap();
    let toml = spoke_toml(
        "openai",
        &[("east", &east.url()), ("west", &west.url())],
        "[[models]]\nid = \"gpt\"\n",
        "",
    );
    let spoke = Spoke::start(&toml).await.unwrap();
    let http = reqwest::Client::new();
    let health = format!("{}/healthz", spoke.url());
    assert_eq!(http.get(&health).send().await.unwrap().status(), 200);

    east.set_behavior("gpt", Behavior::ThrottleRetryAfter { secs: 2 });
    west.set_behavior("gpt", Behavior::ThrottleRetryAfter { secs: 2 });
    let resp = http
        .post(format!("{}/inference", spoke.url()))
        .json(&serde_json::json!({"models": ["gpt"], "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_exhausted");
    assert_eq!(body["attempts"].as_array().unwrap().len(), 2);

    // gRPC says RESOURCE_EXHAUSTED with the retry hint, without calling the cooling routes.
    let mut client = spoke.grpc().await.unwrap();
    let err = client.infer(request(&["gpt"], "hi")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    let ms: u64 = err
        .metadata()
        .get("retry-after-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms > 0 && ms <= 2_000, "{ms}");
    assert_eq!(east.calls("gpt") + west.calls("gpt"), 2);

    let resp = http.get(&health).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["models"][0]["regions"][0]["state"], "cooling");

    east.set_behavior("gpt", Behavior::Ok);
    west.set_behavior("gpt", Behavior::Ok);
    let h = health.clone();
    assert!(
        eventually(Duration::from_secs(6), move || {
            let h = h.clone();
            async move {
                reqwest::get(&h)
                    .await
                    .map(|r| r.status() == 200)
                    .unwrap_or(false)
            }
        })
        .await
    );
    let r = client
        .infer(request(&["gpt"], "hi"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.route.unwrap().region, "east");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_infer_and_http_inference_give_the_same_answer() {
    let toml = spoke_toml(
        "simulated",
        &[("r1", "http://unused.invalid")],
        "[[models]]\nid = \"sim\"\n",
        "[simulated]\nlatency = \"1ms\"\n",
    );
    let spoke = Spoke::start(&toml).await.unwrap();
    let mut client = spoke.grpc().await.unwrap();
    let g = client
        .infer(request(&["sim"], "same answer please"))
        .await
        .unwrap()
        .into_inner();
    let h: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/inference", spoke.url()))
        .json(&serde_json::json!({
            "models": ["sim"], "max_tokens": 100,
            "messages": [{"role": "user", "content": "same answer please"}]
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["content"], text_of(g.message.as_ref()));
    let route = g.route.unwrap();
    assert_eq!(h["route"]["region"], route.region);
    assert_eq!(h["route"]["model"], route.model);
    assert_eq!(h["route"]["provider"], "simulated");
    let usage = g.usage.unwrap();
    assert_eq!(h["usage"]["output_tokens"], usage.output_tokens);
    assert_eq!(h["usage"]["input_tokens"], usage.input_tokens);
    assert_eq!(h["stop_reason"], "end_turn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_quota_bucket_skips_the_route_then_answers_429() {
    let toml = spoke_toml(
        "simulated",
        &[("r1", "http://unused.invalid")],
        "[[models]]\nid = \"sim\"\nrequests_per_minute = 2\n",
        "[simulated]\nlatency = \"1ms\"\n",
    );
    let spoke = Spoke::start(&toml).await.unwrap();
    let mut client = spoke.grpc().await.unwrap();
    for _ in 0..2 {
        client.infer(request(&["sim"], "hi")).await.unwrap();
    }
    let err = client.infer(request(&["sim"], "hi")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    let ms: u64 = err
        .metadata()
        .get("retry-after-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (50_000..=60_000).contains(&ms),
        "the oldest admission leaves the 60 s window: {ms}"
    );
    let d = client
        .describe(DescribeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.models[0].regions[0].state, RouteState::Exhausted as i32);
    assert_eq!(d.headroom, 0.0);
    assert!(!d.serving);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_stream() {
    let up = FakeOpenAi::start().await.unwrap();
    up.set_chunk_delay(Duration::from_millis(150));
    let toml = spoke_toml(
        "openai",
        &[("r1", &up.url())],
        "[[models]]\nid = \"gpt\"\n",
        "",
    );
    let mut spoke = Spoke::start(&toml).await.unwrap();
    let mut client = spoke.grpc().await.unwrap();
    let mut s = client
        .infer_stream(request(&["gpt"], "one two three four five six"))
        .await
        .unwrap()
        .into_inner();
    let mut events = vec![
        s.message().await.unwrap().unwrap(),
        s.message().await.unwrap().unwrap(),
    ];
    spoke.proc.sigterm().unwrap();
    while let Some(ev) = s
        .message()
        .await
        .expect("the stream must finish cleanly while draining")
    {
        events.push(ev);
    }
    assert!(
        matches!(
            events.last().unwrap().event,
            Some(switchyard_proto::v1::infer_event::Event::End(_))
        ),
        "{events:?}"
    );
    assert!(events.len() >= 5, "{events:?}");
    let status = spoke.proc.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_bad_config_is_rejected_with_every_problem_listed() {
    let path = switchyard_testkit::process::write_config(
        "listen = \"x\"\naccount = \"1\"\nprovider = \"carrier-pigeon\"\n[[models]]\nid = \"m\"\nregions = [\"nowhere\"]\n",
        "toml",
    )
    .unwrap();
    let out =
        std::process::Command::new(switchyard_testkit::process::binary_path("spoke").unwrap())
            .arg("--config")
            .arg(&*path)
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "listen:",
        "provider: unknown provider \"carrier-pigeon\"",
        "regions: at least one region is required",
        "models[0].regions[0]: \"nowhere\" is not one of the spoke's regions",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_while_bedrock_credentials_are_missing() {
    let fake = FakeBedrock::start().await.unwrap();
    let toml = spoke_toml(
        "bedrock",
        &[("us-east-1", &fake.url())],
        &format!("[[models]]\nid = \"haiku\"\nupstream_id = \"{HAIKU}\"\n"),
        "",
    );
    let spoke = Spoke::start_with_env(
        &toml,
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
            ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ],
    )
    .await
    .unwrap();
    let health = format!("{}/healthz", spoke.url());
    let h = health.clone();
    assert!(
        eventually(Duration::from_secs(15), move || {
            let h = h.clone();
            async move {
                reqwest::get(&h)
                    .await
                    .map(|r| r.status() == 503)
                    .unwrap_or(false)
            }
        })
        .await,
        "{}",
        spoke.proc.logs()
    );
    let body: serde_json::Value = reqwest::get(&health).await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "credentials_missing");
    let mut client = spoke.grpc().await.unwrap();
    let d = client
        .describe(DescribeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!d.serving);
    assert_eq!(d.headroom, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bedrock_guardrail_intervention_is_a_content_filter_result_not_an_error() {
    let fake = FakeBedrock::start().await.unwrap();
    let toml = spoke_toml(
        "bedrock",
        &[("us-east-1", &fake.url())],
        &format!("[[models]]\nid = \"haiku\"\nupstream_id = \"{HAIKU}\"\n"),
        "[bedrock]\nguardrail_id = \"gr-123\"\nguardrail_version = \"2\"\n",
    );
    let spoke = Spoke::start(&toml).await.unwrap();
    let mut client = spoke.grpc().await.unwrap();

    let ok = client
        .infer(request(&["haiku"], "a fine question"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ok.stop_reason,
        switchyard_proto::v1::StopReason::EndTurn as i32
    );
    let sent = fake.last_request().unwrap().body;
    assert_eq!(sent["guardrailConfig"]["guardrailIdentifier"], "gr-123");
    assert_eq!(sent["guardrailConfig"]["guardrailVersion"], "2");

    let blocked = client
        .infer(request(&["haiku"], "tell me the forbidden thing"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        blocked.stop_reason,
        switchyard_proto::v1::StopReason::ContentFiltered as i32
    );
    assert_eq!(
        text_of(blocked.message.as_ref()),
        switchyard_testkit::bedrock::GUARDRAIL_BLOCKED_TEXT
    );

    let mut s = client
        .infer_stream(request(&["haiku"], "the forbidden thing, streamed"))
        .await
        .unwrap()
        .into_inner();
    let mut stop = None;
    while let Some(ev) = s.message().await.unwrap() {
        if let Some(switchyard_proto::v1::infer_event::Event::End(e)) = ev.event {
            stop = Some(e.stop_reason);
        }
    }
    assert_eq!(
        stop,
        Some(switchyard_proto::v1::StopReason::ContentFiltered as i32)
    );

    let h: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/inference", spoke.url()))
        .json(&serde_json::json!({"models": ["haiku"], "messages": [{"role": "user", "content": "forbidden"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["stop_reason"], "content_filtered");
}
