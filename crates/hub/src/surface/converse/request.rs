//! The Bedrock Converse request body and its translation to `switchyard.v1` ([`to_infer`]);
//! every field's state is in docs/api.md.

use crate::surface::ToolChoiceProblem;
use serde_json::{Map, Value};
use switchyard_proto::v1 as pb;

use crate::error::HubError;
use crate::routing::{AskedBy, Feature};

/// Top-level fields accepted and not carried: `serviceTier` picks capacity, never the answer.
/// Named in the audit line's `ignored`.
pub const IGNORED: &[&str] = &["serviceTier"];

/// Top-level fields [`to_infer`] decodes; every other one is sorted by
/// `crate::surface::extra` (ignored, or passed through to Bedrock upstreams:
/// `guardrailConfig`, `performanceConfig`, `requestMetadata`, `promptVariables`, …).
const KNOWN: &[&str] = &[
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "outputConfig",
];

/// Reasoning efforts (`outputConfig.effort`, Nova's `reasoningConfig.maxReasoningEffort`).
const EFFORTS: &[&str] = &["low", "medium", "high", "xhigh", "max"];

fn bad(msg: impl Into<String>) -> HubError {
    HubError::BadRequest(msg.into())
}

fn part(p: pb::content_part::Part) -> pb::ContentPart {
    pb::ContentPart { part: Some(p) }
}

/// A `cachePoint` block (`{"type": "default", "ttl"?}`) at `at`.
fn cache_point(v: &Value, at: &str) -> Result<pb::CachePoint, HubError> {
    if v["type"].as_str() != Some("default") {
        return Err(bad(format!(
            "{at}.cachePoint.type: only \"default\" is supported"
        )));
    }
    Ok(pb::CachePoint {
        r#type: "ephemeral".into(),
        ttl: v["ttl"].as_str().unwrap_or_default().to_owned(),
    })
}

/// The body's top-level fields [`to_infer`] does not decode (for `crate::surface::extra`).
pub fn unknown(body: &Value) -> Map<String, Value> {
    body.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Translates a Converse request body to the spoke contract (`passthrough` is filled by the
/// handler from [`unknown`]).
pub fn to_infer(body: &Value) -> Result<pb::InferRequest, HubError> {
    if !body.is_object() {
        return Err(bad("the request body must be a JSON object"));
    }
    let mut system = Vec::new();
    let mut system_parts = Vec::new();
    let mut system_cached = false;
    for (i, s) in body["system"].as_array().into_iter().flatten().enumerate() {
        if let Some(t) = s["text"].as_str() {
            system.push(t.to_owned());
            system_parts.push(part(pb::content_part::Part::Text(t.to_owned())));
        } else if let Some(c) = s.get("cachePoint") {
            system_cached = true;
            system_parts.push(part(pb::content_part::Part::CachePoint(cache_point(
                c,
                &format!("system.{i}"),
            )?)));
        } else {
            return Err(bad(format!(
                "system.{i}: only text and cachePoint system blocks are supported"
            )));
        }
    }
    if !system_cached {
        system_parts.clear();
    }
    let Some(in_messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return Err(bad("messages: at least one message is required"));
    };
    let mut messages = Vec::with_capacity(in_messages.len());
    for (i, m) in in_messages.iter().enumerate() {
        messages.push(message(i, m)?);
    }
    let mut tools: Vec<pb::ToolSpec> = Vec::new();
    let tool_config = &body["toolConfig"];
    for (i, t) in tool_config["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(c) = t.get("cachePoint") {
            let c = cache_point(c, &format!("toolConfig.tools.{i}"))?;
            let Some(last) = tools.last_mut() else {
                return Err(bad(format!(
                    "toolConfig.tools.{i}.cachePoint: must follow a tool"
                )));
            };
            last.cache_point = Some(c);
            continue;
        }
        let Some(spec) = t.get("toolSpec") else {
            return Err(bad(format!(
                "toolConfig.tools.{i}: only toolSpec tools and cachePoints are supported"
            )));
        };
        tools.push(pb::ToolSpec {
            name: spec["name"]
                .as_str()
                .ok_or_else(|| bad(format!("toolConfig.tools.{i}.toolSpec.name: required")))?
                .to_owned(),
            description: spec["description"].as_str().unwrap_or_default().to_owned(),
            parameters_json: match &spec["inputSchema"]["json"] {
                Value::Null => "{\"type\":\"object\"}".to_owned(),
                v => v.to_string(),
            },
            strict: spec["strict"].as_bool().unwrap_or(false),
            cache_point: None,
        });
    }
    let tool_choice = match tool_config.get("toolChoice") {
        None | Some(Value::Null) => None,
        Some(c) => tool_choice(c, &tools)?,
    };
    let cfg = &body["inferenceConfig"];
    let max_tokens = match &cfg["maxTokens"] {
        Value::Null => None,
        v => Some(
            v.as_u64()
                .filter(|n| *n >= 1)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad("inferenceConfig.maxTokens: must be a positive integer"))?,
        ),
    };
    let float = |name: &str| -> Result<Option<f32>, HubError> {
        match &cfg[name] {
            Value::Null => Ok(None),
            v => v
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| Some(f as f32))
                .ok_or_else(|| {
                    bad(format!(
                        "inferenceConfig.{name}: must be a non-negative number"
                    ))
                }),
        }
    };
    let temperature = float("temperature")?;
    let top_p = float("topP")?;
    // Bedrock's ranges: temperature and topP 0 to 1.
    crate::surface::in_range("inferenceConfig.temperature", temperature, 1.0)?;
    crate::surface::in_range("inferenceConfig.topP", top_p, 1.0)?;
    let stop = cfg["stopSequences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let extra = additional_fields(&body["additionalModelRequestFields"])?;
    let (response_format, effort) = output_config(&body["outputConfig"])?;
    let mut reasoning = extra.reasoning;
    if let Some(e) = effort {
        reasoning.get_or_insert_with(Default::default).effort = e;
    }
    let mut paths = Vec::new();
    match &body["additionalModelResponseFieldPaths"] {
        Value::Null => {}
        Value::Array(a) => {
            for (i, p) in a.iter().enumerate() {
                paths.push(
                    p.as_str()
                        .ok_or_else(|| {
                            bad(format!(
                                "additionalModelResponseFieldPaths.{i}: must be a string"
                            ))
                        })?
                        .to_owned(),
                );
            }
        }
        _ => return Err(bad("additionalModelResponseFieldPaths: must be an array")),
    }
    Ok(pb::InferRequest {
        system: system.join("\n"),
        system_parts,
        messages,
        params: Some(pb::GenerationParams {
            max_tokens,
            temperature,
            top_p,
            stop,
            top_k: extra.top_k,
            reasoning,
            ..Default::default()
        }),
        tools,
        tool_choice,
        response_format,
        additional_model_request_fields_json: if extra.rest.is_empty() {
            String::new()
        } else {
            Value::Object(extra.rest).to_string()
        },
        additional_model_response_field_paths: paths,
        ..Default::default()
    })
}

/// One message of `messages`.
fn message(i: usize, m: &Value) -> Result<pb::Message, HubError> {
    let role = match m["role"].as_str() {
        Some("user") => pb::Role::User,
        Some("assistant") => pb::Role::Assistant,
        other => {
            return Err(bad(format!(
                "messages.{i}.role: {:?} is not one of user, assistant",
                other.unwrap_or("")
            )));
        }
    };
    let mut content = Vec::new();
    let mut has_results = false;
    for (j, b) in m["content"].as_array().into_iter().flatten().enumerate() {
        let at = format!("messages.{i}.content.{j}");
        let p = if let Some(t) = b["text"].as_str() {
            pb::content_part::Part::Text(t.to_owned())
        } else if let Some(img) = b.get("image").filter(|_| role == pb::Role::User) {
            let format = img["format"].as_str().unwrap_or("");
            let Some(data) = img["source"]["bytes"].as_str() else {
                return Err(bad(format!(
                    "{at}.image.source: only inline bytes are supported"
                )));
            };
            let p = crate::media::image_part(&format!("image/{format}"), data)
                .map_err(|e| bad(format!("{at}: {e}")))?;
            content.push(p);
            continue;
        } else if let Some(u) = b.get("toolUse").filter(|_| role == pb::Role::Assistant) {
            pb::content_part::Part::ToolCall(pb::ToolCall {
                id: u["toolUseId"].as_str().unwrap_or_default().to_owned(),
                name: u["name"]
                    .as_str()
                    .ok_or_else(|| bad(format!("{at}.toolUse.name: required")))?
                    .to_owned(),
                arguments_json: match &u["input"] {
                    Value::Null => "{}".to_owned(),
                    v => v.to_string(),
                },
            })
        } else if let Some(r) = b.get("toolResult").filter(|_| role == pb::Role::User) {
            has_results = true;
            let mut text = String::new();
            for (k, c) in r["content"].as_array().into_iter().flatten().enumerate() {
                if let Some(t) = c["text"].as_str() {
                    text.push_str(t);
                } else if let Some(j) = c.get("json") {
                    text.push_str(&j.to_string());
                } else {
                    return Err(bad(format!(
                        "{at}.toolResult.content.{k}: only text and json are supported"
                    )));
                }
            }
            pb::content_part::Part::ToolResult(pb::ToolResult {
                tool_call_id: r["toolUseId"]
                    .as_str()
                    .ok_or_else(|| bad(format!("{at}.toolResult.toolUseId: required")))?
                    .to_owned(),
                content: text,
                is_error: r["status"].as_str() == Some("error"),
            })
        } else if let Some(c) = b.get("cachePoint") {
            pb::content_part::Part::CachePoint(cache_point(c, &at)?)
        } else if let Some(r) = b
            .get("reasoningContent")
            .filter(|_| role == pb::Role::Assistant)
        {
            pb::content_part::Part::Thinking(reasoning_content(r, &at)?)
        } else {
            let kind = b
                .as_object()
                .and_then(|o| o.keys().next().cloned())
                .unwrap_or_default();
            return Err(bad(format!(
                "{at}: content block {kind:?} is not supported in a {} message",
                m["role"].as_str().unwrap_or("")
            )));
        };
        content.push(part(p));
    }
    if content.is_empty() {
        return Err(bad(format!("messages.{i}.content: must not be empty")));
    }
    let role = if has_results { pb::Role::Tool } else { role };
    Ok(pb::Message {
        role: role as i32,
        content,
    })
}

/// A `reasoningContent` block of an earlier assistant turn: `reasoningText` (`text`,
/// `signature`) or `redactedContent` (base64 bytes).
fn reasoning_content(r: &Value, at: &str) -> Result<pb::ThinkingPart, HubError> {
    if let Some(t) = r.get("reasoningText") {
        return Ok(pb::ThinkingPart {
            text: t["text"]
                .as_str()
                .ok_or_else(|| {
                    bad(format!(
                        "{at}.reasoningContent.reasoningText.text: required"
                    ))
                })?
                .to_owned(),
            signature: t["signature"].as_str().unwrap_or_default().to_owned(),
            ..Default::default()
        });
    }
    if let Some(d) = r.get("redactedContent") {
        return Ok(pb::ThinkingPart {
            redacted: true,
            data: d
                .as_str()
                .ok_or_else(|| {
                    bad(format!(
                        "{at}.reasoningContent.redactedContent: base64 bytes are required"
                    ))
                })?
                .to_owned(),
            ..Default::default()
        });
    }
    Err(bad(format!(
        "{at}.reasoningContent: reasoningText or redactedContent is required"
    )))
}

/// `toolConfig.toolChoice` (`{"auto":{}}`, `{"any":{}}`, `{"tool":{"name"}}`) → the contract's.
fn tool_choice(c: &Value, tools: &[pb::ToolSpec]) -> Result<Option<pb::ToolChoice>, HubError> {
    use pb::tool_choice::Mode;
    let (mode, name) = if c.get("auto").is_some() {
        (Mode::Auto, "")
    } else if c.get("any").is_some() {
        (Mode::Any, "")
    } else if let Some(t) = c.get("tool") {
        (
            Mode::Tool,
            t["name"]
                .as_str()
                .ok_or_else(|| bad("toolConfig.toolChoice.tool.name: required"))?,
        )
    } else {
        return Err(bad("toolConfig.toolChoice: must be one of auto, any, tool"));
    };
    crate::surface::checked_tool_choice(mode, name, tools).map_err(|p| match p {
        ToolChoiceProblem::NoTools => {
            bad("toolConfig.toolChoice: a tool must be used, but toolConfig.tools is empty")
        }
        ToolChoiceProblem::UnknownTool => bad(format!(
            "toolConfig.toolChoice.tool.name: {name:?} is not one of toolConfig.tools"
        )),
    })
}

/// `additionalModelRequestFields` with its known keys translated.
#[derive(Debug, Default)]
struct Additional {
    top_k: Option<u32>,
    reasoning: Option<pb::Reasoning>,
    /// The keys left, for Bedrock upstreams only.
    rest: Map<String, Value>,
}

/// Translates `top_k` (→ `params.top_k`), `thinking` (Anthropic's shape), `reasoning_config`
/// (`{"type": "enabled" | "disabled", "budget_tokens"}`) and Nova's `reasoningConfig`
/// (`{"type", "maxReasoningEffort"}`) into the contract; keeps the rest verbatim.
fn additional_fields(v: &Value) -> Result<Additional, HubError> {
    use pb::reasoning::Mode;
    let mut out = Additional::default();
    let obj = match v {
        Value::Null => return Ok(out),
        Value::Object(o) => o,
        _ => return Err(bad("additionalModelRequestFields: must be an object")),
    };
    const AT: &str = "additionalModelRequestFields";
    for (k, v) in obj {
        let reasoning = match k.as_str() {
            "top_k" => {
                out.top_k = Some(
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| {
                            bad(format!("{AT}.top_k: must be a non-negative integer"))
                        })?,
                );
                continue;
            }
            "thinking" | "reasoning_config" => {
                let (mode, budget) = match v["type"].as_str() {
                    Some("enabled") => (
                        Mode::Enabled,
                        v["budget_tokens"]
                            .as_u64()
                            .filter(|b| *b >= 1)
                            .and_then(|b| u32::try_from(b).ok())
                            .ok_or_else(|| {
                                bad(format!(
                                    "{AT}.{k}.budget_tokens: a positive integer is required"
                                ))
                            })?,
                    ),
                    Some("adaptive") if k == "thinking" => (Mode::Adaptive, 0),
                    Some("disabled") => (Mode::Disabled, 0),
                    _ => {
                        return Err(bad(format!(
                            "{AT}.{k}.type: must be enabled, adaptive or disabled"
                        )));
                    }
                };
                pb::Reasoning {
                    mode: mode as i32,
                    budget_tokens: budget,
                    effort: String::new(),
                }
            }
            "reasoningConfig" => {
                let mode = match v["type"].as_str() {
                    Some("enabled") => Mode::Enabled,
                    Some("disabled") => Mode::Disabled,
                    _ => {
                        return Err(bad(format!(
                            "{AT}.reasoningConfig.type: must be enabled or disabled"
                        )));
                    }
                };
                let effort = match &v["maxReasoningEffort"] {
                    Value::Null => String::new(),
                    Value::String(e) if EFFORTS.contains(&e.as_str()) => e.clone(),
                    _ => {
                        return Err(bad(format!(
                            "{AT}.reasoningConfig.maxReasoningEffort: must be one of low, medium, high"
                        )));
                    }
                };
                pb::Reasoning {
                    mode: mode as i32,
                    budget_tokens: 0,
                    effort,
                }
            }
            _ => {
                out.rest.insert(k.clone(), v.clone());
                continue;
            }
        };
        if out.reasoning.is_some() {
            return Err(bad(format!(
                "{AT}.{k}: give only one of thinking, reasoning_config, reasoningConfig"
            )));
        }
        out.reasoning = Some(reasoning);
    }
    Ok(out)
}

/// `outputConfig`: `textFormat` (a JSON schema, as text, under `structure.jsonSchema`) and
/// `effort`.
fn output_config(v: &Value) -> Result<(Option<pb::ResponseFormat>, Option<String>), HubError> {
    let obj = match v {
        Value::Null => return Ok((None, None)),
        Value::Object(o) => o,
        _ => return Err(bad("outputConfig: must be an object")),
    };
    let (mut format, mut effort) = (None, None);
    for (k, v) in obj {
        match k.as_str() {
            "textFormat" if v.is_null() => {}
            "textFormat" => {
                if v["type"].as_str() != Some("json_schema") {
                    return Err(bad(
                        "outputConfig.textFormat.type: only \"json_schema\" is supported",
                    ));
                }
                let js = &v["structure"]["jsonSchema"];
                let schema = js["schema"]
                    .as_str()
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
                    .filter(Value::is_object)
                    .ok_or_else(|| {
                        bad("outputConfig.textFormat.structure.jsonSchema.schema: a JSON schema object (as text) is required")
                    })?;
                format = Some(pb::ResponseFormat {
                    r#type: pb::response_format::Type::JsonSchema as i32,
                    name: js["name"].as_str().unwrap_or_default().to_owned(),
                    description: js["description"].as_str().unwrap_or_default().to_owned(),
                    schema_json: schema.to_string(),
                    strict: true,
                });
            }
            "effort" => match v.as_str() {
                Some(e) if EFFORTS.contains(&e) => effort = Some(e.to_owned()),
                _ => {
                    return Err(bad(format!(
                        "outputConfig.effort: must be one of {}",
                        EFFORTS.join(", ")
                    )));
                }
            },
            other => {
                return Err(HubError::InvalidParam {
                    param: format!("outputConfig.{other}").into(),
                    code: "unsupported_parameter",
                    message: format!(
                        "outputConfig.{other}: not supported by this gateway (only textFormat and effort)"
                    ),
                });
            }
        }
    }
    Ok((format, effort))
}

/// Which field of the body asked for each capability (names the field when no model of the
/// alias has it).
pub fn asked(body: &Value) -> AskedBy {
    let mut a = AskedBy::default();
    let amrf = &body["additionalModelRequestFields"];
    a.set(Feature::StructuredOutput, "outputConfig.textFormat");
    for k in ["thinking", "reasoning_config", "reasoningConfig"] {
        if !amrf[k].is_null() {
            a.set(
                Feature::Reasoning,
                format!("additionalModelRequestFields.{k}"),
            );
        }
    }
    a.set(Feature::Reasoning, "outputConfig.effort");
    a.set(Feature::TopK, "additionalModelRequestFields.top_k");
    a.set(Feature::ToolChoice, "toolConfig.toolChoice");
    let rest = amrf.as_object().and_then(|o| {
        o.keys()
            .find(|k| {
                !matches!(
                    k.as_str(),
                    "top_k" | "thinking" | "reasoning_config" | "reasoningConfig"
                )
            })
            .cloned()
    });
    match rest {
        Some(k) => a.set(Feature::Api, format!("additionalModelRequestFields.{k}")),
        None => a.set(Feature::Api, "additionalModelResponseFieldPaths"),
    }
    a
}
