//! Upstream model adapters behind one trait.
//!
//! The spoke's failover engine talks only to [`Upstream`]; each adapter turns its provider's
//! wire errors into an [`UpstreamError`] whose class decides, once and here, what the engine does
//! next: the caller's fault (invalid: never retried), the account's fault (denied: fail over,
//! deny the route for a while) or transient (throttled / unavailable / timeout: fail over, cool
//! down). Upstream messages are kept only redacted ([`redact`]) and only for the spoke's log.

pub mod anthropic;
pub mod aws;
pub mod bedrock;
pub mod error;
pub mod openai;
pub mod redact;
pub mod secrets;
pub mod simulated;
pub mod text;

pub use error::{DenyReason, Fault, Reason, UpstreamError};

use futures::stream::BoxStream;
use std::time::Duration;
use switchyard_proto::v1::{InferRequest, StopReason, ToolCall, Usage};

/// One call to one (region, model) target.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub region: &'a str,
    /// The provider's own model id (the spoke maps its model names to these).
    pub model: &'a str,
    pub request: &'a InferRequest,
    /// What is left of the request's deadline for this attempt.
    pub timeout: Duration,
}

/// One embeddings call to one (region, model) target.
#[derive(Clone, Copy, Debug)]
pub struct EmbedCall<'a> {
    pub region: &'a str,
    /// The provider's own model id.
    pub model: &'a str,
    pub inputs: &'a [String],
    /// Requested output dimensions (`None` = the model's default).
    pub dimensions: Option<u32>,
    pub timeout: Duration,
}

/// Embeddings of a batch, one vector per input, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub input_tokens: u32,
}

/// A finished, non-streamed completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub text: String,
    /// Tool calls the model made (in order), after the text.
    pub tool_calls: Vec<ToolCall>,
    pub stop_reason: StopReason,
    pub usage: Usage,
}

/// One event of a streamed completion.
#[derive(Clone, Debug, PartialEq)]
pub enum Chunk {
    Delta(String),
    /// A piece of tool call number `index`: the first piece carries `id` and `name`, later ones
    /// only more `arguments` text.
    ToolCall {
        index: u32,
        id: String,
        name: String,
        arguments: String,
    },
    End {
        stop_reason: StopReason,
        usage: Usage,
    },
}

pub type ChunkStream = BoxStream<'static, Result<Chunk, UpstreamError>>;

#[async_trait::async_trait]
pub trait Upstream: Send + Sync + 'static {
    /// `"bedrock"`, `"openai"`, `"anthropic"` or `"simulated"`.
    fn kind(&self) -> &'static str;

    /// A whole completion. Implementations bound the call by `call.timeout`.
    async fn complete(&self, call: Call<'_>) -> Result<Completion, UpstreamError>;

    /// A streamed completion. Errors the upstream reports before it starts streaming come back
    /// as `Err` here; errors after that come as `Err` items of the stream. The stream ends with
    /// exactly one [`Chunk::End`] when the upstream finished cleanly.
    async fn stream(&self, call: Call<'_>) -> Result<ChunkStream, UpstreamError>;

    /// Embeddings for `call.inputs`. Adapters without an embeddings API refuse (not retried).
    async fn embed(&self, call: EmbedCall<'_>) -> Result<Embeddings, UpstreamError> {
        let _ = call;
        Err(UpstreamError::Invalid {
            reason: format!("the {} adapter does not serve embeddings", self.kind()).into(),
        })
    }

    /// Whether the adapter holds what it needs to call its upstream (credentials). Called at
    /// start and then periodically; while it fails the spoke reports itself not serving
    /// (`/healthz` 503). The message must not contain secret material.
    async fn check_credentials(&self) -> Result<(), String> {
        Ok(())
    }
}
