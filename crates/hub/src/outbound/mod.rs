//! Everything the hub does towards spokes, by what is routed to (linkerd's concrete → endpoint):
//! [`pool`] (the spokes of one provider: channels, passive ejection, active health checks),
//! [`dns`] (pool membership from DNS), [`call`] (one call to one spoke and what its status
//! means), [`outlier`] (passive outlier detection of one spoke), [`budget`] (the retry budget)
//! and [`latency`] (observed call latency).

pub mod budget;
pub mod call;
pub mod dns;
pub mod latency;
pub mod outlier;
pub mod pool;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::model::{Provider, SpokeSource};
use pool::ProviderPool;

/// A provider's pool, started like at boot: static members with health loops, or a DNS watcher.
pub fn start_pool(p: &Provider, stop: &CancellationToken) -> Arc<ProviderPool> {
    let tls = match p.tls.as_ref().map(pool::PoolTls::start).transpose() {
        Ok(t) => t,
        Err(e) => {
            // validate() loaded these files already; they changed since. Never fall back to
            // plain text: the pool stays empty and its aliases fail over.
            tracing::error!(provider = %p.name, error = %e, "spoke TLS files do not load; pool disabled");
            return Arc::new(
                ProviderPool::new(&p.name, p.health, p.connect_timeout, stop.child_token())
                    .with_outlier_detection(p.outlier_detection),
            );
        }
    };
    let pool = Arc::new(
        ProviderPool::new(&p.name, p.health, p.connect_timeout, stop.child_token())
            .with_outlier_detection(p.outlier_detection)
            .with_tls(tls)
            .with_connections(p.connections),
    );
    match &p.source {
        SpokeSource::Static(list) => pool.set_members(list),
        SpokeSource::Dns(dns) => {
            tokio::spawn(dns::watch(pool.clone(), dns.clone(), stop.child_token()));
        }
    }
    pool
}
