//! The OpenAI SSE encoder of a committed stream: `chat.completion.chunk` events (one per
//! delta, each choice's own `index`), a finish chunk per choice, the usage chunk when asked for,
//! `[DONE]`; a failure after the first chunk as an error event (never `[DONE]`). The same
//! [`Encoder`] renders a spoke's stream, a stored answer replayed and a followed leader's stream
//! (`cached`).

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;

use super::wire::{self, ChunkHead};
use crate::gateway::StreamItem;
use crate::model::RouteTaken;
use crate::observe::RequestRecord;
use crate::surface::answer;

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

/// Most choices one stream renders (`n` is bounded far below at the hub's door); pieces of a
/// choice beyond are not shown.
const MAX_CHOICES: usize = 1024;

/// What the encoder remembers of one choice.
#[derive(Debug, Default, Clone, Copy)]
struct ChoiceState {
    /// Its first chunk (which carries `role: "assistant"`) went out.
    opened: bool,
    /// It carried a tool call: its `finish_reason` is `tool_calls`.
    calls: bool,
}

/// Turns the items of one answer's stream into `chat.completion.chunk`s.
#[derive(Debug)]
pub struct Encoder {
    pub head: ChunkHead,
    choices: BTreeMap<u32, ChoiceState>,
}

impl Encoder {
    pub fn new(head: ChunkHead) -> Encoder {
        Encoder {
            head,
            choices: BTreeMap::new(),
        }
    }

    fn event(v: &Value) -> Event {
        Event::default().data(v.to_string())
    }

    /// The first chunk: choice 0's `{"role":"assistant","content":""}`.
    pub fn open(&mut self) -> Event {
        self.choices.entry(0).or_default().opened = true;
        Self::event(&self.head.chunk(
            0,
            json!({"role": "assistant", "content": ""}),
            None,
            Value::Null,
        ))
    }

    /// One delta as one chunk of its choice (`StreamDelta.choice`): `content` (text),
    /// `reasoning_content` (thinking text), `tool_calls` (a piece of a call), `logprobs`; the
    /// choice's first chunk also carries `role`. `None` when the delta carries nothing OpenAI
    /// shows (a thinking signature, a redacted thinking block).
    pub fn delta(&mut self, d: &pb::StreamDelta) -> Option<Event> {
        let mut delta = serde_json::Map::new();
        if !d.text.is_empty() {
            delta.insert("content".into(), json!(d.text));
        }
        if let Some(t) = d
            .thinking
            .as_ref()
            .filter(|t| !t.redacted && !t.text.is_empty())
        {
            delta.insert("reasoning_content".into(), json!(t.text));
        }
        if let Some(tc) = &d.tool_call {
            delta.insert("tool_calls".into(), json!([wire::tool_call_delta_json(tc)]));
        }
        let logprobs = answer::json_or_null(&d.logprobs_json);
        if delta.is_empty() && logprobs.is_null() {
            return None;
        }
        if !self.choices.contains_key(&d.choice) && self.choices.len() >= MAX_CHOICES {
            return None;
        }
        let state = self.choices.entry(d.choice).or_default();
        if !state.opened {
            state.opened = true;
            delta.insert("role".into(), json!("assistant"));
        }
        state.calls |= d.tool_call.is_some();
        Some(Self::event(&self.head.chunk(
            d.choice,
            Value::Object(delta),
            None,
            logprobs,
        )))
    }

    /// The end: one chunk per choice with its `finish_reason` (choice 0 from `stop_reason`,
    /// choice i from `more_stop_reasons[i-1]`, each derived from its content), the usage chunk
    /// when asked for, `[DONE]`.
    pub fn end(&mut self, end: &pb::StreamEnd) -> Vec<Event> {
        let seen = self
            .choices
            .keys()
            .next_back()
            .map_or(0, |k| *k as usize + 1);
        let n = seen.max(1 + end.more_stop_reasons.len()).min(MAX_CHOICES);
        let mut out = Vec::with_capacity(n + 2);
        for i in 0..n {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let reason = match i {
                0 => end.stop_reason,
                i => end
                    .more_stop_reasons
                    .get(i - 1)
                    .copied()
                    .unwrap_or(pb::StopReason::Unspecified as i32),
            };
            let state = self.choices.entry(index).or_default();
            let delta = if state.opened {
                json!({})
            } else {
                state.opened = true;
                json!({"role": "assistant", "content": ""})
            };
            let finish = wire::finish_reason_for(reason, state.calls);
            out.push(Self::event(&self.head.chunk(
                index,
                delta,
                Some(finish),
                Value::Null,
            )));
        }
        if self.head.include_usage {
            out.push(Self::event(&self.head.usage_chunk(end.usage.as_ref())));
        }
        out.push(Event::default().data("[DONE]"));
        out
    }
}

/// Whether a delta carries content (text, reasoning or a tool call): time to first token.
pub fn is_content(d: &pb::StreamDelta) -> bool {
    !d.text.is_empty() || d.thinking.is_some() || d.tool_call.is_some()
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
    let mut enc = Encoder::new(ChunkHead {
        id,
        created,
        model,
        include_usage,
    });
    let events = async_stream::stream! {
        yield Ok::<_, Infallible>(enc.open());
        while let Some(item) = items.next().await {
            match item {
                StreamItem::Delta(d) => {
                    if let Some(l) = &lead {
                        l.delta(&d);
                    }
                    if is_content(&d) {
                        rec.first_token();
                    }
                    if let Some(e) = enc.delta(&d) {
                        yield Ok(e);
                    }
                }
                StreamItem::End(end) => {
                    rec.set_usage(end.usage.as_ref());
                    if let Some(l) = lead.take() {
                        l.finish_stream(&end, &route).await;
                    }
                    for e in enc.end(&end) {
                        yield Ok(e);
                    }
                    break;
                }
                StreamItem::Failed(message) => {
                    rec.set_stream_error("stream_interrupted");
                    yield Ok(error_event(message));
                    break;
                }
                StreamItem::Waiting => yield Ok(Event::default().comment("keep-alive")),
                StreamItem::Refused(e) => {
                    yield Ok(Event::default().data(e.0.body().to_string()));
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
