//! The floor relay's streams (`stream: true`), each side one stream mapped onto another with
//! `futures::stream::unfold` — no task or channel per stream, as a minimal relay would do it:
//!
//! - [`infer_events`] (back): the upstream's SSE body, read as it arrives, → one
//!   [`InferEvent`] `delta` per non-empty `choices[0].delta.content`, then one `end` (stop reason
//!   and usage) at `data: [DONE]`.
//! - [`sse_body`] (front): those events → OpenAI `chat.completion.chunk` SSE events, one body
//!   chunk each (so hyper writes each as it comes), then `data: [DONE]`.

use std::convert::Infallible;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use switchyard_proto::v1::infer_event::Event;
use switchyard_proto::v1::{InferEvent, StreamDelta, StreamEnd, Usage};
use tonic::Status;

use super::{CompletionUsage, finish_reason, stop_reason};

/// The fields of an upstream `chat.completion.chunk` the back reads.
#[derive(Debug, Deserialize)]
struct ChunkIn {
    #[serde(default)]
    choices: Vec<ChunkChoiceIn>,
    #[serde(default)]
    usage: Option<CompletionUsage>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoiceIn {
    #[serde(default)]
    delta: DeltaIn,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct DeltaIn {
    #[serde(default)]
    content: Option<String>,
}

/// The back's state over one upstream SSE body.
struct Upstream<S> {
    body: S,
    /// Bytes received and not yet split into lines.
    buf: BytesMut,
    finish: Option<String>,
    usage: Option<CompletionUsage>,
    /// `[DONE]` seen, or the stream failed: nothing more to yield.
    done: bool,
}

impl<S> Upstream<S> {
    /// The next complete line in the buffer (without its line ending).
    fn next_line(&mut self) -> Option<BytesMut> {
        let pos = self.buf.iter().position(|b| *b == b'\n')?;
        let mut line = self.buf.split_to(pos + 1);
        line.truncate(line.trim_ascii_end().len());
        Some(line)
    }

    /// The event for one SSE line, if it makes one.
    fn event(&mut self, line: &[u8]) -> Result<Option<InferEvent>, Status> {
        let Some(data) = line.strip_prefix(b"data:") else {
            return Ok(None);
        };
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            self.done = true;
            let usage = self.usage.take().unwrap_or_default();
            return Ok(Some(InferEvent {
                event: Some(Event::End(StreamEnd {
                    stop_reason: stop_reason(self.finish.as_deref()).into(),
                    usage: Some(Usage {
                        input_tokens: usage.prompt_tokens,
                        output_tokens: usage.completion_tokens,
                        ..Usage::default()
                    }),
                    ..StreamEnd::default()
                })),
            }));
        }
        let chunk: ChunkIn = serde_json::from_slice(data)
            .map_err(|e| Status::unavailable(format!("upstream chunk: {e}")))?;
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let Some(choice) = chunk.choices.into_iter().next() else {
            return Ok(None);
        };
        if choice.finish_reason.is_some() {
            self.finish = choice.finish_reason;
        }
        Ok(choice
            .delta
            .content
            .filter(|t| !t.is_empty())
            .map(|text| InferEvent {
                event: Some(Event::Delta(StreamDelta {
                    text,
                    ..StreamDelta::default()
                })),
            }))
    }
}

/// The back's `InferStream` answer for an upstream SSE `body`: a delta per content chunk as soon
/// as its line is complete, the end at `[DONE]`; `UNAVAILABLE` if the body fails or ends first.
pub(super) fn infer_events<S>(
    body: S,
) -> impl Stream<Item = Result<InferEvent, Status>> + Send + 'static
where
    S: Stream<Item = reqwest::Result<Bytes>> + Unpin + Send + 'static,
{
    let state = Upstream {
        body,
        buf: BytesMut::with_capacity(1024),
        finish: None,
        usage: None,
        done: false,
    };
    futures::stream::unfold(state, |mut up| async move {
        if up.done {
            return None;
        }
        loop {
            while let Some(line) = up.next_line() {
                match up.event(&line) {
                    Ok(Some(ev)) => return Some((Ok(ev), up)),
                    Ok(None) => {}
                    Err(s) => {
                        up.done = true;
                        return Some((Err(s), up));
                    }
                }
            }
            let failed = match up.body.next().await {
                Some(Ok(bytes)) => {
                    up.buf.extend_from_slice(&bytes);
                    continue;
                }
                Some(Err(e)) => Status::unavailable(format!("upstream body: {e}")),
                None => Status::unavailable("upstream stream ended without [DONE]"),
            };
            up.done = true;
            return Some((Err(failed), up));
        }
    })
}

/// One `chat.completion.chunk` the front sends.
#[derive(Debug, Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChunkChoiceOut<'a>; 1],
}

#[derive(Debug, Serialize)]
struct ChunkChoiceOut<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    finish_reason: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

/// The front's state over one `InferStream`.
struct Sse<S> {
    events: S,
    id: String,
    created: u64,
    model: String,
    /// No content chunk sent yet (the first one carries the role).
    first: bool,
    done: bool,
}

impl<S> Sse<S> {
    /// `data: {chunk}\n\n` with `content` or, without it, the closing chunk with `finish`.
    fn chunk(&mut self, content: Option<&str>, finish: Option<&'static str>) -> Vec<u8> {
        let role = (content.is_some() && self.first).then_some("assistant");
        self.first &= content.is_none();
        let chunk = ChunkOut {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: [ChunkChoiceOut {
                index: 0,
                delta: DeltaOut { role, content },
                finish_reason: finish,
            }],
        };
        let mut out = Vec::with_capacity(192 + content.map_or(0, str::len));
        out.extend_from_slice(b"data: ");
        match serde_json::to_writer(&mut out, &chunk) {
            Ok(()) => {
                out.extend_from_slice(b"\n\n");
                out
            }
            Err(e) => error_event(&e.to_string()),
        }
    }
}

/// `data: {"error": …}\n\n`: the stream failed (no `[DONE]` follows).
fn error_event(message: &str) -> Vec<u8> {
    let body = serde_json::json!({"error": {"message": message, "type": "floor_relay_error"}});
    format!("data: {body}\n\n").into_bytes()
}

/// The front's SSE body for the back's `events`: a chunk per text delta, the closing chunk and
/// `data: [DONE]` at the end event, an error event if the stream fails or ends before it.
pub(super) fn sse_body<S>(
    events: S,
    id: String,
    created: u64,
    model: String,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static
where
    S: Stream<Item = Result<InferEvent, Status>> + Unpin + Send + 'static,
{
    let state = Sse {
        events,
        id,
        created,
        model,
        first: true,
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let out = loop {
            match st.events.next().await {
                Some(Ok(InferEvent {
                    event: Some(Event::Delta(d)),
                })) if !d.text.is_empty() => break st.chunk(Some(&d.text), None),
                Some(Ok(InferEvent {
                    event: Some(Event::End(end)),
                })) => {
                    st.done = true;
                    let mut out = st.chunk(None, Some(finish_reason(end.stop_reason)));
                    out.extend_from_slice(b"data: [DONE]\n\n");
                    break out;
                }
                Some(Ok(_)) => {}
                Some(Err(s)) => {
                    st.done = true;
                    break error_event(s.message());
                }
                None => {
                    st.done = true;
                    break error_event("the back's stream ended without its end event");
                }
            }
        };
        Some((Ok(Bytes::from(out)), st))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse(chunks: &[&'static str]) -> impl Stream<Item = reqwest::Result<Bytes>> + Unpin {
        futures::stream::iter(chunks.iter().map(|c| Ok(Bytes::from_static(c.as_bytes()))))
    }

    #[tokio::test]
    async fn upstream_sse_to_events() {
        // Lines split across reads, two events in one read, a role chunk with empty content, a
        // finish chunk and a usage chunk: two deltas, then the end with both.
        let body = sse(&[
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel",
            "lo \"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"world\"}}]}\r\n\r\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
            "data: [DONE]\n\n",
        ]);
        let events: Vec<_> = infer_events(body).collect().await;
        let kinds: Vec<_> = events
            .into_iter()
            .map(|e| e.map(|e| e.event))
            .collect::<Result<_, _>>()
            .unwrap();
        let [
            Some(Event::Delta(a)),
            Some(Event::Delta(b)),
            Some(Event::End(end)),
        ] = &kinds[..]
        else {
            unreachable!("unexpected events {kinds:?}")
        };
        assert_eq!((a.text.as_str(), b.text.as_str()), ("Hello ", "world"));
        assert_eq!(finish_reason(end.stop_reason), "length");
        let usage = end.usage.unwrap_or_default();
        assert_eq!((usage.input_tokens, usage.output_tokens), (3, 2));
    }

    #[tokio::test]
    async fn upstream_sse_cut_short_is_an_error() {
        let body = sse(&["data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n"]);
        let events: Vec<_> = infer_events(body).collect().await;
        assert_eq!(events.len(), 2);
        assert!(events[0].is_ok());
        assert_eq!(
            events[1].as_ref().map_err(Status::code).err(),
            Some(tonic::Code::Unavailable)
        );
    }

    #[tokio::test]
    async fn events_to_sse() {
        let delta = |t: &str| {
            Ok(InferEvent {
                event: Some(Event::Delta(StreamDelta {
                    text: t.into(),
                    ..StreamDelta::default()
                })),
            })
        };
        let end = Ok(InferEvent {
            event: Some(Event::End(StreamEnd::default())),
        });
        let events = futures::stream::iter(vec![delta("Hello "), delta("world"), end]);
        let body: Vec<Bytes> = sse_body(events, "chatcmpl-1".into(), 7, "m".into())
            .map(|b| b.unwrap_or_default())
            .collect()
            .await;
        let text: Vec<&str> = body
            .iter()
            .map(|b| std::str::from_utf8(b).unwrap())
            .collect();
        assert_eq!(
            text,
            [
                "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hello \"},\"finish_reason\":null}]}\n\n",
                "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"world\"},\"finish_reason\":null}]}\n\n",
                "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
            ]
        );
    }
}
