//! The label names both tiers put on metrics, logs, spans, `/healthz` and audit records for
//! attempt outcomes, route states, stop reasons and request outcomes — one copy of each, so a
//! dashboard written against the spoke's `outcome="throttled"` also reads the hub's.
//!
//! Each enum mirrors a `switchyard.v1` wire enum where there is one (`from_wire` takes the
//! wire's `i32`, unknown values map to the `Unspecified`/`Unknown` label) and gives its label
//! with `as_str()`. Labels are lower-case `snake_case` and never change once released: they are
//! part of the metrics contract (docs/observability.md).

use switchyard_proto::v1 as pb;

/// How one attempt on one (region, model) route ended (`Attempt.outcome`; metric label
/// `outcome` of `switchyard_upstream_attempts_total`, `reason` of the failover counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Unspecified,
    Ok,
    Throttled,
    Unavailable,
    Timeout,
    Invalid,
    SkippedQuota,
    SkippedCooldown,
    SkippedBreaker,
    FailedMidStream,
    /// The account's fault: the route is now denied.
    Denied,
    /// Not called: the route is denied and not due for a probe.
    SkippedDenied,
}

impl Outcome {
    /// Every outcome, in wire order.
    pub const ALL: [Outcome; 12] = [
        Outcome::Unspecified,
        Outcome::Ok,
        Outcome::Throttled,
        Outcome::Unavailable,
        Outcome::Timeout,
        Outcome::Invalid,
        Outcome::SkippedQuota,
        Outcome::SkippedCooldown,
        Outcome::SkippedBreaker,
        Outcome::FailedMidStream,
        Outcome::Denied,
        Outcome::SkippedDenied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Unspecified => "unspecified",
            Outcome::Ok => "ok",
            Outcome::Throttled => "throttled",
            Outcome::Unavailable => "unavailable",
            Outcome::Timeout => "timeout",
            Outcome::Invalid => "invalid",
            Outcome::SkippedQuota => "skipped_quota",
            Outcome::SkippedCooldown => "skipped_cooldown",
            Outcome::SkippedBreaker => "skipped_breaker",
            Outcome::FailedMidStream => "failed_mid_stream",
            Outcome::Denied => "denied",
            Outcome::SkippedDenied => "skipped_denied",
        }
    }

    /// From `Attempt.outcome` (an `i32` of `switchyard.v1.Outcome`).
    pub fn from_wire(v: i32) -> Outcome {
        match pb::Outcome::try_from(v).unwrap_or(pb::Outcome::Unspecified) {
            pb::Outcome::Unspecified => Outcome::Unspecified,
            pb::Outcome::Ok => Outcome::Ok,
            pb::Outcome::Throttled => Outcome::Throttled,
            pb::Outcome::Unavailable => Outcome::Unavailable,
            pb::Outcome::Timeout => Outcome::Timeout,
            pb::Outcome::Invalid => Outcome::Invalid,
            pb::Outcome::SkippedQuota => Outcome::SkippedQuota,
            pb::Outcome::SkippedCooldown => Outcome::SkippedCooldown,
            pb::Outcome::SkippedBreaker => Outcome::SkippedBreaker,
            pb::Outcome::FailedMidStream => Outcome::FailedMidStream,
            pb::Outcome::Denied => Outcome::Denied,
            pb::Outcome::SkippedDenied => Outcome::SkippedDenied,
        }
    }

    /// The wire value (`Attempt.outcome`).
    pub fn to_wire(self) -> pb::Outcome {
        match self {
            Outcome::Unspecified => pb::Outcome::Unspecified,
            Outcome::Ok => pb::Outcome::Ok,
            Outcome::Throttled => pb::Outcome::Throttled,
            Outcome::Unavailable => pb::Outcome::Unavailable,
            Outcome::Timeout => pb::Outcome::Timeout,
            Outcome::Invalid => pb::Outcome::Invalid,
            Outcome::SkippedQuota => pb::Outcome::SkippedQuota,
            Outcome::SkippedCooldown => pb::Outcome::SkippedCooldown,
            Outcome::SkippedBreaker => pb::Outcome::SkippedBreaker,
            Outcome::FailedMidStream => pb::Outcome::FailedMidStream,
            Outcome::Denied => pb::Outcome::Denied,
            Outcome::SkippedDenied => pb::Outcome::SkippedDenied,
        }
    }

    /// The route was passed over without an upstream call.
    pub fn is_skip(self) -> bool {
        matches!(
            self,
            Outcome::SkippedQuota
                | Outcome::SkippedCooldown
                | Outcome::SkippedBreaker
                | Outcome::SkippedDenied
        )
    }
}

/// The state of one (region, model) route as `Describe`, `/healthz` and the
/// `switchyard_route_state{state}` gauge report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteState {
    Unknown,
    Ready,
    Cooling,
    Open,
    Exhausted,
    HalfOpen,
    /// The upstream refused this account here (credentials, model access, model not found,
    /// billing): skipped, re-probed slowly.
    Denied,
}

impl RouteState {
    /// Every state a route can be in (not `Unknown`), in wire order.
    pub const ALL: [RouteState; 6] = [
        RouteState::Ready,
        RouteState::Cooling,
        RouteState::Open,
        RouteState::Exhausted,
        RouteState::HalfOpen,
        RouteState::Denied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteState::Unknown => "unknown",
            RouteState::Ready => "ready",
            RouteState::Cooling => "cooling",
            RouteState::Open => "open",
            RouteState::Exhausted => "exhausted",
            RouteState::HalfOpen => "half_open",
            RouteState::Denied => "denied",
        }
    }

    /// From `RegionStatus.state` (an `i32` of `switchyard.v1.RouteState`).
    pub fn from_wire(v: i32) -> RouteState {
        match pb::RouteState::try_from(v).unwrap_or(pb::RouteState::Unspecified) {
            pb::RouteState::Unspecified => RouteState::Unknown,
            pb::RouteState::Ready => RouteState::Ready,
            pb::RouteState::Cooling => RouteState::Cooling,
            pb::RouteState::Open => RouteState::Open,
            pb::RouteState::Exhausted => RouteState::Exhausted,
            pb::RouteState::HalfOpen => RouteState::HalfOpen,
            pb::RouteState::Denied => RouteState::Denied,
        }
    }
}

/// Why a completion stopped, in the contract's own terms (`stop_reason` of the spoke's
/// `/inference` answer; surfaces translate it to their API's word, e.g. Anthropic's `refusal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    ContentFiltered,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopSequence => "stop_sequence",
            StopReason::ToolUse => "tool_use",
            StopReason::ContentFiltered => "content_filtered",
        }
    }

    /// From a `switchyard.v1.StopReason` `i32`; unspecified or unknown reads as `end_turn`.
    pub fn from_wire(v: i32) -> StopReason {
        match pb::StopReason::try_from(v).unwrap_or(pb::StopReason::Unspecified) {
            pb::StopReason::Unspecified | pb::StopReason::EndTurn => StopReason::EndTurn,
            pb::StopReason::MaxTokens => StopReason::MaxTokens,
            pb::StopReason::StopSequence => StopReason::StopSequence,
            pb::StopReason::ToolUse => StopReason::ToolUse,
            pb::StopReason::ContentFiltered => StopReason::ContentFiltered,
        }
    }
}

/// How a whole request ended, as recorded once when its record is finished (metric label
/// `outcome` of `switchyard_requests_total` / `switchyard_spoke_requests_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestOutcome {
    /// Answered in full.
    Ok,
    /// The client went away before the answer (or the stream) was complete.
    Cancelled,
    /// A stream started and then ended with an error event.
    StreamError,
    /// No answer: an error status.
    Error,
}

impl RequestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::Cancelled => "cancelled",
            RequestOutcome::StreamError => "stream_error",
            RequestOutcome::Error => "error",
        }
    }
}

/// Whose fault a failed upstream call was, decided where the error is made (the adapter) and
/// carried to the hub as the `x-switchyard-fault` metadata value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The request itself (malformed, or content the upstream refused): never retried.
    Caller,
    /// The account (credentials, model access, model not found, billing): fail over to another
    /// route or account; the refusing route is denied for a while.
    Account,
    /// Throttling, 5xx, timeouts, broken connections: fail over; the route cools down or its
    /// breaker counts.
    Transient,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Caller => "caller",
            Fault::Account => "account",
            Fault::Transient => "transient",
        }
    }
}

/// Why an upstream refused an account (the account's fault). Label of the `denied` route state
/// (`RegionStatus.denied_reason`, `/healthz`, `reason` of `switchyard_spoke_route_denials_total`,
/// the `x-switchyard-denied` metadata).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// Credentials rejected or expired (revoked API key, expired or unrecognised AWS token).
    Credentials,
    /// The account may not use this model here (Bedrock model access not granted, IAM denies
    /// it, a permission error).
    ModelAccess,
    /// The model does not exist for this account (unknown model id, not enabled here).
    ModelNotFound,
    /// Billing or credit exhausted (OpenAI `insufficient_quota`, 402, Anthropic's credit
    /// balance).
    Billing,
}

/// How much of the account a denial covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyScope {
    /// Only the (region, model) route that was refused.
    Route,
    /// Every route of the refused route's region: the credentials or the bill, which every model
    /// behind that region's endpoint shares.
    Region,
}

impl DenyReason {
    pub const ALL: [DenyReason; 4] = [
        DenyReason::Credentials,
        DenyReason::ModelAccess,
        DenyReason::ModelNotFound,
        DenyReason::Billing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Credentials => "credentials",
            DenyReason::ModelAccess => "model_access",
            DenyReason::ModelNotFound => "model_not_found",
            DenyReason::Billing => "billing",
        }
    }

    /// The reason named `label` (as [`DenyReason::as_str`] gives it).
    pub fn parse(label: &str) -> Option<DenyReason> {
        DenyReason::ALL.into_iter().find(|r| r.as_str() == label)
    }

    /// Credentials and billing belong to the account behind a region's endpoint, so they deny
    /// every route of that region; model access and model existence deny one route.
    pub fn scope(self) -> DenyScope {
        match self {
            DenyReason::Credentials | DenyReason::Billing => DenyScope::Region,
            DenyReason::ModelAccess | DenyReason::ModelNotFound => DenyScope::Route,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_round_trip_to_distinct_labels() {
        // Every wire value has the label its proto name gives (`OUTCOME_SKIPPED_DENIED` →
        // `skipped_denied`), the form the hub's audit records use too.
        let mut wire_outcomes = 0;
        while let Ok(w) = pb::Outcome::try_from(wire_outcomes) {
            let o = Outcome::from_wire(wire_outcomes);
            assert_eq!(o.to_wire(), w);
            let name = w
                .as_str_name()
                .trim_start_matches("OUTCOME_")
                .to_ascii_lowercase();
            assert_eq!(o.as_str(), name);
            wire_outcomes += 1;
        }
        assert_eq!(wire_outcomes as usize, Outcome::ALL.len());
        let mut states = 1;
        while let Ok(w) = pb::RouteState::try_from(states) {
            let name = w
                .as_str_name()
                .trim_start_matches("ROUTE_STATE_")
                .to_ascii_lowercase();
            assert_eq!(RouteState::from_wire(states).as_str(), name);
            states += 1;
        }
        assert_eq!(states as usize - 1, RouteState::ALL.len());
        assert_eq!(Outcome::from_wire(9999), Outcome::Unspecified);
        assert_eq!(RouteState::from_wire(9999).as_str(), "unknown");
        assert_eq!(
            RouteState::from_wire(pb::RouteState::HalfOpen as i32).as_str(),
            "half_open"
        );
        assert_eq!(StopReason::from_wire(0).as_str(), "end_turn");
        assert_eq!(
            RouteState::from_wire(pb::RouteState::Denied as i32).as_str(),
            "denied"
        );
        for r in DenyReason::ALL {
            assert_eq!(DenyReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(DenyReason::Billing.scope(), DenyScope::Region);
        assert_eq!(DenyReason::ModelAccess.scope(), DenyScope::Route);
        assert_eq!(
            StopReason::from_wire(pb::StopReason::ContentFiltered as i32).as_str(),
            "content_filtered"
        );
    }
}
