//! Runtime types every layer shares: tenants, aliases, providers and their spoke sources, the
//! route a request took. Built by `config::validate()` (and on reload); plain data, no I/O.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::FailedAttempt;
pub use crate::routing::Candidate;

#[derive(Debug, Clone, Copy)]
pub struct RetryBudget {
    pub ratio: f64,
    pub min_per_second: u32,
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    pub key_hashes: Vec<[u8; 32]>,
    /// None = every alias.
    pub allowed: Option<HashSet<String>>,
    pub alias_overrides: BTreeMap<String, String>,
    pub allowed_regions: Vec<String>,
    pub limits: switchyard_quota::Limits,
    /// Deny rules and PII handling; shared, since a tenant is cloned per request.
    pub policy: std::sync::Arc<crate::policy::Policy>,
    /// Response-cache TTL when the tenant opted in (`Some(0)` = coalescing only).
    pub cache_ttl: Option<Duration>,
}

impl Tenant {
    /// Whether the tenant may call `alias`.
    pub fn may_use(&self, alias: &str) -> bool {
        self.allowed.as_ref().is_none_or(|set| set.contains(alias))
    }
}

#[derive(Debug, Clone)]
pub struct Alias {
    pub name: String,
    pub candidates: Vec<Candidate>,
    pub needs: crate::routing::Needs,
    /// Response-cache TTL when the alias opted in (`Some(0)` = coalescing only).
    pub cache_ttl: Option<Duration>,
    /// Same-API passthrough (`passthrough` of the alias, default true): request fields the hub
    /// does not know travel verbatim to upstreams that speak the caller's API
    /// (`InferRequest.passthrough`). When false, such fields are refused with 400 naming them.
    pub passthrough: bool,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub source: SpokeSource,
    pub health: Health,
    pub connect_timeout: Duration,
    /// Connections per spoke address, 1..=64.
    pub connections: usize,
    pub tls: Option<SpokeTls>,
    pub outlier_detection: OutlierDetection,
}

/// Passive outlier detection of a provider's spokes (`providers[].outlier_detection`, Envoy's
/// consecutive-5xx detector): a spoke whose calls fail `consecutive_5xx` times in a row
/// (UNAVAILABLE from the spoke, or no answer within `attempt_timeout`) is ejected at once for
/// `base_ejection_time` × the number of times it was ejected in a row, at most
/// `max_ejection_time`. An ejected spoke only takes a request when no other spoke of its pool
/// can (like Envoy's panic threshold), so an ejection never turns a pool's last spoke into an
/// outage; the first success after an ejection ends resets the multiplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetection {
    /// 0 = off.
    pub consecutive_5xx: u32,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
}

impl Default for OutlierDetection {
    /// Envoy's defaults: 5 consecutive 5xx, 30 s base, 300 s at most.
    fn default() -> Self {
        Self {
            consecutive_5xx: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
        }
    }
}

/// Validated `providers[].tls`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpokeTls {
    pub files: switchyard_tls::ClientFiles,
    /// None = the spoke's IP address.
    pub server_name: Option<String>,
    pub reload_interval: Duration,
}

#[derive(Debug, Clone)]
pub enum SpokeSource {
    Static(Vec<(SocketAddr, u32)>),
    Dns(DnsSource),
}

#[derive(Debug, Clone)]
pub struct DnsSource {
    pub name: String,
    pub srv: bool,
    /// `dns_record = "weighted"`: A/AAAA records answered one set per query (Route 53 weighted
    /// routing); the members are learnt over many answers (`outbound::dns::WeightedMembers`).
    pub weighted: bool,
    pub port: u16,
    pub server: Option<SocketAddr>,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Health {
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// Bounds on the request fields that size the work a request causes, checked at the hub for
/// every surface before anything leaves it (config keys of the same names; docs/api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBounds {
    /// Most tools one request may offer.
    pub max_tools: usize,
    /// Largest definition of one tool in bytes (name + description + JSON schema).
    pub max_tool_bytes: usize,
    /// Largest embeddings `dimensions`.
    pub max_embedding_dimensions: u32,
    /// Largest `n` (choices) one chat request may ask for.
    pub max_choices: u32,
}

/// Per-connection limits against slow or oversized clients (`header_read_timeout`,
/// `max_header_bytes` in the config).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// A client must send a request's complete head (request line and headers) within this
    /// time, counted from when the server starts waiting for it — also while a keep-alive
    /// connection sits idle between requests — or the connection is closed. The first bytes
    /// of a new connection are held to the same deadline.
    pub header_read_timeout: Duration,
    /// Largest request head (HTTP/1 read buffer, HTTP/2 header list); larger → 431 / reset.
    pub max_header_bytes: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Where a request ended up.
#[derive(Debug, Clone, Default)]
pub struct RouteTaken {
    pub provider: String,
    pub account: String,
    pub region: String,
    pub model: String,
    pub attempts: u32,
    /// Time spent waiting on spokes (all attempts).
    pub spoke_time: Duration,
    /// The dispatched candidate's price, USD per million (input, output) tokens.
    pub price: (Option<f64>, Option<f64>),
    /// The pool (configured provider name) and spoke address that served.
    pub pool: String,
    pub spoke: String,
    /// The attempts that failed before this one (audit log).
    pub failed: Vec<FailedAttempt>,
}

/// Cost in USD of `usage` at (input, output) USD-per-million-token prices.
pub fn cost_usd(price: (Option<f64>, Option<f64>), usage: &switchyard_proto::v1::Usage) -> f64 {
    let (pin, pout) = price;
    (f64::from(usage.input_tokens) * pin.unwrap_or(0.0)
        + f64::from(usage.output_tokens) * pout.unwrap_or(0.0))
        / 1_000_000.0
}
