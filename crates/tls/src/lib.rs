//! TLS for both tiers, built on rustls (aws-lc-rs provider): server configs (the hub's HTTPS
//! listener, the spoke's gRPC/HTTP listener, optionally requiring client certificates from a
//! configured CA) and client configs (the hub's connections to spokes, optionally presenting a
//! client certificate).
//!
//! Certificates rotate without a restart: [`Reloading`] holds the current config behind an
//! `ArcSwap` and a background task re-reads the PEM files every `interval`. When their contents
//! change it builds a new config and swaps it in; new connections use it, established ones keep
//! the one they were made with. A file that fails to load (half-written, wrong key) is logged
//! and the previous config stays in force, so a botched rotation never takes a listener down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;

/// How often the PEM files are re-read when nothing else is said.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Config(String),
}

fn file_err(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// PEM files of a listener: its certificate chain and key, and, for mutual TLS, the CA whose
/// client certificates it accepts (every other client is refused during the handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// PEM files of a client: the CA it trusts for the server (None = the system's web PKI roots
/// are not used; a CA is required), and optionally its own certificate and key for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFiles {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Something built from files that can be rebuilt when they change.
pub trait Source: Send + Sync + 'static {
    type Output: Send + Sync + 'static;
    fn paths(&self) -> Vec<&Path>;
    fn build(&self) -> Result<Self::Output, TlsError>;
}

impl Source for ServerFiles {
    type Output = rustls::ServerConfig;
    fn paths(&self) -> Vec<&Path> {
        let mut p = vec![self.cert.as_path(), self.key.as_path()];
        p.extend(self.client_ca.as_deref());
        p
    }
    fn build(&self) -> Result<rustls::ServerConfig, TlsError> {
        server_config(self)
    }
}

impl Source for ClientFiles {
    type Output = rustls::ClientConfig;
    fn paths(&self) -> Vec<&Path> {
        let mut p = vec![self.ca.as_path()];
        p.extend(self.cert.as_deref());
        p.extend(self.key.as_deref());
        p
    }
    fn build(&self) -> Result<rustls::ClientConfig, TlsError> {
        client_config(self)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a PEM certificate chain (at least one certificate).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate in file"));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, e))
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| file_err(path, e))?;
    }
    Ok(roots)
}

/// A server config from files: ALPN h2 then http/1.1; client certificates required (and
/// verified against `client_ca`) when `client_ca` is set.
pub fn server_config(files: &ServerFiles) -> Result<rustls::ServerConfig, TlsError> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| file_err(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| file_err(&files.key, format!("does not match the certificate: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A client config from files: trusts only `ca`, offers ALPN h2, and presents `cert`/`key`
/// when both are set.
pub fn client_config(files: &ClientFiles) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(&files.ca)?);
    let mut cfg = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| file_err(key, format!("does not match the certificate: {e}")))?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(TlsError::Config(
                "a client certificate needs both `cert` and `key`".into(),
            ));
        }
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// A config that follows its files. Cheap to clone; [`Reloading::current`] is what a new
/// connection should use.
pub struct Reloading<T> {
    current: Arc<ArcSwap<T>>,
}

impl<T> Clone for Reloading<T> {
    fn clone(&self) -> Self {
        Self {
            current: self.current.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reloading(..)")
    }
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// A config that never changes (tests, or a caller that built its own).
    pub fn fixed(config: Arc<T>) -> Self {
        Self {
            current: Arc::new(ArcSwap::new(config)),
        }
    }

    /// The config new connections should use.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Builds the config from `source` (an error here is fatal to the caller: there is no good
    /// config yet) and, inside a Tokio runtime, starts re-reading the files every `interval`.
    /// The task ends when the last clone of the returned value is dropped.
    pub fn watch<S: Source<Output = T>>(source: S, interval: Duration) -> Result<Self, TlsError> {
        let fingerprint = fingerprint(&source.paths());
        let current = Arc::new(ArcSwap::new(Arc::new(source.build()?)));
        let weak = Arc::downgrade(&current);
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(reload_loop(source, weak, fingerprint, interval));
        }
        Ok(Self { current })
    }
}

/// SHA-256 over the files' contents (unreadable files count as empty, so their return counts
/// as a change).
fn fingerprint(paths: &[&Path]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for p in paths {
        let bytes = std::fs::read(p).unwrap_or_default();
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    h.finalize().into()
}

async fn reload_loop<S: Source>(
    source: S,
    target: Weak<ArcSwap<S::Output>>,
    mut seen: [u8; 32],
    interval: Duration,
) {
    let names: Vec<String> = source
        .paths()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    loop {
        tokio::time::sleep(interval).await;
        let Some(target) = target.upgrade() else {
            return;
        };
        let now = fingerprint(&source.paths());
        if now == seen {
            continue;
        }
        // A rotation that writes the certificate, then the key, fails to load in between; the
        // key's arrival is another change, and that set loads.
        seen = now;
        match source.build() {
            Ok(cfg) => {
                target.store(Arc::new(cfg));
                tracing::info!(files = ?names, "TLS certificates reloaded");
            }
            Err(e) => {
                tracing::warn!(files = ?names, error = %e, "TLS certificates changed but do not load; keeping the previous ones");
            }
        }
    }
}

#[cfg(test)]
mod tests;
