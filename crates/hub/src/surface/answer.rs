//! What every surface reads from an answer the same way, whatever its wire format: the stop
//! reason a caller sees (derived from the content: an answer that carries tool calls stopped to
//! use them), the reasoning text of a message, the usage split each API reports, and JSON text
//! from the spoke (`logprobs_json`, `additional_model_response_fields_json`) as a value.

use serde_json::Value;
use switchyard_proto::v1 as pb;

/// Whether `m` carries at least one tool call.
pub fn has_calls(m: Option<&pb::Message>) -> bool {
    m.iter()
        .flat_map(|m| &m.content)
        .any(|p| matches!(p.part, Some(pb::content_part::Part::ToolCall(_))))
}

/// The stop reason a caller sees for an answer whose content carries tool calls (`calls`) or
/// not. Calls present → `TOOL_USE` whatever the upstream said (some report `stop` / `end_turn`
/// next to calls), except `MAX_TOKENS` and `CONTENT_FILTERED`, which say the answer (and maybe
/// the last call's arguments) was cut short and stay as they are. No calls → never `TOOL_USE`
/// (`END_TURN` instead: a caller told to run tools would find none).
pub fn stop_reason(reason: i32, calls: bool) -> pb::StopReason {
    use pb::StopReason as S;
    let r = S::try_from(reason).unwrap_or(S::Unspecified);
    match (r, calls) {
        (S::MaxTokens | S::ContentFiltered, _) => r,
        (_, true) => S::ToolUse,
        (S::ToolUse, false) => S::EndTurn,
        (r, false) => r,
    }
}

/// The reasoning text of `m`: its thinking parts' text, in order, joined; redacted blocks have
/// none.
pub fn thinking_text(m: Option<&pb::Message>) -> String {
    let mut out = String::new();
    for p in m.iter().flat_map(|m| &m.content) {
        if let Some(pb::content_part::Part::Thinking(t)) = &p.part
            && !t.redacted
        {
            out.push_str(&t.text);
        }
    }
    out
}

/// JSON text from the spoke as a value: empty, or not JSON, → `null`.
pub fn json_or_null(text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// A usage split as Anthropic and Bedrock report it: input tokens neither read from nor written
/// to the prompt cache, then those read, then those written. The internal `Usage.input_tokens`
/// counts every input token (as OpenAI's `prompt_tokens` does; docs/api.md "Answers"), so the
/// uncached part is what remains after the cache counts (never below 0).
pub fn uncached_split(u: &pb::Usage) -> (u32, u32, u32) {
    let read = u.cache_read_input_tokens;
    let write = u.cache_write_input_tokens;
    (
        u.input_tokens.saturating_sub(read).saturating_sub(write),
        read,
        write,
    )
}

/// The redacted reasoning `data` as Bedrock's `redactedContent` (a base64 blob in JSON): kept as
/// it is when it is base64 already (Bedrock's own, or Anthropic's opaque `data`), else encoded.
pub fn redacted_base64(data: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    if b64.decode(data).is_ok() {
        data.to_string()
    } else {
        b64.encode(data.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::StopReason as S;

    #[test]
    fn calls_decide_the_stop_reason() {
        assert_eq!(stop_reason(S::EndTurn as i32, true), S::ToolUse);
        assert_eq!(stop_reason(S::StopSequence as i32, true), S::ToolUse);
        assert_eq!(stop_reason(S::Unspecified as i32, true), S::ToolUse);
        assert_eq!(stop_reason(S::MaxTokens as i32, true), S::MaxTokens);
        assert_eq!(
            stop_reason(S::ContentFiltered as i32, true),
            S::ContentFiltered
        );
        assert_eq!(stop_reason(S::ToolUse as i32, false), S::EndTurn);
        assert_eq!(stop_reason(S::StopSequence as i32, false), S::StopSequence);
        assert_eq!(stop_reason(99, false), S::Unspecified);
    }

    #[test]
    fn usage_split_never_goes_below_zero() {
        let u = pb::Usage {
            input_tokens: 100,
            cache_read_input_tokens: 60,
            cache_write_input_tokens: 30,
            ..Default::default()
        };
        assert_eq!(uncached_split(&u), (10, 60, 30));
        let odd = pb::Usage {
            input_tokens: 5,
            cache_read_input_tokens: 60,
            ..Default::default()
        };
        assert_eq!(uncached_split(&odd), (0, 60, 0));
    }

    #[test]
    fn redacted_data_is_base64_once() {
        assert_eq!(redacted_base64("aGVsbG8="), "aGVsbG8=");
        assert_eq!(redacted_base64("not base64!"), "bm90IGJhc2U2NCE=");
        assert_eq!(json_or_null(""), Value::Null);
        assert_eq!(json_or_null("{"), Value::Null);
        assert_eq!(json_or_null("{\"a\":1}")["a"], 1);
    }
}
