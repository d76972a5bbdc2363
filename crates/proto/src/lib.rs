//! The `switchyard.v1` hub<->spoke contract, generated from `proto/switchyard/v1/spoke.proto`.

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
                None => 0,
            };
        }
    }
    (chars as u64).div_ceil(4).max(1)
}

/// gRPC metadata key carrying the earliest retry time (milliseconds) on RESOURCE_EXHAUSTED.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";
/// gRPC metadata key carrying how many attempts the spoke made.
pub const ATTEMPTS: &str = "x-switchyard-attempts";
/// gRPC metadata key carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";
/// gRPC metadata key carrying the upstream's error type (a short token such as
/// `ValidationException` or `invalid_request_error`, never its message) on INVALID_ARGUMENT, so
/// the hub can name it to the caller without passing on the upstream's words.
pub const UPSTREAM_ERROR_TYPE: &str = "x-switchyard-upstream-error-type";
