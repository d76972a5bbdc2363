//! The Anthropic SSE encoder of a committed stream: `message_start`, `content_block_start`,
//! `content_block_delta` (`thinking_delta` / `signature_delta` / `text_delta` /
//! `input_json_delta`), `content_block_stop`, `message_delta`, `message_stop`, `ping`; a failure
//! after the first event as an `error` event.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;

use super::{stop_reason_for, usage_json};
use crate::gateway::StreamItem;
use crate::observe::RequestRecord;

fn event(name: &'static str, data: Value) -> Result<Event, Infallible> {
    Ok(Event::default().event(name).data(data.to_string()))
}

/// The kind of the open content block.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Block {
    /// A `thinking` block; `signed` once its `signature_delta` went out (the block is complete:
    /// more thinking opens the next one).
    Thinking {
        signed: bool,
    },
    Text,
    /// A `tool_use` block for the tool call of this index.
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
            out.push((
                "content_block_stop",
                json!({"type": "content_block_stop", "index": i}),
            ));
        }
    }

    /// Closes the open block (if any) and opens `kind` with `content_block`; its index.
    fn start(&mut self, kind: Block, content_block: Value, out: &mut Out) -> u32 {
        self.stop(out);
        let i = self.next;
        self.next += 1;
        self.open = Some((i, kind));
        out.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": i, "content_block": content_block}),
        ));
        i
    }

    fn delta(i: u32, delta: Value, out: &mut Out) {
        out.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": i, "delta": delta}),
        ));
    }

    /// The index of the open unsigned thinking block, else a new one.
    fn thinking(&mut self, out: &mut Out) -> u32 {
        match self.open {
            Some((i, Block::Thinking { signed: false })) => i,
            _ => self.start(
                Block::Thinking { signed: false },
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                out,
            ),
        }
    }

    /// The events of one delta of choice 0 (a spoke never sends others here: `n` is not an
    /// Anthropic parameter). Thinking: text pieces as `thinking_delta`, the signature as
    /// `signature_delta` (which completes the block), a redacted block as a whole
    /// `redacted_thinking` block; text as `text_delta`; a tool call's pieces in its own
    /// `tool_use` block as `input_json_delta`.
    fn push(&mut self, d: &pb::StreamDelta) -> Out {
        let mut out = Vec::new();
        if d.choice != 0 {
            return out;
        }
        if let Some(t) = &d.thinking {
            if t.redacted {
                self.start(
                    Block::Thinking { signed: true },
                    json!({"type": "redacted_thinking", "data": t.data}),
                    &mut out,
                );
                self.stop(&mut out);
            } else {
                if !t.text.is_empty() {
                    let i = self.thinking(&mut out);
                    Self::delta(
                        i,
                        json!({"type": "thinking_delta", "thinking": t.text}),
                        &mut out,
                    );
                }
                if !t.signature.is_empty() {
                    let i = self.thinking(&mut out);
                    Self::delta(
                        i,
                        json!({"type": "signature_delta", "signature": t.signature}),
                        &mut out,
                    );
                    self.open = Some((i, Block::Thinking { signed: true }));
                }
            }
        }
        if !d.text.is_empty() {
            let i = match self.open {
                Some((i, Block::Text)) => i,
                _ => self.start(Block::Text, json!({"type": "text", "text": ""}), &mut out),
            };
            Self::delta(i, json!({"type": "text_delta", "text": d.text}), &mut out);
        }
        if let Some(tc) = &d.tool_call {
            self.calls = true;
            let i = match self.open {
                Some((i, Block::Tool(t))) if t == tc.index => i,
                _ => self.start(
                    Block::Tool(tc.index),
                    json!({"type": "tool_use", "id": tc.id, "name": tc.name, "input": {}}),
                    &mut out,
                ),
            };
            if !tc.arguments_json.is_empty() {
                Self::delta(
                    i,
                    json!({"type": "input_json_delta", "partial_json": tc.arguments_json}),
                    &mut out,
                );
            }
        }
        out
    }
}

/// A committed stream as Anthropic SSE events. Each thinking block, the text and each tool call
/// get their own content block, opened when its first piece arrives and closed when the next
/// opens (or at the end); `message_delta` carries the stop reason derived from the content
/// (`tool_use` when a call was streamed) and the usage with its cache counts. `rec` (the
/// stream's handle on the request record) sees the first token, the usage and a mid-stream
/// failure.
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
        let mut blocks = Blocks::default();
        while let Some(item) = items.next().await {
            match item {
                StreamItem::Delta(d) => {
                    if !d.text.is_empty() || d.tool_call.is_some() || d.thinking.is_some() {
                        rec.first_token();
                    }
                    for (name, data) in blocks.push(&d) {
                        yield event(name, data);
                    }
                }
                StreamItem::End(end) => {
                    rec.set_usage(end.usage.as_ref());
                    let mut out = Vec::new();
                    blocks.stop(&mut out);
                    for (name, data) in out {
                        yield event(name, data);
                    }
                    yield event("message_delta", json!({"type": "message_delta",
                        "delta": {"stop_reason": stop_reason_for(end.stop_reason, blocks.calls), "stop_sequence": null},
                        "usage": usage_json(end.usage.as_ref())}));
                    yield event("message_stop", json!({"type": "message_stop"}));
                    break;
                }
                StreamItem::Failed(message) => {
                    rec.set_stream_error("stream_interrupted");
                    yield event("error", json!({"type": "error", "error": {"type": "api_error", "message": message}}));
                    break;
                }
                StreamItem::Waiting => yield event("ping", json!({"type": "ping"})),
                StreamItem::Refused(e) => {
                    yield event("error", json!({"type": "error", "error": {
                        "type": e.0.names().anthropic, "message": e.0.client_message()}}));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn thinking(text: &str, signature: &str) -> pb::StreamDelta {
        pb::StreamDelta {
            thinking: Some(pb::ThinkingPart {
                text: text.into(),
                signature: signature.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn thinking_blocks_open_and_close_in_order() {
        let mut b = Blocks::default();
        let mut all = Vec::new();
        for d in [
            thinking("a", ""),
            thinking("b", ""),
            thinking("", "S1"),
            thinking("c", ""),
            thinking("", "S2"),
            pb::StreamDelta {
                thinking: Some(pb::ThinkingPart {
                    redacted: true,
                    data: "D".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            pb::StreamDelta {
                text: "hi".into(),
                ..Default::default()
            },
        ] {
            all.extend(b.push(&d));
        }
        b.stop(&mut all);
        let seq: Vec<String> = all
            .iter()
            .map(|(n, v)| {
                let idx = &v["index"];
                match *n {
                    "content_block_start" => format!("start{idx}:{}", v["content_block"]["type"]),
                    "content_block_delta" => format!("delta{idx}:{}", v["delta"]["type"]),
                    _ => format!("stop{idx}"),
                }
            })
            .collect();
        assert_eq!(
            seq,
            [
                "start0:\"thinking\"",
                "delta0:\"thinking_delta\"",
                "delta0:\"thinking_delta\"",
                "delta0:\"signature_delta\"",
                "stop0",
                "start1:\"thinking\"",
                "delta1:\"thinking_delta\"",
                "delta1:\"signature_delta\"",
                "stop1",
                "start2:\"redacted_thinking\"",
                "stop2",
                "start3:\"text\"",
                "delta3:\"text_delta\"",
                "stop3",
            ]
        );
        assert!(!b.calls);
    }
}
