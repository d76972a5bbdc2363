//! Request preparation: the checks every request passes before any quota is taken, its id, its
//! deadline and its admission estimate.

use super::Engine;
use crate::error::SpokeError;
use std::time::Duration;
use switchyard_proto::v1::{InferRequest, Role};
use tokio::time::Instant;

/// Output tokens assumed at admission when the request sets no `max_tokens`.
pub const DEFAULT_OUTPUT_ESTIMATE: u64 = 256;
/// Most tools one request may offer (OpenAI's limit).
pub const MAX_TOOLS: usize = 128;
/// Longest tool name (bytes; OpenAI's limit).
pub const MAX_TOOL_NAME: usize = 64;
/// Largest tool definition (bytes of description plus JSON Schema).
pub const MAX_TOOL_BYTES: usize = 64 * 1024;
/// Most choices (`n`) one request may ask for.
pub const MAX_N: u32 = 128;
/// Most alternatives per token (`top_logprobs`; OpenAI's limit).
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// Most `logit_bias` entries (OpenAI's limit).
pub const MAX_LOGIT_BIAS: usize = 300;
/// Largest response-format schema, passthrough object or additional Converse fields (bytes).
pub const MAX_EXTRA_BYTES: usize = 64 * 1024;
/// Most Converse `additionalModelResponseFieldPaths` (Bedrock's limit) and longest path.
pub const MAX_RESPONSE_FIELD_PATHS: usize = 10;
pub const MAX_RESPONSE_FIELD_PATH: usize = 256;
/// Largest reasoning budget (tokens).
pub const MAX_BUDGET_TOKENS: u32 = 1_000_000;

impl Engine {
    /// Checks the request and computes its deadline. `grpc_timeout` is the caller's transport
    /// deadline, when it sent one.
    pub(super) fn prepare(
        &self,
        req: &mut InferRequest,
        grpc_timeout: Option<Duration>,
    ) -> Result<(Instant, u64), SpokeError> {
        if self.is_draining() {
            return Err(SpokeError::Draining);
        }
        validate_request(req)?;
        if req.request_id.is_empty() {
            req.request_id = uuid::Uuid::new_v4().to_string();
        }
        let deadline = self.deadline(req.timeout_ms, grpc_timeout);
        let estimate = switchyard_providers::text::estimate_input_tokens(req)
            + req
                .params
                .as_ref()
                .and_then(|p| p.max_tokens)
                .map(u64::from)
                .unwrap_or(DEFAULT_OUTPUT_ESTIMATE);
        Ok((deadline, estimate))
    }

    /// The request's deadline: its `timeout_ms` (0 = the spoke's default), shortened by the
    /// caller's transport deadline when it sent one.
    pub(super) fn deadline(&self, timeout_ms: u64, grpc_timeout: Option<Duration>) -> Instant {
        let mut budget = match timeout_ms {
            0 => self.default_timeout,
            ms => Duration::from_millis(ms),
        };
        if let Some(t) = grpc_timeout {
            budget = budget.min(t);
        }
        Instant::now() + budget
    }

    /// The time one attempt may take: what is left of the deadline, capped by
    /// `attempt_timeout`; `None` once the deadline has passed.
    pub(super) fn attempt_budget(&self, deadline: Instant) -> Option<Duration> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        Some(match self.attempt_timeout {
            Some(t) => t.min(left),
            None => left,
        })
    }
}

/// Rejects requests no upstream could serve, before any quota is taken, and bounds every input
/// that sizes work: roles and content, `temperature`, `top_p`, `max_tokens` (≥ 1; against the
/// models' context windows in the plan), the number and size of tools, `n` (≤ 128),
/// `top_logprobs` (≤ 20), `logit_bias` (≤ 300 entries of token id → -100..100), penalties
/// (-2..2), `top_k` (≥ 1), reasoning (known effort, budget ≤ 1,000,000), the tool choice (a
/// named tool must be offered), and 64 KiB each for the response schema, the passthrough
/// fields and the additional Converse fields (at most 10 response field paths).
pub fn validate_request(req: &InferRequest) -> Result<(), SpokeError> {
    if req.models.is_empty() {
        return Err(SpokeError::BadRequest(
            "models: at least one model candidate is required".into(),
        ));
    }
    if req.messages.is_empty() {
        return Err(SpokeError::BadRequest(
            "messages: at least one message is required".into(),
        ));
    }
    for (i, m) in req.messages.iter().enumerate() {
        if Role::try_from(m.role).is_err() || m.role == Role::Unspecified as i32 {
            return Err(SpokeError::BadRequest(format!(
                "messages[{i}].role: must be user, assistant, tool or system"
            )));
        }
        if m.content.is_empty() {
            return Err(SpokeError::BadRequest(format!(
                "messages[{i}].content: must not be empty"
            )));
        }
    }
    if let Some(p) = &req.params {
        if let Some(t) = p.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(SpokeError::BadRequest(
                "temperature: must be between 0 and 2".into(),
            ));
        }
        if let Some(t) = p.top_p
            && !(0.0..=1.0).contains(&t)
        {
            return Err(SpokeError::BadRequest(
                "top_p: must be between 0 and 1".into(),
            ));
        }
        if p.max_tokens == Some(0) {
            return Err(SpokeError::BadRequest(
                "max_tokens: must be at least 1".into(),
            ));
        }
    }
    validate_params(req)?;
    validate_shape(req)?;
    if req.tools.len() > MAX_TOOLS {
        return Err(SpokeError::BadRequest(format!(
            "tools: at most {MAX_TOOLS} tools may be offered ({} given)",
            req.tools.len()
        )));
    }
    for (i, t) in req.tools.iter().enumerate() {
        if t.name.is_empty() || t.name.len() > MAX_TOOL_NAME {
            return Err(SpokeError::BadRequest(format!(
                "tools[{i}].name: must be 1 to {MAX_TOOL_NAME} bytes"
            )));
        }
        if t.description.len() + t.parameters_json.len() > MAX_TOOL_BYTES {
            return Err(SpokeError::BadRequest(format!(
                "tools[{i}]: description and parameters may hold at most {MAX_TOOL_BYTES} bytes"
            )));
        }
    }
    Ok(())
}

fn bad(msg: String) -> SpokeError {
    SpokeError::BadRequest(msg)
}

/// The 1.3 sampling settings: `n`, logprobs, penalties, `logit_bias`, `top_k`, reasoning.
fn validate_params(req: &InferRequest) -> Result<(), SpokeError> {
    let Some(p) = &req.params else {
        return Ok(());
    };
    if p.n > MAX_N {
        return Err(bad(format!("n: at most {MAX_N} choices")));
    }
    if let Some(k) = p.top_logprobs
        && k > MAX_TOP_LOGPROBS
    {
        return Err(bad(format!(
            "top_logprobs: must be between 0 and {MAX_TOP_LOGPROBS}"
        )));
    }
    for (field, v) in [
        ("presence_penalty", p.presence_penalty),
        ("frequency_penalty", p.frequency_penalty),
    ] {
        if let Some(v) = v
            && !(-2.0..=2.0).contains(&v)
        {
            return Err(bad(format!("{field}: must be between -2 and 2")));
        }
    }
    if p.logit_bias.len() > MAX_LOGIT_BIAS {
        return Err(bad(format!("logit_bias: at most {MAX_LOGIT_BIAS} entries")));
    }
    for (token, bias) in &p.logit_bias {
        if token.is_empty() || token.len() > 10 || !token.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("logit_bias: keys must be token ids (decimal)".into()));
        }
        if !(-100.0..=100.0).contains(bias) {
            return Err(bad("logit_bias: values must be between -100 and 100".into()));
        }
    }
    if p.top_k == Some(0) {
        return Err(bad("top_k: must be at least 1".into()));
    }
    if let Some(r) = &p.reasoning {
        if r.budget_tokens > MAX_BUDGET_TOKENS {
            return Err(bad(format!(
                "reasoning.budget_tokens: at most {MAX_BUDGET_TOKENS}"
            )));
        }
        if !r.effort.is_empty()
            && switchyard_providers::shape::budget_for_effort(&r.effort).is_none()
        {
            return Err(bad(
                "reasoning_effort: must be one of none, minimal, low, medium, high, xhigh".into(),
            ));
        }
    }
    Ok(())
}

/// Tool choice, response format, passthrough and the additional Converse fields.
fn validate_shape(req: &InferRequest) -> Result<(), SpokeError> {
    use switchyard_proto::v1::{response_format::Type as FormatType, tool_choice::Mode};
    if let Some(c) = &req.tool_choice {
        let mode = Mode::try_from(c.mode).unwrap_or(Mode::Auto);
        if matches!(mode, Mode::Any | Mode::Tool) && req.tools.is_empty() {
            return Err(bad(
                "tool_choice: a tool must be called but no tools are offered".into(),
            ));
        }
        if mode == Mode::Tool && !req.tools.iter().any(|t| t.name == c.name) {
            return Err(bad(format!(
                "tool_choice: no tool named {:?} is offered",
                c.name
            )));
        }
    }
    if let Some(f) = &req.response_format {
        if f.schema_json.len() + f.description.len() > MAX_EXTRA_BYTES {
            return Err(bad(format!(
                "response_format: the schema and description may hold at most {MAX_EXTRA_BYTES} bytes"
            )));
        }
        if f.name.len() > MAX_TOOL_NAME {
            return Err(bad(format!(
                "response_format.name: at most {MAX_TOOL_NAME} bytes"
            )));
        }
        if f.r#type == FormatType::JsonSchema as i32
            && !serde_json::from_str::<serde_json::Value>(&f.schema_json)
                .is_ok_and(|v| v.is_object())
        {
            return Err(bad(
                "response_format.schema: must be a JSON Schema object".into()
            ));
        }
    }
    if req
        .passthrough
        .as_ref()
        .is_some_and(|p| p.fields_json.len() > MAX_EXTRA_BYTES)
    {
        return Err(bad(format!(
            "passthrough: at most {MAX_EXTRA_BYTES} bytes of fields"
        )));
    }
    if req.additional_model_request_fields_json.len() > MAX_EXTRA_BYTES {
        return Err(bad(format!(
            "additionalModelRequestFields: at most {MAX_EXTRA_BYTES} bytes"
        )));
    }
    let paths = &req.additional_model_response_field_paths;
    if paths.len() > MAX_RESPONSE_FIELD_PATHS
        || paths
            .iter()
            .any(|p| p.is_empty() || p.len() > MAX_RESPONSE_FIELD_PATH)
    {
        return Err(bad(format!(
            "additionalModelResponseFieldPaths: at most {MAX_RESPONSE_FIELD_PATHS} paths of 1 to {MAX_RESPONSE_FIELD_PATH} bytes"
        )));
    }
    Ok(())
}
