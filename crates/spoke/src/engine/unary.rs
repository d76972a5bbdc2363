//! `Infer`: one whole completion, with failover across the plan's routes.

use super::Engine;
use super::tally::Tally;
use crate::error::SpokeError;
use std::time::Duration;
use switchyard_proto::v1::{
    ContentPart, InferRequest, InferResponse, Message, Outcome, Role, content_part::Part,
};
use switchyard_providers::{Call, UpstreamError};
use tokio::time::Instant;

impl Engine {
    /// One completion with failover.
    pub async fn infer(
        &self,
        mut req: InferRequest,
        grpc_timeout: Option<Duration>,
    ) -> Result<InferResponse, SpokeError> {
        let (deadline, estimate) = self.prepare(&mut req, grpc_timeout)?;
        let plan = self.plan(&req)?;
        let mut tally = Tally::default();
        for route in plan {
            let Some((res, budget)) = self
                .begin_attempt(&route, deadline, estimate, &mut tally)
                .await?
            else {
                continue;
            };
            let call = Call {
                region: &route.region,
                model: &route.upstream_model,
                request: &req,
                timeout: budget,
                options: route.options,
            };
            let started = Instant::now();
            let span = self.upstream_span(&route);
            let completing =
                tracing::Instrument::instrument(self.upstream.complete(call), span.clone());
            let result = match tokio::time::timeout(budget, completing).await {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::Timeout),
            };
            crate::observe::upstream_result(&span, result.as_ref().err());
            let latency = started.elapsed();
            match result {
                Ok(c) => {
                    self.succeed(&route, res, &c.usage).await;
                    tally
                        .attempts
                        .push(self.attempt(&route, Outcome::Ok, latency, String::new()));
                    return Ok(InferResponse {
                        request_id: req.request_id,
                        // Thinking blocks, then the text, then the tool calls.
                        message: Some(Message {
                            role: Role::Assistant as i32,
                            content: c
                                .thinking
                                .into_iter()
                                .map(Part::Thinking)
                                .chain(std::iter::once(Part::Text(c.text)))
                                .chain(c.tool_calls.into_iter().map(Part::ToolCall))
                                .map(|p| ContentPart { part: Some(p) })
                                .collect(),
                        }),
                        stop_reason: c.stop_reason as i32,
                        usage: Some(c.usage),
                        route: Some(self.wire_route(&route)),
                        attempts: tally.attempts,
                        logprobs_json: c.logprobs_json,
                        more_choices: c.more_choices,
                        additional_model_response_fields_json: c.additional_response_fields_json,
                    });
                }
                Err(e) => {
                    self.record_failure(&route, res, e, latency, &mut tally)
                        .await?
                }
            }
        }
        Err(tally.into_error(deadline))
    }
}
