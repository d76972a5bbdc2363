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
pub mod schema;
pub mod secrets;
pub mod shape;
pub mod simulated;
pub mod text;

pub use error::{DenyReason, Fault, Reason, UpstreamError};

use futures::stream::BoxStream;
use std::time::Duration;
use switchyard_proto::v1::{
    Choice, InferRequest, StopReason, StreamDelta, ThinkingPart, ToolCall, Usage,
};

/// One call to one (region, model) target.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub region: &'a str,
    /// The provider's own model id (the spoke maps its model names to these).
    pub model: &'a str,
    pub request: &'a InferRequest,
    /// What is left of the request's deadline for this attempt.
    pub timeout: Duration,
    /// How this model is spoken to (the spoke's `[[models]]` settings).
    pub options: ModelOptions,
}

/// Per-model settings (from the spoke's `[[models]]`) that change the form of the upstream
/// request, not its meaning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelOptions {
    /// OpenAI-compatible upstreams: the body field that carries `max_tokens`
    /// (`max_tokens_field`; reasoning endpoints refuse `max_tokens`).
    pub max_tokens_field: MaxTokensField,
    /// Anthropic and Bedrock upstreams: how `response_format` is carried
    /// (`structured_output_mode`).
    pub structured_output: StructuredOutputMode,
    /// Whether `CachePoint`s reach the upstream (`prompt_caching`); without it they are left
    /// out (a cache breakpoint never changes an answer).
    pub prompt_caching: bool,
}

/// The OpenAI chat-completions field that carries the output-token limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MaxTokensField {
    /// `max_tokens` (every OpenAI-compatible server; the default).
    #[default]
    MaxTokens,
    /// `max_completion_tokens` (OpenAI's reasoning models refuse `max_tokens`).
    MaxCompletionTokens,
}

impl MaxTokensField {
    /// The JSON field name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxTokens => "max_tokens",
            Self::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

/// How an upstream without OpenAI's `response_format` is made to answer JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StructuredOutputMode {
    /// One tool whose input schema is the requested schema, forced with tool choice; its input
    /// comes back as the answer's JSON text (works on every model with tool use).
    #[default]
    Tool,
    /// The provider's own structured output (Anthropic `output_config.format`, Converse
    /// `outputConfig.textFormat`), on the models the provider lists for it.
    Native,
    /// OpenAI-compatible servers that take a schema only as `{"type": "json_object", "schema":
    /// {…}}` and refuse `json_schema` (llama.cpp's llama-cpp-python server, Together).
    JsonObjectSchema,
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
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Completion {
    /// Reasoning blocks the model produced (in order), before the text.
    pub thinking: Vec<ThinkingPart>,
    pub text: String,
    /// Tool calls the model made (in order), after the text.
    pub tool_calls: Vec<ToolCall>,
    pub stop_reason: StopReason,
    /// `input_tokens` counts every input token, cache reads and writes included (those are
    /// also given apart); `output_tokens` includes `reasoning_tokens`.
    pub usage: Usage,
    /// OpenAI's `choices[0].logprobs` object as JSON text; empty when not asked for.
    pub logprobs_json: String,
    /// With `n` > 1: choices 1, 2, … (the message, its stop reason, its logprobs).
    pub more_choices: Vec<Choice>,
    /// Bedrock `additionalModelResponseFields` (JSON object as text); empty when none.
    pub additional_response_fields_json: String,
}

/// One event of a streamed completion.
#[derive(Clone, Debug, PartialEq)]
pub enum Chunk {
    /// Text of choice 0.
    Delta(String),
    /// A piece of tool call number `index` of choice 0: the first piece carries `id` and
    /// `name`, later ones only more `arguments` text.
    ToolCall {
        index: u32,
        id: String,
        name: String,
        arguments: String,
    },
    /// Any other piece, in the contract's form: reasoning (`thinking`), a piece of choice
    /// `choice` > 0 (`n` > 1), or a piece carrying `logprobs_json`.
    Part(StreamDelta),
    End {
        /// Of choice 0.
        stop_reason: StopReason,
        usage: Usage,
        /// With `n` > 1: the stop reasons of choices 1, 2, ….
        more_stop_reasons: Vec<StopReason>,
        /// Bedrock `additionalModelResponseFields` (JSON object as text); empty when none.
        additional_response_fields_json: String,
    },
}

impl Chunk {
    /// The end of a stream with one choice and no additional fields.
    pub fn end(stop_reason: StopReason, usage: Usage) -> Chunk {
        Chunk::End {
            stop_reason,
            usage,
            more_stop_reasons: Vec::new(),
            additional_response_fields_json: String::new(),
        }
    }

    /// A reasoning piece of choice 0.
    pub fn thinking(part: ThinkingPart) -> Chunk {
        Chunk::Part(StreamDelta {
            thinking: Some(part),
            ..Default::default()
        })
    }
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

    /// The input tokens of `call.request` (system, messages, tool definitions) as the upstream
    /// itself counts them for `call.model`, without generating anything: Anthropic `POST
    /// /v1/messages/count_tokens`, Bedrock `CountTokens`. `Ok(None)`: this provider offers no
    /// counting API (the default; OpenAI-compatible upstreams) — the spoke answers
    /// UNIMPLEMENTED and the hub falls back to its estimate. Errors are classified like
    /// [`Upstream::complete`]'s. Implementations bound the call by `call.timeout`.
    async fn count_tokens(&self, call: Call<'_>) -> Result<Option<u32>, UpstreamError> {
        let _ = call;
        Ok(None)
    }

    /// Whether the adapter holds what it needs to call its upstream (credentials). Called at
    /// start and then periodically; while it fails the spoke reports itself not serving
    /// (`/healthz` 503). The message must not contain secret material.
    async fn check_credentials(&self) -> Result<(), String> {
        Ok(())
    }
}
