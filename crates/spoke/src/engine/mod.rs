//! The failover engine: for one request, walk the route plan (each model candidate's region
//! chain, in order), skipping routes that are cooling down, broken or out of quota, calling the
//! upstream on the others, until one answers or the deadline passes.
//!
//! One request, in file order: [`prepare`] (checks, id, deadline, estimate) → [`table`] (the
//! plan over the live route table) → per route [`admit`] (cool-down, breaker, quota; the
//! outcome's bookkeeping) → [`unary`] or [`stream`] (the upstream call) → [`tally`] (the error
//! when no route answered). [`describe`] reports the routes' state; [`embed`] is `Embed`;
//! [`count`] is `CountTokens`.

mod admit;
mod count;
mod describe;
mod embed;
mod prepare;
mod stream;
mod table;
mod tally;
mod unary;

pub use embed::{MAX_DIMENSIONS, MAX_INPUTS};
pub use prepare::{
    DEFAULT_OUTPUT_ESTIMATE, MAX_TOOL_BYTES, MAX_TOOL_NAME, MAX_TOOLS, validate_request,
};
pub use table::Route;

use crate::config::SpokeConfig;
use crate::error::SpokeError;
use futures::Stream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchyard_core::backoff::Backoff;
use switchyard_proto::v1::InferEvent;
use switchyard_providers::Upstream;
use switchyard_quota::QuotaStore;
use table::RouteTable;

/// One account's engine: the upstream adapter, the quota store, the live route table and the
/// process-wide flags (draining, credentials). Built once by `server::serve`; shared by the gRPC
/// and HTTP surfaces.
pub struct Engine {
    provider: &'static str,
    account: String,
    upstream: Arc<dyn Upstream>,
    store: Arc<dyn QuotaStore>,
    table: arc_swap::ArcSwap<RouteTable>,
    backoff: Backoff,
    default_timeout: Duration,
    attempt_timeout: Option<Duration>,
    draining: AtomicBool,
    credentials_ok: AtomicBool,
}

/// A streamed answer: the route that committed, then its events.
pub type EventStream = std::pin::Pin<Box<dyn Stream<Item = Result<InferEvent, SpokeError>> + Send>>;

impl Engine {
    pub fn new(
        config: &SpokeConfig,
        upstream: Arc<dyn Upstream>,
        store: Arc<dyn QuotaStore>,
    ) -> Self {
        Self {
            table: arc_swap::ArcSwap::from_pointee(RouteTable::build(config, None)),
            provider: upstream.kind(),
            account: config.account.clone(),
            upstream,
            store,
            backoff: config.backoff,
            default_timeout: config.default_timeout,
            attempt_timeout: config.attempt_timeout,
            draining: AtomicBool::new(false),
            credentials_ok: AtomicBool::new(true),
        }
    }

    /// `"bedrock"`, `"openai"`, `"anthropic"` or `"simulated"` (the adapter's kind).
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The account id of the config, reported in every route and `Describe`.
    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn upstream(&self) -> &Arc<dyn Upstream> {
        &self.upstream
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn set_credentials_ok(&self, ok: bool) {
        self.credentials_ok.store(ok, Ordering::SeqCst);
    }

    pub fn credentials_ok(&self) -> bool {
        self.credentials_ok.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests;
