//! The `switchyard.v1` hub<->spoke contract, generated from `proto/switchyard/v1/spoke.proto`.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("switchyard.v1");
}

/// gRPC metadata key carrying the earliest retry time (milliseconds) on RESOURCE_EXHAUSTED.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";
/// gRPC metadata key carrying how many attempts the spoke made.
pub const ATTEMPTS: &str = "x-switchyard-attempts";
/// gRPC metadata key carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";
