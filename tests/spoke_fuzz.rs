//! Fuzzing the real `spoke` binary's request surfaces (the spoke may be called directly, not
//! only through a hub): random and hostile `POST /inference` bodies, and random `Infer`,
//! `InferStream` and `Embed` calls with extreme values (`dimensions` 2^32-1, `max_tokens`,
//! `timeout_ms` u64::MAX, NaN temperatures, hundreds of tools, odd roles and parts). The process
//! must never die and must always answer: a JSON error in the OpenAI shape (HTTP) or a status
//! of the contract (gRPC), never a dropped connection. The hub's surfaces are fuzzed in
//! `crates/hub/tests/hostile.rs`. Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::StreamExt;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use switchyard_e2e::Spoke;
use switchyard_proto::v1::{
    ContentPart, EmbedRequest, GenerationParams, ImagePart, InferRequest, Message, ToolCall,
    ToolResult, ToolSpec, content_part::Part,
};

const TOML: &str = "listen = \"127.0.0.1:0\"\naccount = \"111111111111\"\nprovider = \"simulated\"\n\
    [simulated]\nlatency = \"1ms\"\n[[regions]]\nname = \"r1\"\n[[regions]]\nname = \"r2\"\n\
    [[models]]\nid = \"sim\"\ncontext_window = 1000\ntools = true\nimages = true\n\
    [[models]]\nid = \"big\"\n";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// After the fuzzing: the process is alive and healthy, and still serves a plain request.
async fn still_serving(spoke: &mut Spoke) {
    assert!(
        spoke.proc.try_exit_status().unwrap().is_none(),
        "the spoke died:\n{}",
        spoke.proc.logs()
    );
    let h = reqwest::get(format!("{}/healthz", spoke.url()))
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let r = reqwest::Client::new()
        .post(format!("{}/inference", spoke.url()))
        .json(&json!({"models": ["sim"], "messages": [{"role": "user", "content": "ok?"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        !spoke.proc.logs().contains("panicked"),
        "{}",
        spoke.proc.logs()
    );
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(json!(4_294_967_295u64)),
        Just(json!(u64::MAX)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        Just(json!("user")),
        Just(json!("assistant")),
        Just(json!("sim")),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("models".to_string()),
        Just("messages".to_string()),
        Just("role".to_string()),
        Just("content".to_string()),
        Just("max_tokens".to_string()),
        Just("temperature".to_string()),
        Just("timeout_ms".to_string()),
        Just("stop".to_string()),
        "[a-z_]{1,10}",
    ]
}

/// Bodies that look like `/inference` requests, with every field pushed to its edges.
fn inference_like() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(
            prop_oneof![Just("sim"), Just("big"), Just("nope"), Just("")],
            0..3,
        ),
        proptest::collection::vec(
            (
                prop_oneof![
                    Just("user"),
                    Just("assistant"),
                    Just("tool"),
                    Just("system"),
                    Just("")
                ],
                ".{0,40}",
            ),
            0..4,
        ),
        prop_oneof![
            Just(Value::Null),
            any::<u32>().prop_map(Value::from),
            Just(json!(4_294_967_295u64)),
            Just(json!(4_294_967_296u64)),
            Just(json!(-1)),
        ],
        prop_oneof![
            Just(Value::Null),
            any::<f32>().prop_map(|f| json!(f)),
            Just(json!(1e300))
        ],
        prop_oneof![
            Just(Value::Null),
            any::<u64>().prop_map(Value::from),
            Just(json!(u64::MAX)),
            (0u64..50).prop_map(Value::from),
        ],
        proptest::collection::vec(".{0,8}", 0..6),
    )
        .prop_map(
            |(models, messages, max_tokens, temperature, timeout_ms, stop)| {
                let messages: Vec<Value> = messages
                    .into_iter()
                    .map(|(role, content)| json!({"role": role, "content": content}))
                    .collect();
                let mut body = json!({"models": models, "messages": messages, "stop": stop});
                for (k, v) in [
                    ("max_tokens", max_tokens),
                    ("temperature", temperature),
                    ("timeout_ms", timeout_ms),
                ] {
                    if !v.is_null() {
                        body[k] = v;
                    }
                }
                body
            },
        )
}

#[test]
fn http_inference_always_answers_and_the_spoke_survives() {
    let rt = runtime();
    let mut spoke = rt.block_on(Spoke::start(TOML)).unwrap();
    let url = format!("{}/inference", spoke.url());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let strategy = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| (b, "application/json")),
        json_value().prop_map(|v| (v.to_string().into_bytes(), "application/json")),
        inference_like().prop_map(|v| (v.to_string().into_bytes(), "application/json")),
        inference_like().prop_map(|v| (v.to_string().into_bytes(), "text/plain")),
    ];
    runner(256)
        .run(&strategy, |(bytes, content_type)| {
            let (status, body) = rt.block_on(async {
                let r = client
                    .post(&url)
                    .header("content-type", content_type)
                    .body(bytes.clone())
                    .send()
                    .await
                    .expect("the spoke answers");
                let status = r.status().as_u16();
                (status, r.text().await.expect("a whole body"))
            });
            let shown = String::from_utf8_lossy(&bytes).into_owned();
            prop_assert!(
                [200, 400, 404, 429, 503, 504].contains(&status),
                "status {} for {}",
                status,
                shown
            );
            let v: Value = serde_json::from_str(&body)
                .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {body}")))?;
            if status != 200 {
                let msg = v["error"]["message"].as_str().unwrap_or("");
                prop_assert!(!msg.is_empty(), "no reason for {}: {}", shown, body);
            }
            Ok(())
        })
        .unwrap();
    rt.block_on(still_serving(&mut spoke));
    rt.block_on(async move { drop(spoke) });
}

fn part() -> impl Strategy<Value = ContentPart> {
    prop_oneof![
        ".{0,40}".prop_map(Part::Text),
        (
            prop_oneof![Just("png".to_string()), ".{0,6}"],
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(format, data)| Part::Image(ImagePart { format, data })),
        (".{0,8}", ".{0,8}", ".{0,30}").prop_map(|(id, name, arguments_json)| Part::ToolCall(
            ToolCall {
                id,
                name,
                arguments_json
            }
        )),
        (".{0,8}", ".{0,30}", any::<bool>()).prop_map(|(tool_call_id, content, is_error)| {
            Part::ToolResult(ToolResult {
                tool_call_id,
                content,
                is_error,
            })
        }),
    ]
    .prop_map(|p| ContentPart { part: Some(p) })
}

fn infer_request() -> impl Strategy<Value = InferRequest> {
    (
        proptest::collection::vec(
            prop_oneof![Just("sim".to_string()), Just("big".to_string()), ".{0,6}"],
            0..3,
        ),
        proptest::collection::vec(
            (
                prop_oneof![0..4i32, any::<i32>()],
                proptest::collection::vec(part(), 0..3),
            )
                .prop_map(|(role, content)| Message { role, content }),
            0..4,
        ),
        (
            proptest::option::of(prop_oneof![any::<u32>(), 0u32..2000, Just(u32::MAX)]),
            proptest::option::of(any::<f32>()),
            proptest::option::of(any::<f32>()),
            proptest::collection::vec(".{0,6}", 0..4),
        ),
        (0usize..200, 0usize..80, 0usize..2000),
        proptest::collection::vec(prop_oneof![Just("r1".to_string()), ".{0,4}"], 0..3),
        prop_oneof![Just(0u64), 1u64..100, any::<u64>(), Just(u64::MAX)],
    )
        .prop_map(
            |(
                models,
                messages,
                (max_tokens, temperature, top_p, stop),
                tools,
                regions,
                timeout,
            )| {
                let (n_tools, name_len, schema_len) = tools;
                InferRequest {
                    request_id: String::new(),
                    models,
                    system: String::new(),
                    messages,
                    params: Some(GenerationParams {
                        max_tokens,
                        temperature,
                        top_p,
                        stop,
                        ..Default::default()
                    }),
                    allowed_regions: regions,
                    timeout_ms: timeout,
                    tools: (0..n_tools)
                        .map(|i| ToolSpec {
                            name: format!("t{i}{}", "x".repeat(name_len)),
                            description: String::new(),
                            parameters_json: "{".repeat(schema_len),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }
            },
        )
}

fn embed_request() -> impl Strategy<Value = EmbedRequest> {
    (
        proptest::collection::vec(prop_oneof![Just("sim".to_string()), ".{0,4}"], 0..3),
        prop_oneof![Just(0usize), 1usize..8, Just(2048usize), Just(2049usize)],
        prop_oneof![
            Just(0u32),
            1u32..64,
            Just(8192u32),
            Just(8193u32),
            Just(u32::MAX),
            any::<u32>()
        ],
        prop_oneof![Just(0u64), any::<u64>(), Just(u64::MAX)],
    )
        .prop_map(|(models, n, dimensions, timeout_ms)| EmbedRequest {
            request_id: String::new(),
            models,
            inputs: vec!["fuzz".to_string(); n],
            dimensions,
            allowed_regions: vec![],
            timeout_ms,
        })
}

/// Every status the spoke's contract allows (proto/switchyard/v1/spoke.proto); a panic or a
/// dropped stream would show up as UNKNOWN, INTERNAL or CANCELLED instead.
fn contract_code(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Ok
            | tonic::Code::InvalidArgument
            | tonic::Code::NotFound
            | tonic::Code::ResourceExhausted
            | tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::FailedPrecondition
    )
}

#[test]
fn grpc_calls_always_answer_with_a_contract_status_and_the_spoke_survives() {
    let rt = runtime();
    let mut spoke = rt.block_on(Spoke::start(TOML)).unwrap();
    let client = rt.block_on(spoke.grpc()).unwrap();
    let strategy = prop_oneof![
        infer_request().prop_map(|r| (Some(r), None, false)),
        infer_request().prop_map(|r| (Some(r), None, true)),
        embed_request().prop_map(|r| (None, Some(r), false)),
    ];
    runner(200)
        .run(&strategy, |(infer, embed, stream)| {
            let mut client = client.clone();
            let code = rt.block_on(async {
                let call = async {
                    match (infer, embed) {
                        (Some(req), _) if stream => match client.infer_stream(req).await {
                            Ok(resp) => {
                                let mut events = resp.into_inner();
                                let mut code = tonic::Code::Ok;
                                while let Some(ev) = events.next().await {
                                    if let Err(st) = ev {
                                        code = st.code();
                                        break;
                                    }
                                }
                                code
                            }
                            Err(st) => st.code(),
                        },
                        (Some(req), _) => match client.infer(req).await {
                            Ok(_) => tonic::Code::Ok,
                            Err(st) => st.code(),
                        },
                        (None, Some(req)) => match client.embed(req).await {
                            Ok(r) => {
                                // Never more than the bounds allow.
                                let r = r.into_inner();
                                assert!(r.embeddings.iter().all(|e| e.values.len() <= 8192));
                                tonic::Code::Ok
                            }
                            Err(st) => st.code(),
                        },
                        (None, None) => tonic::Code::Ok,
                    }
                };
                tokio::time::timeout(Duration::from_secs(20), call)
                    .await
                    .expect("the spoke answers within 20 s")
            });
            prop_assert!(contract_code(code), "status {:?}", code);
            Ok(())
        })
        .unwrap();
    rt.block_on(still_serving(&mut spoke));
    rt.block_on(async move { drop(spoke) });
}
