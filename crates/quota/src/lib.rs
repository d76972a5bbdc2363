//! Quotas that hold across replicas.
//!
//! One trait, [`QuotaStore`], with two implementations: [`MemoryStore`] (embedded, the default,
//! exact for a single replica) and [`RedisStore`] (shared, every check-and-consume one atomic
//! Lua script using the Redis server's clock). [`FallbackStore`] wraps Redis and falls back to
//! local limits divided by the replica count while Redis is unreachable.
//!
//! The model, per *scope* (a tenant, or an account's region and model):
//! - **requests per minute**: a sliding-window log — at most N admissions in any 60 s;
//! - **tokens per minute**: a token bucket of N refilling N per minute; admission reserves the
//!   estimate, [`QuotaStore::settle`] returns what was not used (or charges the overrun);
//! - **spend per UTC day / month** in USD: admission is refused once recorded spend reaches the
//!   budget; spend is recorded by `settle`.

mod calendar;
pub mod config;
mod fallback;
mod memory;
pub mod redis_conn;
mod redis_store;

pub use config::{QuotaStoreFile, StoreConfig};
pub use fallback::FallbackStore;
pub use memory::MemoryStore;
pub use redis_store::RedisStore;

use std::time::Duration;

/// Limits of one scope. `None` = unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub usd_per_day: Option<f64>,
    pub usd_per_month: Option<f64>,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }

    /// This replica's share when `replicas` processes each enforce locally (Redis down).
    pub fn divided(&self, replicas: u32) -> Limits {
        let n = u64::from(replicas.max(1));
        Limits {
            requests_per_minute: self.requests_per_minute.map(|v| (v / n).max(1)),
            tokens_per_minute: self.tokens_per_minute.map(|v| (v / n).max(1)),
            usd_per_day: self.usd_per_day.map(|v| v / n as f64),
            usd_per_month: self.usd_per_month.map(|v| v / n as f64),
        }
    }

    /// The limits scaled by `factor` (0..=1), at least 1 where limited: used by spokes to
    /// lower an account's rate after the upstream throttled.
    pub fn scaled(&self, factor: f64) -> Limits {
        let f = factor.clamp(0.0, 1.0);
        let scale = |v: u64| ((v as f64 * f).floor() as u64).max(1);
        Limits {
            requests_per_minute: self.requests_per_minute.map(scale),
            tokens_per_minute: self.tokens_per_minute.map(scale),
            ..*self
        }
    }
}

/// Which limit refused an admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Requests,
    Tokens,
    DailyBudget,
    MonthlyBudget,
}

impl Limit {
    pub fn describe(&self) -> &'static str {
        match self {
            Limit::Requests => "requests per minute",
            Limit::Tokens => "tokens per minute",
            Limit::DailyBudget => "daily spend budget",
            Limit::MonthlyBudget => "monthly spend budget",
        }
    }
}

/// Remaining allowance of one rate limit, for `x-ratelimit-*` headers and headroom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub limit: u64,
    pub remaining: u64,
    /// Time until the allowance is full again.
    pub reset: Duration,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    pub requests: Option<Window>,
    pub tokens: Option<Window>,
}

impl RateState {
    /// Share of the allowance left, 0..=1 (1 when unlimited).
    pub fn headroom(&self) -> f64 {
        [self.requests, self.tokens]
            .iter()
            .flatten()
            .map(|w| {
                if w.limit == 0 {
                    0.0
                } else {
                    (w.remaining as f64 / w.limit as f64).clamp(0.0, 1.0)
                }
            })
            .fold(1.0, f64::min)
    }
}

/// What an admission took, handed back to [`QuotaStore::settle`].
#[derive(Clone, Debug, PartialEq)]
pub struct Reservation {
    pub scope: String,
    pub tokens: u64,
    /// Which store admitted it (a fallback store settles in the same place).
    pub local: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    Admitted {
        reservation: Reservation,
        state: RateState,
    },
    Refused {
        limit: Limit,
        retry_after: Duration,
        state: RateState,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("quota store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait::async_trait]
pub trait QuotaStore: std::fmt::Debug + Send + Sync + 'static {
    /// Atomically checks every limit of `scope` and, only if all pass, consumes one request and
    /// reserves `tokens`.
    async fn admit(
        &self,
        scope: &str,
        limits: &Limits,
        tokens: u64,
    ) -> Result<Admission, StoreError>;

    /// Reconciles a reservation with what the call really used, and records its cost.
    async fn settle(
        &self,
        reservation: &Reservation,
        limits: &Limits,
        used_tokens: u64,
        cost_usd: f64,
    ) -> Result<(), StoreError>;

    /// Returns reserved tokens without recording usage (the call never reached a model).
    async fn release(&self, reservation: &Reservation, limits: &Limits) -> Result<(), StoreError> {
        self.settle(reservation, limits, 0, 0.0).await
    }

    /// The allowance left now, without consuming anything.
    async fn peek(&self, scope: &str, limits: &Limits) -> Result<RateState, StoreError>;

    /// False while a shared store is unreachable and local limits are in force.
    fn is_shared_healthy(&self) -> bool {
        true
    }
}

/// Dollars as integer micro-dollars, the unit spend is stored in.
pub(crate) fn micros(usd: f64) -> i64 {
    if !usd.is_finite() || usd <= 0.0 {
        return 0;
    }
    (usd * 1_000_000.0).round() as i64
}
