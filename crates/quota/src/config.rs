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
                if self.redis_url.is_some() {
                    problem("redis_url", "given but store is \"memory\"".into());
                }
                StoreConfig::Memory
            }
            "redis" => {
                let url = self.redis_url.clone().unwrap_or_default();
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    problem(
                        "redis_url",
                        "required for store = \"redis\" (redis://host:port/db)".into(),
                    );
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
