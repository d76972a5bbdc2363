//! Hub configuration: serde input types (`*Config`) and `validate()`, which turns them into the
//! runtime [`Settings`] or reports every problem with its path.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole `hub --config FILE` document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// Address to listen on; port 0 picks a free port (logged as `listening on ADDR`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Serve HTTPS when set.
    pub tls: Option<TlsConfig>,
    /// Accept JWT bearer tokens (besides API keys) when set.
    pub jwt: Option<crate::jwt::JwtConfig>,
    /// Deadline of a request when the client gives none (whole call, all attempts).
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
    /// Upper bound of spoke calls per client request (first try included).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Longest one spoke attempt may take (unary: the whole answer; streams: until the first
    /// content) before the hub tries the next spoke. Unset = only the request deadline bounds it.
    #[serde(default)]
    pub attempt_timeout: Option<String>,
    /// Largest accepted request body in bytes (larger → 413).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// A client must send each request's head (request line + headers) within this time, and a
    /// new connection its first bytes; otherwise the connection is closed (slowloris).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: String,
    /// Largest request head in bytes (at least 8192); larger → 431 (HTTP/1) or reset (HTTP/2).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most messages accepted in one chat request (more → 400).
    #[serde(default = "default_max_messages")]
    pub max_messages: usize,
    /// On SIGTERM/Ctrl-C: how long in-flight requests and streams may take to finish.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: String,
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    #[serde(default)]
    pub aliases: Vec<AliasConfig>,
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// Where tenant quotas live: in memory (one replica) or Redis (shared by all replicas).
    #[serde(default)]
    pub quota: switchyard_quota::QuotaStoreFile,
    /// Output tokens reserved at admission when a request sets no `max_tokens`.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
    /// Operator endpoints under `/admin/` (off when no key hash is set).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Response cache and request coalescing (`[cache]`; opted into per tenant or alias).
    #[serde(default)]
    pub cache: crate::cache::CacheFileConfig,
    /// Named, versioned prompt templates (`[[prompts]]`).
    #[serde(default)]
    pub prompts: Vec<crate::prompts::PromptConfig>,
    /// OpenTelemetry trace export (`[telemetry]`; docs/observability.md).
    #[serde(default)]
    pub telemetry: switchyard_core::telemetry::TelemetryConfig,
    /// The per-request audit log (`[audit]`).
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    /// `GET /metrics` (`[metrics]`).
    #[serde(default)]
    pub metrics: crate::observe::MetricsConfig,
    /// Price table per model, USD per million tokens (`[prices.MODEL] input = .., output = ..`):
    /// the price of every candidate of that model that sets no `price_in`/`price_out` itself.
    #[serde(default)]
    pub prices: BTreeMap<String, crate::observe::Price>,
}

/// `[admin]`: who may call `/admin/*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// SHA-256 of each admin key (64 hex digits), like tenant keys. Empty = admin endpoints off
    /// (every `/admin/*` call gets 404).
    #[serde(default)]
    pub api_key_sha256: Vec<String>,
}

fn default_max_tokens() -> u32 {
    1024
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_request_timeout() -> String {
    "60s".into()
}
fn default_max_attempts() -> u32 {
    4
}
fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_drain_timeout() -> String {
    "30s".into()
}
fn default_header_read_timeout() -> String {
    "30s".into()
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_messages() -> usize {
    1000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files are re-read; a changed certificate is served from the next
    /// connection on (default 5s).
    #[serde(default)]
    pub reload_interval: Option<String>,
}

impl TlsConfig {
    /// The reload interval (validated by [`HubConfig::validate`]; the default if unset).
    pub fn reload_interval(&self) -> Duration {
        self.reload_interval
            .as_deref()
            .and_then(|s| humantime::parse_duration(s).ok())
            .unwrap_or(switchyard_tls::DEFAULT_RELOAD_INTERVAL)
    }
}

/// `providers[].tls`: call this pool's spokes over TLS, trusting `ca`; with `cert` and `key`,
/// present a client certificate (for spokes that require mutual TLS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpokeTlsConfig {
    /// PEM CA certificate(s) the spokes' certificates must chain to.
    pub ca: PathBuf,
    /// PEM client certificate chain (mutual TLS).
    pub cert: Option<PathBuf>,
    /// PEM client private key (mutual TLS).
    pub key: Option<PathBuf>,
    /// Name to verify in the spoke's certificate. Default: the DNS name for `dns` pools, the
    /// spoke's IP address for static lists.
    pub server_name: Option<String>,
    /// How often the files are re-read (default 5s).
    pub reload_interval: Option<String>,
}

/// Retries allowed = `min_per_second × window + ratio × requests in the window`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetConfig {
    #[serde(default = "default_ratio")]
    pub ratio: f64,
    #[serde(default = "default_min_per_second")]
    pub min_per_second: u32,
    #[serde(default = "default_window")]
    pub window: String,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ratio: default_ratio(),
            min_per_second: default_min_per_second(),
            window: default_window(),
        }
    }
}
fn default_ratio() -> f64 {
    0.2
}
fn default_min_per_second() -> u32 {
    10
}
fn default_window() -> String {
    "10s".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    /// SHA-256 of each API key, lowercase or uppercase hex (64 digits). Keys never appear in clear.
    /// May be empty when `[jwt]` is set (the tenant then signs in with tokens only).
    #[serde(default)]
    pub api_key_sha256: Vec<String>,
    /// Aliases this tenant may use; `["*"]` = all.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Per-tenant mapping: requested alias → alias whose candidates serve it for this tenant.
    #[serde(default)]
    pub alias_overrides: BTreeMap<String, String>,
    /// Regions the tenant's requests may be served from (passed to spokes); empty = any.
    #[serde(default)]
    pub allowed_regions: Vec<String>,
    /// Requests admitted in any 60 s window (all replicas together with a Redis store).
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute: input estimate + max_tokens reserved at admission, settled after.
    pub tokens_per_minute: Option<u64>,
    /// Spend per UTC day in USD, from the candidates' prices; refused once reached.
    pub usd_per_day: Option<f64>,
    /// Spend per UTC month in USD.
    pub usd_per_month: Option<f64>,
    /// Content controls applied before the request leaves the hub (`[tenants.policy]`).
    #[serde(default)]
    pub policy: crate::policy::PolicyConfig,
    /// Response cache for this tenant's deterministic requests (`cache = { ttl = "5m" }`).
    pub cache: Option<crate::cache::CacheOptIn>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    pub name: String,
    pub candidates: Vec<CandidateConfig>,
    /// Capabilities every candidate must offer on top of what the request needs.
    #[serde(default)]
    pub needs: NeedsConfig,
    /// Response cache for deterministic requests to this alias (`cache = { ttl = "5m" }`).
    pub cache: Option<crate::cache::CacheOptIn>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeedsConfig {
    #[serde(default)]
    pub streaming: bool,
    #[serde(default)]
    pub tools: bool,
    #[serde(default)]
    pub min_context_window: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateConfig {
    pub provider: String,
    pub model: String,
    /// Lower is tried first; default = position in the list.
    pub priority: Option<i32>,
    /// USD per million input tokens (for `x-switchyard-route-preference: cheapest`).
    pub price_in: Option<f64>,
    /// USD per million output tokens.
    pub price_out: Option<f64>,
    /// Traffic split in percent: candidates with a weight share the first place by it.
    pub weight: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    /// Static spoke list.
    #[serde(default)]
    pub spokes: Vec<StaticSpokeConfig>,
    /// DNS name of the pool (A/AAAA, or SRV with `dns_record = "srv"`).
    pub dns: Option<String>,
    /// `"a"` (A/AAAA, port = `dns_port`), `"srv"` (ports and weights from the records) or
    /// `"weighted"` (A/AAAA answered one record set per query, e.g. Route 53 weighted records:
    /// the pool is the union of recent answers, weighted by how often each is answered).
    #[serde(default = "default_dns_record")]
    pub dns_record: String,
    #[serde(default = "default_dns_port")]
    pub dns_port: u16,
    /// DNS server to ask (`ip:port`); default = the system resolver.
    pub dns_server: Option<String>,
    #[serde(default = "default_dns_min_ttl")]
    pub dns_min_ttl: String,
    #[serde(default = "default_dns_max_ttl")]
    pub dns_max_ttl: String,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    /// Call the spokes over TLS (optionally mutual); plain h2c when absent.
    pub tls: Option<SpokeTlsConfig>,
}

fn default_dns_record() -> String {
    "a".into()
}
fn default_dns_port() -> u16 {
    50051
}
fn default_dns_min_ttl() -> String {
    "1s".into()
}
fn default_dns_max_ttl() -> String {
    "60s".into()
}
fn default_connect_timeout() -> String {
    "2s".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticSpokeConfig {
    pub addr: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}
fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Active check period (grpc.health.v1 + Describe); minimum 1s.
    #[serde(default = "default_interval")]
    pub interval: String,
    #[serde(default = "default_health_timeout")]
    pub timeout: String,
    /// Consecutive passing checks that bring an unhealthy spoke back.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failing checks that take a healthy spoke out.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            timeout: default_health_timeout(),
            healthy_threshold: default_healthy_threshold(),
            unhealthy_threshold: default_unhealthy_threshold(),
        }
    }
}
fn default_interval() -> String {
    "10s".into()
}
fn default_health_timeout() -> String {
    "2s".into()
}
fn default_healthy_threshold() -> u32 {
    2
}
fn default_unhealthy_threshold() -> u32 {
    3
}

// ---------------------------------------------------------------------------------------------
// Runtime types

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub tls: Option<TlsConfig>,
    pub jwt: Option<crate::jwt::JwtSettings>,
    pub request_timeout: Duration,
    pub max_attempts: u32,
    pub attempt_timeout: Option<Duration>,
    pub max_body_bytes: usize,
    pub max_messages: usize,
    pub conn_limits: crate::serve::ConnLimits,
    pub drain_timeout: Duration,
    pub retry_budget: RetryBudget,
    pub tenants: Vec<Tenant>,
    pub aliases: BTreeMap<String, Alias>,
    pub providers: Vec<Provider>,
    pub quota: switchyard_quota::StoreConfig,
    pub default_max_tokens: u32,
    /// SHA-256 hashes of the admin keys; empty = `/admin/*` is off.
    pub admin_key_hashes: Vec<[u8; 32]>,
    /// Cache store and bounds (the per-tenant / per-alias TTLs live in `Tenant` / `Alias`).
    pub cache: crate::cache::CacheSettings,
    /// Prompt templates by name.
    pub prompts: BTreeMap<String, crate::prompts::Prompt>,
    pub telemetry: switchyard_core::telemetry::TelemetryConfig,
    pub audit: crate::audit::AuditConfig,
    pub metrics: crate::observe::MetricsConfig,
}

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
}

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub provider: String,
    pub model: String,
    pub priority: i32,
    pub price_in: Option<f64>,
    pub price_out: Option<f64>,
    pub weight: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub source: SpokeSource,
    pub health: Health,
    pub connect_timeout: Duration,
    pub tls: Option<SpokeTls>,
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
    /// routing); the members are learnt over many answers (`dns::WeightedMembers`).
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

/// Every problem found in a config, each prefixed with its path (`providers[1].health.interval`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl HubConfig {
    /// Reads and parses a TOML file (no validation).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML text (no validation).
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks everything and builds the runtime settings; lists every problem with its path.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let mut errs = Vec::new();
        let mut dur = |path: &str, v: &str| -> Duration {
            match humantime::parse_duration(v) {
                Ok(d) => d,
                Err(e) => {
                    errs.push(format!("{path}: invalid duration {v:?}: {e}"));
                    Duration::ZERO
                }
            }
        };
        let request_timeout = dur("request_timeout", &self.request_timeout);
        let drain_timeout = dur("drain_timeout", &self.drain_timeout);
        let header_read_timeout = dur("header_read_timeout", &self.header_read_timeout);
        let window = dur("retry_budget.window", &self.retry_budget.window);
        let attempt_timeout = self
            .attempt_timeout
            .as_deref()
            .map(|v| dur("attempt_timeout", v));
        let hub_tls_reload = self
            .tls
            .as_ref()
            .and_then(|t| t.reload_interval.as_deref())
            .map(|v| dur("tls.reload_interval", v));

        let mut provider_parts = Vec::new();
        for (i, p) in self.providers.iter().enumerate() {
            let base = format!("providers[{i}]");
            let h = &p.health;
            let health = Health {
                interval: dur(&format!("{base}.health.interval"), &h.interval),
                timeout: dur(&format!("{base}.health.timeout"), &h.timeout),
                healthy_threshold: h.healthy_threshold,
                unhealthy_threshold: h.unhealthy_threshold,
            };
            let connect_timeout = dur(&format!("{base}.connect_timeout"), &p.connect_timeout);
            let min_ttl = dur(&format!("{base}.dns_min_ttl"), &p.dns_min_ttl);
            let max_ttl = dur(&format!("{base}.dns_max_ttl"), &p.dns_max_ttl);
            provider_parts.push((health, connect_timeout, min_ttl, max_ttl));
        }

        let listen = match self.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errs.push(format!(
                    "listen: {:?} is not an address like 127.0.0.1:8080",
                    self.listen
                ));
                None
            }
        };
        if !(window.is_zero() || window >= Duration::from_secs(1)) {
            errs.push("retry_budget.window: must be at least 1s".into());
        }
        if request_timeout.is_zero() {
            errs.push("request_timeout: must be greater than 0".into());
        }
        if self.max_attempts == 0 {
            errs.push("max_attempts: must be at least 1".into());
        }
        if attempt_timeout.is_some_and(|d| d < Duration::from_millis(10)) {
            errs.push("attempt_timeout: must be at least 10ms".into());
        }
        if header_read_timeout < Duration::from_millis(100) {
            errs.push("header_read_timeout: must be at least 100ms".into());
        }
        if self.max_header_bytes < 8192 {
            errs.push("max_header_bytes: must be at least 8192".into());
        }
        if self.max_messages == 0 {
            errs.push("max_messages: must be at least 1".into());
        }
        if self.max_body_bytes == 0 {
            errs.push("max_body_bytes: must be greater than 0".into());
        }
        if !(0.0..=10.0).contains(&self.retry_budget.ratio) {
            errs.push("retry_budget.ratio: must be between 0 and 10".into());
        }
        if let Some(tls) = &self.tls {
            for (name, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if !path.exists() {
                    errs.push(format!("{name}: file {} does not exist", path.display()));
                }
            }
            if let Some(d) = hub_tls_reload
                && !d.is_zero()
                && d < Duration::from_millis(100)
            {
                errs.push("tls.reload_interval: must be at least 100ms".into());
            }
        }

        // providers
        let mut providers = Vec::new();
        let mut provider_names = HashSet::new();
        for (i, (p, parts)) in self.providers.iter().zip(provider_parts).enumerate() {
            let base = format!("providers[{i}]");
            let (health, connect_timeout, min_ttl, max_ttl) = parts;
            if p.name.is_empty() {
                errs.push(format!("{base}.name: must not be empty"));
            }
            if !provider_names.insert(p.name.clone()) {
                errs.push(format!("{base}.name: duplicate provider {:?}", p.name));
            }
            if health.interval < Duration::from_secs(1) {
                errs.push(format!("{base}.health.interval: must be at least 1s"));
            }
            if health.timeout.is_zero() {
                errs.push(format!("{base}.health.timeout: must be greater than 0"));
            }
            if health.healthy_threshold == 0 {
                errs.push(format!(
                    "{base}.health.healthy_threshold: must be at least 1"
                ));
            }
            if health.unhealthy_threshold == 0 {
                errs.push(format!(
                    "{base}.health.unhealthy_threshold: must be at least 1"
                ));
            }
            if connect_timeout.is_zero() {
                errs.push(format!("{base}.connect_timeout: must be greater than 0"));
            }
            let source = match (&p.dns, p.spokes.is_empty()) {
                (Some(_), false) => {
                    errs.push(format!("{base}: set either `spokes` or `dns`, not both"));
                    None
                }
                (None, true) => {
                    errs.push(format!(
                        "{base}: needs `spokes = [...]` or `dns = \"name\"`"
                    ));
                    None
                }
                (None, false) => {
                    let mut list = Vec::new();
                    for (j, s) in p.spokes.iter().enumerate() {
                        match s.addr.parse::<SocketAddr>() {
                            Ok(a) => list.push((a, s.weight)),
                            Err(_) => errs.push(format!(
                                "{base}.spokes[{j}].addr: {:?} is not an ip:port address",
                                s.addr
                            )),
                        }
                    }
                    Some(SpokeSource::Static(list))
                }
                (Some(name), true) => {
                    let (srv, weighted) = match p.dns_record.as_str() {
                        "a" => (false, false),
                        "srv" => (true, false),
                        "weighted" => (false, true),
                        other => {
                            errs.push(format!(
                                "{base}.dns_record: {other:?} is not \"a\", \"srv\" or \"weighted\""
                            ));
                            (false, false)
                        }
                    };
                    let server = match &p.dns_server {
                        None => None,
                        Some(s) => match s.parse::<SocketAddr>() {
                            Ok(a) => Some(a),
                            Err(_) => {
                                errs.push(format!(
                                    "{base}.dns_server: {s:?} is not an ip:port address"
                                ));
                                None
                            }
                        },
                    };
                    if name.is_empty() {
                        errs.push(format!("{base}.dns: must not be empty"));
                    }
                    if min_ttl > max_ttl {
                        errs.push(format!("{base}.dns_min_ttl: greater than dns_max_ttl"));
                    }
                    if min_ttl < Duration::from_millis(100) {
                        errs.push(format!("{base}.dns_min_ttl: must be at least 100ms"));
                    }
                    Some(SpokeSource::Dns(DnsSource {
                        name: name.clone(),
                        srv,
                        weighted,
                        port: p.dns_port,
                        server,
                        min_ttl,
                        max_ttl,
                    }))
                }
            };
            let tls = p.tls.as_ref().and_then(|t| {
                let interval = match &t.reload_interval {
                    None => switchyard_tls::DEFAULT_RELOAD_INTERVAL,
                    Some(v) => match humantime::parse_duration(v) {
                        Ok(d) if d >= Duration::from_millis(100) => d,
                        Ok(_) => {
                            errs.push(format!(
                                "{base}.tls.reload_interval: must be at least 100ms"
                            ));
                            return None;
                        }
                        Err(e) => {
                            errs.push(format!(
                                "{base}.tls.reload_interval: invalid duration {v:?}: {e}"
                            ));
                            return None;
                        }
                    },
                };
                let files = switchyard_tls::ClientFiles {
                    ca: t.ca.clone(),
                    cert: t.cert.clone(),
                    key: t.key.clone(),
                };
                // Load once now, so a bad file is reported with every other problem.
                if let Err(e) = switchyard_tls::client_config(&files) {
                    errs.push(format!("{base}.tls: {e}"));
                    return None;
                }
                if let Some(name) = &t.server_name
                    && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
                {
                    errs.push(format!(
                        "{base}.tls.server_name: {name:?} is not a DNS name or IP address"
                    ));
                    return None;
                }
                let server_name = t.server_name.clone().or_else(|| match &source {
                    Some(SpokeSource::Dns(d)) => Some(d.name.trim_end_matches('.').to_string()),
                    _ => None,
                });
                Some(SpokeTls {
                    files,
                    server_name,
                    reload_interval: interval,
                })
            });
            if let Some(source) = source {
                providers.push(Provider {
                    name: p.name.clone(),
                    source,
                    health,
                    connect_timeout,
                    tls,
                });
            }
        }

        // aliases
        let mut aliases = BTreeMap::new();
        for (i, a) in self.aliases.iter().enumerate() {
            let base = format!("aliases[{i}]");
            if a.name.is_empty() {
                errs.push(format!("{base}.name: must not be empty"));
            }
            if aliases.contains_key(&a.name) {
                errs.push(format!("{base}.name: duplicate alias {:?}", a.name));
            }
            if a.candidates.is_empty() {
                errs.push(format!("{base}.candidates: needs at least one candidate"));
            }
            let mut candidates = Vec::new();
            let mut weighted = 0u32;
            for (j, c) in a.candidates.iter().enumerate() {
                let cbase = format!("{base}.candidates[{j}]");
                if !provider_names.contains(&c.provider) {
                    errs.push(format!(
                        "{cbase}.provider: unknown provider {:?}",
                        c.provider
                    ));
                }
                if c.model.is_empty() {
                    errs.push(format!("{cbase}.model: must not be empty"));
                }
                let table = self.prices.get(&c.model);
                let price_in = c.price_in.or(table.map(|p| p.input));
                let price_out = c.price_out.or(table.map(|p| p.output));
                for (n, v) in [("price_in", c.price_in), ("price_out", c.price_out)] {
                    if v.is_some_and(|v| !(v >= 0.0 && v.is_finite())) {
                        errs.push(format!("{cbase}.{n}: must be a non-negative number"));
                    }
                }
                if let Some(w) = c.weight {
                    if w == 0 || w > 100 {
                        errs.push(format!("{cbase}.weight: must be 1..=100 (percent)"));
                    }
                    weighted += w;
                }
                candidates.push(Candidate {
                    provider: c.provider.clone(),
                    model: c.model.clone(),
                    priority: c.priority.unwrap_or(i32::try_from(j).unwrap_or(i32::MAX)),
                    price_in,
                    price_out,
                    weight: c.weight,
                });
            }
            if weighted != 0 && weighted != 100 {
                errs.push(format!(
                    "{base}.candidates: split weights add up to {weighted}, not 100"
                ));
            }
            let cache_ttl = crate::cache::opt_in_ttl(a.cache.as_ref(), &base, &mut errs);
            aliases.insert(
                a.name.clone(),
                Alias {
                    cache_ttl,
                    name: a.name.clone(),
                    candidates,
                    needs: crate::routing::Needs {
                        streaming: a.needs.streaming,
                        tools: a.needs.tools,
                        images: false,
                        min_context_window: a.needs.min_context_window,
                    },
                },
            );
        }

        // admin keys (a tenant key may not double as an admin key: checked below with tenants)
        let mut admin_key_hashes = Vec::new();
        for (j, h) in self.admin.api_key_sha256.iter().enumerate() {
            let mut out = [0u8; 32];
            match hex::decode_to_slice(h.trim(), &mut out) {
                Ok(()) => admin_key_hashes.push(out),
                Err(_) => errs.push(format!(
                    "admin.api_key_sha256[{j}]: not 64 hex digits (a SHA-256 of the key, e.g. `printf %s KEY | sha256sum`)"
                )),
            }
        }

        // tenants
        let mut tenants = Vec::new();
        let mut seen_hashes = HashSet::new();
        let admin_set: HashSet<[u8; 32]> = admin_key_hashes.iter().copied().collect();
        let mut tenant_names = HashSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            let base = format!("tenants[{i}]");
            if !tenant_names.insert(t.name.clone()) {
                errs.push(format!("{base}.name: duplicate tenant {:?}", t.name));
            }
            if t.api_key_sha256.is_empty() && self.jwt.is_none() {
                errs.push(format!("{base}.api_key_sha256: needs at least one hash"));
            }
            let mut key_hashes = Vec::new();
            for (j, h) in t.api_key_sha256.iter().enumerate() {
                let mut out = [0u8; 32];
                match hex::decode_to_slice(h.trim(), &mut out) {
                    Ok(()) => {
                        if admin_set.contains(&out) {
                            errs.push(format!(
                                "{base}.api_key_sha256[{j}]: also an admin key; use separate keys"
                            ));
                        }
                        if !seen_hashes.insert(out) {
                            errs.push(format!(
                                "{base}.api_key_sha256[{j}]: the same key hash is configured twice"
                            ));
                        }
                        key_hashes.push(out);
                    }
                    Err(_) => errs.push(format!(
                        "{base}.api_key_sha256[{j}]: not 64 hex digits (a SHA-256 of the key, e.g. `printf %s KEY | sha256sum`)"
                    )),
                }
            }
            let allowed = if t.aliases.iter().any(|a| a == "*") {
                None
            } else {
                for (j, a) in t.aliases.iter().enumerate() {
                    if !aliases.contains_key(a) {
                        errs.push(format!("{base}.aliases[{j}]: unknown alias {a:?}"));
                    }
                }
                Some(t.aliases.iter().cloned().collect())
            };
            for (from, to) in &t.alias_overrides {
                if !aliases.contains_key(to) {
                    errs.push(format!(
                        "{base}.alias_overrides.{from}: unknown alias {to:?}"
                    ));
                }
            }
            for (field, v) in [
                ("requests_per_minute", t.requests_per_minute),
                ("tokens_per_minute", t.tokens_per_minute),
            ] {
                if v == Some(0) {
                    errs.push(format!(
                        "{base}.{field}: must be at least 1 (omit it for no limit)"
                    ));
                }
            }
            for (field, v) in [
                ("usd_per_day", t.usd_per_day),
                ("usd_per_month", t.usd_per_month),
            ] {
                if v.is_some_and(|v| !v.is_finite() || v <= 0.0) {
                    errs.push(format!("{base}.{field}: must be a positive amount of USD"));
                }
            }
            let policy = t.policy.build(&format!("{base}.policy"), &mut errs);
            let cache_ttl = crate::cache::opt_in_ttl(t.cache.as_ref(), &base, &mut errs);
            tenants.push(Tenant {
                cache_ttl,
                policy: std::sync::Arc::new(policy),
                name: t.name.clone(),
                key_hashes,
                allowed,
                alias_overrides: t.alias_overrides.clone(),
                allowed_regions: t.allowed_regions.clone(),
                limits: switchyard_quota::Limits {
                    requests_per_minute: t.requests_per_minute,
                    tokens_per_minute: t.tokens_per_minute,
                    usd_per_day: t.usd_per_day,
                    usd_per_month: t.usd_per_month,
                },
            });
        }
        let jwt = self.jwt.as_ref().and_then(|j| j.validate(&mut errs));
        let mut quota_problems = Vec::new();
        let quota = self.quota.validate("quota", &mut quota_problems);
        errs.extend(quota_problems.into_iter().map(|(p, m)| format!("{p}: {m}")));
        let cache = self.cache.validate(&mut errs);
        let prompts = crate::prompts::validate(&self.prompts, &aliases, &mut errs);
        for (m, p) in &self.prices {
            for (n, v) in [("input", p.input), ("output", p.output)] {
                if !(v >= 0.0 && v.is_finite()) {
                    errs.push(format!("prices.{m}.{n}: must be a non-negative number"));
                }
            }
        }
        errs.extend(self.telemetry.problems());
        if self
            .audit
            .path
            .as_deref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            errs.push("audit.path: must not be empty (\"-\" is stdout)".into());
        }
        if self.default_max_tokens == 0 {
            errs.push("default_max_tokens: must be at least 1".into());
        }

        match (errs.is_empty(), listen) {
            (true, Some(listen)) => Ok(Settings {
                listen,
                tls: self.tls.clone(),
                jwt,
                request_timeout,
                max_attempts: self.max_attempts,
                attempt_timeout,
                max_body_bytes: self.max_body_bytes,
                max_messages: self.max_messages,
                conn_limits: crate::serve::ConnLimits {
                    header_read_timeout,
                    max_header_bytes: self.max_header_bytes,
                },
                drain_timeout,
                retry_budget: RetryBudget {
                    ratio: self.retry_budget.ratio,
                    min_per_second: self.retry_budget.min_per_second,
                    window,
                },
                tenants,
                aliases,
                providers,
                quota,
                default_max_tokens: self.default_max_tokens,
                admin_key_hashes,
                cache,
                prompts,
                telemetry: self.telemetry.clone(),
                audit: self.audit.clone(),
                metrics: self.metrics.clone(),
            }),
            _ => Err(ConfigError::Invalid(errs)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:0"
[[tenants]]
name = "t"
api_key_sha256 = ["5f0a5e7d6a0b9d0d3c1b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a"]
aliases = ["demo"]
[[aliases]]
name = "demo"
candidates = [{ provider = "sim", model = "m1" }, { provider = "sim", model = "m2", priority = 5 }]
[[providers]]
name = "sim"
spokes = [{ addr = "127.0.0.1:1", weight = 3 }, { addr = "127.0.0.1:2" }]
health = { interval = "1s" }
"#;

    #[test]
    fn good_config_validates() {
        let s = HubConfig::parse(GOOD).unwrap().validate().unwrap();
        assert_eq!(s.listen.port(), 0);
        assert_eq!(s.aliases["demo"].candidates[1].priority, 5);
        assert_eq!(s.providers[0].health.interval, Duration::from_secs(1));
        assert_eq!(s.providers[0].health.unhealthy_threshold, 3);
        assert!(s.tenants[0].may_use("demo"));
        assert!(!s.tenants[0].may_use("other"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = HubConfig::parse("listen = \"127.0.0.1:0\"\nbogus = 1\n").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let text = r#"
listen = "nope"
request_timeout = "soon"
[[tenants]]
name = "t"
api_key_sha256 = ["xyz"]
aliases = ["missing"]
[[aliases]]
name = "demo"
candidates = [{ provider = "ghost", model = "m", weight = 30 }]
[[providers]]
name = "p"
health = { interval = "200ms" }
"#;
        let err = HubConfig::parse(text).unwrap().validate().unwrap_err();
        let ConfigError::Invalid(list) = err else {
            panic!("expected Invalid")
        };
        let joined = list.join("\n");
        for needle in [
            "listen:",
            "request_timeout:",
            "tenants[0].api_key_sha256[0]",
            "tenants[0].aliases[0]",
            "aliases[0].candidates[0].provider",
            "aliases[0].candidates: split weights add up to 30",
            "providers[0].health.interval",
            "providers[0]: needs `spokes",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
        }
    }
}
