//! Per-request observability of the hub, recorded in one place ([`record`]): a [`RequestRecord`] follows each
//! client request of every surface (OpenAI chat and prompts, Anthropic Messages, Bedrock
//! Converse, embeddings) — into its stream when it streams — and, when its last handle is
//! dropped at the very end, emits the metrics, the audit line and the final span attributes.
//! See docs/observability.md.

pub mod audit;
pub mod metrics;
pub mod record;
pub mod spans;

use serde_json::{Value, json};

pub use record::{RequestRecord, hold_until_body_ends};
pub use spans::{attempt_failed, attempt_ok, attempt_span, request_span, retried, route_span};

/// The client surface a request came through: a bounded label (`surface`) on the request
/// metrics and a field of the audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `POST /v1/chat/completions` and `POST /v1/prompts/{name}`.
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /model/{id}/converse` and `/converse-stream`.
    Converse,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/responses` (the OpenAI Responses API).
    Responses,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::OpenAi => "openai",
            Surface::Anthropic => "anthropic",
            Surface::Converse => "converse",
            Surface::Embeddings => "embeddings",
            Surface::Responses => "responses",
        }
    }

    /// The GenAI `gen_ai.operation.name` of the surface's requests.
    pub fn operation(self) -> &'static str {
        match self {
            Surface::Embeddings => "embeddings",
            _ => "chat",
        }
    }
}

/// The request parameters a surface decoded, for the span's GenAI attributes (whatever the
/// wire format).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestInfo {
    /// The model (alias) the client asked for.
    pub model: String,
    pub stream: bool,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
}

impl RequestInfo {
    /// From the internal request a surface translated (Anthropic, Converse, embeddings).
    pub fn infer(model: &str, stream: bool, req: &switchyard_proto::v1::InferRequest) -> Self {
        let p = req.params.clone().unwrap_or_default();
        Self {
            model: model.to_string(),
            stream,
            max_tokens: p.max_tokens.filter(|m| *m > 0),
            temperature: p.temperature,
            top_p: p.top_p,
        }
    }
}

/// An internal request's messages for content capture: `[{"role","content"}]`, the system
/// prompt first when there is one, each message's text parts joined.
pub fn infer_messages(req: &switchyard_proto::v1::InferRequest) -> Value {
    use switchyard_proto::v1 as pb;
    let mut out = Vec::with_capacity(req.messages.len() + 1);
    if !req.system.is_empty() {
        out.push(json!({"role": "system", "content": req.system}));
    }
    for m in &req.messages {
        let role = match pb::Role::try_from(m.role).unwrap_or(pb::Role::Unspecified) {
            pb::Role::Assistant => "assistant",
            pb::Role::Tool => "tool",
            pb::Role::System => "system",
            _ => "user",
        };
        let text: String = m
            .content
            .iter()
            .filter_map(|p| match &p.part {
                Some(pb::content_part::Part::Text(t)) => Some(t.as_str()),
                Some(pb::content_part::Part::ToolResult(r)) => Some(r.content.as_str()),
                _ => None,
            })
            .collect();
        out.push(json!({"role": role, "content": text}));
    }
    Value::Array(out)
}

/// A metric label value: `none` for an empty one.
pub(crate) fn label(s: &str) -> &str {
    if s.is_empty() { "none" } else { s }
}

#[cfg(test)]
mod tests;
