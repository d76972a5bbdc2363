//! The Bedrock event-stream encoder of a committed stream: `messageStart`,
//! `contentBlockStart`, `contentBlockDelta`, `contentBlockStop`, `messageStop`, `metadata`
//! frames; a failure after the first frame as an exception frame.

use std::time::Instant;

use aws_smithy_types::event_stream::{Header, HeaderValue as FrameValue, Message};
use axum::body::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};

use super::{stop_reason, usage_json};
use crate::gateway::StreamItem;
use crate::observe::RequestRecord;

fn encode(headers: Vec<Header>, payload: &Value) -> Bytes {
    let message = Message::new_from_parts(headers, Bytes::from(payload.to_string()));
    let mut buf = Vec::new();
    if let Err(e) = aws_smithy_eventstream::frame::write_message_to(&message, &mut buf) {
        // Only fails on oversized headers, which these never are.
        tracing::error!(error = %e, "event-stream frame could not be encoded");
    }
    Bytes::from(buf)
}

fn event_frame(event_type: &'static str, payload: Value) -> Result<Bytes, std::io::Error> {
    Ok(encode(
        vec![
            Header::new(":message-type", FrameValue::String("event".into())),
            Header::new(":event-type", FrameValue::String(event_type.into())),
            Header::new(
                ":content-type",
                FrameValue::String("application/json".into()),
            ),
        ],
        &payload,
    ))
}

fn exception_frame(exception_type: &'static str, message: &str) -> Result<Bytes, std::io::Error> {
    Ok(encode(
        vec![
            Header::new(":message-type", FrameValue::String("exception".into())),
            Header::new(":exception-type", FrameValue::String(exception_type.into())),
            Header::new(
                ":content-type",
                FrameValue::String("application/json".into()),
            ),
        ],
        &json!({ "message": message }),
    ))
}

/// A committed stream as ConverseStream frames. Text goes to a text block; each tool call gets
/// its own block opened with `contentBlockStart`. `rec` (the stream's handle on the request
/// record) sees the first token, the usage and a mid-stream failure.
pub(super) fn frames(
    mut items: BoxStream<'static, StreamItem>,
    started: Instant,
    mut rec: RequestRecord,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    async_stream::stream! {
        yield event_frame("messageStart", json!({"role": "assistant"}));
        // The open block: (index, Some(tool-call index) for a toolUse block).
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
                                yield event_frame("contentBlockStop", json!({"contentBlockIndex": i}));
                            }
                            open = Some((next_index, None));
                            next_index += 1;
                        }
                        let index = open.map_or(0, |(i, _)| i);
                        yield event_frame("contentBlockDelta", json!({"contentBlockIndex": index, "delta": {"text": d.text}}));
                    }
                    if let Some(tc) = d.tool_call {
                        if open.is_none_or(|(_, t)| t != Some(tc.index)) {
                            if let Some((i, _)) = open.take() {
                                yield event_frame("contentBlockStop", json!({"contentBlockIndex": i}));
                            }
                            open = Some((next_index, Some(tc.index)));
                            yield event_frame("contentBlockStart", json!({"contentBlockIndex": next_index,
                                "start": {"toolUse": {"toolUseId": tc.id, "name": tc.name}}}));
                            next_index += 1;
                        }
                        if !tc.arguments_json.is_empty() {
                            let index = open.map_or(0, |(i, _)| i);
                            yield event_frame("contentBlockDelta", json!({"contentBlockIndex": index,
                                "delta": {"toolUse": {"input": tc.arguments_json}}}));
                        }
                    }
                }
                StreamItem::End(end) => {
                    rec.set_usage(end.usage.as_ref());
                    if let Some((i, _)) = open.take() {
                        yield event_frame("contentBlockStop", json!({"contentBlockIndex": i}));
                    }
                    yield event_frame("messageStop", json!({"stopReason": stop_reason(end.stop_reason)}));
                    yield event_frame("metadata", json!({"usage": usage_json(end.usage.as_ref()),
                        "metrics": {"latencyMs": started.elapsed().as_millis() as u64}}));
                    break;
                }
                StreamItem::Failed(message) => {
                    rec.set_stream_error("stream_interrupted");
                    yield exception_frame("modelStreamErrorException", message);
                    break;
                }
            }
        }
    }
}
