//! The Anthropic SSE encoder of a committed stream: `message_start`, `content_block_start`,
//! `content_block_delta` (`text_delta` / `input_json_delta`), `content_block_stop`,
//! `message_delta`, `message_stop`, `ping`; a failure after the first event as an `error` event.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};

use super::{stop_reason, usage_json};
use crate::gateway::StreamItem;
use crate::observe::RequestRecord;

fn event(name: &'static str, data: Value) -> Result<Event, Infallible> {
    Ok(Event::default().event(name).data(data.to_string()))
}

/// A committed stream as Anthropic SSE events. Text opens a `text` block; each tool call its own
/// `tool_use` block (arguments as `input_json_delta`); a block is closed when the next opens.
/// `rec` (the stream's handle on the request record) sees the first token, the usage and a
/// mid-stream failure.
pub(super) fn sse(
    mut items: BoxStream<'static, StreamItem>,
    id: String,
    model: String,
    mut rec: RequestRecord,
) -> Response {
    let events = async_stream::stream! {
        yield event("message_start", json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }}));
        yield event("ping", json!({"type": "ping"}));
        // The open block: (index, Some(tool-call index) for a tool_use block).
        let mut open: Option<(u32, Option<u32>)> = None;
        let mut next_index = 0u32;
        while let Some(item) = items.next().await {
            match item {
                StreamItem::Delta(d) => {
                    if !d.text.is_empty() || d.tool_call.is_some() {
                        rec.first_token();
                    }
                    if !d.text.is_empty() {
                        if !matches!(open, Some((_, None))) {
                            if let Some((i, _)) = open.take() {
                                yield event("content_block_stop", json!({"type": "content_block_stop", "index": i}));
                            }
                            open = Some((next_index, None));
                            yield event("content_block_start", json!({"type": "content_block_start", "index": next_index,
                                "content_block": {"type": "text", "text": ""}}));
                            next_index += 1;
                        }
                        let index = open.map_or(0, |(i, _)| i);
                        yield event("content_block_delta", json!({"type": "content_block_delta", "index": index,
                            "delta": {"type": "text_delta", "text": d.text}}));
                    }
                    if let Some(tc) = d.tool_call {
                        if open.is_none_or(|(_, t)| t != Some(tc.index)) {
                            if let Some((i, _)) = open.take() {
                                yield event("content_block_stop", json!({"type": "content_block_stop", "index": i}));
                            }
                            open = Some((next_index, Some(tc.index)));
                            yield event("content_block_start", json!({"type": "content_block_start", "index": next_index,
                                "content_block": {"type": "tool_use", "id": tc.id, "name": tc.name, "input": {}}}));
                            next_index += 1;
                        }
                        if !tc.arguments_json.is_empty() {
                            let index = open.map_or(0, |(i, _)| i);
                            yield event("content_block_delta", json!({"type": "content_block_delta", "index": index,
                                "delta": {"type": "input_json_delta", "partial_json": tc.arguments_json}}));
                        }
                    }
                }
                StreamItem::End(end) => {
                    rec.set_usage(end.usage.as_ref());
                    if let Some((i, _)) = open.take() {
                        yield event("content_block_stop", json!({"type": "content_block_stop", "index": i}));
                    }
                    yield event("message_delta", json!({"type": "message_delta",
                        "delta": {"stop_reason": stop_reason(end.stop_reason), "stop_sequence": null},
                        "usage": usage_json(end.usage.as_ref())}));
                    yield event("message_stop", json!({"type": "message_stop"}));
                    break;
                }
                StreamItem::Failed(message) => {
                    rec.set_stream_error("stream_interrupted");
                    yield event("error", json!({"type": "error", "error": {"type": "api_error", "message": message}}));
                    break;
                }
            }
        }
    };
    Sse::new(events)
        .keep_alive(
            KeepAlive::new().event(Event::default().event("ping").data("{\"type\": \"ping\"}")),
        )
        .into_response()
}
