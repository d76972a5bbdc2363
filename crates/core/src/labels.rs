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
}

impl Outcome {
    /// Every outcome, in wire order.
    pub const ALL: [Outcome; 10] = [
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
        }
    }

    /// The route was passed over without an upstream call.
    pub fn is_skip(self) -> bool {
        matches!(
            self,
            Outcome::SkippedQuota | Outcome::SkippedCooldown | Outcome::SkippedBreaker
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
}

impl RouteState {
    /// Every state a route can be in (not `Unknown`), in wire order.
    pub const ALL: [RouteState; 5] = [
        RouteState::Ready,
        RouteState::Cooling,
        RouteState::Open,
        RouteState::Exhausted,
        RouteState::HalfOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteState::Unknown => "unknown",
            RouteState::Ready => "ready",
            RouteState::Cooling => "cooling",
            RouteState::Open => "open",
            RouteState::Exhausted => "exhausted",
            RouteState::HalfOpen => "half_open",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_round_trip_to_distinct_labels() {
        let mut seen = std::collections::HashSet::new();
        for o in Outcome::ALL {
            let wire = match o {
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
            };
            assert_eq!(Outcome::from_wire(wire as i32), o);
            assert!(seen.insert(o.as_str()), "{o:?}");
        }
        assert_eq!(Outcome::from_wire(9999), Outcome::Unspecified);
        assert_eq!(RouteState::from_wire(9999).as_str(), "unknown");
        assert_eq!(
            RouteState::from_wire(pb::RouteState::HalfOpen as i32).as_str(),
            "half_open"
        );
        assert_eq!(StopReason::from_wire(0).as_str(), "end_turn");
        assert_eq!(
            StopReason::from_wire(pb::StopReason::ContentFiltered as i32).as_str(),
            "content_filtered"
        );
    }
}
