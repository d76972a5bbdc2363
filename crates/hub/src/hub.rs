//! Hub state and the failover loop: which spoke to call next, and what a failure means.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use subtle::ConstantTimeEq;
use switchyard_proto::v1 as pb;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use crate::budget::Budget;
use crate::config::{Alias, Candidate, Settings, Tenant};
use crate::error::{AttemptFailure, FailedAttempt, HubError};
use crate::pool::{InFlight, ProviderPool, Spoke};
use crate::routing::{self, Needs, Preference};

/// Routing table: swapped whole (never half-applied).
#[derive(Debug)]
pub struct Table {
    pub tenants: Vec<Tenant>,
    pub aliases: BTreeMap<String, Alias>,
    pub pools: HashMap<String, Arc<ProviderPool>>,
    /// Prompt templates by name (`[[prompts]]`).
    pub prompts: BTreeMap<String, crate::prompts::Prompt>,
}

/// Shared state of a running hub.
#[derive(Debug)]
pub struct Hub {
    pub settings: Settings,
    pub table: ArcSwap<Table>,
    pub budget: Budget,
    /// Tenant quotas (memory, or Redis shared by all hub replicas).
    pub quota: Arc<dyn switchyard_quota::QuotaStore>,
    /// EWMA of successful call latency per (provider, model), milliseconds.
    latency: Mutex<HashMap<(String, String), f64>>,
    /// Cancelled on shutdown: stops health loops and DNS watchers.
    pub stop: CancellationToken,
    /// JWT bearer-token verification (`[jwt]`), besides API keys.
    pub jwt: Option<Arc<crate::jwt::JwtVerifier>>,
    /// Response cache and the calls in flight that identical requests follow.
    pub cache: Arc<crate::cache::Cache>,
    /// Live-config status (active version, last reload error).
    pub live: crate::reload::Live,
    /// Where audit lines go (`[audit]`); `None` when off.
    pub audit: Option<Arc<crate::audit::AuditSink>>,
}

/// Where a request ended up.
#[derive(Debug, Clone, Default)]
pub struct RouteTaken {
    pub provider: String,
    pub account: String,
    pub region: String,
    pub model: String,
    pub attempts: u32,
    /// Time spent waiting on spokes (all attempts).
    pub spoke_time: Duration,
    /// The dispatched candidate's price, USD per million (input, output) tokens.
    pub price: (Option<f64>, Option<f64>),
    /// The pool (configured provider name) and spoke address that served.
    pub pool: String,
    pub spoke: String,
    /// The attempts that failed before this one (audit log).
    pub failed: Vec<FailedAttempt>,
}

/// What a single attempt's call closure returns on failure.
#[derive(Debug)]
pub enum CallError {
    Retry(AttemptFailure, String),
    Final(HubError),
}

/// One resolved request, ready for the failover loop.
#[derive(Debug, Clone)]
pub struct Plan {
    pub candidates: Vec<Candidate>,
    pub needs: Needs,
    pub deadline: Instant,
    pub request_id: String,
    pub allowed_regions: Vec<String>,
}

impl Hub {
    /// Builds the hub and starts health loops (static pools) and DNS watchers. Must run inside a
    /// tokio runtime.
    pub fn start(settings: Settings) -> Arc<Hub> {
        Self::start_with_quota(settings, Arc::new(switchyard_quota::MemoryStore::new()))
    }

    /// [`Hub::start`] with the tenant-quota store built from `settings.quota`.
    pub fn start_with_quota(
        settings: Settings,
        quota: Arc<dyn switchyard_quota::QuotaStore>,
    ) -> Arc<Hub> {
        let stop = CancellationToken::new();
        let mut pools = HashMap::new();
        for p in &settings.providers {
            pools.insert(p.name.clone(), crate::reload::new_pool(p, &stop));
        }
        let table = Table {
            tenants: settings.tenants.clone(),
            aliases: settings.aliases.clone(),
            pools,
            prompts: settings.prompts.clone(),
        };
        let hub = Arc::new(Hub {
            cache: Arc::new(crate::cache::Cache::new(settings.cache.clone())),
            live: crate::reload::Live::default(),
            jwt: settings.jwt.clone().map(crate::jwt::JwtVerifier::new),
            audit: crate::audit::AuditSink::open(&settings.audit),
            budget: Budget::new(settings.retry_budget),
            settings,
            table: ArcSwap::from_pointee(table),
            quota,
            latency: Mutex::new(HashMap::new()),
            stop,
        });
        crate::reload::spawn(&hub);
        hub
    }

    /// The tenant owning `key`, comparing SHA-256 hashes in constant time.
    pub fn authenticate(&self, key: &str) -> Option<Tenant> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(key.as_bytes()).into();
        let table = self.table.load();
        let mut found = None;
        for t in &table.tenants {
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
        self.table
            .load()
            .tenants
            .iter()
            .find(|t| t.name == name)
            .cloned()
    }

    /// Resolves the alias for a tenant: 404 unknown, 403 not allowed.
    pub fn resolve_alias(&self, tenant: &Tenant, model: &str) -> Result<Alias, HubError> {
        let table = self.table.load();
        let Some(_) = table.aliases.get(model) else {
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
        table
            .aliases
            .get(target)
            .cloned()
            .ok_or_else(|| HubError::ModelNotFound(model.to_string()))
    }

    /// Candidates in try order for this request.
    pub fn order(&self, alias: &Alias, pref: Preference) -> Vec<Candidate> {
        let lat = self.latency.lock().clone();
        let f = |c: &Candidate| {
            lat.get(&(c.provider.clone(), c.model.clone()))
                .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        };
        routing::order_candidates(&alias.candidates, pref, &f, rand::random_range(0..100))
    }

    fn observe_latency(&self, c: &Candidate, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        let mut lat = self.latency.lock();
        let e = lat
            .entry((c.provider.clone(), c.model.clone()))
            .or_insert(ms);
        *e = 0.8 * *e + 0.2 * ms;
    }

    /// The failover loop. `call` performs one attempt against one spoke with the time left; the
    /// loop tries the next spoke of the candidate, then the next candidate, within the deadline,
    /// `max_attempts` and the retry budget.
    pub async fn dispatch<T, F, Fut>(
        &self,
        plan: &Plan,
        mut call: F,
    ) -> Result<(T, RouteTaken, InFlight), HubError>
    where
        F: FnMut(Arc<Spoke>, pb::InferRequest, Duration) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
        T: HasRoute,
    {
        self.budget.record_request();
        let table = self.table.load_full();
        let mut failed: Vec<FailedAttempt> = Vec::new();
        let mut made = 0u32;
        let mut spoke_time = Duration::ZERO;
        for cand in &plan.candidates {
            let Some(pool) = table.pools.get(&cand.provider) else {
                continue;
            };
            let mut exclude = Vec::new();
            loop {
                let views = pool.views();
                let picked = {
                    let mut rng = rand::rng();
                    routing::pick_spoke(&views, &cand.model, &plan.needs, &exclude, &mut rng)
                };
                let Some(id) = picked else { break };
                exclude.push(id);
                let Some(spoke) = pool.get(id) else { continue };
                if made >= self.settings.max_attempts {
                    return Err(final_error(failed));
                }
                if made > 0 && !self.budget.try_retry() {
                    tracing::warn!(request_id = %plan.request_id, "retry budget exhausted");
                    return Err(final_error(failed));
                }
                let now = Instant::now();
                if now >= plan.deadline {
                    return Err(HubError::DeadlineExceeded { attempts: failed });
                }
                let remaining = plan.deadline - now;
                made += 1;
                let req = pb::InferRequest {
                    request_id: plan.request_id.clone(),
                    models: vec![cand.model.clone()],
                    allowed_regions: plan.allowed_regions.clone(),
                    timeout_ms: u64::try_from(remaining.as_millis())
                        .unwrap_or(u64::MAX)
                        .max(1),
                    ..Default::default()
                };
                if made > 1 {
                    crate::observe::retried(&cand.provider, failed.last());
                }
                let span = crate::observe::attempt_span(cand, spoke.addr, made);
                let guard = spoke.begin();
                let started = Instant::now();
                // One attempt may take `attempt_timeout` (unary: the answer; streams: the first
                // content), so a hung spoke costs that, not the whole deadline. The call itself
                // keeps the whole remaining deadline as its `grpc-timeout` (a stream may run
                // long once it started).
                let limit = self
                    .settings
                    .attempt_timeout
                    .map_or(remaining, |a| a.min(remaining));
                let result = match tokio::time::timeout(
                    limit,
                    tracing::Instrument::instrument(
                        call(spoke.clone(), req, remaining),
                        span.clone(),
                    ),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) if limit < remaining => Err(CallError::Retry(
                        AttemptFailure::AttemptTimeout,
                        format!(
                            "no answer within attempt_timeout ({} ms)",
                            limit.as_millis()
                        ),
                    )),
                    Err(_) => Err(CallError::Retry(AttemptFailure::Timeout, "deadline".into())),
                };
                let took = started.elapsed();
                spoke_time += took;
                match result {
                    Ok(v) => {
                        self.observe_latency(cand, took);
                        let r = v.route();
                        crate::observe::attempt_ok(&span, &r);
                        let route = RouteTaken {
                            pool: cand.provider.clone(),
                            spoke: spoke.addr.to_string(),
                            failed: failed.clone(),
                            price: (cand.price_in, cand.price_out),
                            provider: if r.provider.is_empty() {
                                cand.provider.clone()
                            } else {
                                r.provider.clone()
                            },
                            account: if r.account.is_empty() {
                                spoke.account().unwrap_or_default()
                            } else {
                                r.account.clone()
                            },
                            region: r.region.clone(),
                            model: if r.model.is_empty() {
                                cand.model.clone()
                            } else {
                                r.model.clone()
                            },
                            attempts: made,
                            spoke_time,
                        };
                        return Ok((v, route, guard));
                    }
                    Err(CallError::Final(e)) => return Err(e),
                    Err(CallError::Retry(kind, detail)) => {
                        drop(guard);
                        // Past the deadline every failure is a timeout (the spoke or tonic may
                        // report it as CANCELLED): no ejection, no further attempts.
                        let kind = if Instant::now() >= plan.deadline {
                            AttemptFailure::Timeout
                        } else {
                            kind
                        };
                        match kind {
                            AttemptFailure::Transport => spoke.eject(&detail),
                            AttemptFailure::Exhausted { retry_after_ms } => {
                                spoke.mark_exhausted(retry_after_ms.map(Duration::from_millis));
                            }
                            AttemptFailure::Unavailable
                            | AttemptFailure::NotServed
                            | AttemptFailure::Timeout
                            | AttemptFailure::AttemptTimeout => {}
                        }
                        crate::observe::attempt_failed(&span, &cand.provider, &kind);
                        tracing::info!(
                            request_id = %plan.request_id, spoke = %spoke.addr, provider = %cand.provider,
                            model = %cand.model, failure = ?kind, detail = %detail, "attempt failed"
                        );
                        failed.push(FailedAttempt {
                            provider: cand.provider.clone(),
                            model: cand.model.clone(),
                            spoke: spoke.addr.to_string(),
                            kind,
                            detail,
                        });
                        if !kind.is_retryable() {
                            return Err(HubError::DeadlineExceeded { attempts: failed });
                        }
                    }
                }
            }
        }
        Err(final_error(failed))
    }
}

/// Routes a successful result was served from.
pub trait HasRoute {
    fn route(&self) -> pb::Route;
}

impl HasRoute for pb::InferResponse {
    fn route(&self) -> pb::Route {
        self.route.clone().unwrap_or_default()
    }
}

/// The error when no attempt succeeded: any quota exhaustion → 429 with the earliest retry time;
/// otherwise 503.
fn final_error(failed: Vec<FailedAttempt>) -> HubError {
    let exhausted: Vec<Option<u64>> = failed
        .iter()
        .filter_map(|a| match a.kind {
            AttemptFailure::Exhausted { retry_after_ms } => Some(retry_after_ms),
            AttemptFailure::Unavailable
            | AttemptFailure::Transport
            | AttemptFailure::NotServed
            | AttemptFailure::Timeout
            | AttemptFailure::AttemptTimeout => None,
        })
        .collect();
    if exhausted.is_empty() {
        HubError::NoRoute { attempts: failed }
    } else {
        let retry_after = exhausted
            .iter()
            .flatten()
            .min()
            .map(|ms| Duration::from_millis(*ms));
        HubError::Exhausted {
            retry_after,
            attempts: failed,
        }
    }
}

/// Classifies a gRPC status from a spoke (the contract's error model). Statuses without the
/// spoke's `x-switchyard-attempts` metadata did not come from the spoke's logic: the connection
/// failed or broke.
pub fn classify(status: &Status) -> CallError {
    let from_spoke = status.metadata().get(switchyard_proto::ATTEMPTS).is_some();
    let detail = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::ResourceExhausted => {
            let retry_after_ms = status
                .metadata()
                .get(switchyard_proto::RETRY_AFTER_MS)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            CallError::Retry(AttemptFailure::Exhausted { retry_after_ms }, detail)
        }
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled | Code::Aborted => {
            if from_spoke {
                CallError::Retry(AttemptFailure::Unavailable, detail)
            } else {
                CallError::Retry(AttemptFailure::Transport, detail)
            }
        }
        Code::NotFound | Code::Unimplemented => CallError::Retry(AttemptFailure::NotServed, detail),
        Code::DeadlineExceeded => CallError::Retry(AttemptFailure::Timeout, detail),
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::AlreadyExists => CallError::Final(HubError::UpstreamRejected(
            status.message().chars().take(300).collect(),
        )),
        Code::Ok | Code::DataLoss => CallError::Retry(AttemptFailure::Unavailable, detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_follows_the_contract() {
        let mut s = Status::resource_exhausted("quota");
        s.metadata_mut()
            .insert(switchyard_proto::RETRY_AFTER_MS, "2500".parse().unwrap());
        s.metadata_mut()
            .insert(switchyard_proto::ATTEMPTS, "2".parse().unwrap());
        assert!(matches!(
            classify(&s),
            CallError::Retry(
                AttemptFailure::Exhausted {
                    retry_after_ms: Some(2500)
                },
                _
            )
        ));
        let transport = Status::unavailable("tcp connect error");
        assert!(matches!(
            classify(&transport),
            CallError::Retry(AttemptFailure::Transport, _)
        ));
        let mut upstream = Status::unavailable("upstream 503");
        upstream
            .metadata_mut()
            .insert(switchyard_proto::ATTEMPTS, "3".parse().unwrap());
        assert!(matches!(
            classify(&upstream),
            CallError::Retry(AttemptFailure::Unavailable, _)
        ));
        assert!(matches!(
            classify(&Status::invalid_argument("bad")),
            CallError::Final(HubError::UpstreamRejected(_))
        ));
    }

    #[test]
    fn final_error_prefers_429_with_earliest_retry() {
        let a = |kind| FailedAttempt {
            provider: "p".into(),
            model: "m".into(),
            spoke: "s".into(),
            kind,
            detail: String::new(),
        };
        let e = final_error(vec![
            a(AttemptFailure::Exhausted {
                retry_after_ms: Some(3000),
            }),
            a(AttemptFailure::Exhausted {
                retry_after_ms: Some(1200),
            }),
            a(AttemptFailure::Unavailable),
        ]);
        assert!(
            matches!(e, HubError::Exhausted { retry_after: Some(d), .. } if d == Duration::from_millis(1200))
        );
        assert!(matches!(final_error(vec![]), HubError::NoRoute { .. }));
    }
}
