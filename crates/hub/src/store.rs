//! Stored responses of the OpenAI Responses API (`store: true`, the default): what
//! `GET /v1/responses/{id}` returns and what `previous_response_id` continues.
//!
//! One entry per response, keyed by the tenant and the response id, so a tenant never reads,
//! deletes or continues another tenant's response (it looks exactly like an id that does not
//! exist). An entry holds the response object as the client received it and the conversation
//! after it — every message before it (its own previous responses' included), its input, its
//! answer — in the internal model (`switchyard.v1.Message`, prost-encoded), so a continuation
//! needs one read whatever the length of the chain.
//!
//! Kept in memory (bounded by entries and bytes, oldest evicted first, each entry expiring after
//! the TTL) or in Redis (`SET … PX ttl`, through `switchyard_quota::redis_conn`, a single node or
//! a cluster), so that every hub replica can continue any response. Configured by `[responses]`
//! (docs/configuration.md).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine as _;
use parking_lot::Mutex;
use prost::Message as _;
use serde_json::{Value, json};
use sha2::Digest;
use switchyard_proto::v1 as pb;

/// Where stored responses live.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    Memory,
    Redis {
        url: String,
        /// Keys are `{prefix}:responses:{tenant hash}:{id}`.
        prefix: String,
        /// Bound on one Redis operation.
        timeout: Duration,
    },
}

/// `[responses]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    pub backend: Backend,
    /// How long a response stays retrievable and continuable (default 30 days).
    pub ttl: Duration,
    /// Most entries kept in memory.
    pub max_entries: usize,
    /// Most bytes kept in memory; with Redis, the largest entry stored. A larger entry is not
    /// stored (the answer is still returned; its id then answers 404).
    pub max_bytes: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            backend: Backend::Memory,
            ttl: Duration::from_secs(30 * 24 * 3600),
            max_entries: 10_000,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// One stored response.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The response object as the client received it (`{"id":"resp_…","object":"response",…}`).
    pub response: Value,
    /// The conversation after this response, oldest first, without any `instructions` (which a
    /// continuation does not inherit): previous responses' conversation, this request's input
    /// items, this response's output.
    pub conversation: Vec<pb::Message>,
}

/// A failure of the shared store (Redis down, slow or answering garbage). The detail is for the
/// log only.
#[derive(Debug, thiserror::Error)]
#[error("response store: {0}")]
pub struct StoreError(String);

impl Stored {
    fn encode(&self) -> Vec<u8> {
        let conversation = pb::InferRequest {
            messages: self.conversation.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        json!({
            "v": 1,
            "response": self.response,
            "conversation": base64::engine::general_purpose::STANDARD.encode(conversation),
        })
        .to_string()
        .into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<Stored, StoreError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| StoreError(e.to_string()))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["conversation"].as_str().unwrap_or_default())
            .map_err(|e| StoreError(e.to_string()))?;
        let conversation = pb::InferRequest::decode(raw.as_slice())
            .map_err(|e| StoreError(e.to_string()))?
            .messages;
        Ok(Stored {
            response: v["response"].clone(),
            conversation,
        })
    }
}

/// Whether `id` looks like one of ours (`resp_` and up to 64 letters, digits, `_` or `-`);
/// anything else is not looked up at all (it answers 404 like an unknown id).
pub fn plausible_id(id: &str) -> bool {
    id.strip_prefix("resp_").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 64
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// The store key part naming a tenant: a hash, so tenant names need no escaping and do not
/// appear in Redis.
fn tenant_key(tenant: &str) -> String {
    let d = sha2::Sha256::digest(tenant.as_bytes());
    hex::encode(&d[..16])
}

#[derive(Debug)]
struct Entry {
    bytes: Vec<u8>,
    expires: Instant,
    seq: u64,
}

/// The in-memory store: oldest entry evicted first when over `max_entries` or `max_bytes`.
#[derive(Debug, Default)]
struct Memory {
    map: HashMap<(String, String), Entry>,
    order: BTreeMap<u64, (String, String)>,
    bytes: usize,
    seq: u64,
}

impl Memory {
    fn remove(&mut self, key: &(String, String)) -> bool {
        match self.map.remove(key) {
            Some(e) => {
                self.order.remove(&e.seq);
                self.bytes -= e.bytes.len();
                true
            }
            None => false,
        }
    }

    fn get(&mut self, key: &(String, String), now: Instant) -> Option<Vec<u8>> {
        let expired = self.map.get(key)?.expires <= now;
        if expired {
            self.remove(key);
            return None;
        }
        self.map.get(key).map(|e| e.bytes.clone())
    }

    fn put(&mut self, key: (String, String), bytes: Vec<u8>, ttl: Duration, s: &StoreSettings) {
        if bytes.len() > s.max_bytes {
            return;
        }
        self.remove(&key);
        let now = Instant::now();
        // Every entry has the same TTL, so the oldest expires first: drop expired entries from
        // the front, then the oldest until the new one fits.
        while let Some((&seq, oldest)) = self.order.first_key_value() {
            let expired = self.map.get(oldest).is_none_or(|e| e.expires <= now);
            let full = self.map.len() >= s.max_entries || self.bytes + bytes.len() > s.max_bytes;
            if !(expired || full) {
                break;
            }
            let oldest = oldest.clone();
            if !self.remove(&oldest) {
                self.order.remove(&seq);
            }
        }
        self.seq += 1;
        self.bytes += bytes.len();
        self.order.insert(self.seq, key.clone());
        self.map.insert(
            key,
            Entry {
                bytes,
                expires: now + ttl,
                seq: self.seq,
            },
        );
    }
}

/// The hub's store of responses (one per process; with Redis, shared by every replica).
pub struct ResponseStore {
    settings: StoreSettings,
    memory: Mutex<Memory>,
    redis: tokio::sync::Mutex<Option<switchyard_quota::redis_conn::RedisConn>>,
}

impl std::fmt::Debug for ResponseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStore")
            .field("ttl", &self.settings.ttl)
            .finish_non_exhaustive()
    }
}

impl ResponseStore {
    pub fn new(settings: StoreSettings) -> ResponseStore {
        ResponseStore {
            settings,
            memory: Mutex::new(Memory::default()),
            redis: tokio::sync::Mutex::new(None),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.settings.ttl
    }

    /// The Redis connection (made on first use, made again after a failure) and the key of
    /// `(tenant, id)`; `None` with the memory backend.
    async fn redis(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(switchyard_quota::redis_conn::RedisConn, String, Duration)>, StoreError>
    {
        let Backend::Redis {
            url,
            prefix,
            timeout,
        } = &self.settings.backend
        else {
            return Ok(None);
        };
        let key = format!("{prefix}:responses:{}:{id}", tenant_key(tenant));
        let mut slot = self.redis.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(Some((c.clone(), key, *timeout)));
        }
        let c = switchyard_quota::redis_conn::connect(url, *timeout)
            .await
            .map_err(|e| StoreError(format!("Redis unreachable: {e}")))?;
        *slot = Some(c.clone());
        Ok(Some((c, key, *timeout)))
    }

    /// Forgets the Redis connection after a failed command, so the next call connects again.
    async fn reset(&self) {
        *self.redis.lock().await = None;
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        mut conn: switchyard_quota::redis_conn::RedisConn,
        timeout: Duration,
        cmd: redis::Cmd,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.reset().await;
                Err(StoreError(format!("Redis command failed: {e}")))
            }
            Err(_) => Err(StoreError("Redis command timed out".into())),
        }
    }

    /// Stores `entry` as `(tenant, id)` for the TTL. An entry over `max_bytes` is not stored
    /// (logged).
    pub async fn put(&self, tenant: &str, id: &str, entry: &Stored) -> Result<(), StoreError> {
        let bytes = entry.encode();
        if bytes.len() > self.settings.max_bytes {
            tracing::warn!(
                bytes = bytes.len(),
                max_bytes = self.settings.max_bytes,
                "response store: response too large to store"
            );
            return Ok(());
        }
        if let Some((conn, key, timeout)) = self.redis(tenant, id).await? {
            let ms = u64::try_from(self.settings.ttl.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            let mut cmd = redis::cmd("SET");
            cmd.arg(&key).arg(bytes).arg("PX").arg(ms);
            return self.run::<()>(conn, timeout, cmd).await;
        }
        self.memory.lock().put(
            (tenant.to_string(), id.to_string()),
            bytes,
            self.settings.ttl,
            &self.settings,
        );
        Ok(())
    }

    /// The entry `(tenant, id)`, if it exists and has not expired.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Option<Stored>, StoreError> {
        if !plausible_id(id) {
            return Ok(None);
        }
        let bytes = if let Some((conn, key, timeout)) = self.redis(tenant, id).await? {
            let mut cmd = redis::cmd("GET");
            cmd.arg(&key);
            self.run::<Option<Vec<u8>>>(conn, timeout, cmd).await?
        } else {
            self.memory
                .lock()
                .get(&(tenant.to_string(), id.to_string()), Instant::now())
        };
        bytes.map(|b| Stored::decode(&b)).transpose()
    }

    /// Deletes `(tenant, id)`; whether it existed.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        if !plausible_id(id) {
            return Ok(false);
        }
        if let Some((conn, key, timeout)) = self.redis(tenant, id).await? {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(&key);
            return Ok(self.run::<u64>(conn, timeout, cmd).await? > 0);
        }
        let key = (tenant.to_string(), id.to_string());
        let mut m = self.memory.lock();
        // An expired entry is gone already.
        if m.get(&key, Instant::now()).is_none() {
            return Ok(false);
        }
        Ok(m.remove(&key))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(text: &str) -> Stored {
        Stored {
            response: json!({"id": "resp_x", "object": "response"}),
            conversation: vec![pb::Message {
                role: pb::Role::User as i32,
                content: vec![pb::ContentPart {
                    part: Some(pb::content_part::Part::Text(text.into())),
                }],
            }],
        }
    }

    #[tokio::test]
    async fn tenants_never_see_each_others_entries() {
        let s = ResponseStore::new(StoreSettings::default());
        s.put("a", "resp_1", &entry("hi")).await.unwrap();
        assert_eq!(s.get("a", "resp_1").await.unwrap(), Some(entry("hi")));
        assert_eq!(s.get("b", "resp_1").await.unwrap(), None);
        assert!(!s.delete("b", "resp_1").await.unwrap());
        assert!(s.get("a", "resp_1").await.unwrap().is_some());
        assert!(s.delete("a", "resp_1").await.unwrap());
        assert_eq!(s.get("a", "resp_1").await.unwrap(), None);
        assert!(!s.delete("a", "resp_1").await.unwrap());
    }

    #[tokio::test]
    async fn memory_is_bounded_and_expires() {
        let s = ResponseStore::new(StoreSettings {
            max_entries: 2,
            ttl: Duration::from_millis(50),
            ..StoreSettings::default()
        });
        for i in 0..3 {
            s.put("t", &format!("resp_{i}"), &entry("x")).await.unwrap();
        }
        assert_eq!(s.get("t", "resp_0").await.unwrap(), None, "oldest evicted");
        assert!(s.get("t", "resp_2").await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(s.get("t", "resp_2").await.unwrap(), None, "expired");
        let small = ResponseStore::new(StoreSettings {
            max_bytes: 100,
            ..StoreSettings::default()
        });
        small
            .put("t", "resp_big", &entry(&"y".repeat(500)))
            .await
            .unwrap();
        assert_eq!(small.get("t", "resp_big").await.unwrap(), None);
    }

    #[test]
    fn only_plausible_ids_are_looked_up() {
        assert!(plausible_id("resp_0123abc"));
        assert!(!plausible_id("resp_"));
        assert!(!plausible_id("msg_123"));
        assert!(!plausible_id("resp_a:b"));
        assert!(!plausible_id(&format!("resp_{}", "a".repeat(65))));
    }
}
