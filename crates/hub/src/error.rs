//! The hub's error model and its one mapping to HTTP status and OpenAI error bodies.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One failed attempt at a spoke (kept for logs and the `x-switchyard-attempts` header).
#[derive(Debug, Clone)]
pub struct FailedAttempt {
    pub provider: String,
    pub model: String,
    pub spoke: String,
    pub kind: AttemptFailure,
    pub detail: String,
}

/// Why a spoke call failed, decided once where the gRPC status is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// RESOURCE_EXHAUSTED: the spoke's account is out of quota.
    Exhausted { retry_after_ms: Option<u64> },
    /// UNAVAILABLE from the spoke (its upstreams failed).
    Unavailable,
    /// The connection to the spoke failed or broke (spoke ejected at once).
    Transport,
    /// NOT_FOUND: the spoke does not serve the model.
    NotServed,
    /// The call ran past the request deadline.
    Timeout,
    /// The call ran past `attempt_timeout` while the request deadline had time left: the spoke
    /// is slow or hung; the next spoke is tried.
    AttemptTimeout,
}

impl AttemptFailure {
    /// Whether another spoke / candidate may be tried after this failure.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Exhausted { .. }
            | Self::Unavailable
            | Self::Transport
            | Self::NotServed
            | Self::AttemptTimeout => true,
            Self::Timeout => false,
        }
    }
}

/// Everything a client request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("model {0:?} is not allowed for this API key")]
    ModelNotAllowed(String),
    #[error("model {0:?} does not exist")]
    ModelNotFound(String),
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// A deny rule of the tenant's content policy matched (rule number, 0-based).
    #[error("the request was refused by the content policy (deny rule {0})")]
    ContentPolicy(usize),
    /// PII of these kinds was found and the tenant's policy blocks it. Never the values.
    #[error("the request contains data the content policy does not allow to leave: {}; remove it and retry", .0.join(", "))]
    PiiDetected(Vec<&'static str>),
    /// The upstream rejected the request (INVALID_ARGUMENT from a spoke); not retried.
    #[error("the model provider rejected the request: {0}")]
    UpstreamRejected(String),
    /// Every eligible route is out of quota.
    #[error("all routes for this model are out of quota")]
    Exhausted {
        retry_after: Option<Duration>,
        attempts: Vec<FailedAttempt>,
    },
    /// No healthy route, or every route failed.
    #[error("no route available for this model")]
    NoRoute { attempts: Vec<FailedAttempt> },
    #[error("the request deadline passed")]
    DeadlineExceeded { attempts: Vec<FailedAttempt> },
    /// The tenant is over one of its own limits (other tenants are unaffected).
    #[error("tenant {tenant:?} is over its {} limit; retry in {}s", limit.describe(), retry_after.as_millis().div_ceil(1000).max(1))]
    TenantQuota {
        tenant: String,
        limit: switchyard_quota::Limit,
        retry_after: Duration,
        state: switchyard_quota::RateState,
    },
    /// A path that does not exist (or an admin path while admin is off).
    #[error("unknown path")]
    NotFound,
    #[error("internal error")]
    Internal(String),
}

impl HubError {
    /// HTTP status. Exhaustive on purpose: a new variant forces a decision.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_)
            | Self::UpstreamRejected(_)
            | Self::ContentPolicy(_)
            | Self::PiiDetected(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::ModelNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::ModelNotFound(_) | Self::NotFound => StatusCode::NOT_FOUND,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Exhausted { .. } | Self::TenantQuota { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NoRoute { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `error.type` and `error.code`.
    pub fn type_and_code(&self) -> (&'static str, &'static str) {
        match self {
            Self::BadRequest(_) => ("invalid_request_error", "invalid_request"),
            Self::UpstreamRejected(_) => ("invalid_request_error", "upstream_rejected"),
            Self::Unauthorized => ("invalid_request_error", "invalid_api_key"),
            Self::ModelNotAllowed(_) => ("permission_error", "model_not_allowed"),
            Self::ModelNotFound(_) => ("invalid_request_error", "model_not_found"),
            Self::NotFound => ("invalid_request_error", "not_found"),
            Self::BodyTooLarge(_) => ("invalid_request_error", "request_too_large"),
            Self::ContentPolicy(_) => ("invalid_request_error", "content_policy_violation"),
            Self::PiiDetected(_) => ("invalid_request_error", "pii_detected"),
            Self::Exhausted { .. } => ("rate_limit_error", "rate_limit_exceeded"),
            Self::TenantQuota { limit, .. } => match limit {
                switchyard_quota::Limit::Requests | switchyard_quota::Limit::Tokens => {
                    ("rate_limit_error", "rate_limit_exceeded")
                }
                switchyard_quota::Limit::DailyBudget | switchyard_quota::Limit::MonthlyBudget => {
                    ("insufficient_quota", "budget_exceeded")
                }
            },
            Self::NoRoute { .. } => ("server_error", "no_route_available"),
            Self::DeadlineExceeded { .. } => ("server_error", "timeout"),
            Self::Internal(_) => ("server_error", "internal_error"),
        }
    }

    /// The client-facing message: never internal details.
    pub fn client_message(&self) -> String {
        match self {
            Self::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    /// `Retry-After` in whole seconds (rounded up), for 429 and 503.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Exhausted { retry_after, .. } => {
                Some(retry_after.map_or(1, |d| d.as_millis().div_ceil(1000).max(1) as u64))
            }
            Self::NoRoute { .. } => Some(1),
            Self::TenantQuota { retry_after, .. } => {
                Some(retry_after.as_millis().div_ceil(1000).max(1) as u64)
            }
            Self::BadRequest(_)
            | Self::Unauthorized
            | Self::ModelNotAllowed(_)
            | Self::ModelNotFound(_)
            | Self::NotFound
            | Self::BodyTooLarge(_)
            | Self::ContentPolicy(_)
            | Self::PiiDetected(_)
            | Self::UpstreamRejected(_)
            | Self::DeadlineExceeded { .. }
            | Self::Internal(_) => None,
        }
    }

    /// Attempts made before failing (for logs and the `x-switchyard-attempts` header).
    pub fn attempts(&self) -> &[FailedAttempt] {
        match self {
            Self::Exhausted { attempts, .. }
            | Self::NoRoute { attempts }
            | Self::DeadlineExceeded { attempts } => attempts,
            Self::BadRequest(_)
            | Self::Unauthorized
            | Self::ModelNotAllowed(_)
            | Self::ModelNotFound(_)
            | Self::NotFound
            | Self::BodyTooLarge(_)
            | Self::ContentPolicy(_)
            | Self::PiiDetected(_)
            | Self::UpstreamRejected(_)
            | Self::TenantQuota { .. }
            | Self::Internal(_) => &[],
        }
    }

    /// The OpenAI-shaped JSON body.
    pub fn body(&self) -> serde_json::Value {
        let (ty, code) = self.type_and_code();
        serde_json::json!({
            "error": { "message": self.client_message(), "type": ty, "code": code, "param": null }
        })
    }
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            HubError::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            other if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                tracing::warn!(status = status.as_u16(), attempts = ?other.attempts(), "request failed")
            }
            _ => {}
        }
        let mut resp = (status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after_secs()
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        if !self.attempts().is_empty()
            && let Ok(v) = HeaderValue::from_str(&self.attempts().len().to_string())
        {
            resp.headers_mut().insert("x-switchyard-attempts", v);
        }
        if let HubError::TenantQuota { state, .. } = &self {
            crate::headers::ratelimit(resp.headers_mut(), state);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_retry_after() {
        let e = HubError::Exhausted {
            retry_after: Some(Duration::from_millis(1500)),
            attempts: vec![],
        };
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after_secs(), Some(2));
        assert_eq!(HubError::Unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            HubError::ModelNotFound("x".into()).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            HubError::BodyTooLarge(1).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            HubError::DeadlineExceeded { attempts: vec![] }.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        let body = HubError::Internal("redis: secret-host:6379".into()).body();
        assert!(!body.to_string().contains("secret-host"));
        assert_eq!(body["error"]["type"], "server_error");
    }
}
