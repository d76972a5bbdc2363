//! The Responses SSE encoder of a committed stream: `response.created`, `response.in_progress`,
//! the item events ([`super::output::Output`]), then `response.completed` or
//! `response.incomplete` — each event with its `event:` name and a `sequence_number` counting
//! from 0. A failure after the first event ends the stream with `response.failed` (status
//! `failed`, `error.code` `server_error`), never a silent close. A stored response is written
//! before its last event, so a client that continues it at once finds it.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;

use super::output::{self, Head, Output, Show};
use crate::gateway::StreamItem;
use crate::observe::RequestRecord;
use crate::store::{ResponseStore, Stored};

/// Where a finished response is stored (`store: true`).
pub struct Keep {
    pub store: Arc<ResponseStore>,
    pub tenant: String,
    /// The conversation before the answer (previous responses', then this input).
    pub conversation: Vec<pb::Message>,
}

impl Keep {
    /// Stores `response` with the conversation and `answer` appended; a store that fails is
    /// logged (the answer has been made: the client still gets it; its id then answers 404).
    pub async fn put(self, response: &Value, answer: pb::Message) {
        let Keep {
            store,
            tenant,
            mut conversation,
        } = self;
        conversation.push(answer);
        let id = response["id"].as_str().unwrap_or_default().to_owned();
        let entry = Stored {
            response: response.clone(),
            conversation,
        };
        if let Err(e) = store.put(&tenant, &id, &entry).await {
            tracing::warn!(error = %e, response_id = %id, "response not stored");
        }
    }
}

/// One stream's labels and followers.
pub struct StreamMeta {
    pub head: Head,
    pub show: Show,
    pub keep: Option<Keep>,
    /// Metrics and the audit line, written when the stream ends.
    pub rec: RequestRecord,
    /// Feeds identical requests following this one (and the response cache), with the route
    /// that serves it.
    pub lead: Option<(crate::cache::Leader, crate::model::RouteTaken)>,
}

fn event(seq: &mut u64, mut v: Value) -> Event {
    v["sequence_number"] = json!(*seq);
    *seq += 1;
    let name = v["type"].as_str().unwrap_or("message").to_owned();
    Event::default().event(name).data(v.to_string())
}

/// A committed stream as Responses SSE events.
pub fn sse(
    mut items: futures::stream::BoxStream<'static, StreamItem>,
    meta: StreamMeta,
) -> Response {
    let StreamMeta {
        head,
        show,
        mut keep,
        mut rec,
        mut lead,
    } = meta;
    let events = async_stream::stream! {
        let mut seq = 0u64;
        let mut out = Output::new(show);
        let start = output::response_json(&head, "in_progress", vec![], Value::Null, Value::Null, Value::Null);
        yield Ok::<_, Infallible>(event(&mut seq, json!({"type": "response.created", "response": start})));
        yield Ok(event(&mut seq, json!({"type": "response.in_progress", "response": start})));
        let mut ended = false;
        while let Some(item) = items.next().await {
            match item {
                // One answer only (the Responses API has no `n`): other choices' pieces, which no
                // request of this surface asks for, are not shown.
                StreamItem::Delta(d) if d.choice != 0 => {}
                StreamItem::Delta(d) => {
                    if let Some((l, _)) = &lead {
                        l.delta(&d);
                    }
                    let mut evs = Vec::new();
                    if let Some(t) = &d.thinking {
                        evs.extend(out.thinking(t));
                    }
                    if !d.text.is_empty() {
                        evs.extend(out.text(&d.text, output::logprobs_content(&d.logprobs_json)));
                    }
                    if let Some(tc) = &d.tool_call {
                        evs.extend(out.call(tc));
                    }
                    if !evs.is_empty() {
                        rec.first_token();
                    }
                    for e in evs {
                        yield Ok(event(&mut seq, e));
                    }
                }
                StreamItem::End(end) => {
                    rec.set_usage(end.usage.as_ref());
                    if let Some((l, route)) = lead.take() {
                        l.finish_stream(&end, &route).await;
                    }
                    let (status, incomplete) = output::status(end.stop_reason);
                    for e in out.finish(status == "incomplete") {
                        yield Ok(event(&mut seq, e));
                    }
                    let response = output::response_json(
                        &head, status, out.items_json(), output::usage_json(end.usage.as_ref()),
                        incomplete, Value::Null,
                    );
                    if let Some(k) = keep.take() {
                        k.put(&response, out.message()).await;
                    }
                    let kind = if status == "incomplete" { "response.incomplete" } else { "response.completed" };
                    yield Ok(event(&mut seq, json!({"type": kind, "response": response})));
                    ended = true;
                    break;
                }
                StreamItem::Failed(message) => {
                    rec.set_stream_error("stream_interrupted");
                    yield Ok(failed(&mut seq, &head, &out, "server_error", message));
                    ended = true;
                    break;
                }
                // A stream committed before its route answered: kept alive with SSE comments.
                StreamItem::Waiting => yield Ok(Event::default().comment("keep-alive")),
                // …that found no route: the error it would have been, as `response.failed`.
                StreamItem::Refused(e) => {
                    let code = if e.0.status() == axum::http::StatusCode::TOO_MANY_REQUESTS {
                        "rate_limit_exceeded"
                    } else {
                        "server_error"
                    };
                    yield Ok(failed(&mut seq, &head, &out, code, &e.0.client_message()));
                    ended = true;
                    break;
                }
            }
        }
        if !ended {
            // The gateway always ends a stream with End or Failed; never close silently.
            rec.set_stream_error("stream_interrupted");
            yield Ok(failed(&mut seq, &head, &out, "server_error", "the upstream stream ended early"));
        }
    };
    Sse::new(events).into_response()
}

/// A stored answer as the stream its upstream would have sent (every reasoning block, text one
/// word a delta, tool calls, then its end).
pub fn replay(answer: &crate::cache::Answer) -> futures::stream::BoxStream<'static, StreamItem> {
    let mut items: Vec<StreamItem> = answer
        .stream_deltas()
        .into_iter()
        .map(StreamItem::Delta)
        .collect();
    items.push(StreamItem::End(answer.stream_end()));
    futures::stream::iter(items).boxed()
}

/// Follows a streaming leader (`coalesced`): every delta so far, then the rest as they arrive,
/// then its end; a leader that fails, or a deadline that passes, ends it failed.
pub fn follow(
    flight: Arc<crate::cache::Flight>,
    deadline: std::time::Instant,
) -> futures::stream::BoxStream<'static, StreamItem> {
    async_stream::stream! {
        let mut rx = flight.subscribe();
        let mut sent = 0usize;
        loop {
            let (deltas, done) = flight.read(sent);
            for d in deltas {
                sent += 1;
                yield StreamItem::Delta(d);
            }
            match done {
                Some(Ok(answer)) => {
                    yield StreamItem::End(answer.stream_end());
                    break;
                }
                Some(Err(())) => {
                    yield StreamItem::Failed("the upstream failed while streaming");
                    break;
                }
                None => {}
            }
            match tokio::time::timeout_at(deadline.into(), rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    yield StreamItem::Failed("deadline exceeded");
                    break;
                }
            }
        }
    }
    .boxed()
}

/// `response.failed`: the response so far, status `failed`, `error` `{code, message}`.
fn failed(seq: &mut u64, head: &Head, out: &Output, code: &str, message: &str) -> Event {
    let response = output::response_json(
        head,
        "failed",
        out.items_json(),
        Value::Null,
        Value::Null,
        json!({"code": code, "message": message}),
    );
    event(
        seq,
        json!({"type": "response.failed", "response": response}),
    )
}
