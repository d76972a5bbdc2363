//! Hub configuration: file input ([`file`]: serde types, `*Config`) and `validate()`, which
//! turns it into the runtime [`Settings`] or reports every problem with its path. Each section
//! is validated by its own function: [`providers`], [`aliases`] (with `[prices]`), [`tenants`]
//! (with `[admin]`), [`cache`], [`observe`] (`[audit]`, `[metrics]`), [`cors`].

mod aliases;
pub mod cache;
pub mod cors;
pub mod file;
pub mod observe;
mod providers;
pub mod responses;
mod settings;
mod tenants;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use file::*;
pub use observe::{AuditConfig, MetricsConfig, Price};
pub use settings::Settings;

use crate::model::{Health, RetryBudget};

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

    /// Parses TOML text (no validation). Every unknown key is an error, and all of them are
    /// listed with their paths (`tenants.0.typo: unknown key`), one per line.
    pub fn parse(text: &str) -> Result<Self, String> {
        switchyard_core::config::parse_toml(text).map_err(|e| e.0.join("\n  "))
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
        let stream_keepalive = dur("stream_keepalive", &self.stream_keepalive);
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
            let od = &p.outlier_detection;
            let outlier = crate::model::OutlierDetection {
                consecutive_5xx: od.consecutive_5xx,
                base_ejection_time: dur(
                    &format!("{base}.outlier_detection.base_ejection_time"),
                    &od.base_ejection_time,
                ),
                max_ejection_time: dur(
                    &format!("{base}.outlier_detection.max_ejection_time"),
                    &od.max_ejection_time,
                ),
            };
            provider_parts.push(providers::Parts {
                health,
                connect_timeout,
                min_ttl,
                max_ttl,
                outlier,
            });
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
        if !stream_keepalive.is_zero() && stream_keepalive < Duration::from_millis(100) {
            errs.push("stream_keepalive: must be 0s (off) or at least 100ms".into());
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
        for (key, v) in [
            ("max_tools", self.max_tools),
            ("max_tool_bytes", self.max_tool_bytes),
            (
                "max_embedding_dimensions",
                self.max_embedding_dimensions as usize,
            ),
            ("max_choices", self.max_choices as usize),
        ] {
            if v == 0 {
                errs.push(format!("{key}: must be at least 1"));
            }
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
        let (providers, provider_names) = providers::providers(self, provider_parts, &mut errs);

        let aliases = aliases::aliases(self, &provider_names, &mut errs);

        let (tenants, admin_key_hashes) = tenants::tenants(self, &aliases, &mut errs);
        let jwt = self.jwt.as_ref().and_then(|j| j.validate(&mut errs));
        let mut quota_problems = Vec::new();
        let quota = self.quota.validate("quota", &mut quota_problems);
        errs.extend(quota_problems.into_iter().map(|(p, m)| format!("{p}: {m}")));
        let cache = self.cache.validate(&mut errs);
        let responses = self.responses.validate(&mut errs);
        let prompts = crate::templates::validate(&self.prompts, &aliases, &mut errs);
        for (m, p) in &self.prices {
            for (n, v) in [("input", p.input), ("output", p.output)] {
                if !(v >= 0.0 && v.is_finite()) {
                    errs.push(format!("prices.{m}.{n}: must be a non-negative number"));
                }
            }
        }
        errs.extend(self.telemetry.problems());
        errs.extend(self.audit.problems());
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
        let cors = self.cors.validate(&mut errs);

        match (errs.is_empty(), listen) {
            (true, Some(listen)) => Ok(Settings {
                listen,
                tls: self.tls.clone(),
                jwt,
                request_timeout,
                stream_keepalive: (!stream_keepalive.is_zero()).then_some(stream_keepalive),
                max_attempts: self.max_attempts,
                attempt_timeout,
                max_body_bytes: self.max_body_bytes,
                max_messages: self.max_messages,
                bounds: crate::model::RequestBounds {
                    max_tools: self.max_tools,
                    max_tool_bytes: self.max_tool_bytes,
                    max_embedding_dimensions: self.max_embedding_dimensions,
                    max_choices: self.max_choices,
                },
                conn_limits: crate::model::ConnLimits {
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
                responses,
                telemetry: self.telemetry.clone(),
                audit: self.audit.clone(),
                metrics: self.metrics.clone(),
                cors,
            }),
            _ => Err(ConfigError::Invalid(errs)),
        }
    }
}

/// Where a section's shared store lives (`[cache]`, `[responses]`): `store = "memory"` (the
/// default) → `None`; `store = "redis"` → `Some((url, key_prefix))`, the URL from exactly one of
/// `redis_url` / `redis_url_env` (a single node or comma-separated cluster seeds), the prefix
/// `"switchyard"` unless given. Problems go to `errs`, each prefixed with `section`.
fn shared_store(
    section: &str,
    store: Option<&str>,
    redis_url: Option<&String>,
    redis_url_env: Option<&String>,
    key_prefix: Option<&String>,
    errs: &mut Vec<String>,
) -> Option<(String, String)> {
    match store.unwrap_or("memory") {
        "memory" => {
            if redis_url.is_some() || redis_url_env.is_some() {
                errs.push(format!(
                    "{section}.redis_url: given but store is \"memory\""
                ));
            }
            None
        }
        "redis" => {
            let url = match (redis_url, redis_url_env) {
                (Some(u), None) => Some(u.clone()),
                (None, Some(var)) => match std::env::var(var) {
                    Ok(u) => Some(u),
                    Err(_) => {
                        errs.push(format!(
                            "{section}.redis_url_env: environment variable {var} is not set"
                        ));
                        None
                    }
                },
                _ => {
                    errs.push(format!(
                        "{section}: store = \"redis\" needs exactly one of redis_url, redis_url_env"
                    ));
                    None
                }
            };
            if let Some(u) = &url
                && switchyard_quota::redis_conn::seeds(u).is_err()
            {
                errs.push(format!(
                    "{section}.redis_url: not a redis:// or rediss:// URL (or comma-separated cluster seed nodes)"
                ));
            }
            let prefix = key_prefix.cloned().unwrap_or_else(|| "switchyard".into());
            Some((url.unwrap_or_default(), prefix))
        }
        other => {
            errs.push(format!(
                "{section}.store: {other:?} is not \"memory\" or \"redis\""
            ));
            None
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
        assert_eq!(
            s.providers[0].connections, 4,
            "connections per address default"
        );
    }

    #[test]
    fn connections_per_address_are_bounded() {
        let with = |n: u32| {
            HubConfig::parse(&GOOD.replace(
                "health = { interval = \"1s\" }",
                &format!("health = {{ interval = \"1s\" }}\nconnections = {n}"),
            ))
            .unwrap()
            .validate()
        };
        assert_eq!(with(12).unwrap().providers[0].connections, 12);
        for bad in [0, 65] {
            let Err(ConfigError::Invalid(list)) = with(bad) else {
                panic!("connections = {bad} accepted")
            };
            assert_eq!(
                list,
                vec!["providers[0].connections: must be between 1 and 64".to_string()]
            );
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = HubConfig::parse("listen = \"127.0.0.1:0\"\nbogus = 1\n").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn every_unknown_key_is_listed_with_its_path() {
        let text = "listen = \"127.0.0.1:0\"\ntypo = 1\n[audit]\nbogus = 2\n\
                    [[tenants]]\nname = \"t\"\napi_key_sha256 = []\naliases = []\nextra = true\n";
        let err = HubConfig::parse(text).unwrap_err();
        for want in [
            "typo: unknown key",
            "audit.bogus: unknown key",
            "tenants.0.extra: unknown key",
        ] {
            assert!(err.contains(want), "{want:?} not in {err}");
        }
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
