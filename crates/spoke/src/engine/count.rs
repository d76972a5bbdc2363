//! `CountTokens`: the upstream's own count of a request's input tokens, asked of the first
//! usable route of the plan. One call, no failover and no account quota (nothing is generated);
//! a route cooling down, with its breaker open or denied is passed over like in `infer`.

use super::Engine;
use super::tally::Tally;
use crate::error::SpokeError;
use std::time::Duration;
use switchyard_proto::v1::{CountTokensResponse, InferRequest};
use switchyard_providers::{Call, UpstreamError};
use tokio::time::Instant;

impl Engine {
    /// The upstream's count of `req`'s input tokens. `Ok(None)`: this spoke's provider offers
    /// no counting API (the gRPC surface answers UNIMPLEMENTED). Errors as `infer`: the
    /// request's own checks, NOT_FOUND for models not served here, the account's fault, an
    /// outage, the caller's fault (the upstream refused the content); when every route is
    /// passed over, the error its skips add up to.
    pub async fn count_tokens(
        &self,
        mut req: InferRequest,
        grpc_timeout: Option<Duration>,
    ) -> Result<Option<CountTokensResponse>, SpokeError> {
        let (deadline, _) = self.prepare(&mut req, grpc_timeout)?;
        let plan = self.plan(&req)?;
        let mut tally = Tally::default();
        for route in plan {
            let checked = route.state.lock().check(std::time::Instant::now());
            if let Err(skip) = checked {
                let detail = skip
                    .denied
                    .map(|why| why.as_str().to_owned())
                    .unwrap_or_default();
                tally.skip(
                    self.attempt(&route, skip.outcome, Duration::ZERO, detail),
                    skip,
                );
                continue;
            }
            let Some(budget) = self.attempt_budget(deadline) else {
                return Err(SpokeError::DeadlineExceeded {
                    attempts: tally.attempts,
                });
            };
            let call = Call {
                region: &route.region,
                model: &route.upstream_model,
                request: &req,
                timeout: budget,
                options: route.options,
            };
            let started = Instant::now();
            let result = match tokio::time::timeout(budget, self.upstream.count_tokens(call)).await
            {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::Timeout),
            };
            let latency = started.elapsed();
            return match result {
                Ok(None) => Ok(None),
                Ok(Some(n)) => Ok(Some(CountTokensResponse {
                    input_tokens: n,
                    route: Some(self.wire_route(&route)),
                })),
                // The count is a side question: its failure says nothing new about the route's
                // ability to serve completions, so the route's state is left as it is.
                Err(e) => {
                    tracing::info!(model = %route.model, region = %route.region, error = %e, "token count failed");
                    tally.failed(
                        self.attempt(&route, e.outcome(), latency, e.detail()),
                        &e,
                        None,
                    );
                    match e {
                        UpstreamError::Invalid { reason } => Err(SpokeError::Rejected {
                            error_type: reason.error_type,
                            attempts: tally.attempts,
                        }),
                        _ => Err(tally.into_error(deadline)),
                    }
                }
            };
        }
        Err(tally.into_error(deadline))
    }
}
