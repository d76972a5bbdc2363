//! What every adapter does the same way with the contract's 1.3 fields: reasoning settings and
//! the effort ↔ budget tables, tool choice, structured output by a forced tool, mid-conversation
//! system messages, same-API passthrough, and the stop reason derived from an answer's content.

use crate::{Chunk, ChunkStream, Completion, StructuredOutputMode, UpstreamError};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use switchyard_proto::v1::{
    InferRequest, ResponseFormat, Role, StopReason, ToolCallDelta, content_part::Part,
    reasoning::Mode as ReasoningMode, response_format::Type as FormatType,
    tool_choice::Mode as ChoiceMode,
};

/// Reasoning effort → thinking budget (tokens), for upstreams that take a budget (Anthropic
/// `thinking.budget_tokens`, Bedrock Claude). `none` means no reasoning. docs/api.md has it.
pub const EFFORT_BUDGETS: [(&str, u32); 6] = [
    ("none", 0),
    ("minimal", 1024),
    ("low", 2048),
    ("medium", 8192),
    ("high", 16384),
    ("xhigh", 32768),
];

/// Anthropic's smallest `budget_tokens`.
pub const MIN_THINKING_BUDGET: u32 = 1024;

/// The budget of an OpenAI-style reasoning effort; `None` for an effort this table does not know.
pub fn budget_for_effort(effort: &str) -> Option<u32> {
    EFFORT_BUDGETS
        .iter()
        .find(|(e, _)| *e == effort)
        .map(|(_, b)| *b)
}

/// The reasoning effort for a thinking budget, for upstreams that take an effort (OpenAI
/// `reasoning_effort`, Nova `maxReasoningEffort`): below 4096 tokens `low`, below 16384
/// `medium`, else `high` (the three efforts every reasoning endpoint knows).
pub fn effort_for_budget(budget: u32) -> &'static str {
    match budget {
        0..4096 => "low",
        4096..16384 => "medium",
        _ => "high",
    }
}

/// Anthropic `output_config.effort` (`low`, `medium`, `high`, `max`) for an OpenAI-style effort.
pub fn anthropic_effort(effort: &str) -> &'static str {
    match effort {
        "none" | "minimal" | "low" => "low",
        "medium" => "medium",
        "xhigh" | "max" => "max",
        _ => "high",
    }
}

/// What the request asks of the model's reasoning, in one of four forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Think {
    /// No reasoning (`disabled`, or effort `none`).
    Off,
    /// Reason with this many tokens (Anthropic `enabled` + `budget_tokens`), maybe an effort too.
    Budget(u32, Option<String>),
    /// Reason at this effort (OpenAI `reasoning_effort`), no budget given.
    Effort(String),
    /// The model decides (Anthropic `adaptive`), maybe guided by an effort.
    Adaptive(Option<String>),
}

/// The request's reasoning ask; `None` when it asks nothing (the model's default).
pub fn reasoning(req: &InferRequest) -> Option<Think> {
    let r = req.params.as_ref()?.reasoning.as_ref()?;
    let effort = (!r.effort.is_empty()).then(|| r.effort.clone());
    if effort.as_deref() == Some("none") {
        return Some(Think::Off);
    }
    match ReasoningMode::try_from(r.mode).unwrap_or(ReasoningMode::Unspecified) {
        ReasoningMode::Disabled => Some(Think::Off),
        ReasoningMode::Adaptive => Some(Think::Adaptive(effort)),
        ReasoningMode::Enabled if r.budget_tokens > 0 => {
            Some(Think::Budget(r.budget_tokens, effort))
        }
        ReasoningMode::Enabled => Some(Think::Effort(effort.unwrap_or_else(|| "medium".into()))),
        ReasoningMode::Unspecified => effort.map(Think::Effort),
    }
}

/// The budget a reasoning ask comes to, for upstreams that take one: the given budget, else the
/// effort's from [`EFFORT_BUDGETS`] (an unknown effort is the caller's fault); `None` for
/// [`Think::Off`] and for adaptive reasoning.
pub fn think_budget(think: &Think) -> Result<Option<u32>, UpstreamError> {
    match think {
        Think::Off | Think::Adaptive(_) => Ok(None),
        Think::Budget(b, _) => Ok(Some(*b)),
        Think::Effort(e) => match budget_for_effort(e) {
            Some(0) => Ok(None),
            Some(b) => Ok(Some(b)),
            None => Err(invalid(format!(
                "reasoning effort {e:?} is not one of none, minimal, low, medium, high, xhigh"
            ))),
        },
    }
}

/// The request's tool choice and, with `MODE_TOOL`, the tool's name (unset = auto).
pub fn tool_choice(req: &InferRequest) -> (ChoiceMode, &str) {
    match &req.tool_choice {
        Some(c) => (
            ChoiceMode::try_from(c.mode).unwrap_or(ChoiceMode::Auto),
            c.name.as_str(),
        ),
        None => (ChoiceMode::Auto, ""),
    }
}

/// The request's response format when it asks for JSON (`None`: free text).
pub fn json_format(req: &InferRequest) -> Option<&ResponseFormat> {
    req.response_format
        .as_ref()
        .filter(|f| f.r#type != FormatType::Text as i32)
}

/// The JSON Schema of a JSON response format: `schema_json` for `json_schema`, `{"type":
/// "object"}` for `json_object`. Malformed schema text is the caller's fault.
pub fn format_schema(f: &ResponseFormat) -> Result<Value, UpstreamError> {
    if f.r#type == FormatType::JsonObject as i32 {
        return Ok(json!({"type": "object"}));
    }
    let schema: Value = serde_json::from_str(&f.schema_json)
        .map_err(|e| invalid(format!("response_format.schema: not JSON ({e})")))?;
    if !schema.is_object() {
        return Err(invalid(
            "response_format.schema: must be a JSON object".into(),
        ));
    }
    Ok(schema)
}

/// The tool that carries a structured answer on an upstream without `response_format`
/// ([`StructuredOutputMode::Tool`]): offered with the request's tools, its input is the answer.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputTool {
    /// The schema's name (`response_format.name`), else `json_response`.
    pub name: String,
    pub description: String,
    /// The tool's input schema: the requested schema, or — when that is not an object schema,
    /// which tool inputs must be — `{"type":"object","properties":{"value": schema}}`.
    pub input_schema: Value,
    /// The answer is the input's `value` (the schema was wrapped).
    pub wrapped: bool,
}

impl OutputTool {
    /// The answer's JSON text from the tool call's arguments.
    pub fn answer(&self, arguments_json: &str) -> String {
        if !self.wrapped {
            return arguments_json.to_owned();
        }
        serde_json::from_str::<Value>(arguments_json)
            .ok()
            .and_then(|v| v.get("value").cloned())
            .map(|v| v.to_string())
            .unwrap_or_else(|| arguments_json.to_owned())
    }
}

/// How a request's tools are offered after the structured-output tool is added.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolPlan {
    /// The structured-output tool to offer too, when the answer must be JSON.
    pub output: Option<OutputTool>,
    /// The tool choice to send.
    pub mode: ChoiceMode,
    /// With `MODE_TOOL`: the tool to call.
    pub name: String,
}

/// The tools and tool choice to send, for an upstream whose structured output is `mode`:
///
/// | asked | structured output by a tool |
/// | --- | --- |
/// | no JSON format | as asked |
/// | JSON, choice `auto`, no tools | the output tool, forced (`tool`) |
/// | JSON, choice `auto`, tools | the tools and the output tool, one must be called (`any`): a call of a tool, or the JSON answer |
/// | JSON, choice `none` | the output tool, forced |
/// | JSON, choice `any` / `tool` | as asked (that turn is a tool call, not an answer) |
///
/// With [`StructuredOutputMode::Native`] a `json_schema` format goes to the provider's own
/// field (no tool); `json_object` has no schema to give it and is carried by the tool.
pub fn tool_plan(
    req: &InferRequest,
    mode: StructuredOutputMode,
) -> Result<ToolPlan, UpstreamError> {
    let (asked, name) = tool_choice(req);
    let as_asked = ToolPlan {
        output: None,
        mode: asked,
        name: name.to_owned(),
    };
    let Some(f) = json_format(req) else {
        return Ok(as_asked);
    };
    if mode == StructuredOutputMode::Native && f.r#type == FormatType::JsonSchema as i32 {
        return Ok(as_asked);
    }
    if matches!(asked, ChoiceMode::Any | ChoiceMode::Tool) {
        return Ok(as_asked);
    }
    let schema = format_schema(f)?;
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let mut tool_name = if valid_name(&f.name) {
        f.name.clone()
    } else {
        "json_response".to_owned()
    };
    while req.tools.iter().any(|t| t.name == tool_name) {
        tool_name = format!("{}_", &tool_name[..tool_name.len().min(60)]);
    }
    let wrapped = schema.get("type").and_then(Value::as_str) != Some("object");
    let input_schema = if wrapped {
        json!({"type": "object", "properties": {"value": schema}, "required": ["value"]})
    } else {
        schema
    };
    let description = if f.description.is_empty() {
        "Give the answer as this tool's input, in the form its schema asks for.".to_owned()
    } else {
        f.description.clone()
    };
    let forced = asked == ChoiceMode::None || req.tools.is_empty();
    Ok(ToolPlan {
        output: Some(OutputTool {
            name: tool_name.clone(),
            description,
            input_schema,
            wrapped,
        }),
        mode: if forced {
            ChoiceMode::Tool
        } else {
            ChoiceMode::Any
        },
        name: if forced { tool_name } else { String::new() },
    })
}

/// The texts of the request's `ROLE_SYSTEM` messages, in order (for upstreams whose system
/// prompt is the only place for them: appended to it).
pub fn system_message_texts(req: &InferRequest) -> Vec<String> {
    req.messages
        .iter()
        .filter(|m| m.role == Role::System as i32)
        .map(|m| {
            m.content
                .iter()
                .filter_map(|p| match &p.part {
                    Some(Part::Text(t)) => Some(t.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether the conversation holds tool calls or tool results.
pub fn history_has_tool_blocks(req: &InferRequest) -> bool {
    req.messages
        .iter()
        .flat_map(|m| &m.content)
        .any(|p| matches!(p.part, Some(Part::ToolCall(_)) | Some(Part::ToolResult(_))))
}

/// The passthrough fields for an upstream speaking `api` (`openai`, `anthropic`, `converse`):
/// `None` when the request has none. A passthrough for another API, or one that is not a JSON
/// object, is the caller's fault (its fields could change the answer: never dropped).
pub fn passthrough(
    req: &InferRequest,
    api: &str,
) -> Result<Option<Map<String, Value>>, UpstreamError> {
    let Some(p) = req
        .passthrough
        .as_ref()
        .filter(|p| !p.fields_json.trim().is_empty())
    else {
        return Ok(None);
    };
    if p.api != api {
        return Err(invalid(format!(
            "passthrough fields of the {:?} API cannot reach an upstream speaking {api:?}",
            p.api
        )));
    }
    match serde_json::from_str::<Value>(&p.fields_json) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        _ => Err(invalid(
            "passthrough.fields_json: must be a JSON object".into(),
        )),
    }
}

/// Adds the `extra` fields `body` does not have yet (what the adapter set wins).
pub fn merge_absent(body: &mut Value, extra: Map<String, Value>) {
    if let Some(b) = body.as_object_mut() {
        for (k, v) in extra {
            b.entry(k).or_insert(v);
        }
    }
}

/// The stop reason an answer's content implies: calls present → `tool_use` whatever the
/// upstream said (OpenAI-compatible servers say `stop` next to calls); no calls but `tool_use`
/// (the structured-output tool was the only call) → `end_turn`.
pub fn derive_stop(stop: StopReason, has_calls: bool) -> StopReason {
    match (has_calls, stop) {
        (true, StopReason::MaxTokens) => StopReason::MaxTokens,
        (true, _) => StopReason::ToolUse,
        (false, StopReason::ToolUse) => StopReason::EndTurn,
        (false, s) => s,
    }
}

/// How an answer is put in final form ([`settle`], [`settle_stream`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Finish {
    /// The structured-output tool whose call is the answer's JSON text.
    pub output: Option<OutputTool>,
    /// Keep only the first tool call (`parallel_tool_calls: false` on an upstream without
    /// such a setting).
    pub single_call: bool,
}

/// A finished completion in final form: the structured-output tool's call (if any) becomes the
/// text, calls beyond the first go when only one is allowed, and every choice's stop reason
/// follows its content.
pub fn settle(mut c: Completion, finish: &Finish) -> Completion {
    if let Some(out) = &finish.output
        && let Some(i) = c.tool_calls.iter().position(|t| t.name == out.name)
    {
        let call = c.tool_calls.remove(i);
        c.text.push_str(&out.answer(&call.arguments_json));
    }
    if finish.single_call {
        c.tool_calls.truncate(1);
    }
    c.stop_reason = derive_stop(c.stop_reason, !c.tool_calls.is_empty());
    for ch in &mut c.more_choices {
        let has_calls = ch
            .message
            .iter()
            .flat_map(|m| &m.content)
            .any(|p| matches!(p.part, Some(Part::ToolCall(_))));
        let stop = StopReason::try_from(ch.stop_reason).unwrap_or(StopReason::EndTurn);
        ch.stop_reason = derive_stop(stop, has_calls) as i32;
    }
    c
}

/// A stream in final form, like [`settle`]: pieces of the structured-output tool's call come
/// out as text (buffered to the end of the stream when the schema was wrapped), the other calls
/// are renumbered without it (and dropped after the first when only one is allowed), and the
/// end's stop reasons follow the content.
pub fn settle_stream(stream: ChunkStream, finish: Finish) -> ChunkStream {
    struct St {
        finish: Finish,
        /// Upstream index of the output tool's call, once seen.
        output_index: Option<u32>,
        /// Arguments of a wrapped output call, kept until the stream ends.
        buffered: String,
        /// Choice 0 had calls other than the output tool's.
        calls: bool,
        /// Choices > 0 that had calls.
        more_calls: Vec<bool>,
    }
    let mut st = St {
        finish,
        output_index: None,
        buffered: String::new(),
        calls: false,
        more_calls: Vec::new(),
    };
    stream
        .flat_map(move |item| {
            let out: Vec<Result<Chunk, UpstreamError>> = match item {
                Err(e) => vec![Err(e)],
                Ok(Chunk::ToolCall {
                    index,
                    id,
                    name,
                    arguments,
                }) => {
                    let is_output = match (&st.finish.output, st.output_index) {
                        (_, Some(i)) => i == index,
                        (Some(o), None) if !name.is_empty() && o.name == name => {
                            st.output_index = Some(index);
                            true
                        }
                        _ => false,
                    };
                    if is_output {
                        let wrapped = st.finish.output.as_ref().is_some_and(|o| o.wrapped);
                        if wrapped {
                            st.buffered.push_str(&arguments);
                            vec![]
                        } else if arguments.is_empty() {
                            vec![]
                        } else {
                            vec![Ok(Chunk::Delta(arguments))]
                        }
                    } else {
                        let index = match st.output_index {
                            Some(o) if index > o => index - 1,
                            _ => index,
                        };
                        if st.finish.single_call && index > 0 {
                            vec![]
                        } else {
                            st.calls = true;
                            vec![Ok(Chunk::ToolCall {
                                index,
                                id,
                                name,
                                arguments,
                            })]
                        }
                    }
                }
                Ok(Chunk::Part(d)) => {
                    if d.tool_call.is_some() && d.choice > 0 {
                        let i = d.choice as usize - 1;
                        if i < 128 && st.more_calls.len() <= i {
                            st.more_calls.resize(i + 1, false);
                        }
                        if let Some(slot) = st.more_calls.get_mut(i) {
                            *slot = true;
                        }
                    } else if d.tool_call.is_some() {
                        st.calls = true;
                    }
                    vec![Ok(Chunk::Part(d))]
                }
                Ok(Chunk::End {
                    stop_reason,
                    usage,
                    more_stop_reasons,
                    additional_response_fields_json,
                }) => {
                    let mut out = Vec::new();
                    if !st.buffered.is_empty()
                        && let Some(o) = &st.finish.output
                    {
                        out.push(Ok(Chunk::Delta(
                            o.answer(&std::mem::take(&mut st.buffered)),
                        )));
                    }
                    let more_stop_reasons = more_stop_reasons
                        .into_iter()
                        .enumerate()
                        .map(|(i, s)| {
                            derive_stop(s, st.more_calls.get(i).copied().unwrap_or(false))
                        })
                        .collect();
                    out.push(Ok(Chunk::End {
                        stop_reason: derive_stop(stop_reason, st.calls),
                        usage,
                        more_stop_reasons,
                        additional_response_fields_json,
                    }));
                    out
                }
                Ok(other) => vec![Ok(other)],
            };
            futures::stream::iter(out)
        })
        .boxed()
}

/// A tool-call piece in the contract's stream form.
pub fn tool_call_delta(
    index: u32,
    id: String,
    name: String,
    arguments_json: String,
) -> ToolCallDelta {
    ToolCallDelta {
        index,
        id,
        name,
        arguments_json,
    }
}

/// An `f32` of the contract as the JSON number a person would write (`0.1`, not
/// `0.10000000149011612`).
pub fn num(v: f32) -> Value {
    v.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Refuses sampling settings an upstream API has no field for (the spoke's capability check
/// normally refuses them first; this is the adapter's own guard). `api` names the API in the
/// reason.
pub fn refuse_unsupported(req: &InferRequest, api: &str, top_k: bool) -> Result<(), UpstreamError> {
    let Some(p) = &req.params else {
        return Ok(());
    };
    let unsupported = [
        ("n", p.n > 1),
        ("logprobs", p.logprobs || p.top_logprobs.is_some()),
        ("seed", p.seed.is_some()),
        ("presence_penalty", p.presence_penalty.is_some()),
        ("frequency_penalty", p.frequency_penalty.is_some()),
        ("logit_bias", !p.logit_bias.is_empty()),
        ("top_k", !top_k && p.top_k.is_some()),
    ];
    match unsupported.iter().find(|(_, asked)| *asked) {
        Some((field, _)) => Err(invalid(format!("{field}: the {api} has no such setting"))),
        None => Ok(()),
    }
}

/// The caller's fault, found by an adapter itself; `reason` is the adapter's own words.
pub fn invalid(reason: String) -> UpstreamError {
    UpstreamError::Invalid {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_proto::v1::{GenerationParams, Reasoning, ToolChoice, ToolSpec};

    fn with_reasoning(mode: ReasoningMode, budget: u32, effort: &str) -> InferRequest {
        InferRequest {
            params: Some(GenerationParams {
                reasoning: Some(Reasoning {
                    mode: mode as i32,
                    budget_tokens: budget,
                    effort: effort.into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn reasoning_forms() {
        for (mode, budget, effort, want) in [
            (ReasoningMode::Unspecified, 0, "", None),
            (ReasoningMode::Disabled, 0, "", Some(Think::Off)),
            (ReasoningMode::Unspecified, 0, "none", Some(Think::Off)),
            (
                ReasoningMode::Enabled,
                2000,
                "",
                Some(Think::Budget(2000, None)),
            ),
            (
                ReasoningMode::Enabled,
                0,
                "high",
                Some(Think::Effort("high".into())),
            ),
            (
                ReasoningMode::Unspecified,
                0,
                "low",
                Some(Think::Effort("low".into())),
            ),
            (ReasoningMode::Adaptive, 0, "", Some(Think::Adaptive(None))),
            (
                ReasoningMode::Adaptive,
                0,
                "medium",
                Some(Think::Adaptive(Some("medium".into()))),
            ),
        ] {
            assert_eq!(
                reasoning(&with_reasoning(mode, budget, effort)),
                want,
                "{mode:?} {budget} {effort}"
            );
        }
        assert!(think_budget(&Think::Effort("extreme".into())).is_err());
        assert_eq!(
            think_budget(&Think::Effort("high".into())).unwrap(),
            Some(16384)
        );
    }

    #[test]
    fn effort_and_budget_tables_round_trip() {
        for (effort, budget) in EFFORT_BUDGETS {
            if ["low", "medium", "high"].contains(&effort) {
                assert_eq!(effort_for_budget(budget), effort);
            }
        }
        assert_eq!(effort_for_budget(1024), "low");
        assert_eq!(effort_for_budget(100_000), "high");
    }

    fn json_schema_request(
        tools: &[&str],
        choice: Option<ToolChoice>,
        schema: &str,
    ) -> InferRequest {
        InferRequest {
            tools: tools
                .iter()
                .map(|n| ToolSpec {
                    name: (*n).into(),
                    ..Default::default()
                })
                .collect(),
            tool_choice: choice,
            response_format: Some(ResponseFormat {
                r#type: FormatType::JsonSchema as i32,
                name: "answer".into(),
                schema_json: schema.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn structured_output_tool_plans() {
        let obj = r#"{"type":"object","properties":{"a":{"type":"string"}}}"#;
        // Alone: forced.
        let p = tool_plan(
            &json_schema_request(&[], None, obj),
            StructuredOutputMode::Tool,
        )
        .unwrap();
        assert_eq!((p.mode, p.name.as_str()), (ChoiceMode::Tool, "answer"));
        assert!(!p.output.as_ref().unwrap().wrapped);
        // Next to the caller's tools: one of them, or the answer.
        let p = tool_plan(
            &json_schema_request(&["lookup"], None, obj),
            StructuredOutputMode::Tool,
        )
        .unwrap();
        assert_eq!(p.mode, ChoiceMode::Any);
        // A forced caller tool wins: no output tool.
        let named = ToolChoice {
            mode: ChoiceMode::Tool as i32,
            name: "lookup".into(),
        };
        let p = tool_plan(
            &json_schema_request(&["lookup"], Some(named), obj),
            StructuredOutputMode::Tool,
        )
        .unwrap();
        assert_eq!((p.output, p.mode), (None, ChoiceMode::Tool));
        // Native: no tool.
        let p = tool_plan(
            &json_schema_request(&[], None, obj),
            StructuredOutputMode::Native,
        )
        .unwrap();
        assert!(p.output.is_none());
        // A non-object schema is wrapped, and unwrapped from the answer.
        let p = tool_plan(
            &json_schema_request(&[], None, r#"{"type":"array"}"#),
            StructuredOutputMode::Tool,
        )
        .unwrap();
        let out = p.output.unwrap();
        assert!(out.wrapped);
        assert_eq!(out.answer(r#"{"value":[1,2]}"#), "[1,2]");
        // A clash with a caller tool's name is avoided.
        let p = tool_plan(
            &json_schema_request(&["answer"], None, obj),
            StructuredOutputMode::Tool,
        )
        .unwrap();
        assert_eq!(p.output.unwrap().name, "answer_");
        // Malformed schema text is the caller's fault.
        let e = tool_plan(
            &json_schema_request(&[], None, "{"),
            StructuredOutputMode::Tool,
        )
        .unwrap_err();
        assert_eq!(e.fault(), crate::Fault::Caller);
    }

    #[test]
    fn stop_follows_content() {
        assert_eq!(derive_stop(StopReason::EndTurn, true), StopReason::ToolUse);
        assert_eq!(derive_stop(StopReason::ToolUse, false), StopReason::EndTurn);
        assert_eq!(
            derive_stop(StopReason::MaxTokens, true),
            StopReason::MaxTokens
        );
        assert_eq!(num(0.1), json!(0.1));
    }
}
