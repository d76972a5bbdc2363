//! The simulated upstream: deterministic text with configurable latency, pacing and injected
//! failures. It is NOT a model — it exists for the local demo and for load tests, so the
//! gateway can be run and measured with no cloud account.
//!
//! Tools follow one fixed rule (the same as the test fakes'), so client code that handles tool
//! calls can be tried against the demo: when tools are offered and the last message is the
//! user's, it calls the first tool with `{"query": <the user's text>}`; when the last message
//! carries tool results, it answers with text that quotes them.

use crate::{
    Call, Chunk, ChunkStream, Completion, EmbedCall, Embeddings, Upstream, UpstreamError, text,
};
use futures::StreamExt;
use rand::Rng;
use std::time::Duration;
use switchyard_proto::v1::{StopReason, Usage};

/// Most dimensions one simulated embedding may have.
pub const MAX_DIMENSIONS: usize = 8192;
/// Most values (inputs × dimensions) one simulated embeddings call may return (16 MiB of f32).
pub const MAX_EMBEDDING_VALUES: usize = 4 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct SimulatedConfig {
    /// Time before the first byte of an answer.
    pub latency: Duration,
    /// Pace of streamed words; 0 = the whole answer at once.
    pub tokens_per_second: u32,
    /// Share of calls (0..=1) answered with a simulated 503.
    pub failure_rate: f64,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(20),
            tokens_per_second: 0,
            failure_rate: 0.0,
        }
    }
}

pub struct SimulatedUpstream {
    config: SimulatedConfig,
}

impl SimulatedUpstream {
    pub fn new(config: SimulatedConfig) -> Self {
        Self { config }
    }

    /// The answer's words, deterministic for a given region, model and prompt, capped by
    /// `max_tokens` (one word = one token here).
    fn words(call: &Call<'_>) -> (Vec<String>, StopReason, Usage) {
        let (prompt, verb) = match Self::tool_results(call) {
            Some(results) => (results, "got the tool result"),
            None => (text::last_user_text(call.request), "heard"),
        };
        let echo: Vec<&str> = prompt.split_whitespace().take(12).collect();
        let sentence = format!(
            "[simulated] {} in {} {verb}: {}",
            call.model,
            call.region,
            if echo.is_empty() {
                "(nothing)".to_string()
            } else {
                echo.join(" ")
            }
        );
        let mut words: Vec<String> = sentence.split(' ').map(str::to_owned).collect();
        let mut stop = StopReason::EndTurn;
        if let Some(max) = call.request.params.as_ref().and_then(|p| p.max_tokens)
            && (max as usize) < words.len()
        {
            words.truncate(max as usize);
            stop = StopReason::MaxTokens;
        }
        let usage = Usage {
            input_tokens: text::estimate_input_tokens(call.request) as u32,
            output_tokens: words.len() as u32,
            ..Default::default()
        };
        (words, stop, usage)
    }

    /// The tool call the rule above makes for this request, if any.
    fn tool_call(call: &Call<'_>) -> Option<switchyard_proto::v1::ToolCall> {
        let tool = call.request.tools.first()?;
        let last = call.request.messages.last()?;
        if last.role != switchyard_proto::v1::Role::User as i32
            || Self::tool_results(call).is_some()
        {
            return None;
        }
        let query = text::last_user_text(call.request);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in query.bytes().chain(tool.name.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Some(switchyard_proto::v1::ToolCall {
            id: format!("call_sim_{:012x}", h & 0xffff_ffff_ffff),
            name: tool.name.clone(),
            arguments_json: serde_json::json!({ "query": query }).to_string(),
        })
    }

    /// The tool results of the last message, joined, when it carries any.
    fn tool_results(call: &Call<'_>) -> Option<String> {
        let last = call.request.messages.last()?;
        let results: Vec<&str> = last
            .content
            .iter()
            .filter_map(|p| match &p.part {
                Some(switchyard_proto::v1::content_part::Part::ToolResult(r)) => {
                    Some(r.content.as_str())
                }
                _ => None,
            })
            .collect();
        (!results.is_empty()).then(|| results.join(" "))
    }

    fn maybe_fail(&self) -> Result<(), UpstreamError> {
        if self.config.failure_rate > 0.0 && rand::rng().random::<f64>() < self.config.failure_rate
        {
            return Err(UpstreamError::unavailable("simulated 503 (failure_rate)"));
        }
        Ok(())
    }

    async fn wait_latency(&self, timeout: Duration) -> Result<(), UpstreamError> {
        if self.config.latency > timeout {
            tokio::time::sleep(timeout).await;
            return Err(UpstreamError::Timeout);
        }
        tokio::time::sleep(self.config.latency).await;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Upstream for SimulatedUpstream {
    fn kind(&self) -> &'static str {
        "simulated"
    }

    async fn complete(&self, call: Call<'_>) -> Result<Completion, UpstreamError> {
        self.wait_latency(call.timeout).await?;
        self.maybe_fail()?;
        if let Some(tc) = Self::tool_call(&call) {
            return Ok(Completion {
                text: String::new(),
                tool_calls: vec![tc],
                stop_reason: StopReason::ToolUse,
                usage: Usage {
                    input_tokens: text::estimate_input_tokens(call.request) as u32,
                    output_tokens: 8,
                    ..Default::default()
                },
            });
        }
        let (words, stop_reason, usage) = Self::words(&call);
        Ok(Completion {
            text: words.join(" "),
            tool_calls: Vec::new(),
            stop_reason,
            usage,
        })
    }

    /// Deterministic unit-free vectors (256 values, or `dimensions`) derived from each text.
    /// Refuses (the caller's fault) more than [`MAX_DIMENSIONS`] dimensions or more than
    /// [`MAX_EMBEDDING_VALUES`] values in all, before allocating anything.
    async fn embed(&self, call: EmbedCall<'_>) -> Result<Embeddings, UpstreamError> {
        let dims = call.dimensions.unwrap_or(256) as usize;
        if dims == 0 || dims > MAX_DIMENSIONS {
            return Err(UpstreamError::Invalid {
                reason: format!("dimensions must be between 1 and {MAX_DIMENSIONS}").into(),
            });
        }
        if dims.saturating_mul(call.inputs.len()) > MAX_EMBEDDING_VALUES {
            return Err(UpstreamError::Invalid {
                reason: format!(
                    "inputs × dimensions must be at most {MAX_EMBEDDING_VALUES} values"
                )
                .into(),
            });
        }
        self.wait_latency(call.timeout).await?;
        self.maybe_fail()?;
        let vectors = call
            .inputs
            .iter()
            .map(|t| {
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for b in t.bytes() {
                    h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                }
                (0..dims)
                    .map(|_| {
                        h ^= h << 13;
                        h ^= h >> 7;
                        h ^= h << 17;
                        ((h % 2048) as f32 - 1024.0) / 1024.0
                    })
                    .collect()
            })
            .collect();
        let chars: usize = call.inputs.iter().map(String::len).sum();
        Ok(Embeddings {
            vectors,
            input_tokens: chars.div_ceil(4).max(1) as u32,
        })
    }

    async fn stream(&self, call: Call<'_>) -> Result<ChunkStream, UpstreamError> {
        self.wait_latency(call.timeout).await?;
        self.maybe_fail()?;
        if let Some(tc) = Self::tool_call(&call) {
            // The call in two pieces, as real upstreams stream it: id and name, then arguments.
            let usage = Usage {
                input_tokens: text::estimate_input_tokens(call.request) as u32,
                output_tokens: 8,
                ..Default::default()
            };
            let mut mid = tc.arguments_json.len() / 2;
            while !tc.arguments_json.is_char_boundary(mid) {
                mid -= 1;
            }
            let (head, tail) = tc.arguments_json.split_at(mid);
            let chunks = vec![
                Ok(Chunk::ToolCall {
                    index: 0,
                    id: tc.id.clone(),
                    name: tc.name.clone(),
                    arguments: head.to_string(),
                }),
                Ok(Chunk::ToolCall {
                    index: 0,
                    id: String::new(),
                    name: String::new(),
                    arguments: tail.to_string(),
                }),
                Ok(Chunk::End {
                    stop_reason: StopReason::ToolUse,
                    usage,
                }),
            ];
            return Ok(futures::stream::iter(chunks).boxed());
        }
        let (words, stop_reason, usage) = Self::words(&call);
        let gap = match self.config.tokens_per_second {
            0 => Duration::ZERO,
            tps => Duration::from_secs_f64(1.0 / f64::from(tps)),
        };
        let n = words.len();
        let deltas =
            futures::stream::iter(words.into_iter().enumerate()).then(move |(i, w)| async move {
                if i > 0 && !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
                let text = if i + 1 < n { format!("{w} ") } else { w };
                Ok(Chunk::Delta(text))
            });
        let end = futures::stream::once(async move { Ok(Chunk::End { stop_reason, usage }) });
        Ok(deltas.chain(end).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn embeddings_are_bounded_before_anything_is_allocated() {
        let sim = SimulatedUpstream::new(SimulatedConfig {
            latency: Duration::ZERO,
            ..SimulatedConfig::default()
        });
        let inputs = vec!["a".to_string(); 2];
        let call = |dimensions| EmbedCall {
            region: "r",
            model: "m",
            inputs: &inputs,
            dimensions,
            timeout: Duration::from_secs(1),
        };
        for dims in [Some(u32::MAX), Some(MAX_DIMENSIONS as u32 + 1), Some(0)] {
            let e = sim.embed(call(dims)).await.unwrap_err();
            assert_eq!(e.fault(), crate::Fault::Caller, "{dims:?}");
        }
        let many = vec!["a".to_string(); 1024];
        let e = sim
            .embed(EmbedCall {
                inputs: &many,
                dimensions: Some(8192),
                ..call(None)
            })
            .await
            .unwrap_err();
        assert_eq!(e.fault(), crate::Fault::Caller);
        let ok = sim.embed(call(Some(16))).await.unwrap();
        assert_eq!(ok.vectors.len(), 2);
        assert_eq!(ok.vectors[0].len(), 16);
    }
}
