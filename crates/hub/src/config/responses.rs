//! `[responses]`: where the Responses API's stored responses live (`store`), for how long
//! (`ttl`) and the memory bounds.

use std::time::Duration;

use serde::Deserialize;

use crate::store::{Backend, StoreSettings};

/// `[responses]` as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResponsesFileConfig {
    /// `"memory"` (default: this hub only) or `"redis"` (every hub replica can read and continue
    /// every stored response).
    pub store: Option<String>,
    pub redis_url: Option<String>,
    /// Environment variable holding the Redis URL (when it carries a password).
    pub redis_url_env: Option<String>,
    /// Prefix of the Redis keys (default `switchyard`).
    pub key_prefix: Option<String>,
    /// Bound on one Redis operation (default 1s).
    pub timeout: Option<String>,
    /// How long a stored response can be retrieved and continued (default `30d`).
    pub ttl: Option<String>,
    /// Most responses kept in memory (default 10000).
    pub max_entries: Option<usize>,
    /// Most bytes kept in memory (default 256 MiB); with Redis, the largest response stored.
    pub max_bytes: Option<usize>,
}

fn duration(v: Option<&str>, name: &str, default: Duration, errs: &mut Vec<String>) -> Duration {
    match v.map(humantime::parse_duration) {
        None => default,
        Some(Ok(d)) if !d.is_zero() => d,
        Some(Ok(_)) => {
            errs.push(format!("responses.{name}: must be greater than 0"));
            default
        }
        Some(Err(e)) => {
            errs.push(format!("responses.{name}: invalid duration: {e}"));
            default
        }
    }
}

impl ResponsesFileConfig {
    pub fn validate(&self, errs: &mut Vec<String>) -> StoreSettings {
        let d = StoreSettings::default();
        let max_entries = self.max_entries.unwrap_or(d.max_entries);
        let max_bytes = self.max_bytes.unwrap_or(d.max_bytes);
        if max_entries == 0 {
            errs.push("responses.max_entries: must be at least 1".into());
        }
        if max_bytes == 0 {
            errs.push("responses.max_bytes: must be at least 1".into());
        }
        let ttl = duration(self.ttl.as_deref(), "ttl", d.ttl, errs);
        let timeout = duration(
            self.timeout.as_deref(),
            "timeout",
            Duration::from_secs(1),
            errs,
        );
        let backend = match super::shared_store(
            "responses",
            self.store.as_deref(),
            self.redis_url.as_ref(),
            self.redis_url_env.as_ref(),
            self.key_prefix.as_ref(),
            errs,
        ) {
            None => Backend::Memory,
            Some((url, prefix)) => Backend::Redis {
                url,
                prefix,
                timeout,
            },
        };
        StoreSettings {
            backend,
            ttl,
            max_entries,
            max_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_problems() {
        let mut errs = Vec::new();
        let s = ResponsesFileConfig::default().validate(&mut errs);
        assert!(errs.is_empty());
        assert_eq!(s, StoreSettings::default());
        let bad = ResponsesFileConfig {
            store: Some("disk".into()),
            ttl: Some("0s".into()),
            max_entries: Some(0),
            ..Default::default()
        };
        bad.validate(&mut errs);
        assert_eq!(errs.len(), 3, "{errs:?}");
        let mut errs = Vec::new();
        let redis = ResponsesFileConfig {
            store: Some("redis".into()),
            redis_url: Some("redis://127.0.0.1:6379".into()),
            ttl: Some("1h".into()),
            ..Default::default()
        }
        .validate(&mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(redis.ttl, Duration::from_secs(3600));
        assert!(matches!(redis.backend, Backend::Redis { .. }));
    }
}
