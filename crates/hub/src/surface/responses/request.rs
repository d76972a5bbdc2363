//! The `POST /v1/responses` body and its translation to `switchyard.v1` ([`parse`],
//! [`assemble`]). Every top-level field is carried, routed by capability (the gateway derives the
//! needs from the internal request), refused by name, or — only when it cannot change the answer
//! — accepted and recorded as ignored; docs/api.md has the table.

use crate::surface::ToolChoiceProblem;
use base64::Engine as _;
use prost::Message as _;
use serde_json::{Map, Value, json};
use switchyard_proto::v1 as pb;

use crate::error::HubError;
use crate::routing::{AskedBy, Feature};

/// A refusal of the request (boxed: it travels up many frames and the error is large). Its
/// `param` may be a path such as `input[2].content[0].type` or an unknown field's own name.
#[derive(Debug)]
pub struct Refusal(pub Box<HubError>);

impl From<HubError> for Refusal {
    fn from(error: HubError) -> Self {
        Refusal(Box::new(error))
    }
}

/// A 400 `invalid_request_error` naming `param`, with OpenAI's `code`.
pub fn refuse(param: impl Into<String>, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal(Box::new(HubError::InvalidParam {
        param: param.into().into(),
        code,
        message: message.into(),
    }))
}

fn invalid(param: impl Into<String>, message: impl Into<String>) -> Refusal {
    refuse(param, "invalid_value", message)
}

fn bad_type(param: &str, want: &str) -> Refusal {
    refuse(
        param,
        "invalid_type",
        format!("Invalid type for '{param}': expected {want}."),
    )
}

/// Top-level fields accepted and not carried: they cannot change the answer (end-user and
/// safety ids, metadata tags, prompt-cache routing and retention hints, the service tier, stream
/// obfuscation, limits on hosted tools this gateway does not run). Named in the audit line.
pub const IGNORED: &[&str] = &[
    "metadata",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "service_tier",
    "stream_options",
    "max_tool_calls",
];

/// Hosted features of OpenAI's platform that this gateway does not offer: refused by name when
/// set (anything but `null`, `false` or an empty list).
const HOSTED: &[&str] = &[
    "background",
    "background_options",
    "conversation",
    "prompt",
    "context_management",
    "moderation",
    "image",
    "access_programs",
];

/// `include` values: `reasoning.encrypted_content` and `message.output_text.logprobs` are
/// honoured; the others name outputs of hosted tools (refused on their own) and change nothing.
const INCLUDES: &[&str] = &[
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
    "message.input_image.image_url",
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
];

/// OpenAI's reasoning efforts.
const EFFORTS: &[&str] = &["none", "minimal", "low", "medium", "high", "xhigh"];

/// A decoded `POST /v1/responses` request.
#[derive(Debug, Clone, Default)]
pub struct ResponsesRequest {
    pub model: String,
    pub stream: bool,
    /// `store` (default true): keep the response for `GET` and `previous_response_id`.
    pub store: bool,
    pub previous_response_id: Option<String>,
    /// The system prompt of this request only (a continuation does not inherit it).
    pub instructions: Option<String>,
    /// This request's input items in the internal model, in order; `system` / `developer`
    /// messages are `Role::System` messages here ([`assemble`] hoists the leading ones).
    pub input: Vec<pb::Message>,
    /// Everything but the conversation: params, tools, tool choice, response format.
    pub base: pb::InferRequest,
    /// Request fields the response object repeats (`tools`, `tool_choice`, `text`, …), with
    /// OpenAI's defaults for those not given.
    pub echo: Map<String, Value>,
    /// Top-level fields accepted and not carried (audit).
    pub ignored: Vec<String>,
    /// `include` asked for `reasoning.encrypted_content`.
    pub encrypted_reasoning: bool,
    /// `reasoning.summary` asked for a summary: reasoning text is shown as `summary_text`.
    pub reasoning_summary: bool,
}

fn opt<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|v| !v.is_null())
}

fn string(v: &Value, param: &str) -> Result<String, Refusal> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| bad_type(param, "a string"))
}

fn number(v: &Value, param: &str, range: std::ops::RangeInclusive<f64>) -> Result<f32, Refusal> {
    let n = v.as_f64().ok_or_else(|| bad_type(param, "a number"))?;
    if !range.contains(&n) {
        return Err(invalid(
            param,
            format!(
                "'{param}' must be between {} and {}.",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(n as f32)
}

fn text_part(text: String) -> pb::ContentPart {
    pb::ContentPart {
        part: Some(pb::content_part::Part::Text(text)),
    }
}

/// Decodes the body. `max_items`: most input items accepted. Errors: 400 naming the field.
pub fn parse(bytes: &[u8], max_items: usize) -> Result<ResponsesRequest, Refusal> {
    let body: Map<String, Value> = serde_json::from_slice(bytes).map_err(|e| {
        HubError::BadRequest(format!(
            "invalid request body: {e} (expected a JSON object)"
        ))
    })?;
    let mut r = ResponsesRequest {
        store: true,
        ..Default::default()
    };
    let mut params = pb::GenerationParams::default();
    let mut include_logprobs = false;
    // Unknown fields first, so a typo is named even when another field is wrong too.
    for (key, value) in &body {
        let known = matches!(
            key.as_str(),
            "model"
                | "input"
                | "instructions"
                | "stream"
                | "store"
                | "previous_response_id"
                | "tools"
                | "tool_choice"
                | "parallel_tool_calls"
                | "text"
                | "reasoning"
                | "max_output_tokens"
                | "temperature"
                | "top_p"
                | "include"
                | "top_logprobs"
                | "truncation"
        ) || IGNORED.contains(&key.as_str())
            || HOSTED.contains(&key.as_str());
        if known {
            continue;
        }
        if value.is_null() {
            r.ignored.push(key.clone());
            continue;
        }
        return Err(refuse(
            key.clone(),
            "unknown_parameter",
            format!("Unknown parameter: '{key}'."),
        ));
    }
    for key in HOSTED {
        let set = match body.get(*key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if set {
            return Err(refuse(
                *key,
                "unsupported_parameter",
                format!(
                    "'{key}' is a hosted feature of OpenAI's platform that this gateway does not offer."
                ),
            ));
        }
    }
    for key in IGNORED {
        if body.contains_key(*key) {
            r.ignored.push((*key).to_owned());
        }
    }
    r.model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(refuse(
                "model",
                "missing_required_parameter",
                "Missing required parameter: 'model'.",
            ));
        }
        Some(_) => return Err(bad_type("model", "a string")),
    };
    if let Some(v) = opt(&body, "stream") {
        r.stream = v.as_bool().ok_or_else(|| bad_type("stream", "a boolean"))?;
    }
    if let Some(v) = opt(&body, "store") {
        r.store = v.as_bool().ok_or_else(|| bad_type("store", "a boolean"))?;
    }
    if let Some(v) = opt(&body, "previous_response_id") {
        r.previous_response_id = Some(string(v, "previous_response_id")?);
    }
    if let Some(v) = opt(&body, "instructions") {
        r.instructions = Some(string(v, "instructions")?);
    }
    r.input = match opt(&body, "input") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![pb::Message {
            role: pb::Role::User as i32,
            content: vec![text_part(s.clone())],
        }],
        Some(Value::Array(items)) => {
            if items.len() > max_items {
                return Err(invalid(
                    "input",
                    format!(
                        "'input' has {} items; at most {max_items} are accepted.",
                        items.len()
                    ),
                ));
            }
            input_items(items)?
        }
        Some(_) => return Err(bad_type("input", "a string or an array of items")),
    };
    if let Some(v) = opt(&body, "max_output_tokens") {
        let n = v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
            invalid(
                "max_output_tokens",
                "'max_output_tokens' must be an integer of at least 1.",
            )
        })?;
        params.max_tokens = Some(u32::try_from(n).unwrap_or(u32::MAX));
    }
    if let Some(v) = opt(&body, "temperature") {
        params.temperature = Some(number(v, "temperature", 0.0..=2.0)?);
    }
    if let Some(v) = opt(&body, "top_p") {
        params.top_p = Some(number(v, "top_p", 0.0..=1.0)?);
    }
    if let Some(v) = opt(&body, "include") {
        let list = v
            .as_array()
            .ok_or_else(|| bad_type("include", "an array of strings"))?;
        for (i, item) in list.iter().enumerate() {
            let s = item.as_str().unwrap_or_default();
            if !INCLUDES.contains(&s) {
                return Err(invalid(
                    format!("include[{i}]"),
                    format!(
                        "'include[{i}]': {item} is not one of {}.",
                        INCLUDES.join(", ")
                    ),
                ));
            }
            match s {
                "reasoning.encrypted_content" => r.encrypted_reasoning = true,
                "message.output_text.logprobs" => include_logprobs = true,
                _ => {}
            }
        }
    }
    let mut top_logprobs = None;
    if let Some(v) = opt(&body, "top_logprobs") {
        let n = v.as_u64().filter(|n| *n <= 20).ok_or_else(|| {
            invalid(
                "top_logprobs",
                "'top_logprobs' must be an integer from 0 to 20.",
            )
        })?;
        top_logprobs = Some(n as u32);
    }
    if include_logprobs {
        // Logprobs are returned only when `include` asks for them; `top_logprobs` alone changes
        // nothing (it is ignored then).
        params.logprobs = true;
        params.top_logprobs = top_logprobs.filter(|n| *n > 0);
    } else if top_logprobs.is_some() {
        r.ignored.push("top_logprobs".into());
    }
    match opt(&body, "truncation").map(|v| v.as_str()) {
        None | Some(Some("disabled")) => {}
        Some(Some("auto")) => {
            return Err(refuse(
                "truncation",
                "unsupported_value",
                "'truncation': \"auto\" (dropping the start of the conversation when it does not fit) is not offered by this gateway; an input too large for the model is refused instead.",
            ));
        }
        Some(_) => {
            return Err(invalid(
                "truncation",
                "'truncation' must be \"auto\" or \"disabled\".",
            ));
        }
    }

    // Tools and the tool choice.
    let mut tools_echo = Vec::new();
    if let Some(v) = opt(&body, "tools") {
        let list = v
            .as_array()
            .ok_or_else(|| bad_type("tools", "an array of tools"))?;
        for (i, t) in list.iter().enumerate() {
            let (spec, echo) = tool(t, i)?;
            r.base.tools.push(spec);
            tools_echo.push(echo);
        }
    }
    let tool_choice_echo = opt(&body, "tool_choice")
        .cloned()
        .unwrap_or_else(|| json!("auto"));
    if let Some(v) = opt(&body, "tool_choice") {
        r.base.tool_choice = tool_choice(v, &mut r.base.tools)?;
    }
    let parallel = match opt(&body, "parallel_tool_calls") {
        None => None,
        Some(v) => Some(
            v.as_bool()
                .ok_or_else(|| bad_type("parallel_tool_calls", "a boolean"))?,
        ),
    };
    // `true` is every upstream's default and, without tools, nothing can change: only `false`
    // with tools is carried.
    r.base.parallel_tool_calls = parallel.filter(|p| !p && !r.base.tools.is_empty());

    // `text`: the format of the answer.
    let mut text_echo = json!({"format": {"type": "text"}, "verbosity": "medium"});
    if let Some(v) = opt(&body, "text") {
        let o = v.as_object().ok_or_else(|| bad_type("text", "an object"))?;
        for (k, val) in o {
            match k.as_str() {
                "format" if !val.is_null() => {
                    r.base.response_format = response_format(val)?;
                    text_echo["format"] = val.clone();
                }
                "verbosity" => match val.as_str() {
                    None | Some("medium") => {}
                    Some(_) => {
                        return Err(refuse(
                            "text.verbosity",
                            "unsupported_value",
                            "'text.verbosity': only \"medium\" (the default) is offered: no upstream model of this gateway takes a verbosity setting.",
                        ));
                    }
                },
                "format" => {}
                other => {
                    return Err(refuse(
                        format!("text.{other}"),
                        "unknown_parameter",
                        format!("Unknown parameter: 'text.{other}'."),
                    ));
                }
            }
        }
    }

    // `reasoning`: effort and summaries.
    let mut reasoning_echo = json!({"effort": null, "summary": null});
    if let Some(v) = opt(&body, "reasoning") {
        let o = v
            .as_object()
            .ok_or_else(|| bad_type("reasoning", "an object"))?;
        for (k, val) in o {
            match k.as_str() {
                "effort" if !val.is_null() => {
                    let e = val.as_str().unwrap_or_default();
                    if !EFFORTS.contains(&e) {
                        return Err(invalid(
                            "reasoning.effort",
                            format!(
                                "'reasoning.effort': {val} is not one of {}.",
                                EFFORTS.join(", ")
                            ),
                        ));
                    }
                    params.reasoning = Some(pb::Reasoning {
                        mode: if e == "none" {
                            pb::reasoning::Mode::Disabled
                        } else {
                            pb::reasoning::Mode::Enabled
                        } as i32,
                        budget_tokens: 0,
                        effort: e.to_owned(),
                    });
                    reasoning_echo["effort"] = val.clone();
                }
                "summary" | "generate_summary" if !val.is_null() => {
                    match val.as_str() {
                        Some("auto" | "concise" | "detailed") => r.reasoning_summary = true,
                        _ => {
                            return Err(invalid(
                                format!("reasoning.{k}"),
                                format!("'reasoning.{k}' must be one of auto, concise, detailed."),
                            ));
                        }
                    }
                    reasoning_echo["summary"] = val.clone();
                }
                "effort" | "summary" | "generate_summary" => {}
                other => {
                    return Err(refuse(
                        format!("reasoning.{other}"),
                        "unknown_parameter",
                        format!("Unknown parameter: 'reasoning.{other}'."),
                    ));
                }
            }
        }
    }

    if let Some(m) = opt(&body, "metadata") {
        let o = m
            .as_object()
            .ok_or_else(|| bad_type("metadata", "an object of strings"))?;
        if o.len() > 16
            || o.iter()
                .any(|(k, v)| k.len() > 64 || v.as_str().is_none_or(|s| s.len() > 512))
        {
            return Err(invalid(
                "metadata",
                "'metadata': at most 16 pairs, keys of at most 64 characters, string values of at most 512.",
            ));
        }
    }
    r.base.params = Some(params.clone());

    let mut echo = Map::new();
    echo.insert("instructions".into(), json!(r.instructions));
    echo.insert("tools".into(), Value::Array(tools_echo));
    echo.insert("tool_choice".into(), tool_choice_echo);
    echo.insert(
        "parallel_tool_calls".into(),
        json!(parallel.unwrap_or(true)),
    );
    echo.insert("text".into(), text_echo);
    echo.insert("reasoning".into(), reasoning_echo);
    echo.insert("max_output_tokens".into(), json!(params.max_tokens));
    echo.insert("temperature".into(), json!(params.temperature));
    echo.insert("top_p".into(), json!(params.top_p));
    echo.insert("top_logprobs".into(), json!(top_logprobs.unwrap_or(0)));
    echo.insert("truncation".into(), json!("disabled"));
    echo.insert("previous_response_id".into(), json!(r.previous_response_id));
    echo.insert("store".into(), json!(r.store));
    echo.insert("background".into(), json!(false));
    echo.insert("max_tool_calls".into(), json!(null));
    echo.insert(
        "metadata".into(),
        opt(&body, "metadata").cloned().unwrap_or_else(|| json!({})),
    );
    for key in ["user", "safety_identifier", "prompt_cache_key"] {
        echo.insert(key.into(), opt(&body, key).cloned().unwrap_or(Value::Null));
    }
    echo.insert(
        "service_tier".into(),
        opt(&body, "service_tier")
            .cloned()
            .unwrap_or_else(|| json!("default")),
    );
    r.echo = echo;
    r.ignored.sort();
    r.ignored.dedup();
    Ok(r)
}

impl ResponsesRequest {
    /// Which field of this request asked for each capability (named when no model of the
    /// alias has it).
    pub fn asked(&self) -> AskedBy {
        let mut a = AskedBy::default();
        a.set(Feature::StructuredOutput, "text.format");
        a.set(Feature::Reasoning, "reasoning.effort");
        a.set(Feature::Logprobs, "include");
        a.set(
            Feature::ToolChoice,
            if self.base.tool_choice.is_some() {
                "tool_choice"
            } else {
                "parallel_tool_calls"
            },
        );
        a
    }
}

/// One `tools[i]`: only function tools (flat form); built-in (hosted) tools are refused by name.
fn tool(t: &Value, i: usize) -> Result<(pb::ToolSpec, Value), Refusal> {
    let path = format!("tools[{i}]");
    let o = t.as_object().ok_or_else(|| bad_type(&path, "an object"))?;
    match o.get("type").and_then(Value::as_str) {
        Some("function") => {}
        Some(other) => {
            return Err(refuse(
                format!("{path}.type"),
                "unsupported_value",
                format!(
                    "'{path}.type': the built-in tool {other:?} is a hosted feature of OpenAI's platform that this gateway does not offer; only \"function\" tools are supported."
                ),
            ));
        }
        None => {
            return Err(refuse(
                format!("{path}.type"),
                "missing_required_parameter",
                format!("Missing required parameter: '{path}.type'."),
            ));
        }
    }
    let mut spec = pb::ToolSpec::default();
    let mut strict = Value::Null;
    for (k, v) in o {
        let p = format!("{path}.{k}");
        match k.as_str() {
            "type" => {}
            "name" => spec.name = string(v, &p)?,
            "description" if !v.is_null() => spec.description = string(v, &p)?,
            "parameters" if !v.is_null() => {
                if !v.is_object() {
                    return Err(bad_type(&p, "a JSON Schema object"));
                }
                spec.parameters_json = v.to_string();
            }
            "strict" if !v.is_null() => {
                spec.strict = v.as_bool().ok_or_else(|| bad_type(&p, "a boolean"))?;
                strict = v.clone();
            }
            "description" | "parameters" | "strict" | "output_schema" if v.is_null() => {}
            "defer_loading" if v == &json!(false) => {}
            "allowed_callers" if v.is_null() || v == &json!(["direct"]) => {}
            other => {
                return Err(refuse(
                    p,
                    "unsupported_parameter",
                    format!("'{path}.{other}' is not supported on function tools by this gateway."),
                ));
            }
        }
    }
    if spec.name.is_empty() {
        return Err(refuse(
            format!("{path}.name"),
            "missing_required_parameter",
            format!("Missing required parameter: '{path}.name'."),
        ));
    }
    if spec.parameters_json.is_empty() {
        spec.parameters_json = "{}".into();
    }
    let echo = json!({
        "type": "function",
        "name": spec.name,
        "description": if spec.description.is_empty() { Value::Null } else { json!(spec.description) },
        "parameters": o.get("parameters").cloned().unwrap_or(Value::Null),
        "strict": strict,
    });
    Ok((spec, echo))
}

/// Responses `tool_choice` → the contract's. `allowed_tools` keeps only the listed tools in
/// `tools` (the model sees no other). Without tools, `none` and `auto` mean nothing; any other
/// choice is refused.
fn tool_choice(
    v: &Value,
    tools: &mut Vec<pb::ToolSpec>,
) -> Result<Option<pb::ToolChoice>, Refusal> {
    use pb::tool_choice::Mode;
    let bad = |why: String| invalid("tool_choice", format!("'tool_choice': {why}"));
    let (mode, name) = match v {
        Value::String(s) => match s.as_str() {
            "auto" => (Mode::Auto, String::new()),
            "none" => (Mode::None, String::new()),
            "required" => (Mode::Any, String::new()),
            other => {
                return Err(bad(format!(
                    "{other:?} is not one of none, auto, required."
                )));
            }
        },
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = o
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("`name` is required with type \"function\".".into()))?;
                (Mode::Tool, name.to_owned())
            }
            Some("allowed_tools") => {
                let mode = match o.get("mode").and_then(Value::as_str) {
                    Some("auto") | None => Mode::Auto,
                    Some("required") => Mode::Any,
                    Some(other) => {
                        return Err(bad(format!("mode {other:?} is not one of auto, required.")));
                    }
                };
                let mut allowed = Vec::new();
                for t in o
                    .get("tools")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = t
                        .get("name")
                        .and_then(Value::as_str)
                        .filter(|_| t.get("type").and_then(Value::as_str) == Some("function"))
                        .ok_or_else(
                            || bad("allowed_tools: only function tools, by name.".into()),
                        )?;
                    if !tools.iter().any(|s| s.name == name) {
                        return Err(bad(format!("{name:?} is not one of `tools`.")));
                    }
                    allowed.push(name.to_owned());
                }
                if allowed.is_empty() {
                    return Err(bad("`tools` must name at least one tool.".into()));
                }
                tools.retain(|t| allowed.contains(&t.name));
                (mode, String::new())
            }
            Some(other) => {
                return Err(refuse(
                    "tool_choice",
                    "unsupported_value",
                    format!(
                        "'tool_choice': type {other:?} names a hosted tool of OpenAI's platform that this gateway does not offer."
                    ),
                ));
            }
            None => return Err(bad("`type` is required.".into())),
        },
        _ => return Err(bad_type("tool_choice", "a string or an object")),
    };
    crate::surface::checked_tool_choice(mode, &name, tools).map_err(|p| match p {
        ToolChoiceProblem::NoTools => bad("a tool must be called, but `tools` is empty.".into()),
        ToolChoiceProblem::UnknownTool => bad(format!("{name:?} is not one of `tools`.")),
    })
}

/// `text.format` → the contract's response format; `text` is the default (`None`).
fn response_format(v: &Value) -> Result<Option<pb::ResponseFormat>, Refusal> {
    use pb::response_format::Type;
    let bad = |why: &str| invalid("text.format", format!("'text.format': {why}"));
    match v.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(pb::ResponseFormat {
            r#type: Type::JsonObject as i32,
            ..Default::default()
        })),
        Some("json_schema") => {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    refuse(
                        "text.format.name",
                        "missing_required_parameter",
                        "Missing required parameter: 'text.format.name'.",
                    )
                })?;
            let schema = match v.get("schema") {
                Some(s) if s.is_object() => s.to_string(),
                _ => return Err(bad("`schema` (a JSON Schema object) is required.")),
            };
            Ok(Some(pb::ResponseFormat {
                r#type: Type::JsonSchema as i32,
                name: name.to_owned(),
                description: v
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                schema_json: schema,
                strict: v.get("strict").and_then(Value::as_bool).unwrap_or(false),
            }))
        }
        Some(other) => Err(bad(&format!(
            "type {other:?} is not one of text, json_object, json_schema."
        ))),
        None => Err(bad("`type` is required.")),
    }
}

/// The prefix of the `encrypted_content` this gateway gives reasoning items: the reasoning block
/// (text, signature, redacted data) prost-encoded, base64url. Opaque to the client; given back in
/// `input`, it restores the block with its signature for upstreams that verify it.
const ENCRYPTED_PREFIX: &str = "sy1.";

/// A reasoning block as `encrypted_content`.
pub fn encrypted_content(t: &pb::ThinkingPart) -> String {
    format!(
        "{ENCRYPTED_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t.encode_to_vec())
    )
}

fn thinking_from_encrypted(s: &str) -> Option<pb::ThinkingPart> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.strip_prefix(ENCRYPTED_PREFIX)?)
        .ok()?;
    pb::ThinkingPart::decode(raw.as_slice()).ok()
}

/// Appends `part` to the assistant turn at the end of `out` (a new one when the last message is
/// not the assistant's): an output message, its reasoning and its function calls are one turn.
fn assistant_part(out: &mut Vec<pb::Message>, part: pb::ContentPart) {
    match out.last_mut() {
        Some(m) if m.role == pb::Role::Assistant as i32 => m.content.push(part),
        _ => out.push(pb::Message {
            role: pb::Role::Assistant as i32,
            content: vec![part],
        }),
    }
}

/// Input items → messages of the internal model.
fn input_items(items: &[Value]) -> Result<Vec<pb::Message>, Refusal> {
    let mut out: Vec<pb::Message> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("input[{i}]");
        let o = item
            .as_object()
            .ok_or_else(|| bad_type(&path, "an input item object"))?;
        let kind = match o.get("type").and_then(Value::as_str) {
            Some(k) => k,
            None if o.contains_key("role") => "message",
            None => {
                return Err(refuse(
                    format!("{path}.type"),
                    "missing_required_parameter",
                    format!("Missing required parameter: '{path}.type'."),
                ));
            }
        };
        match kind {
            "message" => message_item(o, &path, &mut out)?,
            "function_call" => {
                let field = |k: &str| -> Result<String, Refusal> {
                    match o.get(k) {
                        Some(v) => string(v, &format!("{path}.{k}")),
                        None => Err(refuse(
                            format!("{path}.{k}"),
                            "missing_required_parameter",
                            format!("Missing required parameter: '{path}.{k}'."),
                        )),
                    }
                };
                assistant_part(
                    &mut out,
                    pb::ContentPart {
                        part: Some(pb::content_part::Part::ToolCall(pb::ToolCall {
                            id: field("call_id")?,
                            name: field("name")?,
                            arguments_json: field("arguments")?,
                        })),
                    },
                );
            }
            "function_call_output" => {
                let call_id = match o.get("call_id") {
                    Some(v) => string(v, &format!("{path}.call_id"))?,
                    None => {
                        return Err(refuse(
                            format!("{path}.call_id"),
                            "missing_required_parameter",
                            format!("Missing required parameter: '{path}.call_id'."),
                        ));
                    }
                };
                let content = match o.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => {
                        let mut text = String::new();
                        for (j, p) in parts.iter().enumerate() {
                            match (p.get("type").and_then(Value::as_str), p.get("text")) {
                                (Some("input_text" | "output_text"), Some(Value::String(t))) => {
                                    text.push_str(t)
                                }
                                (kind, _) => {
                                    return Err(refuse(
                                        format!("{path}.output[{j}].type"),
                                        "unsupported_value",
                                        format!(
                                            "'{path}.output[{j}]': a function call output part of type {} is not supported (only input_text).",
                                            kind.unwrap_or("(none)")
                                        ),
                                    ));
                                }
                            }
                        }
                        text
                    }
                    _ => {
                        return Err(bad_type(
                            &format!("{path}.output"),
                            "a string or an array of input_text parts",
                        ));
                    }
                };
                out.push(pb::Message {
                    role: pb::Role::Tool as i32,
                    content: vec![pb::ContentPart {
                        part: Some(pb::content_part::Part::ToolResult(pb::ToolResult {
                            tool_call_id: call_id,
                            content,
                            is_error: false,
                        })),
                    }],
                });
            }
            "reasoning" => {
                // Our own encrypted content restores the block with its signature; otherwise the
                // summary (or reasoning text) is the block's text, unsigned.
                let restored = o
                    .get("encrypted_content")
                    .and_then(Value::as_str)
                    .and_then(thinking_from_encrypted);
                let part = match restored {
                    Some(t) => t,
                    None => {
                        let mut text = String::new();
                        for key in ["summary", "content"] {
                            for p in o.get(key).and_then(Value::as_array).into_iter().flatten() {
                                if let Some(t) = p.get("text").and_then(Value::as_str) {
                                    text.push_str(t);
                                }
                            }
                        }
                        pb::ThinkingPart {
                            text,
                            ..Default::default()
                        }
                    }
                };
                assistant_part(
                    &mut out,
                    pb::ContentPart {
                        part: Some(pb::content_part::Part::Thinking(part)),
                    },
                );
            }
            "item_reference" => {
                return Err(refuse(
                    format!("{path}.type"),
                    "unsupported_value",
                    format!(
                        "'{path}': item references are not supported; continue a stored response with `previous_response_id`, or send the items themselves."
                    ),
                ));
            }
            other => {
                return Err(refuse(
                    format!("{path}.type"),
                    "unsupported_value",
                    format!(
                        "'{path}.type': items of type {other:?} belong to hosted tools of OpenAI's platform that this gateway does not offer."
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// One `message` input item (`role` user, assistant, system or developer).
fn message_item(
    o: &Map<String, Value>,
    path: &str,
    out: &mut Vec<pb::Message>,
) -> Result<(), Refusal> {
    let role = o.get("role").and_then(Value::as_str).unwrap_or_default();
    let content = o.get("content").unwrap_or(&Value::Null);
    let parts: Vec<pb::ContentPart> = match content {
        Value::String(s) => vec![text_part(s.clone())],
        Value::Array(list) => {
            let mut parts = Vec::with_capacity(list.len());
            for (j, p) in list.iter().enumerate() {
                content_part(p, &format!("{path}.content[{j}]"), role, &mut parts)?;
            }
            parts
        }
        _ => {
            return Err(bad_type(
                &format!("{path}.content"),
                "a string or an array of content parts",
            ));
        }
    };
    match role {
        "user" => out.push(pb::Message {
            role: pb::Role::User as i32,
            content: parts,
        }),
        "system" | "developer" => {
            let text: String = parts
                .iter()
                .filter_map(|p| match &p.part {
                    Some(pb::content_part::Part::Text(t)) => Some(t.as_str()),
                    _ => None,
                })
                .collect();
            if parts
                .iter()
                .any(|p| matches!(p.part, Some(pb::content_part::Part::Image(_))))
            {
                return Err(refuse(
                    format!("{path}.content"),
                    "unsupported_value",
                    format!("'{path}': a {role} message carries text only."),
                ));
            }
            out.push(pb::Message {
                role: pb::Role::System as i32,
                content: vec![text_part(text)],
            });
        }
        "assistant" => {
            for p in parts {
                if matches!(p.part, Some(pb::content_part::Part::Image(_))) {
                    return Err(refuse(
                        format!("{path}.content"),
                        "unsupported_value",
                        format!("'{path}': an assistant message carries text only."),
                    ));
                }
                assistant_part(out, p);
            }
        }
        other => {
            return Err(invalid(
                format!("{path}.role"),
                format!(
                    "'{path}.role': {other:?} is not one of user, assistant, system, developer."
                ),
            ));
        }
    }
    Ok(())
}

/// One content part of a message: `input_text` (with an optional prompt-cache breakpoint, carried
/// as a cache point after it), `input_image` (a data URL), `output_text` / `refusal` (earlier
/// assistant turns).
fn content_part(
    p: &Value,
    path: &str,
    role: &str,
    parts: &mut Vec<pb::ContentPart>,
) -> Result<(), Refusal> {
    let kind = p.get("type").and_then(Value::as_str).unwrap_or_default();
    let text = |key: &str| -> Result<String, Refusal> {
        p.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| bad_type(&format!("{path}.{key}"), "a string"))
    };
    match kind {
        "input_text" | "output_text" => {
            parts.push(text_part(text("text")?));
            if p.get("prompt_cache_breakpoint")
                .is_some_and(|b| !b.is_null())
            {
                parts.push(pb::ContentPart {
                    part: Some(pb::content_part::Part::CachePoint(pb::CachePoint {
                        r#type: "ephemeral".into(),
                        ttl: String::new(),
                    })),
                });
            }
        }
        "refusal" => parts.push(text_part(text("refusal")?)),
        "input_image" if role == "user" => {
            if p.get("file_id").is_some_and(|f| !f.is_null()) {
                return Err(refuse(
                    format!("{path}.file_id"),
                    "unsupported_parameter",
                    format!(
                        "'{path}.file_id': OpenAI's Files API is a hosted feature this gateway does not offer; send the image as a data URL in `image_url`."
                    ),
                ));
            }
            let url = text("image_url")?;
            let part = crate::media::image_from_data_url(&url).map_err(|e| {
                invalid(
                    format!("{path}.image_url"),
                    format!("'{path}.image_url': {e}"),
                )
            })?;
            parts.push(part);
        }
        other => {
            return Err(refuse(
                format!("{path}.type"),
                "unsupported_value",
                format!(
                    "'{path}.type': a content part of type {other:?} is not supported in a {role} message (input_text, input_image for users; output_text, refusal for the assistant)."
                ),
            ));
        }
    }
    Ok(())
}

/// The request sent upstream: `instructions`, then the conversation's leading `system` /
/// `developer` messages, as the system prompt; the rest of the conversation as messages (later
/// system messages stay in place as `Role::System`). Errors: 400 when nothing is left to answer.
pub fn assemble(
    instructions: Option<&str>,
    conversation: &[pb::Message],
    base: &pb::InferRequest,
) -> Result<pb::InferRequest, Refusal> {
    let mut system: Vec<String> = instructions
        .filter(|s| !s.is_empty())
        .map(|s| vec![s.to_owned()])
        .unwrap_or_default();
    let lead = conversation
        .iter()
        .take_while(|m| m.role == pb::Role::System as i32)
        .count();
    for m in &conversation[..lead] {
        for p in &m.content {
            if let Some(pb::content_part::Part::Text(t)) = &p.part {
                system.push(t.clone());
            }
        }
    }
    let messages = conversation[lead..].to_vec();
    if !messages.iter().any(|m| m.role != pb::Role::System as i32) {
        return Err(refuse(
            "input",
            "missing_required_parameter",
            "'input' must hold at least one user message (or continue a response with `previous_response_id`).",
        ));
    }
    Ok(pb::InferRequest {
        system: system.join("\n"),
        messages,
        ..base.clone()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse_json(v: Value) -> Result<ResponsesRequest, Refusal> {
        parse(v.to_string().as_bytes(), 1000)
    }

    fn param_of(r: Result<ResponsesRequest, Refusal>) -> String {
        r.err()
            .and_then(|e| e.0.names().param.map(str::to_owned))
            .unwrap_or_default()
    }

    #[test]
    fn string_input_and_params() {
        let r = parse_json(
            json!({"model": "m", "input": "hi", "instructions": "be brief",
            "max_output_tokens": 50, "temperature": 0.2, "metadata": {"k": "v"}, "user": "u1"}),
        )
        .unwrap();
        assert!(r.store);
        assert_eq!(r.input.len(), 1);
        let req = assemble(r.instructions.as_deref(), &r.input, &r.base).unwrap();
        assert_eq!(req.system, "be brief");
        let p = req.params.unwrap();
        assert_eq!(p.max_tokens, Some(50));
        assert_eq!(p.temperature, Some(0.2));
        assert_eq!(r.ignored, ["metadata", "user"]);
        assert_eq!(r.echo["metadata"]["k"], "v");
        assert_eq!(r.echo["tool_choice"], "auto");
    }

    #[test]
    fn items_with_a_function_call_round_trip() {
        let r = parse_json(json!({"model": "m", "input": [
            {"role": "developer", "content": "rules"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "think"}]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"role": "system", "content": "late rule"}
        ], "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": true}],
           "tool_choice": {"type": "function", "name": "get_weather"}, "parallel_tool_calls": false}))
        .unwrap();
        let req = assemble(Some("inst"), &r.input, &r.base).unwrap();
        assert_eq!(req.system, "inst\nrules");
        let roles: Vec<i32> = req.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                pb::Role::User as i32,
                pb::Role::Assistant as i32,
                pb::Role::Tool as i32,
                pb::Role::System as i32
            ]
        );
        // Reasoning and the call are one assistant turn.
        assert_eq!(req.messages[1].content.len(), 2);
        assert!(req.tools[0].strict);
        assert_eq!(req.tool_choice.unwrap().name, "get_weather");
        assert_eq!(req.parallel_tool_calls, Some(false));
    }

    #[test]
    fn formats_and_reasoning() {
        let r = parse_json(json!({"model": "m", "input": "x",
            "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": "low", "summary": "auto"},
            "include": ["reasoning.encrypted_content", "message.output_text.logprobs"], "top_logprobs": 3}))
        .unwrap();
        let f = r.base.response_format.unwrap();
        assert_eq!(f.r#type, pb::response_format::Type::JsonSchema as i32);
        assert_eq!(f.name, "a");
        assert!(f.strict);
        let p = r.base.params.unwrap();
        assert_eq!(p.reasoning.unwrap().effort, "low");
        assert!(p.logprobs);
        assert_eq!(p.top_logprobs, Some(3));
        assert!(r.encrypted_reasoning && r.reasoning_summary);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
                "tools[0].type",
            ),
            (
                json!({"model": "m", "input": "x", "background": true}),
                "background",
            ),
            (
                json!({"model": "m", "input": "x", "conversation": "conv_1"}),
                "conversation",
            ),
            (
                json!({"model": "m", "input": "x", "prompt": {"id": "p"}}),
                "prompt",
            ),
            (
                json!({"model": "m", "input": "x", "temprature": 1}),
                "temprature",
            ),
            (
                json!({"model": "m", "input": "x", "truncation": "auto"}),
                "truncation",
            ),
            (
                json!({"model": "m", "input": "x", "text": {"verbosity": "low"}}),
                "text.verbosity",
            ),
            (
                json!({"model": "m", "input": [{"type": "file_search_call", "id": "x"}]}),
                "input[0].type",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"model": "m", "input": "x", "tool_choice": {"type": "web_search_preview"}}),
                "tool_choice",
            ),
            (
                json!({"model": "m", "input": "x", "tool_choice": "required"}),
                "tool_choice",
            ),
            (
                json!({"model": "m", "input": "x", "reasoning": {"effort": "max"}}),
                "reasoning.effort",
            ),
            (json!({"input": "x"}), "model"),
        ];
        for (body, want) in cases {
            assert_eq!(param_of(parse_json(body.clone())), want, "{body}");
        }
        // Accepted: harmless nulls, `background: false`, an empty `include`.
        assert!(
            parse_json(json!({"model": "m", "input": "x", "background": false,
            "include": [], "prompt": null, "some_new_field": null}))
            .is_ok()
        );
    }

    #[test]
    fn encrypted_reasoning_round_trips() {
        let t = pb::ThinkingPart {
            text: "because".into(),
            signature: "sig".into(),
            ..Default::default()
        };
        let r = parse_json(json!({"model": "m", "input": [
            {"role": "user", "content": "q"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": encrypted_content(&t)},
            {"role": "assistant", "content": [{"type": "output_text", "text": "a", "annotations": []}]},
            {"role": "user", "content": "again"}
        ]}))
        .unwrap();
        assert_eq!(
            r.input[1].content[0].part,
            Some(pb::content_part::Part::Thinking(t))
        );
        assert_eq!(r.input[1].content.len(), 2);
        assert!(assemble(None, &r.input[..1], &r.base).is_ok());
        assert!(assemble(None, &[], &r.base).is_err());
    }
}
