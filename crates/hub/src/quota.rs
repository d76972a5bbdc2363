//! Tenant quotas at the hub: admission before routing, settlement after the answer.
//!
//! The scope is `tenant:{name}` of the *authenticated* tenant, so no header a caller sends can
//! reach another tenant's quota. Tokens are reserved at admission (input estimate + the
//! request's `max_tokens` or `default_max_tokens`) and settled with the real usage; spend is
//! recorded from the served candidate's price.

use crate::config::Tenant;
use crate::error::HubError;
use crate::hub::{Hub, RouteTaken};
use axum::http::{HeaderMap, HeaderValue};
use std::time::Duration;
use switchyard_proto::v1 as pb;
use switchyard_quota::{Admission, Limits, RateState, Reservation};

/// An admitted request's hold on its tenant's quota.
#[derive(Debug)]
pub struct Admitted {
    hold: Option<(Reservation, Limits)>,
    pub state: RateState,
}

fn scope(tenant: &Tenant) -> String {
    format!("tenant:{}", tenant.name)
}

impl Hub {
    /// Admits a request against its tenant's limits, or refuses it with 429.
    pub async fn admit(
        &self,
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
            .unwrap_or(self.settings.default_max_tokens);
        let estimate = switchyard_proto::estimate_input_tokens(req) + u64::from(max_out);
        match self
            .quota
            .admit(&scope(tenant), &tenant.limits, estimate)
            .await
        {
            Ok(Admission::Admitted { reservation, state }) => Ok(Admitted {
                hold: Some((reservation, tenant.limits)),
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
        &self,
        admitted: Admitted,
        usage: Option<&pb::Usage>,
        route: Option<&RouteTaken>,
    ) {
        let Some((reservation, limits)) = admitted.hold else {
            return;
        };
        let result = match usage {
            Some(u) => {
                let used = u64::from(u.input_tokens) + u64::from(u.output_tokens);
                let cost = route.map_or(0.0, |r| cost_usd(r.price, u));
                self.quota.settle(&reservation, &limits, used, cost).await
            }
            None => self.quota.release(&reservation, &limits).await,
        };
        if let Err(e) = result {
            tracing::warn!("quota store: {e}");
        }
    }
}

/// Cost in USD of `usage` at (input, output) USD-per-million-token prices.
pub fn cost_usd(price: (Option<f64>, Option<f64>), usage: &pb::Usage) -> f64 {
    let (pin, pout) = price;
    (f64::from(usage.input_tokens) * pin.unwrap_or(0.0)
        + f64::from(usage.output_tokens) * pout.unwrap_or(0.0))
        / 1_000_000.0
}

/// OpenAI's duration format for `x-ratelimit-reset-*`: `250ms`, `12s`, `1m5s`.
fn reset_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64().ceil() as u64;
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{}s", secs / 60, secs % 60)
    }
}

/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, as OpenAI sends them.
pub fn ratelimit_headers(h: &mut HeaderMap, state: &RateState) {
    for (kind, w) in [("requests", state.requests), ("tokens", state.tokens)] {
        let Some(w) = w else { continue };
        for (name, value) in [
            (format!("x-ratelimit-limit-{kind}"), w.limit.to_string()),
            (
                format!("x-ratelimit-remaining-{kind}"),
                w.remaining.to_string(),
            ),
            (format!("x-ratelimit-reset-{kind}"), reset_text(w.reset)),
        ] {
            if let (Ok(n), Ok(v)) = (
                axum::http::HeaderName::try_from(name),
                HeaderValue::from_str(&value),
            ) {
                h.insert(n, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_from_prices_per_million() {
        let u = pb::Usage {
            input_tokens: 1_000,
            output_tokens: 500,
        };
        let c = cost_usd((Some(3.0), Some(15.0)), &u);
        assert!((c - 0.0105).abs() < 1e-12);
        assert_eq!(cost_usd((None, None), &u), 0.0);
    }

    #[test]
    fn reset_format() {
        assert_eq!(reset_text(Duration::from_millis(250)), "250ms");
        assert_eq!(reset_text(Duration::from_millis(1_200)), "2s");
        assert_eq!(reset_text(Duration::from_secs(65)), "1m5s");
    }
}
