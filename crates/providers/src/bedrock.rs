//! Amazon Bedrock `Converse` / `ConverseStream` through `aws-sdk-bedrockruntime`, one client per
//! region. The SDK's own retries are disabled: failover across regions and models is the
//! spoke's job, and an SDK retry loop would hide throttling from it.

mod errors;

use crate::{Call, Chunk, ChunkStream, Completion, EmbedCall, Embeddings, Upstream, UpstreamError};
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    self as bt, ContentBlock, ConversationRole, ConverseStreamOutput, ImageBlock, ImageFormat,
    ImageSource, InferenceConfiguration, SystemContentBlock, Tool, ToolConfiguration,
    ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolResultStatus, ToolSpecification,
    ToolUseBlock,
};
use aws_smithy_types::{Document, Number};
use errors::{classify_code, sdk_error};
use futures::StreamExt;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use switchyard_proto::v1::{InferRequest, Role, StopReason, ToolCall, Usage, content_part::Part};

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

/// Converts the conversation into Bedrock's types.
fn conversation(
    req: &InferRequest,
) -> Result<(Vec<SystemContentBlock>, Vec<bt::Message>), UpstreamError> {
    let system = if req.system.is_empty() {
        vec![]
    } else {
        vec![SystemContentBlock::Text(req.system.clone())]
    };
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let role = match Role::try_from(m.role).unwrap_or(Role::Unspecified) {
            Role::Assistant => ConversationRole::Assistant,
            Role::User | Role::Tool | Role::System | Role::Unspecified => ConversationRole::User,
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
                Some(Part::Thinking(_) | Part::CachePoint(_)) | None => continue,
            });
        }
        messages.push(
            bt::Message::builder()
                .role(role)
                .set_content(Some(blocks))
                .build()
                .map_err(|e| invalid(format!("messages[{i}]: {e}")))?,
        );
    }
    Ok((system, messages))
}

/// Bedrock's `toolConfig` for the request's tools (`None` without tools).
fn tool_config(req: &InferRequest) -> Result<Option<ToolConfiguration>, UpstreamError> {
    if req.tools.is_empty() {
        return Ok(None);
    }
    let mut tools = Vec::with_capacity(req.tools.len());
    for (i, t) in req.tools.iter().enumerate() {
        let schema = parse_json(&t.parameters_json)
            .map_err(|e| invalid(format!("tools[{i}]: parameters: {e}")))?;
        let spec = ToolSpecification::builder()
            .name(&t.name)
            .set_description((!t.description.is_empty()).then(|| t.description.clone()))
            .input_schema(ToolInputSchema::Json(to_document(&schema)))
            .build()
            .map_err(|e| invalid(format!("tools[{i}]: {e}")))?;
        tools.push(Tool::ToolSpec(spec));
    }
    ToolConfiguration::builder()
        .set_tools(Some(tools))
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

fn inference_config(req: &InferRequest) -> Option<InferenceConfiguration> {
    let p = req.params.as_ref()?;
    Some(
        InferenceConfiguration::builder()
            .set_max_tokens(p.max_tokens.map(|v| v.min(i32::MAX as u32) as i32))
            .set_temperature(p.temperature)
            .set_top_p(p.top_p)
            .set_stop_sequences((!p.stop.is_empty()).then(|| p.stop.clone()))
            .build(),
    )
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

fn usage(u: Option<&bt::TokenUsage>) -> Usage {
    u.map(|u| Usage {
        input_tokens: u.input_tokens().max(0) as u32,
        output_tokens: u.output_tokens().max(0) as u32,
        ..Default::default()
    })
    .unwrap_or_default()
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
        let (system, messages) = conversation(call.request)?;
        let fut = client
            .converse()
            .model_id(call.model)
            .set_system((!system.is_empty()).then_some(system))
            .set_messages(Some(messages))
            .set_tool_config(tool_config(call.request)?)
            .set_inference_config(inference_config(call.request))
            .set_guardrail_config(self.guardrail.as_ref().map(|(id, v)| {
                bt::GuardrailConfiguration::builder()
                    .guardrail_identifier(id)
                    .guardrail_version(v)
                    .build()
            }))
            .send();
        let out = tokio::time::timeout(call.timeout, fut)
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(sdk_error)?;
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        let blocks = out.output().and_then(|o| o.as_message().ok());
        for block in blocks.map(|m| m.content()).unwrap_or_default() {
            match block {
                ContentBlock::Text(t) => text.push_str(t),
                ContentBlock::ToolUse(u) => tool_calls.push(ToolCall {
                    id: u.tool_use_id().to_owned(),
                    name: u.name().to_owned(),
                    arguments_json: from_document(u.input()).to_string(),
                }),
                _ => {}
            }
        }
        Ok(Completion {
            text,
            tool_calls,
            stop_reason: stop_reason(out.stop_reason()),
            usage: usage(out.usage()),
        })
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
        let (system, messages) = conversation(call.request)?;
        let fut = client
            .converse_stream()
            .model_id(call.model)
            .set_system((!system.is_empty()).then_some(system))
            .set_messages(Some(messages))
            .set_tool_config(tool_config(call.request)?)
            .set_inference_config(inference_config(call.request))
            .set_guardrail_config(self.guardrail.as_ref().map(|(id, v)| {
                bt::GuardrailStreamConfiguration::builder()
                    .guardrail_identifier(id)
                    .guardrail_version(v)
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
            usage: None,
            done: false,
        };
        Ok(futures::stream::unfold(state, |mut st| async move {
            let item = st.next_chunk().await?;
            Some((item, st))
        })
        .boxed())
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
