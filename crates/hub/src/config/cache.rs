//! `[cache]` and the per-tenant / per-alias `cache = { ttl = .. }` opt-ins.

use std::time::Duration;

use serde::Deserialize;

use crate::cache::{CacheSettings, CacheStore};

/// `[cache]`: store and bounds. Which requests are cached is opted into per tenant / alias.
#[derive(Debug, Clone, Default, Deserialize)]
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
pub struct CacheOptIn {
    pub ttl: String,
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
        let store = match super::shared_store(
            "cache",
            self.store.as_deref(),
            self.redis_url.as_ref(),
            self.redis_url_env.as_ref(),
            self.key_prefix.as_ref(),
            errs,
        ) {
            None => CacheStore::Memory,
            Some((url, prefix)) => CacheStore::Redis {
                url,
                prefix,
                timeout,
            },
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
