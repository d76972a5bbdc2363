//! Tenant quotas at the hub: admission before routing, settlement after the answer.
//!
//! The scope is `tenant:{name}` of the *authenticated* tenant, so no header a caller sends can
//! reach another tenant's quota. Tokens are reserved at admission (input estimate + the
//! request's `max_tokens` or `default_max_tokens`) and settled with the real usage; spend is
//! recorded from the served candidate's price. A hold that is dropped unsettled (the client
//! went away while the request was being routed or answered) is released on drop.

use crate::error::HubError;
use crate::model::{RouteTaken, Tenant};
use crate::state::Hub;
use switchyard_proto::v1 as pb;
use switchyard_quota::{Admission, Limits, RateState, Reservation};

/// An admitted request's hold on its tenant's quota: settled once by [`settle`], or — when
/// dropped unsettled, because the request's future was dropped (the client went away) — its
/// reservation is returned in the background.
#[derive(Debug)]
pub struct Admitted {
    hold: Option<Hold>,
    pub state: RateState,
}

#[derive(Debug)]
struct Hold {
    reservation: Reservation,
    limits: Limits,
    store: std::sync::Arc<dyn switchyard_quota::QuotaStore>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let Some(hold) = self.hold.take() else {
            return;
        };
        // A drop cannot wait on the store: release on the runtime (there while requests are
        // served; without one the reservation expires on its own).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = hold.store.release(&hold.reservation, &hold.limits).await {
                    tracing::warn!("quota store: {e}");
                }
            });
        }
    }
}

fn scope(tenant: &Tenant) -> String {
    format!("tenant:{}", tenant.name)
}

/// Admits a request against its tenant's limits, or refuses it with 429.
pub async fn admit(
    hub: &Hub,
    tenant: &Tenant,
    req: &pb::InferRequest,
) -> Result<Admitted, HubError> {
    if tenant.limits.is_unlimited() {
        return Ok(Admitted {
            hold: None,
            state: RateState::default(),
        });
    }
    let max_out = req
        .params
        .as_ref()
        .and_then(|p| p.max_tokens)
        .unwrap_or(hub.settings.default_max_tokens);
    let estimate = switchyard_proto::estimate_input_tokens(req) + u64::from(max_out);
    match hub
        .quota
        .admit(&scope(tenant), &tenant.limits, estimate)
        .await
    {
        Ok(Admission::Admitted { reservation, state }) => Ok(Admitted {
            hold: Some(Hold {
                reservation,
                limits: tenant.limits,
                store: hub.quota.clone(),
            }),
            state,
        }),
        Ok(Admission::Refused {
            limit,
            retry_after,
            state,
        }) => Err(HubError::TenantQuota {
            tenant: tenant.name.clone(),
            limit,
            retry_after,
            state,
        }),
        // The fallback store never fails; a bare one that does must not fail requests.
        Err(e) => {
            tracing::warn!(tenant = %tenant.name, "quota store: {e}; admitting");
            Ok(Admitted {
                hold: None,
                state: RateState::default(),
            })
        }
    }
}

/// Settles an admitted request with what it used and what it cost; `None` usage (the
/// request failed) returns the reserved tokens.
pub async fn settle(
    hub: &Hub,
    mut admitted: Admitted,
    usage: Option<&pb::Usage>,
    route: Option<&RouteTaken>,
) {
    let Some(Hold {
        reservation,
        limits,
        ..
    }) = admitted.hold.take()
    else {
        return;
    };
    let result = match usage {
        Some(u) => {
            let used = u64::from(u.input_tokens) + u64::from(u.output_tokens);
            let cost = route.map_or(0.0, |r| crate::model::cost_usd(r.price, u));
            hub.quota.settle(&reservation, &limits, used, cost).await
        }
        None => hub.quota.release(&reservation, &limits).await,
    };
    if let Err(e) = result {
        tracing::warn!("quota store: {e}");
    }
}

/// Counts a request the response cache answered against `requests_per_minute` only (no
/// tokens, no spend): it makes no call.
pub async fn admit_request_only(hub: &Hub, tenant: &Tenant) -> Result<RateState, HubError> {
    let Some(rpm) = tenant.limits.requests_per_minute else {
        return Ok(RateState::default());
    };
    let limits = Limits {
        requests_per_minute: Some(rpm),
        ..Default::default()
    };
    match hub.quota.admit(&scope(tenant), &limits, 0).await {
        Ok(Admission::Admitted { reservation, state }) => {
            if let Err(e) = hub.quota.settle(&reservation, &limits, 0, 0.0).await {
                tracing::warn!("quota store: {e}");
            }
            Ok(state)
        }
        Ok(Admission::Refused {
            limit,
            retry_after,
            state,
        }) => Err(HubError::TenantQuota {
            tenant: tenant.name.clone(),
            limit,
            retry_after,
            state,
        }),
        Err(e) => {
            tracing::warn!(tenant = %tenant.name, "quota store: {e}; admitting");
            Ok(RateState::default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cost_usd;

    #[test]
    fn cost_from_prices_per_million() {
        let u = pb::Usage {
            input_tokens: 1_000,
            output_tokens: 500,
            ..Default::default()
        };
        let c = cost_usd((Some(3.0), Some(15.0)), &u);
        assert!((c - 0.0105).abs() < 1e-12);
        assert_eq!(cost_usd((None, None), &u), 0.0);
    }
}
