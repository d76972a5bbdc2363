//! The OpenAI SSE encoder of a committed stream: `chat.completion.chunk` events, the usage chunk
//! when asked for, `[DONE]`; a failure after the first chunk as an error event (never `[DONE]`).

use std::convert::Infallible;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;

use super::wire;
use crate::gateway::StreamItem;
use crate::model::RouteTaken;
use crate::observe::RequestRecord;

/// How the SSE chunks of one completion are labelled, and who follows the stream.
pub struct ChunkMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub include_usage: bool,
    /// Feeds identical requests following this one (and the response cache).
    pub lead: Option<crate::cache::Leader>,
    /// Metrics and the audit line, written when the stream ends.
    pub rec: RequestRecord,
    pub route: RouteTaken,
}

/// A committed stream as OpenAI `chat.completion.chunk` SSE events.
pub fn sse(
    mut items: futures::stream::BoxStream<'static, StreamItem>,
    meta: ChunkMeta,
) -> Response {
    let ChunkMeta {
        id,
        created,
        model,
        include_usage,
        mut lead,
        mut rec,
        route,
    } = meta;
    let events = async_stream::stream! {
        let chunk = |delta: serde_json::Value, finish: Option<&str>| {
            Event::default().data(wire::chunk_json(&id, created, &model, delta, finish, include_usage).to_string())
        };
        yield Ok::<_, Infallible>(chunk(json!({"role": "assistant", "content": ""}), None));
        while let Some(item) = items.next().await {
            match item {
                StreamItem::Delta(d) => {
                    if !d.text.is_empty() {
                        if let Some(l) = &lead {
                            l.delta(&d.text);
                        }
                        rec.first_token();
                        yield Ok(chunk(json!({"content": d.text}), None));
                    }
                    if let Some(tc) = d.tool_call {
                        rec.first_token();
                        yield Ok(chunk(wire::tool_call_delta_json(&tc), None));
                    }
                }
                StreamItem::End(end) => {
                    rec.set_usage(end.usage.as_ref());
                    if let Some(l) = lead.take() {
                        l.finish_stream(&end, &route).await;
                    }
                    yield Ok(chunk(json!({}), Some(wire::finish_reason(end.stop_reason))));
                    if include_usage {
                        yield Ok(Event::default().data(
                            wire::usage_chunk_json(&id, created, &model, end.usage.as_ref()).to_string(),
                        ));
                    }
                    yield Ok(Event::default().data("[DONE]"));
                    break;
                }
                StreamItem::Failed(message) => {
                    rec.set_stream_error("stream_interrupted");
                    yield Ok(error_event(message));
                    break;
                }
            }
        }
    };
    Sse::new(events).into_response()
}

/// An SSE error event: the stream ends after it, never with `[DONE]`.
pub fn error_event(message: &str) -> Event {
    Event::default().data(
        json!({"error": {"message": message, "type": "server_error", "code": "stream_interrupted", "param": null}})
            .to_string(),
    )
}
