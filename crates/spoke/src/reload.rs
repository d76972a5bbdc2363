//! Live configuration for the spoke: on SIGHUP and when the config file's contents change (polled
//! once a second by SHA-256), the file is parsed and validated completely and the models, their
//! region chains and quotas are swapped into the engine at once (routes that still exist keep
//! their breaker and cool-down state). An invalid file is rejected with every problem logged and
//! reported by `GET /admin/config`; the old config keeps serving.
//!
//! Everything else (listen address, account, provider and credentials, `[[regions]]` endpoints,
//! timeouts, backoff, breaker, denial, quota store) needs a restart: a change is logged, listed in
//! `restart_required`, and the old value stays. A reload whose models use a region the running
//! spoke does not have is rejected.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde::Serialize;
use sha2::Digest;
use subtle::ConstantTimeEq;
use switchyard_core::watch::{Change, sha256_hex};

use crate::config::SpokeConfig;
use crate::engine::Engine;

/// Header an admin client may use instead of `Authorization: Bearer`.
pub const ADMIN_KEY_HEADER: &str = "x-admin-key";

static CONFIG_PATH: OnceLock<PathBuf> = OnceLock::new();

/// Makes the spoke started in this process watch `path` (called by the `spoke` binary).
pub fn watch_file(path: PathBuf) {
    let _ = CONFIG_PATH.set(path);
}

/// What `GET /admin/config` reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub version: String,
    pub loaded_at: String,
    pub last_reload_error: Option<String>,
    pub reloads: u64,
    pub restart_required: Vec<String>,
}

/// Reload state of one spoke.
pub struct Live {
    engine: Arc<Engine>,
    status: Mutex<Status>,
    /// The active file (TOML) and settings.
    active: Mutex<(toml::Value, SpokeConfig)>,
    admin_key_hashes: Vec<[u8; 32]>,
}

fn now_rfc3339() -> String {
    humantime_rfc3339(SystemTime::now())
}

/// RFC 3339 (UTC, seconds) without another dependency.
fn humantime_rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant), days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Sets up live reload for a running spoke: returns the `/admin/config` router and, when the
/// binary asked for it ([`watch_file`]), starts watching the file.
pub fn start(engine: Arc<Engine>, config: &SpokeConfig) -> Router {
    let path = CONFIG_PATH.get().cloned();
    let text = path
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .unwrap_or_default();
    let raw = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| toml::from_str(t).ok())
        .unwrap_or(toml::Value::Table(Default::default()));
    let live = Arc::new(Live {
        engine,
        status: Mutex::new(Status {
            version: sha256_hex(&text),
            loaded_at: now_rfc3339(),
            ..Status::default()
        }),
        active: Mutex::new((raw, config.clone())),
        admin_key_hashes: config.admin_key_hashes.clone(),
    });
    if let Some(path) = path {
        tokio::spawn(watch(live.clone(), path, sha256_hex(&text)));
    }
    Router::new()
        .route("/admin/config", axum::routing::get(config_handler))
        .with_state(live)
}

async fn config_handler(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    if live.admin_key_hashes.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": {"message": "not found", "code": "not_found"}})),
        )
            .into_response();
    }
    let key = headers
        .get(ADMIN_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                // The scheme in any letter case, one or more spaces (RFC 9110 §11.1).
                .and_then(|v| v.trim_start().split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, key)| key)
        })
        .map(str::trim);
    let ok = key.is_some_and(|k| {
        let digest: [u8; 32] = sha2::Sha256::digest(k.as_bytes()).into();
        let mut ok = false;
        for h in &live.admin_key_hashes {
            ok |= bool::from(h.ct_eq(&digest));
        }
        ok
    });
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": {"message": "admin key required", "code": "unauthorized"}})),
        )
            .into_response();
    }
    axum::Json(live.status.lock().clone()).into_response()
}

async fn watch(live: Arc<Live>, path: PathBuf, seen: String) {
    let stop = std::future::pending::<()>();
    switchyard_core::watch::watch_file(path, seen, stop, |change| match change {
        Change::Unreadable(e) => live.status.lock().last_reload_error = Some(e),
        Change::Text {
            text,
            hash,
            trigger,
        } => match live.reload(text, hash) {
            Ok(()) => {
                tracing::info!(version = %hash, trigger = trigger.as_str(), "config reloaded")
            }
            Err(e) => {
                tracing::error!(
                    trigger = trigger.as_str(),
                    "config reload rejected; the old config stays: {e}"
                );
                live.status.lock().last_reload_error = Some(e);
            }
        },
    })
    .await;
}

impl Live {
    /// Validates `text` completely, then swaps the models, region chains and quotas in.
    pub fn reload(&self, text: &str, version: &str) -> Result<(), String> {
        let new = crate::config::parse(text).map_err(|e| e.to_string())?;
        let raw: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut active = self.active.lock();
        let known: BTreeSet<&str> = active.1.regions.iter().map(|r| r.name.as_str()).collect();
        let mut problems = Vec::new();
        for (i, m) in new.models.iter().enumerate() {
            for r in &m.regions {
                if !known.contains(r.as_str()) {
                    problems.push(format!(
                        "models[{i}].regions: region {r:?} is not one the running spoke has; adding a region needs a restart"
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(format!("invalid config:\n  {}", problems.join("\n  ")));
        }
        let restart = restart_only_changes(&active.0, &raw);
        if !restart.is_empty() {
            tracing::warn!(settings = ?restart, "config changes that need a restart were not applied (old values stay)");
        }
        // Restart-only settings (account, breaker policy, …) keep their running values.
        let mut kept = active.1.clone();
        kept.models = new.models;
        self.engine.reload_routes(&kept);
        *active = (raw, kept);
        let mut st = self.status.lock();
        st.version = version.to_string();
        st.loaded_at = now_rfc3339();
        st.last_reload_error = None;
        st.reloads += 1;
        st.restart_required = restart;
        Ok(())
    }
}

/// Top-level keys other than `models` that changed.
fn restart_only_changes(old: &toml::Value, new: &toml::Value) -> Vec<String> {
    let empty = toml::map::Map::new();
    let old = old.as_table().unwrap_or(&empty);
    let new = new.as_table().unwrap_or(&empty);
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| k.as_str() != "models" && old.get(*k) != new.get(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_and_restart_detection() {
        assert_eq!(
            humantime_rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
        let a: toml::Value = toml::from_str("listen = \"a\"\n[[models]]\nid = \"x\"\n").unwrap();
        let b: toml::Value = toml::from_str("listen = \"b\"\n[[models]]\nid = \"y\"\n").unwrap();
        assert_eq!(restart_only_changes(&a, &b), vec!["listen".to_string()]);
    }
}
