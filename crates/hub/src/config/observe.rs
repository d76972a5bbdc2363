//! `[audit]` and `[metrics]`: where audit lines go and who may read `/metrics`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[audit]`: one JSON line per request.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
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
    /// How long a batch of lines gathers before the writer writes and flushes it (default
    /// `"100ms"`; 1ms to 10s): the most a line waits in memory. A batch past 64 KiB is written
    /// sooner; every line left is written on shutdown.
    #[serde(default = "default_flush_interval")]
    pub flush_interval: String,
    /// The most bytes of lines held in memory waiting for the writer (default 8 MiB, at least
    /// 64 KiB). A line that would go past it is dropped and counted in
    /// `switchyard_audit_lines_dropped_total`.
    #[serde(default = "default_max_buffer_bytes")]
    pub max_buffer_bytes: usize,
}

impl AuditConfig {
    /// `flush_interval` as a duration (the default when it does not parse: `validate` refuses
    /// such a config first).
    pub fn flush_interval(&self) -> Duration {
        humantime::parse_duration(&self.flush_interval).unwrap_or(DEFAULT_FLUSH_INTERVAL)
    }

    /// Problems with the batching settings, as `audit.<key>: …` lines.
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        match humantime::parse_duration(&self.flush_interval) {
            Err(e) => errs.push(format!(
                "audit.flush_interval: invalid duration {:?}: {e}",
                self.flush_interval
            )),
            Ok(d) if d < Duration::from_millis(1) || d > Duration::from_secs(10) => {
                errs.push("audit.flush_interval: must be between 1ms and 10s".into());
            }
            Ok(_) => {}
        }
        if self.max_buffer_bytes < 64 * 1024 {
            errs.push("audit.max_buffer_bytes: must be at least 65536".into());
        }
        errs
    }
}

const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

fn default_flush_interval() -> String {
    "100ms".into()
}

fn default_max_buffer_bytes() -> usize {
    8 * 1024 * 1024
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            capture_content: false,
            flush_interval: default_flush_interval(),
            max_buffer_bytes: default_max_buffer_bytes(),
        }
    }
}

fn yes() -> bool {
    true
}

/// `[metrics]`: who may read `GET /metrics`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Require the admin key (`[admin]`) on `/metrics` (default false: open, like most
    /// Prometheus targets; put the hub's listener on a private network instead).
    #[serde(default)]
    pub require_admin: bool,
}

/// One model's price, USD per million tokens.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}
