//! The Anthropic Messages request body and its translation to `switchyard.v1`
//! ([`MessagesRequest::to_infer`]); every field's state is in docs/api.md.

use crate::surface::ToolChoiceProblem;
use serde::Deserialize;
use serde_json::{Map, Value};
use switchyard_proto::v1 as pb;

use crate::error::HubError;
use crate::routing::{AskedBy, Feature};

/// Top-level fields accepted and not carried: they cannot change the answer (`metadata` holds
/// an end-user id; `service_tier` picks capacity). Named in the audit line's `ignored`.
pub const IGNORED: &[&str] = &["metadata", "service_tier"];

/// `output_config.effort` values.
const EFFORTS: &[&str] = &["low", "medium", "high", "xhigh", "max"];

/// `POST /v1/messages` body. Fields it does not name are kept in `extra`: ignored when on
/// [`IGNORED`], else passed through to Anthropic upstreams (`crate::surface::extra`).
#[derive(Debug, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    pub messages: Vec<InMessage>,
    /// A string, or `text` blocks (each may carry `cache_control`).
    #[serde(default)]
    pub system: Option<Content>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stop_sequences: Vec<String>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    #[serde(default)]
    pub tools: Vec<ToolDef>,
    /// `{"type": "auto" | "any" | "tool" | "none", "name"?, "disable_parallel_tool_use"?}`.
    pub tool_choice: Option<Value>,
    /// `{"type": "enabled", "budget_tokens"}`, `{"type": "adaptive"}`, `{"type": "disabled"}`.
    pub thinking: Option<Value>,
    /// `{"effort"?, "format"?: {"type": "json_schema", "schema"}}`.
    pub output_config: Option<Value>,
    /// `{"type": "json_schema", "schema"}` (the structured-outputs beta's field).
    pub output_format: Option<Value>,
    /// Automatic caching: a breakpoint after the last block of the last message.
    pub cache_control: Option<Value>,
    /// Every other top-level field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub struct InMessage {
    /// `user`, `assistant`, or `system` (a system instruction at this point of the
    /// conversation).
    pub role: String,
    pub content: Content,
    /// Per-message output settings of a `system` message; only `{}` is accepted.
    #[serde(default)]
    pub output_config: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<Value>),
}

#[derive(Debug, Deserialize)]
pub struct ToolDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub input_schema: Option<Value>,
    /// Server tools (`web_search_…`, `bash_…`) have a type; custom tools do not (or `custom`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A prompt-cache breakpoint after this tool.
    #[serde(default)]
    pub cache_control: Option<Value>,
    /// The input must follow `input_schema` exactly.
    #[serde(default)]
    pub strict: Option<bool>,
}

fn bad(msg: impl Into<String>) -> HubError {
    HubError::BadRequest(msg.into())
}

fn text_part(t: String) -> pb::ContentPart {
    pb::ContentPart {
        part: Some(pb::content_part::Part::Text(t)),
    }
}

fn cache_part(c: pb::CachePoint) -> pb::ContentPart {
    pb::ContentPart {
        part: Some(pb::content_part::Part::CachePoint(c)),
    }
}

/// A `cache_control` value (`{"type": "ephemeral", "ttl"?}`) at `at`; `None` when absent.
fn cache_point(v: Option<&Value>, at: &str) -> Result<Option<pb::CachePoint>, HubError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if v["type"].as_str() != Some("ephemeral") {
        return Err(bad(format!(
            "{at}.cache_control.type: only \"ephemeral\" is supported"
        )));
    }
    let ttl = match &v["ttl"] {
        Value::Null => String::new(),
        Value::String(t) if t == "5m" || t == "1h" => t.clone(),
        _ => {
            return Err(bad(format!(
                "{at}.cache_control.ttl: must be \"5m\" or \"1h\""
            )));
        }
    };
    Ok(Some(pb::CachePoint {
        r#type: "ephemeral".into(),
        ttl,
    }))
}

/// The text of a `tool_result` content: a string or text blocks.
fn plain_text(c: &Content, what: &str) -> Result<String, HubError> {
    Ok(text_blocks(c, what)?
        .into_iter()
        .map(|(t, _)| t)
        .collect::<Vec<_>>()
        .concat())
}

/// A string or text blocks as (text, cache point after it) pairs; other blocks are refused.
fn text_blocks(c: &Content, what: &str) -> Result<Vec<(String, Option<pb::CachePoint>)>, HubError> {
    match c {
        Content::Text(s) => Ok(vec![(s.clone(), None)]),
        Content::Blocks(blocks) => {
            let mut out = Vec::with_capacity(blocks.len());
            for (j, b) in blocks.iter().enumerate() {
                match (b["type"].as_str(), b["text"].as_str()) {
                    (Some("text"), Some(t)) => out.push((
                        t.to_owned(),
                        cache_point(b.get("cache_control"), &format!("{what}.{j}"))?,
                    )),
                    (ty, _) => {
                        return Err(bad(format!(
                            "{what}: block of type {:?} is not supported (only text)",
                            ty.unwrap_or("")
                        )));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Text parts with a cache point after each block that asked for one.
fn with_cache_points(blocks: Vec<(String, Option<pb::CachePoint>)>) -> Vec<pb::ContentPart> {
    let mut out = Vec::with_capacity(blocks.len());
    for (t, c) in blocks {
        out.push(text_part(t));
        if let Some(c) = c {
            out.push(cache_part(c));
        }
    }
    out
}

/// A JSON-schema output format (`output_format` or `output_config.format`) at `at`.
fn output_format(v: &Value, at: &str) -> Result<pb::ResponseFormat, HubError> {
    if v["type"].as_str() != Some("json_schema") {
        return Err(bad(format!("{at}.type: only \"json_schema\" is supported")));
    }
    let schema = v
        .get("schema")
        .filter(|s| s.is_object())
        .ok_or_else(|| bad(format!("{at}.schema: a JSON schema object is required")))?;
    Ok(pb::ResponseFormat {
        r#type: pb::response_format::Type::JsonSchema as i32,
        schema_json: schema.to_string(),
        // Anthropic's structured outputs are always enforced.
        strict: true,
        ..Default::default()
    })
}

/// `thinking` → the contract's reasoning mode and budget.
fn thinking(v: &Value) -> Result<(pb::reasoning::Mode, u32), HubError> {
    use pb::reasoning::Mode;
    match v["display"].as_str() {
        None | Some("summarized") => {}
        Some(other) => {
            return Err(HubError::InvalidParam {
                param: "thinking.display".into(),
                code: "unsupported_parameter",
                message: format!(
                    "thinking.display: {other:?} is not supported (only \"summarized\")"
                ),
            });
        }
    }
    match v["type"].as_str() {
        Some("enabled") => {
            let budget = v["budget_tokens"]
                .as_u64()
                .filter(|b| *b >= 1)
                .and_then(|b| u32::try_from(b).ok())
                .ok_or_else(|| bad("thinking.budget_tokens: a positive integer is required"))?;
            Ok((Mode::Enabled, budget))
        }
        Some("adaptive") => Ok((Mode::Adaptive, 0)),
        Some("disabled") => Ok((Mode::Disabled, 0)),
        other => Err(bad(format!(
            "thinking.type: {:?} is not one of enabled, adaptive, disabled",
            other.unwrap_or("")
        ))),
    }
}

impl MessagesRequest {
    /// Translates to the spoke contract (routing fields are filled by the gateway,
    /// `passthrough` by the handler from [`MessagesRequest::extra`]).
    pub fn to_infer(&self) -> Result<pb::InferRequest, HubError> {
        if self.messages.is_empty() {
            return Err(bad("messages: at least one message is required"));
        }
        if self.max_tokens == 0 {
            return Err(bad("max_tokens: must be at least 1"));
        }
        // Anthropic's ranges: temperature and top_p 0 to 1.
        crate::surface::in_range("temperature", self.temperature, 1.0)?;
        crate::surface::in_range("top_p", self.top_p, 1.0)?;
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.iter().enumerate() {
            messages.push(self.message(i, m)?);
        }
        if let Some(c) = cache_point(self.cache_control.as_ref(), "")? {
            // Automatic caching: the breakpoint goes after the last block.
            if let Some(last) = messages.last_mut() {
                last.content.push(cache_part(c));
            }
        }
        let mut tools = Vec::with_capacity(self.tools.len());
        for (i, t) in self.tools.iter().enumerate() {
            if t.kind.as_deref().is_some_and(|k| k != "custom") {
                return Err(bad(format!(
                    "tools.{i}.type: server tools are not supported (only custom tools)"
                )));
            }
            tools.push(pb::ToolSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters_json: t
                    .input_schema
                    .as_ref()
                    .map(Value::to_string)
                    .unwrap_or_else(|| "{\"type\":\"object\"}".into()),
                strict: t.strict.unwrap_or(false),
                cache_point: cache_point(t.cache_control.as_ref(), &format!("tools.{i}"))?,
            });
        }
        let (tool_choice, parallel_tool_calls) = match &self.tool_choice {
            None | Some(Value::Null) => (None, None),
            Some(v) => tool_choice(v, &tools)?,
        };
        let (system, system_parts) = match &self.system {
            None => (String::new(), Vec::new()),
            Some(s) => {
                let blocks = text_blocks(s, "system")?;
                let text: String = blocks.iter().map(|(t, _)| t.as_str()).collect();
                let parts = if blocks.iter().any(|(_, c)| c.is_some()) {
                    with_cache_points(blocks)
                } else {
                    Vec::new()
                };
                (text, parts)
            }
        };
        let (mode, budget) = match &self.thinking {
            None | Some(Value::Null) => (pb::reasoning::Mode::Unspecified, 0),
            Some(v) => thinking(v)?,
        };
        let mut effort = String::new();
        let mut format = match &self.output_format {
            None | Some(Value::Null) => None,
            Some(v) => Some(output_format(v, "output_format")?),
        };
        if let Some(cfg) = self.output_config.as_ref().filter(|v| !v.is_null()) {
            let Some(cfg) = cfg.as_object() else {
                return Err(bad("output_config: must be an object"));
            };
            for (k, v) in cfg {
                match k.as_str() {
                    "effort" => match v.as_str() {
                        Some(e) if EFFORTS.contains(&e) => effort = e.to_owned(),
                        _ => {
                            return Err(bad(format!(
                                "output_config.effort: must be one of {}",
                                EFFORTS.join(", ")
                            )));
                        }
                    },
                    "format" if v.is_null() => {}
                    "format" if format.is_some() => {
                        return Err(bad(
                            "output_config.format: give either output_format or output_config.format",
                        ));
                    }
                    "format" => format = Some(output_format(v, "output_config.format")?),
                    other => {
                        return Err(HubError::InvalidParam {
                            param: format!("output_config.{other}").into(),
                            code: "unsupported_parameter",
                            message: format!(
                                "output_config.{other}: not supported by this gateway (only effort and format)"
                            ),
                        });
                    }
                }
            }
        }
        let reasoning = (mode != pb::reasoning::Mode::Unspecified || !effort.is_empty()).then_some(
            pb::Reasoning {
                mode: mode as i32,
                budget_tokens: budget,
                effort,
            },
        );
        Ok(pb::InferRequest {
            system,
            system_parts,
            messages,
            params: Some(pb::GenerationParams {
                max_tokens: Some(self.max_tokens),
                temperature: self.temperature,
                top_p: self.top_p,
                top_k: self.top_k,
                stop: self.stop_sequences.clone(),
                reasoning,
                ..Default::default()
            }),
            tools,
            tool_choice,
            parallel_tool_calls,
            response_format: format,
            ..Default::default()
        })
    }

    /// One message of `messages`.
    fn message(&self, i: usize, m: &InMessage) -> Result<pb::Message, HubError> {
        let role = match m.role.as_str() {
            "user" => pb::Role::User,
            "assistant" => pb::Role::Assistant,
            "system" => {
                if let Some(cfg) = m.output_config.as_ref().filter(|v| !v.is_null())
                    && cfg.as_object().is_none_or(|o| !o.is_empty())
                {
                    return Err(HubError::InvalidParam {
                        param: "output_config".into(),
                        code: "unsupported_parameter",
                        message: format!(
                            "messages.{i}.output_config: per-message output settings are not supported"
                        ),
                    });
                }
                let blocks = text_blocks(&m.content, &format!("messages.{i}.content"))?;
                return Ok(pb::Message {
                    role: pb::Role::System as i32,
                    content: with_cache_points(blocks),
                });
            }
            other => {
                return Err(bad(format!(
                    "messages.{i}.role: {other:?} is not one of user, assistant, system"
                )));
            }
        };
        let blocks = match &m.content {
            Content::Text(t) => {
                return Ok(pb::Message {
                    role: role as i32,
                    content: vec![text_part(t.clone())],
                });
            }
            Content::Blocks(b) => b,
        };
        let mut content = Vec::with_capacity(blocks.len());
        let mut has_results = false;
        for (j, b) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            let part = match b["type"].as_str().unwrap_or("") {
                "text" => pb::content_part::Part::Text(
                    b["text"]
                        .as_str()
                        .ok_or_else(|| bad(format!("{at}.text: required")))?
                        .to_owned(),
                ),
                "image" if role == pb::Role::User => {
                    let src = &b["source"];
                    if src["type"].as_str() != Some("base64") {
                        return Err(bad(format!(
                            "{at}.source: only base64 image sources are supported"
                        )));
                    }
                    let p = crate::media::image_part(
                        src["media_type"].as_str().unwrap_or(""),
                        src["data"].as_str().unwrap_or(""),
                    )
                    .map_err(|e| bad(format!("{at}: {e}")))?;
                    let Some(part) = p.part else { continue };
                    part
                }
                "tool_use" if role == pb::Role::Assistant => {
                    pb::content_part::Part::ToolCall(pb::ToolCall {
                        id: b["id"].as_str().unwrap_or_default().to_owned(),
                        name: b["name"]
                            .as_str()
                            .ok_or_else(|| bad(format!("{at}.name: required")))?
                            .to_owned(),
                        arguments_json: match &b["input"] {
                            Value::Null => "{}".to_owned(),
                            v => v.to_string(),
                        },
                    })
                }
                "tool_result" if role == pb::Role::User => {
                    has_results = true;
                    let text = match b.get("content") {
                        None | Some(Value::Null) => String::new(),
                        Some(c) => plain_text(
                            &serde_json::from_value(c.clone())
                                .map_err(|_| bad(format!("{at}.content: invalid")))?,
                            &format!("{at}.content"),
                        )?,
                    };
                    pb::content_part::Part::ToolResult(pb::ToolResult {
                        tool_call_id: b["tool_use_id"]
                            .as_str()
                            .ok_or_else(|| bad(format!("{at}.tool_use_id: required")))?
                            .to_owned(),
                        content: text,
                        is_error: b["is_error"].as_bool().unwrap_or(false),
                    })
                }
                "thinking" if role == pb::Role::Assistant => {
                    pb::content_part::Part::Thinking(pb::ThinkingPart {
                        text: b["thinking"]
                            .as_str()
                            .ok_or_else(|| bad(format!("{at}.thinking: required")))?
                            .to_owned(),
                        signature: b["signature"].as_str().unwrap_or_default().to_owned(),
                        ..Default::default()
                    })
                }
                "redacted_thinking" if role == pb::Role::Assistant => {
                    pb::content_part::Part::Thinking(pb::ThinkingPart {
                        redacted: true,
                        data: b["data"]
                            .as_str()
                            .ok_or_else(|| bad(format!("{at}.data: required")))?
                            .to_owned(),
                        ..Default::default()
                    })
                }
                other => {
                    return Err(bad(format!(
                        "{at}: block of type {other:?} is not supported in a {} message",
                        m.role
                    )));
                }
            };
            content.push(pb::ContentPart { part: Some(part) });
            if let Some(c) = cache_point(b.get("cache_control"), &at)? {
                content.push(cache_part(c));
            }
        }
        let role = if has_results { pb::Role::Tool } else { role };
        Ok(pb::Message {
            role: role as i32,
            content,
        })
    }

    /// Which field of this request asked for each capability (names the field when no model of
    /// the alias has it).
    pub fn asked(&self) -> AskedBy {
        let mut a = AskedBy::default();
        let config = |k: &str| {
            self.output_config
                .as_ref()
                .and_then(|c| c.get(k))
                .is_some_and(|v| !v.is_null())
        };
        a.set(
            Feature::StructuredOutput,
            if config("format") {
                "output_config.format"
            } else {
                "output_format"
            },
        );
        let thinking_on = self
            .thinking
            .as_ref()
            .is_some_and(|t| matches!(t["type"].as_str(), Some("enabled" | "adaptive")));
        a.set(
            Feature::Reasoning,
            if thinking_on || !config("effort") {
                "thinking"
            } else {
                "output_config.effort"
            },
        );
        a.set(Feature::TopK, "top_k");
        a.set(Feature::ToolChoice, "tool_choice");
        a
    }
}

/// Anthropic `tool_choice` → the contract's mode and `parallel_tool_calls`
/// (`disable_parallel_tool_use: true` → `Some(false)`). Without tools, `auto` and `none` mean
/// nothing; `any` and `tool` are refused.
fn tool_choice(
    v: &Value,
    tools: &[pb::ToolSpec],
) -> Result<(Option<pb::ToolChoice>, Option<bool>), HubError> {
    use pb::tool_choice::Mode;
    let (mode, name) = match v["type"].as_str() {
        Some("auto") => (Mode::Auto, ""),
        Some("any") => (Mode::Any, ""),
        Some("none") => (Mode::None, ""),
        Some("tool") => (
            Mode::Tool,
            v["name"]
                .as_str()
                .ok_or_else(|| bad("tool_choice.name: required with type \"tool\""))?,
        ),
        other => {
            return Err(bad(format!(
                "tool_choice.type: {:?} is not one of auto, any, tool, none",
                other.unwrap_or("")
            )));
        }
    };
    let choice = crate::surface::checked_tool_choice(mode, name, tools).map_err(|p| match p {
        ToolChoiceProblem::NoTools => bad("tool_choice: a tool must be used, but `tools` is empty"),
        ToolChoiceProblem::UnknownTool => {
            bad(format!("tool_choice.name: {name:?} is not one of `tools`"))
        }
    })?;
    if tools.is_empty() {
        return Ok((None, None));
    }
    let parallel = (v["disable_parallel_tool_use"].as_bool() == Some(true)).then_some(false);
    Ok((choice, parallel))
}
