//! The `[quota]` config section, shared by hub and spoke.

use crate::{FallbackStore, MemoryStore, QuotaStore};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Default, Deserialize)]
pub struct QuotaStoreFile {
    /// `"memory"` (default) or `"redis"`.
    pub store: Option<String>,
    pub redis_url: Option<String>,
    /// Name of an environment variable holding the URL — use it when the URL carries an auth
    /// token (`rediss://:TOKEN@host:6379`), so the secret is not in the config file.
    pub redis_url_env: Option<String>,
    pub key_prefix: Option<String>,
    /// How many replicas share the limits: while Redis is unreachable each enforces
    /// limit / replicas locally.
    pub replicas: Option<u32>,
    /// Bound on one Redis operation.
    pub timeout: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StoreConfig {
    Memory,
    Redis {
        url: String,
        prefix: String,
        replicas: u32,
        timeout: Duration,
    },
}

impl QuotaStoreFile {
    /// Validates the section; problems are pushed as `(path, message)`.
    pub fn validate(&self, path: &str, problems: &mut Vec<(String, String)>) -> StoreConfig {
        let mut problem = |k: &str, m: String| problems.push((format!("{path}.{k}"), m));
        let replicas = self.replicas.unwrap_or(1);
        if replicas == 0 {
            problem("replicas", "must be at least 1".into());
        }
        let timeout = match self.timeout.as_deref().map(humantime::parse_duration) {
            None => Duration::from_millis(250),
            Some(Ok(d)) if !d.is_zero() => d,
            Some(Ok(_)) => {
                problem("timeout", "must be greater than zero".into());
                Duration::from_millis(250)
            }
            Some(Err(e)) => {
                problem("timeout", format!("invalid duration ({e})"));
                Duration::from_millis(250)
            }
        };
        match self.store.as_deref().unwrap_or("memory") {
            "memory" => {
                if self.redis_url.is_some() || self.redis_url_env.is_some() {
                    problem("redis_url", "given but store is \"memory\"".into());
                }
                StoreConfig::Memory
            }
            "redis" => {
                let url = match (&self.redis_url, &self.redis_url_env) {
                    (Some(u), None) => u.clone(),
                    (None, Some(var)) => match std::env::var(var) {
                        Ok(u) => u,
                        Err(_) => {
                            problem(
                                "redis_url_env",
                                format!("environment variable {var} is not set"),
                            );
                            String::new()
                        }
                    },
                    _ => {
                        problem(
                            "redis_url",
                            "set exactly one of redis_url and redis_url_env for store = \"redis\""
                                .into(),
                        );
                        String::new()
                    }
                };
                if !url.is_empty()
                    && let Err(e) = crate::redis_conn::seeds(&url)
                {
                    // Never echo the URL: it may carry a password (the error names positions).
                    problem(
                        "redis_url",
                        format!(
                            "must be redis://host:port/db or rediss:// (TLS), or comma-separated cluster seed nodes ({e})"
                        ),
                    );
                }
                if self
                    .key_prefix
                    .as_deref()
                    .is_some_and(|p| p.contains(['{', '}']))
                {
                    // The scope is the keys' cluster hash tag; braces here would replace it.
                    problem("key_prefix", "must not contain { or }".into());
                }
                StoreConfig::Redis {
                    url,
                    prefix: self
                        .key_prefix
                        .clone()
                        .unwrap_or_else(|| "switchyard".into()),
                    replicas: replicas.max(1),
                    timeout,
                }
            }
            other => {
                problem(
                    "store",
                    format!("unknown store {other:?} (expected \"memory\" or \"redis\")"),
                );
                StoreConfig::Memory
            }
        }
    }
}

impl StoreConfig {
    /// Builds the store. A Redis store never fails to build: if Redis does not answer at start,
    /// it starts on local limits and keeps trying.
    pub async fn build(&self) -> Arc<dyn QuotaStore> {
        match self {
            StoreConfig::Memory => Arc::new(MemoryStore::new()),
            StoreConfig::Redis {
                url,
                prefix,
                replicas,
                timeout,
            } => FallbackStore::connect(url, prefix, *timeout, *replicas).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: QuotaStoreFile) -> (StoreConfig, Vec<(String, String)>) {
        let mut p = Vec::new();
        let c = f.validate("quota", &mut p);
        (c, p)
    }

    #[test]
    fn memory_is_the_default() {
        assert_eq!(
            check(QuotaStoreFile::default()),
            (StoreConfig::Memory, vec![])
        );
    }

    #[test]
    fn redis_url_may_come_from_the_environment_and_is_never_echoed() {
        // A variable no environment sets.
        let var = "SWITCHYARD_QUOTA_TEST_URL_7d1f";
        let (c, p) = check(QuotaStoreFile {
            store: Some("redis".into()),
            redis_url_env: Some(var.into()),
            ..Default::default()
        });
        assert_eq!(
            p,
            vec![(
                "quota.redis_url_env".to_string(),
                format!("environment variable {var} is not set")
            )]
        );
        assert!(matches!(c, StoreConfig::Redis { .. }));
        let (_, p) = check(QuotaStoreFile {
            store: Some("redis".into()),
            redis_url: Some("http://:hunter2@host".into()),
            ..Default::default()
        });
        assert_eq!(p.len(), 1);
        assert!(!p[0].1.contains("hunter2"), "{p:?}");
        let (_, p) = check(QuotaStoreFile {
            store: Some("redis".into()),
            ..Default::default()
        });
        assert_eq!(p[0].0, "quota.redis_url");
    }
}
