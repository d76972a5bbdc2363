//! Whose fault a Bedrock error is, decided from its error code and, where one code covers
//! several causes, its message ([`classify_code`]); [`sdk_error`] unwraps the SDK's error.

use crate::error::{account_fault_of_status, parse_retry_after};
use crate::{DenyReason, Reason, UpstreamError};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use std::time::Duration;

/// Classifies a Bedrock error by its error code (`x-amzn-errortype`; the same names appear as
/// operation errors and as event-stream exception frames) and, where one code covers several
/// causes, its message:
///
/// | code | whose fault |
/// | --- | --- |
/// | `ThrottlingException`, `ServiceQuotaExceededException`, `ModelNotReadyException`, `TooManyRequestsException` | transient: throttled |
/// | `ModelTimeoutException` | transient: timeout |
/// | `ServiceUnavailableException`, `InternalServerException`, `InternalFailure`, `ModelErrorException`, `ModelStreamErrorException` | transient: unavailable |
/// | `UnrecognizedClientException`, `ExpiredTokenException`, `InvalidClientTokenId`, `InvalidSignatureException`, `IncompleteSignature`, `MissingAuthenticationToken`, `SignatureDoesNotMatch`, `RequestExpired` | account: credentials |
/// | `AccessDeniedException` (payment or billing named in the message) | account: billing |
/// | `AccessDeniedException` (otherwise), `NotAuthorized`, `MPAgreementBeingCreated`, `BadCScoreException` | account: model access |
/// | `ResourceNotFoundException` | account: model not found |
/// | `ValidationException` "The provided model identifier is invalid" | account: model not found |
/// | `ValidationException` "… with on-demand throughput isn't supported" | account: model access |
/// | `ValidationException` (otherwise) | the caller's |
/// | anything else | by status: 401 credentials, 402 billing, 403 model access, 404 model not found, else [`UpstreamError::from_status`] |
pub(super) fn classify_code(
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
    retry_after: Option<Duration>,
) -> UpstreamError {
    let code_s = code.unwrap_or("UnknownError");
    let reason = Reason::upstream(code_s, message.unwrap_or(""), &[]);
    let text = message.unwrap_or("").to_ascii_lowercase();
    let denied = |why| UpstreamError::Denied {
        why,
        reason: reason.clone(),
    };
    let c = code.map(|c| c.trim_end_matches("Exception").to_ascii_lowercase());
    match c.as_deref() {
        Some("throttling" | "modelnotready" | "servicequotaexceeded" | "toomanyrequests") => {
            UpstreamError::Throttled {
                reason,
                retry_after,
            }
        }
        Some("modeltimeout") => UpstreamError::Timeout,
        Some(
            "serviceunavailable" | "internalserver" | "internalfailure" | "modelerror"
            | "modelstreamerror",
        ) => UpstreamError::Unavailable { reason },
        Some(
            "unrecognizedclient"
            | "expiredtoken"
            | "invalidclienttokenid"
            | "invalidsignature"
            | "incompletesignature"
            | "missingauthenticationtoken"
            | "signaturedoesnotmatch"
            | "requestexpired",
        ) => denied(DenyReason::Credentials),
        Some("accessdenied")
            if text.contains("payment") || text.contains("billing") || text.contains("invoice") =>
        {
            denied(DenyReason::Billing)
        }
        Some("accessdenied" | "notauthorized" | "mpagreementbeingcreated" | "badcscore") => {
            denied(DenyReason::ModelAccess)
        }
        Some("resourcenotfound") => denied(DenyReason::ModelNotFound),
        Some("validation") if text.contains("model identifier is invalid") => {
            denied(DenyReason::ModelNotFound)
        }
        Some("validation") if text.contains("on-demand throughput") => {
            denied(DenyReason::ModelAccess)
        }
        Some("validation") => UpstreamError::Invalid { reason },
        _ => match status {
            Some(s) => match account_fault_of_status(s) {
                Some(why) => denied(why),
                None => UpstreamError::from_status(s, reason, retry_after),
            },
            None => UpstreamError::Unavailable { reason },
        },
    }
}

pub(super) fn sdk_error<E: ProvideErrorMetadata>(
    err: SdkError<E, aws_sdk_bedrockruntime::config::http::HttpResponse>,
) -> UpstreamError {
    match err {
        SdkError::ServiceError(se) => {
            let raw = se.raw();
            let status = raw.status().as_u16();
            let retry_after = raw
                .headers()
                .get("retry-after")
                .and_then(|v| parse_retry_after(v, false));
            let e = se.err();
            classify_code(e.code(), e.message(), Some(status), retry_after)
        }
        SdkError::TimeoutError(_) => UpstreamError::Timeout,
        SdkError::DispatchFailure(f) => {
            if f.is_timeout() {
                UpstreamError::Timeout
            } else {
                UpstreamError::unavailable("connection failed")
            }
        }
        SdkError::ConstructionFailure(_) => super::invalid("request could not be built".into()),
        _ => UpstreamError::unavailable("malformed upstream response"),
    }
}
