//! JWT bearer tokens (Amazon Cognito or any OIDC provider) as an alternative to API keys:
//! RS256/ES256 signatures verified against a JWKS from a file or URL, with issuer, audience and
//! expiry checks, and one claim naming the tenant.
//!
//! The key set is cached; a token whose `kid` is not in the cache triggers one refresh (at most
//! one per `jwks_min_refresh`), so a rotated signing key is picked up without a restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// `[jwt]` in the hub config.
#[derive(Debug, Clone, Deserialize)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud` (one of the token's audiences).
    pub audience: String,
    /// JWKS document URL (e.g. Cognito's `https://cognito-idp.REGION.amazonaws.com/POOL/.well-known/jwks.json`).
    pub jwks_url: Option<String>,
    /// JWKS document file (read at start and on refresh).
    pub jwks_file: Option<PathBuf>,
    /// Claim whose string value is the tenant name (`[[tenants]] name`). Default `"tenant"`.
    #[serde(default = "default_claim")]
    pub tenant_claim: String,
    /// Accepted algorithms; default `["RS256", "ES256"]`.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp`/`nbf`. Default `"30s"`.
    #[serde(default = "default_leeway")]
    pub leeway: String,
    /// Least time between two refreshes caused by unknown `kid`s. Default `"10s"`.
    #[serde(default = "default_min_refresh")]
    pub jwks_min_refresh: String,
}

fn default_claim() -> String {
    "tenant".into()
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
fn default_leeway() -> String {
    "30s".into()
}
fn default_min_refresh() -> String {
    "10s".into()
}

#[derive(Debug, Clone)]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
}

/// Validated `[jwt]`.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub source: JwksSource,
    pub tenant_claim: String,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub min_refresh: Duration,
}

impl JwtConfig {
    pub fn validate(&self, errs: &mut Vec<String>) -> Option<JwtSettings> {
        let source = match (&self.jwks_url, &self.jwks_file) {
            (Some(u), None) if u.starts_with("https://") || u.starts_with("http://") => {
                Some(JwksSource::Url(u.clone()))
            }
            (Some(u), None) => {
                errs.push(format!("jwt.jwks_url: {u:?} is not an http(s) URL"));
                None
            }
            (None, Some(f)) => Some(JwksSource::File(f.clone())),
            _ => {
                errs.push("jwt: set exactly one of `jwks_url` and `jwks_file`".into());
                None
            }
        };
        let mut algorithms = Vec::new();
        for (i, a) in self.algorithms.iter().enumerate() {
            match a.as_str() {
                "RS256" => algorithms.push(Algorithm::RS256),
                "ES256" => algorithms.push(Algorithm::ES256),
                other => errs.push(format!(
                    "jwt.algorithms[{i}]: {other:?} is not RS256 or ES256"
                )),
            }
        }
        if algorithms.is_empty() {
            errs.push("jwt.algorithms: needs at least one of RS256, ES256".into());
        }
        for (name, v) in [
            ("issuer", &self.issuer),
            ("audience", &self.audience),
            ("tenant_claim", &self.tenant_claim),
        ] {
            if v.is_empty() {
                errs.push(format!("jwt.{name}: must not be empty"));
            }
        }
        let mut dur = |name: &str, v: &str| match humantime::parse_duration(v) {
            Ok(d) => d,
            Err(e) => {
                errs.push(format!("jwt.{name}: invalid duration {v:?}: {e}"));
                Duration::ZERO
            }
        };
        let leeway = dur("leeway", &self.leeway);
        let min_refresh = dur("jwks_min_refresh", &self.jwks_min_refresh);
        Some(JwtSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            source: source?,
            tenant_claim: self.tenant_claim.clone(),
            algorithms,
            leeway,
            min_refresh,
        })
    }
}

/// Why a token was refused (logged; the client only sees 401).
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("algorithm not accepted")]
    Algorithm,
    #[error("no key with this kid")]
    UnknownKid,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("tenant claim missing or not a string")]
    NoTenant,
}

/// Verifies tokens; shared by all requests.
#[derive(Debug)]
pub struct JwtVerifier {
    settings: JwtSettings,
    keys: ArcSwap<HashMap<String, DecodingKey>>,
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
    http: reqwest::Client,
}

impl JwtVerifier {
    /// Builds the verifier; a JWKS file is read now (a URL on first use).
    pub fn new(settings: JwtSettings) -> Arc<Self> {
        let v = Arc::new(Self {
            settings,
            keys: ArcSwap::from_pointee(HashMap::new()),
            last_refresh: tokio::sync::Mutex::new(None),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        });
        if let JwksSource::File(path) = &v.settings.source {
            match std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|b| parse_jwks(&b))
            {
                Ok(keys) => v.keys.store(Arc::new(keys)),
                Err(e) => tracing::warn!(path = %path.display(), "JWKS: {e}"),
            }
        }
        v
    }

    /// Verifies `token` and returns the tenant name from the configured claim.
    pub async fn verify(&self, token: &str) -> Result<String, JwtError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(JwtError::Algorithm);
        }
        let kid = header.kid.unwrap_or_default();
        let key = match self.keys.load().get(&kid).cloned() {
            Some(k) => k,
            None => {
                self.refresh().await;
                self.keys
                    .load()
                    .get(&kid)
                    .cloned()
                    .ok_or(JwtError::UnknownKid)?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| JwtError::Invalid(e.to_string()))?;
        data.claims
            .get(&self.settings.tenant_claim)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or(JwtError::NoTenant)
    }

    /// Reloads the key set, unless that happened less than `min_refresh` ago. Concurrent
    /// callers wait for one fetch instead of each fetching.
    async fn refresh(&self) {
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.settings.min_refresh) {
            return;
        }
        *last = Some(Instant::now());
        let loaded = match &self.settings.source {
            JwksSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| e.to_string())
                .and_then(|b| parse_jwks(&b)),
            JwksSource::Url(url) => match self.http.get(url).send().await {
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(b) => parse_jwks(&b),
                    Err(e) => Err(e.to_string()),
                },
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            },
        };
        match loaded {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "JWKS refreshed");
                self.keys.store(Arc::new(keys));
            }
            // The previous keys stay in use.
            Err(e) => tracing::warn!("JWKS refresh failed: {e}"),
        }
    }
}

/// The keys of a JWKS document by `kid` (keys without `kid` or of unusable types are skipped).
pub fn parse_jwks(bytes: &[u8]) -> Result<HashMap<String, DecodingKey>, String> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut out = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(k) => {
                out.insert(kid.clone(), k);
            }
            Err(e) => tracing::debug!(kid, "JWKS key skipped: {e}"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_problems_are_listed() {
        let cfg = JwtConfig {
            issuer: String::new(),
            audience: "a".into(),
            jwks_url: Some("ftp://x".into()),
            jwks_file: None,
            tenant_claim: "tenant".into(),
            algorithms: vec!["HS256".into()],
            leeway: "soon".into(),
            jwks_min_refresh: "1s".into(),
        };
        let mut errs = Vec::new();
        assert!(cfg.validate(&mut errs).is_none());
        let joined = errs.join("\n");
        for needle in [
            "jwt.jwks_url",
            "jwt.algorithms[0]",
            "jwt.issuer",
            "jwt.leeway",
        ] {
            assert!(joined.contains(needle), "{needle} in {joined}");
        }
    }

    #[test]
    fn jwks_parser_never_panics_and_skips_bad_keys() {
        assert!(parse_jwks(b"nope").is_err());
        let keys = parse_jwks(br#"{"keys":[{"kty":"EC","crv":"P-256","x":"!!","y":"??","kid":"a"},{"kty":"oct","k":"c2VjcmV0"}]}"#);
        assert!(keys.is_ok_and(|k| !k.contains_key("b")));
    }
}
