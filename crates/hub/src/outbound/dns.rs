//! DNS discovery of a provider's spokes: A/AAAA (port from config) or SRV (ports and weights from
//! the records), re-resolved when the TTL expires, clamped to a floor and a ceiling.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use tokio_util::sync::CancellationToken;

use crate::model::DnsSource;
use crate::outbound::pool::ProviderPool;

/// Errors building a resolver or resolving a pool name.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("resolver: {0}")]
    Resolver(String),
    #[error("lookup {name}: {message}")]
    Lookup { name: String, message: String },
}

/// Builds the resolver: the configured server (tests, private zones) or the system's.
pub fn resolver(src: &DnsSource) -> Result<TokioResolver, DnsError> {
    let builder = match src.server {
        Some(server) => {
            let mut ns = NameServerConfig::udp_and_tcp(server.ip());
            for c in &mut ns.connections {
                c.port = server.port();
            }
            Resolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => Resolver::builder_tokio().map_err(|e| DnsError::Resolver(e.to_string()))?,
    };
    builder
        .build()
        .map_err(|e| DnsError::Resolver(e.to_string()))
}

/// One resolution: the members (address, weight) and how long they are valid.
pub async fn resolve(
    resolver: &TokioResolver,
    src: &DnsSource,
) -> Result<(Vec<(SocketAddr, u32)>, Duration), DnsError> {
    let err = |e: &dyn std::fmt::Display| DnsError::Lookup {
        name: src.name.clone(),
        message: e.to_string(),
    };
    resolver.clear_cache();
    let mut members = Vec::new();
    let mut ttl = u32::MAX;
    if src.srv {
        let lookup = match resolver.srv_lookup(src.name.as_str()).await {
            Ok(l) => l,
            // An authoritative "no such records": the pool is empty (its spokes are drained).
            Err(e) if e.is_no_records_found() => return Ok((Vec::new(), src.min_ttl)),
            Err(e) => return Err(err(&e)),
        };
        for rec in lookup.answers() {
            let RData::SRV(srv) = &rec.data else { continue };
            ttl = ttl.min(rec.ttl);
            let ips = match resolver.lookup_ip(srv.target.clone()).await {
                Ok(ips) => ips,
                Err(e) if e.is_no_records_found() => continue,
                Err(e) => return Err(err(&e)),
            };
            for ip in ips.iter() {
                let addr = SocketAddr::new(ip, srv.port);
                if !members.iter().any(|(a, _)| *a == addr) {
                    // SRV weight 0 means "no preference"; keep such targets routable.
                    members.push((addr, u32::from(srv.weight.max(1))));
                }
            }
        }
    } else {
        let lookup = match resolver.lookup_ip(src.name.as_str()).await {
            Ok(l) => l,
            Err(e) if e.is_no_records_found() => return Ok((Vec::new(), src.min_ttl)),
            Err(e) => return Err(err(&e)),
        };
        for rec in lookup.as_lookup().answers() {
            let ip: Option<IpAddr> = match &rec.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            };
            if let Some(ip) = ip {
                ttl = ttl.min(rec.ttl);
                let addr = SocketAddr::new(ip, src.port);
                if !members.iter().any(|(a, _)| *a == addr) {
                    members.push((addr, 1));
                }
            }
        }
    }
    let ttl = Duration::from_secs(u64::from(if ttl == u32::MAX { 0 } else { ttl }));
    Ok((members, ttl.clamp(src.min_ttl, src.max_ttl)))
}

/// Keeps `pool` in line with DNS until `stop`. A failed lookup keeps the current members and
/// retries after the floor.
pub async fn watch(pool: Arc<ProviderPool>, src: DnsSource, stop: CancellationToken) {
    let resolver = match resolver(&src) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(provider = %pool.name, error = %e, "DNS discovery disabled");
            return;
        }
    };
    loop {
        let wait = match resolve(&resolver, &src).await {
            Ok((members, ttl)) => {
                if members.is_empty() {
                    tracing::warn!(provider = %pool.name, name = %src.name, "DNS returned no spokes");
                }
                pool.set_members(&members);
                ttl
            }
            Err(e) => {
                tracing::warn!(provider = %pool.name, error = %e, "DNS lookup failed; keeping current spokes");
                src.min_ttl
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}
