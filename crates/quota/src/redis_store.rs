//! The shared store: every check-and-consume is one Lua script, run atomically by Redis, with
//! Redis's own clock (`TIME`) so replicas with skewed clocks still agree. Keys are namespaced
//! (`{prefix}:{scope}:…`, the scope in a hash tag so one scope's keys — every key of one
//! script — share a cluster slot) and expire on their own. Works on a single node and on a Redis
//! Cluster ([`crate::redis_conn`]).

use crate::calendar::{day_key, month_key, ms_to_next_day, ms_to_next_month, now_ms};
use crate::redis_conn::RedisConn;
use crate::{
    Admission, Limit, Limits, QuotaStore, RateState, Reservation, StoreError, Window, micros,
};
use redis::Script;
use std::time::Duration;

/// KEYS: rpm zset, tpm hash, day spend, month spend.
/// ARGV: rpm limit (0 = none), tpm limit (0 = none), tokens wanted, day budget µ$ (-1 = none),
///       month budget µ$ (-1 = none), unique member id.
/// Returns {admitted, refused_by (0 none, 1 rpm, 2 tpm, 3 day, 4 month), retry_ms,
///          requests_in_window, ms_until_window_empty, tokens_available, tokens_taken}.
const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, tpm, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local dayb, monb = tonumber(ARGV[4]), tonumber(ARGV[5])
local count, newest_reset, tokens = 0, 0, 0
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
  count = redis.call('ZCARD', KEYS[1])
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if newest[2] then newest_reset = tonumber(newest[2]) + 60000 - now end
end
if tpm > 0 then
  local h = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
  local have, ts = tonumber(h[1]), tonumber(h[2])
  if have == nil then have, ts = tpm, now end
  tokens = math.min(tpm, have + math.max(0, now - ts) * tpm / 60000)
end
local function refuse(code, wait)
  return {0, code, math.max(1, math.ceil(wait)), count, newest_reset, math.floor(math.max(0, tokens)), 0}
end
if dayb >= 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= math.max(dayb, 1) then
  return refuse(3, 0)
end
if monb >= 0 and tonumber(redis.call('GET', KEYS[4]) or '0') >= math.max(monb, 1) then
  return refuse(4, 0)
end
if rpm > 0 and count >= rpm then
  local e = redis.call('ZRANGE', KEYS[1], count - rpm, count - rpm, 'WITHSCORES')
  return refuse(1, tonumber(e[2]) + 60000 - now)
end
local take = 0
if tpm > 0 then
  take = math.min(want, tpm)
  if tokens < take then return refuse(2, (take - tokens) * 60000 / tpm) end
  tokens = tokens - take
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'ts', now)
  redis.call('PEXPIRE', KEYS[2], 120000)
end
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[6])
  redis.call('PEXPIRE', KEYS[1], 61000)
  count = count + 1
  newest_reset = 60000
end
return {1, 0, 0, count, newest_reset, math.floor(tokens), take}
"#;

/// KEYS: tpm hash, day spend, month spend. ARGV: tpm limit, token delta, cost µ$.
const SETTLE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tpm, delta, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if tpm > 0 and delta ~= 0 then
  local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
  local have, ts = tonumber(h[1]), tonumber(h[2])
  if have == nil then have, ts = tpm, now end
  have = math.min(tpm, have + math.max(0, now - ts) * tpm / 60000)
  redis.call('HSET', KEYS[1], 'tokens', tostring(math.min(tpm, have + delta)), 'ts', now)
  redis.call('PEXPIRE', KEYS[1], 120000)
end
if cost > 0 then
  redis.call('INCRBY', KEYS[2], cost)
  redis.call('EXPIRE', KEYS[2], 2 * 86400)
  redis.call('INCRBY', KEYS[3], cost)
  redis.call('EXPIRE', KEYS[3], 32 * 86400)
end
return 1
"#;

/// KEYS: rpm zset, tpm hash. ARGV: rpm limit, tpm limit. Read-only.
/// Returns {requests_in_window, ms_until_window_empty, tokens_available}.
const PEEK: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local count, newest_reset, tokens = 0, 0, 0
if rpm > 0 then
  count = redis.call('ZCOUNT', KEYS[1], now - 60000 + 1, '+inf')
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if newest[2] then newest_reset = math.max(0, tonumber(newest[2]) + 60000 - now) end
end
if tpm > 0 then
  local h = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
  local have, ts = tonumber(h[1]), tonumber(h[2])
  if have == nil then have, ts = tpm, now end
  tokens = math.min(tpm, have + math.max(0, now - ts) * tpm / 60000)
end
return {count, newest_reset, math.floor(math.max(0, tokens))}
"#;

#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConn,
    prefix: String,
    timeout: Duration,
    admit: Script,
    settle: Script,
    peek: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`, or comma-separated cluster seed nodes; see
    /// [`crate::redis_conn`]). Every operation is bounded by `timeout`.
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let conn = crate::redis_conn::connect(url, timeout)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            timeout,
            admit: Script::new(ADMIT),
            settle: Script::new(SETTLE),
            peek: Script::new(PEEK),
        })
    }

    /// `{prefix}:{<scope>}:<part>`: the scope is the hash tag, so every key of one scope (all
    /// the keys one script touches) lands in one cluster slot. An empty scope would make an
    /// empty tag, which Redis ignores; `_` stands in for it.
    fn key(&self, scope: &str, part: &str) -> String {
        key(&self.prefix, scope, part)
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| unavailable("timed out"))?
            .map_err(unavailable)
    }
}

/// See [`RedisStore::key`].
fn key(prefix: &str, scope: &str, part: &str) -> String {
    let scope = if scope.is_empty() { "_" } else { scope };
    format!("{prefix}:{{{scope}}}:{part}")
}

fn state(limits: &Limits, count: u64, window_reset_ms: u64, tokens: u64) -> RateState {
    RateState {
        requests: limits.requests_per_minute.map(|limit| Window {
            limit,
            remaining: limit.saturating_sub(count),
            reset: Duration::from_millis(window_reset_ms),
        }),
        tokens: limits.tokens_per_minute.map(|limit| Window {
            limit,
            remaining: tokens.min(limit),
            reset: Duration::from_millis(
                (limit.saturating_sub(tokens) as f64 * 60_000.0 / limit as f64).ceil() as u64,
            ),
        }),
    }
}

#[async_trait::async_trait]
impl QuotaStore for RedisStore {
    async fn admit(
        &self,
        scope: &str,
        limits: &Limits,
        tokens: u64,
    ) -> Result<Admission, StoreError> {
        let now = now_ms();
        let budget = |b: Option<f64>| b.map(micros).unwrap_or(-1);
        let mut inv = self.admit.prepare_invoke();
        inv.key(self.key(scope, "rpm"))
            .key(self.key(scope, "tpm"))
            .key(self.key(scope, &day_key(now)))
            .key(self.key(scope, &month_key(now)))
            .arg(limits.requests_per_minute.unwrap_or(0))
            .arg(limits.tokens_per_minute.unwrap_or(0))
            .arg(tokens)
            .arg(budget(limits.usd_per_day))
            .arg(budget(limits.usd_per_month))
            .arg(uuid::Uuid::new_v4().to_string());
        let r: Vec<i64> = self.run(inv).await?;
        let get = |i: usize| r.get(i).copied().unwrap_or(0).max(0) as u64;
        let st = state(limits, get(3), get(4), get(5));
        if get(0) == 1 {
            return Ok(Admission::Admitted {
                reservation: Reservation {
                    scope: scope.to_owned(),
                    tokens: get(6),
                    local: false,
                },
                state: st,
            });
        }
        let (limit, retry_ms) = match get(1) {
            1 => (Limit::Requests, get(2)),
            2 => (Limit::Tokens, get(2)),
            3 => (Limit::DailyBudget, ms_to_next_day(now)),
            _ => (Limit::MonthlyBudget, ms_to_next_month(now)),
        };
        Ok(Admission::Refused {
            limit,
            retry_after: Duration::from_millis(retry_ms.max(1)),
            state: st,
        })
    }

    async fn settle(
        &self,
        r: &Reservation,
        limits: &Limits,
        used_tokens: u64,
        cost_usd: f64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let delta = r.tokens as i64 - used_tokens as i64;
        let cost = micros(cost_usd);
        if (delta == 0 || limits.tokens_per_minute.is_none()) && cost == 0 {
            return Ok(());
        }
        let mut inv = self.settle.prepare_invoke();
        inv.key(self.key(&r.scope, "tpm"))
            .key(self.key(&r.scope, &day_key(now)))
            .key(self.key(&r.scope, &month_key(now)))
            .arg(limits.tokens_per_minute.unwrap_or(0))
            .arg(delta)
            .arg(cost);
        let _: i64 = self.run(inv).await?;
        Ok(())
    }

    async fn peek(&self, scope: &str, limits: &Limits) -> Result<RateState, StoreError> {
        if limits.requests_per_minute.is_none() && limits.tokens_per_minute.is_none() {
            return Ok(RateState::default());
        }
        let mut inv = self.peek.prepare_invoke();
        inv.key(self.key(scope, "rpm"))
            .key(self.key(scope, "tpm"))
            .arg(limits.requests_per_minute.unwrap_or(0))
            .arg(limits.tokens_per_minute.unwrap_or(0));
        let r: Vec<i64> = self.run(inv).await?;
        let get = |i: usize| r.get(i).copied().unwrap_or(0).max(0) as u64;
        Ok(state(limits, get(0), get(1), get(2)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_conn::hash_tag;

    #[test]
    fn every_key_of_one_script_shares_a_cluster_slot() {
        let now = now_ms();
        for scope in ["tenant:acme", "", "acct:us-east-1:claude", "odd}name{"] {
            let keys = [
                key("switchyard", scope, "rpm"),
                key("switchyard", scope, "tpm"),
                key("switchyard", scope, &day_key(now)),
                key("switchyard", scope, &month_key(now)),
            ];
            let tag = hash_tag(&keys[0]);
            assert_ne!(tag, keys[0], "{scope:?}: no hash tag in {keys:?}");
            for k in &keys {
                assert_eq!(hash_tag(k), tag, "{scope:?}: {keys:?}");
            }
        }
    }
}
