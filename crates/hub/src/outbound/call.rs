//! One call to one spoke: the gRPC request (deadline, request id and trace context as
//! metadata), the unary `Infer` / `Embed` / `CountTokens` calls, opening an `InferStream` up to its first
//! content, and [`classify`], which decides once what a spoke's gRPC status means for failover.

use std::sync::Arc;
use std::time::Duration;

use switchyard_proto::v1 as pb;
use tonic::{Code, Status, Streaming};

use crate::error::{AttemptFailure, HubError};
use crate::outbound::pool::Spoke;

/// What a single attempt's call closure returns on failure.
#[derive(Debug)]
pub enum CallError {
    Retry(AttemptFailure, String),
    Final(HubError),
}

/// Routes a successful result was served from.
pub trait HasRoute {
    fn route(&self) -> pb::Route;
}

impl HasRoute for pb::InferResponse {
    fn route(&self) -> pb::Route {
        self.route.clone().unwrap_or_default()
    }
}

impl HasRoute for pb::EmbedResponse {
    fn route(&self) -> pb::Route {
        self.route.clone().unwrap_or_default()
    }
}

/// gRPC request metadata as a trace-context injection target.
struct MetadataInjector<'a>(pub &'a mut tonic::metadata::MetadataMap);

impl opentelemetry::propagation::Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// The request body with the routing fields of one attempt.
pub fn with_routing(base: &pb::InferRequest, routing: pb::InferRequest) -> pb::InferRequest {
    pb::InferRequest {
        request_id: routing.request_id,
        models: routing.models,
        allowed_regions: routing.allowed_regions,
        timeout_ms: routing.timeout_ms,
        ..base.clone()
    }
}

/// Deadline (`grpc-timeout`) and request id travel as gRPC metadata.
fn grpc_request<T>(msg: T, timeout: Duration, request_id: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    if let Ok(v) = request_id.parse() {
        r.metadata_mut().insert(switchyard_proto::REQUEST_ID, v);
    }
    // W3C trace context of the current (attempt) span, when tracing is on.
    switchyard_core::telemetry::inject(
        &tracing::Span::current(),
        &mut MetadataInjector(r.metadata_mut()),
    );
    r
}

/// `Infer` at one spoke.
pub async fn infer(
    spoke: Arc<Spoke>,
    req: pb::InferRequest,
    remaining: Duration,
    request_id: &str,
) -> Result<pb::InferResponse, CallError> {
    let mut client = spoke.client();
    let resp = Box::pin(client.infer(grpc_request(req, remaining, request_id)))
        .await
        .map_err(|s| classify(&s))?;
    Ok(resp.into_inner())
}

/// `Embed` at one spoke.
pub async fn embed(
    spoke: Arc<Spoke>,
    req: pb::EmbedRequest,
    remaining: Duration,
    request_id: &str,
) -> Result<pb::EmbedResponse, CallError> {
    let mut client = spoke.client();
    let resp = Box::pin(client.embed(grpc_request(req, remaining, request_id)))
        .await
        .map_err(|s| classify(&s))?;
    Ok(resp.into_inner())
}

/// `CountTokens` at one spoke: the upstream's own count of `req`'s input tokens. UNIMPLEMENTED
/// (the spoke's provider offers no counting) classifies as `NotServed`, like every status, by
/// [`classify`].
pub async fn count_tokens(
    spoke: Arc<Spoke>,
    req: pb::InferRequest,
    remaining: Duration,
    request_id: &str,
) -> Result<pb::CountTokensResponse, CallError> {
    let mut client = spoke.client();
    let resp = Box::pin(client.count_tokens(grpc_request(req, remaining, request_id)))
        .await
        .map_err(|s| classify(&s))?;
    Ok(resp.into_inner())
}

/// A stream that has delivered its first content (or its end): from here on it is committed.
pub struct Committed {
    pub start: Option<pb::StreamStart>,
    pub buffered: Vec<pb::InferEvent>,
    pub rest: Streaming<pb::InferEvent>,
}

impl HasRoute for Committed {
    fn route(&self) -> pb::Route {
        self.start
            .as_ref()
            .and_then(|s| s.route.clone())
            .unwrap_or_default()
    }
}

/// Opens the stream at a spoke and reads until the first delta: failures before it fail over.
pub async fn open_stream(
    spoke: Arc<Spoke>,
    req: pb::InferRequest,
    remaining: Duration,
    request_id: String,
) -> Result<Committed, CallError> {
    let mut client = spoke.client();
    let mut rest = Box::pin(client.infer_stream(grpc_request(req, remaining, &request_id)))
        .await
        .map_err(|s| classify(&s))?
        .into_inner();
    let mut start = None;
    loop {
        match rest.message().await {
            Ok(Some(ev)) => match ev.event {
                Some(pb::infer_event::Event::Start(s)) => start = Some(s),
                Some(e @ (pb::infer_event::Event::Delta(_) | pb::infer_event::Event::End(_))) => {
                    return Ok(Committed {
                        start,
                        buffered: vec![pb::InferEvent { event: Some(e) }],
                        rest,
                    });
                }
                None => {}
            },
            Ok(None) => {
                return Err(CallError::Retry(
                    AttemptFailure::Unavailable,
                    "stream closed before any content".into(),
                ));
            }
            Err(s) => return Err(classify(&s)),
        }
    }
}

/// Classifies a gRPC status from a spoke (the contract's error model). Statuses without the
/// spoke's `x-switchyard-attempts` metadata did not come from the spoke's logic: the connection
/// failed or broke.
pub fn classify(status: &Status) -> CallError {
    let from_spoke = status.metadata().get(switchyard_proto::ATTEMPTS).is_some();
    let detail = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::ResourceExhausted => CallError::Retry(
            AttemptFailure::Exhausted {
                retry_after_ms: retry_after_ms(status),
            },
            detail,
        ),
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled | Code::Aborted => {
            if from_spoke {
                CallError::Retry(AttemptFailure::Unavailable, detail)
            } else {
                CallError::Retry(AttemptFailure::Transport, detail)
            }
        }
        Code::NotFound | Code::Unimplemented => CallError::Retry(AttemptFailure::NotServed, detail),
        Code::DeadlineExceeded => CallError::Retry(AttemptFailure::Timeout, detail),
        Code::FailedPrecondition
            if status
                .metadata()
                .get(switchyard_proto::FAULT)
                .is_some_and(|v| v.as_bytes() == switchyard_proto::FAULT_ACCOUNT.as_bytes()) =>
        {
            CallError::Retry(
                AttemptFailure::Denied {
                    retry_after_ms: retry_after_ms(status),
                },
                detail,
            )
        }
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::AlreadyExists => CallError::Final(HubError::UpstreamRejected {
            error_type: upstream_error_type(status),
            attempts: Vec::new(),
        }),
        Code::Ok | Code::DataLoss => CallError::Retry(AttemptFailure::Unavailable, detail),
    }
}

/// The spoke's `retry-after-ms` metadata.
fn retry_after_ms(status: &Status) -> Option<u64> {
    status
        .metadata()
        .get(switchyard_proto::RETRY_AFTER_MS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The upstream's error type from the spoke's `x-switchyard-upstream-error-type` metadata, when
/// it is a plain token (letters, digits, `_`, `.`, `-`; at most 64): it reaches the caller, so
/// nothing else of the status does.
fn upstream_error_type(status: &Status) -> Option<String> {
    let v = status
        .metadata()
        .get(switchyard_proto::UPSTREAM_ERROR_TYPE)?
        .to_str()
        .ok()?;
    let token = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    token.then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_follows_the_contract() {
        let mut s = Status::resource_exhausted("quota");
        s.metadata_mut()
            .insert(switchyard_proto::RETRY_AFTER_MS, "2500".parse().unwrap());
        s.metadata_mut()
            .insert(switchyard_proto::ATTEMPTS, "2".parse().unwrap());
        assert!(matches!(
            classify(&s),
            CallError::Retry(
                AttemptFailure::Exhausted {
                    retry_after_ms: Some(2500)
                },
                _
            )
        ));
        let transport = Status::unavailable("tcp connect error");
        assert!(matches!(
            classify(&transport),
            CallError::Retry(AttemptFailure::Transport, _)
        ));
        let mut upstream = Status::unavailable("upstream 503");
        upstream
            .metadata_mut()
            .insert(switchyard_proto::ATTEMPTS, "3".parse().unwrap());
        assert!(matches!(
            classify(&upstream),
            CallError::Retry(AttemptFailure::Unavailable, _)
        ));
        assert!(matches!(
            classify(&Status::invalid_argument("bad")),
            CallError::Final(HubError::UpstreamRejected {
                error_type: None,
                ..
            })
        ));
    }

    #[test]
    fn a_rejection_keeps_the_error_type_and_drops_the_words() {
        let mut s = Status::invalid_argument("rejected by upstream: key sk-live-123 is revoked");
        s.metadata_mut().insert(
            switchyard_proto::UPSTREAM_ERROR_TYPE,
            "ValidationException".parse().unwrap(),
        );
        let CallError::Final(e) = classify(&s) else {
            panic!("a rejection is final")
        };
        assert_eq!(
            e.client_message(),
            "the model provider rejected the request (ValidationException)"
        );
        // A type that is not a plain token is dropped, not passed on.
        let mut s = Status::invalid_argument("x");
        s.metadata_mut().insert(
            switchyard_proto::UPSTREAM_ERROR_TYPE,
            "Bearer sk-live-123".parse().unwrap(),
        );
        let CallError::Final(e) = classify(&s) else {
            panic!("a rejection is final")
        };
        assert!(!e.client_message().contains("sk-live"));
    }
}
