//! The audit log (`[audit]`): one JSON line per client request (every surface), written by a
//! dedicated thread so the request path never waits on the file. The line itself is assembled by
//! [`crate::observe::RequestRecord`] when the request ends; its fields are listed in
//! docs/observability.md.

use crate::config::AuditConfig;
use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Value, json};

use crate::error::FailedAttempt;

/// Where audit lines go: a writer thread fed by a channel (the request path never blocks on
/// the file).
#[derive(Debug)]
pub struct AuditSink {
    tx: std::sync::mpsc::Sender<String>,
    pub capture_content: bool,
}

impl AuditSink {
    /// `None` when the audit log is disabled or the file cannot be opened (logged).
    pub fn open(cfg: &AuditConfig) -> Option<Arc<AuditSink>> {
        if !cfg.enabled {
            return None;
        }
        let out: Box<dyn Write + Send> = match &cfg.path {
            None => Box::new(std::io::stdout()),
            Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdout()),
            Some(p) => match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                Ok(f) => Box::new(f),
                Err(e) => {
                    tracing::error!(path = %p.display(), "audit log: cannot open ({e}); audit off");
                    return None;
                }
            },
        };
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let spawned = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(out);
                while let Ok(line) = rx.recv() {
                    let _ = writeln!(out, "{line}");
                    // Drain what is queued, then flush: a line is on disk before the writer idles.
                    while let Ok(line) = rx.try_recv() {
                        let _ = writeln!(out, "{line}");
                    }
                    let _ = out.flush();
                }
            });
        if let Err(e) = spawned {
            tracing::error!("audit log: cannot start writer ({e}); audit off");
            return None;
        }
        Some(Arc::new(AuditSink {
            tx,
            capture_content: cfg.capture_content,
        }))
    }

    /// Queues one line (never blocks; dropped if the writer is gone).
    pub fn write(&self, line: String) {
        let _ = self.tx.send(line);
    }
}

/// One attempt as it appears in the audit line.
#[derive(Debug, Clone, Serialize)]
pub struct AuditAttempt {
    pub pool: String,
    pub model: String,
    pub spoke: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The serving spoke's own attempts (region, model, outcome, latency), when it reported them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<Value>,
}

/// The spoke's `Attempt` list as audit JSON: `{region, model, outcome, latency_ms}`.
pub fn upstream_attempts(attempts: &[switchyard_proto::v1::Attempt]) -> Vec<Value> {
    attempts
        .iter()
        .map(|a| {
            let t = a.target.clone().unwrap_or_default();
            let outcome = switchyard_core::labels::Outcome::from_wire(a.outcome).as_str();
            json!({"region": t.region, "model": t.model, "outcome": outcome, "latency_ms": a.latency_ms})
        })
        .collect()
}

impl AuditAttempt {
    pub fn failed(a: &FailedAttempt) -> Self {
        Self {
            pool: a.provider.clone(),
            model: a.model.clone(),
            spoke: a.spoke.clone(),
            outcome: crate::observe::spans::failure_reason(&a.kind).to_string(),
            account: a.account.clone(),
            region: None,
            upstream: Vec::new(),
        }
    }
}

/// RFC 3339 UTC with milliseconds, without a date crate.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use std::time::UNIX_EPOCH;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
