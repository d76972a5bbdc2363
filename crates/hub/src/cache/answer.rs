//! A stored answer: everything a surface renders of an `InferResponse` — every choice (`n` > 1),
//! its text, reasoning (thinking, with signatures, and redacted blocks), tool calls, logprobs,
//! stop reason — and the usage with its cache and reasoning details, plus the route that served
//! it. A cached or coalesced answer is replayed in full, JSON or streamed.
//!
//! Serialized as JSON in Redis. Fields added in 1.3 default when missing, so entries written by
//! earlier hubs (text only) still read; an earlier hub reading a newer entry finds choice 0's
//! text in `text` and ignores the rest.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_proto::v1 as pb;

use crate::model::RouteTaken;

/// Most choices an assembled stream may hold (a spoke naming a choice beyond is not cached).
const MAX_CHOICES: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Answer {
    /// Choice 0's text (its text parts joined).
    pub text: String,
    /// Choice 0's stop reason (`switchyard.v1.StopReason`), as the upstream gave it.
    pub stop_reason: i32,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub provider: String,
    pub account: String,
    pub region: String,
    pub model: String,
    /// Choice 0's parts, when they are more than one text part (thinking, tool calls); empty =
    /// one text part, `text`. (Added in 1.3.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    /// Choice 0's logprobs (OpenAI `{"content":[...]}`, JSON text); empty = not asked for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub logprobs_json: String,
    /// Choices 1, 2, … of an `n` > 1 answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_choices: Vec<StoredChoice>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_read_input_tokens: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_input_tokens: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u32,
}

/// One part of a stored message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text {
        text: String,
    },
    Thinking {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        signature: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        redacted: bool,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        data: String,
    },
    ToolCall {
        id: String,
        name: String,
        arguments_json: String,
    },
}

/// A choice after the first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct StoredChoice {
    #[serde(default)]
    pub parts: Vec<Part>,
    #[serde(default)]
    pub stop_reason: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub logprobs_json: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The parts of an answer's message; `None` when it holds something an answer cannot (an image,
/// a tool result, a cache point).
fn stored_parts(m: Option<&pb::Message>) -> Option<Vec<Part>> {
    use pb::content_part::Part as P;
    let mut out = Vec::new();
    for p in m.iter().flat_map(|m| &m.content) {
        out.push(match &p.part {
            Some(P::Text(t)) => Part::Text { text: t.clone() },
            Some(P::Thinking(t)) => Part::Thinking {
                text: t.text.clone(),
                signature: t.signature.clone(),
                redacted: t.redacted,
                data: t.data.clone(),
            },
            Some(P::ToolCall(c)) => Part::ToolCall {
                id: c.id.clone(),
                name: c.name.clone(),
                arguments_json: c.arguments_json.clone(),
            },
            Some(P::Image(_) | P::ToolResult(_) | P::CachePoint(_)) | None => return None,
        });
    }
    Some(out)
}

fn message(parts: &[Part]) -> pb::Message {
    use pb::content_part::Part as P;
    pb::Message {
        role: pb::Role::Assistant as i32,
        content: parts
            .iter()
            .map(|p| pb::ContentPart {
                part: Some(match p {
                    Part::Text { text } => P::Text(text.clone()),
                    Part::Thinking {
                        text,
                        signature,
                        redacted,
                        data,
                    } => P::Thinking(pb::ThinkingPart {
                        text: text.clone(),
                        signature: signature.clone(),
                        redacted: *redacted,
                        data: data.clone(),
                    }),
                    Part::ToolCall {
                        id,
                        name,
                        arguments_json,
                    } => P::ToolCall(pb::ToolCall {
                        id: id.clone(),
                        name: name.clone(),
                        arguments_json: arguments_json.clone(),
                    }),
                }),
            })
            .collect(),
    }
}

fn part_len(p: &Part) -> usize {
    match p {
        Part::Text { text } => text.len(),
        Part::Thinking {
            text,
            signature,
            data,
            ..
        } => text.len() + signature.len() + data.len(),
        Part::ToolCall {
            id,
            name,
            arguments_json,
        } => id.len() + name.len() + arguments_json.len(),
    }
}

impl Answer {
    /// The answer of a completed call; `None` when it holds something an answer never does (an
    /// image, a tool result, a cache point): such an answer is not stored, and its followers make
    /// their own call.
    pub fn from_response(resp: &pb::InferResponse, route: &RouteTaken) -> Option<Answer> {
        let parts = stored_parts(resp.message.as_ref())?;
        let text: String = parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        let plain = matches!(parts.as_slice(), [] | [Part::Text { .. }]);
        let mut more_choices = Vec::with_capacity(resp.more_choices.len());
        for c in &resp.more_choices {
            more_choices.push(StoredChoice {
                parts: stored_parts(c.message.as_ref())?,
                stop_reason: c.stop_reason,
                logprobs_json: c.logprobs_json.clone(),
            });
        }
        let usage = resp.usage.unwrap_or_default();
        Some(Answer {
            text,
            stop_reason: resp.stop_reason,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            provider: route.provider.clone(),
            account: route.account.clone(),
            region: route.region.clone(),
            model: route.model.clone(),
            parts: if plain { Vec::new() } else { parts },
            logprobs_json: resp.logprobs_json.clone(),
            more_choices,
            cache_read_input_tokens: usage.cache_read_input_tokens,
            cache_write_input_tokens: usage.cache_write_input_tokens,
            reasoning_tokens: usage.reasoning_tokens,
        })
    }

    /// The answer of a streamed call: its deltas and end, assembled ([`assemble`]); `None` when
    /// they cannot be stored.
    pub fn from_stream(
        deltas: &[pb::StreamDelta],
        end: &pb::StreamEnd,
        route: &RouteTaken,
    ) -> Option<Answer> {
        Answer::from_response(&assemble(deltas, end)?, route)
    }

    /// Choice 0's parts (one text part for an entry that has no `parts`).
    fn first_parts(&self) -> std::borrow::Cow<'_, [Part]> {
        if self.parts.is_empty() {
            std::borrow::Cow::Owned(vec![Part::Text {
                text: self.text.clone(),
            }])
        } else {
            std::borrow::Cow::Borrowed(&self.parts)
        }
    }

    /// The stored answer as the spoke's answer it came from.
    pub fn response(&self) -> pb::InferResponse {
        pb::InferResponse {
            message: Some(message(&self.first_parts())),
            stop_reason: self.stop_reason,
            usage: Some(self.usage()),
            route: Some(pb::Route {
                provider: self.provider.clone(),
                account: self.account.clone(),
                region: self.region.clone(),
                model: self.model.clone(),
            }),
            logprobs_json: self.logprobs_json.clone(),
            more_choices: self
                .more_choices
                .iter()
                .map(|c| pb::Choice {
                    message: Some(message(&c.parts)),
                    stop_reason: c.stop_reason,
                    logprobs_json: c.logprobs_json.clone(),
                })
                .collect(),
            ..Default::default()
        }
    }

    pub fn usage(&self) -> pb::Usage {
        pb::Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cache_read_input_tokens: self.cache_read_input_tokens,
            cache_write_input_tokens: self.cache_write_input_tokens,
            reasoning_tokens: self.reasoning_tokens,
        }
    }

    /// The answer as the stream an upstream would have sent: per choice in order, each thinking
    /// block (its text, then its signature; a redacted block whole), the text one word a delta
    /// (in one delta with the logprobs when there are logprobs: they cannot be split by word),
    /// each tool call whole.
    pub fn stream_deltas(&self) -> Vec<pb::StreamDelta> {
        let mut out = Vec::new();
        let first = self.first_parts();
        let choices = std::iter::once((first.as_ref(), self.logprobs_json.as_str())).chain(
            self.more_choices
                .iter()
                .map(|c| (c.parts.as_slice(), c.logprobs_json.as_str())),
        );
        for (choice, (parts, logprobs)) in choices.enumerate() {
            let choice = u32::try_from(choice).unwrap_or(u32::MAX);
            let mut logprobs = logprobs.to_string();
            let mut calls = 0u32;
            for p in parts {
                let d = |d: pb::StreamDelta| pb::StreamDelta { choice, ..d };
                match p {
                    Part::Text { text } if !logprobs.is_empty() => out.push(d(pb::StreamDelta {
                        text: text.clone(),
                        logprobs_json: std::mem::take(&mut logprobs),
                        ..Default::default()
                    })),
                    Part::Text { text } => {
                        for piece in text.split_inclusive(' ') {
                            out.push(d(pb::StreamDelta {
                                text: piece.to_string(),
                                ..Default::default()
                            }));
                        }
                    }
                    Part::Thinking {
                        text,
                        signature,
                        redacted,
                        data,
                    } => {
                        let thinking = |t: pb::ThinkingPart| {
                            d(pb::StreamDelta {
                                thinking: Some(t),
                                ..Default::default()
                            })
                        };
                        if *redacted {
                            out.push(thinking(pb::ThinkingPart {
                                redacted: true,
                                data: data.clone(),
                                ..Default::default()
                            }));
                            continue;
                        }
                        if !text.is_empty() {
                            out.push(thinking(pb::ThinkingPart {
                                text: text.clone(),
                                ..Default::default()
                            }));
                        }
                        if !signature.is_empty() {
                            out.push(thinking(pb::ThinkingPart {
                                signature: signature.clone(),
                                ..Default::default()
                            }));
                        }
                    }
                    Part::ToolCall {
                        id,
                        name,
                        arguments_json,
                    } => {
                        out.push(d(pb::StreamDelta {
                            tool_call: Some(pb::ToolCallDelta {
                                index: calls,
                                id: id.clone(),
                                name: name.clone(),
                                arguments_json: arguments_json.clone(),
                            }),
                            ..Default::default()
                        }));
                        calls += 1;
                    }
                }
            }
            if !logprobs.is_empty() {
                out.push(pb::StreamDelta {
                    choice,
                    logprobs_json: logprobs,
                    ..Default::default()
                });
            }
        }
        out
    }

    /// The end event of [`Answer::stream_deltas`].
    pub fn stream_end(&self) -> pb::StreamEnd {
        pb::StreamEnd {
            stop_reason: self.stop_reason,
            usage: Some(self.usage()),
            more_stop_reasons: self.more_choices.iter().map(|c| c.stop_reason).collect(),
            ..Default::default()
        }
    }

    pub(super) fn size(&self) -> usize {
        self.text.len()
            + self.provider.len()
            + self.account.len()
            + self.region.len()
            + self.model.len()
            + self.logprobs_json.len()
            + self.parts.iter().map(part_len).sum::<usize>()
            + self
                .more_choices
                .iter()
                .map(|c| c.logprobs_json.len() + c.parts.iter().map(part_len).sum::<usize>() + 16)
                .sum::<usize>()
            + 64
    }
}

/// One choice being assembled from stream deltas.
#[derive(Default)]
struct Assembling {
    parts: Vec<pb::content_part::Part>,
    /// Tool-call index → position in `parts`.
    calls: Vec<(u32, usize)>,
    logprobs: Vec<Value>,
    /// Some delta carried logprobs.
    has_logprobs: bool,
}

impl Assembling {
    fn push(&mut self, d: &pb::StreamDelta) -> Option<()> {
        use pb::content_part::Part as P;
        if let Some(t) = &d.thinking {
            let open = match self.parts.last_mut() {
                Some(P::Thinking(open)) if !open.redacted && open.signature.is_empty() => {
                    Some(open)
                }
                _ => None,
            };
            if t.redacted {
                self.parts.push(P::Thinking(t.clone()));
            } else {
                match open {
                    Some(open) => {
                        open.text.push_str(&t.text);
                        open.signature.push_str(&t.signature);
                    }
                    None => self.parts.push(P::Thinking(pb::ThinkingPart {
                        text: t.text.clone(),
                        signature: t.signature.clone(),
                        ..Default::default()
                    })),
                }
            }
        }
        if !d.text.is_empty() {
            match self.parts.last_mut() {
                Some(P::Text(open)) => open.push_str(&d.text),
                _ => self.parts.push(P::Text(d.text.clone())),
            }
        }
        if let Some(tc) = &d.tool_call {
            match self.calls.iter().find(|(i, _)| *i == tc.index) {
                Some(&(_, at)) => {
                    if let Some(P::ToolCall(call)) = self.parts.get_mut(at) {
                        call.arguments_json.push_str(&tc.arguments_json);
                        if call.id.is_empty() {
                            call.id.clone_from(&tc.id);
                        }
                        if call.name.is_empty() {
                            call.name.clone_from(&tc.name);
                        }
                    }
                }
                None => {
                    self.calls.push((tc.index, self.parts.len()));
                    self.parts.push(P::ToolCall(pb::ToolCall {
                        id: tc.id.clone(),
                        name: tc.name.clone(),
                        arguments_json: tc.arguments_json.clone(),
                    }));
                }
            }
        }
        if !d.logprobs_json.is_empty() {
            self.has_logprobs = true;
            let v: Value = serde_json::from_str(&d.logprobs_json).ok()?;
            if !v.is_object() {
                return None;
            }
            match v.get("content") {
                Some(Value::Array(tokens)) => self.logprobs.extend(tokens.iter().cloned()),
                Some(Value::Null) | None => {}
                Some(_) => return None,
            }
        }
        Some(())
    }

    fn finish(self, stop_reason: i32) -> pb::Choice {
        pb::Choice {
            message: Some(pb::Message {
                role: pb::Role::Assistant as i32,
                content: self
                    .parts
                    .into_iter()
                    .map(|p| pb::ContentPart { part: Some(p) })
                    .collect(),
            }),
            stop_reason,
            logprobs_json: if self.has_logprobs {
                serde_json::json!({ "content": self.logprobs }).to_string()
            } else {
                String::new()
            },
        }
    }
}

/// A streamed answer as the unary answer it amounts to: per choice (`StreamDelta.choice`) its
/// text pieces joined, each thinking block (text pieces, then its signature; redacted blocks
/// whole), each tool call (by `index`: id and name, arguments joined), logprobs' `content`
/// arrays concatenated; stop reasons and usage from `end`. `None` when a delta names a choice
/// beyond [`MAX_CHOICES`] or carries logprobs that are not OpenAI's `{"content":[...]}`.
pub fn assemble(deltas: &[pb::StreamDelta], end: &pb::StreamEnd) -> Option<pb::InferResponse> {
    let mut choices: Vec<Assembling> = Vec::new();
    choices.resize_with(
        1 + end.more_stop_reasons.len().min(MAX_CHOICES),
        Default::default,
    );
    for d in deltas {
        let i = usize::try_from(d.choice)
            .ok()
            .filter(|i| *i < MAX_CHOICES)?;
        if choices.len() <= i {
            choices.resize_with(i + 1, Default::default);
        }
        choices[i].push(d)?;
    }
    let mut choices = choices.into_iter().enumerate().map(|(i, c)| {
        let stop = match i {
            0 => end.stop_reason,
            i => end
                .more_stop_reasons
                .get(i - 1)
                .copied()
                .unwrap_or(pb::StopReason::Unspecified as i32),
        };
        c.finish(stop)
    });
    let first = choices.next()?;
    Some(pb::InferResponse {
        message: first.message,
        stop_reason: first.stop_reason,
        logprobs_json: first.logprobs_json,
        usage: end.usage,
        more_choices: choices.collect(),
        additional_model_response_fields_json: end.additional_model_response_fields_json.clone(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> RouteTaken {
        RouteTaken {
            provider: "p".into(),
            account: "a".into(),
            region: "r".into(),
            model: "m".into(),
            ..Default::default()
        }
    }

    fn text(t: &str) -> pb::ContentPart {
        pb::ContentPart {
            part: Some(pb::content_part::Part::Text(t.into())),
        }
    }

    fn thinking(text: &str, signature: &str) -> pb::ContentPart {
        pb::ContentPart {
            part: Some(pb::content_part::Part::Thinking(pb::ThinkingPart {
                text: text.into(),
                signature: signature.into(),
                ..Default::default()
            })),
        }
    }

    fn rich() -> pb::InferResponse {
        pb::InferResponse {
            message: Some(pb::Message {
                role: pb::Role::Assistant as i32,
                content: vec![
                    thinking("let me see", "sig-1"),
                    pb::ContentPart {
                        part: Some(pb::content_part::Part::Thinking(pb::ThinkingPart {
                            redacted: true,
                            data: "b3BhcXVl".into(),
                            ..Default::default()
                        })),
                    },
                    text("Paris is the capital"),
                ],
            }),
            stop_reason: pb::StopReason::EndTurn as i32,
            logprobs_json:
                r#"{"content":[{"bytes":[80],"logprob":-0.1,"token":"Paris","top_logprobs":[]}]}"#
                    .into(),
            more_choices: vec![pb::Choice {
                message: Some(pb::Message {
                    role: pb::Role::Assistant as i32,
                    content: vec![text("It is Paris")],
                }),
                stop_reason: pb::StopReason::MaxTokens as i32,
                logprobs_json: String::new(),
            }],
            usage: Some(pb::Usage {
                input_tokens: 100,
                output_tokens: 20,
                cache_read_input_tokens: 80,
                cache_write_input_tokens: 5,
                reasoning_tokens: 7,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_entry_written_before_1_3_still_reads() {
        let old = r#"{"text":"hi there","stop_reason":1,"input_tokens":3,"output_tokens":2,
            "provider":"p","account":"a","region":"r","model":"m"}"#;
        let a: Answer = serde_json::from_str(old).unwrap();
        let r = a.response();
        assert_eq!(
            r.message.unwrap().content,
            vec![text("hi there")],
            "one text part"
        );
        assert!(r.more_choices.is_empty());
        assert_eq!(r.usage.unwrap().cache_read_input_tokens, 0);
        // And a text-only answer is stored in the old shape (an earlier hub reads it whole).
        let stored = serde_json::to_value(&a).unwrap();
        assert_eq!(stored.as_object().unwrap().len(), 8, "{stored}");
    }

    #[test]
    fn round_trips_choices_thinking_logprobs_and_usage() {
        let resp = rich();
        let a = Answer::from_response(&resp, &route()).unwrap();
        assert_eq!(a.text, "Paris is the capital", "old readers get the text");
        let back: Answer = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
        assert_eq!(back, a);
        let r = back.response();
        assert_eq!(r.message, resp.message);
        assert_eq!(r.more_choices, resp.more_choices);
        assert_eq!(r.logprobs_json, resp.logprobs_json);
        assert_eq!(r.usage, resp.usage);
        assert_eq!(r.stop_reason, resp.stop_reason);
    }

    #[test]
    fn replayed_stream_assembles_to_the_same_answer() {
        let a = Answer::from_response(&rich(), &route()).unwrap();
        let deltas = a.stream_deltas();
        assert!(deltas.iter().any(|d| d.choice == 1));
        let again = Answer::from_stream(&deltas, &a.stream_end(), &route()).unwrap();
        assert_eq!(again, a);
    }

    #[test]
    fn assembles_streamed_pieces() {
        let d = |f: &dyn Fn(&mut pb::StreamDelta)| {
            let mut d = pb::StreamDelta::default();
            f(&mut d);
            d
        };
        let deltas = vec![
            d(&|d| {
                d.thinking = Some(pb::ThinkingPart {
                    text: "a".into(),
                    ..Default::default()
                })
            }),
            d(&|d| {
                d.thinking = Some(pb::ThinkingPart {
                    text: "b".into(),
                    ..Default::default()
                })
            }),
            d(&|d| {
                d.thinking = Some(pb::ThinkingPart {
                    signature: "S".into(),
                    ..Default::default()
                })
            }),
            d(&|d| {
                d.text = "x".into();
                d.logprobs_json = r#"{"content":[{"token":"x"}]}"#.into();
            }),
            d(&|d| {
                d.text = "y".into();
                d.logprobs_json = r#"{"content":[{"token":"y"}]}"#.into();
            }),
            d(&|d| {
                d.tool_call = Some(pb::ToolCallDelta {
                    index: 0,
                    id: "c1".into(),
                    name: "f".into(),
                    arguments_json: "{\"a\"".into(),
                })
            }),
            d(&|d| {
                d.tool_call = Some(pb::ToolCallDelta {
                    index: 0,
                    arguments_json: ":1}".into(),
                    ..Default::default()
                })
            }),
            d(&|d| {
                d.choice = 2;
                d.text = "z".into();
            }),
        ];
        let end = pb::StreamEnd {
            stop_reason: pb::StopReason::ToolUse as i32,
            more_stop_reasons: vec![1, 2],
            ..Default::default()
        };
        let r = assemble(&deltas, &end).unwrap();
        let m = r.message.unwrap();
        assert_eq!(m.content[0], thinking("ab", "S"));
        assert_eq!(m.content[1], text("xy"));
        assert!(matches!(&m.content[2].part,
            Some(pb::content_part::Part::ToolCall(c)) if c.id == "c1" && c.arguments_json == "{\"a\":1}"));
        assert_eq!(
            r.logprobs_json,
            r#"{"content":[{"token":"x"},{"token":"y"}]}"#
        );
        assert_eq!(r.more_choices.len(), 2);
        assert!(
            r.more_choices[0]
                .message
                .as_ref()
                .unwrap()
                .content
                .is_empty()
        );
        assert_eq!(
            r.more_choices[1].message.as_ref().unwrap().content,
            vec![text("z")]
        );
        assert_eq!(r.more_choices[1].stop_reason, 2);
        // Logprobs in another shape, or an absurd choice index, are not stored.
        let bad = pb::StreamDelta {
            logprobs_json: "[1]".into(),
            ..Default::default()
        };
        assert!(assemble(&[bad], &end).is_none());
        let far = pb::StreamDelta {
            choice: 5000,
            text: "x".into(),
            ..Default::default()
        };
        assert!(assemble(&[far], &end).is_none());
    }
}
