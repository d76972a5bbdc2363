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
use std::sync::Arc;
use std::time::SystemTime;

use switchyard_core::watch::{Change, sha256_hex};

use crate::config::{HubConfig, Settings};
use crate::live::Table;
use crate::state::Hub;

/// Top-level keys whose changes apply live (`providers` is compared per provider, without
/// `spokes`).
/// Top-level keys applied by a reload (`prices` are folded into the aliases' candidates).
const LIVE_KEYS: [&str; 5] = ["tenants", "aliases", "prompts", "providers", "prices"];

fn now_rfc3339() -> String {
    crate::observe::audit::rfc3339(SystemTime::now())
}

/// Starts watching `path` (the file the hub was started from): reloads on SIGHUP and when its
/// contents change, until the hub stops.
pub fn spawn(hub: &Arc<Hub>, path: PathBuf) {
    let text = std::fs::read(&path).unwrap_or_default();
    {
        let mut st = hub.live.status_mut();
        st.version = sha256_hex(&text);
        st.loaded_at = now_rfc3339();
    }
    *hub.live.active() = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| toml::from_str(t).ok());
    tokio::spawn(watch(hub.clone(), path, sha256_hex(&text)));
}

async fn watch(hub: Arc<Hub>, path: PathBuf, seen: String) {
    let stop = hub.stop.clone().cancelled_owned();
    switchyard_core::watch::watch_file(path, seen, stop, |change| match change {
        Change::Unreadable(e) => record_error(&hub, &e),
        Change::Text {
            text,
            hash,
            trigger,
        } => match reload(&hub, text, hash) {
            Ok(()) => {
                metrics::counter!("switchyard_config_reloads_total", "result" => "ok").increment(1);
                tracing::info!(version = %hash, trigger = trigger.as_str(), "config reloaded");
            }
            Err(e) => {
                metrics::counter!("switchyard_config_reloads_total", "result" => "rejected")
                    .increment(1);
                tracing::error!(
                    trigger = trigger.as_str(),
                    "config reload rejected; the old config stays: {e}"
                );
                record_error(&hub, &e);
            }
        },
    })
    .await;
}

fn record_error(hub: &Hub, e: &str) {
    hub.live.status_mut().last_reload_error = Some(e.to_string());
}

/// Parses and validates `text` completely, then swaps the live parts in at once. On error nothing
/// changes and the message lists every problem.
pub fn reload(hub: &Hub, text: &str, version: &str) -> Result<(), String> {
    let cfg = HubConfig::parse(text).map_err(|e| format!("parse error: {e}"))?;
    let settings = cfg.validate().map_err(|e| e.to_string())?;
    let raw: toml::Value = toml::from_str(text).map_err(|e| format!("parse error: {e}"))?;
    let (restart, changed_providers) = restart_only_changes(hub.live.active().as_ref(), &raw);
    if !restart.is_empty() {
        tracing::warn!(
            settings = ?restart,
            "config changes that need a restart were not applied (old values stay)"
        );
    }
    apply(hub, &settings, &changed_providers);
    *hub.live.active() = Some(raw);
    let mut st = hub.live.status_mut();
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
                if let crate::model::SpokeSource::Static(list) = &p.source
                    && !restart_providers.contains(&p.name)
                {
                    pool.set_members(list);
                }
                pools.insert(p.name.clone(), pool.clone());
            }
            None => {
                tracing::info!(provider = %p.name, "provider added");
                pools.insert(p.name.clone(), crate::outbound::start_pool(p, &hub.stop));
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
