//! Several HTTP/2 connections to one spoke address, and the calls spread over them.
//!
//! A spoke address is often a TCP load balancer (an NLB, HAProxy in TCP mode) in front of
//! several tasks. Such a balancer places *connections*, not calls: with one connection a hub
//! would send every call of that address to one task. So a spoke holds `connections` channels,
//! each its own HTTP/2 connection (placed on a task by the balancer), and every call goes to the
//! channel with the fewest calls in flight (ties in turn). Spokes end each connection after
//! their `max_connection_age` with a graceful GOAWAY, so the channels re-connect through the
//! balancer and reach tasks added since.
//!
//! **Transparent retry** (gRPC's term, gRFC A6): a call the spoke provably never started — the
//! connection could not be made, the stream was refused (`REFUSED_STREAM`, or above the last
//! stream id of a GOAWAY), the request was still queued when the connection closed, or a
//! draining spoke refused it with `x-switchyard-draining` — is sent again on another channel of
//! the same address, up to [`MAX_TRANSPARENT_RETRIES`] times. This is what makes a GOAWAY or a
//! task leaving the balancer cost no failed call. The request body is buffered for it (every
//! call of the contract sends one message).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::transport::Channel;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// At most this many extra sends of one call (each on another channel when there is one).
pub const MAX_TRANSPARENT_RETRIES: usize = 3;

/// One connection of the set and the calls in flight on it (streams count until their body ends).
#[derive(Debug)]
struct Conn {
    channel: Channel,
    in_flight: Arc<AtomicU32>,
}

/// The channels of one spoke address. Cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct Channels {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conns: Vec<Conn>,
    next: AtomicUsize,
}

impl Channels {
    /// Wraps `channels` (at least one; each lazily connected, its own HTTP/2 connection).
    pub fn new(channels: Vec<Channel>) -> Self {
        Self {
            inner: Arc::new(Inner {
                conns: channels
                    .into_iter()
                    .map(|channel| Conn {
                        channel,
                        in_flight: Arc::new(AtomicU32::new(0)),
                    })
                    .collect(),
                next: AtomicUsize::new(0),
            }),
        }
    }

    pub fn len(&self) -> usize {
        self.inner.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.conns.is_empty()
    }

    /// The `i`-th channel (modulo the count), for checks that must reach one connection.
    pub fn channel(&self, i: usize) -> Channel {
        let conns = &self.inner.conns;
        conns[i % conns.len().max(1)].channel.clone()
    }

    /// A rotating start index, so successive checks go through different connections.
    pub fn rotate(&self) -> usize {
        self.inner.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Calls in flight per channel (for tests and operator views).
    pub fn in_flight(&self) -> Vec<u32> {
        self.inner
            .conns
            .iter()
            .map(|c| c.in_flight.load(Ordering::Relaxed))
            .collect()
    }

    /// The channel with the fewest calls in flight, ties broken in turn; channels in `tried`
    /// only when every channel has been tried.
    fn pick(&self, tried: &[usize]) -> usize {
        let conns = &self.inner.conns;
        let n = conns.len();
        let start = self.rotate();
        let mut best: Option<(bool, u32, usize)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let key = (
                tried.contains(&i),
                conns[i].in_flight.load(Ordering::Relaxed),
                i,
            );
            if best.is_none_or(|b| (key.0, key.1) < (b.0, b.1)) {
                best = Some(key);
            }
        }
        best.map_or(0, |b| b.2)
    }
}

/// Counts a call in flight on one channel until dropped.
struct Guard(Arc<AtomicU32>);

impl Guard {
    fn new(c: &Arc<AtomicU32>) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        Self(c.clone())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its call counted on its channel until it ends or is dropped.
struct Counted {
    body: Body,
    _guard: Guard,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.body)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.body)
    }
}

/// Why a call may be sent again without risk of running twice, if it may.
fn never_started(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<tonic::ConnectError>().is_some() {
            return Some("connect failed");
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && h.is_canceled()
        {
            return Some("connection closed before the request was sent");
        }
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return Some("stream refused");
            }
            if h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR) {
                return Some("stream above the GOAWAY's last stream id");
            }
        }
        cur = err.source();
    }
    None
}

/// A trailers-only UNAVAILABLE with `x-switchyard-draining`: the spoke refused the call before
/// doing anything with it.
fn refused_while_draining(resp: &http::Response<Body>) -> bool {
    let h = resp.headers();
    h.get("grpc-status").is_some_and(|v| v == "14")
        && h.get(switchyard_proto::DRAINING).is_some_and(|v| v == "1")
}

/// Request headers whose value is new on every call: the deadline (`grpc-timeout`), the request
/// id and the W3C trace context.
const PER_CALL_HEADERS: [&str; 3] = ["grpc-timeout", switchyard_proto::REQUEST_ID, "traceparent"];

/// Marks the per-call headers "never indexed" (HPACK, RFC 7541 §6.2.3), so the connection's
/// HPACK table keeps only values that repeat (`:path`, `content-type`, `te`, `user-agent`).
/// Indexed, each unique value would take a table entry, evict an older one, and lengthen the
/// chain h2's encoder walks for that name on every later call (measured with callgrind: the
/// hub's HPACK encoding went from 10,000 to 6,700 instructions per call). The size on the wire
/// barely changes: a unique value is sent as a literal either way. Done here, where every call
/// to a spoke passes, because tonic itself adds `grpc-timeout`. One pass over the call's ten or
/// so headers costs less than a hashed lookup per name.
fn never_index(headers: &mut http::HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if PER_CALL_HEADERS.contains(&name.as_str()) {
            value.set_sensitive(true);
        }
    }
}

impl tower::Service<http::Request<Body>> for Channels {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<http::Response<Body>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each call picks its channel and waits for it to be ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let set = self.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            never_index(&mut parts.headers);
            let bytes = body.collect().await.map_err(BoxError::from)?.to_bytes();
            let retries = MAX_TRANSPARENT_RETRIES.min(set.len().saturating_sub(1).max(1));
            let mut tried = Vec::with_capacity(retries + 1);
            loop {
                let i = set.pick(&tried);
                tried.push(i);
                let conn = &set.inner.conns[i];
                let guard = Guard::new(&conn.in_flight);
                let req = http::Request::from_parts(
                    parts.clone(),
                    Body::new(http_body_util::Full::new(bytes.clone())),
                );
                let last = tried.len() > retries;
                let result = tower::ServiceExt::oneshot(conn.channel.clone(), req).await;
                match result {
                    Ok(resp) if !last && refused_while_draining(&resp) => {
                        tracing::debug!(
                            channel = i,
                            "spoke task draining; call sent again on another connection"
                        );
                    }
                    Ok(resp) => {
                        return Ok(resp.map(|body| {
                            Body::new(Counted {
                                body,
                                _guard: guard,
                            })
                        }));
                    }
                    Err(e) => {
                        let e: BoxError = e.into();
                        match never_started(&*e) {
                            Some(why) if !last => {
                                tracing::debug!(
                                    channel = i,
                                    reason = why,
                                    "call not started; sent again on another connection"
                                );
                            }
                            _ => return Err(e),
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize) -> Channels {
        let ch = (0..n)
            .map(|_| tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy())
            .collect();
        Channels::new(ch)
    }

    #[tokio::test]
    async fn picks_the_least_loaded_channel_and_rotates_ties() {
        let s = set(3);
        let mut seen = [0usize; 3];
        for _ in 0..30 {
            seen[s.pick(&[])] += 1;
        }
        assert_eq!(seen, [10, 10, 10], "idle channels are used in turn");
        let _busy = Guard::new(&s.inner.conns[0].in_flight);
        let _busy2 = Guard::new(&s.inner.conns[2].in_flight);
        for _ in 0..5 {
            assert_eq!(s.pick(&[]), 1, "the one idle channel wins");
        }
        assert_ne!(s.pick(&[1]), 1, "a tried channel comes last");
        assert_eq!(s.in_flight(), vec![1, 0, 1]);
    }

    /// The per-call headers are marked never indexed; a repeating one is left indexable.
    #[test]
    fn per_call_headers_are_never_indexed() {
        let mut h = http::HeaderMap::new();
        for (k, v) in [
            ("grpc-timeout", "29999870u"),
            (switchyard_proto::REQUEST_ID, "req-1"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("content-type", "application/grpc"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        never_index(&mut h);
        for k in PER_CALL_HEADERS {
            assert!(h[k].is_sensitive(), "{k}");
        }
        assert!(!h["content-type"].is_sensitive());
    }

    #[test]
    fn only_calls_that_never_started_are_sent_again() {
        let refused: h2::Error = h2::Reason::REFUSED_STREAM.into();
        assert!(never_started(&refused).is_some());
        let reset: h2::Error = h2::Reason::INTERNAL_ERROR.into();
        assert!(never_started(&reset).is_none());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(never_started(&io).is_none());
        let connect = tonic::ConnectError(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        )));
        assert!(never_started(&connect).is_some());
    }

    #[test]
    fn a_draining_refusal_is_recognised_by_its_metadata() {
        let resp = |draining: bool| {
            let mut r = http::Response::new(Body::empty());
            r.headers_mut().insert("grpc-status", "14".parse().unwrap());
            if draining {
                r.headers_mut()
                    .insert(switchyard_proto::DRAINING, "1".parse().unwrap());
            }
            r
        };
        assert!(refused_while_draining(&resp(true)));
        assert!(!refused_while_draining(&resp(false)));
    }
}
