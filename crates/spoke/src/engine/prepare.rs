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
/// models' context windows in the plan), the number and size of tools.
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
                "messages[{i}].role: must be user, assistant or tool"
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
