//! OpenAI chat-completions wire types and their translation to and from `switchyard.v1`.

use serde_json::{Value, json};
use switchyard_proto::v1 as pb;

pub use super::request::*;

/// OpenAI's `finish_reason` for a stop reason.
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

/// OpenAI's `usage` object.
pub fn usage_json(u: Option<&pb::Usage>) -> Value {
    let (i, o) = u.map_or((0, 0), |u| (u.input_tokens, u.output_tokens));
    json!({ "prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o })
}

/// The `chat.completion` body for a spoke's answer.
pub fn completion_json(id: &str, created: u64, resp: &pb::InferResponse) -> Value {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for part in resp.message.iter().flat_map(|m| &m.content) {
        match &part.part {
            Some(pb::content_part::Part::Text(t)) => text.push_str(t),
            Some(pb::content_part::Part::ToolCall(tc)) => tool_calls.push(json!({
                "id": tc.id, "type": "function",
                "function": { "name": tc.name, "arguments": tc.arguments_json },
            })),
            Some(
                pb::content_part::Part::Image(_)
                | pb::content_part::Part::ToolResult(_)
                | pb::content_part::Part::Thinking(_)
                | pb::content_part::Part::CachePoint(_),
            )
            | None => {}
        }
    }
    let model = resp.route.as_ref().map(|r| r.model.as_str()).unwrap_or("");
    let mut message = json!({ "role": "assistant", "content": text, "refusal": null });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(resp.stop_reason),
            "logprobs": null,
        }],
        "usage": usage_json(resp.usage.as_ref()),
    })
}

/// One `chat.completion.chunk`.
pub fn chunk_json(
    id: &str,
    created: u64,
    model: &str,
    delta: Value,
    finish: Option<&str>,
    include_usage: bool,
) -> Value {
    let mut v = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish, "logprobs": null }],
    });
    if include_usage {
        v["usage"] = Value::Null;
    }
    v
}

/// The `delta` of a chunk carrying one piece of a tool call.
pub fn tool_call_delta_json(tc: &pb::ToolCallDelta) -> Value {
    let mut call = json!({"index": tc.index, "function": {"arguments": tc.arguments_json}});
    if !tc.id.is_empty() {
        call["id"] = json!(tc.id);
        call["type"] = json!("function");
    }
    if !tc.name.is_empty() {
        call["function"]["name"] = json!(tc.name);
    }
    json!({ "tool_calls": [call] })
}

/// The final usage chunk (`stream_options.include_usage`): empty `choices`.
pub fn usage_chunk_json(id: &str, created: u64, model: &str, usage: Option<&pb::Usage>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage_json(usage),
    })
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
