//! `[[tenants]]` and `[admin]`: API keys (SHA-256), allowed aliases and regions, limits,
//! content policy and cache opt-ins. A tenant key may not double as an admin key.

use std::collections::{BTreeMap, HashSet};

use super::HubConfig;
use crate::model::{Alias, Tenant};

/// Validates the admin keys and every tenant. Returns (tenants, admin key hashes).
pub(super) fn tenants(
    cfg: &HubConfig,
    aliases: &BTreeMap<String, Alias>,
    errs: &mut Vec<String>,
) -> (Vec<Tenant>, Vec<[u8; 32]>) {
    let mut admin_key_hashes = Vec::new();
    for (j, h) in cfg.admin.api_key_sha256.iter().enumerate() {
        let mut out = [0u8; 32];
        match hex::decode_to_slice(h.trim(), &mut out) {
            Ok(()) => admin_key_hashes.push(out),
            Err(_) => errs.push(format!(
                "admin.api_key_sha256[{j}]: not 64 hex digits (a SHA-256 of the key, e.g. `printf %s KEY | sha256sum`)"
            )),
        }
    }

    // tenants
    let mut tenants = Vec::new();
    let mut seen_hashes = HashSet::new();
    let admin_set: HashSet<[u8; 32]> = admin_key_hashes.iter().copied().collect();
    let mut tenant_names = HashSet::new();
    for (i, t) in cfg.tenants.iter().enumerate() {
        let base = format!("tenants[{i}]");
        if !tenant_names.insert(t.name.clone()) {
            errs.push(format!("{base}.name: duplicate tenant {:?}", t.name));
        }
        if t.api_key_sha256.is_empty() && cfg.jwt.is_none() {
            errs.push(format!("{base}.api_key_sha256: needs at least one hash"));
        }
        let mut key_hashes = Vec::new();
        for (j, h) in t.api_key_sha256.iter().enumerate() {
            let mut out = [0u8; 32];
            match hex::decode_to_slice(h.trim(), &mut out) {
                Ok(()) => {
                    if admin_set.contains(&out) {
                        errs.push(format!(
                            "{base}.api_key_sha256[{j}]: also an admin key; use separate keys"
                        ));
                    }
                    if !seen_hashes.insert(out) {
                        errs.push(format!(
                            "{base}.api_key_sha256[{j}]: the same key hash is configured twice"
                        ));
                    }
                    key_hashes.push(out);
                }
                Err(_) => errs.push(format!(
                    "{base}.api_key_sha256[{j}]: not 64 hex digits (a SHA-256 of the key, e.g. `printf %s KEY | sha256sum`)"
                )),
            }
        }
        let allowed = if t.aliases.iter().any(|a| a == "*") {
            None
        } else {
            for (j, a) in t.aliases.iter().enumerate() {
                if !aliases.contains_key(a) {
                    errs.push(format!("{base}.aliases[{j}]: unknown alias {a:?}"));
                }
            }
            Some(t.aliases.iter().cloned().collect())
        };
        for (from, to) in &t.alias_overrides {
            if !aliases.contains_key(to) {
                errs.push(format!(
                    "{base}.alias_overrides.{from}: unknown alias {to:?}"
                ));
            }
        }
        for (field, v) in [
            ("requests_per_minute", t.requests_per_minute),
            ("tokens_per_minute", t.tokens_per_minute),
        ] {
            if v == Some(0) {
                errs.push(format!(
                    "{base}.{field}: must be at least 1 (omit it for no limit)"
                ));
            }
        }
        for (field, v) in [
            ("usd_per_day", t.usd_per_day),
            ("usd_per_month", t.usd_per_month),
        ] {
            if v.is_some_and(|v| !v.is_finite() || v <= 0.0) {
                errs.push(format!("{base}.{field}: must be a positive amount of USD"));
            }
        }
        let policy = t.policy.build(&format!("{base}.policy"), errs);
        let cache_ttl = super::cache::opt_in_ttl(t.cache.as_ref(), &base, errs);
        tenants.push(Tenant {
            cache_ttl,
            policy: std::sync::Arc::new(policy),
            name: t.name.clone(),
            key_hashes,
            allowed,
            alias_overrides: t.alias_overrides.clone(),
            allowed_regions: t.allowed_regions.clone(),
            limits: switchyard_quota::Limits {
                requests_per_minute: t.requests_per_minute,
                tokens_per_minute: t.tokens_per_minute,
                usd_per_day: t.usd_per_day,
                usd_per_month: t.usd_per_month,
            },
        });
    }
    (tenants, admin_key_hashes)
}
