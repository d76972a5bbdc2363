//! The `switchyard.v1` hub<->spoke contract, generated from `proto/switchyard/v1/spoke.proto`.

pub mod codec;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("switchyard.v1");
}

/// A rough input-token estimate for admission: ~4 characters per token, at least 1. Used by
/// the hub (tenant tokens/min) and the spoke (account tokens/min) before real usage is known.
pub fn estimate_input_tokens(req: &v1::InferRequest) -> u64 {
    use v1::content_part::Part;
    let mut chars = req.system.len();
    for m in &req.messages {
        for p in &m.content {
            chars += match &p.part {
                Some(Part::Text(t)) => t.len(),
                Some(Part::ToolResult(r)) => r.content.len(),
                Some(Part::ToolCall(c)) => c.arguments_json.len() + c.name.len(),
                Some(Part::Image(_)) => 4 * 1_000,
                Some(Part::Thinking(t)) => t.text.len() + t.data.len(),
                Some(Part::CachePoint(_)) | None => 0,
            };
        }
    }
    (chars as u64).div_ceil(4).max(1)
}

/// gRPC metadata key carrying the earliest retry time (milliseconds) on RESOURCE_EXHAUSTED (and,
/// on FAILED_PRECONDITION with [`FAULT_ACCOUNT`], until a denied route is probed again).
pub const RETRY_AFTER_MS: &str = "retry-after-ms";
/// gRPC metadata key carrying how many attempts the spoke made.
pub const ATTEMPTS: &str = "x-switchyard-attempts";
/// gRPC metadata key saying whose fault an error is: [`FAULT_ACCOUNT`] (with
/// FAILED_PRECONDITION: every route refused this account; another account may serve the request)
/// or [`FAULT_CALLER`] (with INVALID_ARGUMENT: the request itself was refused; never retried).
pub const FAULT: &str = "x-switchyard-fault";
/// [`FAULT`] value: the account's fault (credentials, model access, model not found, billing).
pub const FAULT_ACCOUNT: &str = "account";
/// [`FAULT`] value: the caller's fault (malformed request, or content the upstream refused).
pub const FAULT_CALLER: &str = "caller";
/// gRPC metadata key, with [`FAULT_ACCOUNT`]: the denial reasons of the plan's routes,
/// comma-separated in plan order, each one of `credentials`, `model_access`,
/// `model_not_found`, `billing` (`switchyard_core::labels::DenyReason`).
pub const DENIED: &str = "x-switchyard-denied";
/// gRPC metadata key carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";
/// gRPC metadata key (`1`) on the UNAVAILABLE a draining spoke answers before doing anything
/// with the call: a client may send the call again on another connection, even to the same
/// load-balancer address, without risk of running it twice.
pub const DRAINING: &str = "x-switchyard-draining";

/// gRPC metadata key carrying the upstream's error type (a short token such as
/// `ValidationException` or `invalid_request_error`, never its message) on INVALID_ARGUMENT, so
/// the hub can name it to the caller without passing on the upstream's words.
pub const UPSTREAM_ERROR_TYPE: &str = "x-switchyard-upstream-error-type";
