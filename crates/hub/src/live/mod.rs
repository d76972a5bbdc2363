//! The live routing table: tenants, aliases, pools and prompt templates, swapped whole on reload
//! ([`reload`]). A request takes ONE [`Snapshot`] when it starts and reads everything from it
//! (authentication, alias resolution, prompt templates, the pools it dispatches to), so a
//! reload landing mid-request never mixes two tables.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use serde::Serialize;

use subtle::ConstantTimeEq;

use crate::error::HubError;
use crate::model::{Alias, Tenant};
use crate::outbound::pool::ProviderPool;

/// Routing table: swapped whole (never half-applied).
#[derive(Debug)]
pub struct Table {
    pub tenants: Vec<Tenant>,
    pub aliases: BTreeMap<String, Alias>,
    pub pools: HashMap<String, Arc<ProviderPool>>,
    /// Prompt templates by name (`[[prompts]]`).
    pub prompts: BTreeMap<String, crate::templates::Prompt>,
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
    /// The status now (`GET /admin/config`).
    pub fn status(&self) -> Status {
        self.status.lock().clone()
    }

    /// The status, to update (reload).
    pub fn status_mut(&self) -> MutexGuard<'_, Status> {
        self.status.lock()
    }

    /// The active config file as TOML (reload tells live from restart-only changes with it).
    pub fn active(&self) -> MutexGuard<'_, Option<toml::Value>> {
        self.active.lock()
    }
}

/// One request's view of the live table, taken once when the request starts.
pub type Snapshot = Arc<Table>;

impl Table {
    /// The tenant owning `key`, comparing SHA-256 hashes in constant time.
    pub fn authenticate(&self, key: &str) -> Option<Tenant> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for t in &self.tenants {
            for h in &t.key_hashes {
                if bool::from(h.ct_eq(&digest)) && found.is_none() {
                    found = Some(t.clone());
                }
            }
        }
        found
    }

    /// The tenant named `name` (a verified JWT's tenant claim).
    pub fn tenant_named(&self, name: &str) -> Option<Tenant> {
        self.tenants.iter().find(|t| t.name == name).cloned()
    }

    /// Resolves the alias for a tenant: 404 unknown, 403 not allowed.
    pub fn resolve_alias(&self, tenant: &Tenant, model: &str) -> Result<Alias, HubError> {
        let Some(_) = self.aliases.get(model) else {
            return Err(HubError::ModelNotFound(model.to_string()));
        };
        if !tenant.may_use(model) {
            return Err(HubError::ModelNotAllowed(model.to_string()));
        }
        let target = tenant
            .alias_overrides
            .get(model)
            .map(String::as_str)
            .unwrap_or(model);
        self.aliases
            .get(target)
            .cloned()
            .ok_or_else(|| HubError::ModelNotFound(model.to_string()))
    }
}
