//! API keys from AWS Secrets Manager, cached and refreshed on an interval, so a rotated key is
//! used without a restart. A failed refresh keeps the last good value (logged and counted).
//! The value is never logged, formatted or returned in an error.

use crate::openai::ApiKey;
use parking_lot::RwLock;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The current value of a key, shared between its refresher and its users.
#[derive(Debug, Default)]
pub struct KeyCell {
    key: RwLock<Option<ApiKey>>,
    refreshes: AtomicU64,
    failures: AtomicU64,
}

impl KeyCell {
    pub fn new(initial: Option<ApiKey>) -> Arc<Self> {
        Arc::new(Self {
            key: RwLock::new(initial),
            ..Self::default()
        })
    }

    pub fn get(&self) -> Option<ApiKey> {
        self.key.read().clone()
    }

    pub fn set(&self, key: ApiKey) {
        *self.key.write() = Some(key);
        self.refreshes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn note_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// (successful loads, failed refreshes) since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.refreshes.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

/// Where a secret lives.
#[derive(Clone, Debug)]
pub struct SecretRef {
    /// Secret name or ARN.
    pub id: String,
    /// When the secret string is a JSON object: the field holding the key.
    pub field: Option<String>,
}

pub struct SecretsManagerKey {
    client: aws_sdk_secretsmanager::Client,
    secret: SecretRef,
    cell: Arc<KeyCell>,
}

impl SecretsManagerKey {
    pub async fn new(secret: SecretRef, region: &str, role_arn: Option<&str>) -> Self {
        let sdk = crate::aws::sdk_config(region, role_arn).await;
        Self {
            client: aws_sdk_secretsmanager::Client::new(&sdk),
            secret,
            cell: KeyCell::new(None),
        }
    }

    pub fn cell(&self) -> Arc<KeyCell> {
        self.cell.clone()
    }

    /// Fetches the current value once. Errors name the secret and the failure, never a value.
    pub async fn refresh(&self) -> Result<(), String> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret.id)
            .send()
            .await
            .map_err(|e| {
                use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
                let code = e.code().unwrap_or("unreachable").to_owned();
                format!("secret {:?}: {code}", self.secret.id)
            })?;
        let raw = out
            .secret_string()
            .ok_or_else(|| format!("secret {:?} has no string value", self.secret.id))?;
        let value = match &self.secret.field {
            None => raw.trim().to_owned(),
            Some(f) => serde_json::from_str::<serde_json::Value>(raw)
                .ok()
                .and_then(|v| v.get(f).and_then(|x| x.as_str()).map(str::to_owned))
                .ok_or_else(|| {
                    format!(
                        "secret {:?} is not a JSON object with a string field {f:?}",
                        self.secret.id
                    )
                })?,
        };
        if value.is_empty() {
            return Err(format!("secret {:?} is empty", self.secret.id));
        }
        self.cell.set(ApiKey::new(value));
        Ok(())
    }

    /// Refreshes every `every`, forever; a failure keeps the last good value.
    pub async fn refresh_loop(self, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            match self.refresh().await {
                Ok(()) => {
                    metrics::counter!("switchyard_secret_refreshes_total", "outcome" => "ok")
                        .increment(1);
                    tracing::debug!(secret = %self.secret.id, "secret refreshed");
                }
                Err(e) => {
                    self.cell.note_failure();
                    metrics::counter!("switchyard_secret_refreshes_total", "outcome" => "error")
                        .increment(1);
                    tracing::warn!("secret refresh failed, keeping the last good value: {e}");
                }
            }
        }
    }
}
