//! The hub's error model and its one table: each [`HubError`] variant's HTTP status and its name
//! in every client API's error shape ([`HubError::names`]), OpenAI's body by default.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One failed attempt at a spoke (kept for logs, the audit line and the `x-switchyard-attempts`
/// header).
#[derive(Debug, Clone)]
pub struct FailedAttempt {
    /// The provider pool (`[[providers]] name`).
    pub provider: String,
    pub model: String,
    /// The spoke's address (`ip:port`).
    pub spoke: String,
    /// The spoke's account, as its last `Describe` reported it (None before the first one).
    pub account: Option<String>,
    pub kind: AttemptFailure,
    /// For the hub's log only, never for a client.
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
    /// INVALID_ARGUMENT (and the other caller-fault codes): the upstream refused the request
    /// itself. Never retried: every route would refuse it.
    Rejected,
    /// FAILED_PRECONDITION with `x-switchyard-fault: account`: every route of that spoke's
    /// account refused for the account's reasons (credentials, model access, model not found,
    /// billing). Another account may serve: the spoke is routed around for this model until
    /// `retry_after_ms` (its next probe).
    Denied { retry_after_ms: Option<u64> },
}

impl AttemptFailure {
    /// Whether another spoke / candidate may be tried after this failure.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Exhausted { .. }
            | Self::Unavailable
            | Self::Transport
            | Self::NotServed
            | Self::AttemptTimeout
            | Self::Denied { .. } => true,
            Self::Timeout | Self::Rejected => false,
        }
    }
}

/// Everything a client request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{0}")]
    BadRequest(String),
    /// One request field is out of bounds (the hub's limits, or what any candidate model can
    /// take). `param` is the field's name in the request (OpenAI's `error.param`), `code`
    /// OpenAI's `error.code` (`invalid_value`, `context_length_exceeded`); the message names the
    /// field and the bound.
    #[error("{message}")]
    InvalidParam {
        param: std::borrow::Cow<'static, str>,
        code: &'static str,
        message: String,
    },
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
    /// The upstream refused the request itself (INVALID_ARGUMENT from a spoke); not retried.
    /// The client sees a fixed message and `error_type`, the upstream's error type (e.g.
    /// `ValidationException`) from the spoke's `x-switchyard-upstream-error-type` metadata when
    /// it sent one — never the upstream's own words. `attempts`: every attempt made, the
    /// refusing one (spoke, account) last.
    #[error("the model provider rejected the request{}", error_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
    UpstreamRejected {
        error_type: Option<String>,
        attempts: Vec<FailedAttempt>,
    },
    /// Every eligible route is out of quota.
    #[error("all routes for this model are out of quota")]
    Exhausted {
        retry_after: Option<Duration>,
        attempts: Vec<FailedAttempt>,
    },
    /// No healthy route, or every route failed.
    #[error("no route available for this model")]
    NoRoute { attempts: Vec<FailedAttempt> },
    /// Every route that was tried refused for its account's reasons (credentials, model access,
    /// billing): no account could serve the model. 503, never the caller's fault.
    #[error("no account could serve this model; retry later")]
    AccountsDenied { attempts: Vec<FailedAttempt> },
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
    /// The path exists but not with this method (the response carries `Allow`).
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("internal error")]
    Internal(String),
}

/// How one error is named in each client API's error shape, and its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorNames<'a> {
    pub status: StatusCode,
    /// OpenAI's `error.type` and `error.code`.
    pub openai: (&'static str, &'static str),
    /// Anthropic's `error.type`.
    pub anthropic: &'static str,
    /// Bedrock's exception name (`x-amzn-ErrorType`) and its status, which differs from the
    /// hub's where Bedrock's own does (bad credentials → 403, a model timeout → 408).
    pub bedrock: (&'static str, StatusCode),
    /// The request field the error is about (OpenAI's `error.param`), when it is about one.
    pub param: Option<&'a str>,
}

impl HubError {
    /// The one table: status and per-API names. Exhaustive on purpose (no `_` arm): a new
    /// variant forces a decision for every surface.
    pub fn names(&self) -> ErrorNames<'_> {
        use StatusCode as S;
        let n = |status: S, openai, anthropic, bedrock: &'static str, bedrock_status| ErrorNames {
            status,
            openai,
            anthropic,
            bedrock: (bedrock, bedrock_status),
            param: None,
        };
        const INVALID: &str = "invalid_request_error";
        match self {
            Self::BadRequest(_) => n(
                S::BAD_REQUEST,
                (INVALID, "invalid_request"),
                INVALID,
                "ValidationException",
                S::BAD_REQUEST,
            ),
            Self::InvalidParam { param, code, .. } => ErrorNames {
                param: Some(param.as_ref()),
                ..n(
                    S::BAD_REQUEST,
                    (INVALID, code),
                    INVALID,
                    "ValidationException",
                    S::BAD_REQUEST,
                )
            },
            Self::UpstreamRejected { .. } => n(
                S::BAD_REQUEST,
                (INVALID, "upstream_rejected"),
                INVALID,
                "ValidationException",
                S::BAD_REQUEST,
            ),
            Self::ContentPolicy(_) => n(
                S::BAD_REQUEST,
                (INVALID, "content_policy_violation"),
                INVALID,
                "ValidationException",
                S::BAD_REQUEST,
            ),
            Self::PiiDetected(_) => n(
                S::BAD_REQUEST,
                (INVALID, "pii_detected"),
                INVALID,
                "ValidationException",
                S::BAD_REQUEST,
            ),
            Self::Unauthorized => n(
                S::UNAUTHORIZED,
                (INVALID, "invalid_api_key"),
                "authentication_error",
                "AccessDeniedException",
                S::FORBIDDEN,
            ),
            Self::ModelNotAllowed(_) => n(
                S::FORBIDDEN,
                ("permission_error", "model_not_allowed"),
                "permission_error",
                "AccessDeniedException",
                S::FORBIDDEN,
            ),
            Self::ModelNotFound(_) => n(
                S::NOT_FOUND,
                (INVALID, "model_not_found"),
                "not_found_error",
                "ResourceNotFoundException",
                S::NOT_FOUND,
            ),
            Self::NotFound => n(
                S::NOT_FOUND,
                (INVALID, "not_found"),
                "not_found_error",
                "UnknownOperationException",
                S::NOT_FOUND,
            ),
            Self::MethodNotAllowed => n(
                S::METHOD_NOT_ALLOWED,
                (INVALID, "method_not_allowed"),
                INVALID,
                "UnknownOperationException",
                S::METHOD_NOT_ALLOWED,
            ),
            Self::BodyTooLarge(_) => n(
                S::PAYLOAD_TOO_LARGE,
                (INVALID, "request_too_large"),
                "request_too_large",
                "ValidationException",
                S::PAYLOAD_TOO_LARGE,
            ),
            Self::Exhausted { .. } => n(
                S::TOO_MANY_REQUESTS,
                ("rate_limit_error", "rate_limit_exceeded"),
                "rate_limit_error",
                "ThrottlingException",
                S::TOO_MANY_REQUESTS,
            ),
            Self::TenantQuota { limit, .. } => n(
                S::TOO_MANY_REQUESTS,
                match limit {
                    switchyard_quota::Limit::Requests | switchyard_quota::Limit::Tokens => {
                        ("rate_limit_error", "rate_limit_exceeded")
                    }
                    switchyard_quota::Limit::DailyBudget
                    | switchyard_quota::Limit::MonthlyBudget => {
                        ("insufficient_quota", "budget_exceeded")
                    }
                },
                "rate_limit_error",
                "ThrottlingException",
                S::TOO_MANY_REQUESTS,
            ),
            Self::NoRoute { .. } => n(
                S::SERVICE_UNAVAILABLE,
                ("server_error", "no_route_available"),
                "overloaded_error",
                "ServiceUnavailableException",
                S::SERVICE_UNAVAILABLE,
            ),
            Self::AccountsDenied { .. } => n(
                S::SERVICE_UNAVAILABLE,
                ("server_error", "no_account_available"),
                "overloaded_error",
                "ServiceUnavailableException",
                S::SERVICE_UNAVAILABLE,
            ),
            Self::DeadlineExceeded { .. } => n(
                S::GATEWAY_TIMEOUT,
                ("server_error", "timeout"),
                "timeout_error",
                "ModelTimeoutException",
                S::REQUEST_TIMEOUT,
            ),
            Self::Internal(_) => n(
                S::INTERNAL_SERVER_ERROR,
                ("server_error", "internal_error"),
                "api_error",
                "InternalServerException",
                S::INTERNAL_SERVER_ERROR,
            ),
        }
    }

    /// HTTP status (from [`HubError::names`]).
    pub fn status(&self) -> StatusCode {
        self.names().status
    }

    /// OpenAI's `error.type` and `error.code` (from [`HubError::names`]).
    pub fn type_and_code(&self) -> (&'static str, &'static str) {
        self.names().openai
    }

    /// The client-facing message: never internal details, never an upstream's words.
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
            Self::NoRoute { .. } | Self::AccountsDenied { .. } => Some(1),
            Self::TenantQuota { retry_after, .. } => {
                Some(retry_after.as_millis().div_ceil(1000).max(1) as u64)
            }
            Self::BadRequest(_)
            | Self::InvalidParam { .. }
            | Self::Unauthorized
            | Self::ModelNotAllowed(_)
            | Self::ModelNotFound(_)
            | Self::NotFound
            | Self::MethodNotAllowed
            | Self::BodyTooLarge(_)
            | Self::ContentPolicy(_)
            | Self::PiiDetected(_)
            | Self::UpstreamRejected { .. }
            | Self::DeadlineExceeded { .. }
            | Self::Internal(_) => None,
        }
    }

    /// Attempts made before failing (for logs, the audit line and the `x-switchyard-attempts`
    /// header).
    pub fn attempts(&self) -> &[FailedAttempt] {
        match self {
            Self::Exhausted { attempts, .. }
            | Self::NoRoute { attempts }
            | Self::AccountsDenied { attempts }
            | Self::DeadlineExceeded { attempts }
            | Self::UpstreamRejected { attempts, .. } => attempts,
            Self::BadRequest(_)
            | Self::InvalidParam { .. }
            | Self::Unauthorized
            | Self::ModelNotAllowed(_)
            | Self::ModelNotFound(_)
            | Self::NotFound
            | Self::MethodNotAllowed
            | Self::BodyTooLarge(_)
            | Self::ContentPolicy(_)
            | Self::PiiDetected(_)
            | Self::TenantQuota { .. }
            | Self::Internal(_) => &[],
        }
    }

    /// The OpenAI-shaped JSON body.
    pub fn body(&self) -> serde_json::Value {
        let (ty, code) = self.type_and_code();
        serde_json::json!({
            "error": { "message": self.client_message(), "type": ty, "code": code, "param": self.names().param }
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

    #[test]
    fn one_table_names_every_shape() {
        let e = HubError::InvalidParam {
            param: "max_tokens".into(),
            code: "invalid_value",
            message: "max_tokens: too large".into(),
        };
        let n = e.names();
        assert_eq!(n.status, StatusCode::BAD_REQUEST);
        assert_eq!(n.openai, ("invalid_request_error", "invalid_value"));
        assert_eq!(n.param, Some("max_tokens"));
        assert_eq!(n.bedrock, ("ValidationException", StatusCode::BAD_REQUEST));
        assert_eq!(e.body()["error"]["param"], "max_tokens");
        let n = HubError::MethodNotAllowed.names();
        assert_eq!(n.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(n.anthropic, "invalid_request_error");
        assert_eq!(
            n.bedrock,
            ("UnknownOperationException", StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(
            HubError::Unauthorized.names().bedrock.1,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            HubError::DeadlineExceeded { attempts: vec![] }
                .names()
                .anthropic,
            "timeout_error"
        );
        assert_eq!(
            HubError::NotFound.body()["error"]["param"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn rejection_says_only_the_upstream_error_type() {
        let e = HubError::UpstreamRejected {
            error_type: Some("ValidationException".into()),
            attempts: vec![],
        };
        assert_eq!(
            e.client_message(),
            "the model provider rejected the request (ValidationException)"
        );
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = HubError::UpstreamRejected {
            error_type: None,
            attempts: vec![],
        };
        assert_eq!(
            e.client_message(),
            "the model provider rejected the request"
        );
    }
}
