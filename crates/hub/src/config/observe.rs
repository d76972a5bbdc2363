//! `[audit]` and `[metrics]`: where audit lines go and who may read `/metrics`.

use std::path::PathBuf;

use serde::Deserialize;

/// `[audit]`: one JSON line per request.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Write audit lines at all (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// File to append to, or `"-"` for stdout (the default).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Include the request's messages in the audit line (default false: no prompt content).
    #[serde(default)]
    pub capture_content: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            capture_content: false,
        }
    }
}

fn yes() -> bool {
    true
}

/// `[metrics]`: who may read `GET /metrics`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Require the admin key (`[admin]`) on `/metrics` (default false: open, like most
    /// Prometheus targets; put the hub's listener on a private network instead).
    #[serde(default)]
    pub require_admin: bool,
}

/// One model's price, USD per million tokens.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}
