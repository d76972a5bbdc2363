//! Property test of the Bedrock event-stream decoding path, end to end: a raw server answers
//! `ConverseStream` with arbitrary bytes, or with a valid `application/vnd.amazon.eventstream`
//! body that is then corrupted (bytes flipped, truncated, junk inserted) and delivered in random
//! network reads; the real `spoke` process decodes it with the AWS SDK. Properties:
//!
//! - the spoke never crashes and always answers (a stream of events or a gRPC error status);
//! - a stream that ends cleanly (`End` event, OK status) carries exactly the text that was sent:
//!   corruption is never turned into silently wrong or truncated output;
//! - the untouched body, in any split, is decoded exactly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use parking_lot::Mutex;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;
use switchyard_e2e::{Spoke, request, spoke_toml};
use switchyard_proto::v1::infer_event::Event;
use switchyard_testkit::bedrock::event_frame;

/// The valid body: messageStart, one delta per word, contentBlockStop, messageStop, metadata.
fn valid_body(words: &[String]) -> (Vec<u8>, String) {
    let mut out = Vec::new();
    let mut text = String::new();
    out.extend_from_slice(&event_frame("messageStart", &json!({"role": "assistant"})).unwrap());
    for w in words {
        let delta = format!("{w} ");
        text.push_str(&delta);
        out.extend_from_slice(
            &event_frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": {"text": delta}}),
            )
            .unwrap(),
        );
    }
    out.extend_from_slice(
        &event_frame("contentBlockStop", &json!({"contentBlockIndex": 0})).unwrap(),
    );
    out.extend_from_slice(&event_frame("messageStop", &json!({"stopReason": "end_turn"})).unwrap());
    out.extend_from_slice(
        &event_frame(
            "metadata",
            &json!({"usage": {"inputTokens": 3, "outputTokens": words.len(), "totalTokens": 3 + words.len()},
                    "metrics": {"latencyMs": 1}}),
        )
        .unwrap(),
    );
    (out, text)
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Truncate { at: usize },
    Insert { at: usize, junk: Vec<u8> },
}

fn apply(mut body: Vec<u8>, m: &[Mutation]) -> Vec<u8> {
    for m in m {
        if body.is_empty() {
            break;
        }
        match m {
            Mutation::Flip { at, xor } => {
                let i = at % body.len();
                body[i] ^= xor.max(&1);
            }
            Mutation::Truncate { at } => body.truncate(at % body.len()),
            Mutation::Insert { at, junk } => {
                let i = at % body.len();
                body.splice(i..i, junk.iter().copied());
            }
        }
    }
    body
}

fn split(body: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    points.push(0);
    points.push(body.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| Bytes::copy_from_slice(&body[w[0]..w[1]]))
        .collect()
}

type Reply = Arc<Mutex<Vec<Bytes>>>;

/// A "Bedrock" that answers every request with the current reply's parts, one write each.
async fn raw_bedrock(reply: Reply) -> String {
    let app = axum::Router::new().fallback(move || {
        let parts = reply.lock().clone();
        async move {
            let stream = futures::stream::iter(parts.into_iter().map(Ok::<_, std::io::Error>));
            Response::builder()
                .status(200)
                .header("content-type", "application/vnd.amazon.eventstream")
                .header("x-amzn-requestid", "fuzz")
                .body(Body::from_stream(stream))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Streams one request; `Ok((text, ended))` when the gRPC stream closed with OK status.
async fn stream_once(spoke: &Spoke) -> Result<(String, bool), tonic::Status> {
    let mut client = spoke
        .grpc()
        .await
        .map_err(|e| tonic::Status::unknown(e.to_string()))?;
    let mut s = client
        .infer_stream(request(&["m1"], "fuzz"))
        .await?
        .into_inner();
    let (mut text, mut ended) = (String::new(), false);
    while let Some(ev) = s.message().await? {
        match ev.event {
            Some(Event::Delta(d)) => text.push_str(&d.text),
            Some(Event::End(_)) => ended = true,
            _ => {}
        }
    }
    Ok((text, ended))
}

fn words() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[a-z]{1,8}", 1..8)
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..24)
        )
            .prop_map(|(at, junk)| Mutation::Insert { at, junk }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_event_stream_decoding_never_crashes_nor_lies() {
    let reply: Reply = Arc::new(Mutex::new(Vec::new()));
    let url = raw_bedrock(reply.clone()).await;
    let spoke = Spoke::start(&spoke_toml(
        "bedrock",
        &[("us-east-1", &url)],
        "[[models]]\nid = \"m1\"\n",
        // Every corrupted stream counts as a failure; keep the breaker out of the way so each
        // case reaches the decoder.
        "[breaker]\nfailures = 1000000\n",
    ))
    .await
    .unwrap();
    let handle = tokio::runtime::Handle::current();
    let run = |f: &mut dyn FnMut(&Spoke) -> Result<(), TestCaseError>| f(&spoke);

    // 1. Untouched bodies in any split decode exactly.
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    let r = reply.clone();
    run(&mut |spoke| {
        runner
            .run(
                &(words(), proptest::collection::vec(any::<usize>(), 0..12)),
                |(words, cuts)| {
                    let (body, text) = valid_body(&words);
                    *r.lock() = split(&body, &cuts);
                    let got = tokio::task::block_in_place(|| handle.block_on(stream_once(spoke)));
                    let (got, ended) = got.map_err(|s| TestCaseError::fail(format!("{s:?}")))?;
                    prop_assert!(ended);
                    prop_assert_eq!(got, text);
                    Ok(())
                },
            )
            .map_err(|e| TestCaseError::fail(e.to_string()))
    })
    .unwrap();

    // 2. Corrupted bodies: an error status, or (if the corruption missed everything that
    //    matters) exactly the original text — never a clean end with different text.
    let mut runner = TestRunner::new(Config {
        cases: 160,
        ..Config::default()
    });
    let r = reply.clone();
    let (errors, clean) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    run(&mut |spoke| {
        runner
            .run(
                &(
                    words(),
                    proptest::collection::vec(mutation(), 1..4),
                    proptest::collection::vec(any::<usize>(), 0..8),
                ),
                |(words, mutations, cuts)| {
                    let (body, text) = valid_body(&words);
                    *r.lock() = split(&apply(body, &mutations), &cuts);
                    match tokio::task::block_in_place(|| handle.block_on(stream_once(spoke))) {
                        Ok((got, true)) => {
                            clean.set(clean.get() + 1);
                            prop_assert_eq!(got, text, "clean end with altered text");
                        }
                        Ok((_, false)) => {
                            return Err(TestCaseError::fail(
                                "stream closed OK without an End event",
                            ));
                        }
                        Err(status) => {
                            errors.set(errors.get() + 1);
                            prop_assert!(
                                !status.message().is_empty(),
                                "error status without a reason: {status:?}"
                            );
                        }
                    }
                    Ok(())
                },
            )
            .map_err(|e| TestCaseError::fail(e.to_string()))
    })
    .unwrap();
    eprintln!(
        "corrupted streams: {} refused, {} clean",
        errors.get(),
        clean.get()
    );
    assert!(
        errors.get() > 0,
        "no corrupted stream was refused (clean={})",
        clean.get()
    );

    // 3. Arbitrary bytes.
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    let r = reply.clone();
    run(&mut |spoke| {
        runner
            .run(
                &(
                    proptest::collection::vec(any::<u8>(), 0..600),
                    proptest::collection::vec(any::<usize>(), 0..6),
                ),
                |(bytes, cuts)| {
                    *r.lock() = split(&bytes, &cuts);
                    let got = tokio::task::block_in_place(|| handle.block_on(stream_once(spoke)));
                    // Random bytes are never a complete, valid answer.
                    prop_assert!(!matches!(got, Ok((_, true))), "{got:?}");
                    Ok(())
                },
            )
            .map_err(|e| TestCaseError::fail(e.to_string()))
    })
    .unwrap();

    // The spoke is still up and serves a good stream.
    let (body, text) = valid_body(&["still".into(), "alive".into()]);
    *reply.lock() = vec![Bytes::from(body)];
    let (got, ended) = stream_once(&spoke).await.unwrap();
    assert!(ended);
    assert_eq!(got, text);
    assert!(
        !spoke.proc.logs().contains("panicked"),
        "{}",
        spoke.proc.logs()
    );
}
