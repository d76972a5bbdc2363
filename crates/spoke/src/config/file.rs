//! What the spoke's TOML file holds, as serde structs (`*File`): read by `config::parse`, then
//! turned into the runtime types by `config::validate`. Unknown keys are errors
//! (`switchyard_core::config::parse_toml`).

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
pub struct SpokeConfigFile {
    pub listen: String,
    pub account: String,
    pub provider: String,
    pub default_timeout: Option<String>,
    pub attempt_timeout: Option<String>,
    pub drain_timeout: Option<String>,
    /// Connection age after which the spoke sends a graceful GOAWAY (gRPC's
    /// MAX_CONNECTION_AGE); `"0s"` turns it off. Default 60s.
    pub max_connection_age: Option<String>,
    /// Time an aged connection's calls get to finish before it is closed (gRPC's
    /// MAX_CONNECTION_AGE_GRACE). Default 5m.
    pub max_connection_age_grace: Option<String>,
    #[serde(default)]
    pub backoff: BackoffFile,
    #[serde(default)]
    pub breaker: BreakerFile,
    /// What the spoke does with routes the upstream refuses for the account's reasons.
    #[serde(default)]
    pub denial: DenialFile,
    #[serde(default)]
    pub regions: Vec<RegionFile>,
    #[serde(default)]
    pub models: Vec<ModelFile>,
    pub aws: Option<AwsFile>,
    pub bedrock: Option<BedrockFile>,
    /// `provider = "anthropic"`: the API key settings (same keys as `[openai]`).
    pub anthropic: Option<OpenAiFile>,
    pub openai: Option<OpenAiFile>,
    pub simulated: Option<SimulatedFile>,
    #[serde(default)]
    pub quota: switchyard_quota::QuotaStoreFile,
    pub tls: Option<TlsFile>,
    /// `GET /admin/config` (off when no key hash is set).
    #[serde(default)]
    pub admin: AdminFile,
    /// OpenTelemetry trace export (docs/observability.md).
    #[serde(default)]
    pub telemetry: switchyard_core::telemetry::TelemetryConfig,
}

/// `[tls]`: serve gRPC and HTTP over TLS; with `client_ca`, only clients (hubs) holding a
/// certificate from that CA get through the handshake (mutual TLS).
#[derive(Debug, Deserialize)]
pub struct TlsFile {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// How often the files are re-read for rotation (default 5s).
    pub reload_interval: Option<String>,
}

/// `[admin]`: who may call the spoke's `/admin/*` (same semantics as the hub's).
#[derive(Debug, Default, Deserialize)]
pub struct AdminFile {
    /// SHA-256 (64 hex digits) of each admin key; empty = `/admin/*` answers 404.
    #[serde(default)]
    pub api_key_sha256: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct BackoffFile {
    pub base: Option<String>,
    pub max: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct BreakerFile {
    pub failures: Option<u32>,
    pub open_for: Option<String>,
}

/// `[denial]`: routes (or regions) the upstream refused for the account's reasons
/// (credentials, model access, model not found, billing).
#[derive(Debug, Default, Deserialize)]
pub struct DenialFile {
    /// How long a denied route is skipped before one request is let through as a probe
    /// (default 5m).
    pub probe_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RegionFile {
    pub name: String,
    pub endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ModelFile {
    pub id: String,
    pub upstream_id: Option<String>,
    pub regions: Option<Vec<String>>,
    pub context_window: Option<u32>,
    pub streaming: Option<bool>,
    pub tools: Option<bool>,
    pub images: Option<bool>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    /// Capabilities reported in `Describe` (defaults per provider: docs/configuration.md).
    pub structured_output: Option<bool>,
    pub reasoning: Option<bool>,
    pub max_choices: Option<u32>,
    pub logprobs: Option<bool>,
    pub prompt_caching: Option<bool>,
    pub seed: Option<bool>,
    pub penalties: Option<bool>,
    pub top_k: Option<bool>,
    pub tool_choice: Option<bool>,
    /// `provider = "openai"`: `"max_tokens"` (default) or `"max_completion_tokens"`.
    pub max_tokens_field: Option<String>,
    /// `provider = "anthropic"` / `"bedrock"`: `"tool"` (default) or `"native"`.
    pub structured_output_mode: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AwsFile {
    pub role_arn: Option<String>,
    pub secrets_region: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct BedrockFile {
    pub guardrail_id: Option<String>,
    pub guardrail_version: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct OpenAiFile {
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub api_key_secret: Option<String>,
    pub api_key_secret_field: Option<String>,
    pub secret_refresh: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SimulatedFile {
    pub latency: Option<String>,
    pub tokens_per_second: Option<u32>,
    pub failure_rate: Option<f64>,
}
