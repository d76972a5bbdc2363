//! The spoke's config file (TOML). `SpokeConfigFile` is what the file holds; [`validate`] turns
//! it into the runtime [`SpokeConfig`], reporting every problem with its path.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use switchyard_core::backoff::Backoff;
use switchyard_core::breaker::BreakerPolicy;
use switchyard_core::config::{ConfigErrors, Problems, parse_toml};

mod connection_age;
mod file;
pub use connection_age::ConnectionAge;
pub use file::{
    AdminFile, AwsFile, BackoffFile, BedrockFile, BreakerFile, DenialFile, ModelFile, OpenAiFile,
    RegionFile, SimulatedFile, SpokeConfigFile, TlsFile,
};

/// Which upstream adapter this spoke runs, with its settings.
#[derive(Debug, Clone)]
pub enum ProviderConfig {
    Bedrock { guardrail: Option<(String, String)> },
    OpenAi { api_key: ApiKeyConfig },
    Anthropic { api_key: ApiKeyConfig },
    Simulated(switchyard_providers::simulated::SimulatedConfig),
}

impl ProviderConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bedrock { .. } => "bedrock",
            Self::OpenAi { .. } => "openai",
            Self::Anthropic { .. } => "anthropic",
            Self::Simulated(_) => "simulated",
        }
    }
}

/// Where an OpenAI-compatible upstream's API key comes from (never the config file itself).
#[derive(Debug, Clone, PartialEq)]
pub enum ApiKeyConfig {
    None,
    Env(String),
    File(PathBuf),
    /// Secrets Manager name or ARN, optional JSON field, refresh interval.
    Secret {
        id: String,
        field: Option<String>,
        refresh: Duration,
    },
}

/// AWS settings shared by Bedrock and Secrets Manager.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AwsConfig {
    /// Role to assume in the spoke's account (STS), for Bedrock and Secrets Manager.
    pub role_arn: Option<String>,
    /// Region of Secrets Manager; default the spoke's first region.
    pub secrets_region: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Region {
    pub name: String,
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub id: String,
    pub upstream_id: String,
    /// Region chain, in failover order.
    pub regions: Vec<String>,
    pub context_window: u32,
    pub streaming: bool,
    pub tools: bool,
    pub images: bool,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    /// `response_format` JSON object / schema.
    pub structured_output: bool,
    /// Reasoning enabled or adaptive (and efforts).
    pub reasoning: bool,
    /// Largest `n` (1 = one choice only).
    pub max_choices: u32,
    pub logprobs: bool,
    /// Cache points reach the upstream (else they are left out).
    pub prompt_caching: bool,
    pub seed: bool,
    /// `presence_penalty`, `frequency_penalty`, `logit_bias`.
    pub penalties: bool,
    pub top_k: bool,
    /// Tool choice any / none / a named tool, and `parallel_tool_calls`.
    pub tool_choice: bool,
    /// How the adapter speaks to this model (`max_tokens_field`, `structured_output_mode`,
    /// `prompt_caching`).
    pub options: switchyard_providers::ModelOptions,
}

impl Model {
    /// What the model can honour, as `Describe` reports it.
    pub fn capabilities(&self) -> switchyard_proto::v1::Capabilities {
        switchyard_proto::v1::Capabilities {
            streaming: self.streaming,
            tools: self.tools,
            images: self.images,
            context_window: self.context_window,
            structured_output: self.structured_output,
            reasoning: self.reasoning,
            max_choices: self.max_choices,
            logprobs: self.logprobs,
            prompt_caching: self.prompt_caching,
            seed: self.seed,
            penalties: self.penalties,
            top_k: self.top_k,
            tool_choice: self.tool_choice,
        }
    }
}

/// Most choices (`n`) a model may declare (`max_choices`).
pub const MAX_CHOICES: u32 = 128;

/// A model's capabilities and adapter options from its `[[models]]` entry, with the defaults of
/// `provider` (docs/configuration.md): what the provider's API really does.
fn model_capabilities(
    p: &mut Problems,
    i: usize,
    provider: &str,
    m: &ModelFile,
    upstream_id: &str,
) -> ([bool; 8], u32, switchyard_providers::ModelOptions) {
    use switchyard_providers::{MaxTokensField, ModelOptions, StructuredOutputMode};
    let tools = m.tools.unwrap_or(false);
    let path = |k: &str| format!("models[{i}].{k}");
    let max_tokens_field = match (m.max_tokens_field.as_deref(), provider) {
        (None | Some("max_tokens"), _) => MaxTokensField::MaxTokens,
        (Some("max_completion_tokens"), "openai") => MaxTokensField::MaxCompletionTokens,
        (Some("max_completion_tokens"), _) => {
            p.push(path("max_tokens_field"), "only for provider \"openai\"");
            MaxTokensField::MaxTokens
        }
        (Some(other), _) => {
            p.push(
                path("max_tokens_field"),
                format!("{other:?} is not \"max_tokens\" or \"max_completion_tokens\""),
            );
            MaxTokensField::MaxTokens
        }
    };
    let structured_output_mode = match (m.structured_output_mode.as_deref(), provider) {
        (None | Some("tool"), _) => StructuredOutputMode::Tool,
        (Some("native"), "anthropic" | "bedrock") => StructuredOutputMode::Native,
        (Some("native"), _) => {
            p.push(
                path("structured_output_mode"),
                "only for providers \"anthropic\" and \"bedrock\"",
            );
            StructuredOutputMode::Tool
        }
        (Some(other), _) => {
            p.push(
                path("structured_output_mode"),
                format!("{other:?} is not \"tool\" or \"native\""),
            );
            StructuredOutputMode::Tool
        }
    };
    // Defaults: [structured_output, reasoning, logprobs, prompt_caching, seed, penalties,
    // top_k, tool_choice], max_choices.
    let native = structured_output_mode == StructuredOutputMode::Native;
    let (defaults, max_choices) = match provider {
        "openai" => ([true, false, true, false, true, true, false, tools], 1),
        "anthropic" => (
            [
                tools || native,
                true,
                false,
                true,
                false,
                false,
                true,
                tools,
            ],
            1,
        ),
        "bedrock" => (
            [
                tools || native,
                false,
                false,
                true,
                false,
                false,
                false,
                tools,
            ],
            1,
        ),
        // The simulated upstream plays along with everything.
        _ => ([true; 8], 8),
    };
    let keys = [
        ("structured_output", m.structured_output),
        ("reasoning", m.reasoning),
        ("logprobs", m.logprobs),
        ("prompt_caching", m.prompt_caching),
        ("seed", m.seed),
        ("penalties", m.penalties),
        ("top_k", m.top_k),
        ("tool_choice", m.tool_choice),
    ];
    let mut caps = [false; 8];
    for (j, (_, v)) in keys.iter().enumerate() {
        caps[j] = v.unwrap_or(defaults[j]);
    }
    let max_choices = m.max_choices.unwrap_or(max_choices).max(1);
    if max_choices > MAX_CHOICES {
        p.push(path("max_choices"), format!("at most {MAX_CHOICES}"));
    }
    // What the provider's API has no field for cannot be declared.
    let api = match provider {
        "anthropic" => Some("the Anthropic Messages API"),
        "bedrock" => Some("Bedrock Converse"),
        _ => None,
    };
    if let Some(api) = api {
        for (key, on) in [
            ("logprobs", caps[2]),
            ("seed", caps[4]),
            ("penalties", caps[5]),
            ("max_choices", max_choices > 1),
        ] {
            if on {
                p.push(path(key), format!("{api} has no such setting"));
            }
        }
    }
    if provider == "bedrock"
        && caps[1]
        && !switchyard_providers::bedrock::reasoning_known(upstream_id)
    {
        p.push(
            path("reasoning"),
            format!("no reasoning setting is known for Bedrock model {upstream_id:?} (Claude, Nova 2 and gpt-oss have one)"),
        );
    }
    if caps[0] && !tools && !native && matches!(provider, "anthropic" | "bedrock") {
        p.push(
            path("structured_output"),
            "needs tools = true (structured output is carried by a forced tool) or structured_output_mode = \"native\"",
        );
    }
    let options = ModelOptions {
        max_tokens_field,
        structured_output: structured_output_mode,
        prompt_caching: caps[3],
    };
    (caps, max_choices, options)
}

#[derive(Debug, Clone)]
pub struct SpokeConfig {
    pub listen: SocketAddr,
    pub account: String,
    pub provider: ProviderConfig,
    pub aws: AwsConfig,
    pub default_timeout: Duration,
    pub attempt_timeout: Option<Duration>,
    pub drain_timeout: Duration,
    /// Connection recycling behind a TCP load balancer (see [`ConnectionAge`]).
    pub connection_age: ConnectionAge,
    pub backoff: Backoff,
    pub breaker: BreakerPolicy,
    /// `[denial] probe_interval`: how long a route the upstream refused for the account's
    /// reasons is skipped before one request probes it.
    pub denial_probe_interval: Duration,
    pub regions: Vec<Region>,
    pub models: Vec<Model>,
    /// Where the account-quota buckets live (memory, or Redis shared by the service's tasks).
    pub quota: switchyard_quota::StoreConfig,
    /// TLS (and mutual TLS) on the listener; None = plain h2c / HTTP.
    pub tls: Option<TlsConfig>,
    /// SHA-256 of the admin keys; empty = `/admin/*` is off.
    pub admin_key_hashes: Vec<[u8; 32]>,
    pub telemetry: switchyard_core::telemetry::TelemetryConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub files: switchyard_tls::ServerFiles,
    pub reload_interval: Duration,
}

/// Reads and validates a config file.
pub fn load(path: &std::path::Path) -> Result<SpokeConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![format!("{}: cannot read ({e})", path.display())]))?;
    parse(&text)
}

pub fn parse(text: &str) -> Result<SpokeConfig, ConfigErrors> {
    validate(parse_toml::<SpokeConfigFile>(text)?)
}

fn positive(p: &mut Problems, path: String, d: Duration) -> Duration {
    if d.is_zero() {
        p.push(path, "must be greater than zero");
    }
    d
}

pub fn validate(f: SpokeConfigFile) -> Result<SpokeConfig, ConfigErrors> {
    let mut p = Problems::new();

    let listen = f
        .listen
        .parse::<SocketAddr>()
        .map_err(|e| p.push("listen", format!("{:?} is not an address ({e})", f.listen)))
        .ok();
    if f.account.trim().is_empty() {
        p.push("account", "must not be empty");
    }

    let default_timeout = f
        .default_timeout
        .as_deref()
        .and_then(|t| p.duration("default_timeout", t))
        .unwrap_or(Duration::from_secs(60));
    let default_timeout = positive(&mut p, "default_timeout".into(), default_timeout);
    let attempt_timeout = f
        .attempt_timeout
        .as_deref()
        .and_then(|t| p.duration("attempt_timeout", t))
        .map(|d| positive(&mut p, "attempt_timeout".into(), d));
    let drain_timeout = p.duration_or(
        "drain_timeout",
        f.drain_timeout.as_deref(),
        Duration::from_secs(30),
    );
    let age_default = ConnectionAge::default();
    let grace = p.duration_or(
        "max_connection_age_grace",
        f.max_connection_age_grace.as_deref(),
        age_default.grace,
    );
    let connection_age = ConnectionAge {
        max_age: match f.max_connection_age.as_deref() {
            None => age_default.max_age,
            Some(t) => p.duration("max_connection_age", t).filter(|d| !d.is_zero()),
        },
        grace: positive(&mut p, "max_connection_age_grace".into(), grace),
    };

    let defaults = Backoff::default();
    let backoff = Backoff {
        base: p.duration_or("backoff.base", f.backoff.base.as_deref(), defaults.base),
        max: p.duration_or("backoff.max", f.backoff.max.as_deref(), defaults.max),
    };
    if backoff.base > backoff.max {
        p.push("backoff.base", "must not exceed backoff.max");
    }
    let bdef = BreakerPolicy::default();
    let breaker = BreakerPolicy {
        failures: f.breaker.failures.unwrap_or(bdef.failures),
        open_for: p.duration_or(
            "breaker.open_for",
            f.breaker.open_for.as_deref(),
            bdef.open_for,
        ),
    };
    if breaker.failures == 0 {
        p.push("breaker.failures", "must be at least 1");
    }
    let denial_probe_interval = p.duration_or(
        "denial.probe_interval",
        f.denial.probe_interval.as_deref(),
        crate::routes::DEFAULT_PROBE_INTERVAL,
    );
    if denial_probe_interval < Duration::from_millis(100) {
        p.push("denial.probe_interval", "must be at least 100ms");
    }

    let provider = match f.provider.as_str() {
        "bedrock" => {
            let b = f.bedrock.as_ref();
            let guardrail = match (
                b.and_then(|b| b.guardrail_id.clone()),
                b.and_then(|b| b.guardrail_version.clone()),
            ) {
                (Some(id), Some(v)) => Some((id, v)),
                (None, None) => None,
                _ => {
                    p.push("bedrock", "guardrail_id and guardrail_version go together");
                    None
                }
            };
            Some(ProviderConfig::Bedrock { guardrail })
        }
        "openai" => Some(ProviderConfig::OpenAi {
            api_key: api_key_config(&mut p, "openai", f.openai.as_ref()),
        }),
        "anthropic" => Some(ProviderConfig::Anthropic {
            api_key: api_key_config(&mut p, "anthropic", f.anthropic.as_ref()),
        }),
        "simulated" => {
            let s = f.simulated.as_ref();
            let d = switchyard_providers::simulated::SimulatedConfig::default();
            let failure_rate = s.and_then(|s| s.failure_rate).unwrap_or(d.failure_rate);
            if !(0.0..=1.0).contains(&failure_rate) {
                p.push("simulated.failure_rate", "must be between 0 and 1");
            }
            Some(ProviderConfig::Simulated(
                switchyard_providers::simulated::SimulatedConfig {
                    latency: p.duration_or(
                        "simulated.latency",
                        s.and_then(|s| s.latency.as_deref()),
                        d.latency,
                    ),
                    tokens_per_second: s
                        .and_then(|s| s.tokens_per_second)
                        .unwrap_or(d.tokens_per_second),
                    failure_rate,
                },
            ))
        }
        other => {
            p.push(
                "provider",
                format!(
                    "unknown provider {other:?} (expected \"bedrock\", \"openai\", \"anthropic\" or \"simulated\")"
                ),
            );
            None
        }
    };
    for (section, present) in [
        ("bedrock", f.bedrock.is_some()),
        ("openai", f.openai.is_some()),
        ("anthropic", f.anthropic.is_some()),
        ("simulated", f.simulated.is_some()),
    ] {
        if present && section != f.provider {
            p.push(
                section,
                format!("section given but provider is {:?}", f.provider),
            );
        }
    }

    let tls = f.tls.as_ref().map(|t| {
        let mut files = vec![("tls.cert", &t.cert), ("tls.key", &t.key)];
        if let Some(ca) = &t.client_ca {
            files.push(("tls.client_ca", ca));
        }
        for (path, file) in files {
            if !file.exists() {
                p.push(path, format!("file {} does not exist", file.display()));
            }
        }
        let reload_interval = p.duration_or(
            "tls.reload_interval",
            t.reload_interval.as_deref(),
            switchyard_tls::DEFAULT_RELOAD_INTERVAL,
        );
        if reload_interval < Duration::from_millis(100) {
            p.push("tls.reload_interval", "must be at least 100ms");
        }
        TlsConfig {
            files: switchyard_tls::ServerFiles {
                cert: t.cert.clone(),
                key: t.key.clone(),
                client_ca: t.client_ca.clone(),
            },
            reload_interval,
        }
    });

    if f.regions.is_empty() {
        p.push("regions", "at least one region is required");
    }
    let mut names = HashSet::new();
    let mut regions = Vec::new();
    for (i, r) in f.regions.iter().enumerate() {
        if r.name.trim().is_empty() {
            p.push(format!("regions[{i}].name"), "must not be empty");
        } else if !names.insert(r.name.as_str()) {
            p.push(
                format!("regions[{i}].name"),
                format!("duplicate region {:?}", r.name),
            );
        }
        if let Some(ep) = &r.endpoint
            && !(ep.starts_with("http://") || ep.starts_with("https://"))
        {
            p.push(
                format!("regions[{i}].endpoint"),
                format!("{ep:?} must start with http:// or https://"),
            );
        }
        if f.provider == "openai" && r.endpoint.is_none() {
            p.push(
                format!("regions[{i}].endpoint"),
                "required for provider \"openai\" (the base URL, including /v1)",
            );
        }
        regions.push(Region {
            name: r.name.clone(),
            endpoint: r.endpoint.clone(),
        });
    }

    if f.models.is_empty() {
        p.push("models", "at least one model is required");
    }
    let mut ids = HashSet::new();
    let mut models = Vec::new();
    for (i, m) in f.models.iter().enumerate() {
        if m.id.trim().is_empty() {
            p.push(format!("models[{i}].id"), "must not be empty");
        } else if !ids.insert(m.id.as_str()) {
            p.push(
                format!("models[{i}].id"),
                format!("duplicate model {:?}", m.id),
            );
        }
        let chain = m
            .regions
            .clone()
            .unwrap_or_else(|| f.regions.iter().map(|r| r.name.clone()).collect());
        if chain.is_empty() {
            p.push(format!("models[{i}].regions"), "must not be empty");
        }
        let mut seen = HashSet::new();
        for (j, r) in chain.iter().enumerate() {
            if !names.contains(r.as_str()) {
                p.push(
                    format!("models[{i}].regions[{j}]"),
                    format!("{r:?} is not one of the spoke's regions"),
                );
            }
            if !seen.insert(r.as_str()) {
                p.push(
                    format!("models[{i}].regions[{j}]"),
                    format!("{r:?} listed twice"),
                );
            }
        }
        for (field, v) in [
            ("requests_per_minute", m.requests_per_minute),
            ("tokens_per_minute", m.tokens_per_minute),
        ] {
            if v == Some(0) {
                p.push(
                    format!("models[{i}].{field}"),
                    "must be at least 1 (omit it for no limit)",
                );
            }
        }
        let upstream_id = m.upstream_id.clone().unwrap_or_else(|| m.id.clone());
        let (
            [
                structured_output,
                reasoning,
                logprobs,
                prompt_caching,
                seed,
                penalties,
                top_k,
                tool_choice,
            ],
            max_choices,
            options,
        ) = model_capabilities(&mut p, i, &f.provider, m, &upstream_id);
        models.push(Model {
            id: m.id.clone(),
            upstream_id,
            regions: chain,
            context_window: m.context_window.unwrap_or(128_000),
            streaming: m.streaming.unwrap_or(true),
            tools: m.tools.unwrap_or(false),
            images: m.images.unwrap_or(false),
            requests_per_minute: m.requests_per_minute,
            tokens_per_minute: m.tokens_per_minute,
            structured_output,
            reasoning,
            max_choices,
            logprobs,
            prompt_caching,
            seed,
            penalties,
            top_k,
            tool_choice,
            options,
        });
    }

    let aws = AwsConfig {
        role_arn: f.aws.as_ref().and_then(|a| a.role_arn.clone()),
        secrets_region: f.aws.as_ref().and_then(|a| a.secrets_region.clone()),
    };
    if let Some(arn) = &aws.role_arn
        && !(arn.starts_with("arn:aws") && arn.contains(":role/"))
    {
        p.push("aws.role_arn", format!("{arn:?} is not an IAM role ARN"));
    }

    let mut quota_problems = Vec::new();
    let quota = f.quota.validate("quota", &mut quota_problems);
    for (path, msg) in quota_problems {
        p.push(path, msg);
    }

    let mut admin_key_hashes = Vec::new();
    for (j, h) in f.admin.api_key_sha256.iter().enumerate() {
        let mut out = [0u8; 32];
        match hex::decode_to_slice(h.trim(), &mut out) {
            Ok(()) => admin_key_hashes.push(out),
            Err(_) => p.push(
                format!("admin.api_key_sha256[{j}]"),
                "not 64 hex digits (a SHA-256 of the key)",
            ),
        }
    }
    for problem in f.telemetry.problems() {
        let (path, msg) = problem.split_once(": ").unwrap_or(("telemetry", &problem));
        p.push(path, msg);
    }

    p.finish()?;
    match (listen, provider) {
        (Some(listen), Some(provider)) => Ok(SpokeConfig {
            listen,
            account: f.account,
            provider,
            aws,
            default_timeout,
            attempt_timeout,
            drain_timeout,
            connection_age,
            backoff,
            breaker,
            denial_probe_interval,
            regions,
            models,
            quota,
            tls,
            admin_key_hashes,
            telemetry: f.telemetry,
        }),
        // Unreachable in practice: a missing value always recorded a problem above.
        _ => Err(ConfigErrors(vec!["configuration incomplete".into()])),
    }
}

/// Where an API-key provider's key comes from (`[openai]` / `[anthropic]`).
fn api_key_config(p: &mut Problems, section: &str, o: Option<&OpenAiFile>) -> ApiKeyConfig {
    let env = o.and_then(|o| o.api_key_env.clone());
    let file = o.and_then(|o| o.api_key_file.clone());
    let secret = o.and_then(|o| o.api_key_secret.clone());
    let refresh = p.duration_or(
        format!("{section}.secret_refresh"),
        o.and_then(|o| o.secret_refresh.as_deref()),
        Duration::from_secs(300),
    );
    let field = o.and_then(|o| o.api_key_secret_field.clone());
    if field.is_some() && secret.is_none() {
        p.push(
            format!("{section}.api_key_secret_field"),
            "needs api_key_secret",
        );
    }
    match (env, file, secret) {
        (None, None, None) => ApiKeyConfig::None,
        (Some(v), None, None) => ApiKeyConfig::Env(v),
        (None, Some(f), None) => ApiKeyConfig::File(f),
        (None, None, Some(id)) => {
            if refresh.is_zero() {
                p.push(
                    format!("{section}.secret_refresh"),
                    "must be greater than zero",
                );
            }
            ApiKeyConfig::Secret { id, field, refresh }
        }
        _ => {
            p.push(
                section,
                "set one of api_key_env, api_key_file, api_key_secret",
            );
            ApiKeyConfig::None
        }
    }
}

#[cfg(test)]
mod tests;
