//! The simulated upstream: deterministic text with configurable latency, pacing and injected
//! failures. It is NOT a model — it exists for the local demo and for load tests, so the
//! gateway can be run and measured with no cloud account.
//!
//! It plays along with every setting of the contract, deterministically (docs/configuration.md,
//! `[simulated]`, lists them):
//!
//! - Tools: when tools are offered and the last message is the user's, it calls the first tool
//!   (`tool_choice` `auto`); `any` calls the first tool, a named choice that tool, whatever the
//!   last message; `none` answers with text. The arguments are valid for the tool's schema
//!   ([`crate::schema::sample`]) with a `query` property set to the user's text (a schema without
//!   properties gets `{"query": <the user's text>}`). When the last message carries tool results
//!   (and no call is forced), it answers with text that quotes them.
//! - `response_format`: `json_schema` → [`crate::schema::sample`] of the schema as the text,
//!   `json_object` → `{"answer": <the sentence>}` (neither is cut by `max_tokens`).
//! - `n` choices (choice i > 0 says `[simulated #i]`), `logprobs` / `top_logprobs` (one token per
//!   word, logprob 0, alternatives at -1, -2, …), stop sequences (the text ends before the first
//!   one, stop reason `stop_sequence`).
//! - Reasoning enabled or adaptive (or an effort other than `none`): a short thinking block with
//!   a signature before the answer; its words count as reasoning tokens.
//! - Cache points: the input before the last one is reported as read from the cache.
//! - `top_k`, `seed`, penalties, `logit_bias`, `parallel_tool_calls`, passthrough and additional
//!   Converse fields are accepted and change nothing (the answer is deterministic anyway).

use crate::shape::{self, Think};
use crate::{
    Call, Chunk, ChunkStream, Completion, EmbedCall, Embeddings, Upstream, UpstreamError, text,
};
use futures::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use std::time::Duration;
use switchyard_proto::v1::{
    Choice, ContentPart, Message, Role, StopReason, StreamDelta, ThinkingPart, ToolCall, Usage,
    content_part::Part, response_format::Type as FormatType, tool_choice::Mode as ChoiceMode,
};

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

    /// The answer of choice `choice`: deterministic for a given region, model, prompt and
    /// settings; text capped by `max_tokens` (one word = one token here) and stop sequences.
    fn answer(call: &Call<'_>, choice: u32) -> Result<Answer, UpstreamError> {
        let req = call.request;
        let thinking = Self::thinking(call)?;
        if let Some(tc) = Self::tool_call(call)? {
            return Ok(Answer {
                thinking,
                words: Vec::new(),
                tool_call: Some(tc),
                stop: StopReason::ToolUse,
            });
        }
        if let Some(f) = shape::json_format(req) {
            let value = if f.r#type == FormatType::JsonObject as i32 {
                json!({"answer": Self::sentence(call, choice)})
            } else {
                crate::schema::sample(&shape::format_schema(f)?)
            };
            return Ok(Answer {
                thinking,
                words: vec![value.to_string()],
                tool_call: None,
                stop: StopReason::EndTurn,
            });
        }
        let sentence = Self::sentence(call, choice);
        let mut stop = StopReason::EndTurn;
        let mut text = sentence.as_str();
        for s in req.params.iter().flat_map(|p| &p.stop) {
            if !s.is_empty()
                && let Some(at) = text.find(s.as_str())
            {
                text = &text[..at];
                stop = StopReason::StopSequence;
            }
        }
        let mut words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        if let Some(max) = req.params.as_ref().and_then(|p| p.max_tokens)
            && (max as usize) < words.len()
        {
            words.truncate(max as usize);
            stop = StopReason::MaxTokens;
        }
        Ok(Answer {
            thinking,
            words,
            tool_call: None,
            stop,
        })
    }

    /// `[simulated] {model} in {region} heard: {the user's first 12 words}` (or `got the tool
    /// result`: …); choice i > 0 starts `[simulated #i]`.
    fn sentence(call: &Call<'_>, choice: u32) -> String {
        let (prompt, verb) = match Self::tool_results(call) {
            Some(results) => (results, "got the tool result"),
            None => (text::last_user_text(call.request), "heard"),
        };
        let echo: Vec<&str> = prompt.split_whitespace().take(12).collect();
        let tag = if choice == 0 {
            "[simulated]".to_owned()
        } else {
            format!("[simulated #{choice}]")
        };
        format!(
            "{tag} {} in {} {verb}: {}",
            call.model,
            call.region,
            if echo.is_empty() {
                "(nothing)".to_string()
            } else {
                echo.join(" ")
            }
        )
    }

    /// The thinking block of a request that asks for reasoning: its text and a signature (a
    /// hash of the text, so it is stable).
    fn thinking(call: &Call<'_>) -> Result<Option<ThinkingPart>, UpstreamError> {
        let think = match shape::reasoning(call.request) {
            None | Some(Think::Off) => return Ok(None),
            Some(t) => t,
        };
        let budget = shape::think_budget(&think)?;
        let query = text::last_user_text(call.request);
        let echo: Vec<&str> = query.split_whitespace().take(6).collect();
        let text = match budget {
            Some(b) => format!(
                "[simulated] thinking about \"{}\" within {b} tokens",
                echo.join(" ")
            ),
            None => format!("[simulated] thinking about \"{}\"", echo.join(" ")),
        };
        Ok(Some(ThinkingPart {
            signature: format!("sim-{:016x}", fnv(text.bytes())),
            text,
            ..Default::default()
        }))
    }

    /// The tool call this request gets, if any (see the module docs).
    fn tool_call(call: &Call<'_>) -> Result<Option<ToolCall>, UpstreamError> {
        let req = call.request;
        let (mode, name) = shape::tool_choice(req);
        let tool = match mode {
            ChoiceMode::None => return Ok(None),
            ChoiceMode::Tool => match req.tools.iter().find(|t| t.name == name) {
                Some(t) => t,
                None => {
                    return Err(shape::invalid(format!(
                        "tool_choice: no tool named {name:?} is offered"
                    )));
                }
            },
            ChoiceMode::Any => match req.tools.first() {
                Some(t) => t,
                None => {
                    return Err(shape::invalid(
                        "tool_choice: a tool must be called but none is offered".into(),
                    ));
                }
            },
            ChoiceMode::Auto => {
                let Some(tool) = req.tools.first() else {
                    return Ok(None);
                };
                let last_is_user = req
                    .messages
                    .iter()
                    .rev()
                    .find(|m| m.role != Role::System as i32)
                    .is_some_and(|m| m.role == Role::User as i32);
                if !last_is_user || Self::tool_results(call).is_some() {
                    return Ok(None);
                }
                tool
            }
        };
        let query = text::last_user_text(req);
        let schema: Value = serde_json::from_str(&tool.parameters_json).unwrap_or(json!({}));
        let declares = |k: &str| schema["properties"].get(k).is_some();
        let mut args = match crate::schema::sample(&schema) {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        if declares("query")
            || schema["properties"]
                .as_object()
                .is_none_or(|p| p.is_empty())
        {
            args.insert("query".into(), Value::String(query.trim().to_owned()));
        }
        let h = fnv(query.bytes().chain(tool.name.bytes()));
        Ok(Some(ToolCall {
            id: format!("call_sim_{:012x}", h & 0xffff_ffff_ffff),
            name: tool.name.clone(),
            arguments_json: Value::Object(args).to_string(),
        }))
    }

    /// The tool results of the last message, joined, when it carries any.
    fn tool_results(call: &Call<'_>) -> Option<String> {
        let last = call.request.messages.last()?;
        let results: Vec<&str> = last
            .content
            .iter()
            .filter_map(|p| match &p.part {
                Some(Part::ToolResult(r)) => Some(r.content.as_str()),
                _ => None,
            })
            .collect();
        (!results.is_empty()).then(|| results.join(" "))
    }

    /// The number of choices asked for (1 to 128).
    fn choices(call: &Call<'_>) -> u32 {
        call.request
            .params
            .as_ref()
            .map_or(1, |p| p.n.clamp(1, 128))
    }

    /// Logprobs of `words` as OpenAI's `{"content": [...]}` when asked for, else empty.
    fn logprobs(call: &Call<'_>, words: &[String]) -> String {
        let Some(p) = call
            .request
            .params
            .as_ref()
            .filter(|p| p.logprobs || p.top_logprobs.is_some())
        else {
            return String::new();
        };
        let top = p.top_logprobs.unwrap_or(0).min(20);
        let content: Vec<Value> = words
            .iter()
            .map(|w| {
                let alternatives: Vec<Value> = (0..top)
                    .map(|i| {
                        let token = if i == 0 { w.clone() } else { format!("{w}~{i}") };
                        json!({"token": token, "logprob": -f64::from(i), "bytes": token.as_bytes()})
                    })
                    .collect();
                json!({"token": w, "logprob": 0.0, "bytes": w.as_bytes(), "top_logprobs": alternatives})
            })
            .collect();
        json!({"content": content}).to_string()
    }

    /// Usage of a request: the input estimate (the part before the last cache point as read
    /// from the cache), output words of every choice, thinking words as reasoning tokens.
    fn usage(call: &Call<'_>, answers: &[Answer]) -> Usage {
        let req = call.request;
        let mut output = 0u32;
        let mut reasoning = 0u32;
        for a in answers {
            let thought = a
                .thinking
                .as_ref()
                .map_or(0, |t| t.text.split_whitespace().count() as u32);
            reasoning += thought;
            output += thought
                + if a.tool_call.is_some() {
                    8
                } else {
                    a.words.len() as u32
                };
        }
        let mut chars = 0usize;
        let mut cached = 0usize;
        for t in &req.tools {
            chars += t.name.len() + t.description.len() + t.parameters_json.len();
            if t.cache_point.is_some() {
                cached = chars;
            }
        }
        let parts = req
            .system_parts
            .iter()
            .chain(req.messages.iter().flat_map(|m| &m.content));
        for p in parts {
            match &p.part {
                Some(Part::Text(t)) => chars += t.len(),
                Some(Part::CachePoint(_)) => cached = chars,
                _ => {}
            }
        }
        let input = text::estimate_input_tokens(req) as u32;
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_input_tokens: (cached.div_ceil(4) as u32).min(input),
            cache_write_input_tokens: 0,
            reasoning_tokens: reasoning,
        }
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
        let answers = (0..Self::choices(&call))
            .map(|i| Self::answer(&call, i))
            .collect::<Result<Vec<_>, _>>()?;
        let mut c = Completion {
            usage: Self::usage(&call, &answers),
            ..Default::default()
        };
        for (i, a) in answers.into_iter().enumerate() {
            let logprobs = Self::logprobs(&call, &a.words);
            if i == 0 {
                c.thinking = a.thinking.into_iter().collect();
                c.text = a.words.join(" ");
                c.tool_calls = a.tool_call.into_iter().collect();
                c.stop_reason = a.stop;
                c.logprobs_json = logprobs;
                continue;
            }
            let content = a
                .thinking
                .into_iter()
                .map(Part::Thinking)
                .chain(std::iter::once(Part::Text(a.words.join(" "))))
                .chain(a.tool_call.into_iter().map(Part::ToolCall))
                .map(|p| ContentPart { part: Some(p) })
                .collect();
            c.more_choices.push(Choice {
                message: Some(Message {
                    role: Role::Assistant as i32,
                    content,
                }),
                stop_reason: a.stop as i32,
                logprobs_json: logprobs,
            });
        }
        Ok(c)
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
        let answers = (0..Self::choices(&call))
            .map(|i| Self::answer(&call, i))
            .collect::<Result<Vec<_>, _>>()?;
        let usage = Self::usage(&call, &answers);
        let with_logprobs = !Self::logprobs(&call, &[]).is_empty();
        // Every choice's pieces in order: thinking word by word and its signature, then the
        // text word by word (or the tool call in two pieces, as real upstreams stream it).
        let mut pieces: Vec<StreamDelta> = Vec::new();
        let mut stops = Vec::with_capacity(answers.len());
        for (i, a) in answers.into_iter().enumerate() {
            let choice = i as u32;
            stops.push(a.stop);
            if let Some(t) = a.thinking {
                for w in t.text.split_inclusive(' ') {
                    pieces.push(StreamDelta {
                        choice,
                        thinking: Some(ThinkingPart {
                            text: w.to_owned(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    });
                }
                pieces.push(StreamDelta {
                    choice,
                    thinking: Some(ThinkingPart {
                        signature: t.signature,
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            if let Some(tc) = a.tool_call {
                let mut mid = tc.arguments_json.len() / 2;
                while !tc.arguments_json.is_char_boundary(mid) {
                    mid -= 1;
                }
                let (head, tail) = tc.arguments_json.split_at(mid);
                pieces.push(StreamDelta {
                    choice,
                    tool_call: Some(shape::tool_call_delta(
                        0,
                        tc.id.clone(),
                        tc.name.clone(),
                        head.to_owned(),
                    )),
                    ..Default::default()
                });
                pieces.push(StreamDelta {
                    choice,
                    tool_call: Some(shape::tool_call_delta(
                        0,
                        String::new(),
                        String::new(),
                        tail.to_owned(),
                    )),
                    ..Default::default()
                });
                continue;
            }
            let n = a.words.len();
            for (j, w) in a.words.iter().enumerate() {
                let text = if j + 1 < n {
                    format!("{w} ")
                } else {
                    w.clone()
                };
                let logprobs_json = if with_logprobs {
                    Self::logprobs(&call, std::slice::from_ref(w))
                } else {
                    String::new()
                };
                pieces.push(StreamDelta {
                    choice,
                    text,
                    logprobs_json,
                    ..Default::default()
                });
            }
        }
        let gap = match self.config.tokens_per_second {
            0 => Duration::ZERO,
            tps => Duration::from_secs_f64(1.0 / f64::from(tps)),
        };
        let deltas =
            futures::stream::iter(pieces.into_iter().enumerate()).then(move |(i, d)| async move {
                if i > 0 && !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
                Ok(plain(d))
            });
        let end = futures::stream::once(async move {
            Ok(Chunk::End {
                stop_reason: stops.first().copied().unwrap_or(StopReason::EndTurn),
                usage,
                more_stop_reasons: stops.into_iter().skip(1).collect(),
                additional_response_fields_json: String::new(),
            })
        });
        Ok(deltas.chain(end).boxed())
    }
}

/// One answer of the simulator (one choice).
struct Answer {
    thinking: Option<ThinkingPart>,
    /// The text, word by word (one JSON value as one "word" for structured output).
    words: Vec<String>,
    tool_call: Option<ToolCall>,
    stop: StopReason,
}

/// A piece of choice 0 with only text or only a tool-call piece in the plain chunk form; any
/// other in the contract's form.
fn plain(d: StreamDelta) -> Chunk {
    if d.choice != 0 || d.thinking.is_some() || !d.logprobs_json.is_empty() {
        return Chunk::Part(d);
    }
    match d.tool_call {
        Some(tc) => Chunk::ToolCall {
            index: tc.index,
            id: tc.id,
            name: tc.name,
            arguments: tc.arguments_json,
        },
        None => Chunk::Delta(d.text),
    }
}

/// FNV-1a of some bytes (stable ids and signatures).
fn fnv(bytes: impl Iterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
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
