//! The upstream error model: every failure an adapter sees becomes one [`UpstreamError`], whose
//! variant is the decision of whose fault it was (the caller's, the account's, or transient) —
//! made once, here and in the adapters, where the provider's own codes are known.

use std::fmt;
use std::time::Duration;
pub use switchyard_core::labels::{DenyReason, Fault};
use switchyard_proto::v1::Outcome;

/// Why an upstream call failed, in two parts: `error_type`, short and secret-free (the
/// upstream's error type or code, e.g. `ThrottlingException`, `insufficient_quota`, or the
/// adapter's own few words), which may be shown to callers and hubs; and `message`, the
/// upstream's own text, already [redacted](crate::redact::redact), for the spoke's log only.
#[derive(Clone, Debug, Default)]
pub struct Reason {
    pub error_type: String,
    pub message: String,
}

/// Longest `error_type` kept (characters).
const MAX_ERROR_TYPE_CHARS: usize = 64;

impl Reason {
    /// A reason from an upstream's answer: `error_type` is kept only if it is a short token
    /// (letters, digits, `_ - . :`; otherwise `unknown_error`), `message` is redacted of the
    /// `secrets` and of anything shaped like a key or a bearer token.
    pub fn upstream(error_type: &str, message: &str, secrets: &[&str]) -> Reason {
        let token = !error_type.is_empty()
            && error_type.chars().count() <= MAX_ERROR_TYPE_CHARS
            && error_type
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | ' '))
            && crate::redact::redact(error_type, secrets) == error_type;
        Reason {
            error_type: if token {
                error_type.to_owned()
            } else {
                "unknown_error".to_owned()
            },
            message: crate::redact::redact(message, secrets),
        }
    }

    /// The same reason with `secrets` (configured credentials) also removed from the message.
    pub fn scrub<S: AsRef<str>>(mut self, secrets: &[S]) -> Reason {
        let secrets: Vec<&str> = secrets.iter().map(AsRef::as_ref).collect();
        self.message = crate::redact::redact(&self.message, &secrets);
        self
    }
}

/// A reason made by the adapter itself (no upstream text): the whole text is the error type.
impl From<&str> for Reason {
    fn from(s: &str) -> Reason {
        Reason {
            error_type: s.to_owned(),
            message: String::new(),
        }
    }
}

impl From<String> for Reason {
    fn from(s: String) -> Reason {
        Reason {
            error_type: s,
            message: String::new(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(&self.error_type)
        } else {
            write!(f, "{}: {}", self.error_type, self.message)
        }
    }
}

/// Two reasons are the same when they read the same.
impl PartialEq for Reason {
    fn eq(&self, other: &Reason) -> bool {
        self.to_string() == other.to_string()
    }
}

/// An upstream failure, classified where it is made. Its [`Display`](fmt::Display) (for the
/// spoke's log) carries the redacted upstream message; [`UpstreamError::detail`] (for attempts,
/// hubs and callers) only the error type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    /// Transient: 429, `ThrottlingException`, `ModelNotReadyException`, quota exceeded, 529
    /// overloaded: cool the route down and try another.
    #[error("throttled: {reason}")]
    Throttled {
        reason: Reason,
        retry_after: Option<Duration>,
    },
    /// Transient: 5xx, connection refused/reset, a broken stream: try another route; counts
    /// toward the route's breaker.
    #[error("unavailable: {reason}")]
    Unavailable { reason: Reason },
    /// Transient: the attempt ran out of time.
    #[error("timed out")]
    Timeout,
    /// The caller's fault: malformed or refused content (400/413/422, `ValidationException`):
    /// never retried anywhere.
    #[error("rejected by upstream: {reason}")]
    Invalid { reason: Reason },
    /// The account's fault: credentials rejected or expired, model access not granted, model
    /// not found in this account, billing or credit exhausted. Another route (or account) may
    /// serve the request; this route (or its region, see [`DenyReason::scope`]) is denied.
    #[error("account denied ({}): {reason}", why.as_str())]
    Denied { why: DenyReason, reason: Reason },
}

impl UpstreamError {
    /// Whether another route may be tried.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Throttled { .. } | Self::Unavailable { .. } | Self::Timeout => true,
            Self::Denied { .. } => true,
            Self::Invalid { .. } => false,
        }
    }

    /// Whose fault it was.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Throttled { .. } | Self::Unavailable { .. } | Self::Timeout => Fault::Transient,
            Self::Invalid { .. } => Fault::Caller,
            Self::Denied { .. } => Fault::Account,
        }
    }

    /// How the attempt is reported in `Attempt.outcome`.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Throttled { .. } => Outcome::Throttled,
            Self::Unavailable { .. } => Outcome::Unavailable,
            Self::Timeout => Outcome::Timeout,
            Self::Invalid { .. } => Outcome::Invalid,
            Self::Denied { .. } => Outcome::Denied,
        }
    }

    /// Short, secret-free words for `Attempt.detail` and callers: the error type (for denials,
    /// prefixed with the reason), never the upstream's message.
    pub fn detail(&self) -> String {
        match self {
            Self::Throttled { reason, .. }
            | Self::Unavailable { reason }
            | Self::Invalid { reason } => reason.error_type.clone(),
            Self::Timeout => "timeout".to_owned(),
            Self::Denied { why, reason } => format!("{}: {}", why.as_str(), reason.error_type),
        }
    }

    pub fn unavailable(reason: impl Into<Reason>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
        }
    }

    /// The same error with `secrets` (the configured credentials) removed from its message.
    pub fn scrub<S: AsRef<str>>(self, secrets: &[S]) -> Self {
        if secrets.is_empty() {
            return self;
        }
        match self {
            Self::Throttled {
                reason,
                retry_after,
            } => Self::Throttled {
                reason: reason.scrub(secrets),
                retry_after,
            },
            Self::Unavailable { reason } => Self::Unavailable {
                reason: reason.scrub(secrets),
            },
            Self::Timeout => Self::Timeout,
            Self::Invalid { reason } => Self::Invalid {
                reason: reason.scrub(secrets),
            },
            Self::Denied { why, reason } => Self::Denied {
                why,
                reason: reason.scrub(secrets),
            },
        }
    }

    /// Classifies by HTTP status alone (transient or the caller's fault), for answers that
    /// carry nothing else. Adapters first recognise the account's faults from the status *and*
    /// the body ([`account_fault_of_status`] and their own codes).
    pub fn from_status(status: u16, reason: Reason, retry_after: Option<Duration>) -> Self {
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

/// The account fault an HTTP status means on the OpenAI and Anthropic APIs (and their
/// compatibles): 401 credentials, 402 billing, 403 model access, 404 model not found (the
/// adapters only call paths that exist, so a 404 names the model).
pub fn account_fault_of_status(status: u16) -> Option<DenyReason> {
    match status {
        401 => Some(DenyReason::Credentials),
        402 => Some(DenyReason::Billing),
        403 => Some(DenyReason::ModelAccess),
        404 => Some(DenyReason::ModelNotFound),
        _ => None,
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
    fn account_statuses() {
        assert_eq!(account_fault_of_status(401), Some(DenyReason::Credentials));
        assert_eq!(account_fault_of_status(402), Some(DenyReason::Billing));
        assert_eq!(account_fault_of_status(403), Some(DenyReason::ModelAccess));
        assert_eq!(
            account_fault_of_status(404),
            Some(DenyReason::ModelNotFound)
        );
        assert_eq!(account_fault_of_status(400), None);
        assert_eq!(account_fault_of_status(429), None);
    }

    #[test]
    fn reasons_keep_types_and_drop_secrets() {
        let r = Reason::upstream(
            "invalid_api_key",
            "Incorrect API key provided: sk-live-1234567890abcdef.",
            &[],
        );
        assert_eq!(r.error_type, "invalid_api_key");
        assert!(!r.message.contains("sk-live"), "{r}");
        // A type that is not a short token (or is a secret itself) is not kept.
        assert_eq!(
            Reason::upstream("sk-live-1234567890abcdef", "", &[]).error_type,
            "unknown_error"
        );
        assert_eq!(
            Reason::upstream("a\nb <script>", "", &[]).error_type,
            "unknown_error"
        );
        let e = UpstreamError::Denied {
            why: DenyReason::Billing,
            reason: Reason::upstream("insufficient_quota", "You exceeded your quota", &[]),
        };
        assert_eq!(e.detail(), "billing: insufficient_quota");
        assert_eq!(e.fault(), Fault::Account);
        assert!(e.is_retryable());
        assert!(e.to_string().contains("You exceeded your quota"));
        let scrubbed = UpstreamError::Invalid {
            reason: Reason::upstream("x", "the key is plainsecretvalue", &[]),
        }
        .scrub(&["plainsecretvalue"]);
        assert!(!scrubbed.to_string().contains("plainsecretvalue"));
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
