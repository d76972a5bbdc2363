//! Response cache and request coalescing for deterministic chat requests.
//!
//! Opt-in per tenant or per alias (`cache = { ttl = "5m" }`; `ttl = "0s"` = coalescing only).
//! A request is cacheable when its tenant or alias opted in, `temperature` is 0 and it carries no
//! tools. Its key is a SHA-256 over the tenant, the requested alias and the canonical request
//! (system prompt, messages, parameters after content policy), so a tenant never sees another's
//! entries. Identical requests in flight at the same time share one upstream call: the first is
//! the *leader*, the others *follow* its answer through a replay buffer (deltas as they arrive,
//! then the end), streaming included. A leader that fails or is abandoned releases its followers,
//! which then make their own call (or, when they already streamed part of the answer, end with an
//! error event).
//!
//! Responses carry `x-switchyard-cache: hit|miss|coalesced`; hits and coalesced answers count as
//! requests against the tenant's `requests_per_minute` but not against token or spend limits.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest;
use switchyard_proto::v1 as pb;
use tokio::sync::watch;

use crate::config::{Alias, Tenant};
use crate::error::HubError;
use crate::hub::{Hub, RouteTaken};
use crate::openai::{self, ChatRequest};

/// Response header: `hit`, `miss` or `coalesced`.
pub const CACHE_HEADER: &str = "x-switchyard-cache";

type Key = [u8; 32];

/// `[cache]`: store and bounds. Which requests are cached is opted into per tenant / alias.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFileConfig {
    /// Most entries kept in memory (default 10000).
    pub max_entries: Option<usize>,
    /// Most bytes of answers kept in memory (default 64 MiB); with Redis, the largest entry stored.
    pub max_bytes: Option<usize>,
    /// `"memory"` (default) or `"redis"` (shared by hub replicas).
    pub store: Option<String>,
    pub redis_url: Option<String>,
    /// Environment variable holding the Redis URL (when it carries a password).
    pub redis_url_env: Option<String>,
    /// Prefix of the Redis keys (default `switchyard`).
    pub key_prefix: Option<String>,
    /// Bound on one Redis operation (default 250ms); a slow or down Redis is a miss.
    pub timeout: Option<String>,
}

/// `cache = { ttl = "5m" }` on a tenant or alias.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheOptIn {
    pub ttl: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CacheStore {
    Memory,
    Redis {
        url: String,
        prefix: String,
        timeout: Duration,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    pub max_entries: usize,
    pub max_bytes: usize,
    pub store: CacheStore,
}

impl CacheFileConfig {
    pub fn validate(&self, errs: &mut Vec<String>) -> CacheSettings {
        let max_entries = self.max_entries.unwrap_or(10_000);
        let max_bytes = self.max_bytes.unwrap_or(64 * 1024 * 1024);
        if max_entries == 0 {
            errs.push("cache.max_entries: must be at least 1".into());
        }
        if max_bytes == 0 {
            errs.push("cache.max_bytes: must be at least 1".into());
        }
        let timeout = match self.timeout.as_deref().map(humantime::parse_duration) {
            None => Duration::from_millis(250),
            Some(Ok(d)) if !d.is_zero() => d,
            Some(Ok(_)) => {
                errs.push("cache.timeout: must be greater than 0".into());
                Duration::from_millis(250)
            }
            Some(Err(e)) => {
                errs.push(format!("cache.timeout: invalid duration: {e}"));
                Duration::from_millis(250)
            }
        };
        let store = match self.store.as_deref().unwrap_or("memory") {
            "memory" => {
                if self.redis_url.is_some() || self.redis_url_env.is_some() {
                    errs.push("cache.redis_url: given but store is \"memory\"".into());
                }
                CacheStore::Memory
            }
            "redis" => {
                let url = match (&self.redis_url, &self.redis_url_env) {
                    (Some(u), None) => Some(u.clone()),
                    (None, Some(var)) => match std::env::var(var) {
                        Ok(u) => Some(u),
                        Err(_) => {
                            errs.push(format!(
                                "cache.redis_url_env: environment variable {var} is not set"
                            ));
                            None
                        }
                    },
                    _ => {
                        errs.push(
                            "cache: store = \"redis\" needs exactly one of redis_url, redis_url_env"
                                .into(),
                        );
                        None
                    }
                };
                if let Some(u) = &url
                    && switchyard_quota::redis_conn::seeds(u).is_err()
                {
                    errs.push("cache.redis_url: not a redis:// or rediss:// URL (or comma-separated cluster seed nodes)".into());
                }
                CacheStore::Redis {
                    url: url.unwrap_or_default(),
                    prefix: self
                        .key_prefix
                        .clone()
                        .unwrap_or_else(|| "switchyard".into()),
                    timeout,
                }
            }
            other => {
                errs.push(format!(
                    "cache.store: {other:?} is not \"memory\" or \"redis\""
                ));
                CacheStore::Memory
            }
        };
        CacheSettings {
            max_entries,
            max_bytes,
            store,
        }
    }
}

/// Parses a tenant's or alias's `cache = { ttl = ... }`.
pub fn opt_in_ttl(c: Option<&CacheOptIn>, base: &str, errs: &mut Vec<String>) -> Option<Duration> {
    let c = c?;
    match humantime::parse_duration(&c.ttl) {
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(format!(
                "{base}.cache.ttl: invalid duration {:?}: {e}",
                c.ttl
            ));
            None
        }
    }
}

/// A stored answer (text only: requests with tools are never cached).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Answer {
    pub text: String,
    pub stop_reason: i32,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub provider: String,
    pub account: String,
    pub region: String,
    pub model: String,
}

impl Answer {
    /// The answer of a completed call; `None` when it holds more than text.
    pub fn from_response(resp: &pb::InferResponse, route: &RouteTaken) -> Option<Answer> {
        let mut text = String::new();
        for part in resp.message.iter().flat_map(|m| &m.content) {
            match &part.part {
                Some(pb::content_part::Part::Text(t)) => text.push_str(t),
                _ => return None,
            }
        }
        let usage = resp.usage.unwrap_or_default();
        Some(Answer {
            text,
            stop_reason: resp.stop_reason,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            provider: route.provider.clone(),
            account: route.account.clone(),
            region: route.region.clone(),
            model: route.model.clone(),
        })
    }

    fn response(&self) -> pb::InferResponse {
        pb::InferResponse {
            message: Some(pb::Message {
                role: pb::Role::Assistant as i32,
                content: vec![pb::ContentPart {
                    part: Some(pb::content_part::Part::Text(self.text.clone())),
                }],
            }),
            stop_reason: self.stop_reason,
            usage: Some(self.usage()),
            route: Some(pb::Route {
                provider: self.provider.clone(),
                account: self.account.clone(),
                region: self.region.clone(),
                model: self.model.clone(),
            }),
            ..Default::default()
        }
    }

    fn usage(&self) -> pb::Usage {
        pb::Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
        }
    }

    fn size(&self) -> usize {
        self.text.len()
            + self.provider.len()
            + self.account.len()
            + self.region.len()
            + self.model.len()
            + 64
    }
}

#[derive(Debug)]
struct Entry {
    answer: Arc<Answer>,
    expires: Instant,
    size: usize,
    seq: u64,
}

/// In-memory LRU bounded by entries and bytes.
#[derive(Debug, Default)]
struct Memory {
    map: HashMap<Key, Entry>,
    /// Last use → key, oldest first.
    order: BTreeMap<u64, Key>,
    bytes: usize,
    seq: u64,
}

impl Memory {
    fn get(&mut self, key: &Key, now: Instant) -> Option<Arc<Answer>> {
        let (expired, old_seq) = match self.map.get(key) {
            None => return None,
            Some(e) => (e.expires <= now, e.seq),
        };
        if expired {
            self.remove(key);
            return None;
        }
        self.seq += 1;
        let seq = self.seq;
        self.order.remove(&old_seq);
        self.order.insert(seq, *key);
        let e = self.map.get_mut(key)?;
        e.seq = seq;
        Some(e.answer.clone())
    }

    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.map.remove(key) {
            self.order.remove(&e.seq);
            self.bytes -= e.size;
        }
    }

    fn put(&mut self, key: Key, answer: Arc<Answer>, ttl: Duration, limits: &CacheSettings) {
        let size = answer.size();
        if size > limits.max_bytes {
            return;
        }
        self.remove(&key);
        while !self.map.is_empty()
            && (self.map.len() >= limits.max_entries || self.bytes + size > limits.max_bytes)
        {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.map.remove(&oldest) {
                self.bytes -= e.size;
            }
        }
        self.seq += 1;
        self.order.insert(self.seq, key);
        self.bytes += size;
        self.map.insert(
            key,
            Entry {
                answer,
                expires: Instant::now() + ttl,
                size,
                seq: self.seq,
            },
        );
    }
}

/// One call in flight that identical requests follow.
#[derive(Debug)]
pub struct Flight {
    state: Mutex<FlightState>,
    changed: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct FlightState {
    /// The served model, once the leader's stream started (labels the followers' chunks).
    model: String,
    deltas: Vec<String>,
    /// `Some(Ok)`: the leader's answer; `Some(Err)`: it failed or was abandoned.
    done: Option<Result<Arc<Answer>, ()>>,
}

impl Flight {
    fn new() -> Flight {
        Flight {
            state: Mutex::new(FlightState::default()),
            changed: watch::channel(0).0,
        }
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    fn model(&self) -> String {
        self.state.lock().model.clone()
    }

    /// Deltas from `from` on, and the end if reached.
    fn read(&self, from: usize) -> (Vec<String>, Option<Result<Arc<Answer>, ()>>) {
        let st = self.state.lock();
        (
            st.deltas
                .get(from..)
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
            st.done.clone(),
        )
    }
}

/// The shared cache and the table of calls in flight.
pub struct Cache {
    settings: CacheSettings,
    memory: Mutex<Memory>,
    redis: tokio::sync::OnceCell<Option<switchyard_quota::redis_conn::RedisConn>>,
    flights: Mutex<HashMap<Key, Arc<Flight>>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("max_entries", &self.settings.max_entries)
            .finish_non_exhaustive()
    }
}

/// What to do with a cacheable request.
pub enum Begin {
    /// Answered from the cache.
    Hit(Arc<Answer>),
    /// An identical call is in flight: follow it.
    Follow(Arc<Flight>),
    /// Make the call, feeding the leader (stored in the cache and fanned out).
    Lead(Leader),
}

impl Cache {
    pub fn new(settings: CacheSettings) -> Cache {
        Cache {
            settings,
            memory: Mutex::new(Memory::default()),
            redis: tokio::sync::OnceCell::new(),
            flights: Mutex::new(HashMap::new()),
        }
    }

    async fn redis(&self) -> Option<(switchyard_quota::redis_conn::RedisConn, String, Duration)> {
        let CacheStore::Redis {
            url,
            prefix,
            timeout,
        } = &self.settings.store
        else {
            return None;
        };
        let conn = self
            .redis
            .get_or_init(|| async {
                // A single node or a Redis Cluster (found out from the seeds).
                match switchyard_quota::redis_conn::connect(url, *timeout).await {
                    Ok(c) => Some(c),
                    Err(_) => {
                        tracing::warn!("response cache: Redis unreachable; caching disabled");
                        None
                    }
                }
            })
            .await
            .clone()?;
        Some((conn, format!("{prefix}:cache:"), *timeout))
    }

    async fn get(&self, key: &Key) -> Option<Arc<Answer>> {
        if let Some((mut conn, prefix, timeout)) = self.redis().await {
            let k = format!("{prefix}{}", hex::encode(key));
            let got = tokio::time::timeout(
                timeout,
                redis::cmd("GET")
                    .arg(&k)
                    .query_async::<Option<Vec<u8>>>(&mut conn),
            )
            .await;
            return match got {
                Ok(Ok(Some(bytes))) => serde_json::from_slice(&bytes).ok().map(Arc::new),
                Ok(Ok(None)) => None,
                Ok(Err(e)) => {
                    tracing::warn!("response cache: Redis GET failed: {e}");
                    None
                }
                Err(_) => {
                    tracing::warn!("response cache: Redis GET timed out");
                    None
                }
            };
        }
        self.memory.lock().get(key, Instant::now())
    }

    async fn put(&self, key: Key, answer: Arc<Answer>, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        if let Some((mut conn, prefix, timeout)) = self.redis().await {
            let Ok(bytes) = serde_json::to_vec(&*answer) else {
                return;
            };
            if bytes.len() > self.settings.max_bytes {
                return;
            }
            let k = format!("{prefix}{}", hex::encode(key));
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let r = tokio::time::timeout(
                timeout,
                redis::cmd("SET")
                    .arg(&k)
                    .arg(bytes)
                    .arg("PX")
                    .arg(ms)
                    .query_async::<()>(&mut conn),
            )
            .await;
            if !matches!(r, Ok(Ok(()))) {
                tracing::warn!("response cache: Redis SET failed");
            }
            return;
        }
        self.memory.lock().put(key, answer, ttl, &self.settings);
    }

    /// Looks `key` up (when `ttl` > 0), then joins or starts the call in flight.
    pub async fn begin(self: &Arc<Self>, key: Key, ttl: Duration) -> Begin {
        if !ttl.is_zero()
            && let Some(a) = self.get(&key).await
        {
            return Begin::Hit(a);
        }
        let mut flights = self.flights.lock();
        if let Some(f) = flights.get(&key) {
            return Begin::Follow(f.clone());
        }
        let flight = Arc::new(Flight::new());
        flights.insert(key, flight.clone());
        Begin::Lead(Leader {
            cache: self.clone(),
            key,
            ttl,
            flight,
            finished: false,
        })
    }

    fn end_flight(&self, key: &Key, flight: &Arc<Flight>) {
        let mut flights = self.flights.lock();
        if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            flights.remove(key);
        }
    }
}

/// The request that makes the call for everyone. Dropped without [`Leader::finish`] (failure,
/// client gone), it releases its followers with an error.
pub struct Leader {
    cache: Arc<Cache>,
    key: Key,
    ttl: Duration,
    flight: Arc<Flight>,
    finished: bool,
}

impl Leader {
    /// The model a streamed answer comes from (before its first delta).
    pub fn set_model(&self, model: &str) {
        self.flight.state.lock().model = model.to_string();
    }

    /// A streamed delta, fanned out to followers at once.
    pub fn delta(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.flight.state.lock().deltas.push(text.to_string());
        self.flight.bump();
    }

    /// The complete answer: stored (when the TTL is above zero) and handed to the followers.
    pub async fn finish(mut self, answer: Option<Answer>) {
        self.finished = true;
        let Some(answer) = answer else {
            self.fail();
            return;
        };
        let answer = Arc::new(answer);
        self.cache.put(self.key, answer.clone(), self.ttl).await;
        {
            let mut st = self.flight.state.lock();
            if st.deltas.is_empty() && !answer.text.is_empty() {
                st.deltas.push(answer.text.clone());
            }
            st.done = Some(Ok(answer));
        }
        self.flight.bump();
        self.cache.end_flight(&self.key, &self.flight);
    }

    /// The end of a streamed answer: the text is what was fanned out.
    pub async fn finish_stream(self, end: &pb::StreamEnd, route: &RouteTaken) {
        let text = self.flight.state.lock().deltas.concat();
        let usage = end.usage.unwrap_or_default();
        let answer = Answer {
            text,
            stop_reason: end.stop_reason,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            provider: route.provider.clone(),
            account: route.account.clone(),
            region: route.region.clone(),
            model: route.model.clone(),
        };
        self.finish(Some(answer)).await;
    }

    fn fail(&self) {
        self.flight.state.lock().done = Some(Err(()));
        self.flight.bump();
        self.cache.end_flight(&self.key, &self.flight);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.finished {
            self.fail();
        }
    }
}

/// The cache key and TTL of a request, when it may be cached: the tenant or the alias opted in,
/// `temperature` is 0 and no tools are offered.
pub fn cacheable(
    tenant: &Tenant,
    alias: &Alias,
    req: &ChatRequest,
    base: &pb::InferRequest,
) -> Option<(Key, Duration)> {
    let ttl = tenant.cache_ttl.or(alias.cache_ttl)?;
    if req.temperature != Some(0.0) || !base.tools.is_empty() {
        return None;
    }
    let mut h = sha2::Sha256::new();
    for part in [
        "switchyard-cache-v1",
        tenant.name.as_str(),
        req.model.as_str(),
        alias.name.as_str(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    // Debug output of the prost messages is deterministic for equal values.
    let canonical = format!(
        "{:?}|{:?}|{:?}|{:?}",
        base.system, base.messages, base.params, tenant.allowed_regions
    );
    h.update(canonical.as_bytes());
    Some((h.finalize().into(), ttl))
}

/// `x-switchyard-cache: miss` on a cacheable request's own call.
pub fn mark_miss(resp: &mut Response, miss: bool) {
    if miss {
        resp.headers_mut()
            .insert(CACHE_HEADER, HeaderValue::from_static("miss"));
    }
}

fn count(outcome: &'static str) {
    metrics::counter!("switchyard_cache_requests_total", "outcome" => outcome).increment(1);
}

/// How to answer a request that was served without a call of its own.
#[derive(Clone)]
pub struct Reply {
    pub id: String,
    pub created: u64,
    pub include_usage: bool,
    pub stream: bool,
    pub deadline: Instant,
}

impl Reply {
    pub fn for_request(req: &ChatRequest, request_id: &str, deadline: Instant) -> Reply {
        Reply {
            id: format!("chatcmpl-{request_id}"),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            include_usage: req.stream_options.as_ref().is_some_and(|o| o.include_usage),
            stream: req.stream,
            deadline,
        }
    }
}

/// Outcome of [`serve`]: a finished response, or the leader hold for the request's own call.
pub enum Served {
    Done(Response),
    Lead(Leader),
}

/// Cache lookup and coalescing for one cacheable request. Hits and coalesced answers are
/// admitted against the tenant's request rate only.
pub async fn serve(
    hub: &Arc<Hub>,
    tenant: &Tenant,
    key: Key,
    ttl: Duration,
    reply: Reply,
) -> Result<Served, HubError> {
    loop {
        match hub.cache.begin(key, ttl).await {
            Begin::Lead(l) => {
                count("miss");
                return Ok(Served::Lead(l));
            }
            Begin::Hit(answer) => {
                let state = admit_request_only(hub, tenant).await?;
                count("hit");
                let mut resp = if reply.stream {
                    replay(reply, answer.clone())
                } else {
                    json_reply(&reply, &answer)
                };
                finish_headers(resp.headers_mut(), &answer, "hit", &state);
                return Ok(Served::Done(resp));
            }
            // A leader that failed before any content: start over (one of its followers leads
            // the next call).
            Begin::Follow(flight) => match follow(hub, tenant, flight, &reply).await? {
                Some(resp) => return Ok(Served::Done(resp)),
                None => continue,
            },
        }
    }
}

async fn follow(
    hub: &Arc<Hub>,
    tenant: &Tenant,
    flight: Arc<Flight>,
    reply: &Reply,
) -> Result<Option<Response>, HubError> {
    let mut rx = flight.changed.subscribe();
    // Wait for the first content (streaming) or the end (non-streaming); a failed leader lets
    // this request make its own call.
    let first = loop {
        let (deltas, done) = flight.read(0);
        match done {
            Some(Err(())) => return Ok(None),
            Some(Ok(answer)) => break Ok(answer),
            None if reply.stream && !deltas.is_empty() => break Err(()),
            None => {}
        }
        match tokio::time::timeout_at(reply.deadline.into(), rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Ok(None),
            Err(_) => return Err(HubError::DeadlineExceeded { attempts: vec![] }),
        }
    };
    let state = admit_request_only(hub, tenant).await?;
    count("coalesced");
    let answer = match first {
        Ok(answer) => answer,
        Err(()) => {
            // Stream the leader's deltas live.
            let mut resp = live(reply.clone(), flight);
            resp.headers_mut()
                .insert(CACHE_HEADER, HeaderValue::from_static("coalesced"));
            crate::quota::ratelimit_headers(resp.headers_mut(), &state);
            return Ok(Some(resp));
        }
    };
    let mut resp = if reply.stream {
        replay(reply.clone(), answer.clone())
    } else {
        json_reply(reply, &answer)
    };
    finish_headers(resp.headers_mut(), &answer, "coalesced", &state);
    Ok(Some(resp))
}

fn finish_headers(
    h: &mut HeaderMap,
    answer: &Answer,
    outcome: &'static str,
    state: &switchyard_quota::RateState,
) {
    h.insert(CACHE_HEADER, HeaderValue::from_static(outcome));
    for (k, v) in [
        ("x-switchyard-provider", &answer.provider),
        ("x-switchyard-account", &answer.account),
        ("x-switchyard-region", &answer.region),
        ("x-switchyard-model", &answer.model),
    ] {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    }
    h.insert("x-switchyard-attempts", HeaderValue::from_static("0"));
    crate::quota::ratelimit_headers(h, state);
}

/// Counts the request against `requests_per_minute` only (no tokens, no spend).
async fn admit_request_only(
    hub: &Hub,
    tenant: &Tenant,
) -> Result<switchyard_quota::RateState, HubError> {
    let Some(rpm) = tenant.limits.requests_per_minute else {
        return Ok(switchyard_quota::RateState::default());
    };
    let limits = switchyard_quota::Limits {
        requests_per_minute: Some(rpm),
        ..Default::default()
    };
    let scope = format!("tenant:{}", tenant.name);
    match hub.quota.admit(&scope, &limits, 0).await {
        Ok(switchyard_quota::Admission::Admitted { reservation, state }) => {
            if let Err(e) = hub.quota.settle(&reservation, &limits, 0, 0.0).await {
                tracing::warn!("quota store: {e}");
            }
            Ok(state)
        }
        Ok(switchyard_quota::Admission::Refused {
            limit,
            retry_after,
            state,
        }) => Err(HubError::TenantQuota {
            tenant: tenant.name.clone(),
            limit,
            retry_after,
            state,
        }),
        Err(e) => {
            tracing::warn!(tenant = %tenant.name, "quota store: {e}; admitting");
            Ok(switchyard_quota::RateState::default())
        }
    }
}

fn json_reply(reply: &Reply, answer: &Answer) -> Response {
    axum::Json(openai::completion_json(
        &reply.id,
        reply.created,
        &answer.response(),
    ))
    .into_response()
}

fn chunk(reply: &Reply, model: &str, delta: serde_json::Value, finish: Option<&str>) -> Event {
    Event::default().data(
        openai::chunk_json(
            &reply.id,
            reply.created,
            model,
            delta,
            finish,
            reply.include_usage,
        )
        .to_string(),
    )
}

fn end_events(reply: &Reply, answer: &Answer) -> Vec<Event> {
    let mut out = vec![chunk(
        reply,
        &answer.model,
        json!({}),
        Some(openai::finish_reason(answer.stop_reason)),
    )];
    if reply.include_usage {
        out.push(
            Event::default().data(
                openai::usage_chunk_json(
                    &reply.id,
                    reply.created,
                    &answer.model,
                    Some(&answer.usage()),
                )
                .to_string(),
            ),
        );
    }
    out.push(Event::default().data("[DONE]"));
    out
}

/// A stored answer as SSE chunks (one per word, as an upstream would stream it).
fn replay(reply: Reply, answer: Arc<Answer>) -> Response {
    let mut events = vec![chunk(
        &reply,
        &answer.model,
        json!({"role": "assistant", "content": ""}),
        None,
    )];
    for piece in answer.text.split_inclusive(' ') {
        events.push(chunk(
            &reply,
            &answer.model,
            json!({"content": piece}),
            None,
        ));
    }
    events.extend(end_events(&reply, &answer));
    let stream = async_stream::stream! {
        for e in events {
            yield Ok::<_, Infallible>(e);
        }
    };
    Sse::new(stream).into_response()
}

/// Follows a streaming leader: every delta so far, then the rest as they arrive.
fn live(reply: Reply, flight: Arc<Flight>) -> Response {
    let events = async_stream::stream! {
        let mut rx = flight.changed.subscribe();
        let mut sent = 0usize;
        let mut model = flight.model();
        yield Ok::<_, Infallible>(chunk(&reply, &model, json!({"role": "assistant", "content": ""}), None));
        loop {
            let (deltas, done) = flight.read(sent);
            for d in deltas {
                sent += 1;
                yield Ok(chunk(&reply, &model, json!({"content": d}), None));
            }
            match done {
                Some(Ok(answer)) => {
                    model.clone_from(&answer.model);
                    for e in end_events(&reply, &answer) {
                        yield Ok(e);
                    }
                    break;
                }
                Some(Err(())) => {
                    yield Ok(Event::default().data(
                        json!({"error": {"message": "the upstream failed while streaming", "type": "server_error", "code": "stream_interrupted", "param": null}}).to_string(),
                    ));
                    break;
                }
                None => {}
            }
            match tokio::time::timeout_at(reply.deadline.into(), rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    yield Ok(Event::default().data(
                        json!({"error": {"message": "deadline exceeded", "type": "server_error", "code": "stream_interrupted", "param": null}}).to_string(),
                    ));
                    break;
                }
            }
        }
    };
    Sse::new(events).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Arc<Answer> {
        Arc::new(Answer {
            text: text.into(),
            stop_reason: 1,
            input_tokens: 1,
            output_tokens: 1,
            provider: "p".into(),
            account: "a".into(),
            region: "r".into(),
            model: "m".into(),
        })
    }

    #[test]
    fn memory_expires_and_evicts_least_recently_used() {
        let limits = CacheSettings {
            max_entries: 2,
            max_bytes: 10_000,
            store: CacheStore::Memory,
        };
        let mut m = Memory::default();
        let now = Instant::now();
        m.put([1; 32], answer("one"), Duration::from_secs(60), &limits);
        m.put([2; 32], answer("two"), Duration::from_secs(60), &limits);
        assert!(m.get(&[1; 32], now).is_some()); // 1 is now the most recent
        m.put([3; 32], answer("three"), Duration::from_secs(60), &limits);
        assert!(m.get(&[2; 32], now).is_none(), "LRU entry evicted");
        assert!(m.get(&[1; 32], now).is_some());
        assert!(
            m.get(&[3; 32], now + Duration::from_secs(61)).is_none(),
            "expired"
        );
        assert_eq!(m.map.len(), 1);
        let small = CacheSettings {
            max_bytes: 100,
            ..limits
        };
        m.put(
            [4; 32],
            answer(&"x".repeat(200)),
            Duration::from_secs(60),
            &small,
        );
        assert!(m.get(&[4; 32], now).is_none(), "larger than max_bytes");
    }

    #[tokio::test]
    async fn a_failed_leader_releases_followers() {
        let cache = Arc::new(Cache::new(CacheSettings {
            max_entries: 10,
            max_bytes: 10_000,
            store: CacheStore::Memory,
        }));
        let Begin::Lead(leader) = cache.begin([7; 32], Duration::from_secs(60)).await else {
            panic!("first request leads")
        };
        let Begin::Follow(flight) = cache.begin([7; 32], Duration::from_secs(60)).await else {
            panic!("second request follows")
        };
        drop(leader);
        assert!(matches!(flight.read(0).1, Some(Err(()))));
        assert!(matches!(
            cache.begin([7; 32], Duration::from_secs(60)).await,
            Begin::Lead(_)
        ));
    }
}
