//! The spoke's error model, with one exhaustive mapping to gRPC codes and HTTP statuses.

use std::time::Duration;
use switchyard_core::labels::{DenyReason, Fault};
use switchyard_proto::v1::Attempt;

/// The message of [`SpokeError::Rejected`]: fixed, plus the upstream's error type — never the
/// upstream's own text, which may carry the account's billing state or an echoed key.
pub const REJECTED_MESSAGE: &str = "the model provider rejected the request";

#[derive(Debug, thiserror::Error)]
pub enum SpokeError {
    /// The request itself is malformed (caught before any upstream call).
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// The upstream refused the request's content (the caller's fault); not retried.
    /// `error_type` is the upstream's error type (`ValidationException`,
    /// `invalid_request_error`), or the adapter's own words for what it cannot express.
    #[error("{REJECTED_MESSAGE} ({error_type})")]
    Rejected {
        error_type: String,
        attempts: Vec<Attempt>,
    },
    /// Every route of the plan failed or was skipped for the account's reasons (credentials,
    /// model access, model not found, billing): another account may serve the request.
    /// `reasons`: the distinct reasons in plan order; `retry_after`: until the earliest denied
    /// route is probed again.
    #[error(
        "no route of this account may serve the request ({})",
        reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
    )]
    AccountDenied {
        reasons: Vec<DenyReason>,
        retry_after: Duration,
        attempts: Vec<Attempt>,
    },
    /// None of the requested models is served here.
    #[error("none of the requested models is served by this spoke: {0}")]
    UnknownModel(String),
    /// Every route is out of quota or cooling down.
    #[error("all routes exhausted; retry in {}ms", retry_after.as_millis())]
    Exhausted {
        retry_after: Duration,
        attempts: Vec<Attempt>,
    },
    /// Every route failed (5xx, connection, breaker open).
    #[error("all routes unavailable")]
    Unavailable {
        retry_after: Option<Duration>,
        attempts: Vec<Attempt>,
    },
    #[error("deadline exceeded")]
    DeadlineExceeded { attempts: Vec<Attempt> },
    /// The spoke is shutting down.
    #[error("spoke is draining")]
    Draining,
}

impl SpokeError {
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Self::BadRequest(_) | Self::Rejected { .. } => tonic::Code::InvalidArgument,
            Self::UnknownModel(_) => tonic::Code::NotFound,
            Self::Exhausted { .. } => tonic::Code::ResourceExhausted,
            Self::AccountDenied { .. } => tonic::Code::FailedPrecondition,
            Self::Unavailable { .. } | Self::Draining => tonic::Code::Unavailable,
            Self::DeadlineExceeded { .. } => tonic::Code::DeadlineExceeded,
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::Rejected { .. } => 400,
            Self::UnknownModel(_) => 404,
            Self::Exhausted { .. } => 429,
            // No account route could serve: an outage from the caller's side, not its fault.
            Self::AccountDenied { .. } | Self::Unavailable { .. } | Self::Draining => 503,
            Self::DeadlineExceeded { .. } => 504,
        }
    }

    /// OpenAI-style `error.type` / `error.code`.
    pub fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Self::BadRequest(_) => ("invalid_request_error", "invalid_request"),
            Self::Rejected { .. } => ("invalid_request_error", "upstream_rejected"),
            Self::UnknownModel(_) => ("invalid_request_error", "model_not_found"),
            Self::Exhausted { .. } => ("rate_limit_error", "quota_exhausted"),
            Self::AccountDenied { .. } => ("api_error", "account_denied"),
            Self::Unavailable { .. } => ("api_error", "upstream_unavailable"),
            Self::Draining => ("api_error", "draining"),
            Self::DeadlineExceeded { .. } => ("timeout_error", "deadline_exceeded"),
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Exhausted { retry_after, .. } | Self::AccountDenied { retry_after, .. } => {
                Some(*retry_after)
            }
            Self::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn attempts(&self) -> &[Attempt] {
        match self {
            Self::Rejected { attempts, .. }
            | Self::AccountDenied { attempts, .. }
            | Self::Exhausted { attempts, .. }
            | Self::Unavailable { attempts, .. }
            | Self::DeadlineExceeded { attempts } => attempts,
            Self::BadRequest(_) | Self::UnknownModel(_) | Self::Draining => &[],
        }
    }

    /// Whose fault the error is, where that is what the caller must act on: the caller's
    /// (malformed or refused request) or the account's (every route denied).
    pub fn fault(&self) -> Option<Fault> {
        match self {
            Self::BadRequest(_) | Self::Rejected { .. } => Some(Fault::Caller),
            Self::AccountDenied { .. } => Some(Fault::Account),
            Self::UnknownModel(_)
            | Self::Exhausted { .. }
            | Self::Unavailable { .. }
            | Self::DeadlineExceeded { .. }
            | Self::Draining => None,
        }
    }

    /// As a gRPC status, with `retry-after-ms`, `x-switchyard-attempts`, and for the caller's
    /// and the account's faults `x-switchyard-fault` (plus `x-switchyard-denied`, the reasons).
    pub fn to_status(&self) -> tonic::Status {
        let mut st = tonic::Status::new(self.grpc_code(), self.to_string());
        if let Some(ra) = self.retry_after()
            && let Ok(v) = ra.as_millis().to_string().parse()
        {
            st.metadata_mut()
                .insert(switchyard_proto::RETRY_AFTER_MS, v);
        }
        if let Ok(v) = self.attempts().len().to_string().parse() {
            st.metadata_mut().insert(switchyard_proto::ATTEMPTS, v);
        }
        if matches!(self, Self::Draining) {
            st.metadata_mut().insert(
                switchyard_proto::DRAINING,
                tonic::metadata::MetadataValue::from_static("1"),
            );
        }
        if let Some(fault) = self.fault() {
            let v = match fault {
                Fault::Account => switchyard_proto::FAULT_ACCOUNT,
                Fault::Caller | Fault::Transient => switchyard_proto::FAULT_CALLER,
            };
            st.metadata_mut().insert(
                switchyard_proto::FAULT,
                tonic::metadata::MetadataValue::from_static(v),
            );
        }
        if let Self::Rejected { error_type, .. } = self
            && let Ok(v) = error_type.parse()
        {
            st.metadata_mut()
                .insert(switchyard_proto::UPSTREAM_ERROR_TYPE, v);
        }
        if let Self::AccountDenied { reasons, .. } = self {
            let list: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
            if let Ok(v) = list.join(",").parse() {
                st.metadata_mut().insert(switchyard_proto::DENIED, v);
            }
        }
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_and_caller_faults_carry_their_contract() {
        let e = SpokeError::AccountDenied {
            reasons: vec![DenyReason::Credentials, DenyReason::ModelAccess],
            retry_after: Duration::from_millis(1500),
            attempts: vec![Attempt::default(), Attempt::default()],
        };
        let st = e.to_status();
        assert_eq!(st.code(), tonic::Code::FailedPrecondition);
        let md = st.metadata();
        assert_eq!(md.get(switchyard_proto::FAULT).unwrap(), "account");
        assert_eq!(
            md.get(switchyard_proto::DENIED).unwrap(),
            "credentials,model_access"
        );
        assert_eq!(md.get(switchyard_proto::RETRY_AFTER_MS).unwrap(), "1500");
        assert_eq!(md.get(switchyard_proto::ATTEMPTS).unwrap(), "2");
        assert_eq!(e.http_status(), 503);

        let e = SpokeError::Rejected {
            error_type: "ValidationException".into(),
            attempts: vec![],
        };
        let st = e.to_status();
        assert_eq!(st.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            st.message(),
            "the model provider rejected the request (ValidationException)"
        );
        assert_eq!(
            st.metadata().get(switchyard_proto::FAULT).unwrap(),
            "caller"
        );
        assert!(st.metadata().get(switchyard_proto::DENIED).is_none());
        let st = SpokeError::Unavailable {
            retry_after: None,
            attempts: vec![],
        }
        .to_status();
        assert!(st.metadata().get(switchyard_proto::FAULT).is_none());
    }
}
