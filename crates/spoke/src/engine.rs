//! The failover engine: for one request, walk the route plan (each model candidate's region
//! chain, in order), skipping routes that are cooling down, broken or out of quota, calling the
//! upstream on the others, until one answers or the deadline passes.

mod embed;

use crate::config::{Model, SpokeConfig};
use crate::error::SpokeError;
use crate::routes::{RouteState, Skip, Status};
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchyard_core::backoff::Backoff;
use switchyard_proto::v1::{
    Attempt, Capabilities, ContentPart, DescribeResponse, InferEvent, InferRequest, InferResponse,
    Message, ModelStatus, Outcome, RegionStatus, Role, Route as WireRoute, StreamDelta, StreamEnd,
    StreamStart, Usage, content_part::Part, infer_event::Event,
};
use switchyard_providers::{Call, Chunk, Upstream, UpstreamError};
use switchyard_quota::{Admission, Limits, QuotaStore, RateState, Reservation};
use tokio::time::Instant;

/// Output tokens assumed at admission when the request sets no `max_tokens`.
pub const DEFAULT_OUTPUT_ESTIMATE: u64 = 256;

/// One (model, region) target and its state.
pub struct Route {
    pub model: String,
    pub upstream_model: String,
    pub region: String,
    /// The account's configured quota for this route (a ceiling; see `RouteState::rate_factor`).
    limits: Limits,
    /// Quota-store scope: `acct:{account}:{region}:{model}`, shared by every task of the spoke
    /// service when the store is Redis.
    scope: String,
    /// Shared with the route's successor when a config reload keeps the (model, region).
    state: Arc<Mutex<RouteState>>,
}

/// The models and their region chains: swapped whole by a config reload.
struct RouteTable {
    models: Vec<Model>,
    /// Routes grouped by model, each group in region-chain order.
    routes: Vec<Vec<Arc<Route>>>,
}

impl RouteTable {
    /// Builds the routes of `config`, reusing the breaker / cool-down state of every
    /// (model, region) that `prev` already had.
    fn build(config: &SpokeConfig, prev: Option<&RouteTable>) -> RouteTable {
        let now = std::time::Instant::now();
        let routes = config
            .models
            .iter()
            .map(|m| {
                m.regions
                    .iter()
                    .map(|r| {
                        let state = prev
                            .and_then(|p| {
                                p.routes
                                    .iter()
                                    .flatten()
                                    .find(|old| old.model == m.id && &old.region == r)
                            })
                            .map(|old| old.state.clone())
                            .unwrap_or_else(|| {
                                Arc::new(Mutex::new(RouteState::new(config.breaker, now)))
                            });
                        Arc::new(Route {
                            model: m.id.clone(),
                            upstream_model: m.upstream_id.clone(),
                            region: r.clone(),
                            limits: Limits {
                                requests_per_minute: m.requests_per_minute,
                                tokens_per_minute: m.tokens_per_minute,
                                ..Limits::default()
                            },
                            scope: format!("acct:{}:{}:{}", config.account, r, m.id),
                            state,
                        })
                    })
                    .collect()
            })
            .collect();
        RouteTable {
            models: config.models.clone(),
            routes,
        }
    }
}

/// What admission took for one attempt, returned when the attempt ends.
#[derive(Debug)]
struct Ticket {
    quota: Option<(Reservation, Limits)>,
}

pub struct Engine {
    provider: &'static str,
    account: String,
    upstream: Arc<dyn Upstream>,
    store: Arc<dyn QuotaStore>,
    table: arc_swap::ArcSwap<RouteTable>,
    backoff: Backoff,
    default_timeout: Duration,
    attempt_timeout: Option<Duration>,
    draining: AtomicBool,
    credentials_ok: AtomicBool,
}

/// A streamed answer: the route that committed, then its events.
pub type EventStream = std::pin::Pin<Box<dyn Stream<Item = Result<InferEvent, SpokeError>> + Send>>;

impl Engine {
    pub fn new(
        config: &SpokeConfig,
        upstream: Arc<dyn Upstream>,
        store: Arc<dyn QuotaStore>,
    ) -> Self {
        Self {
            table: arc_swap::ArcSwap::from_pointee(RouteTable::build(config, None)),
            provider: upstream.kind(),
            account: config.account.clone(),
            upstream,
            store,
            backoff: config.backoff,
            default_timeout: config.default_timeout,
            attempt_timeout: config.attempt_timeout,
            draining: AtomicBool::new(false),
            credentials_ok: AtomicBool::new(true),
        }
    }

    /// Config reload: swaps in the models, region chains and quotas of `config` at once;
    /// routes that still exist keep their breaker and cool-down state. Calls in flight finish on
    /// the routes they started with.
    pub fn reload_routes(&self, config: &SpokeConfig) {
        let prev = self.table.load_full();
        self.table
            .store(Arc::new(RouteTable::build(config, Some(&prev))));
    }

    pub fn provider(&self) -> &'static str {
        self.provider
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn upstream(&self) -> &Arc<dyn Upstream> {
        &self.upstream
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn set_credentials_ok(&self, ok: bool) {
        self.credentials_ok.store(ok, Ordering::SeqCst);
    }

    pub fn credentials_ok(&self) -> bool {
        self.credentials_ok.load(Ordering::SeqCst)
    }

    /// The routes to try for a request, in order: each requested model (that this spoke serves)
    /// with its region chain, filtered by the allowed regions.
    pub fn plan(&self, req: &InferRequest) -> Result<Vec<Arc<Route>>, SpokeError> {
        let mut known = false;
        let mut plan = Vec::new();
        let table = self.table.load();
        for name in &req.models {
            let Some(i) = table.models.iter().position(|m| &m.id == name) else {
                continue;
            };
            known = true;
            plan.extend(
                table.routes[i]
                    .iter()
                    .filter(|r| {
                        req.allowed_regions.is_empty() || req.allowed_regions.contains(&r.region)
                    })
                    .cloned(),
            );
        }
        if !known {
            return Err(SpokeError::UnknownModel(req.models.join(", ")));
        }
        if plan.is_empty() {
            return Err(SpokeError::BadRequest(format!(
                "no route of the requested models is in the allowed regions ({})",
                req.allowed_regions.join(", ")
            )));
        }
        Ok(plan)
    }

    /// The span of one upstream call on `r` (`Span::none()` when tracing is off).
    fn upstream_span(&self, r: &Route) -> tracing::Span {
        crate::observe::upstream_span(
            self.provider,
            &self.account,
            &r.region,
            &r.model,
            &r.upstream_model,
        )
    }

    fn wire_route(&self, r: &Route) -> WireRoute {
        WireRoute {
            provider: self.provider.to_owned(),
            account: self.account.clone(),
            region: r.region.clone(),
            model: r.model.clone(),
        }
    }

    fn attempt(&self, r: &Route, outcome: Outcome, latency: Duration, detail: String) -> Attempt {
        Attempt {
            target: Some(self.wire_route(r)),
            outcome: outcome as i32,
            latency_ms: latency.as_millis().min(u128::from(u32::MAX)) as u32,
            detail,
        }
    }

    /// Checks the request and computes its deadline. `grpc_timeout` is the caller's transport
    /// deadline, when it sent one.
    fn prepare(
        &self,
        req: &mut InferRequest,
        grpc_timeout: Option<Duration>,
    ) -> Result<(Instant, u64), SpokeError> {
        if self.is_draining() {
            return Err(SpokeError::Draining);
        }
        validate_request(req)?;
        if req.request_id.is_empty() {
            req.request_id = uuid::Uuid::new_v4().to_string();
        }
        let mut budget = match req.timeout_ms {
            0 => self.default_timeout,
            ms => Duration::from_millis(ms),
        };
        if let Some(t) = grpc_timeout {
            budget = budget.min(t);
        }
        let estimate = switchyard_providers::text::estimate_input_tokens(req)
            + req
                .params
                .as_ref()
                .and_then(|p| p.max_tokens)
                .map(u64::from)
                .unwrap_or(DEFAULT_OUTPUT_ESTIMATE);
        Ok((Instant::now() + budget, estimate))
    }

    fn attempt_budget(&self, deadline: Instant) -> Option<Duration> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        Some(match self.attempt_timeout {
            Some(t) => t.min(left),
            None => left,
        })
    }

    /// Records an upstream failure on the route and returns its quota reservation; returns the
    /// cool-down if it was a throttle.
    async fn fail(&self, route: &Route, ticket: Ticket, err: &UpstreamError) -> Option<Duration> {
        let cooldown = route
            .state
            .lock()
            .on_error(err, &self.backoff, std::time::Instant::now());
        tracing::info!(model = %route.model, region = %route.region, error = %err, "upstream attempt failed");
        release(&*self.store, ticket).await;
        cooldown
    }

    async fn succeed(&self, route: &Route, ticket: Ticket, usage: &Usage) {
        route.state.lock().on_success();
        settle(&*self.store, ticket, usage).await;
    }

    /// Local checks (cool-down, breaker), then the account quota in the store.
    async fn admit(&self, route: &Route, tokens: u64) -> Result<Ticket, Skip> {
        let factor = {
            let st = route.state.lock();
            let now = std::time::Instant::now();
            st.check(now)?;
            st.rate_factor(now)
        };
        let mut quota = None;
        if !route.limits.is_unlimited() {
            let limits = route.limits.scaled(factor);
            match self.store.admit(&route.scope, &limits, tokens).await {
                Ok(Admission::Admitted { reservation, .. }) => quota = Some((reservation, limits)),
                Ok(Admission::Refused { retry_after, .. }) => {
                    return Err(Skip {
                        outcome: Outcome::SkippedQuota,
                        retry_in: retry_after,
                    });
                }
                // The fallback store never fails; a bare store that does must not fail requests.
                Err(e) => tracing::warn!(scope = %route.scope, "quota store: {e}; admitting"),
            }
        }
        let ticket = Ticket { quota };
        let begun = route.state.lock().begin(std::time::Instant::now());
        match begun {
            Ok(()) => Ok(ticket),
            Err(skip) => {
                release(&*self.store, ticket).await;
                Err(skip)
            }
        }
    }

    /// The start of every attempt, unary or streamed: the time left (or the deadline error),
    /// then admission. `Ok(None)`: the route was skipped, and the skip is in `tally`.
    async fn begin_attempt(
        &self,
        route: &Route,
        deadline: Instant,
        estimate: u64,
        tally: &mut Tally,
    ) -> Result<Option<(Ticket, Duration)>, SpokeError> {
        let Some(budget) = self.attempt_budget(deadline) else {
            return Err(SpokeError::DeadlineExceeded {
                attempts: std::mem::take(&mut tally.attempts),
            });
        };
        match self.admit(route, estimate).await {
            Ok(ticket) => Ok(Some((ticket, budget))),
            Err(skip) => {
                tally.skip(
                    self.attempt(route, skip.outcome, Duration::ZERO, String::new()),
                    skip,
                );
                Ok(None)
            }
        }
    }

    /// Records a failed attempt; a rejection by the upstream ends the request (no failover).
    async fn record_failure(
        &self,
        route: &Route,
        ticket: Ticket,
        e: UpstreamError,
        latency: Duration,
        tally: &mut Tally,
    ) -> Result<(), SpokeError> {
        let cooldown = self.fail(route, ticket, &e).await;
        tally.failed(
            self.attempt(route, e.outcome(), latency, e.to_string()),
            &e,
            cooldown,
        );
        match e {
            UpstreamError::Invalid { reason } => Err(SpokeError::Rejected {
                reason,
                attempts: std::mem::take(&mut tally.attempts),
            }),
            _ => Ok(()),
        }
    }

    /// One completion with failover.
    pub async fn infer(
        &self,
        mut req: InferRequest,
        grpc_timeout: Option<Duration>,
    ) -> Result<InferResponse, SpokeError> {
        let (deadline, estimate) = self.prepare(&mut req, grpc_timeout)?;
        let plan = self.plan(&req)?;
        let mut tally = Tally::default();
        for route in plan {
            let Some((res, budget)) = self
                .begin_attempt(&route, deadline, estimate, &mut tally)
                .await?
            else {
                continue;
            };
            let call = Call {
                region: &route.region,
                model: &route.upstream_model,
                request: &req,
                timeout: budget,
            };
            let started = Instant::now();
            let span = self.upstream_span(&route);
            let completing =
                tracing::Instrument::instrument(self.upstream.complete(call), span.clone());
            let result = match tokio::time::timeout(budget, completing).await {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::Timeout),
            };
            crate::observe::upstream_result(&span, result.as_ref().err());
            let latency = started.elapsed();
            match result {
                Ok(c) => {
                    self.succeed(&route, res, &c.usage).await;
                    tally
                        .attempts
                        .push(self.attempt(&route, Outcome::Ok, latency, String::new()));
                    return Ok(InferResponse {
                        request_id: req.request_id,
                        message: Some(Message {
                            role: Role::Assistant as i32,
                            content: std::iter::once(Part::Text(c.text))
                                .chain(c.tool_calls.into_iter().map(Part::ToolCall))
                                .map(|p| ContentPart { part: Some(p) })
                                .collect(),
                        }),
                        stop_reason: c.stop_reason as i32,
                        usage: Some(c.usage),
                        route: Some(self.wire_route(&route)),
                        attempts: tally.attempts,
                    });
                }
                Err(e) => {
                    self.record_failure(&route, res, e, latency, &mut tally)
                        .await?
                }
            }
        }
        Err(tally.into_error(deadline))
    }

    /// A streamed completion with failover until the first content chunk.
    pub async fn infer_stream(
        &self,
        mut req: InferRequest,
        grpc_timeout: Option<Duration>,
    ) -> Result<EventStream, SpokeError> {
        let (deadline, estimate) = self.prepare(&mut req, grpc_timeout)?;
        let plan = self.plan(&req)?;
        let mut tally = Tally::default();
        for route in plan {
            let Some((res, budget)) = self
                .begin_attempt(&route, deadline, estimate, &mut tally)
                .await?
            else {
                continue;
            };
            let call = Call {
                region: &route.region,
                model: &route.upstream_model,
                request: &req,
                timeout: budget,
            };
            let started = Instant::now();
            let attempt_deadline = Instant::now() + budget;
            let span = self.upstream_span(&route);
            // Open the stream and wait for its first chunk: until then, failing over is free.
            let opening = tracing::Instrument::instrument(
                async {
                    let mut s = self.upstream.stream(call).await?;
                    match s.next().await {
                        Some(Ok(first)) => Ok((first, s)),
                        Some(Err(e)) => Err(e),
                        None => Err(UpstreamError::unavailable(
                            "stream closed before any content",
                        )),
                    }
                },
                span.clone(),
            );
            let opened = tokio::time::timeout_at(attempt_deadline, opening)
                .await
                .unwrap_or(Err(UpstreamError::Timeout));
            crate::observe::upstream_result(&span, opened.as_ref().err());
            let latency = started.elapsed();
            match opened {
                Ok((first, rest)) => {
                    tally
                        .attempts
                        .push(self.attempt(&route, Outcome::Ok, latency, String::new()));
                    let start = InferEvent {
                        event: Some(Event::Start(StreamStart {
                            request_id: req.request_id.clone(),
                            route: Some(self.wire_route(&route)),
                            attempts: tally.attempts,
                        })),
                    };
                    return Ok(self.committed(route, res, start, first, rest, deadline));
                }
                Err(e) => {
                    self.record_failure(&route, res, e, latency, &mut tally)
                        .await?
                }
            }
        }
        Err(tally.into_error(deadline))
    }

    /// The stream after its route committed: content flows through; an upstream failure or the
    /// deadline ends it with an error item (never a silent close).
    fn committed(
        &self,
        route: Arc<Route>,
        ticket: Ticket,
        start: InferEvent,
        first: Chunk,
        rest: switchyard_providers::ChunkStream,
        deadline: Instant,
    ) -> EventStream {
        struct St {
            route: Arc<Route>,
            ticket: Option<Ticket>,
            store: Arc<dyn QuotaStore>,
            pending: Vec<Result<Chunk, UpstreamError>>,
            rest: switchyard_providers::ChunkStream,
            deadline: Instant,
            backoff: Backoff,
            account: String,
            provider: &'static str,
        }
        let st = St {
            route,
            ticket: Some(ticket),
            store: self.store.clone(),
            pending: vec![Ok(first)],
            rest,
            deadline,
            backoff: self.backoff,
            account: self.account.clone(),
            provider: self.provider,
        };
        let tail = futures::stream::unfold(st, |mut st| async move {
            // `None` once the stream has ended (cleanly or not): stop.
            st.ticket.as_ref()?;
            let item = match st.pending.pop() {
                Some(item) => Some(item),
                None => tokio::time::timeout_at(st.deadline, st.rest.next())
                    .await
                    .unwrap_or(Some(Err(UpstreamError::Timeout))),
            };
            let now = std::time::Instant::now();
            let out = match item {
                Some(Ok(Chunk::Delta(text))) => Ok(InferEvent {
                    event: Some(Event::Delta(StreamDelta {
                        text,
                        tool_call: None,
                    })),
                }),
                Some(Ok(Chunk::ToolCall {
                    index,
                    id,
                    name,
                    arguments,
                })) => Ok(InferEvent {
                    event: Some(Event::Delta(StreamDelta {
                        text: String::new(),
                        tool_call: Some(switchyard_proto::v1::ToolCallDelta {
                            index,
                            id,
                            name,
                            arguments_json: arguments,
                        }),
                    })),
                }),
                Some(Ok(Chunk::End { stop_reason, usage })) => {
                    st.route.state.lock().on_success();
                    if let Some(t) = st.ticket.take() {
                        settle(&*st.store, t, &usage).await;
                    }
                    Ok(InferEvent {
                        event: Some(Event::End(StreamEnd {
                            stop_reason: stop_reason as i32,
                            usage: Some(usage),
                        })),
                    })
                }
                Some(Err(e)) => {
                    st.route.state.lock().on_error(&e, &st.backoff, now);
                    if let Some(t) = st.ticket.take() {
                        release(&*st.store, t).await;
                    }
                    tracing::warn!(model = %st.route.model, region = %st.route.region, error = %e, "upstream failed mid-stream");
                    let attempt = Attempt {
                        target: Some(WireRoute {
                            provider: st.provider.to_owned(),
                            account: st.account.clone(),
                            region: st.route.region.clone(),
                            model: st.route.model.clone(),
                        }),
                        outcome: Outcome::FailedMidStream as i32,
                        latency_ms: 0,
                        detail: e.to_string(),
                    };
                    Err(match e {
                        UpstreamError::Timeout => SpokeError::DeadlineExceeded {
                            attempts: vec![attempt],
                        },
                        _ => SpokeError::Unavailable {
                            retry_after: None,
                            attempts: vec![attempt],
                        },
                    })
                }
                None => {
                    st.route.state.lock().on_error(
                        &UpstreamError::unavailable("stream ended without an end event"),
                        &st.backoff,
                        now,
                    );
                    if let Some(t) = st.ticket.take() {
                        release(&*st.store, t).await;
                    }
                    Err(SpokeError::Unavailable {
                        retry_after: None,
                        attempts: vec![],
                    })
                }
            };
            Some((out, st))
        });
        futures::stream::once(async move { Ok(start) })
            .chain(tail)
            .boxed()
    }

    /// State of every route, for `Describe` and `/healthz`. Asks the quota store for each
    /// limited route's allowance (one round trip per route with Redis).
    pub async fn describe(&self) -> DescribeResponse {
        let mut serving = false;
        let mut headroom: f64 = 0.0;
        let table = self.table.load_full();
        let mut models = Vec::with_capacity(table.models.len());
        for (m, routes) in table.models.iter().zip(&table.routes) {
            let mut regions = Vec::with_capacity(routes.len());
            for r in routes {
                let factor = r.state.lock().rate_factor(std::time::Instant::now());
                let quota = if r.limits.is_unlimited() {
                    RateState::default()
                } else {
                    self.store
                        .peek(&r.scope, &r.limits.scaled(factor))
                        .await
                        .unwrap_or_default()
                };
                let s: Status = r.state.lock().status(&quota, std::time::Instant::now());
                if matches!(
                    s.state,
                    switchyard_proto::v1::RouteState::Ready
                        | switchyard_proto::v1::RouteState::HalfOpen
                ) {
                    serving = true;
                }
                headroom = headroom.max(s.headroom);
                regions.push(RegionStatus {
                    region: r.region.clone(),
                    state: s.state as i32,
                    headroom: s.headroom,
                    requests_remaining: s.requests_remaining,
                    tokens_remaining: s.tokens_remaining,
                    retry_after_ms: s.retry_in.as_millis() as u64,
                });
            }
            models.push(ModelStatus {
                id: m.id.clone(),
                capabilities: Some(Capabilities {
                    streaming: m.streaming,
                    tools: m.tools,
                    images: m.images,
                    context_window: m.context_window,
                }),
                regions,
            });
        }
        let serving = serving && self.credentials_ok() && !self.is_draining();
        DescribeResponse {
            provider: self.provider.to_owned(),
            account: self.account.clone(),
            models,
            headroom: if serving { headroom } else { 0.0 },
            serving,
            draining: self.is_draining(),
        }
    }

    /// Whether the quota store's shared backend (Redis) answers; true for the embedded store.
    pub fn quota_store_healthy(&self) -> bool {
        self.store.is_shared_healthy()
    }
}

async fn release(store: &dyn QuotaStore, ticket: Ticket) {
    if let Some((r, limits)) = ticket.quota
        && let Err(e) = store.release(&r, &limits).await
    {
        tracing::warn!("quota store: {e}");
    }
}

async fn settle(store: &dyn QuotaStore, ticket: Ticket, usage: &Usage) {
    if let Some((r, limits)) = ticket.quota {
        let used = u64::from(usage.input_tokens) + u64::from(usage.output_tokens);
        if let Err(e) = store.settle(&r, &limits, used, 0.0).await {
            tracing::warn!("quota store: {e}");
        }
    }
}

/// What the attempts of one request added up to.
#[derive(Default)]
struct Tally {
    attempts: Vec<Attempt>,
    /// Earliest time a capacity-limited route frees up.
    earliest: Option<Duration>,
    /// Whether any route failed for a reason other than capacity (5xx, timeout, breaker).
    outage: bool,
    timed_out: bool,
}

impl Tally {
    fn note_retry(&mut self, d: Duration) {
        self.earliest = Some(self.earliest.map_or(d, |e| e.min(d)));
    }

    fn skip(&mut self, attempt: Attempt, skip: Skip) {
        self.attempts.push(attempt);
        if skip.outcome == Outcome::SkippedBreaker {
            self.outage = true;
        }
        self.note_retry(skip.retry_in);
    }

    fn failed(&mut self, attempt: Attempt, e: &UpstreamError, cooldown: Option<Duration>) {
        self.attempts.push(attempt);
        match e {
            UpstreamError::Throttled { .. } => {
                if let Some(d) = cooldown {
                    self.note_retry(d);
                }
            }
            UpstreamError::Timeout => {
                self.outage = true;
                self.timed_out = true;
            }
            UpstreamError::Unavailable { .. } => self.outage = true,
            UpstreamError::Invalid { .. } => {}
        }
    }

    fn into_error(self, deadline: Instant) -> SpokeError {
        if self.timed_out && Instant::now() >= deadline {
            return SpokeError::DeadlineExceeded {
                attempts: self.attempts,
            };
        }
        if self.outage {
            SpokeError::Unavailable {
                retry_after: self.earliest,
                attempts: self.attempts,
            }
        } else {
            SpokeError::Exhausted {
                // At least a second: a zero Retry-After invites a hot loop.
                retry_after: self
                    .earliest
                    .unwrap_or(Duration::from_secs(1))
                    .max(Duration::from_millis(1)),
                attempts: self.attempts,
            }
        }
    }
}

/// Rejects requests no upstream could serve, before any quota is taken.
pub fn validate_request(req: &InferRequest) -> Result<(), SpokeError> {
    if req.models.is_empty() {
        return Err(SpokeError::BadRequest(
            "models: at least one model candidate is required".into(),
        ));
    }
    if req.messages.is_empty() {
        return Err(SpokeError::BadRequest(
            "messages: at least one message is required".into(),
        ));
    }
    for (i, m) in req.messages.iter().enumerate() {
        if Role::try_from(m.role).is_err() || m.role == Role::Unspecified as i32 {
            return Err(SpokeError::BadRequest(format!(
                "messages[{i}].role: must be user, assistant or tool"
            )));
        }
        if m.content.is_empty() {
            return Err(SpokeError::BadRequest(format!(
                "messages[{i}].content: must not be empty"
            )));
        }
    }
    if let Some(p) = &req.params {
        if let Some(t) = p.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(SpokeError::BadRequest(
                "temperature: must be between 0 and 2".into(),
            ));
        }
        if let Some(t) = p.top_p
            && !(0.0..=1.0).contains(&t)
        {
            return Err(SpokeError::BadRequest(
                "top_p: must be between 0 and 1".into(),
            ));
        }
        if p.max_tokens == Some(0) {
            return Err(SpokeError::BadRequest(
                "max_tokens: must be at least 1".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use proptest::prelude::*;
    use switchyard_providers::simulated::{SimulatedConfig, SimulatedUpstream};

    const REGIONS: [&str; 4] = ["r0", "r1", "r2", "r3"];

    fn engine(chains: &[Vec<usize>]) -> Engine {
        let mut t =
            String::from("listen = \"127.0.0.1:0\"\naccount = \"1\"\nprovider = \"simulated\"\n");
        for r in REGIONS {
            t.push_str(&format!("[[regions]]\nname = \"{r}\"\n"));
        }
        for (i, chain) in chains.iter().enumerate() {
            let regions: Vec<String> = chain
                .iter()
                .map(|r| format!("\"{}\"", REGIONS[*r]))
                .collect();
            t.push_str(&format!(
                "[[models]]\nid = \"m{i}\"\nregions = [{}]\n",
                regions.join(",")
            ));
        }
        let config = parse(&t).unwrap();
        Engine::new(
            &config,
            Arc::new(SimulatedUpstream::new(SimulatedConfig::default())),
            Arc::new(switchyard_quota::MemoryStore::new()),
        )
    }

    fn chain() -> impl Strategy<Value = Vec<usize>> {
        Just(vec![0usize, 1, 2, 3])
            .prop_shuffle()
            .prop_flat_map(|v| (1..=4usize).prop_map(move |n| v[..n].to_vec()))
    }

    proptest! {
        /// The plan is: each requested model that the spoke serves, in request order, with its
        /// region chain in configured order, filtered by the allowed regions — nothing else.
        #[test]
        fn route_order_is_models_then_region_chains(
            chains in proptest::collection::vec(chain(), 1..4),
            asked in proptest::collection::vec(0usize..5, 1..4),
            allowed in proptest::collection::vec(0usize..4, 0..3),
        ) {
            let e = engine(&chains);
            let req = InferRequest {
                models: asked.iter().map(|m| format!("m{m}")).collect(),
                allowed_regions: allowed.iter().map(|r| REGIONS[*r].to_string()).collect(),
                ..Default::default()
            };
            let mut expected = Vec::new();
            let mut known = false;
            for m in &asked {
                let Some(chain) = chains.get(*m) else { continue };
                known = true;
                for r in chain {
                    if allowed.is_empty() || allowed.contains(r) {
                        expected.push((format!("m{m}"), REGIONS[*r].to_string()));
                    }
                }
            }
            match e.plan(&req) {
                Ok(plan) => {
                    let got: Vec<_> = plan.iter().map(|r| (r.model.clone(), r.region.clone())).collect();
                    prop_assert_eq!(got, expected);
                }
                Err(SpokeError::UnknownModel(_)) => prop_assert!(!known),
                Err(SpokeError::BadRequest(_)) => prop_assert!(known && expected.is_empty()),
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn requests_without_messages_or_models_are_refused() {
        let e = engine(&[vec![0]]);
        let empty = InferRequest {
            models: vec!["m0".into()],
            ..Default::default()
        };
        assert!(matches!(
            validate_request(&empty),
            Err(SpokeError::BadRequest(_))
        ));
        let req = InferRequest::default();
        assert!(matches!(e.plan(&req), Err(SpokeError::UnknownModel(_))));
    }
}
