//! The spoke's error model, with one exhaustive mapping to gRPC codes and HTTP statuses.

use std::time::Duration;
use switchyard_proto::v1::Attempt;

#[derive(Debug, thiserror::Error)]
pub enum SpokeError {
    /// The request itself is malformed (caught before any upstream call).
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// The upstream refused the request (validation, access); not retried.
    #[error("rejected by upstream: {reason}")]
    Rejected {
        reason: String,
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
            Self::Unavailable { .. } | Self::Draining => tonic::Code::Unavailable,
            Self::DeadlineExceeded { .. } => tonic::Code::DeadlineExceeded,
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::Rejected { .. } => 400,
            Self::UnknownModel(_) => 404,
            Self::Exhausted { .. } => 429,
            Self::Unavailable { .. } | Self::Draining => 503,
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
            Self::Unavailable { .. } => ("api_error", "upstream_unavailable"),
            Self::Draining => ("api_error", "draining"),
            Self::DeadlineExceeded { .. } => ("timeout_error", "deadline_exceeded"),
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Exhausted { retry_after, .. } => Some(*retry_after),
            Self::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn attempts(&self) -> &[Attempt] {
        match self {
            Self::Rejected { attempts, .. }
            | Self::Exhausted { attempts, .. }
            | Self::Unavailable { attempts, .. }
            | Self::DeadlineExceeded { attempts } => attempts,
            Self::BadRequest(_) | Self::UnknownModel(_) | Self::Draining => &[],
        }
    }

    /// As a gRPC status, with `retry-after-ms` and `x-switchyard-attempts` metadata.
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
        st
    }
}
