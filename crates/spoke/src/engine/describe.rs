//! `Describe` and `/healthz`: the state and headroom of every route right now (a denied route
//! with its reason).

use super::Engine;
use crate::routes::{RouteState, Status};
use switchyard_proto::v1::{DescribeResponse, ModelStatus, RegionStatus};
use switchyard_quota::RateState;

impl Engine {
    /// State of every route, for `Describe` and `/healthz`. Asks the quota store for each
    /// limited route's allowance (one round trip per route with Redis).
    pub async fn describe(&self) -> DescribeResponse {
        let mut serving = false;
        let mut headroom: f64 = 0.0;
        let table = self.table.load_full();
        let mut models = Vec::with_capacity(table.models.len());
        for (m, routes) in table.models.iter().zip(&table.routes) {
            let mut regions = Vec::with_capacity(routes.len());
            for r in routes {
                let factor = r.state.lock().rate_factor(std::time::Instant::now());
                let quota = if r.limits.is_unlimited() {
                    RateState::default()
                } else {
                    self.store
                        .peek(&r.scope, &r.limits.scaled(factor))
                        .await
                        .unwrap_or_default()
                };
                let s: Status = r.state.lock().status(&quota, std::time::Instant::now());
                if RouteState::may_serve(s.state, s.retry_in) {
                    serving = true;
                }
                headroom = headroom.max(s.headroom);
                regions.push(RegionStatus {
                    region: r.region.clone(),
                    state: s.state as i32,
                    headroom: s.headroom,
                    requests_remaining: s.requests_remaining,
                    tokens_remaining: s.tokens_remaining,
                    retry_after_ms: s.retry_in.as_millis() as u64,
                    denied_reason: s
                        .denied
                        .as_ref()
                        .map(|(why, _)| why.as_str().to_owned())
                        .unwrap_or_default(),
                    denied_error_type: s.denied.map(|(_, ty)| ty).unwrap_or_default(),
                });
            }
            models.push(ModelStatus {
                id: m.id.clone(),
                capabilities: Some(m.capabilities()),
                regions,
            });
        }
        let serving = serving && self.credentials_ok() && !self.is_draining();
        DescribeResponse {
            provider: self.provider.to_owned(),
            account: self.account.clone(),
            models,
            headroom: if serving { headroom } else { 0.0 },
            serving,
            draining: self.is_draining(),
        }
    }

    /// Whether the quota store's shared backend (Redis) answers; true for the embedded store.
    pub fn quota_store_healthy(&self) -> bool {
        self.store.is_shared_healthy()
    }
}
