//! Response-cache answers on the OpenAI surface: a hit or a coalesced answer as JSON or as SSE
//! chunks (replayed one per word, as an upstream would stream it), and a follower of a streaming
//! call live. The cache itself (`cache`) and its step on the request path (`gateway::lookup`)
//! know no wire format.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use switchyard_quota::RateState;

use super::wire::{self, ChatRequest};
use crate::cache::{Answer, Flight};
use crate::headers;

/// How to answer a request that was served without a call of its own.
#[derive(Clone)]
pub struct Reply {
    pub id: String,
    pub created: u64,
    pub include_usage: bool,
    pub stream: bool,
    pub deadline: Instant,
}

impl Reply {
    pub fn for_request(req: &ChatRequest, request_id: &str, deadline: Instant) -> Reply {
        Reply {
            id: format!("chatcmpl-{request_id}"),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            include_usage: req.stream_options.as_ref().is_some_and(|o| o.include_usage),
            stream: req.stream,
            deadline,
        }
    }
}

/// A stored or coalesced answer (`outcome`: `hit` or `coalesced`) as the client asked for it:
/// JSON, or SSE chunks replayed one per word.
pub fn answer(
    reply: &Reply,
    answer: &Arc<Answer>,
    outcome: &'static str,
    state: &RateState,
) -> Response {
    let mut resp = if reply.stream {
        replay(reply.clone(), answer.clone())
    } else {
        json_reply(reply, answer)
    };
    finish_headers(resp.headers_mut(), answer, outcome, state);
    resp
}

/// Follows a streaming leader live (`coalesced`).
pub fn live(reply: Reply, flight: Arc<Flight>, state: &RateState) -> Response {
    let mut resp = live_sse(reply, flight);
    headers::set(resp.headers_mut(), headers::CACHE, "coalesced");
    headers::ratelimit(resp.headers_mut(), state);
    resp
}

fn finish_headers(h: &mut HeaderMap, answer: &Answer, outcome: &'static str, state: &RateState) {
    headers::set(h, headers::CACHE, outcome);
    headers::route(
        h,
        &answer.provider,
        &answer.account,
        &answer.region,
        &answer.model,
        0,
    );
    headers::ratelimit(h, state);
}

fn json_reply(reply: &Reply, answer: &Answer) -> Response {
    axum::Json(wire::completion_json(
        &reply.id,
        reply.created,
        &answer.response(),
    ))
    .into_response()
}

fn chunk(reply: &Reply, model: &str, delta: serde_json::Value, finish: Option<&str>) -> Event {
    Event::default().data(
        wire::chunk_json(
            &reply.id,
            reply.created,
            model,
            delta,
            finish,
            reply.include_usage,
        )
        .to_string(),
    )
}

fn end_events(reply: &Reply, answer: &Answer) -> Vec<Event> {
    let mut out = vec![chunk(
        reply,
        &answer.model,
        json!({}),
        Some(wire::finish_reason(answer.stop_reason)),
    )];
    if reply.include_usage {
        out.push(
            Event::default().data(
                wire::usage_chunk_json(
                    &reply.id,
                    reply.created,
                    &answer.model,
                    Some(&answer.usage()),
                )
                .to_string(),
            ),
        );
    }
    out.push(Event::default().data("[DONE]"));
    out
}

/// A stored answer as SSE chunks (one per word, as an upstream would stream it).
fn replay(reply: Reply, answer: Arc<Answer>) -> Response {
    let mut events = vec![chunk(
        &reply,
        &answer.model,
        json!({"role": "assistant", "content": ""}),
        None,
    )];
    for piece in answer.text.split_inclusive(' ') {
        events.push(chunk(
            &reply,
            &answer.model,
            json!({"content": piece}),
            None,
        ));
    }
    events.extend(end_events(&reply, &answer));
    let stream = async_stream::stream! {
        for e in events {
            yield Ok::<_, Infallible>(e);
        }
    };
    Sse::new(stream).into_response()
}

/// Follows a streaming leader: every delta so far, then the rest as they arrive.
fn live_sse(reply: Reply, flight: Arc<Flight>) -> Response {
    let events = async_stream::stream! {
        let mut rx = flight.subscribe();
        let mut sent = 0usize;
        let mut model = flight.model();
        yield Ok::<_, Infallible>(chunk(&reply, &model, json!({"role": "assistant", "content": ""}), None));
        loop {
            let (deltas, done) = flight.read(sent);
            for d in deltas {
                sent += 1;
                yield Ok(chunk(&reply, &model, json!({"content": d}), None));
            }
            match done {
                Some(Ok(answer)) => {
                    model.clone_from(&answer.model);
                    for e in end_events(&reply, &answer) {
                        yield Ok(e);
                    }
                    break;
                }
                Some(Err(())) => {
                    yield Ok(Event::default().data(
                        json!({"error": {"message": "the upstream failed while streaming", "type": "server_error", "code": "stream_interrupted", "param": null}}).to_string(),
                    ));
                    break;
                }
                None => {}
            }
            match tokio::time::timeout_at(reply.deadline.into(), rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    yield Ok(Event::default().data(
                        json!({"error": {"message": "deadline exceeded", "type": "server_error", "code": "stream_interrupted", "param": null}}).to_string(),
                    ));
                    break;
                }
            }
        }
    };
    Sse::new(events).into_response()
}
