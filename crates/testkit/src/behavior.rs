//! What a fake upstream does with a call: [`Behavior`] and the upstream error kinds ([`ErrorKind`]).
//!
//! Behaviors are looked up per call: the rule set for the (percent-decoded) model id, else the
//! default rule, else a *model-name directive* (see [`directive_for_model`]), else [`Behavior::Ok`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a fake answers a call. JSON form (for the control endpoint): internally tagged by `kind`,
/// e.g. `{"kind":"ok"}`, `{"kind":"error","error":"Throttling"}`,
/// `{"kind":"throttle_retry_after","secs":2}`, `{"kind":"fail_first","n":2,"error":"ServiceUnavailable"}`,
/// `{"kind":"account_fault","fault":"billing"}`, `{"kind":"echo_auth"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Behavior {
    /// Normal completion.
    Ok,
    /// Fail every call this way.
    Error {
        /// The upstream error.
        error: ErrorKind,
    },
    /// Throttle with a `Retry-After: secs` header (OpenAI 429; Bedrock `ThrottlingException` 429).
    ThrottleRetryAfter {
        /// Value of the `Retry-After` header.
        secs: u64,
    },
    /// Sleep, then answer normally.
    Slow {
        /// Delay before the response headers.
        ms: u64,
    },
    /// The first `n` calls (per model, counted since the rule was set or the counters were
    /// reset) fail with `error`, later calls succeed.
    FailFirst {
        /// Number of failing calls.
        n: u32,
        /// The error of the failing calls.
        error: ErrorKind,
    },
    /// Streams send `chunks` content chunks and then fail (Bedrock: a `modelStreamErrorException`
    /// frame; OpenAI: the connection is aborted without `[DONE]`). Non-streaming calls get a 500.
    StreamFailAfter {
        /// Content chunks sent before the failure.
        chunks: u32,
    },
    /// Never answer (the call stays open until the client gives up).
    Hang,
    /// Refuse the account the way each provider really does (see [`AccountFault`]); streams
    /// and embeddings too. Switch it back with another behavior to "recover" the account.
    AccountFault {
        /// What is wrong with the account.
        fault: AccountFault,
    },
    /// A 400 whose error message echoes the request's credential header (`Authorization`, or
    /// `x-api-key` for Anthropic) verbatim — an upstream that leaks what it was sent.
    EchoAuth,
}

/// An account's fault, in each provider's real wire form:
///
/// | fault | Bedrock | OpenAI | Anthropic |
/// | --- | --- | --- | --- |
/// | `credentials` | 403 `UnrecognizedClientException` | 401 `invalid_api_key` (masked key echoed) | 401 `authentication_error` |
/// | `model_access` | 403 `AccessDeniedException` "You don't have access to the model…" | 403 `model_not_found` "Project … does not have access to model …" | 403 `permission_error` |
/// | `model_not_found` | 404 `ResourceNotFoundException` | 404 `model_not_found` | 404 `not_found_error` |
/// | `billing` | 403 `AccessDeniedException` "…INVALID_PAYMENT_INSTRUMENT…" | 429 `insufficient_quota` | 400 `invalid_request_error` "Your credit balance is too low…" |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountFault {
    /// The key is revoked / the token unrecognised or expired.
    Credentials,
    /// The account may not use the model (access not granted, no permission).
    ModelAccess,
    /// The model does not exist for the account.
    ModelNotFound,
    /// Billing or credit exhausted.
    Billing,
}

impl AccountFault {
    /// Every fault, in declaration order.
    pub const ALL: [AccountFault; 4] = [
        AccountFault::Credentials,
        AccountFault::ModelAccess,
        AccountFault::ModelNotFound,
        AccountFault::Billing,
    ];

    /// The snake-case name (as in JSON and the `acct-<fault>` directive).
    pub fn name(self) -> &'static str {
        match self {
            AccountFault::Credentials => "credentials",
            AccountFault::ModelAccess => "model_access",
            AccountFault::ModelNotFound => "model_not_found",
            AccountFault::Billing => "billing",
        }
    }

    /// The fault named `name` (`-` and `_` alike, case ignored).
    pub fn from_name(name: &str) -> Option<AccountFault> {
        let norm = name.to_ascii_lowercase().replace('-', "_");
        AccountFault::ALL.into_iter().find(|f| f.name() == norm)
    }

    /// Bedrock's answer: (status, `x-amzn-errortype` code, message).
    pub fn bedrock(self) -> (u16, &'static str, &'static str) {
        match self {
            AccountFault::Credentials => (
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
            AccountFault::ModelAccess => (
                403,
                "AccessDeniedException",
                "You don't have access to the model with the specified model ID.",
            ),
            AccountFault::ModelNotFound => (
                404,
                "ResourceNotFoundException",
                "Model use case details have not been submitted for this account. Fill out the Anthropic use case details form before using the model.",
            ),
            AccountFault::Billing => (
                403,
                "AccessDeniedException",
                "Model access is denied due to INVALID_PAYMENT_INSTRUMENT:A valid payment instrument must be provided.",
            ),
        }
    }

    /// Anthropic's answer: (status, `error.type`, message).
    pub fn anthropic(self) -> (u16, &'static str, &'static str) {
        match self {
            AccountFault::Credentials => (401, "authentication_error", "invalid x-api-key"),
            AccountFault::ModelAccess => (
                403,
                "permission_error",
                "Your API key does not have permission to use the specified resource.",
            ),
            AccountFault::ModelNotFound => (404, "not_found_error", "model: not found"),
            AccountFault::Billing => (
                400,
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
            ),
        }
    }
}

/// Upstream error kinds, with their Bedrock and OpenAI wire forms.
///
/// Serialized as the variant name (`"Throttling"`); deserialization (and [`FromStr`]) is lenient:
/// case, `_`/`-` and an `Exception` suffix are ignored, so `"throttling"`,
/// `"ThrottlingException"` and `"THROTTLING"` all work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub enum ErrorKind {
    /// Bedrock 429 `ThrottlingException`; OpenAI 429 `rate_limit_exceeded` (Retry-After 1).
    Throttling,
    /// Bedrock 503 `ServiceUnavailableException`; OpenAI 503.
    ServiceUnavailable,
    /// Bedrock 400 `ValidationException`; OpenAI 400 `invalid_request_error`.
    Validation,
    /// Bedrock 429 `ModelNotReadyException`; OpenAI 429 `model_not_ready` (Retry-After 1).
    ModelNotReady,
    /// Bedrock 500 `InternalServerException`; OpenAI 500.
    InternalServer,
    /// Bedrock 403 `AccessDeniedException`; OpenAI 401 `invalid_api_key`.
    AccessDenied,
    /// Bedrock 408 `ModelTimeoutException`; OpenAI 504.
    ModelTimeout,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Throttling,
        ErrorKind::ServiceUnavailable,
        ErrorKind::Validation,
        ErrorKind::ModelNotReady,
        ErrorKind::InternalServer,
        ErrorKind::AccessDenied,
        ErrorKind::ModelTimeout,
    ];

    /// The Bedrock exception name, e.g. `ThrottlingException`.
    pub fn bedrock_name(self) -> &'static str {
        match self {
            ErrorKind::Throttling => "ThrottlingException",
            ErrorKind::ServiceUnavailable => "ServiceUnavailableException",
            ErrorKind::Validation => "ValidationException",
            ErrorKind::ModelNotReady => "ModelNotReadyException",
            ErrorKind::InternalServer => "InternalServerException",
            ErrorKind::AccessDenied => "AccessDeniedException",
            ErrorKind::ModelTimeout => "ModelTimeoutException",
        }
    }

    /// HTTP status of the Bedrock error.
    pub fn bedrock_status(self) -> u16 {
        match self {
            ErrorKind::Throttling | ErrorKind::ModelNotReady => 429,
            ErrorKind::ServiceUnavailable => 503,
            ErrorKind::Validation => 400,
            ErrorKind::InternalServer => 500,
            ErrorKind::AccessDenied => 403,
            ErrorKind::ModelTimeout => 408,
        }
    }

    /// HTTP status of the OpenAI error.
    pub fn openai_status(self) -> u16 {
        match self {
            ErrorKind::Throttling | ErrorKind::ModelNotReady => 429,
            ErrorKind::ServiceUnavailable => 503,
            ErrorKind::Validation => 400,
            ErrorKind::InternalServer => 500,
            ErrorKind::AccessDenied => 401,
            ErrorKind::ModelTimeout => 504,
        }
    }

    /// Parses a kind leniently (see the type docs); `None` for unknown names.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        let norm: String = name
            .chars()
            .filter(|c| *c != '_' && *c != '-' && !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        let norm = norm.strip_suffix("exception").unwrap_or(&norm);
        Some(match norm {
            "throttling" | "throttled" | "ratelimit" | "ratelimited" | "toomanyrequests" => {
                ErrorKind::Throttling
            }
            "serviceunavailable" | "unavailable" => ErrorKind::ServiceUnavailable,
            "validation" | "invalid" | "invalidrequest" | "badrequest" => ErrorKind::Validation,
            "modelnotready" => ErrorKind::ModelNotReady,
            "internalserver" | "internalservererror" | "internal" | "internalfailure" => {
                ErrorKind::InternalServer
            }
            "accessdenied" | "unauthorized" | "forbidden" => ErrorKind::AccessDenied,
            "modeltimeout" | "timeout" => ErrorKind::ModelTimeout,
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.bedrock_name())
    }
}

impl FromStr for ErrorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorKind::from_name(s).ok_or_else(|| format!("unknown error kind `{s}`"))
    }
}

impl TryFrom<String> for ErrorKind {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The behavior a model id asks for through a *directive* in its name, used when neither a rule
/// for the model nor a default rule is set. Directives (matched at the start of the id or after a
/// non-alphanumeric character; the first kind found in this order wins):
///
/// - `err-<ErrorKind>` → [`Behavior::Error`] (e.g. `err-ThrottlingException`, `err-ValidationException`,
///   `err-ServiceUnavailableException`, `err-ModelNotReady`; names as in [`ErrorKind::from_name`]),
/// - `throttle-<secs>` → [`Behavior::ThrottleRetryAfter`],
/// - `flaky-<n>` → [`Behavior::FailFirst`] with a 503 (`ServiceUnavailable`),
/// - `midstream-<n>` → [`Behavior::StreamFailAfter`],
/// - `slow-<ms>` → [`Behavior::Slow`],
/// - `hang` (a whole word) → [`Behavior::Hang`],
/// - `acct-<fault>` → [`Behavior::AccountFault`] (`acct-credentials`, `acct-model_access`,
///   `acct-model_not_found`, `acct-billing`),
/// - `echo-auth` → [`Behavior::EchoAuth`].
pub fn directive_for_model(model: &str) -> Option<Behavior> {
    if let Some(fault) = directive_arg(model, "acct-", |c| c.is_ascii_alphanumeric() || c == '_')
        .and_then(AccountFault::from_name)
    {
        return Some(Behavior::AccountFault { fault });
    }
    if directive_arg(model, "echo-", |c| c.is_ascii_alphanumeric()) == Some("auth") {
        return Some(Behavior::EchoAuth);
    }
    if let Some(kind) =
        directive_arg(model, "err-", |c| c.is_ascii_alphanumeric()).and_then(ErrorKind::from_name)
    {
        return Some(Behavior::Error { error: kind });
    }
    if let Some(secs) = number_directive(model, "throttle-") {
        return Some(Behavior::ThrottleRetryAfter { secs });
    }
    if let Some(n) = number_directive(model, "flaky-") {
        return Some(Behavior::FailFirst {
            n: u32::try_from(n).unwrap_or(u32::MAX),
            error: ErrorKind::ServiceUnavailable,
        });
    }
    if let Some(n) = number_directive(model, "midstream-") {
        return Some(Behavior::StreamFailAfter {
            chunks: u32::try_from(n).unwrap_or(u32::MAX),
        });
    }
    if let Some(ms) = number_directive(model, "slow-") {
        return Some(Behavior::Slow { ms });
    }
    if has_word(model, "hang") {
        return Some(Behavior::Hang);
    }
    None
}

fn number_directive(model: &str, prefix: &str) -> Option<u64> {
    directive_arg(model, prefix, |c| c.is_ascii_digit()).and_then(|s| s.parse().ok())
}

/// The run of `keep` characters right after the first boundary-aligned occurrence of `prefix`.
fn directive_arg<'a>(model: &'a str, prefix: &str, keep: impl Fn(char) -> bool) -> Option<&'a str> {
    let mut from = 0;
    while let Some(pos) = model[from..].find(prefix) {
        let start = from + pos;
        let at_boundary = model[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        let rest = &model[start + prefix.len()..];
        let end = rest.find(|c: char| !keep(c)).unwrap_or(rest.len());
        if at_boundary && end > 0 {
            return Some(&rest[..end]);
        }
        from = start + prefix.len();
    }
    None
}

fn has_word(model: &str, word: &str) -> bool {
    model
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w == word)
}

/// What a fake does with one call, after rule lookup and `FailFirst` counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Ok,
    Fail {
        kind: ErrorKind,
        retry_after: Option<u64>,
    },
    Slow(Duration),
    StreamFailAfter(u32),
    Hang,
    AccountFault(AccountFault),
    EchoAuth,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives() {
        assert_eq!(
            directive_for_model("m-err-ThrottlingException"),
            Some(Behavior::Error {
                error: ErrorKind::Throttling
            })
        );
        assert_eq!(
            directive_for_model("err-ValidationException:0"),
            Some(Behavior::Error {
                error: ErrorKind::Validation
            })
        );
        assert_eq!(
            directive_for_model("x.err-ServiceUnavailableException-v1"),
            Some(Behavior::Error {
                error: ErrorKind::ServiceUnavailable
            })
        );
        assert_eq!(
            directive_for_model("model-slow-250"),
            Some(Behavior::Slow { ms: 250 })
        );
        assert_eq!(
            directive_for_model("model-flaky-2"),
            Some(Behavior::FailFirst {
                n: 2,
                error: ErrorKind::ServiceUnavailable
            })
        );
        assert_eq!(
            directive_for_model("model-midstream-3"),
            Some(Behavior::StreamFailAfter { chunks: 3 })
        );
        assert_eq!(
            directive_for_model("model-throttle-4"),
            Some(Behavior::ThrottleRetryAfter { secs: 4 })
        );
        assert_eq!(directive_for_model("model-hang"), Some(Behavior::Hang));
        assert_eq!(
            directive_for_model("anthropic.claude-3-haiku-20240307-v1:0"),
            None
        );
        assert_eq!(directive_for_model("superr-Throttling"), None);
        assert_eq!(directive_for_model("unslow-5"), None);
        assert_eq!(directive_for_model("hangar"), None);
        assert_eq!(directive_for_model("err-Bogus"), None);
    }

    #[test]
    fn account_fault_directives_and_json() {
        assert_eq!(
            directive_for_model("gpt-acct-billing"),
            Some(Behavior::AccountFault {
                fault: AccountFault::Billing
            })
        );
        assert_eq!(
            directive_for_model("acct-model_not_found"),
            Some(Behavior::AccountFault {
                fault: AccountFault::ModelNotFound
            })
        );
        assert_eq!(directive_for_model("m.echo-auth"), Some(Behavior::EchoAuth));
        assert_eq!(directive_for_model("acct-nope"), None);
        let b: Behavior =
            serde_json::from_str(r#"{"kind":"account_fault","fault":"credentials"}"#).unwrap();
        assert_eq!(
            b,
            Behavior::AccountFault {
                fault: AccountFault::Credentials
            }
        );
        let b: Behavior = serde_json::from_str(r#"{"kind":"echo_auth"}"#).unwrap();
        assert_eq!(b, Behavior::EchoAuth);
        for f in AccountFault::ALL {
            assert_eq!(AccountFault::from_name(f.name()), Some(f));
        }
    }

    #[test]
    fn error_kind_names() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_name(kind.bedrock_name()), Some(kind));
            assert_eq!(ErrorKind::from_name(&format!("{kind:?}")), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(serde_json::from_str::<ErrorKind>(&json).unwrap(), kind);
        }
        assert_eq!(
            ErrorKind::from_name("service_unavailable"),
            Some(ErrorKind::ServiceUnavailable)
        );
        assert!(serde_json::from_str::<ErrorKind>("\"nope\"").is_err());
    }

    #[test]
    fn behavior_json() {
        let b: Behavior =
            serde_json::from_str(r#"{"kind":"error","error":"ThrottlingException"}"#).unwrap();
        assert_eq!(
            b,
            Behavior::Error {
                error: ErrorKind::Throttling
            }
        );
        let b: Behavior = serde_json::from_str(r#"{"kind":"slow","ms":5}"#).unwrap();
        assert_eq!(b, Behavior::Slow { ms: 5 });
        let b: Behavior = serde_json::from_str(r#"{"kind":"hang"}"#).unwrap();
        assert_eq!(b, Behavior::Hang);
        let json = serde_json::to_value(Behavior::FailFirst {
            n: 2,
            error: ErrorKind::InternalServer,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind":"fail_first","n":2,"error":"InternalServer"})
        );
    }
}
