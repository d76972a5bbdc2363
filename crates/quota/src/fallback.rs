//! Redis with a local safety net: while Redis is unreachable, each replica enforces its share
//! of every limit (limit ÷ configured replica count) in memory, logs the switch once, reports
//! it through [`QuotaStore::is_shared_healthy`], and tries Redis again every second. No request
//! fails because Redis is down.

use crate::{
    Admission, Limits, MemoryStore, QuotaStore, RateState, RedisStore, Reservation, StoreError,
};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const RETRY_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct FallbackStore {
    /// `None` until the first connection succeeds (Redis may be down at start).
    redis: Mutex<Option<RedisStore>>,
    local: MemoryStore,
    replicas: u32,
    degraded: AtomicBool,
    retry_at: Mutex<Option<Instant>>,
}

impl FallbackStore {
    pub fn new(redis: RedisStore, replicas: u32) -> Self {
        Self {
            redis: Mutex::new(Some(redis)),
            local: MemoryStore::new(),
            replicas: replicas.max(1),
            degraded: AtomicBool::new(false),
            retry_at: Mutex::new(None),
        }
    }

    /// Connects to Redis; if it does not answer, starts degraded (local limits) and keeps
    /// trying in the background every second.
    pub async fn connect(url: &str, prefix: &str, timeout: Duration, replicas: u32) -> Arc<Self> {
        match RedisStore::connect(url, prefix, timeout).await {
            Ok(r) => Arc::new(Self::new(r, replicas)),
            Err(e) => {
                let store = Arc::new(Self {
                    redis: Mutex::new(None),
                    local: MemoryStore::new(),
                    replicas: replicas.max(1),
                    degraded: AtomicBool::new(false),
                    retry_at: Mutex::new(None),
                });
                store.on_shared_err(&e);
                let weak = Arc::downgrade(&store);
                let (url, prefix) = (url.to_owned(), prefix.to_owned());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(RETRY_EVERY).await;
                        let Some(store) = weak.upgrade() else { return };
                        if let Ok(r) = RedisStore::connect(&url, &prefix, timeout).await {
                            *store.redis.lock() = Some(r);
                            *store.retry_at.lock() = None;
                            return;
                        }
                    }
                });
                store
            }
        }
    }

    fn shared(&self) -> Option<RedisStore> {
        self.redis.lock().clone()
    }

    /// Whether to try Redis now (always when healthy; once a second when degraded).
    fn try_shared(&self) -> bool {
        if !self.degraded.load(Ordering::Relaxed) {
            return true;
        }
        let mut at = self.retry_at.lock();
        match *at {
            Some(t) if Instant::now() < t => false,
            _ => {
                *at = Some(Instant::now() + RETRY_EVERY);
                true
            }
        }
    }

    fn on_shared_ok(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::warn!("quota store: Redis answers again; shared limits resume");
        }
    }

    fn on_shared_err(&self, e: &StoreError) {
        *self.retry_at.lock() = Some(Instant::now() + RETRY_EVERY);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::error!(
                replicas = self.replicas,
                "quota store: {e}; enforcing local limits (each limit / replicas) until Redis answers"
            );
        }
    }
}

#[async_trait::async_trait]
impl QuotaStore for FallbackStore {
    async fn admit(
        &self,
        scope: &str,
        limits: &Limits,
        tokens: u64,
    ) -> Result<Admission, StoreError> {
        if let Some(redis) = self.shared()
            && self.try_shared()
        {
            match redis.admit(scope, limits, tokens).await {
                Ok(a) => {
                    self.on_shared_ok();
                    return Ok(a);
                }
                Err(e) => self.on_shared_err(&e),
            }
        }
        self.local
            .admit(scope, &limits.divided(self.replicas), tokens)
            .await
    }

    async fn settle(
        &self,
        r: &Reservation,
        limits: &Limits,
        used_tokens: u64,
        cost_usd: f64,
    ) -> Result<(), StoreError> {
        if r.local {
            return self
                .local
                .settle(r, &limits.divided(self.replicas), used_tokens, cost_usd)
                .await;
        }
        let result = match self.shared() {
            Some(redis) => redis.settle(r, limits, used_tokens, cost_usd).await,
            None => Err(StoreError::Unavailable("not connected".into())),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                self.on_shared_err(&e);
                // Keep the spend locally so this replica's budget still sees it.
                self.local
                    .settle(r, &limits.divided(self.replicas), used_tokens, cost_usd)
                    .await
            }
        }
    }

    async fn peek(&self, scope: &str, limits: &Limits) -> Result<RateState, StoreError> {
        if let Some(redis) = self.shared()
            && !self.degraded.load(Ordering::Relaxed)
        {
            match redis.peek(scope, limits).await {
                Ok(s) => return Ok(s),
                Err(e) => self.on_shared_err(&e),
            }
        }
        self.local.peek(scope, &limits.divided(self.replicas)).await
    }

    fn is_shared_healthy(&self) -> bool {
        !self.degraded.load(Ordering::Relaxed)
    }
}
