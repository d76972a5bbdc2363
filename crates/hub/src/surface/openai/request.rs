//! The OpenAI chat-completions request body and its translation to `switchyard.v1`
//! ([`ChatRequest::to_infer`]); every field's state is in docs/api.md.

use crate::surface::ToolChoiceProblem;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use switchyard_proto::v1 as pb;

use crate::error::HubError;
use crate::routing::{AskedBy, Feature};

/// Top-level fields accepted and not carried: they cannot change the answer (end-user ids,
/// metadata tags, stored-completion and service-tier hints, prompt-cache routing). Named in the
/// audit line's `ignored`.
pub const IGNORED: &[&str] = &[
    "metadata",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "service_tier",
    "store",
    "user",
];

/// OpenAI's `reasoning_effort` values.
const EFFORTS: &[&str] = &["none", "minimal", "low", "medium", "high", "xhigh"];

/// `POST /v1/chat/completions` body. Fields it does not name are kept in `extra`: ignored when on
/// [`IGNORED`], else passed through to OpenAI-compatible upstreams (`crate::surface::extra`).
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    /// May be empty when `prompt` supplies the messages.
    #[serde(default)]
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop: Option<Stop>,
    pub tools: Option<Vec<Tool>>,
    /// `"none"`, `"auto"`, `"required"`, `{"type":"function","function":{"name"}}` or
    /// `{"type":"allowed_tools","allowed_tools":{"mode","tools"}}`.
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    /// `{"type":"text"}`, `{"type":"json_object"}` or
    /// `{"type":"json_schema","json_schema":{"name","description","schema","strict"}}`.
    pub response_format: Option<Value>,
    /// Choices to generate (1 … `max_choices`).
    pub n: Option<u32>,
    pub seed: Option<i64>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// Token id (decimal) → bias in -100 … 100.
    pub logit_bias: Option<BTreeMap<String, f32>>,
    pub reasoning_effort: Option<String>,
    /// A prompt template to render into the messages (`{"name", "version"?, "variables"}`).
    pub prompt: Option<crate::templates::PromptRef>,
    /// Every other top-level field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub function: Option<ToolFunction>,
}

#[derive(Debug, Deserialize)]
pub struct ToolFunction {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub parameters: Option<Value>,
    /// The arguments must follow `parameters` exactly.
    #[serde(default)]
    pub strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub tool_calls: Vec<MessageToolCall>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub image_url: Option<ImageUrl>,
}

#[derive(Debug, Deserialize)]
pub struct ImageUrl {
    pub url: String,
}

#[derive(Debug, Deserialize)]
pub struct MessageToolCall {
    pub id: String,
    pub function: MessageToolCallFunction,
}

#[derive(Debug, Deserialize)]
pub struct MessageToolCallFunction {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

fn invalid(param: &'static str, message: String) -> HubError {
    HubError::InvalidParam {
        param: param.into(),
        code: "invalid_value",
        message,
    }
}

fn text_part(text: String) -> pb::ContentPart {
    pb::ContentPart {
        part: Some(pb::content_part::Part::Text(text)),
    }
}

impl Content {
    /// Text and image parts, in order (images only where `images` is set).
    fn parts(&self, i: usize, images: bool) -> Result<Vec<pb::ContentPart>, HubError> {
        let Content::Parts(parts) = self else {
            return self.text().map(|t| vec![text_part(t)]);
        };
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            match (p.kind.as_str(), &p.text, &p.image_url) {
                ("text", Some(t), _) => match out.last_mut() {
                    // Adjacent text parts join into one, as before images were supported.
                    Some(pb::ContentPart {
                        part: Some(pb::content_part::Part::Text(prev)),
                    }) => prev.push_str(t),
                    _ => out.push(text_part(t.clone())),
                },
                ("image_url", _, Some(img)) if images => out.push(
                    crate::media::image_from_data_url(&img.url)
                        .map_err(|e| HubError::BadRequest(format!("messages[{i}]: {e}")))?,
                ),
                (kind, _, _) => {
                    return Err(HubError::BadRequest(format!(
                        "messages[{i}]: content part of type {kind:?} is not supported here"
                    )));
                }
            }
        }
        Ok(out)
    }

    fn text(&self) -> Result<String, HubError> {
        match self {
            Content::Text(s) => Ok(s.clone()),
            Content::Parts(parts) => {
                let mut out = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => out.push_str(t),
                        (kind, _) => {
                            return Err(HubError::BadRequest(format!(
                                "content part of type {kind:?} is not supported (only \"text\")"
                            )));
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

impl ChatRequest {
    /// Translates to the spoke contract (models, deadline and request id are filled by the
    /// gateway, `passthrough` by the handler from [`ChatRequest::extra`]). Leading `system` /
    /// `developer` messages are the system prompt; later ones are `Role::System` messages in
    /// place. Errors: 400 naming the field (`param`) for a value out of its range.
    pub fn to_infer(&self) -> Result<pb::InferRequest, HubError> {
        if self.messages.is_empty() {
            return Err(HubError::BadRequest("`messages` must not be empty".into()));
        }
        let mut system = Vec::new();
        let mut messages = Vec::new();
        for (i, m) in self.messages.iter().enumerate() {
            let text = || match &m.content {
                Some(c) => c.text(),
                None => Ok(String::new()),
            };
            match m.role.as_str() {
                "system" | "developer" if messages.is_empty() => system.push(text()?),
                "system" | "developer" => messages.push(pb::Message {
                    role: pb::Role::System as i32,
                    content: vec![text_part(text()?)],
                }),
                "user" => messages.push(pb::Message {
                    role: pb::Role::User as i32,
                    content: match &m.content {
                        Some(c) => c.parts(i, true)?,
                        None => vec![text_part(String::new())],
                    },
                }),
                "assistant" => {
                    let mut content = Vec::new();
                    let text = text()?;
                    if !text.is_empty() {
                        content.push(text_part(text));
                    }
                    for tc in &m.tool_calls {
                        content.push(pb::ContentPart {
                            part: Some(pb::content_part::Part::ToolCall(pb::ToolCall {
                                id: tc.id.clone(),
                                name: tc.function.name.clone(),
                                arguments_json: tc.function.arguments.clone(),
                            })),
                        });
                    }
                    messages.push(pb::Message {
                        role: pb::Role::Assistant as i32,
                        content,
                    });
                }
                "tool" => {
                    let Some(id) = &m.tool_call_id else {
                        return Err(HubError::BadRequest(format!(
                            "messages[{i}]: a tool message needs `tool_call_id`"
                        )));
                    };
                    messages.push(pb::Message {
                        role: pb::Role::Tool as i32,
                        content: vec![pb::ContentPart {
                            part: Some(pb::content_part::Part::ToolResult(pb::ToolResult {
                                tool_call_id: id.clone(),
                                content: text()?,
                                is_error: false,
                            })),
                        }],
                    });
                }
                other => {
                    return Err(HubError::BadRequest(format!(
                        "messages[{i}].role: {other:?} is not one of system, developer, user, assistant, tool"
                    )));
                }
            }
        }
        if !messages.iter().any(|m| m.role != pb::Role::System as i32) {
            return Err(HubError::BadRequest(
                "`messages` needs at least one user message".into(),
            ));
        }
        let mut tools = Vec::new();
        for (i, t) in self.tools.iter().flatten().enumerate() {
            let (true, Some(f)) = (t.kind == "function", &t.function) else {
                return Err(HubError::BadRequest(format!(
                    "tools[{i}].type: only \"function\" tools (with `function`) are supported"
                )));
            };
            tools.push(pb::ToolSpec {
                name: f.name.clone(),
                description: f.description.clone(),
                parameters_json: f
                    .parameters
                    .as_ref()
                    .map(Value::to_string)
                    .unwrap_or_else(|| "{}".into()),
                strict: f.strict.unwrap_or(false),
                ..Default::default()
            });
        }
        let tool_choice = match &self.tool_choice {
            None | Some(Value::Null) => None,
            Some(v) => tool_choice(v, &mut tools)?,
        };
        // `true` is every upstream's default: only `false` (one call at most) is carried.
        let parallel_tool_calls = self.parallel_tool_calls.filter(|p| !p && !tools.is_empty());
        // OpenAI's ranges: temperature 0 to 2, top_p 0 to 1, at least one output token.
        crate::surface::in_range("temperature", self.temperature, 2.0)?;
        crate::surface::in_range("top_p", self.top_p, 1.0)?;
        for (name, v) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            if v == Some(0) {
                return Err(invalid(name, format!("{name}: must be at least 1")));
            }
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        let n = match self.n {
            Some(0) => return Err(invalid("n", "n: must be at least 1".into())),
            n => n.unwrap_or(0),
        };
        let penalty = |name: &'static str, v: Option<f32>| match v {
            Some(v) if !(v.is_finite() && (-2.0..=2.0).contains(&v)) => Err(invalid(
                name,
                format!("{name}: must be a number from -2 to 2"),
            )),
            // 0 is the default: nothing to carry.
            Some(0.0) => Ok(None),
            v => Ok(v),
        };
        let presence_penalty = penalty("presence_penalty", self.presence_penalty)?;
        let frequency_penalty = penalty("frequency_penalty", self.frequency_penalty)?;
        let mut logit_bias = std::collections::HashMap::new();
        for (token, bias) in self.logit_bias.iter().flatten() {
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) || token.len() > 10 {
                return Err(invalid(
                    "logit_bias",
                    format!("logit_bias: {token:?} is not a token id"),
                ));
            }
            if !(bias.is_finite() && (-100.0..=100.0).contains(bias)) {
                return Err(invalid(
                    "logit_bias",
                    format!("logit_bias: the bias of token {token} must be from -100 to 100"),
                ));
            }
            logit_bias.insert(token.clone(), *bias);
        }
        let logprobs = self.logprobs.unwrap_or(false);
        if self.top_logprobs.is_some_and(|k| k > 0) && !logprobs {
            return Err(invalid(
                "top_logprobs",
                "top_logprobs: needs `logprobs: true`".into(),
            ));
        }
        let reasoning = match self.reasoning_effort.as_deref() {
            None => None,
            Some(e) if !EFFORTS.contains(&e) => {
                return Err(invalid(
                    "reasoning_effort",
                    format!(
                        "reasoning_effort: {e:?} is not one of {}",
                        EFFORTS.join(", ")
                    ),
                ));
            }
            Some(e) => Some(pb::Reasoning {
                mode: if e == "none" {
                    pb::reasoning::Mode::Disabled
                } else {
                    pb::reasoning::Mode::Enabled
                } as i32,
                budget_tokens: 0,
                effort: e.to_owned(),
            }),
        };
        let response_format = match &self.response_format {
            None | Some(Value::Null) => None,
            Some(v) => response_format(v)?,
        };
        Ok(pb::InferRequest {
            system: system.join("\n"),
            messages,
            params: Some(pb::GenerationParams {
                max_tokens: self.max_completion_tokens.or(self.max_tokens),
                temperature: self.temperature,
                top_p: self.top_p,
                stop,
                seed: self.seed,
                presence_penalty,
                frequency_penalty,
                logit_bias,
                logprobs,
                top_logprobs: self.top_logprobs.filter(|_| logprobs),
                n,
                reasoning,
                ..Default::default()
            }),
            tools,
            tool_choice,
            parallel_tool_calls,
            response_format,
            ..Default::default()
        })
    }

    /// Which field of this request asked for each capability (names the field when no model of
    /// the alias has it).
    pub fn asked(&self) -> AskedBy {
        let mut a = AskedBy::default();
        a.set(Feature::StructuredOutput, "response_format");
        a.set(Feature::Reasoning, "reasoning_effort");
        a.set(Feature::Choices, "n");
        a.set(
            Feature::Logprobs,
            if self.logprobs == Some(true) {
                "logprobs"
            } else {
                "top_logprobs"
            },
        );
        a.set(Feature::Seed, "seed");
        for (name, set) in [
            (
                "presence_penalty",
                self.presence_penalty.is_some_and(|v| v != 0.0),
            ),
            (
                "frequency_penalty",
                self.frequency_penalty.is_some_and(|v| v != 0.0),
            ),
            ("logit_bias", true),
        ] {
            if set {
                a.set(Feature::Penalties, name);
            }
        }
        a.set(
            Feature::ToolChoice,
            if self.tool_choice.as_ref().is_some_and(|v| !v.is_null()) {
                "tool_choice"
            } else {
                "parallel_tool_calls"
            },
        );
        a
    }
}

/// OpenAI `tool_choice` → the contract's. `allowed_tools` keeps only the listed tools in
/// `tools` (the model sees no other). Without tools, `none` and `auto` mean nothing (`None`);
/// any other choice is refused.
fn tool_choice(
    v: &Value,
    tools: &mut Vec<pb::ToolSpec>,
) -> Result<Option<pb::ToolChoice>, HubError> {
    use pb::tool_choice::Mode;
    let bad = |why: String| invalid("tool_choice", format!("tool_choice: {why}"));
    let (mode, name) = match v {
        Value::String(s) => match s.as_str() {
            "auto" => (Mode::Auto, String::new()),
            "none" => (Mode::None, String::new()),
            "required" => (Mode::Any, String::new()),
            other => {
                return Err(bad(format!("{other:?} is not one of none, auto, required")));
            }
        },
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("`function.name` is required".into()))?;
                (Mode::Tool, name.to_owned())
            }
            Some("allowed_tools") => {
                let at = o
                    .get("allowed_tools")
                    .ok_or_else(|| bad("`allowed_tools` is required".into()))?;
                let mode = match at.get("mode").and_then(Value::as_str) {
                    Some("auto") | None => Mode::Auto,
                    Some("required") => Mode::Any,
                    Some(other) => {
                        return Err(bad(format!(
                            "allowed_tools.mode {other:?} is not one of auto, required"
                        )));
                    }
                };
                let mut allowed = Vec::new();
                for t in at
                    .get("tools")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = t
                        .get("function")
                        .and_then(|f| f.get("name"))
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            bad("allowed_tools.tools: only function tools by name".into())
                        })?;
                    if !tools.iter().any(|s| s.name == name) {
                        return Err(bad(format!(
                            "allowed_tools.tools: {name:?} is not one of `tools`"
                        )));
                    }
                    allowed.push(name.to_owned());
                }
                if allowed.is_empty() {
                    return Err(bad(
                        "allowed_tools.tools: must name at least one tool".into()
                    ));
                }
                tools.retain(|t| allowed.contains(&t.name));
                (mode, String::new())
            }
            Some(other) => {
                return Err(bad(format!(
                    "type {other:?} is not supported (function, allowed_tools)"
                )));
            }
            None => return Err(bad("`type` is required".into())),
        },
        _ => return Err(bad("must be a string or an object".into())),
    };
    crate::surface::checked_tool_choice(mode, &name, tools).map_err(|p| match p {
        ToolChoiceProblem::NoTools => bad("a tool must be called, but `tools` is empty".into()),
        ToolChoiceProblem::UnknownTool => bad(format!("{name:?} is not one of `tools`")),
    })
}

/// OpenAI `response_format` → the contract's; `text` is the default (`None`).
fn response_format(v: &Value) -> Result<Option<pb::ResponseFormat>, HubError> {
    use pb::response_format::Type;
    let bad = |why: &str| invalid("response_format", format!("response_format: {why}"));
    match v.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(pb::ResponseFormat {
            r#type: Type::JsonObject as i32,
            ..Default::default()
        })),
        Some("json_schema") => {
            let js = v
                .get("json_schema")
                .filter(|j| j.is_object())
                .ok_or_else(|| bad("`json_schema` (an object) is required"))?;
            let text = |k: &str| js.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let schema = match js.get("schema") {
                None | Some(Value::Null) => "{}".to_owned(),
                Some(s) if s.is_object() => s.to_string(),
                Some(_) => return Err(bad("`json_schema.schema` must be an object")),
            };
            Ok(Some(pb::ResponseFormat {
                r#type: Type::JsonSchema as i32,
                name: text("name"),
                description: text("description"),
                schema_json: schema,
                strict: js.get("strict").and_then(Value::as_bool).unwrap_or(false),
            }))
        }
        Some(other) => Err(bad(&format!(
            "type {other:?} is not one of text, json_object, json_schema"
        ))),
        None => Err(bad("`type` is required")),
    }
}
