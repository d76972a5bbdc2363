//! The route table: every (model, region) route of the config with its shared state, swapped
//! whole by a config reload, and the plan of one request over it.

use super::Engine;
use crate::config::{Model, SpokeConfig};
use crate::error::SpokeError;
use crate::routes::RouteState;
use parking_lot::Mutex;
use std::sync::Arc;
use switchyard_proto::v1::InferRequest;
use switchyard_quota::Limits;

/// One (model, region) target and its state.
pub struct Route {
    pub model: String,
    pub upstream_model: String,
    /// How the adapter speaks to this model.
    pub options: switchyard_providers::ModelOptions,
    pub region: String,
    /// The account's configured quota for this route (a ceiling; see `RouteState::rate_factor`).
    pub(super) limits: Limits,
    /// Quota-store scope: `acct:{account}:{region}:{model}`, shared by every task of the spoke
    /// service when the store is Redis.
    pub(super) scope: String,
    /// Shared with the route's successor when a config reload keeps the (model, region).
    pub(super) state: Arc<Mutex<RouteState>>,
}

/// The models and their region chains: swapped whole by a config reload.
pub(super) struct RouteTable {
    pub(super) models: Vec<Model>,
    /// Routes grouped by model, each group in region-chain order.
    pub(super) routes: Vec<Vec<Arc<Route>>>,
}

impl RouteTable {
    /// Builds the routes of `config`, reusing the breaker / cool-down state of every
    /// (model, region) that `prev` already had.
    pub(super) fn build(config: &SpokeConfig, prev: Option<&RouteTable>) -> RouteTable {
        let now = std::time::Instant::now();
        let routes = config
            .models
            .iter()
            .map(|m| {
                m.regions
                    .iter()
                    .map(|r| {
                        let state = prev
                            .and_then(|p| {
                                p.routes
                                    .iter()
                                    .flatten()
                                    .find(|old| old.model == m.id && &old.region == r)
                            })
                            .map(|old| old.state.clone())
                            .unwrap_or_else(|| {
                                Arc::new(Mutex::new(
                                    RouteState::new(config.breaker, now)
                                        .with_probe_interval(config.denial_probe_interval),
                                ))
                            });
                        Arc::new(Route {
                            model: m.id.clone(),
                            upstream_model: m.upstream_id.clone(),
                            options: m.options,
                            region: r.clone(),
                            limits: Limits {
                                requests_per_minute: m.requests_per_minute,
                                tokens_per_minute: m.tokens_per_minute,
                                ..Limits::default()
                            },
                            scope: format!("acct:{}:{}:{}", config.account, r, m.id),
                            state,
                        })
                    })
                    .collect()
            })
            .collect();
        RouteTable {
            models: config.models.clone(),
            routes,
        }
    }
}

impl Engine {
    /// Config reload: swaps in the models, region chains and quotas of `config` at once;
    /// routes that still exist keep their breaker and cool-down state. Calls in flight finish on
    /// the routes they started with.
    pub fn reload_routes(&self, config: &SpokeConfig) {
        let prev = self.table.load_full();
        self.table
            .store(Arc::new(RouteTable::build(config, Some(&prev))));
    }

    /// The routes to try for a request, in order: each requested model (that this spoke serves,
    /// whose context window holds the request's `max_tokens` and whose capabilities cover what
    /// the request asks for) with its region chain, filtered by the allowed regions.
    pub fn plan(&self, req: &InferRequest) -> Result<Vec<Arc<Route>>, SpokeError> {
        let max_tokens = req.params.as_ref().and_then(|p| p.max_tokens);
        let mut known = false;
        // The largest context window among known models too small for `max_tokens`.
        let mut too_small: Option<u32> = None;
        // The first thing a known model could not honour: (request field, capability).
        let mut lacking: Option<(&'static str, &'static str)> = None;
        let mut capable = false;
        let mut fits = false;
        let mut plan = Vec::new();
        let table = self.table.load();
        for name in &req.models {
            let Some(i) = table.models.iter().position(|m| &m.id == name) else {
                continue;
            };
            known = true;
            if let Some(missing) = lacks(&table.models[i], req) {
                lacking.get_or_insert(missing);
                continue;
            }
            capable = true;
            let window = table.models[i].context_window;
            if let Some(m) = max_tokens
                && m > window
            {
                too_small = Some(too_small.map_or(window, |w| w.max(window)));
                continue;
            }
            fits = true;
            plan.extend(
                table.routes[i]
                    .iter()
                    .filter(|r| {
                        req.allowed_regions.is_empty() || req.allowed_regions.contains(&r.region)
                    })
                    .cloned(),
            );
        }
        if !known {
            return Err(SpokeError::UnknownModel(req.models.join(", ")));
        }
        if let (false, Some((field, capability))) = (capable, lacking) {
            return Err(SpokeError::BadRequest(format!(
                "{field}: none of the requested models can honour it (their [[models]] entries \
                 do not declare {capability})"
            )));
        }
        if let (false, Some(window), Some(m)) = (fits, too_small, max_tokens) {
            return Err(SpokeError::BadRequest(format!(
                "max_tokens: {m} is more than the context window of every requested model \
                 (the largest is {window} tokens)"
            )));
        }
        if plan.is_empty() {
            return Err(SpokeError::BadRequest(format!(
                "no route of the requested models is in the allowed regions ({})",
                req.allowed_regions.join(", ")
            )));
        }
        Ok(plan)
    }
}

/// The first thing `req` asks for that `model` does not declare: (the request field, the
/// capability), or `None` when the model can honour all of it. Settings that never change an
/// answer's form are not asked about: cache points (left out for models without
/// `prompt_caching`), reasoning `disabled`, tool choice `auto`, `parallel_tool_calls: true`.
pub(super) fn lacks(model: &Model, req: &InferRequest) -> Option<(&'static str, &'static str)> {
    use switchyard_proto::v1::{
        reasoning::Mode as ReasoningMode, response_format::Type as FormatType,
        tool_choice::Mode as ChoiceMode,
    };
    let p = req.params.clone().unwrap_or_default();
    let json = req
        .response_format
        .as_ref()
        .is_some_and(|f| f.r#type != FormatType::Text as i32);
    let reasoning = p.reasoning.as_ref().is_some_and(|r| {
        r.effort != "none"
            && (matches!(
                ReasoningMode::try_from(r.mode),
                Ok(ReasoningMode::Enabled | ReasoningMode::Adaptive)
            ) || (r.mode == ReasoningMode::Unspecified as i32 && !r.effort.is_empty()))
    });
    let choice = req
        .tool_choice
        .as_ref()
        .is_some_and(|c| c.mode != ChoiceMode::Auto as i32 && !req.tools.is_empty());
    let checks = [
        (
            json && !model.structured_output,
            ("response_format", "structured_output"),
        ),
        (reasoning && !model.reasoning, ("reasoning", "reasoning")),
        (p.n > model.max_choices.max(1), ("n", "max_choices")),
        (
            (p.logprobs || p.top_logprobs.is_some()) && !model.logprobs,
            ("logprobs", "logprobs"),
        ),
        (p.seed.is_some() && !model.seed, ("seed", "seed")),
        (
            (p.presence_penalty.is_some()
                || p.frequency_penalty.is_some()
                || !p.logit_bias.is_empty())
                && !model.penalties,
            (
                "presence_penalty, frequency_penalty, logit_bias",
                "penalties",
            ),
        ),
        (p.top_k.is_some() && !model.top_k, ("top_k", "top_k")),
        (choice && !model.tool_choice, ("tool_choice", "tool_choice")),
        (
            req.parallel_tool_calls == Some(false) && !req.tools.is_empty() && !model.tool_choice,
            ("parallel_tool_calls", "tool_choice"),
        ),
    ];
    checks
        .into_iter()
        .find(|(missing, _)| *missing)
        .map(|(_, what)| what)
}
