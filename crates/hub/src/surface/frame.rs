//! The per-request frame every client surface's handler runs in (pingora's `new_ctx` /
//! `logging`): created once when the request arrives — start time, request id, the request's
//! ONE snapshot of the live table, its span and its [`RequestRecord`] — and finished once, which
//! renders an error in the surface's own shape, sets the request-id headers and records the
//! response head. Also the steps every surface shares before its own decoding: authentication,
//! reading the body within bounds, and the route headers on the answer.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::response::Response;
use tracing::Span;

use crate::error::HubError;
use crate::gateway;
use crate::headers;
use crate::live::{Snapshot, Table};
use crate::model::{RouteTaken, Tenant};
use crate::observe::{RequestRecord, Surface};
use crate::state::Hub;

/// One client request, from arrival to its response.
pub struct Frame {
    pub started: Instant,
    /// The client's `x-request-id` when sane, else a fresh one.
    pub request_id: String,
    /// The request's one view of the live table: it authenticates, resolves and routes with it.
    pub table: Snapshot,
    pub rec: RequestRecord,
}

impl Frame {
    /// Starts the frame: the span (child of the client's `traceparent`) and the record.
    pub fn begin(hub: &Hub, headers: &HeaderMap, surface: Surface) -> Frame {
        let started = Instant::now();
        let request_id = request_id(headers);
        let span = crate::observe::request_span(headers, &request_id, surface.operation());
        let rec = RequestRecord::start(hub.audit.clone(), &request_id, span, surface);
        Frame {
            started,
            request_id,
            table: hub.snapshot(),
            rec,
        }
    }

    /// The request's span, to instrument the handler's work with.
    pub fn span(&self) -> Span {
        self.rec.span()
    }

    /// Finishes the request: an error rendered by `on_error` (the surface's shape), the
    /// `x-request-id` header plus the surface's own request-id header (`id_header`), the response
    /// head recorded.
    pub fn finish(
        mut self,
        result: Result<Response, HubError>,
        on_error: impl FnOnce(HubError) -> Response,
        id_header: Option<&'static str>,
    ) -> Response {
        let mut resp = self.rec.finish(result, &self.request_id, on_error);
        if let Some(name) = id_header {
            headers::set(resp.headers_mut(), name, &self.request_id);
        }
        resp
    }
}

/// The tenant of an `Authorization: Bearer <API key or JWT>` header (exactly one).
pub async fn authenticate(
    hub: &Hub,
    table: &Table,
    headers: &HeaderMap,
) -> Result<Tenant, HubError> {
    let mut all = headers.get_all(http::header::AUTHORIZATION).iter();
    let (Some(value), None) = (all.next(), all.next()) else {
        // None, or several: a request must not be able to pick among identities.
        return Err(HubError::Unauthorized);
    };
    let value = value.to_str().map_err(|_| HubError::Unauthorized)?;
    let key = headers::bearer_token(value).ok_or(HubError::Unauthorized)?;
    verify_key(hub, table, key).await
}

/// Like [`authenticate`], but also accepts the key in `x-api-key` (how the Anthropic SDK sends
/// it, and the header the documented boto3 hook adds). With `x-api-key` present, an
/// `Authorization` header that is not `Bearer` (a SigV4 signature) is ignored; a `Bearer` one
/// as well is refused, so a request cannot pick among identities.
pub async fn authenticate_x_api_key(
    hub: &Hub,
    table: &Table,
    headers: &HeaderMap,
) -> Result<Tenant, HubError> {
    let mut all = headers.get_all(headers::API_KEY).iter();
    let value = match (all.next(), all.next()) {
        (None, _) => return authenticate(hub, table, headers).await,
        (Some(v), None) => v,
        (Some(_), Some(_)) => return Err(HubError::Unauthorized),
    };
    let bearer_too = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .any(|v| {
            v.to_str().ok().is_some_and(|v| {
                v.split_ascii_whitespace()
                    .next()
                    .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
            })
        });
    if bearer_too {
        return Err(HubError::Unauthorized);
    }
    let key = value.to_str().map_err(|_| HubError::Unauthorized)?.trim();
    verify_key(hub, table, key).await
}

/// An API key or (when `[jwt]` is configured) a JWT, to its tenant.
async fn verify_key(hub: &Hub, table: &Table, key: &str) -> Result<Tenant, HubError> {
    // A JWT has three dot-separated parts and starts with a base64url JSON header (`eyJ`);
    // an API key never does.
    if let Some(jwt) = &hub.jwt
        && key.starts_with("eyJ")
        && key.matches('.').count() == 2
    {
        return match jwt.verify(key).await {
            Ok(name) => table.tenant_named(&name).ok_or_else(|| {
                tracing::info!("JWT refused: unknown tenant in claim");
                HubError::Unauthorized
            }),
            Err(e) => {
                tracing::info!(reason = %e, "JWT refused");
                Err(HubError::Unauthorized)
            }
        };
    }
    table.authenticate(key).ok_or(HubError::Unauthorized)
}

/// Reads a request body within the hub's size limit and request deadline.
pub async fn read_body(hub: &Hub, headers: &HeaderMap, body: Body) -> Result<Bytes, HubError> {
    let limit = hub.settings.max_body_bytes;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(HubError::BodyTooLarge(limit));
    }
    // A body trickled in slowly must not hold the request past its deadline.
    match tokio::time::timeout(
        hub.settings.request_timeout,
        axum::body::to_bytes(body, limit),
    )
    .await
    {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(HubError::BodyTooLarge(limit)),
        Err(_) => Err(HubError::BadRequest(
            "the request body was not received in time".into(),
        )),
    }
}

/// The request id: the client's `x-request-id` when sane, else a fresh one.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// `x-switchyard-*` headers naming the route that served a request, and the hub's overhead.
pub fn route_headers(h: &mut HeaderMap, route: &RouteTaken, started: Instant) {
    let overhead = started.elapsed().saturating_sub(route.spoke_time);
    headers::route(
        h,
        &route.provider,
        &route.account,
        &route.region,
        &route.model,
        route.attempts,
    );
    headers::overhead(h, overhead);
}

/// A [`HubError`] as a response in a surface's own error shape: the hub's status, `Retry-After`,
/// `x-switchyard-attempts` and `x-ratelimit-*` headers, with `body` (and `status`, when the
/// surface maps it differently) replacing the OpenAI body.
pub fn error_response(
    e: HubError,
    status: axum::http::StatusCode,
    body: serde_json::Value,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut resp = e.into_response();
    *resp.status_mut() = status;
    *resp.body_mut() = Body::from(body.to_string());
    resp.headers_mut().remove(http::header::CONTENT_LENGTH);
    resp
}

/// `resp` with `request_id` in `x-request-id` and, when given, in the surface's own id header
/// (`request-id` for Anthropic, `x-amzn-RequestId` for Bedrock): for the lookups that run
/// without a [`Frame`] (models, stored responses, token counts), answers and errors alike.
pub fn with_request_id(
    mut resp: Response,
    request_id: &str,
    surface_header: Option<&'static str>,
) -> Response {
    let h = resp.headers_mut();
    headers::set(h, headers::REQUEST_ID, request_id);
    if let Some(name) = surface_header {
        headers::set(h, name, request_id);
    }
    resp
}

/// The tail of a streamed answer: as [`answered`] (no cost: a stream's is in the audit line),
/// or — a stream committed before its route answered (`late`, [`gateway::Opened::Late`]) — the
/// tenant's `x-ratelimit-*` only (the route is not known yet: the audit line has it).
pub fn answered_stream(
    resp: &mut Response,
    route: &RouteTaken,
    late: bool,
    started: Instant,
    rate_state: &switchyard_quota::RateState,
) {
    if late {
        headers::ratelimit(resp.headers_mut(), rate_state);
    } else {
        answered(resp, route, started, rate_state, None);
    }
}

/// Serves `admission` unary: the answer, stored and handed to the followers when this request
/// leads a response-cache call (`lead`), and its route and usage on the handler's record.
///
/// Handlers `Box::pin` this future (and the response-cache lookup): it holds the whole unary
/// call to a spoke, about 10 KB, and inline it would size the handler's future for every
/// request, streams included — an open stream's handler held 14.6 KB, 1,000 open streams
/// 14.6 MB (docs/benchmarks.md, "Memory").
pub async fn complete(
    hub: &Hub,
    frame: &mut Frame,
    admission: gateway::Admission,
    lead: Option<crate::cache::Leader>,
) -> Result<gateway::Completed, HubError> {
    let done = admission.complete(hub).await?;
    if let Some(l) = lead {
        l.finish(crate::cache::Answer::from_response(
            &done.response,
            &done.route,
        ))
        .await;
    }
    frame.rec.set_route(
        &done.route,
        done.response.usage.as_ref(),
        &done.response.attempts,
    );
    Ok(done)
}

/// Opens `admission`'s stream with the hub's `stream_keepalive` (none when `keepalive` is
/// false: a stream whose route must be known before it is rendered, e.g. one feeding the
/// response cache). `stream_rec` is the stream's handle on the record; on [`Opened::Now`]
/// the handler's record gets the route here. Returns the stream and whether it is late.
pub fn open_stream<'a>(
    hub: &Arc<Hub>,
    frame: &'a mut Frame,
    admission: gateway::Admission,
    stream_rec: &RequestRecord,
    keepalive: bool,
) -> impl std::future::Future<Output = Result<(gateway::Streamed, bool), HubError>> + 'a {
    let every = if keepalive {
        hub.settings.stream_keepalive
    } else {
        None
    };
    // Not an `async fn`, so the admission is not kept in this future (it moves into the
    // opening future now).
    let opening = admission.open_stream(hub, stream_rec, every);
    async move {
        match opening.await? {
            gateway::Opened::Now(s) => {
                frame.rec.set_route(&s.route, None, &s.attempts);
                Ok((s, false))
            }
            gateway::Opened::Late(s) => Ok((s, true)),
        }
    }
}

/// The tail every answered request shares: route headers and overhead, the tenant's
/// `x-ratelimit-*`, and the cost (non-streamed answers, when known).
pub fn answered(
    resp: &mut Response,
    route: &RouteTaken,
    started: Instant,
    rate_state: &switchyard_quota::RateState,
    cost: Option<f64>,
) {
    let h = resp.headers_mut();
    route_headers(h, route, started);
    headers::cost(h, cost);
    headers::ratelimit(h, rate_state);
}
