//! Response-cache answers on the OpenAI surface: a hit or a coalesced answer as JSON or as SSE
//! chunks (replayed as an upstream would stream it: every choice, reasoning, tool calls,
//! logprobs, text one word a chunk), and a follower of a streaming call live. The cache itself (`cache`) and its step on the request path (`gateway::lookup`)
//! know no wire format.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use axum::response::sse::Sse;
use axum::response::{IntoResponse, Response};
use switchyard_quota::RateState;

use super::stream::{self, Encoder};
use super::wire::{self, ChatRequest, ChunkHead};
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
    crate::surface::json_response(&wire::completion_json(
        &reply.id,
        reply.created,
        &answer.response(),
    ))
}

impl Reply {
    fn encoder(&self, model: &str) -> Encoder {
        Encoder::new(ChunkHead {
            id: self.id.clone(),
            created: self.created,
            model: model.to_string(),
            include_usage: self.include_usage,
        })
    }
}

/// A stored answer as SSE chunks, as the upstream would have streamed it
/// ([`Answer::stream_deltas`]: every choice, reasoning, tool calls, logprobs; text one word a
/// chunk), then the finish chunks and the usage.
fn replay(reply: Reply, answer: Arc<Answer>) -> Response {
    let mut enc = reply.encoder(&answer.model);
    let mut events = vec![enc.open()];
    events.extend(answer.stream_deltas().iter().filter_map(|d| enc.delta(d)));
    events.extend(enc.end(&answer.stream_end()));
    let stream = async_stream::stream! {
        for e in events {
            yield Ok::<_, Infallible>(e);
        }
    };
    Sse::new(stream).into_response()
}

/// Follows a streaming leader: every delta so far, then the rest as they arrive, then the end
/// of its answer.
fn live_sse(reply: Reply, flight: Arc<Flight>) -> Response {
    let events = async_stream::stream! {
        let mut rx = flight.subscribe();
        let mut sent = 0usize;
        let mut enc = reply.encoder(&flight.model());
        yield Ok::<_, Infallible>(enc.open());
        loop {
            let (deltas, done) = flight.read(sent);
            for d in deltas {
                sent += 1;
                if let Some(e) = enc.delta(&d) {
                    yield Ok(e);
                }
            }
            match done {
                Some(Ok(answer)) => {
                    enc.head.model.clone_from(&answer.model);
                    for e in enc.end(&answer.stream_end()) {
                        yield Ok(e);
                    }
                    break;
                }
                Some(Err(())) => {
                    yield Ok(stream::error_event("the upstream failed while streaming"));
                    break;
                }
                None => {}
            }
            match tokio::time::timeout_at(reply.deadline.into(), rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    yield Ok(stream::error_event("deadline exceeded"));
                    break;
                }
            }
        }
    };
    Sse::new(events).into_response()
}
