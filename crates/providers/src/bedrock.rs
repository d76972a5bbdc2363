//! Amazon Bedrock `Converse` / `ConverseStream` through `aws-sdk-bedrockruntime`, one client per
//! region. The SDK's own retries are disabled: failover across regions and models is the
//! spoke's job, and an SDK retry loop would hide throttling from it.

mod errors;

use crate::shape::{self, Think};
use crate::{Call, Chunk, ChunkStream, Completion, EmbedCall, Embeddings, Upstream, UpstreamError};
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    self as bt, CachePointBlock, CachePointType, CacheTtl, ContentBlock, ConversationRole,
    ConverseStreamOutput, ImageBlock, ImageFormat, ImageSource, InferenceConfiguration,
    JsonSchemaDefinition, OutputConfig, OutputFormat, OutputFormatStructure, OutputFormatType,
    PerformanceConfigLatency, PerformanceConfiguration, PromptVariableValues,
    ReasoningContentBlock, ReasoningTextBlock, SystemContentBlock, Tool, ToolConfiguration,
    ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolResultStatus, ToolSpecification,
    ToolUseBlock,
};
use aws_smithy_types::{Document, Number};
use base64::Engine as _;
use errors::{classify_code, sdk_error};
use futures::StreamExt;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use switchyard_proto::v1::{
    InferRequest, Role, StopReason, ThinkingPart, ToolCall, Usage, content_part::Part,
    tool_choice::Mode as ChoiceMode,
};

/// One region of a Bedrock spoke.
#[derive(Clone, Debug)]
pub struct BedrockRegion {
    pub name: String,
    /// Endpoint override (tests, VPC endpoints); `None` = the SDK's regional endpoint.
    pub endpoint: Option<String>,
}

pub struct BedrockUpstream {
    clients: HashMap<String, Client>,
    /// Bedrock Guardrail (identifier, version) sent with every call, when configured.
    guardrail: Option<(String, String)>,
    /// The provider the clients sign with, kept to check that credentials resolve.
    credentials: Option<aws_sdk_bedrockruntime::config::SharedCredentialsProvider>,
}

impl BedrockUpstream {
    /// Builds one client per region. Credentials come from the default chain, or from
    /// `role_arn` assumed through STS (`AssumeRole`) when given.
    pub async fn new(regions: &[BedrockRegion], role_arn: Option<&str>) -> Self {
        let mut clients = HashMap::new();
        let mut credentials = None;
        for r in regions {
            let sdk = crate::aws::sdk_config(&r.name, role_arn).await;
            if credentials.is_none() {
                credentials = sdk.credentials_provider();
            }
            let mut builder = aws_sdk_bedrockruntime::config::Builder::from(&sdk);
            if let Some(ep) = &r.endpoint {
                builder = builder.endpoint_url(ep);
            }
            clients.insert(r.name.clone(), Client::from_conf(builder.build()));
        }
        Self {
            clients,
            guardrail: None,
            credentials,
        }
    }

    /// Sends this Bedrock Guardrail with every call. An intervention comes back as a
    /// `ContentFiltered` stop reason with the guardrail's own message, not as an error.
    pub fn with_guardrail(mut self, guardrail: Option<(String, String)>) -> Self {
        self.guardrail = guardrail;
        self
    }

    fn client(&self, region: &str) -> Result<&Client, UpstreamError> {
        self.clients
            .get(region)
            .ok_or_else(|| UpstreamError::unavailable(format!("no client for region {region}")))
    }
}

/// The model family of a Bedrock model id (or inference profile), for the settings Converse
/// leaves to `additionalModelRequestFields`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// Anthropic Claude: `thinking`, `top_k`.
    Claude,
    /// Amazon Nova 2: `reasoningConfig`, `inferenceConfig.topK`.
    Nova2,
    /// Amazon Nova (1): `inferenceConfig.topK`.
    Nova,
    /// OpenAI gpt-oss: `reasoning_effort`.
    GptOss,
    Other,
}

/// Whether the adapter knows how to ask Bedrock model `model` (id or inference profile) for
/// reasoning: Claude (`thinking`), Nova 2 (`reasoningConfig`), gpt-oss (`reasoning_effort`).
pub fn reasoning_known(model: &str) -> bool {
    matches!(
        family(model),
        Family::Claude | Family::Nova2 | Family::GptOss
    )
}

fn family(model: &str) -> Family {
    let m = model.to_ascii_lowercase();
    if m.contains("anthropic.") || m.contains("claude") {
        Family::Claude
    } else if m.contains("nova-2") {
        Family::Nova2
    } else if m.contains("nova") {
        Family::Nova
    } else if m.contains("gpt-oss") {
        Family::GptOss
    } else {
        Family::Other
    }
}

/// Everything of one Converse / ConverseStream request but the model id.
struct Parts {
    system: Vec<SystemContentBlock>,
    messages: Vec<bt::Message>,
    tool_config: Option<ToolConfiguration>,
    inference: Option<InferenceConfiguration>,
    additional: Option<Document>,
    response_paths: Option<Vec<String>>,
    output_config: Option<OutputConfig>,
    /// `guardrailConfig` (identifier, version, trace) from the caller's passthrough; the
    /// spoke's own `[bedrock]` guardrail wins over it.
    guardrail: Option<(String, String, Option<String>)>,
    performance: Option<PerformanceConfiguration>,
    request_metadata: Option<HashMap<String, String>>,
    prompt_variables: Option<HashMap<String, PromptVariableValues>>,
    service_tier: Option<bt::ServiceTier>,
    finish: shape::Finish,
}

/// Translates a call into Converse's types. What Converse cannot express is the caller's fault
/// (never dropped): `toolChoice` none while the history holds tool blocks (Converse has no
/// `none`; without tool blocks the tools are simply left out), sampling settings Converse has
/// no field for, unknown passthrough fields.
fn parts(call: &Call<'_>) -> Result<Parts, UpstreamError> {
    let req = call.request;
    let fam = family(call.model);
    shape::refuse_unsupported(req, "Bedrock Converse API", true)?;
    let (system, messages) = conversation(req, call.options.prompt_caching)?;
    let plan = shape::tool_plan(req, call.options.structured_output)?;
    let tool_config = if plan.mode == ChoiceMode::None {
        if shape::history_has_tool_blocks(req) {
            return Err(invalid(
                "tool_choice: Bedrock Converse has no toolChoice none, and the tools cannot be left out while the conversation holds tool calls".into(),
            ));
        }
        None
    } else {
        tool_config(req, &plan, call.options.prompt_caching)?
    };
    let p = req.params.clone().unwrap_or_default();
    let mut additional = serde_json::Map::new();
    let think = shape::reasoning(req);
    let budget = match &think {
        Some(t) => shape::think_budget(t)?,
        None => None,
    };
    let mut max_tokens = p.max_tokens;
    match (&think, fam) {
        (None | Some(Think::Off), _) => {}
        (Some(t), Family::Claude) => {
            let thinking = match (t, budget) {
                (Think::Adaptive(_), _) => serde_json::json!({"type": "adaptive"}),
                (_, Some(b)) => {
                    let b = match (t, max_tokens) {
                        // An effort's budget fits under max_tokens; a given budget is sent as is.
                        (Think::Effort(_), Some(m)) => b.min(m.saturating_sub(1)),
                        _ => b,
                    };
                    if b < shape::MIN_THINKING_BUDGET {
                        return Err(invalid(format!(
                            "max_tokens leaves no room for reasoning (Claude's smallest thinking budget is {} tokens)",
                            shape::MIN_THINKING_BUDGET
                        )));
                    }
                    if max_tokens.is_none() {
                        max_tokens = Some(b.saturating_add(crate::anthropic::DEFAULT_MAX_TOKENS));
                    }
                    serde_json::json!({"type": "enabled", "budget_tokens": b})
                }
                (_, None) => serde_json::json!({"type": "disabled"}),
            };
            additional.insert("thinking".into(), thinking);
        }
        (Some(t), Family::Nova2) => {
            let effort = match (t, budget) {
                (Think::Budget(_, Some(e)) | Think::Effort(e) | Think::Adaptive(Some(e)), _) => {
                    nova_effort(e)
                }
                (_, Some(b)) => shape::effort_for_budget(b),
                _ => "medium",
            };
            additional.insert(
                "reasoningConfig".into(),
                serde_json::json!({"type": "enabled", "maxReasoningEffort": effort}),
            );
        }
        (Some(t), Family::GptOss) => {
            let effort = match (t, budget) {
                (Think::Budget(_, Some(e)) | Think::Effort(e) | Think::Adaptive(Some(e)), _) => {
                    nova_effort(e)
                }
                (_, Some(b)) => shape::effort_for_budget(b),
                _ => "medium",
            };
            additional.insert("reasoning_effort".into(), serde_json::json!(effort));
        }
        (Some(_), Family::Nova | Family::Other) => {
            return Err(invalid(format!(
                "reasoning: no reasoning setting is known for Bedrock model {}",
                call.model
            )));
        }
    }
    if let Some(k) = p.top_k {
        match fam {
            Family::Nova | Family::Nova2 => {
                additional.insert("inferenceConfig".into(), serde_json::json!({"topK": k}));
            }
            _ => {
                additional.insert("top_k".into(), serde_json::json!(k));
            }
        }
    }
    if !req.additional_model_request_fields_json.trim().is_empty() {
        match serde_json::from_str::<Value>(&req.additional_model_request_fields_json) {
            Ok(Value::Object(extra)) => {
                for (k, v) in extra {
                    additional.entry(k).or_insert(v);
                }
            }
            _ => {
                return Err(invalid(
                    "additionalModelRequestFields: must be a JSON object".into(),
                ));
            }
        }
    }
    let inference = (req.params.is_some() || max_tokens.is_some()).then(|| {
        InferenceConfiguration::builder()
            .set_max_tokens(max_tokens.map(|v| v.min(i32::MAX as u32) as i32))
            .set_temperature(p.temperature)
            .set_top_p(p.top_p)
            .set_stop_sequences((!p.stop.is_empty()).then(|| p.stop.clone()))
            .build()
    });
    let mut output_config = None;
    if plan.output.is_none()
        && let Some(f) = shape::json_format(req)
    {
        let schema = shape::format_schema(f)?;
        let def = JsonSchemaDefinition::builder()
            .schema(schema.to_string())
            .set_name((!f.name.is_empty()).then(|| f.name.clone()))
            .set_description((!f.description.is_empty()).then(|| f.description.clone()))
            .build()
            .map_err(|e| invalid(format!("response_format: {e}")))?;
        let format = OutputFormat::builder()
            .r#type(OutputFormatType::JsonSchema)
            .structure(OutputFormatStructure::JsonSchema(def))
            .build()
            .map_err(|e| invalid(format!("response_format: {e}")))?;
        output_config = Some(OutputConfig::builder().text_format(format).build());
    }
    if let Some(Think::Adaptive(Some(e))) = &think
        && fam == Family::Claude
    {
        let effort = shape::anthropic_effort(e);
        output_config = Some(match output_config {
            Some(o) => OutputConfig::builder()
                .set_text_format(o.text_format().cloned())
                .effort(effort)
                .build(),
            None => OutputConfig::builder().effort(effort).build(),
        });
    }
    let mut out = Parts {
        system,
        messages,
        tool_config,
        inference,
        additional: (!additional.is_empty()).then(|| to_document(&Value::Object(additional))),
        response_paths: (!req.additional_model_response_field_paths.is_empty())
            .then(|| req.additional_model_response_field_paths.clone()),
        output_config,
        guardrail: None,
        performance: None,
        request_metadata: None,
        prompt_variables: None,
        service_tier: None,
        finish: shape::Finish {
            output: plan.output,
            // Converse has no parallel-tool-calls setting: at most one call is kept.
            single_call: req.parallel_tool_calls == Some(false),
        },
    };
    if let Some(fields) = shape::passthrough(req, "converse")? {
        passthrough(&mut out, fields)?;
    }
    Ok(out)
}

/// Nova 2's and gpt-oss's efforts are `low`, `medium`, `high`.
fn nova_effort(effort: &str) -> &'static str {
    match effort {
        "none" | "minimal" | "low" => "low",
        "medium" => "medium",
        _ => "high",
    }
}

/// The top-level Converse fields of a same-API passthrough, onto the SDK request:
/// `guardrailConfig`, `performanceConfig`, `requestMetadata`, `promptVariables`,
/// `serviceTier`. Any other key is the caller's fault, named.
fn passthrough(
    out: &mut Parts,
    fields: serde_json::Map<String, Value>,
) -> Result<(), UpstreamError> {
    let text = |v: &Value, what: &str| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| invalid(format!("{what}: must be a string")))
    };
    let mut unknown = Vec::new();
    for (k, v) in fields {
        match k.as_str() {
            "guardrailConfig" => {
                out.guardrail = Some((
                    text(
                        &v["guardrailIdentifier"],
                        "guardrailConfig.guardrailIdentifier",
                    )?,
                    text(&v["guardrailVersion"], "guardrailConfig.guardrailVersion")?,
                    v["trace"].as_str().map(str::to_owned),
                ));
            }
            "performanceConfig" => {
                let latency = text(&v["latency"], "performanceConfig.latency")?;
                out.performance = Some(
                    PerformanceConfiguration::builder()
                        .latency(PerformanceConfigLatency::from(latency.as_str()))
                        .build(),
                );
            }
            "requestMetadata" => {
                let m = v
                    .as_object()
                    .ok_or_else(|| invalid("requestMetadata: must be an object".into()))?;
                let mut meta = HashMap::new();
                for (mk, mv) in m {
                    meta.insert(mk.clone(), text(mv, "requestMetadata values")?);
                }
                out.request_metadata = Some(meta);
            }
            "promptVariables" => {
                let m = v
                    .as_object()
                    .ok_or_else(|| invalid("promptVariables: must be an object".into()))?;
                let mut vars = HashMap::new();
                for (name, value) in m {
                    vars.insert(
                        name.clone(),
                        PromptVariableValues::Text(text(&value["text"], "promptVariables.*.text")?),
                    );
                }
                out.prompt_variables = Some(vars);
            }
            "serviceTier" => {
                let ty = text(&v["type"], "serviceTier.type")?;
                out.service_tier = Some(
                    bt::ServiceTier::builder()
                        .r#type(bt::ServiceTierType::from(ty.as_str()))
                        .build()
                        .map_err(|e| invalid(format!("serviceTier: {e}")))?,
                );
            }
            _ => unknown.push(k),
        }
    }
    if !unknown.is_empty() {
        return Err(invalid(format!(
            "passthrough: Converse fields not carried to Bedrock: {}",
            unknown.join(", ")
        )));
    }
    Ok(())
}

/// A Bedrock `cachePoint` block of a contract `CachePoint` (`default`, with its `ttl`).
fn cache_point(cp: &switchyard_proto::v1::CachePoint) -> Result<CachePointBlock, UpstreamError> {
    CachePointBlock::builder()
        .r#type(CachePointType::Default)
        .set_ttl((!cp.ttl.is_empty()).then(|| CacheTtl::from(cp.ttl.as_str())))
        .build()
        .map_err(|e| invalid(format!("cache point: {e}")))
}

/// Converts the conversation into Bedrock's types: `system` (the system prompt or its parts
/// with `cachePoint`s, then the text of mid-conversation system messages) and `messages`.
/// Thinking parts with a signature (or redacted) become `reasoningContent` blocks; unsigned ones
/// cannot be verified and are left out.
fn conversation(
    req: &InferRequest,
    caching: bool,
) -> Result<(Vec<SystemContentBlock>, Vec<bt::Message>), UpstreamError> {
    let mut system = Vec::new();
    if req.system_parts.is_empty() {
        if !req.system.is_empty() {
            system.push(SystemContentBlock::Text(req.system.clone()));
        }
    } else {
        for p in &req.system_parts {
            match &p.part {
                Some(Part::Text(t)) if !t.is_empty() => {
                    system.push(SystemContentBlock::Text(t.clone()))
                }
                Some(Part::CachePoint(cp)) if caching && !system.is_empty() => {
                    system.push(SystemContentBlock::CachePoint(cache_point(cp)?));
                }
                _ => {}
            }
        }
    }
    system.extend(
        shape::system_message_texts(req)
            .into_iter()
            .map(SystemContentBlock::Text),
    );
    let mut messages: Vec<bt::Message> = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let role = match Role::try_from(m.role).unwrap_or(Role::Unspecified) {
            Role::System => continue,
            Role::Assistant => ConversationRole::Assistant,
            Role::User | Role::Tool | Role::Unspecified => ConversationRole::User,
        };
        let mut blocks = Vec::with_capacity(m.content.len());
        for p in &m.content {
            blocks.push(match &p.part {
                // Bedrock refuses empty text blocks (an assistant turn that only called tools).
                Some(Part::Text(t)) if t.is_empty() && m.content.len() > 1 => continue,
                Some(Part::Text(t)) => ContentBlock::Text(t.clone()),
                Some(Part::Image(img)) => {
                    let image = ImageBlock::builder()
                        .format(ImageFormat::from(img.format.as_str()))
                        .source(ImageSource::Bytes(Blob::new(img.data.clone())))
                        .build()
                        .map_err(|e| invalid(format!("messages[{i}]: {e}")))?;
                    ContentBlock::Image(image)
                }
                Some(Part::ToolCall(tc)) => {
                    let input = parse_json(&tc.arguments_json)
                        .map_err(|e| invalid(format!("messages[{i}]: tool call arguments: {e}")))?;
                    ContentBlock::ToolUse(
                        ToolUseBlock::builder()
                            .tool_use_id(&tc.id)
                            .name(&tc.name)
                            .input(to_document(&input))
                            .build()
                            .map_err(|e| invalid(format!("messages[{i}]: {e}")))?,
                    )
                }
                Some(Part::ToolResult(r)) => ContentBlock::ToolResult(
                    ToolResultBlock::builder()
                        .tool_use_id(&r.tool_call_id)
                        .content(ToolResultContentBlock::Text(r.content.clone()))
                        .set_status(r.is_error.then_some(ToolResultStatus::Error))
                        .build()
                        .map_err(|e| invalid(format!("messages[{i}]: {e}")))?,
                ),
                Some(Part::Thinking(t)) if t.redacted && !t.data.is_empty() => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(&t.data)
                        .unwrap_or_else(|_| t.data.as_bytes().to_vec());
                    ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(
                        Blob::new(bytes),
                    ))
                }
                Some(Part::Thinking(t)) if !t.redacted && !t.signature.is_empty() => {
                    ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(
                        ReasoningTextBlock::builder()
                            .text(&t.text)
                            .signature(&t.signature)
                            .build()
                            .map_err(|e| invalid(format!("messages[{i}]: {e}")))?,
                    ))
                }
                Some(Part::CachePoint(cp)) if caching && !blocks.is_empty() => {
                    ContentBlock::CachePoint(cache_point(cp)?)
                }
                Some(Part::Thinking(_) | Part::CachePoint(_)) | None => continue,
            });
        }
        // A turn left with nothing Converse takes (only unverifiable thinking) is left out.
        if blocks.is_empty() {
            continue;
        }
        let message = bt::Message::builder()
            .role(role.clone())
            .set_content(Some(blocks))
            .build()
            .map_err(|e| invalid(format!("messages[{i}]: {e}")))?;
        // Converse wants alternating roles, like the Messages API: consecutive turns of one
        // role (a system message between them taken out) are merged.
        match messages.last_mut() {
            Some(last) if *last.role() == role => {
                let mut content = last.content().to_vec();
                content.extend(message.content().iter().cloned());
                *last = bt::Message::builder()
                    .role(role)
                    .set_content(Some(content))
                    .build()
                    .map_err(|e| invalid(format!("messages[{i}]: {e}")))?;
            }
            _ => messages.push(message),
        }
    }
    Ok((system, messages))
}

/// Bedrock's `toolConfig` for the request's tools and the structured-output tool (`None`
/// without any), with `toolChoice` as planned (`auto` is Converse's default and left out).
fn tool_config(
    req: &InferRequest,
    plan: &shape::ToolPlan,
    caching: bool,
) -> Result<Option<ToolConfiguration>, UpstreamError> {
    if req.tools.is_empty() && plan.output.is_none() {
        if matches!(plan.mode, ChoiceMode::Any | ChoiceMode::Tool) {
            return Err(invalid(
                "tool_choice: a tool must be called but none is offered".into(),
            ));
        }
        return Ok(None);
    }
    let mut tools = Vec::with_capacity(req.tools.len() + 1);
    for (i, t) in req.tools.iter().enumerate() {
        let schema = parse_json(&t.parameters_json)
            .map_err(|e| invalid(format!("tools[{i}]: parameters: {e}")))?;
        let spec = ToolSpecification::builder()
            .name(&t.name)
            .set_description((!t.description.is_empty()).then(|| t.description.clone()))
            .input_schema(ToolInputSchema::Json(to_document(&schema)))
            .set_strict(t.strict.then_some(true))
            .build()
            .map_err(|e| invalid(format!("tools[{i}]: {e}")))?;
        tools.push(Tool::ToolSpec(spec));
        if caching && let Some(cp) = &t.cache_point {
            tools.push(Tool::CachePoint(cache_point(cp)?));
        }
    }
    if let Some(out) = &plan.output {
        let spec = ToolSpecification::builder()
            .name(&out.name)
            .description(&out.description)
            .input_schema(ToolInputSchema::Json(to_document(&out.input_schema)))
            .build()
            .map_err(|e| invalid(format!("response_format: {e}")))?;
        tools.push(Tool::ToolSpec(spec));
    }
    let choice = match plan.mode {
        ChoiceMode::Auto | ChoiceMode::None => None,
        ChoiceMode::Any => Some(bt::ToolChoice::Any(bt::AnyToolChoice::builder().build())),
        ChoiceMode::Tool => Some(bt::ToolChoice::Tool(
            bt::SpecificToolChoice::builder()
                .name(&plan.name)
                .build()
                .map_err(|e| invalid(format!("tool_choice: {e}")))?,
        )),
    };
    ToolConfiguration::builder()
        .set_tools(Some(tools))
        .set_tool_choice(choice)
        .build()
        .map(Some)
        .map_err(|e| invalid(format!("tools: {e}")))
}

/// Parses a JSON text of the contract (empty = `{}`).
fn parse_json(text: &str) -> Result<Value, serde_json::Error> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(text)
}

/// JSON → Smithy document (Bedrock's tool inputs and schemas).
pub fn to_document(v: &Value) -> Document {
    match v {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or(0.0))
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(to_document).collect()),
        Value::Object(o) => {
            Document::Object(o.iter().map(|(k, v)| (k.clone(), to_document(v))).collect())
        }
    }
}

/// Smithy document → JSON.
pub fn from_document(d: &Document) -> Value {
    match d {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => Value::from(*u),
        Document::Number(Number::NegInt(i)) => Value::from(*i),
        Document::Number(Number::Float(f)) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Document::String(s) => Value::String(s.clone()),
        Document::Array(a) => Value::Array(a.iter().map(from_document).collect()),
        Document::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), from_document(v)))
                .collect(),
        ),
    }
}

/// The caller's fault, found by the adapter itself (the request cannot be expressed in
/// Bedrock's types); `reason` is the adapter's own words.
fn invalid(reason: String) -> UpstreamError {
    UpstreamError::Invalid {
        reason: reason.into(),
    }
}

fn stop_reason(r: &bt::StopReason) -> StopReason {
    match r {
        bt::StopReason::MaxTokens | bt::StopReason::ModelContextWindowExceeded => {
            StopReason::MaxTokens
        }
        bt::StopReason::StopSequence => StopReason::StopSequence,
        bt::StopReason::ToolUse => StopReason::ToolUse,
        bt::StopReason::ContentFiltered | bt::StopReason::GuardrailIntervened => {
            StopReason::ContentFiltered
        }
        _ => StopReason::EndTurn,
    }
}

/// Bedrock's usage: `inputTokens` counts only the tokens not read from or written to the
/// cache, so the contract's `input_tokens` adds `cacheReadInputTokens` and
/// `cacheWriteInputTokens` (given apart too).
fn usage(u: Option<&bt::TokenUsage>) -> Usage {
    let n = |v: i32| u32::try_from(v.max(0)).unwrap_or(0);
    u.map(|u| {
        let read = n(u.cache_read_input_tokens().unwrap_or(0));
        let write = n(u.cache_write_input_tokens().unwrap_or(0));
        Usage {
            input_tokens: n(u.input_tokens())
                .saturating_add(read)
                .saturating_add(write),
            output_tokens: n(u.output_tokens()),
            cache_read_input_tokens: read,
            cache_write_input_tokens: write,
            reasoning_tokens: 0,
        }
    })
    .unwrap_or_default()
}

/// A `reasoningContent` block as a contract thinking part (redacted content as base64 `data`).
fn thinking_part(r: &ReasoningContentBlock) -> Option<ThinkingPart> {
    match r {
        ReasoningContentBlock::ReasoningText(t) => Some(ThinkingPart {
            text: t.text().to_owned(),
            signature: t.signature().unwrap_or_default().to_owned(),
            ..Default::default()
        }),
        ReasoningContentBlock::RedactedContent(b) => Some(ThinkingPart {
            redacted: true,
            data: base64::engine::general_purpose::STANDARD.encode(b.as_ref()),
            ..Default::default()
        }),
        _ => None,
    }
}

#[async_trait::async_trait]
impl Upstream for BedrockUpstream {
    fn kind(&self) -> &'static str {
        "bedrock"
    }

    async fn check_credentials(&self) -> Result<(), String> {
        use aws_sdk_bedrockruntime::config::ProvideCredentials;
        let Some(provider) = &self.credentials else {
            return Err("no credentials provider configured".into());
        };
        match tokio::time::timeout(Duration::from_secs(10), provider.provide_credentials()).await {
            Ok(Ok(_)) => Ok(()),
            // The error names the failing provider (env, profile, STS...), never a secret.
            Ok(Err(e)) => Err(format!("credentials unavailable: {e}")),
            Err(_) => Err("credentials lookup timed out".into()),
        }
    }

    async fn complete(&self, call: Call<'_>) -> Result<Completion, UpstreamError> {
        let client = self.client(call.region)?;
        let parts = parts(&call)?;
        let guardrail = self
            .guardrail
            .as_ref()
            .map(|(id, v)| (id.clone(), v.clone(), None))
            .or(parts.guardrail);
        let fut = client
            .converse()
            .model_id(call.model)
            .set_system((!parts.system.is_empty()).then_some(parts.system))
            .set_messages(Some(parts.messages))
            .set_tool_config(parts.tool_config)
            .set_inference_config(parts.inference)
            .set_additional_model_request_fields(parts.additional)
            .set_additional_model_response_field_paths(parts.response_paths)
            .set_output_config(parts.output_config)
            .set_performance_config(parts.performance)
            .set_request_metadata(parts.request_metadata)
            .set_prompt_variables(parts.prompt_variables)
            .set_service_tier(parts.service_tier)
            .set_guardrail_config(guardrail.map(|(id, v, trace)| {
                bt::GuardrailConfiguration::builder()
                    .guardrail_identifier(id)
                    .guardrail_version(v)
                    .set_trace(trace.map(|t| bt::GuardrailTrace::from(t.as_str())))
                    .build()
            }))
            .send();
        let out = tokio::time::timeout(call.timeout, fut)
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(sdk_error)?;
        let mut c = Completion {
            stop_reason: stop_reason(out.stop_reason()),
            usage: usage(out.usage()),
            additional_response_fields_json: out
                .additional_model_response_fields()
                .map(|d| from_document(d).to_string())
                .unwrap_or_default(),
            ..Default::default()
        };
        let blocks = out.output().and_then(|o| o.as_message().ok());
        for block in blocks.map(|m| m.content()).unwrap_or_default() {
            match block {
                ContentBlock::Text(t) => c.text.push_str(t),
                ContentBlock::ToolUse(u) => c.tool_calls.push(ToolCall {
                    id: u.tool_use_id().to_owned(),
                    name: u.name().to_owned(),
                    arguments_json: from_document(u.input()).to_string(),
                }),
                ContentBlock::ReasoningContent(r) => c.thinking.extend(thinking_part(r)),
                _ => {}
            }
        }
        Ok(shape::settle(c, &parts.finish))
    }

    /// `CountTokens` with `input.converse`: the system, messages, tool configuration and
    /// additional model request fields of the call's Converse request → `inputTokens`.
    async fn count_tokens(&self, call: Call<'_>) -> Result<Option<u32>, UpstreamError> {
        let client = self.client(call.region)?;
        let parts = parts(&call)?;
        let input = bt::ConverseTokensRequest::builder()
            .set_system((!parts.system.is_empty()).then_some(parts.system))
            .set_messages(Some(parts.messages))
            .set_tool_config(parts.tool_config)
            .set_additional_model_request_fields(parts.additional)
            .build();
        let fut = client
            .count_tokens()
            .model_id(call.model)
            .input(bt::CountTokensInput::Converse(input))
            .send();
        let out = tokio::time::timeout(call.timeout, fut)
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(sdk_error)?;
        Ok(Some(u32::try_from(out.input_tokens()).unwrap_or(0)))
    }

    /// `InvokeModel` with the model family's body: Cohere Embed takes the batch at once
    /// (`{"texts", "input_type"}` → `{"embeddings"}`), Titan one text per call (`{"inputText"}` →
    /// `{"embedding", "inputTextTokenCount"}`).
    async fn embed(&self, call: EmbedCall<'_>) -> Result<Embeddings, UpstreamError> {
        let client = self.client(call.region)?;
        let invoke = |body: Value| {
            let fut = client
                .invoke_model()
                .model_id(call.model)
                .content_type("application/json")
                .accept("application/json")
                .body(Blob::new(body.to_string()))
                .send();
            async move {
                let out = tokio::time::timeout(call.timeout, fut)
                    .await
                    .map_err(|_| UpstreamError::Timeout)?
                    .map_err(sdk_error)?;
                serde_json::from_slice::<Value>(out.body().as_ref())
                    .map_err(|_| UpstreamError::unavailable("embeddings response is not JSON"))
            }
        };
        let floats = |v: &Value| -> Vec<f32> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_f64)
                .map(|f| f as f32)
                .collect()
        };
        if call.model.contains("cohere.embed") {
            if call.dimensions.is_some() {
                return Err(invalid("Cohere Embed does not take `dimensions`".into()));
            }
            let v =
                invoke(serde_json::json!({"texts": call.inputs, "input_type": "search_document"}))
                    .await?;
            let vectors: Vec<Vec<f32>> = v["embeddings"]
                .as_array()
                .into_iter()
                .flatten()
                .map(floats)
                .collect();
            if vectors.len() != call.inputs.len() {
                return Err(UpstreamError::unavailable(format!(
                    "upstream returned {} embeddings for {} inputs",
                    vectors.len(),
                    call.inputs.len()
                )));
            }
            let chars: usize = call.inputs.iter().map(String::len).sum();
            return Ok(Embeddings {
                vectors,
                input_tokens: chars.div_ceil(4) as u32,
            });
        }
        let mut vectors = Vec::with_capacity(call.inputs.len());
        let mut tokens = 0u32;
        for text in call.inputs {
            let mut body = serde_json::json!({"inputText": text});
            if let Some(d) = call.dimensions {
                body["dimensions"] = serde_json::json!(d);
            }
            let v = invoke(body).await?;
            tokens = tokens.saturating_add(v["inputTextTokenCount"].as_u64().unwrap_or(0) as u32);
            vectors.push(floats(&v["embedding"]));
        }
        Ok(Embeddings {
            vectors,
            input_tokens: tokens,
        })
    }

    async fn stream(&self, call: Call<'_>) -> Result<ChunkStream, UpstreamError> {
        let client = self.client(call.region)?;
        let parts = parts(&call)?;
        let guardrail = self
            .guardrail
            .as_ref()
            .map(|(id, v)| (id.clone(), v.clone(), None))
            .or(parts.guardrail);
        let fut = client
            .converse_stream()
            .model_id(call.model)
            .set_system((!parts.system.is_empty()).then_some(parts.system))
            .set_messages(Some(parts.messages))
            .set_tool_config(parts.tool_config)
            .set_inference_config(parts.inference)
            .set_additional_model_request_fields(parts.additional)
            .set_additional_model_response_field_paths(parts.response_paths)
            .set_output_config(parts.output_config)
            .set_performance_config(parts.performance)
            .set_request_metadata(parts.request_metadata)
            .set_prompt_variables(parts.prompt_variables)
            .set_service_tier(parts.service_tier)
            .set_guardrail_config(guardrail.map(|(id, v, trace)| {
                bt::GuardrailStreamConfiguration::builder()
                    .guardrail_identifier(id)
                    .guardrail_version(v)
                    .set_trace(trace.map(|t| bt::GuardrailTrace::from(t.as_str())))
                    .build()
            }))
            .send();
        let out = tokio::time::timeout(call.timeout, fut)
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(sdk_error)?;
        let state = StreamState {
            rx: out.stream,
            tool_blocks: HashMap::new(),
            stop: None,
            additional: String::new(),
            usage: None,
            done: false,
        };
        let chunks = futures::stream::unfold(state, |mut st| async move {
            let item = st.next_chunk().await?;
            Some((item, st))
        })
        .boxed();
        Ok(shape::settle_stream(chunks, parts.finish))
    }
}

struct StreamState {
    rx: aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver<
        ConverseStreamOutput,
        bt::error::ConverseStreamOutputError,
    >,
    /// Content block index → tool-call index, for the tool-use blocks seen so far.
    tool_blocks: HashMap<i32, u32>,
    stop: Option<StopReason>,
    /// `messageStop.additionalModelResponseFields` as JSON text.
    additional: String,
    usage: Option<Usage>,
    done: bool,
}

impl StreamState {
    async fn next_chunk(&mut self) -> Option<Result<Chunk, UpstreamError>> {
        if self.done {
            return None;
        }
        loop {
            match self.rx.recv().await {
                Ok(Some(ConverseStreamOutput::ContentBlockStart(s))) => {
                    if let Some(Ok(u)) = s.start().map(|s| s.as_tool_use()) {
                        let index = self.tool_blocks.len() as u32;
                        self.tool_blocks.insert(s.content_block_index(), index);
                        return Some(Ok(Chunk::ToolCall {
                            index,
                            id: u.tool_use_id().to_owned(),
                            name: u.name().to_owned(),
                            arguments: String::new(),
                        }));
                    }
                }
                Ok(Some(ConverseStreamOutput::ContentBlockDelta(d))) => match d.delta() {
                    Some(bt::ContentBlockDelta::Text(t)) if !t.is_empty() => {
                        return Some(Ok(Chunk::Delta(t.clone())));
                    }
                    Some(bt::ContentBlockDelta::ReasoningContent(r)) => {
                        let part = match r {
                            bt::ReasoningContentBlockDelta::Text(t) if !t.is_empty() => {
                                ThinkingPart {
                                    text: t.clone(),
                                    ..Default::default()
                                }
                            }
                            bt::ReasoningContentBlockDelta::Signature(sig) if !sig.is_empty() => {
                                ThinkingPart {
                                    signature: sig.clone(),
                                    ..Default::default()
                                }
                            }
                            bt::ReasoningContentBlockDelta::RedactedContent(b) => ThinkingPart {
                                redacted: true,
                                data: base64::engine::general_purpose::STANDARD.encode(b.as_ref()),
                                ..Default::default()
                            },
                            _ => continue,
                        };
                        return Some(Ok(Chunk::thinking(part)));
                    }
                    Some(bt::ContentBlockDelta::ToolUse(u)) if !u.input().is_empty() => {
                        let Some(index) = self.tool_blocks.get(&d.content_block_index()) else {
                            self.done = true;
                            return Some(Err(UpstreamError::unavailable(
                                "tool-use delta without its contentBlockStart",
                            )));
                        };
                        return Some(Ok(Chunk::ToolCall {
                            index: *index,
                            id: String::new(),
                            name: String::new(),
                            arguments: u.input().to_owned(),
                        }));
                    }
                    _ => {}
                },
                Ok(Some(ConverseStreamOutput::MessageStop(m))) => {
                    self.stop = Some(stop_reason(m.stop_reason()));
                    if let Some(d) = m.additional_model_response_fields() {
                        self.additional = from_document(d).to_string();
                    }
                }
                Ok(Some(ConverseStreamOutput::Metadata(m))) => {
                    self.usage = Some(usage(m.usage()));
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    self.done = true;
                    return Some(match self.stop {
                        Some(stop_reason) => Ok(Chunk::End {
                            stop_reason,
                            usage: self.usage.unwrap_or_default(),
                            more_stop_reasons: Vec::new(),
                            additional_response_fields_json: std::mem::take(&mut self.additional),
                        }),
                        None => Err(UpstreamError::unavailable(
                            "stream ended before messageStop",
                        )),
                    });
                }
                Err(e) => {
                    self.done = true;
                    let err = match e {
                        SdkError::ServiceError(se) => {
                            let e = se.err();
                            classify_code(e.code(), e.message(), None, None)
                        }
                        SdkError::TimeoutError(_) => UpstreamError::Timeout,
                        _ => UpstreamError::unavailable("event stream broken"),
                    };
                    return Some(Err(err));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DenyReason;

    #[test]
    fn codes_classify() {
        let t = classify_code(
            Some("ThrottlingException"),
            Some("slow down"),
            Some(429),
            None,
        );
        assert!(matches!(t, UpstreamError::Throttled { .. }));
        let t = classify_code(Some("ModelNotReadyException"), None, Some(429), None);
        assert!(matches!(t, UpstreamError::Throttled { .. }));
        let v = classify_code(Some("ValidationException"), Some("bad"), Some(400), None);
        assert_eq!(
            v,
            UpstreamError::Invalid {
                reason: "ValidationException: bad".into()
            }
        );
        let u = classify_code(Some("modelStreamErrorException"), None, None, None);
        assert!(matches!(u, UpstreamError::Unavailable { .. }));
        let s = classify_code(None, None, Some(502), None);
        assert!(matches!(s, UpstreamError::Unavailable { .. }));
    }

    fn denied(code: &str, message: &str, status: u16) -> Option<DenyReason> {
        match classify_code(Some(code), Some(message), Some(status), None) {
            UpstreamError::Denied { why, .. } => Some(why),
            _ => None,
        }
    }

    #[test]
    fn account_faults_are_denials_by_code_and_message() {
        // Real Bedrock codes and messages (Bedrock API error reference, troubleshooting guide).
        for (code, message, status, why) in [
            (
                "AccessDeniedException",
                "You don't have access to the model with the specified model ID.",
                403,
                DenyReason::ModelAccess,
            ),
            (
                "AccessDeniedException",
                "User: arn:aws:sts::111111111111:assumed-role/spoke/x is not authorized to perform: bedrock:InvokeModel",
                403,
                DenyReason::ModelAccess,
            ),
            (
                "AccessDeniedException",
                "Model access is denied due to INVALID_PAYMENT_INSTRUMENT:A valid payment instrument must be provided.",
                403,
                DenyReason::Billing,
            ),
            (
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
                403,
                DenyReason::Credentials,
            ),
            (
                "ExpiredTokenException",
                "The security token included in the request is expired",
                403,
                DenyReason::Credentials,
            ),
            (
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided.",
                403,
                DenyReason::Credentials,
            ),
            (
                "ResourceNotFoundException",
                "Model use case details have not been submitted for this account.",
                404,
                DenyReason::ModelNotFound,
            ),
            (
                "ValidationException",
                "The provided model identifier is invalid.",
                400,
                DenyReason::ModelNotFound,
            ),
            (
                "ValidationException",
                "Invocation of model ID anthropic.claude-3-5-sonnet-20241022-v2:0 with on-demand throughput isn\u{2019}t supported.",
                400,
                DenyReason::ModelAccess,
            ),
            ("SomethingNew", "", 401, DenyReason::Credentials),
            ("SomethingNew", "", 403, DenyReason::ModelAccess),
        ] {
            assert_eq!(
                denied(code, message, status),
                Some(why),
                "{code}: {message}"
            );
        }
    }

    #[test]
    fn transient_and_caller_faults_are_not_denials() {
        for (code, status) in [
            ("ThrottlingException", 429),
            ("ServiceQuotaExceededException", 400),
            ("ModelNotReadyException", 429),
            ("ServiceUnavailableException", 503),
            ("InternalServerException", 500),
            ("ModelErrorException", 424),
        ] {
            let e = classify_code(Some(code), Some("m"), Some(status), None);
            assert_eq!(e.fault(), crate::Fault::Transient, "{code}: {e:?}");
        }
        assert_eq!(
            classify_code(Some("ModelTimeoutException"), None, Some(408), None),
            UpstreamError::Timeout
        );
        let v = classify_code(
            Some("ValidationException"),
            Some("messages.0.content: Field required"),
            Some(400),
            None,
        );
        assert_eq!(v.fault(), crate::Fault::Caller);
        assert_eq!(v.detail(), "ValidationException");
    }

    #[test]
    fn keys_in_messages_are_redacted() {
        let e = classify_code(
            Some("ValidationException"),
            Some(
                "bad header Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/bedrock/aws4_request, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
            ),
            Some(400),
            None,
        );
        let s = e.to_string();
        assert!(!s.contains("AKIAIOSFODNN7EXAMPLE"), "{s}");
        assert!(!s.contains("5d672d79c15b"), "{s}");
    }
}
