//! Amazon Bedrock `Converse` / `ConverseStream` through `aws-sdk-bedrockruntime`, one client per
//! region. The SDK's own retries are disabled: failover across regions and models is the
//! spoke's job, and an SDK retry loop would hide throttling from it.

use crate::error::parse_retry_after;
use crate::{Call, Chunk, ChunkStream, Completion, Upstream, UpstreamError};
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    self as bt, ContentBlock, ConversationRole, ConverseStreamOutput, ImageBlock, ImageFormat,
    ImageSource, InferenceConfiguration, SystemContentBlock,
};
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use switchyard_proto::v1::{InferRequest, Role, StopReason, Usage, content_part::Part};

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
            Role::User | Role::Tool | Role::Unspecified => ConversationRole::User,
        };
        let mut blocks = Vec::with_capacity(m.content.len());
        for p in &m.content {
            blocks.push(match &p.part {
                Some(Part::Text(t)) => ContentBlock::Text(t.clone()),
                Some(Part::Image(img)) => {
                    let image = ImageBlock::builder()
                        .format(ImageFormat::from(img.format.as_str()))
                        .source(ImageSource::Bytes(Blob::new(img.data.clone())))
                        .build()
                        .map_err(|e| invalid(format!("messages[{i}]: {e}")))?;
                    ContentBlock::Image(image)
                }
                Some(Part::ToolCall(_)) | Some(Part::ToolResult(_)) => {
                    return Err(invalid(format!(
                        "messages[{i}]: tool calls are not supported by this spoke yet"
                    )));
                }
                None => continue,
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

fn invalid(reason: String) -> UpstreamError {
    UpstreamError::Invalid { reason }
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
    })
    .unwrap_or_default()
}

/// Classifies a Bedrock error by its modelled error code (the same names appear as operation
/// errors and as event-stream exception frames).
fn classify_code(
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
    retry_after: Option<Duration>,
) -> UpstreamError {
    let code_s = code.unwrap_or("UnknownError");
    let reason = match message {
        Some(m) => format!("{code_s}: {}", m.chars().take(500).collect::<String>()),
        None => code_s.to_owned(),
    };
    match code.map(|c| c.trim_end_matches("Exception").to_ascii_lowercase()) {
        Some(c) if c == "throttling" || c == "modelnotready" || c == "servicequotaexceeded" => {
            UpstreamError::Throttled {
                reason,
                retry_after,
            }
        }
        Some(c) if c == "validation" || c == "accessdenied" || c == "resourcenotfound" => {
            UpstreamError::Invalid { reason }
        }
        Some(c) if c == "modeltimeout" => UpstreamError::Timeout,
        Some(c)
            if c == "serviceunavailable"
                || c == "internalserver"
                || c == "modelerror"
                || c == "modelstreamerror" =>
        {
            UpstreamError::Unavailable { reason }
        }
        _ => match status {
            Some(s) => UpstreamError::from_status(s, reason, retry_after),
            None => UpstreamError::Unavailable { reason },
        },
    }
}

fn sdk_error<E: ProvideErrorMetadata>(
    err: SdkError<E, aws_sdk_bedrockruntime::config::http::HttpResponse>,
) -> UpstreamError {
    match err {
        SdkError::ServiceError(se) => {
            let raw = se.raw();
            let status = raw.status().as_u16();
            let retry_after = raw
                .headers()
                .get("retry-after")
                .and_then(|v| parse_retry_after(v, false));
            let e = se.err();
            classify_code(e.code(), e.message(), Some(status), retry_after)
        }
        SdkError::TimeoutError(_) => UpstreamError::Timeout,
        SdkError::DispatchFailure(f) => {
            if f.is_timeout() {
                UpstreamError::Timeout
            } else {
                UpstreamError::unavailable("connection failed")
            }
        }
        SdkError::ConstructionFailure(_) => invalid("request could not be built".into()),
        _ => UpstreamError::unavailable("malformed upstream response"),
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
        let (system, messages) = conversation(call.request)?;
        let fut = client
            .converse()
            .model_id(call.model)
            .set_system((!system.is_empty()).then_some(system))
            .set_messages(Some(messages))
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
        let text = out
            .output()
            .and_then(|o| o.as_message().ok())
            .map(|m| {
                m.content()
                    .iter()
                    .filter_map(|c| c.as_text().ok().map(String::as_str))
                    .collect::<String>()
            })
            .unwrap_or_default();
        Ok(Completion {
            text,
            stop_reason: stop_reason(out.stop_reason()),
            usage: usage(out.usage()),
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
                Ok(Some(ConverseStreamOutput::ContentBlockDelta(d))) => {
                    if let Some(Ok(t)) = d.delta().map(|d| d.as_text())
                        && !t.is_empty()
                    {
                        return Some(Ok(Chunk::Delta(t.clone())));
                    }
                }
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
}
