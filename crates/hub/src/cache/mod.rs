//! Response cache and request coalescing for deterministic chat requests.
//!
//! Opt-in per tenant or per alias (`cache = { ttl = "5m" }`; `ttl = "0s"` = coalescing only).
//! A request is cacheable when its tenant or alias opted in, `temperature` is 0 and its answer is
//! one plain text: no tools, one choice (`n` ≤ 1), no logprobs, no reasoning asked for, nothing
//! passed through to a same-API upstream and no Bedrock-only fields. Its key is a SHA-256 over
//! the tenant, the requested alias and the canonical request (system prompt and its parts,
//! messages, every parameter — `seed`, `top_k`, penalties, `logit_bias`, reasoning off — the
//! response format and the tool choice, after content policy), so a tenant never sees
//! another's entries. Identical requests in flight at the same time share one upstream call: the first is
//! the *leader*, the others *follow* its answer through a replay buffer (deltas as they arrive,
//! then the end), streaming included. A leader that fails or is abandoned releases its followers,
//! which then make their own call (or, when they already streamed part of the answer, end with an
//! error event).
//!
//! Responses carry `x-switchyard-cache: hit|miss|coalesced`; hits and coalesced answers count as
//! requests against the tenant's `requests_per_minute` but not against token or spend limits.
//!
//! A stored or followed answer is the whole answer ([`Answer`]): every choice, reasoning, tool
//! calls, logprobs, usage details; followers of a streaming leader get its deltas as the spoke
//! sent them.

mod answer;
mod memory;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::Digest;
use switchyard_proto::v1 as pb;
use tokio::sync::watch;

use crate::model::{Alias, RouteTaken, Tenant};
pub use answer::{Answer, Part, StoredChoice, assemble};
use memory::Memory;

/// A cache key: SHA-256 of the tenant, the requested alias and the canonical request.
pub type Key = [u8; 32];

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
    /// The leader's stream so far, as the spoke sent it (text, thinking, tool-call and logprob
    /// pieces of every choice).
    deltas: Vec<pb::StreamDelta>,
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

    /// Notified at every change (a delta, the end).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    pub fn model(&self) -> String {
        self.state.lock().model.clone()
    }

    /// Deltas from `from` on, and the end if reached.
    pub fn read(&self, from: usize) -> (Vec<pb::StreamDelta>, Option<Result<Arc<Answer>, ()>>) {
        let st = self.state.lock();
        (
            st.deltas
                .get(from..)
                .map(<[pb::StreamDelta]>::to_vec)
                .unwrap_or_default(),
            st.done.clone(),
        )
    }
}

/// The shared cache and the table of calls in flight.
pub struct Cache {
    settings: CacheSettings,
    memory: Mutex<Memory>,
    redis: Mutex<RedisSlot>,
    /// Serialises connection attempts: one request connects, the others wait for its outcome.
    connecting: tokio::sync::Mutex<()>,
    flights: Mutex<HashMap<Key, Arc<Flight>>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("max_entries", &self.settings.max_entries)
            .finish_non_exhaustive()
    }
}

/// The shared store's connection: made on first use, and made again after a failed attempt once
/// [`REDIS_RETRY`] has passed (a Redis that was down at start-up is used when it comes back).
enum RedisSlot {
    Untried,
    Up(switchyard_quota::redis_conn::RedisConn),
    /// The last attempt failed; requests go without the cache until this instant.
    Down(Instant),
}

/// How long requests go without the shared cache after a failed connection attempt.
const REDIS_RETRY: Duration = Duration::from_secs(1);

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
            redis: Mutex::new(RedisSlot::Untried),
            connecting: tokio::sync::Mutex::new(()),
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
        let conn = match self.redis_slot() {
            Some(slot) => slot?,
            None => {
                let _one = self.connecting.lock().await;
                match self.redis_slot() {
                    Some(slot) => slot?,
                    // A single node or a Redis Cluster (found out from the seeds).
                    None => match switchyard_quota::redis_conn::connect(url, *timeout).await {
                        Ok(c) => {
                            *self.redis.lock() = RedisSlot::Up(c.clone());
                            c
                        }
                        Err(e) => {
                            tracing::warn!(
                                error = %e,
                                "response cache: Redis unreachable; answering without the cache, retrying in {}s",
                                REDIS_RETRY.as_secs()
                            );
                            *self.redis.lock() = RedisSlot::Down(Instant::now() + REDIS_RETRY);
                            return None;
                        }
                    },
                }
            }
        };
        Some((conn, format!("{prefix}:cache:"), *timeout))
    }

    /// `Some(Some(conn))`: connected; `Some(None)`: down and not yet due for another attempt;
    /// `None`: an attempt is due.
    fn redis_slot(&self) -> Option<Option<switchyard_quota::redis_conn::RedisConn>> {
        match &*self.redis.lock() {
            RedisSlot::Up(c) => Some(Some(c.clone())),
            RedisSlot::Down(until) if Instant::now() < *until => Some(None),
            _ => None,
        }
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

    /// A streamed delta, fanned out to followers at once (one that carries nothing is not).
    pub fn delta(&self, d: &pb::StreamDelta) {
        if d.text.is_empty()
            && d.thinking.is_none()
            && d.tool_call.is_none()
            && d.logprobs_json.is_empty()
        {
            return;
        }
        self.flight.state.lock().deltas.push(d.clone());
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
            if st.deltas.is_empty() {
                st.deltas = answer.stream_deltas();
            }
            st.done = Some(Ok(answer));
        }
        self.flight.bump();
        self.cache.end_flight(&self.key, &self.flight);
    }

    /// The end of a streamed answer: the answer is what was fanned out, assembled
    /// ([`assemble`]); one that cannot be stored releases the followers instead (those already
    /// following live end with an error event, the others make their own call).
    pub async fn finish_stream(self, end: &pb::StreamEnd, route: &RouteTaken) {
        let answer = {
            let st = self.flight.state.lock();
            Answer::from_stream(&st.deltas, end, route)
        };
        self.finish(answer).await;
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
    requested_model: &str,
    base: &pb::InferRequest,
) -> Option<(Key, Duration)> {
    let ttl = tenant.cache_ttl.or(alias.cache_ttl)?;
    if !plain_text_answer(base) {
        return None;
    }
    let mut h = sha2::Sha256::new();
    for part in [
        "switchyard-cache-v1",
        tenant.name.as_str(),
        requested_model,
        alias.name.as_str(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    // Debug output of the prost messages is deterministic for equal values (`logit_bias`, the
    // one map, is a HashMap: its entries are hashed sorted). Every field that can change the
    // answer is in: system prompt and parts, messages, parameters, response format, tool choice.
    let mut params = base.params.clone().unwrap_or_default();
    let mut bias: Vec<(String, f32)> = params.logit_bias.drain().collect();
    bias.sort_by(|a, b| a.0.cmp(&b.0));
    let canonical = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        base.system,
        base.system_parts,
        base.messages,
        params,
        bias,
        base.response_format,
        base.tool_choice,
        base.parallel_tool_calls,
        tenant.allowed_regions
    );
    h.update(canonical.as_bytes());
    Some((h.finalize().into(), ttl))
}

/// Whether the request's answer is one plain text (what the cache stores and a coalesced
/// follower replays): deterministic (`temperature` 0), no tools, one choice, no logprobs, no
/// reasoning asked for (thinking blocks are not stored), nothing passed through or only for
/// Bedrock (either may change the answer's form).
fn plain_text_answer(req: &pb::InferRequest) -> bool {
    let Some(p) = &req.params else {
        return false;
    };
    let reasoning = p.reasoning.as_ref().is_some_and(|r| {
        r.mode == pb::reasoning::Mode::Enabled as i32
            || r.mode == pb::reasoning::Mode::Adaptive as i32
            || (r.mode == pb::reasoning::Mode::Unspecified as i32
                && !r.effort.is_empty()
                && r.effort != "none")
    });
    p.temperature == Some(0.0)
        && req.tools.is_empty()
        && p.n <= 1
        && !p.logprobs
        && p.top_logprobs.is_none_or(|k| k == 0)
        && !reasoning
        && req.passthrough.is_none()
        && req.additional_model_request_fields_json.is_empty()
        && req.additional_model_response_field_paths.is_empty()
}

pub fn count(outcome: &'static str) {
    metrics::counter!("switchyard_cache_requests_total", "outcome" => outcome).increment(1);
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
            ..Default::default()
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

    #[test]
    fn only_plain_text_answers_are_cacheable_and_the_key_covers_every_field() {
        use crate::routing::Needs;
        let tenant = Tenant {
            name: "t".into(),
            key_hashes: vec![],
            allowed: None,
            alias_overrides: Default::default(),
            allowed_regions: vec![],
            limits: Default::default(),
            policy: Default::default(),
            cache_ttl: Some(Duration::from_secs(60)),
        };
        let alias = Alias {
            name: "a".into(),
            candidates: vec![],
            needs: Needs::default(),
            cache_ttl: None,
            passthrough: true,
        };
        let base = pb::InferRequest {
            messages: vec![pb::Message {
                role: pb::Role::User as i32,
                content: vec![pb::ContentPart {
                    part: Some(pb::content_part::Part::Text("hi".into())),
                }],
            }],
            params: Some(pb::GenerationParams {
                temperature: Some(0.0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let key = |r: &pb::InferRequest| cacheable(&tenant, &alias, "a", r).map(|(k, _)| k);
        let plain = key(&base).unwrap_or_default();
        let with = |f: &dyn Fn(&mut pb::InferRequest)| {
            let mut r = base.clone();
            f(&mut r);
            r
        };
        let params = |f: &dyn Fn(&mut pb::GenerationParams)| {
            with(&|r| f(r.params.get_or_insert_with(Default::default)))
        };
        // Not plain text: never cached.
        for r in [
            params(&|p| p.n = 2),
            params(&|p| p.logprobs = true),
            params(&|p| {
                p.reasoning = Some(pb::Reasoning {
                    mode: pb::reasoning::Mode::Adaptive as i32,
                    ..Default::default()
                })
            }),
            with(&|r| {
                r.passthrough = Some(pb::Passthrough {
                    api: "openai".into(),
                    fields_json: "{\"audio\":{}}".into(),
                })
            }),
            with(&|r| r.additional_model_response_field_paths = vec!["/x".into()]),
            params(&|p| p.temperature = Some(0.5)),
        ] {
            assert_eq!(key(&r), None, "{r:?}");
        }
        // Every field that changes the answer changes the key.
        for r in [
            params(&|p| p.seed = Some(1)),
            params(&|p| p.top_k = Some(5)),
            params(&|p| p.presence_penalty = Some(1.0)),
            params(&|p| p.logit_bias.insert("42".into(), 5.0).map_or((), |_| ())),
            params(&|p| {
                p.reasoning = Some(pb::Reasoning {
                    mode: pb::reasoning::Mode::Disabled as i32,
                    ..Default::default()
                })
            }),
            with(&|r| {
                r.response_format = Some(pb::ResponseFormat {
                    r#type: pb::response_format::Type::JsonObject as i32,
                    ..Default::default()
                })
            }),
            with(&|r| {
                r.system_parts = vec![pb::ContentPart {
                    part: Some(pb::content_part::Part::CachePoint(Default::default())),
                }]
            }),
            with(&|r| {
                r.tool_choice = Some(pb::ToolChoice {
                    mode: pb::tool_choice::Mode::None as i32,
                    name: String::new(),
                })
            }),
        ] {
            let k = key(&r);
            assert!(k.is_some() && k != Some(plain), "{r:?}");
        }
    }
}
