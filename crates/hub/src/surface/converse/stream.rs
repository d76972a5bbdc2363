//! The Bedrock event-stream encoder of a committed stream: `messageStart`,
//! `contentBlockStart`, `contentBlockDelta` (`reasoningContent` / `text` / `toolUse`),
//! `contentBlockStop`, `messageStop`, `metadata` frames; a failure after the first frame as an
//! exception frame.

use std::time::Instant;

use aws_smithy_types::event_stream::{Header, HeaderValue as FrameValue, Message};
use axum::body::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;

use super::{additional_fields, stop_reason_for, usage_json};
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

/// The ConverseStream exception member for a Bedrock error type (`ThrottlingException` →
/// `throttlingException`); errors without a stream member are `internalServerException`.
fn stream_exception(error_type: &str) -> &'static str {
    match error_type {
        "ThrottlingException" => "throttlingException",
        "ValidationException" => "validationException",
        "ServiceUnavailableException" => "serviceUnavailableException",
        "ModelTimeoutException" => "modelTimeoutException",
        "ModelNotReadyException" => "modelNotReadyException",
        _ => "internalServerException",
    }
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

/// The kind of the open content block.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Block {
    /// A `reasoningContent` block; `signed` once its signature went out (complete: more
    /// reasoning opens the next block).
    Reasoning {
        signed: bool,
    },
    Text,
    /// A `toolUse` block for the tool call of this index.
    Tool(u32),
}

/// The content blocks of one streamed message: which is open, the next index, whether a tool
/// call was seen (the stop reason).
#[derive(Debug, Default)]
struct Blocks {
    open: Option<(u32, Block)>,
    next: u32,
    calls: bool,
}

type Out = Vec<(&'static str, Value)>;

impl Blocks {
    fn stop(&mut self, out: &mut Out) {
        if let Some((i, _)) = self.open.take() {
            out.push(("contentBlockStop", json!({"contentBlockIndex": i})));
        }
    }

    /// Closes the open block and opens `kind` (Bedrock announces only tool-use blocks with a
    /// `contentBlockStart`: `start`); its index.
    fn start(&mut self, kind: Block, start: Option<Value>, out: &mut Out) -> u32 {
        self.stop(out);
        let i = self.next;
        self.next += 1;
        self.open = Some((i, kind));
        if let Some(start) = start {
            out.push((
                "contentBlockStart",
                json!({"contentBlockIndex": i, "start": start}),
            ));
        }
        i
    }

    fn delta(i: u32, delta: Value, out: &mut Out) {
        out.push((
            "contentBlockDelta",
            json!({"contentBlockIndex": i, "delta": delta}),
        ));
    }

    fn reasoning(&mut self, out: &mut Out) -> u32 {
        match self.open {
            Some((i, Block::Reasoning { signed: false })) => i,
            _ => self.start(Block::Reasoning { signed: false }, None, out),
        }
    }

    /// The frames of one delta of choice 0 (`n` is not a Converse parameter): reasoning as
    /// `reasoningContent` deltas (`text` pieces, then `signature`, which completes the block; a
    /// redacted block as one `redactedContent` delta in a block of its own), text as `text`
    /// deltas, each tool call in its own block (`contentBlockStart.toolUse`, then
    /// `toolUse.input` pieces).
    fn push(&mut self, d: &pb::StreamDelta) -> Out {
        let mut out = Vec::new();
        if d.choice != 0 {
            return out;
        }
        if let Some(t) = &d.thinking {
            if t.redacted {
                let i = self.start(Block::Reasoning { signed: true }, None, &mut out);
                Self::delta(
                    i,
                    json!({"reasoningContent": {"redactedContent": crate::surface::answer::redacted_base64(&t.data)}}),
                    &mut out,
                );
                self.stop(&mut out);
            } else {
                if !t.text.is_empty() {
                    let i = self.reasoning(&mut out);
                    Self::delta(i, json!({"reasoningContent": {"text": t.text}}), &mut out);
                }
                if !t.signature.is_empty() {
                    let i = self.reasoning(&mut out);
                    Self::delta(
                        i,
                        json!({"reasoningContent": {"signature": t.signature}}),
                        &mut out,
                    );
                    self.open = Some((i, Block::Reasoning { signed: true }));
                }
            }
        }
        if !d.text.is_empty() {
            let i = match self.open {
                Some((i, Block::Text)) => i,
                _ => self.start(Block::Text, None, &mut out),
            };
            Self::delta(i, json!({"text": d.text}), &mut out);
        }
        if let Some(tc) = &d.tool_call {
            self.calls = true;
            let i = match self.open {
                Some((i, Block::Tool(t))) if t == tc.index => i,
                _ => self.start(
                    Block::Tool(tc.index),
                    Some(json!({"toolUse": {"toolUseId": tc.id, "name": tc.name}})),
                    &mut out,
                ),
            };
            if !tc.arguments_json.is_empty() {
                Self::delta(
                    i,
                    json!({"toolUse": {"input": tc.arguments_json}}),
                    &mut out,
                );
            }
        }
        out
    }
}

/// A committed stream as ConverseStream frames: each reasoning block, the text and each tool
/// call in a block of its own, closed when the next opens (or at the end); `messageStop` with
/// the stop reason derived from the content (`tool_use` when a call was streamed) and the
/// model's `additionalModelResponseFields`, `metadata` with the usage (cache counts included)
/// and the hub-measured latency. `rec` (the stream's handle on the request record) sees the
/// first token, the usage and a mid-stream failure.
pub(super) fn frames(
    mut items: BoxStream<'static, StreamItem>,
    started: Instant,
    mut rec: RequestRecord,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    async_stream::stream! {
        yield event_frame("messageStart", json!({"role": "assistant"}));
        let mut blocks = Blocks::default();
        while let Some(item) = items.next().await {
            match item {
                StreamItem::Delta(d) => {
                    if !d.text.is_empty() || d.tool_call.is_some() || d.thinking.is_some() {
                        rec.first_token();
                    }
                    for (name, payload) in blocks.push(&d) {
                        yield event_frame(name, payload);
                    }
                }
                StreamItem::End(end) => {
                    rec.set_usage(end.usage.as_ref());
                    let mut out = Vec::new();
                    blocks.stop(&mut out);
                    for (name, payload) in out {
                        yield event_frame(name, payload);
                    }
                    let mut stop = json!({"stopReason": stop_reason_for(end.stop_reason, blocks.calls)});
                    if let Some(extra) = additional_fields(&end.additional_model_response_fields_json) {
                        stop["additionalModelResponseFields"] = extra;
                    }
                    yield event_frame("messageStop", stop);
                    yield event_frame("metadata", json!({"usage": usage_json(end.usage.as_ref()),
                        "metrics": {"latencyMs": started.elapsed().as_millis() as u64}}));
                    break;
                }
                StreamItem::Failed(message) => {
                    rec.set_stream_error("stream_interrupted");
                    yield exception_frame("modelStreamErrorException", message);
                    break;
                }
                // An event stream has no comment frames: its `messageStart` already went out.
                StreamItem::Waiting => {}
                StreamItem::Refused(e) => {
                    yield exception_frame(stream_exception(e.0.names().bedrock.0), &e.0.client_message());
                    break;
                }
            }
        }
    }
}
