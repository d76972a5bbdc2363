//! Wiring: build the upstream and engine from config, serve HTTP + gRPC on one port, and shut
//! down gracefully.

use crate::config::{ApiKeyConfig, ConnectionAge, ProviderConfig, SpokeConfig};
use crate::engine::Engine;
use crate::grpc::SpokeService;
use axum::Router;
use axum::routing::{get, post};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchyard_proto::v1::spoke_server::SpokeServer;
use switchyard_providers::Upstream;
use switchyard_providers::bedrock::{BedrockRegion, BedrockUpstream};
use switchyard_providers::openai::{ApiKey, KeySource, OpenAiUpstream};
use switchyard_providers::secrets::{SecretRef, SecretsManagerKey};
use switchyard_providers::simulated::SimulatedUpstream;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("API key: {0}")]
    ApiKey(String),
    #[error("upstream client: {0}")]
    Upstream(String),
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
}

/// Builds the configured upstream adapter.
pub async fn build_upstream(config: &SpokeConfig) -> Result<Arc<dyn Upstream>, StartError> {
    Ok(match &config.provider {
        ProviderConfig::Simulated(s) => Arc::new(SimulatedUpstream::new(s.clone())),
        ProviderConfig::Bedrock { guardrail } => {
            let regions: Vec<BedrockRegion> = config
                .regions
                .iter()
                .map(|r| BedrockRegion {
                    name: r.name.clone(),
                    endpoint: r.endpoint.clone(),
                })
                .collect();
            Arc::new(
                BedrockUpstream::new(&regions, config.aws.role_arn.as_deref())
                    .await
                    .with_guardrail(guardrail.clone()),
            )
        }
        ProviderConfig::OpenAi { api_key } => {
            let key = key_source(config, api_key).await?;
            let endpoints = config
                .regions
                .iter()
                .filter_map(|r| r.endpoint.clone().map(|e| (r.name.clone(), e)))
                .collect();
            Arc::new(
                OpenAiUpstream::new(endpoints, key)
                    .map_err(|e| StartError::Upstream(e.to_string()))?,
            )
        }
        ProviderConfig::Anthropic { api_key } => {
            let key = key_source(config, api_key).await?;
            let endpoints = config
                .regions
                .iter()
                .map(|r| {
                    let base = r.endpoint.clone().unwrap_or_else(|| {
                        switchyard_providers::anthropic::DEFAULT_ENDPOINT.to_owned()
                    });
                    (r.name.clone(), base)
                })
                .collect();
            Arc::new(
                switchyard_providers::anthropic::AnthropicUpstream::new(endpoints, key)
                    .map_err(|e| StartError::Upstream(e.to_string()))?,
            )
        }
    })
}

/// The API key of an OpenAI-compatible or Anthropic upstream, from where the config says.
async fn key_source(config: &SpokeConfig, api_key: &ApiKeyConfig) -> Result<KeySource, StartError> {
    Ok(match api_key {
        ApiKeyConfig::None => KeySource::None,
        ApiKeyConfig::Env(var) => {
            KeySource::Static(ApiKey::new(std::env::var(var).map_err(|_| {
                StartError::ApiKey(format!("environment variable {var} is not set"))
            })?))
        }
        ApiKeyConfig::File(path) => KeySource::Static(ApiKey::new(
            std::fs::read_to_string(path)
                .map_err(|e| StartError::ApiKey(format!("cannot read {}: {e}", path.display())))?
                .trim()
                .to_owned(),
        )),
        ApiKeyConfig::Secret { id, field, refresh } => {
            let region = config
                .aws
                .secrets_region
                .clone()
                .or_else(|| config.regions.first().map(|r| r.name.clone()))
                .unwrap_or_else(|| "us-east-1".into());
            let source = SecretsManagerKey::new(
                SecretRef {
                    id: id.clone(),
                    field: field.clone(),
                },
                &region,
                config.aws.role_arn.as_deref(),
            )
            .await;
            // A failed first load is not fatal: the spoke reports itself not serving
            // (credentials missing) and the refresher keeps trying.
            if let Err(e) = source.refresh().await {
                tracing::warn!("API key secret not loaded at start: {e}");
            }
            let cell = source.cell();
            let every = *refresh;
            tokio::spawn(source.refresh_loop(every));
            KeySource::Refreshed(cell)
        }
    })
}

/// The whole HTTP + gRPC app for an engine, plus the gRPC health reporter.
pub fn router(engine: Arc<Engine>) -> (Router, tonic_health::server::HealthReporter) {
    let (reporter, health) = tonic_health::server::health_reporter();
    let grpc = tonic::service::Routes::new(SpokeServer::new(SpokeService::new(engine.clone())))
        .add_service(health)
        .into_axum_router();
    let http = Router::new()
        .route("/healthz", get(crate::http::healthz_handler))
        .route("/inference", post(crate::http::inference_handler))
        .route("/metrics", get(crate::http::metrics_handler))
        .with_state(engine);
    (http.merge(grpc), reporter)
}

/// Keeps `grpc.health.v1` in step with the engine: SERVING while at least one route can
/// serve and the spoke is not draining.
async fn report_health(engine: Arc<Engine>, reporter: tonic_health::server::HealthReporter) {
    let mut last = None;
    loop {
        let serving = engine.describe().await.serving;
        if last != Some(serving) {
            let status = if serving {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter
                .set_service_status("switchyard.v1.Spoke", status)
                .await;
            last = Some(serving);
        }
        // describe() asks the quota store about every limited route (a Redis round trip each
        // when shared); once a second matches the fastest health interval hubs may use.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Checks the upstream's credentials at start and every 60 s (every 5 s while they fail), so
/// `/healthz` and `Describe` stop advertising a spoke that cannot call its upstream.
async fn watch_credentials(engine: Arc<Engine>) {
    loop {
        let result = engine.upstream().check_credentials().await;
        let ok = result.is_ok();
        if ok != engine.credentials_ok() || !ok {
            match &result {
                Ok(()) => tracing::info!("upstream credentials available"),
                Err(e) => tracing::warn!("upstream credentials unavailable: {e}"),
            }
        }
        engine.set_credentials_ok(ok);
        let pause = if ok { 60 } else { 5 };
        tokio::time::sleep(Duration::from_secs(pause)).await;
    }
}

/// Concurrent streams one hub connection may carry. hyper's default (200) made the 201st
/// stream through a hub wait for one to finish (measured: 1,000 streams opened at once through
/// one hub had at most 200 flowing). Each stream costs a few KB; the account quota, not this,
/// is the spoke's real limit.
const MAX_CONCURRENT_STREAMS: u32 = 10_000;

/// A client must finish the TLS handshake within this time (a silent peer cannot hold a task).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown`, then marks the engine draining, stops accepting, and
/// waits (up to `drain`) for in-flight calls and streams: HTTP/2 connections get a GOAWAY, so
/// hubs send new calls elsewhere while the running ones finish. Each connection also ends by
/// itself after `age` (see [`ConnectionAge`]), so a TCP load balancer's tasks share the calls.
async fn serve_connections(
    listener: TcpListener,
    app: Router,
    tls: Option<switchyard_tls::Reloading<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    engine: Arc<Engine>,
    drain: Duration,
    age: ConnectionAge,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    // Every connection task holds a receiver: `send` asks them all to shut down gracefully,
    // `closed` resolves when the last one has ended.
    let (stop_tx, _) = tokio::sync::watch::channel(());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        // Pings find dead hubs that would otherwise hold a connection forever.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
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
        // Small HTTP/2 frames (stream chunks, unary answers) must leave at once: with Nagle on,
        // each waited for the previous one's ACK — measured as one chunk of added time to
        // first token.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let life = ConnLife {
            stop: stop_tx.subscribe(),
            max_age: age.max_age.map(jittered),
            grace: age.grace,
            peer,
        };
        match &tls {
            None => {
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                tokio::spawn(life.drive(conn));
            }
            Some(tls) => {
                // The current config: a rotated certificate applies from the next connection.
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
                let builder = builder.clone();
                tokio::spawn(async move {
                    let stream =
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                // A hub without a certificate from the configured CA ends here.
                                tracing::info!(%peer, error = %e, "TLS handshake refused");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    life.drive(conn).await;
                });
            }
        }
    }
    engine.set_draining();
    drop(listener);
    tracing::info!(
        connections = stop_tx.receiver_count(),
        "draining in-flight requests"
    );
    let _ = stop_tx.send(());
    if tokio::time::timeout(drain, stop_tx.closed()).await.is_err() {
        tracing::warn!("drain timeout reached; exiting with requests in flight");
    }
}

/// `d` scaled by a random factor in [0.9, 1.1] (gRPC's MAX_CONNECTION_AGE jitter), so the
/// connections a hub opened together do not all reconnect together.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.9..=1.1))
}

/// One connection's lifetime rules: graceful shutdown when the process stops or the connection
/// reaches its age; closed outright when an aged connection's grace runs out.
struct ConnLife {
    /// Changes (or closes) when the process shuts down; held until the connection ends, so the
    /// drain can wait for it.
    stop: tokio::sync::watch::Receiver<()>,
    max_age: Option<Duration>,
    grace: Duration,
    peer: SocketAddr,
}

type Conn<I> = hyper_util::server::conn::auto::UpgradeableConnection<
    'static,
    hyper_util::rt::TokioIo<I>,
    hyper_util::service::TowerToHyperService<Router>,
    hyper_util::rt::TokioExecutor,
>;

impl ConnLife {
    async fn drive<I>(mut self, conn: Conn<I>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        tokio::pin!(conn);
        let far = Duration::from_secs(365 * 24 * 3600);
        let age = tokio::time::sleep(self.max_age.unwrap_or(far));
        let grace = tokio::time::sleep(far);
        tokio::pin!(age, grace);
        let (mut aged, mut stopping, mut goaway) = (self.max_age.is_none(), false, false);
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = self.stop.changed(), if !stopping => {
                    stopping = true;
                    if !goaway {
                        goaway = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
                () = &mut age, if !aged => {
                    aged = true;
                    if !goaway {
                        goaway = true;
                        tracing::debug!(peer = %self.peer, "connection reached max_connection_age; GOAWAY sent");
                        conn.as_mut().graceful_shutdown();
                    }
                    grace.as_mut().reset(tokio::time::Instant::now() + self.grace);
                }
                () = &mut grace => {
                    tracing::info!(peer = %self.peer, "max_connection_age_grace passed; closing the connection with calls in flight");
                    break;
                }
            }
        }
    }
}

/// Binds, logs `listening on ADDR`, serves until `shutdown` completes, then drains in-flight
/// calls and streams (up to `drain_timeout`) and returns.
pub async fn serve(
    config: SpokeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    switchyard_core::prom::start();
    let upstream = build_upstream(&config).await?;
    let store = config.quota.build().await;
    let engine = Arc::new(Engine::new(&config, upstream, store));
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    let tls = config
        .tls
        .as_ref()
        .map(|t| switchyard_tls::Reloading::watch(t.files.clone(), t.reload_interval))
        .transpose()
        .map_err(|e| StartError::Tls(e.to_string()))?;
    let (app, reporter) = router(engine.clone());
    // `/admin/config`, and live reload when the binary watches its config file.
    let app = app.merge(crate::reload::start(engine.clone(), &config));
    let health_task = tokio::spawn(report_health(engine.clone(), reporter));
    let creds_task = tokio::spawn(watch_credentials(engine.clone()));
    tracing::info!(
        provider = engine.provider(),
        account = engine.account(),
        tls = match &config.tls {
            None => "off",
            Some(t) if t.files.client_ca.is_some() => "mutual",
            Some(_) => "on",
        },
        "listening on {addr}"
    );

    serve_connections(
        listener,
        app,
        tls,
        shutdown,
        engine.clone(),
        config.drain_timeout,
        config.connection_age,
    )
    .await;
    health_task.abort();
    creds_task.abort();
    tracing::info!("stopped");
    Ok(())
}
