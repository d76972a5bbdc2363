//! Serving: plain HTTP or HTTPS (rustls), HTTP/1.1 and HTTP/2, graceful shutdown that lets
//! in-flight requests and streams finish.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use switchyard_tls::Reloading;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::app::router;
use crate::config::{Settings, TlsConfig};
use crate::state::Hub;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("accept: {0}")]
    Io(#[from] std::io::Error),
}

pub use crate::model::ConnLimits;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The HTTPS listener's rustls config (HTTP/2 and HTTP/1.1 ALPN), re-read from its files every
/// `reload_interval` so a renewed certificate is served without a restart.
pub fn tls_config(tls: &TlsConfig) -> Result<Reloading<rustls::ServerConfig>, ServeError> {
    Reloading::watch(
        switchyard_tls::ServerFiles {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            client_ca: None,
        },
        tls.reload_interval(),
    )
    .map_err(|e| ServeError::Tls(e.to_string()))
}

/// Starts the hub from validated settings: binds, logs `listening on ADDR`, serves until
/// `shutdown` resolves, then drains for at most `drain_timeout`. With `config_path` (the file
/// the settings came from), the routing table reloads from it on SIGHUP and when it changes.
pub async fn run(
    settings: Settings,
    config_path: Option<std::path::PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let tls = settings.tls.as_ref().map(tls_config).transpose()?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    let drain = settings.drain_timeout;
    let limits = settings.conn_limits;
    switchyard_core::prom::start();
    let quota = settings.quota.build().await;
    let hub = Hub::start_with_quota(settings, quota);
    if let Some(path) = config_path {
        crate::reload::spawn(&hub, path);
    }
    tracing::info!(
        scheme = if tls.is_some() { "https" } else { "http" },
        "listening on {addr}"
    );
    let result = serve_with(listener, router(hub.clone()), tls, shutdown, drain, limits).await;
    hub.stop.cancel();
    // The audit lines still buffered are written by the binary once its runtime has shut
    // down (`observe::audit::close_all`), so requests the drain cut off are audited too.
    result
}

/// Accept loop shared by HTTP and HTTPS. After `shutdown`, stops accepting, asks every connection
/// to close once its requests (streams included) are done, and waits up to `drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Reloading<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Result<(), ServeError> {
    serve_with(listener, app, tls, shutdown, drain, ConnLimits::default()).await
}

/// [`serve`] with explicit per-connection limits.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    tls: Option<Reloading<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    limits: ConnLimits,
) -> Result<(), ServeError> {
    // Per connection, the current config: a rotated certificate applies to new connections.
    let acceptor = tls;
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let watcher = graceful.watcher();
        match acceptor.as_ref().map(|t| TlsAcceptor::from(t.current())) {
            None => {
                tokio::spawn(async move {
                    match first_bytes(&stream, limits.header_read_timeout).await {
                        Some(h2) => serve_conn(stream, app, watcher, peer, limits, h2).await,
                        None => tracing::debug!(%peer, "client sent no request in time; closing"),
                    }
                });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let handshake = limits.header_read_timeout.min(Duration::from_secs(10));
                    match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            // ALPN decides the protocol, so no open-ended sniffing of the preface.
                            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                            serve_conn(tls, app, watcher, peer, limits, h2).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "shutting down: draining in-flight requests"
    );
    match tokio::time::timeout(drain, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained"),
        Err(_) => tracing::warn!("drain timeout passed; closing remaining connections"),
    }
    Ok(())
}

/// Waits (at most `limit`) until a new plain-text connection has sent enough to tell an HTTP/1
/// request from the HTTP/2 preface: `Some(true)` for the HTTP/2 preface, `Some(false)` for
/// anything else (HTTP/1), `None` when it stayed silent, closed, or stalled in the preface.
async fn first_bytes(stream: &TcpStream, limit: Duration) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 24];
    loop {
        match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                if buf[..n] != H2_PREFACE[..n] {
                    return Some(false);
                }
                if n == H2_PREFACE.len() {
                    return Some(true);
                }
                // A partial HTTP/2 preface: wait for the rest (peek does not consume).
                tokio::time::sleep(Duration::from_millis(10)).await;
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
            }
            Ok(_) | Err(_) => return None,
        }
    }
}

async fn serve_conn<I>(
    io: I,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
    peer: SocketAddr,
    limits: ConnLimits,
    h2: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(app);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        // Pings find dead peers that would otherwise hold an HTTP/2 connection forever.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    // The protocol is known (the peeked preface, or ALPN), so hyper-util serves it without
    // reading the first bytes again to sniff it (`serve_connection` with one protocol; no route
    // upgrades the connection). Sniffing put those bytes at the front of hyper's HTTP/1.1 read
    // buffer, which then grew from 8 to 16 KiB on every connection.
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Completes on SIGTERM or Ctrl-C (the one copy both tiers use).
pub use switchyard_core::shutdown::signal as shutdown_signal;
