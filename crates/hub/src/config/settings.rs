//! The validated configuration ([`Settings`]) that `HubConfig::validate()` builds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::file::TlsConfig;
use super::observe::{AuditConfig, MetricsConfig};
use crate::model::{Alias, ConnLimits, Provider, RetryBudget, Tenant};

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub tls: Option<TlsConfig>,
    pub jwt: Option<crate::jwt::JwtSettings>,
    pub request_timeout: Duration,
    /// `stream_keepalive`: `None` = off (`Admission::open_stream`).
    pub stream_keepalive: Option<Duration>,
    pub max_attempts: u32,
    pub attempt_timeout: Option<Duration>,
    pub max_body_bytes: usize,
    pub max_messages: usize,
    /// Bounds on what sizes a request's work (`max_tools`, `max_tool_bytes`,
    /// `max_embedding_dimensions`).
    pub bounds: crate::model::RequestBounds,
    pub conn_limits: ConnLimits,
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
    /// The Responses API's store of responses (`[responses]`).
    pub responses: crate::store::StoreSettings,
    /// Prompt templates by name.
    pub prompts: BTreeMap<String, crate::templates::Prompt>,
    pub telemetry: switchyard_core::telemetry::TelemetryConfig,
    pub audit: AuditConfig,
    pub metrics: MetricsConfig,
    /// `[cors]`; `None` = off.
    pub cors: Option<super::cors::Cors>,
}
