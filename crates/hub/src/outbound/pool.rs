//! Spoke pools: per spoke address a set of kept-alive gRPC connections ([`Channels`]) that
//! calls are spread over, active health checks (`grpc.health.v1` + `Describe`), passive ejection
//! and half-open probes.

mod channels;
mod health;

pub use channels::Channels;
use health::DRAINING;
pub use health::{check, health_loop};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use switchyard_proto::v1::spoke_client::SpokeClient;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use crate::error::AttemptFailure;
use crate::model::{Health, OutlierDetection};
use crate::outbound::outlier::Outlier;
use crate::routing::{ModelCaps, SpokeView};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What the last successful `Describe` said.
#[derive(Debug, Clone, Default)]
pub struct Described {
    pub account: String,
    pub headroom: f64,
    pub serving: bool,
    /// Shared with every request's [`SpokeView`] of this spoke (a view does not copy it).
    pub models: Arc<HashMap<String, ModelCaps>>,
    /// Headroom the spoke reported per (model, region), with the route state name.
    pub regions: Vec<RegionHeadroom>,
}

/// One (model, region) route of a spoke as its last `Describe` reported it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RegionHeadroom {
    pub model: String,
    pub region: String,
    pub headroom: f64,
    pub state: &'static str,
}

/// A spoke's state for operators (`/admin/routes`, `/metrics`).
#[derive(Debug, Clone)]
pub struct SpokeSnapshot {
    pub addr: SocketAddr,
    pub weight: u32,
    pub healthy: bool,
    /// Passively ejected, waiting for a probe (the hub's breaker is open).
    pub ejected: bool,
    pub in_flight: u32,
    pub described: Option<Described>,
    /// Time left of a RESOURCE_EXHAUSTED hold.
    pub exhausted_for: Option<Duration>,
    /// Time left of an outlier ejection (consecutive 5xx).
    pub outlier_ejected_for: Option<Duration>,
    pub last_check: Option<std::time::SystemTime>,
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct SpokeState {
    healthy: bool,
    /// Taken out by a failed call; comes back through one passing probe.
    ejected: bool,
    ok_streak: u32,
    fail_streak: u32,
    described: Option<Described>,
    /// After RESOURCE_EXHAUSTED: treat headroom as 0 until then.
    exhausted_until: Option<Instant>,
    /// After an account fault (FAILED_PRECONDITION, `x-switchyard-fault: account`): the models
    /// this spoke's account may not serve, until its next probe.
    denied_until: HashMap<String, Instant>,
    last_check: Option<std::time::SystemTime>,
    last_error: Option<String>,
}

/// One spoke (one account's service) of a provider pool.
#[derive(Debug)]
pub struct Spoke {
    pub id: u64,
    pub addr: SocketAddr,
    pub provider: Arc<str>,
    weight: AtomicU32,
    channels: Channels,
    state: Mutex<SpokeState>,
    in_flight: AtomicU32,
    /// Passive outlier detection state (consecutive 5xx, ejection).
    outlier: Outlier,
    wake: Notify,
    /// Cancelled when the spoke leaves the pool (DNS) or the hub stops.
    stop: CancellationToken,
}

/// Decrements the spoke's in-flight count on drop.
#[derive(Debug)]
pub struct InFlight(Arc<Spoke>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Spoke {
    /// Creates a spoke with `connections` lazily connected, kept-alive channels (at least one;
    /// see [`Channels`]). It is not routable until its first health check passes.
    ///
    /// HTTP/2 keepalive pings run every health interval (at most 10 s) and must be answered within
    /// the health timeout: a hung spoke (stopped process, black-holed network) fails the calls in
    /// flight on it, which are then retried elsewhere, instead of holding them to the deadline.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site (ProviderPool::set_members), each argument a pool setting"
    )]
    pub fn new(
        provider: Arc<str>,
        addr: SocketAddr,
        weight: u32,
        connect_timeout: Duration,
        health: &Health,
        tls: Option<&PoolTls>,
        connections: usize,
        stop: CancellationToken,
    ) -> Result<Self, tonic::transport::Error> {
        // With TLS the URI stays `http://`: our connector does the TLS, and tonic must not try
        // its own (it would refuse `https://` without its TLS feature).
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(health.interval.min(Duration::from_secs(10)))
            .keep_alive_timeout(health.timeout)
            .keep_alive_while_idle(true);
        let channels = (0..connections.max(1))
            .map(|_| match tls {
                None => endpoint.connect_lazy(),
                Some(tls) => endpoint.connect_with_connector_lazy(tls.connector(addr)),
            })
            .collect();
        Ok(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            addr,
            provider,
            weight: AtomicU32::new(weight),
            channels: Channels::new(channels),
            state: Mutex::new(SpokeState::default()),
            in_flight: AtomicU32::new(0),
            outlier: Outlier::default(),
            wake: Notify::new(),
            stop,
        })
    }

    /// A client whose calls go to the least busy of the spoke's connections (and are sent
    /// again on another one when the spoke provably never started them).
    pub fn client(&self) -> SpokeClient<Channels> {
        SpokeClient::new(self.channels.clone())
    }

    /// The spoke's connections.
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    pub fn set_weight(&self, w: u32) {
        self.weight.store(w, Ordering::Relaxed);
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a call in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    pub fn is_healthy(&self) -> bool {
        self.state.lock().healthy
    }

    pub fn account(&self) -> Option<String> {
        self.state
            .lock()
            .described
            .as_ref()
            .map(|d| d.account.clone())
    }

    /// The context window (tokens) the spoke's last `Describe` reported for `model`: `None`
    /// when it did not list the model (or has not answered yet), `Some(0)` when it did not say.
    pub fn context_window(&self, model: &str) -> Option<u32> {
        let st = self.state.lock();
        let caps = st.described.as_ref()?.models.get(model)?;
        Some(caps.context_window)
    }

    /// What the spoke's last `Describe` said `model` can do (with what its upstream speaks):
    /// `None` when it did not list the model (or has not answered yet). Kept while the spoke is
    /// unhealthy: what a model can do does not change with its health.
    pub fn model_caps(&self, model: &str) -> Option<ModelCaps> {
        let st = self.state.lock();
        st.described.as_ref()?.models.get(model).copied()
    }

    /// Whether the spoke has answered `Describe` at least once.
    pub fn has_described(&self) -> bool {
        self.state.lock().described.is_some()
    }

    /// Passive ejection: called when a call to the spoke failed at the connection level. The spoke
    /// leaves routing at once and the health loop probes it (half-open) soon after.
    pub fn eject(&self, why: &str) {
        let was = {
            let mut st = self.state.lock();
            let was = st.healthy;
            st.healthy = false;
            st.ejected = true;
            st.ok_streak = 0;
            was
        };
        if was {
            tracing::warn!(spoke = %self.addr, provider = %self.provider, reason = why, "spoke ejected");
        }
        self.wake.notify_one();
    }

    /// The spoke answered RESOURCE_EXHAUSTED: route around it until `retry_after` passes (or the
    /// next `Describe` reports headroom).
    pub fn mark_exhausted(&self, retry_after: Option<Duration>) {
        let until = Instant::now() + retry_after.unwrap_or(Duration::from_secs(1));
        self.state.lock().exhausted_until = Some(until);
    }

    /// Passive outlier detection: the outcome of one call to this spoke, `None` for a success
    /// (see [`Outlier::record`]).
    pub fn record_outcome(&self, failure: Option<&AttemptFailure>, cfg: &OutlierDetection) {
        self.outlier
            .record(failure, cfg, &self.addr, &self.provider);
    }

    /// The spoke's account refused `model` (credentials, access, billing): route that model
    /// around it until `retry_after` (the spoke's next probe; 30 s when not given) or until a
    /// `Describe` lists the model as servable again.
    pub fn deny_model(&self, model: &str, retry_after: Option<Duration>) {
        let until = Instant::now() + retry_after.unwrap_or(Duration::from_secs(30));
        let mut st = self.state.lock();
        if st.denied_until.insert(model.to_string(), until).is_none() {
            tracing::warn!(spoke = %self.addr, provider = %self.provider, model, "account denied the model; routing around this spoke");
        }
    }

    /// Whether the spoke is healthy and its account refused `model` with the refusal still in
    /// force at `now` (see [`Spoke::deny_model`]).
    pub fn denies(&self, model: &str, now: Instant) -> bool {
        let st = self.state.lock();
        st.healthy && st.denied_until.get(model).is_some_and(|t| *t > now)
    }

    /// Snapshot for the selector.
    pub fn view(&self, now: Instant) -> SpokeView {
        let st = self.state.lock();
        let (headroom, models) = match &st.described {
            Some(d) => (if d.serving { d.headroom } else { 0.0 }, d.models.clone()),
            None => (0.0, Arc::default()),
        };
        // A model the account refused is not served by this spoke until its probe is due.
        let denied = st
            .denied_until
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(m, _)| m.clone())
            .collect();
        let exhausted = st.exhausted_until.is_some_and(|t| t > now);
        // Ejected by outlier detection: a last resort, like a spoke at quota.
        let headroom = if exhausted || self.outlier.ejected_for(now).is_some() {
            0.0
        } else {
            headroom
        };
        SpokeView {
            id: self.id,
            weight: self.weight(),
            headroom,
            healthy: st.healthy && !self.stop.is_cancelled(),
            in_flight: self.in_flight(),
            models,
            denied,
        }
    }

    /// Applies one active check's result with the consecutive thresholds. A new spoke joins after
    /// its first passing check; an ejected one returns after one passing probe.
    fn record_check(&self, result: Result<Described, String>, cfg: &Health) {
        let mut st = self.state.lock();
        st.last_check = Some(std::time::SystemTime::now());
        st.last_error = result.as_ref().err().cloned();
        match result {
            Ok(d) => {
                st.fail_streak = 0;
                st.ok_streak = st.ok_streak.saturating_add(1);
                let first = st.described.is_none();
                st.described = Some(d);
                if !st.healthy && (first || st.ejected || st.ok_streak >= cfg.healthy_threshold) {
                    st.healthy = true;
                    st.ejected = false;
                    tracing::info!(spoke = %self.addr, provider = %self.provider, "spoke healthy");
                }
            }
            Err(why) => {
                st.ok_streak = 0;
                st.fail_streak = st.fail_streak.saturating_add(1);
                if st.healthy && (st.fail_streak >= cfg.unhealthy_threshold || why == DRAINING) {
                    st.healthy = false;
                    tracing::warn!(spoke = %self.addr, provider = %self.provider, reason = %why, "spoke unhealthy");
                }
            }
        }
    }

    /// Everything an operator view needs, in one lock.
    pub fn snapshot(&self) -> SpokeSnapshot {
        let now = Instant::now();
        let st = self.state.lock();
        SpokeSnapshot {
            addr: self.addr,
            weight: self.weight(),
            healthy: st.healthy && !self.stop.is_cancelled(),
            ejected: st.ejected,
            in_flight: self.in_flight(),
            described: st.described.clone(),
            exhausted_for: st
                .exhausted_until
                .and_then(|t| t.checked_duration_since(now))
                .filter(|d| !d.is_zero()),
            outlier_ejected_for: self.outlier.ejected_for(now),
            last_check: st.last_check,
            last_error: st.last_error.clone(),
        }
    }

    fn needs_probe(&self) -> bool {
        self.state.lock().ejected
    }
}

/// TLS to a pool's spokes: the client config (reloaded when its files change; each new
/// connection uses the current one) and the name to verify in the spokes' certificates.
#[derive(Debug, Clone)]
pub struct PoolTls {
    pub config: switchyard_tls::Reloading<rustls::ClientConfig>,
    /// None = verify the spoke's IP address.
    pub server_name: Option<rustls::pki_types::ServerName<'static>>,
}

impl PoolTls {
    /// Builds from validated settings and starts watching the files.
    pub fn start(tls: &crate::model::SpokeTls) -> Result<Self, switchyard_tls::TlsError> {
        let server_name = match &tls.server_name {
            None => None,
            Some(n) => Some(
                rustls::pki_types::ServerName::try_from(n.clone())
                    .map_err(|e| switchyard_tls::TlsError::Config(format!("{n:?}: {e}")))?,
            ),
        };
        Ok(Self {
            config: switchyard_tls::Reloading::watch(tls.files.clone(), tls.reload_interval)?,
            server_name,
        })
    }

    /// A tonic connector: TCP (no Nagle) then a TLS handshake with the current config.
    fn connector(
        &self,
        addr: SocketAddr,
    ) -> impl tower::Service<
        http::Uri,
        Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
        Error = std::io::Error,
        Future = impl Future<
            Output = std::io::Result<
                hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
            >,
        > + Send,
    > + Send
    + 'static {
        let tls = self.clone();
        tower::service_fn(move |_: http::Uri| {
            let config = tls.config.current();
            let name = tls
                .server_name
                .clone()
                .unwrap_or_else(|| rustls::pki_types::ServerName::IpAddress(addr.ip().into()));
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?;
                Ok(hyper_util::rt::TokioIo::new(stream))
            }
        })
    }
}

/// The spokes of one provider. The list is swapped whole (DNS changes); each spoke's health is
/// interior state.
#[derive(Debug)]
pub struct ProviderPool {
    pub name: Arc<str>,
    pub health: Health,
    pub connect_timeout: Duration,
    /// Passive outlier detection of this pool's spokes.
    pub outlier_detection: OutlierDetection,
    tls: Option<PoolTls>,
    /// Connections per spoke address (`providers[].connections`).
    connections: usize,
    spokes: ArcSwap<Vec<Arc<Spoke>>>,
    stop: CancellationToken,
}

impl ProviderPool {
    pub fn new(
        name: &str,
        health: Health,
        connect_timeout: Duration,
        stop: CancellationToken,
    ) -> Self {
        Self {
            name: Arc::from(name),
            health,
            connect_timeout,
            outlier_detection: OutlierDetection::default(),
            tls: None,
            connections: 1,
            spokes: ArcSwap::from_pointee(Vec::new()),
            stop,
        }
    }

    /// Sets the pool's outlier detection (default: Envoy's).
    #[must_use]
    pub fn with_outlier_detection(mut self, od: OutlierDetection) -> Self {
        self.outlier_detection = od;
        self
    }

    /// Calls this pool's spokes over TLS (set before adding members).
    #[must_use]
    pub fn with_tls(mut self, tls: Option<PoolTls>) -> Self {
        self.tls = tls;
        self
    }

    /// Opens `n` connections to each spoke address (set before adding members; at least 1).
    #[must_use]
    pub fn with_connections(mut self, n: usize) -> Self {
        self.connections = n.max(1);
        self
    }

    /// Stops the pool (provider removed by a config reload): health loops and DNS watcher end,
    /// calls in flight finish on their own channel clones.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    pub fn spokes(&self) -> Arc<Vec<Arc<Spoke>>> {
        self.spokes.load_full()
    }

    pub fn views(&self) -> Vec<SpokeView> {
        let now = Instant::now();
        self.spokes.load().iter().map(|s| s.view(now)).collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<Spoke>> {
        self.spokes.load().iter().find(|s| s.id == id).cloned()
    }

    /// Makes the pool exactly `wanted` (address → weight): new addresses are added (routable after
    /// a passing check), weights updated, missing ones removed (their health loop stops; calls in
    /// flight finish on their own channel clone).
    pub fn set_members(&self, wanted: &[(SocketAddr, u32)]) {
        let current = self.spokes.load_full();
        let mut next = Vec::new();
        for (addr, weight) in wanted {
            if let Some(s) = current.iter().find(|s| s.addr == *addr) {
                s.set_weight(*weight);
                next.push(s.clone());
                continue;
            }
            match Spoke::new(
                self.name.clone(),
                *addr,
                *weight,
                self.connect_timeout,
                &self.health,
                self.tls.as_ref(),
                self.connections,
                self.stop.child_token(),
            ) {
                Ok(s) => {
                    let s = Arc::new(s);
                    tracing::info!(provider = %self.name, spoke = %addr, weight, "spoke added");
                    tokio::spawn(health_loop(s.clone(), self.health));
                    next.push(s);
                }
                Err(e) => {
                    tracing::error!(provider = %self.name, spoke = %addr, error = %e, "bad spoke address")
                }
            }
        }
        for s in current.iter() {
            if !wanted.iter().any(|(a, _)| *a == s.addr) {
                tracing::info!(provider = %self.name, spoke = %s.addr, "spoke removed (draining)");
                s.stop.cancel();
            }
        }
        self.spokes.store(Arc::new(next));
    }
}
