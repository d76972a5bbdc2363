//! Live configuration: the hub re-reads its config file on SIGHUP and when the file's contents
//! change (polled once a second by SHA-256). The new file is parsed and validated completely, then
//! the routing table (tenants and keys, aliases and candidates with weights and prices, quotas,
//! content policies, cache opt-ins, prompt templates, spoke lists and weights) is swapped
//! atomically: a request sees the old table or the new one, never a mix. An invalid file is
//! rejected with every problem logged and reported by `GET /admin/config`; the old config keeps
//! serving.
//!
//! Settings that need a restart (listen address, TLS, JWT, quota and cache stores, timeouts and
//! limits, admin keys, a provider's health/DNS/connection settings) are detected, logged as a
//! warning, listed in `restart_required`, and keep their old value.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use crate::config::{HubConfig, Provider, Settings, SpokeSource};
use crate::hub::{Hub, Table};
use crate::pool::ProviderPool;

/// Top-level keys whose changes apply live (`providers` is compared per provider, without
/// `spokes`).
/// Top-level keys applied by a reload (`prices` are folded into the aliases' candidates).
const LIVE_KEYS: [&str; 5] = ["tenants", "aliases", "prompts", "providers", "prices"];

static CONFIG_PATH: OnceLock<PathBuf> = OnceLock::new();

/// Makes hubs started in this process watch `path` (called by the `hub` binary).
pub fn watch_file(path: PathBuf) {
    let _ = CONFIG_PATH.set(path);
}

/// What `GET /admin/config` reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// SHA-256 (hex) of the active config file.
    pub version: String,
    /// When the active config was loaded (RFC 3339, UTC).
    pub loaded_at: String,
    /// The last failed reload's problems, until a reload succeeds.
    pub last_reload_error: Option<String>,
    /// Successful reloads since start.
    pub reloads: u64,
    /// Changed settings that only take effect after a restart (old values in force).
    pub restart_required: Vec<String>,
}

/// The live-config state of a hub.
#[derive(Debug, Default)]
pub struct Live {
    status: Mutex<Status>,
    /// The active file as TOML, to tell live changes from restart-only ones.
    active: Mutex<Option<toml::Value>>,
}

impl Live {
    pub fn status(&self) -> Status {
        self.status.lock().clone()
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A provider's pool, started like at boot: static members with health loops, or a DNS watcher.
pub fn new_pool(p: &Provider, stop: &CancellationToken) -> Arc<ProviderPool> {
    let tls = match p.tls.as_ref().map(crate::pool::PoolTls::start).transpose() {
        Ok(t) => t,
        Err(e) => {
            // validate() loaded these files already; they changed since. Never fall back to
            // plain text: the pool stays empty and its aliases fail over.
            tracing::error!(provider = %p.name, error = %e, "spoke TLS files do not load; pool disabled");
            return Arc::new(ProviderPool::new(
                &p.name,
                p.health,
                p.connect_timeout,
                stop.child_token(),
            ));
        }
    };
    let pool = Arc::new(
        ProviderPool::new(&p.name, p.health, p.connect_timeout, stop.child_token())
            .with_tls(tls)
            .with_connections(p.connections),
    );
    match &p.source {
        SpokeSource::Static(list) => pool.set_members(list),
        SpokeSource::Dns(dns) => {
            tokio::spawn(crate::dns::watch(
                pool.clone(),
                dns.clone(),
                stop.child_token(),
            ));
        }
    }
    pool
}

/// Starts the watcher when the binary asked for one ([`watch_file`]).
pub fn spawn(hub: &Arc<Hub>) {
    let Some(path) = CONFIG_PATH.get() else {
        return;
    };
    let text = std::fs::read(path).unwrap_or_default();
    {
        let mut st = hub.live.status.lock();
        st.version = sha256_hex(&text);
        st.loaded_at = now_rfc3339();
    }
    *hub.live.active.lock() = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| toml::from_str(t).ok());
    tokio::spawn(watch(hub.clone(), path.clone(), sha256_hex(&text)));
}

async fn watch(hub: Arc<Hub>, path: PathBuf, mut seen: String) {
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP: {e}");
            None
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let forced = tokio::select! {
            () = hub.stop.cancelled() => return,
            _ = tick.tick() => false,
            () = hangup => true,
        };
        let text = match tokio::fs::read(&path).await {
            Ok(t) => t,
            Err(e) => {
                if forced {
                    record_error(&hub, &format!("cannot read {}: {e}", path.display()));
                }
                continue;
            }
        };
        let hash = sha256_hex(&text);
        if !forced && hash == seen {
            continue;
        }
        seen = hash.clone();
        let why = if forced { "SIGHUP" } else { "file changed" };
        let text = String::from_utf8_lossy(&text);
        match reload(&hub, &text, &hash) {
            Ok(()) => {
                metrics::counter!("switchyard_config_reloads_total", "result" => "ok").increment(1);
                tracing::info!(version = %hash, trigger = why, "config reloaded");
            }
            Err(e) => {
                metrics::counter!("switchyard_config_reloads_total", "result" => "rejected")
                    .increment(1);
                tracing::error!(
                    trigger = why,
                    "config reload rejected; the old config stays: {e}"
                );
                record_error(&hub, &e);
            }
        }
    }
}

fn record_error(hub: &Hub, e: &str) {
    hub.live.status.lock().last_reload_error = Some(e.to_string());
}

/// Parses and validates `text` completely, then swaps the live parts in at once. On error nothing
/// changes and the message lists every problem.
pub fn reload(hub: &Hub, text: &str, version: &str) -> Result<(), String> {
    let cfg = HubConfig::parse(text).map_err(|e| format!("parse error: {e}"))?;
    let settings = cfg.validate().map_err(|e| e.to_string())?;
    let raw: toml::Value = toml::from_str(text).map_err(|e| format!("parse error: {e}"))?;
    let (restart, changed_providers) = restart_only_changes(hub.live.active.lock().as_ref(), &raw);
    if !restart.is_empty() {
        tracing::warn!(
            settings = ?restart,
            "config changes that need a restart were not applied (old values stay)"
        );
    }
    apply(hub, &settings, &changed_providers);
    *hub.live.active.lock() = Some(raw);
    let mut st = hub.live.status.lock();
    st.version = version.to_string();
    st.loaded_at = now_rfc3339();
    st.last_reload_error = None;
    st.reloads += 1;
    st.restart_required = restart;
    Ok(())
}

fn table_of(v: Option<&toml::Value>) -> toml::map::Map<String, toml::Value> {
    v.and_then(toml::Value::as_table)
        .cloned()
        .unwrap_or_default()
}

/// Providers by name, without their (live) `spokes` list.
fn providers_of(v: &toml::map::Map<String, toml::Value>) -> HashMap<String, toml::Value> {
    let mut out = HashMap::new();
    for p in v
        .get("providers")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut p = p.as_table().cloned().unwrap_or_default();
        p.remove("spokes");
        let name = p
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_string();
        out.insert(name, toml::Value::Table(p));
    }
    out
}

/// Changed settings that only a restart applies, and the providers among them.
fn restart_only_changes(
    old: Option<&toml::Value>,
    new: &toml::Value,
) -> (Vec<String>, BTreeSet<String>) {
    // No record of the active file (a hub started in-process): nothing to compare with.
    if old.is_none() {
        return (Vec::new(), BTreeSet::new());
    }
    let (old, new) = (table_of(old), table_of(Some(new)));
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        if !LIVE_KEYS.contains(&k.as_str()) && old.get(k) != new.get(k) {
            out.push(k.clone());
        }
    }
    let (po, pn) = (providers_of(&old), providers_of(&new));
    let mut changed = BTreeSet::new();
    for (name, p) in &pn {
        if po.get(name).is_some_and(|o| o != p) {
            out.push(format!("providers.{name} (settings other than `spokes`)"));
            changed.insert(name.clone());
        }
    }
    (out, changed)
}

/// Swaps in the new table. Pools of unchanged providers are kept (their spokes' channels and
/// health state too: `set_members` only adds and removes the addresses that changed and updates
/// weights); new providers get a pool, removed ones are stopped.
fn apply(hub: &Hub, settings: &Settings, restart_providers: &BTreeSet<String>) {
    let old = hub.table.load_full();
    let mut pools = HashMap::new();
    for p in &settings.providers {
        match old.pools.get(&p.name) {
            Some(pool) => {
                if let SpokeSource::Static(list) = &p.source
                    && !restart_providers.contains(&p.name)
                {
                    pool.set_members(list);
                }
                pools.insert(p.name.clone(), pool.clone());
            }
            None => {
                tracing::info!(provider = %p.name, "provider added");
                pools.insert(p.name.clone(), new_pool(p, &hub.stop));
            }
        }
    }
    for (name, pool) in &old.pools {
        if !pools.contains_key(name) {
            tracing::info!(provider = %name, "provider removed");
            pool.shutdown();
        }
    }
    hub.table.store(Arc::new(Table {
        tenants: settings.tenants.clone(),
        aliases: settings.aliases.clone(),
        pools,
        prompts: settings.prompts.clone(),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_live_changes_from_restart_only_ones() {
        let old: toml::Value = toml::from_str(
            r#"
listen = "127.0.0.1:1"
[[tenants]]
name = "a"
[[providers]]
name = "p"
spokes = [{ addr = "127.0.0.1:1" }]
health = { interval = "1s" }
"#,
        )
        .unwrap();
        let new: toml::Value = toml::from_str(
            r#"
listen = "127.0.0.1:2"
[prices.m1]
input = 1.0
output = 2.0
[[tenants]]
name = "b"
[[providers]]
name = "p"
spokes = [{ addr = "127.0.0.1:9", weight = 5 }]
health = { interval = "1s" }
"#,
        )
        .unwrap();
        let (restart, changed) = restart_only_changes(Some(&old), &new);
        assert_eq!(restart, vec!["listen".to_string()]);
        assert!(changed.is_empty());
        let newer: toml::Value = toml::from_str(
            "listen = \"127.0.0.1:1\"\n[[providers]]\nname = \"p\"\nhealth = { interval = \"5s\" }\n",
        )
        .unwrap();
        let (restart, changed) = restart_only_changes(Some(&old), &newer);
        assert_eq!(restart.len(), 1, "{restart:?}");
        assert!(changed.contains("p"));
    }
}
