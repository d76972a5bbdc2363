//! Embeddings (`Embed`): the same plan, admission, failover and error model as `infer`.

use super::Engine;
use super::tally::Tally;
use crate::error::SpokeError;
use std::time::Duration;
use switchyard_proto::v1::{EmbedRequest, EmbedResponse, Embedding, InferRequest, Outcome, Usage};
use switchyard_providers::{EmbedCall, UpstreamError};
use tokio::time::Instant;

/// Most inputs one call may carry.
pub const MAX_INPUTS: usize = 2048;
/// Most output dimensions a request may ask for (the largest embedding models have 3072-4096).
pub const MAX_DIMENSIONS: u32 = 8192;

impl Engine {
    /// Embeddings of `req.inputs`, with failover across the plan's routes.
    pub async fn embed(
        &self,
        mut req: EmbedRequest,
        grpc_timeout: Option<Duration>,
    ) -> Result<EmbedResponse, SpokeError> {
        if self.is_draining() {
            return Err(SpokeError::Draining);
        }
        if req.models.is_empty() {
            return Err(SpokeError::BadRequest(
                "models: at least one model candidate is required".into(),
            ));
        }
        if req.inputs.is_empty() || req.inputs.len() > MAX_INPUTS {
            return Err(SpokeError::BadRequest(format!(
                "inputs: between 1 and {MAX_INPUTS} texts are required"
            )));
        }
        // Checked before anything sized by it exists: 2^32-1 must be a 400, not an allocation.
        if req.dimensions > MAX_DIMENSIONS {
            return Err(SpokeError::BadRequest(format!(
                "dimensions: must be at most {MAX_DIMENSIONS} ({} given)",
                req.dimensions
            )));
        }
        if req.request_id.is_empty() {
            req.request_id = uuid::Uuid::new_v4().to_string();
        }
        let deadline = self.deadline(req.timeout_ms, grpc_timeout);
        let chars: usize = req.inputs.iter().map(String::len).sum();
        let estimate = (chars as u64).div_ceil(4).max(1);
        // Routing looks only at the candidates and regions.
        let plan = self.plan(&InferRequest {
            models: req.models.clone(),
            allowed_regions: req.allowed_regions.clone(),
            ..Default::default()
        })?;
        let mut tally = Tally::default();
        for route in plan {
            let Some((ticket, budget)) = self
                .begin_attempt(&route, deadline, estimate, &mut tally)
                .await?
            else {
                continue;
            };
            let call = EmbedCall {
                region: &route.region,
                model: &route.upstream_model,
                inputs: &req.inputs,
                dimensions: (req.dimensions > 0).then_some(req.dimensions),
                timeout: budget,
            };
            let started = Instant::now();
            let result = match tokio::time::timeout(budget, self.upstream.embed(call)).await {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::Timeout),
            };
            let latency = started.elapsed();
            match result {
                Ok(e) => {
                    let usage = Usage {
                        input_tokens: e.input_tokens,
                        output_tokens: 0,
                        ..Default::default()
                    };
                    self.succeed(&route, ticket, &usage).await;
                    tally
                        .attempts
                        .push(self.attempt(&route, Outcome::Ok, latency, String::new()));
                    return Ok(EmbedResponse {
                        request_id: req.request_id,
                        embeddings: e
                            .vectors
                            .into_iter()
                            .map(|values| Embedding { values })
                            .collect(),
                        usage: Some(usage),
                        route: Some(self.wire_route(&route)),
                        attempts: tally.attempts,
                    });
                }
                Err(e) => {
                    self.record_failure(&route, ticket, e, latency, &mut tally)
                        .await?
                }
            }
        }
        Err(tally.into_error(deadline))
    }
}
