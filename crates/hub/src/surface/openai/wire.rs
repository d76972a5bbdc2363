//! OpenAI chat-completions wire types and their translation to and from `switchyard.v1`.

use serde::Serialize;
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;

pub use super::request::*;

/// OpenAI's `finish_reason` for a stop reason (as given; [`finish_reason_for`] derives it from
/// the content first).
pub fn finish_reason(reason: i32) -> &'static str {
    match pb::StopReason::try_from(reason).unwrap_or(pb::StopReason::Unspecified) {
        pb::StopReason::MaxTokens => "length",
        pb::StopReason::ToolUse => "tool_calls",
        pb::StopReason::ContentFiltered => "content_filter",
        pb::StopReason::Unspecified | pb::StopReason::EndTurn | pb::StopReason::StopSequence => {
            "stop"
        }
    }
}

/// The `finish_reason` of a choice that carries tool calls (`calls`) or not: `tool_calls`
/// whenever calls are present (unless cut short: `length`, `content_filter`), never without
/// (see [`crate::surface::answer::stop_reason`]).
pub fn finish_reason_for(reason: i32, calls: bool) -> &'static str {
    finish_reason(crate::surface::answer::stop_reason(reason, calls) as i32)
}

/// OpenAI's `usage` object: `prompt_tokens` (every input token, cached ones included),
/// `completion_tokens` (reasoning tokens included), `total_tokens`, and their details:
/// `prompt_tokens_details.cached_tokens` (read from the prompt cache) and
/// `completion_tokens_details.reasoning_tokens`.
#[derive(Debug, Serialize)]
pub struct Usage {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u64,
    prompt_tokens_details: CachedTokens,
    completion_tokens_details: ReasoningTokens,
}

#[derive(Debug, Serialize)]
struct CachedTokens {
    cached_tokens: u32,
}

#[derive(Debug, Serialize)]
struct ReasoningTokens {
    reasoning_tokens: u32,
}

impl Usage {
    /// From the spoke's usage (all zeros when it reported none).
    pub fn of(u: Option<&pb::Usage>) -> Usage {
        let u = u.copied().unwrap_or_default();
        Usage {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u64::from(u.input_tokens) + u64::from(u.output_tokens),
            prompt_tokens_details: CachedTokens {
                cached_tokens: u.cache_read_input_tokens,
            },
            completion_tokens_details: ReasoningTokens {
                reasoning_tokens: u.reasoning_tokens,
            },
        }
    }
}

/// [`Usage`] as a JSON value (the streamed usage chunk).
pub fn usage_json(u: Option<&pb::Usage>) -> Value {
    serde_json::to_value(Usage::of(u)).unwrap_or(Value::Null)
}

/// A `chat.completion` body, serialised as it is (no intermediate `serde_json::Value`: building
/// and dropping that tree was about a sixth of the hub's instructions per request). Keys come in
/// OpenAI's order: `id`, `object`, `created`, `model`, `choices`, `usage`.
#[derive(Debug, Serialize)]
pub struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<Choice<'a>>,
    usage: Usage,
}

/// One entry of `choices`: the message, its `finish_reason` (derived from the content) and
/// `logprobs` (the spoke's `logprobs_json`, else `null`).
#[derive(Debug, Serialize)]
struct Choice<'a> {
    index: usize,
    message: AssistantMessage<'a>,
    finish_reason: &'static str,
    logprobs: Value,
}

/// The assistant message of a choice: `content` from the text parts (`""` when none),
/// `refusal: null`, `tool_calls` from the `ToolCall` parts (absent when none) and
/// `reasoning_content` from the thinking parts' text (absent when none), as OpenAI-compatible
/// reasoning servers — vLLM, llama.cpp, DeepSeek — name it.
#[derive(Debug, Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: String,
    refusal: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    reasoning_content: String,
}

/// `{"id", "type": "function", "function": {"name", "arguments"}}`.
#[derive(Debug, Serialize)]
struct ToolCallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Debug, Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

fn choice<'a>(
    index: usize,
    message: Option<&'a pb::Message>,
    stop: i32,
    logprobs: &str,
) -> Choice<'a> {
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    for part in message.iter().flat_map(|m| &m.content) {
        match &part.part {
            Some(pb::content_part::Part::Text(t)) => content.push_str(t),
            Some(pb::content_part::Part::ToolCall(tc)) => tool_calls.push(ToolCallOut {
                id: &tc.id,
                kind: "function",
                function: FunctionOut {
                    name: &tc.name,
                    arguments: &tc.arguments_json,
                },
            }),
            Some(
                pb::content_part::Part::Image(_)
                | pb::content_part::Part::ToolResult(_)
                | pb::content_part::Part::Thinking(_)
                | pb::content_part::Part::CachePoint(_),
            )
            | None => {}
        }
    }
    let calls = !tool_calls.is_empty();
    Choice {
        index,
        message: AssistantMessage {
            role: "assistant",
            content,
            refusal: None,
            tool_calls,
            reasoning_content: crate::surface::answer::thinking_text(message),
        },
        finish_reason: finish_reason_for(stop, calls),
        logprobs: crate::surface::answer::json_or_null(logprobs),
    }
}

/// The `chat.completion` body for a spoke's answer: `choices[0]` from `message`, `choices[1..]`
/// from `more_choices` (`n` > 1), `usage` with its details.
pub fn completion_json<'a>(
    id: &'a str,
    created: u64,
    resp: &'a pb::InferResponse,
) -> Completion<'a> {
    let mut choices = Vec::with_capacity(1 + resp.more_choices.len());
    choices.push(choice(
        0,
        resp.message.as_ref(),
        resp.stop_reason,
        &resp.logprobs_json,
    ));
    for (i, c) in resp.more_choices.iter().enumerate() {
        choices.push(choice(
            i + 1,
            c.message.as_ref(),
            c.stop_reason,
            &c.logprobs_json,
        ));
    }
    Completion {
        id,
        object: "chat.completion",
        created,
        model: resp.route.as_ref().map(|r| r.model.as_str()).unwrap_or(""),
        choices,
        usage: Usage::of(resp.usage.as_ref()),
    }
}

/// What labels every `chat.completion.chunk` of one answer.
#[derive(Debug, Clone)]
pub struct ChunkHead {
    pub id: String,
    pub created: u64,
    /// The upstream model that serves (may be learnt after the first chunk of a followed stream).
    pub model: String,
    /// `stream_options.include_usage`: every chunk carries `"usage": null`, and a last chunk
    /// with empty `choices` the usage.
    pub include_usage: bool,
}

impl ChunkHead {
    /// One `chat.completion.chunk` with one choice: `index`, its `delta`, `finish_reason` and
    /// `logprobs` (`null` when none).
    pub fn chunk(&self, index: u32, delta: Value, finish: Option<&str>, logprobs: Value) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs }],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    /// The final usage chunk (`stream_options.include_usage`): empty `choices`.
    pub fn usage_chunk(&self, usage: Option<&pb::Usage>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_json(usage),
        })
    }
}

/// The `tool_calls` entry of a chunk carrying one piece of a tool call: `index`, and for the
/// call's first piece `id`, `type` and `function.name`; `function.arguments` the piece.
pub fn tool_call_delta_json(tc: &pb::ToolCallDelta) -> Value {
    let mut call = json!({"index": tc.index, "function": {"arguments": tc.arguments_json}});
    if !tc.id.is_empty() {
        call["id"] = json!(tc.id);
        call["type"] = json!("function");
    }
    if !tc.name.is_empty() {
        call["function"]["name"] = json!(tc.name);
    }
    call
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HubError;

    #[test]
    fn translates_messages_and_params() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "demo",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "again"}
            ],
            "max_completion_tokens": 7, "max_tokens": 99, "temperature": 0.5, "stop": "END",
            "user": "ignored"
        }))
        .unwrap();
        let r = req.to_infer().unwrap();
        assert_eq!(r.system, "be brief");
        assert_eq!(r.messages.len(), 3);
        assert_eq!(r.messages[0].role, pb::Role::User as i32);
        assert_eq!(
            r.messages[0].content[0].part,
            Some(pb::content_part::Part::Text("hi there".into()))
        );
        let p = r.params.clone().unwrap();
        assert_eq!(p.max_tokens, Some(7));
        assert_eq!(p.stop, vec!["END".to_string()]);
        assert!(!crate::routing::Needs::of_request(&r, req.stream).streaming);
    }

    #[test]
    fn rejects_bad_roles_and_parts() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "demo", "messages": [{"role": "wizard", "content": "x"}]
        }))
        .unwrap();
        assert!(matches!(req.to_infer(), Err(HubError::BadRequest(_))));
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "demo", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]
        }))
        .unwrap();
        assert!(matches!(req.to_infer(), Err(HubError::BadRequest(_))));
    }

    #[test]
    fn stop_array_and_finish_reasons() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "demo", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b"], "stream": true
        }))
        .unwrap();
        let r = req.to_infer().unwrap();
        assert_eq!(r.params.as_ref().unwrap().stop.len(), 2);
        assert!(crate::routing::Needs::of_request(&r, req.stream).streaming);
        assert_eq!(finish_reason(pb::StopReason::MaxTokens as i32), "length");
        assert_eq!(finish_reason(pb::StopReason::EndTurn as i32), "stop");
    }
}
