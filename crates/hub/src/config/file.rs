//! The `hub --config FILE` document as serde input types (`*Config`), with their defaults.
//! `validate()` (in `config`) turns them into the runtime `Settings`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::cache::{CacheFileConfig, CacheOptIn};
use super::observe::{AuditConfig, MetricsConfig, Price};

/// The whole `hub --config FILE` document.
#[derive(Debug, Clone, Deserialize)]
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
    /// How long a stream may wait for its first content before the hub commits the response
    /// (status 200 and headers) and keeps the connection alive at this interval (`"0s"` = never:
    /// wait for the first content, as before).
    #[serde(default = "default_stream_keepalive")]
    pub stream_keepalive: String,
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
    /// Most tools one request may offer (more → 400 naming `tools`).
    #[serde(default = "default_max_tools")]
    pub max_tools: usize,
    /// Largest definition of one tool in bytes: name + description + JSON schema (larger → 400
    /// naming `tools`).
    #[serde(default = "default_max_tool_bytes")]
    pub max_tool_bytes: usize,
    /// Largest `dimensions` an embeddings request may ask for (larger → 400 naming
    /// `dimensions`).
    #[serde(default = "default_max_embedding_dimensions")]
    pub max_embedding_dimensions: u32,
    /// Largest `n` (choices) one chat request may ask for (more → 400 naming `n`).
    #[serde(default = "default_max_choices")]
    pub max_choices: u32,
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
    pub cache: CacheFileConfig,
    /// Stored responses of the Responses API (`[responses]`).
    #[serde(default)]
    pub responses: super::responses::ResponsesFileConfig,
    /// Named, versioned prompt templates (`[[prompts]]`).
    #[serde(default)]
    pub prompts: Vec<crate::templates::PromptConfig>,
    /// OpenTelemetry trace export (`[telemetry]`; docs/observability.md).
    #[serde(default)]
    pub telemetry: switchyard_core::telemetry::TelemetryConfig,
    /// The per-request audit log (`[audit]`).
    #[serde(default)]
    pub audit: AuditConfig,
    /// `GET /metrics` (`[metrics]`).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Browser origins allowed to call the hub (`[cors]`; off when unset).
    #[serde(default)]
    pub cors: super::cors::CorsConfig,
    /// Price table per model, USD per million tokens (`[prices.MODEL] input = .., output = ..`):
    /// the price of every candidate of that model that sets no `price_in`/`price_out` itself.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
}

/// `[admin]`: who may call `/admin/*`.
#[derive(Debug, Clone, Default, Deserialize)]
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
fn default_stream_keepalive() -> String {
    "5s".into()
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
fn default_max_tools() -> usize {
    128
}
fn default_max_tool_bytes() -> usize {
    64 * 1024
}
fn default_max_embedding_dimensions() -> u32 {
    8192
}
fn default_max_choices() -> u32 {
    8
}

#[derive(Debug, Clone, Deserialize)]
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
    pub cache: Option<CacheOptIn>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AliasConfig {
    pub name: String,
    pub candidates: Vec<CandidateConfig>,
    /// Capabilities every candidate must offer on top of what the request needs.
    #[serde(default)]
    pub needs: NeedsConfig,
    /// Response cache for deterministic requests to this alias (`cache = { ttl = "5m" }`).
    pub cache: Option<CacheOptIn>,
    /// Same-API passthrough of request fields the hub does not know (default true); false
    /// refuses them with 400 naming them.
    #[serde(default = "default_true")]
    pub passthrough: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NeedsConfig {
    #[serde(default)]
    pub streaming: bool,
    #[serde(default)]
    pub tools: bool,
    #[serde(default)]
    pub min_context_window: u32,
}

#[derive(Debug, Clone, Deserialize)]
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
    /// HTTP/2 connections per spoke address; calls go to the least busy one. Behind a TCP load
    /// balancer each connection lands on a task, so this is how many tasks one hub can keep
    /// busy per address (docs/operations.md, *Balancing*).
    #[serde(default = "default_connections")]
    pub connections: u32,
    /// Call the spokes over TLS (optionally mutual); plain h2c when absent.
    pub tls: Option<SpokeTlsConfig>,
    /// Passive outlier detection (Envoy's consecutive 5xx); on by default.
    #[serde(default)]
    pub outlier_detection: OutlierDetectionConfig,
}

/// `providers[].outlier_detection` (Envoy's names and defaults).
#[derive(Debug, Clone, Deserialize)]
pub struct OutlierDetectionConfig {
    /// Consecutive failed calls (UNAVAILABLE from the spoke, or `attempt_timeout`) that eject a
    /// spoke; 0 turns the detector off.
    #[serde(default = "default_consecutive_5xx")]
    pub consecutive_5xx: u32,
    /// Ejection time, multiplied by the number of ejections in a row.
    #[serde(default = "default_base_ejection_time")]
    pub base_ejection_time: String,
    /// Longest ejection.
    #[serde(default = "default_max_ejection_time")]
    pub max_ejection_time: String,
}

impl Default for OutlierDetectionConfig {
    fn default() -> Self {
        Self {
            consecutive_5xx: default_consecutive_5xx(),
            base_ejection_time: default_base_ejection_time(),
            max_ejection_time: default_max_ejection_time(),
        }
    }
}
fn default_consecutive_5xx() -> u32 {
    5
}
fn default_base_ejection_time() -> String {
    "30s".into()
}
fn default_max_ejection_time() -> String {
    "300s".into()
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
fn default_connections() -> u32 {
    4
}
fn default_connect_timeout() -> String {
    "2s".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct StaticSpokeConfig {
    pub addr: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}
fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
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
