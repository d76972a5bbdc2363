use std::time::Duration;
use switchyard_proto::v1::Outcome;

/// An upstream failure, classified where it is made. Reasons are short and secret-free (the
/// upstream's error type and message, never a key or a header).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    /// 429, `ThrottlingException`, `ModelNotReadyException`, quota exceeded: cool the route
    /// down and try another.
    #[error("throttled: {reason}")]
    Throttled {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// 5xx, connection refused/reset, a broken stream: try another route; counts toward the
    /// route's breaker.
    #[error("unavailable: {reason}")]
    Unavailable { reason: String },
    /// The attempt ran out of time.
    #[error("timed out")]
    Timeout,
    /// 400/401/403/404/422, `ValidationException`, `AccessDeniedException`: the request itself
    /// is refused; never retried anywhere.
    #[error("rejected by upstream: {reason}")]
    Invalid { reason: String },
}

impl UpstreamError {
    /// Whether another route may be tried.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Throttled { .. } | Self::Unavailable { .. } | Self::Timeout => true,
            Self::Invalid { .. } => false,
        }
    }

    /// How the attempt is reported in `Attempt.outcome`.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Throttled { .. } => Outcome::Throttled,
            Self::Unavailable { .. } => Outcome::Unavailable,
            Self::Timeout => Outcome::Timeout,
            Self::Invalid { .. } => Outcome::Invalid,
        }
    }

    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
        }
    }

    /// Classifies by HTTP status, for adapters that only have a status and a message.
    pub fn from_status(status: u16, reason: String, retry_after: Option<Duration>) -> Self {
        match status {
            429 => Self::Throttled {
                reason,
                retry_after,
            },
            408 | 504 => Self::Timeout,
            400..=499 => Self::Invalid { reason },
            _ => Self::Unavailable { reason },
        }
    }
}

/// Parses a `Retry-After` value given in seconds (the form model APIs use), or a
/// `retry-after-ms` value when `millis` is set.
pub fn parse_retry_after(value: &str, millis: bool) -> Option<Duration> {
    let v: f64 = value.trim().parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    Some(if millis {
        Duration::from_secs_f64(v / 1000.0)
    } else {
        Duration::from_secs_f64(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert!(matches!(
            UpstreamError::from_status(429, "x".into(), None),
            UpstreamError::Throttled { .. }
        ));
        assert!(matches!(
            UpstreamError::from_status(400, "x".into(), None),
            UpstreamError::Invalid { .. }
        ));
        assert!(matches!(
            UpstreamError::from_status(503, "x".into(), None),
            UpstreamError::Unavailable { .. }
        ));
        assert_eq!(
            UpstreamError::from_status(504, "x".into(), None),
            UpstreamError::Timeout
        );
        assert!(!UpstreamError::from_status(401, "x".into(), None).is_retryable());
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2", false), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("1500", true),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after("soon", false), None);
        assert_eq!(parse_retry_after("-1", false), None);
    }
}
