//! The process state of a running hub ([`Hub`]): process-lifetime handles only — validated
//! settings, the live routing table (swapped on reload; requests read one snapshot of it), the
//! quota store, the response cache, the retry budget, observed latency, JWT verification, the
//! audit sink and the shutdown token. No request logic lives here: the request path is
//! `gateway`, the client APIs are `surface`.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::config::Settings;
use crate::jwt::JwtVerifier;
use crate::live::{Live, Snapshot, Table};
use crate::observe::audit::AuditSink;
use crate::outbound::budget::Budget;
use crate::outbound::latency::Latency;

/// Shared state of a running hub.
#[derive(Debug)]
pub struct Hub {
    pub settings: Settings,
    /// The live routing table; a request reads it once, through [`Hub::snapshot`].
    pub table: ArcSwap<Table>,
    /// Retry budget across all requests (`[retry_budget]`).
    pub budget: Budget,
    /// Tenant quotas (memory, or Redis shared by all hub replicas).
    pub quota: Arc<dyn switchyard_quota::QuotaStore>,
    /// EWMA of successful call latency per (provider, model).
    pub latency: Latency,
    /// Cancelled on shutdown: stops health loops, DNS watchers and the config watcher.
    pub stop: CancellationToken,
    /// JWT bearer-token verification (`[jwt]`), besides API keys.
    pub jwt: Option<Arc<JwtVerifier>>,
    /// Response cache and the calls in flight that identical requests follow.
    pub cache: Arc<Cache>,
    /// Stored responses of the Responses API (`[responses]`; memory or Redis).
    pub responses: Arc<crate::store::ResponseStore>,
    /// Live-config status (active version, last reload error).
    pub live: Live,
    /// Where audit lines go (`[audit]`); `None` when off.
    pub audit: Option<Arc<AuditSink>>,
}

impl Hub {
    /// Builds the hub and starts health loops (static pools) and DNS watchers. Must run inside a
    /// tokio runtime.
    pub fn start(settings: Settings) -> Arc<Hub> {
        Self::start_with_quota(settings, Arc::new(switchyard_quota::MemoryStore::new()))
    }

    /// [`Hub::start`] with the tenant-quota store built from `settings.quota`.
    pub fn start_with_quota(
        settings: Settings,
        quota: Arc<dyn switchyard_quota::QuotaStore>,
    ) -> Arc<Hub> {
        let stop = CancellationToken::new();
        let mut pools = HashMap::new();
        for p in &settings.providers {
            pools.insert(p.name.clone(), crate::outbound::start_pool(p, &stop));
        }
        let table = Table {
            tenants: settings.tenants.clone(),
            aliases: settings.aliases.clone(),
            pools,
            prompts: settings.prompts.clone(),
        };
        Arc::new(Hub {
            cache: Arc::new(Cache::new(settings.cache.clone())),
            responses: Arc::new(crate::store::ResponseStore::new(settings.responses.clone())),
            live: Live::default(),
            jwt: settings.jwt.clone().map(JwtVerifier::new),
            audit: AuditSink::open(&settings.audit),
            budget: Budget::new(settings.retry_budget),
            settings,
            table: ArcSwap::from_pointee(table),
            quota,
            latency: Latency::default(),
            stop,
        })
    }

    /// The live table as it is now: take it once per request and read everything from it.
    pub fn snapshot(&self) -> Snapshot {
        self.table.load_full()
    }
}
