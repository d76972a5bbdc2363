//! The answer as Responses output items — `reasoning` (from thinking parts), `message` (with one
//! `output_text` part) and `function_call` — built the same way from a whole answer and from a
//! stream, which also gets the events that open, fill and close each item ([`Output`]); the
//! response object around them ([`response_json`]) and its `usage`.

use serde_json::{Map, Value, json};
use switchyard_proto::v1 as pb;

use super::request::encrypted_content;

/// How items are shown: reasoning text as `summary_text` only when a summary was asked for
/// (`reasoning.summary`), `encrypted_content` only when `include` asked for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Show {
    pub summary: bool,
    pub encrypted: bool,
}

#[derive(Debug)]
enum Item {
    Message {
        id: String,
        text: String,
        logprobs: Vec<Value>,
    },
    Call {
        id: String,
        index: u32,
        call_id: String,
        name: String,
        arguments: String,
    },
    Reasoning {
        id: String,
        part: pb::ThinkingPart,
        /// A summary part was opened (streaming).
        summary_open: bool,
    },
}

/// The output items of one answer, in order; the last may still be open (streaming).
#[derive(Debug)]
pub struct Output {
    show: Show,
    items: Vec<Item>,
    /// Index of the open item (always the last), if any.
    open: Option<usize>,
    /// Item status when closed: `incomplete` for the item open when the answer was cut short.
    statuses: Vec<&'static str>,
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

impl Output {
    pub fn new(show: Show) -> Output {
        Output {
            show,
            items: Vec::new(),
            open: None,
            statuses: Vec::new(),
        }
    }

    /// The whole answer `m` (unary); `logprobs_json` is the spoke's logprobs of its text.
    pub fn of_message(
        show: Show,
        m: Option<&pb::Message>,
        logprobs_json: &str,
        cut: bool,
    ) -> Output {
        let mut out = Output::new(show);
        let mut calls = 0u32;
        let mut logprobs = logprobs_content(logprobs_json);
        for p in m.iter().flat_map(|m| &m.content) {
            match &p.part {
                // An empty text part (an answer that only calls tools) makes no message item,
                // as a stream of the same answer makes none.
                Some(pb::content_part::Part::Text(t)) if !t.is_empty() => {
                    out.text(t, std::mem::take(&mut logprobs));
                }
                Some(pb::content_part::Part::ToolCall(tc)) => {
                    out.call(&pb::ToolCallDelta {
                        index: calls,
                        id: tc.id.clone(),
                        name: tc.name.clone(),
                        arguments_json: tc.arguments_json.clone(),
                    });
                    calls += 1;
                }
                Some(pb::content_part::Part::Thinking(t)) => {
                    // A whole block: its own item.
                    out.close();
                    out.thinking(t);
                    out.close();
                }
                _ => {}
            }
        }
        out.finish(cut);
        out
    }

    /// Closes the open item, if any: its closing events.
    pub fn close(&mut self) -> Vec<Value> {
        let Some(i) = self.open.take() else {
            return Vec::new();
        };
        self.statuses.push("completed");
        let done = self.item_json(i, true);
        let mut ev = Vec::new();
        match &self.items[i] {
            Item::Message { id, text, logprobs } => {
                ev.push(
                    json!({"type": "response.output_text.done", "item_id": id, "output_index": i,
                    "content_index": 0, "text": text, "logprobs": logprobs}),
                );
                ev.push(
                    json!({"type": "response.content_part.done", "item_id": id, "output_index": i,
                    "content_index": 0, "part": text_part_json(text, logprobs)}),
                );
            }
            Item::Call {
                id,
                name,
                arguments,
                ..
            } => {
                ev.push(
                    json!({"type": "response.function_call_arguments.done", "item_id": id,
                    "output_index": i, "name": name, "arguments": arguments}),
                );
            }
            Item::Reasoning {
                id,
                part,
                summary_open,
            } => {
                if *summary_open {
                    ev.push(
                        json!({"type": "response.reasoning_summary_text.done", "item_id": id,
                        "output_index": i, "summary_index": 0, "text": part.text}),
                    );
                    ev.push(
                        json!({"type": "response.reasoning_summary_part.done", "item_id": id,
                        "output_index": i, "summary_index": 0,
                        "part": {"type": "summary_text", "text": part.text}}),
                    );
                }
            }
        }
        ev.push(json!({"type": "response.output_item.done", "output_index": i, "item": done}));
        ev
    }

    fn open_item(&mut self, item: Item) -> Vec<Value> {
        let mut ev = self.close();
        self.items.push(item);
        let i = self.items.len() - 1;
        self.open = Some(i);
        ev.push(
            json!({"type": "response.output_item.added", "output_index": i,
            "item": self.item_json(i, false)}),
        );
        if let Item::Message { id, .. } = &self.items[i] {
            ev.push(
                json!({"type": "response.content_part.added", "item_id": id, "output_index": i,
                "content_index": 0, "part": text_part_json("", &[])}),
            );
        }
        ev
    }

    /// A piece of answer text (with its logprobs, OpenAI's `content` entries).
    pub fn text(&mut self, piece: &str, logprobs: Vec<Value>) -> Vec<Value> {
        let mut ev = Vec::new();
        let open_message = self
            .open
            .is_some_and(|i| matches!(self.items[i], Item::Message { .. }));
        if !open_message {
            ev = self.open_item(Item::Message {
                id: new_id("msg"),
                text: String::new(),
                logprobs: Vec::new(),
            });
        }
        if let Some(i) = self.open
            && let Item::Message {
                id,
                text,
                logprobs: all,
            } = &mut self.items[i]
        {
            text.push_str(piece);
            all.extend(logprobs.iter().cloned());
            ev.push(
                json!({"type": "response.output_text.delta", "item_id": id, "output_index": i,
                "content_index": 0, "delta": piece, "logprobs": logprobs}),
            );
        }
        ev
    }

    /// A piece of a tool call: the first piece of an `index` opens its item.
    pub fn call(&mut self, d: &pb::ToolCallDelta) -> Vec<Value> {
        let mut ev = Vec::new();
        let same = self.open.is_some_and(
            |i| matches!(&self.items[i], Item::Call { index, .. } if *index == d.index),
        );
        if !same {
            ev = self.open_item(Item::Call {
                id: new_id("fc"),
                index: d.index,
                call_id: if d.id.is_empty() {
                    new_id("call")
                } else {
                    d.id.clone()
                },
                name: d.name.clone(),
                arguments: String::new(),
            });
        }
        if let Some(i) = self.open
            && let Item::Call {
                id,
                name,
                arguments,
                ..
            } = &mut self.items[i]
        {
            if name.is_empty() && !d.name.is_empty() {
                name.clone_from(&d.name);
            }
            if !d.arguments_json.is_empty() {
                arguments.push_str(&d.arguments_json);
                ev.push(
                    json!({"type": "response.function_call_arguments.delta", "item_id": id,
                    "output_index": i, "delta": d.arguments_json}),
                );
            }
        }
        ev
    }

    /// A piece of reasoning: text pieces, then the block's signature (or a whole redacted
    /// block) in a last piece. A piece after a signed or redacted block starts a new item.
    pub fn thinking(&mut self, t: &pb::ThinkingPart) -> Vec<Value> {
        let mut ev = Vec::new();
        let continues = self.open.is_some_and(|i| {
            matches!(&self.items[i], Item::Reasoning { part, .. }
                if part.signature.is_empty() && !part.redacted)
        }) && !t.redacted;
        if !continues {
            ev = self.open_item(Item::Reasoning {
                id: new_id("rs"),
                part: pb::ThinkingPart::default(),
                summary_open: false,
            });
        }
        let show_summary = self.show.summary;
        if let Some(i) = self.open
            && let Item::Reasoning {
                id,
                part,
                summary_open,
            } = &mut self.items[i]
        {
            if t.redacted {
                part.redacted = true;
                part.data.clone_from(&t.data);
            }
            if !t.signature.is_empty() {
                part.signature.clone_from(&t.signature);
            }
            if !t.text.is_empty() {
                part.text.push_str(&t.text);
                if show_summary {
                    if !*summary_open {
                        *summary_open = true;
                        ev.push(
                            json!({"type": "response.reasoning_summary_part.added", "item_id": id,
                            "output_index": i, "summary_index": 0,
                            "part": {"type": "summary_text", "text": ""}}),
                        );
                    }
                    ev.push(
                        json!({"type": "response.reasoning_summary_text.delta", "item_id": id,
                        "output_index": i, "summary_index": 0, "delta": t.text}),
                    );
                }
            }
        }
        ev
    }

    /// The end of the answer: closes the open item (`incomplete` when the answer was `cut`).
    pub fn finish(&mut self, cut: bool) -> Vec<Value> {
        let ev = self.close();
        if cut && let Some(last) = self.statuses.last_mut() {
            *last = "incomplete";
        }
        // Closing events already went out with `completed`; the final object says which was
        // cut short.
        ev
    }

    /// Whether the answer carries tool calls.
    pub fn has_calls(&self) -> bool {
        self.items.iter().any(|i| matches!(i, Item::Call { .. }))
    }

    /// The items as `output` holds them (finished items, and the open one as it stands).
    pub fn items_json(&self) -> Vec<Value> {
        (0..self.items.len())
            .map(|i| self.item_json(i, self.open != Some(i)))
            .collect()
    }

    fn item_json(&self, i: usize, done: bool) -> Value {
        let status = if done {
            self.statuses.get(i).copied().unwrap_or("completed")
        } else {
            "in_progress"
        };
        match &self.items[i] {
            Item::Message { id, text, logprobs } => json!({
                "id": id, "type": "message", "status": status, "role": "assistant",
                "content": if done { vec![text_part_json(text, logprobs)] } else { Vec::new() },
            }),
            Item::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => json!({
                "id": id, "type": "function_call", "status": status, "call_id": call_id,
                "name": name, "arguments": if done { arguments.as_str() } else { "" },
            }),
            Item::Reasoning { id, part, .. } => {
                let summary = if done && self.show.summary && !part.text.is_empty() {
                    vec![json!({"type": "summary_text", "text": part.text})]
                } else {
                    Vec::new()
                };
                let mut v = json!({"id": id, "type": "reasoning", "summary": summary});
                if done && self.show.encrypted {
                    v["encrypted_content"] = json!(encrypted_content(part));
                }
                v
            }
        }
    }

    /// The answer in the internal model (the assistant turn a continuation sends back).
    pub fn message(&self) -> pb::Message {
        let mut content = Vec::new();
        for item in &self.items {
            content.push(pb::ContentPart {
                part: Some(match item {
                    Item::Message { text, .. } => pb::content_part::Part::Text(text.clone()),
                    Item::Call {
                        call_id,
                        name,
                        arguments,
                        ..
                    } => pb::content_part::Part::ToolCall(pb::ToolCall {
                        id: call_id.clone(),
                        name: name.clone(),
                        arguments_json: arguments.clone(),
                    }),
                    Item::Reasoning { part, .. } => pb::content_part::Part::Thinking(part.clone()),
                }),
            });
        }
        pb::Message {
            role: pb::Role::Assistant as i32,
            content,
        }
    }
}

fn text_part_json(text: &str, logprobs: &[Value]) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs})
}

/// The `content` entries of the spoke's logprobs JSON (`{"content":[…]}`), each
/// `{"token","logprob","bytes","top_logprobs"}` as Responses' `output_text.logprobs` has them.
pub fn logprobs_content(json: &str) -> Vec<Value> {
    if json.is_empty() {
        return Vec::new();
    }
    serde_json::from_str::<Value>(json)
        .ok()
        .and_then(|v| v.get("content").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// `status` and `incomplete_details` of an answer that stopped for `stop`: cut short by
/// `max_output_tokens` or by a content filter → `incomplete`, else `completed`.
pub fn status(stop: i32) -> (&'static str, Value) {
    match pb::StopReason::try_from(stop).unwrap_or(pb::StopReason::Unspecified) {
        pb::StopReason::MaxTokens => ("incomplete", json!({"reason": "max_output_tokens"})),
        pb::StopReason::ContentFiltered => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// Responses' `usage`: `input_tokens` counts every input token, of which
/// `input_tokens_details.cached_tokens` were read from the prompt cache and `cache_write_tokens`
/// written to it; `output_tokens` includes `output_tokens_details.reasoning_tokens`.
pub fn usage_json(u: Option<&pb::Usage>) -> Value {
    let u = u.copied().unwrap_or_default();
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cache_read_input_tokens,
            "cache_write_tokens": u.cache_write_input_tokens,
        },
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u64::from(u.input_tokens) + u64::from(u.output_tokens),
    })
}

/// What every form of one response shares.
#[derive(Debug, Clone)]
pub struct Head {
    /// `resp_…`.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The model that served it (the route's).
    pub model: String,
    /// The request fields the object repeats.
    pub echo: Map<String, Value>,
}

/// The response object. `status`: `in_progress`, `completed`, `incomplete` or `failed`.
pub fn response_json(
    head: &Head,
    status: &str,
    output: Vec<Value>,
    usage: Value,
    incomplete_details: Value,
    error: Value,
) -> Value {
    let mut v = Map::new();
    v.insert("id".into(), json!(head.id));
    v.insert("object".into(), json!("response"));
    v.insert("created_at".into(), json!(head.created_at));
    v.insert("status".into(), json!(status));
    let completed_at = (status == "completed").then(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(head.created_at)
    });
    v.insert("completed_at".into(), json!(completed_at));
    v.insert("error".into(), error);
    v.insert("incomplete_details".into(), incomplete_details);
    v.insert("model".into(), json!(head.model));
    v.insert("output".into(), Value::Array(output));
    v.insert("usage".into(), usage);
    for (k, val) in &head.echo {
        v.insert(k.clone(), val.clone());
    }
    Value::Object(v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn text(t: &str) -> pb::ContentPart {
        pb::ContentPart {
            part: Some(pb::content_part::Part::Text(t.into())),
        }
    }

    #[test]
    fn a_whole_answer_becomes_items_in_order() {
        let m = pb::Message {
            role: pb::Role::Assistant as i32,
            content: vec![
                pb::ContentPart {
                    part: Some(pb::content_part::Part::Thinking(pb::ThinkingPart {
                        text: "hmm".into(),
                        signature: "s".into(),
                        ..Default::default()
                    })),
                },
                text("Hello "),
                text("there"),
                pb::ContentPart {
                    part: Some(pb::content_part::Part::ToolCall(pb::ToolCall {
                        id: "call_1".into(),
                        name: "f".into(),
                        arguments_json: "{}".into(),
                    })),
                },
            ],
        };
        let out = Output::of_message(
            Show {
                summary: true,
                encrypted: true,
            },
            Some(&m),
            "",
            false,
        );
        let items = out.items_json();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0]["type"], "reasoning");
        assert_eq!(items[0]["summary"][0]["text"], "hmm");
        assert!(
            items[0]["encrypted_content"]
                .as_str()
                .unwrap()
                .starts_with("sy1.")
        );
        assert_eq!(items[1]["content"][0]["text"], "Hello there");
        assert_eq!(items[1]["status"], "completed");
        assert_eq!(items[2]["call_id"], "call_1");
        assert_eq!(items[2]["arguments"], "{}");
        assert!(out.has_calls());
        // The stored turn keeps the signature.
        let back = out.message();
        assert!(matches!(&back.content[0].part,
            Some(pb::content_part::Part::Thinking(t)) if t.signature == "s"));
        // Without summary / include, reasoning shows neither text nor encrypted content.
        let plain = Output::of_message(Show::default(), Some(&m), "", true).items_json();
        assert_eq!(plain[0]["summary"], json!([]));
        assert!(plain[0].get("encrypted_content").is_none());
        assert_eq!(plain[2]["status"], "incomplete");
    }

    #[test]
    fn stream_events_open_fill_and_close_items() {
        let mut out = Output::new(Show::default());
        let mut ev = out.text("Hi", vec![]);
        ev.extend(out.text(" you", vec![]));
        ev.extend(out.call(&pb::ToolCallDelta {
            index: 0,
            id: "c".into(),
            name: "f".into(),
            arguments_json: "{\"a\"".into(),
        }));
        ev.extend(out.call(&pb::ToolCallDelta {
            index: 0,
            arguments_json: ":1}".into(),
            ..Default::default()
        }));
        ev.extend(out.finish(false));
        let types: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
            ]
        );
        assert_eq!(ev[4]["text"], "Hi you");
        assert_eq!(ev[10]["arguments"], "{\"a\":1}");
        assert_eq!(ev[11]["output_index"], 1);
        let items = out.items_json();
        assert_eq!(items[1]["arguments"], "{\"a\":1}");
    }

    #[test]
    fn usage_and_status() {
        let u = usage_json(Some(&pb::Usage {
            input_tokens: 10,
            output_tokens: 5,
            cache_read_input_tokens: 4,
            reasoning_tokens: 2,
            ..Default::default()
        }));
        assert_eq!(u["total_tokens"], 15);
        assert_eq!(u["input_tokens_details"]["cached_tokens"], 4);
        assert_eq!(u["output_tokens_details"]["reasoning_tokens"], 2);
        assert_eq!(status(pb::StopReason::MaxTokens as i32).0, "incomplete");
        assert_eq!(status(pb::StopReason::EndTurn as i32).0, "completed");
    }
}
