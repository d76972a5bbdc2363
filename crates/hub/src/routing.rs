//! Route selection: pure functions over plain values, no I/O.
//!
//! Step 1 (provider) and step 2 (model) happen in [`order_candidates`] + [`candidate_servable`]:
//! candidates are put in order (split, priority, preference) and the first one whose provider has
//! a healthy spoke that serves the model with the needed capabilities wins. Step 3 (account) is
//! [`pick_spoke`]. Step 4 (region) is the spoke's; the hub only passes allowed regions.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Duration;

use rand::Rng;

/// One `(provider, model)` an alias may be served by, with its priority, prices (USD per million
/// input/output tokens, from `[prices]` or the candidate) and split weight (percent).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub provider: String,
    pub model: String,
    pub priority: i32,
    pub price_in: Option<f64>,
    pub price_out: Option<f64>,
    pub weight: Option<u32>,
}

/// A client API whose fields may travel verbatim to an upstream that speaks it
/// (`InferRequest.passthrough`, Converse `additionalModelRequestFields`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// OpenAI chat completions (`Passthrough.api` `"openai"`); OpenAI-compatible upstreams.
    OpenAi,
    /// Anthropic Messages (`"anthropic"`); Anthropic upstreams.
    Anthropic,
    /// Bedrock Converse (`"converse"`); Bedrock upstreams.
    Converse,
}

impl Api {
    /// `Passthrough.api`'s value.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
            Api::Converse => "converse",
        }
    }

    /// From `Passthrough.api`; `None` for an unknown value.
    pub fn parse(s: &str) -> Option<Api> {
        match s {
            "openai" => Some(Api::OpenAi),
            "anthropic" => Some(Api::Anthropic),
            "converse" => Some(Api::Converse),
            _ => None,
        }
    }
}

/// What a spoke's upstream speaks, from `Describe.provider`: `"openai"` ↔ [`Api::OpenAi`],
/// `"anthropic"` ↔ [`Api::Anthropic`], `"bedrock"` ↔ [`Api::Converse`]; `"simulated"` takes a
/// passthrough of any API and ignores it; anything else (an unknown or older spoke) takes none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Speaks {
    #[default]
    Nothing,
    One(Api),
    /// The simulated upstream: accepts every API's passthrough (and ignores it).
    Any,
}

impl Speaks {
    /// From `Describe.provider`.
    pub fn of_provider(provider: &str) -> Speaks {
        match provider {
            "openai" => Speaks::One(Api::OpenAi),
            "anthropic" => Speaks::One(Api::Anthropic),
            "bedrock" => Speaks::One(Api::Converse),
            "simulated" => Speaks::Any,
            _ => Speaks::Nothing,
        }
    }

    /// Whether a request that needs `api` (None: no API-specific fields) may go here.
    pub fn takes(self, api: Option<Api>) -> bool {
        match (api, self) {
            (None, _) | (Some(_), Speaks::Any) => true,
            (Some(a), Speaks::One(b)) => a == b,
            (Some(_), Speaks::Nothing) => false,
        }
    }
}

/// A capability a request may need beyond streaming, tools, images and context size (the
/// `Capabilities` fields added in contract 1.3), named so a refusal can say which request field
/// asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// `ResponseFormat` JSON_OBJECT / JSON_SCHEMA → `structured_output`.
    StructuredOutput,
    /// `Reasoning` ENABLED / ADAPTIVE or an effort → `reasoning`.
    Reasoning,
    /// `n` > 1 → `max_choices` ≥ n.
    Choices,
    /// `logprobs` / `top_logprobs` → `logprobs`.
    Logprobs,
    /// `seed` → `seed`.
    Seed,
    /// `presence_penalty`, `frequency_penalty`, `logit_bias` → `penalties`.
    Penalties,
    /// `top_k` → `top_k`.
    TopK,
    /// `ToolChoice` ANY / NONE / TOOL or `parallel_tool_calls` → `tool_choice`.
    ToolChoice,
    /// Fields only one upstream API takes (a passthrough, Converse
    /// `additionalModelRequestFields` / `additionalModelResponseFieldPaths`) → a spoke whose
    /// provider speaks that API ([`Speaks`]).
    Api,
}

impl Feature {
    /// Every feature, in the order a refusal names the first missing one.
    pub const ALL: [Feature; 9] = [
        Feature::Api,
        Feature::StructuredOutput,
        Feature::Reasoning,
        Feature::ToolChoice,
        Feature::Choices,
        Feature::Logprobs,
        Feature::Seed,
        Feature::Penalties,
        Feature::TopK,
    ];

    /// The `Capabilities` field (or, for [`Feature::Api`], the spoke's provider) it needs.
    pub fn capability(self) -> &'static str {
        match self {
            Feature::StructuredOutput => "structured_output",
            Feature::Reasoning => "reasoning",
            Feature::Choices => "max_choices",
            Feature::Logprobs => "logprobs",
            Feature::Seed => "seed",
            Feature::Penalties => "penalties",
            Feature::TopK => "top_k",
            Feature::ToolChoice => "tool_choice",
            Feature::Api => "provider",
        }
    }
}

/// Which request field (in the caller's API's own terms) asked for each [`Feature`], filled by
/// the surface as it decodes the body, so a refusal names the field the caller sent (OpenAI
/// `reasoning_effort`, Anthropic `thinking` or `output_config.effort`, Converse
/// `additionalModelRequestFields.top_k`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AskedBy(Vec<(Feature, String)>);

impl AskedBy {
    /// Records that `field` asked for `feature` (the first field recorded wins).
    pub fn set(&mut self, feature: Feature, field: impl Into<String>) {
        if self.get(feature).is_none() {
            self.0.push((feature, field.into()));
        }
    }

    /// The field that asked for `feature`, if one was recorded.
    pub fn get(&self, feature: Feature) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| *f == feature)
            .map(|(_, s)| s.as_str())
    }
}

/// Capabilities a request (or an alias) needs from a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub streaming: bool,
    pub tools: bool,
    /// The request carries images.
    pub images: bool,
    pub min_context_window: u32,
    /// JSON mode or a JSON schema (`ResponseFormat` JSON_OBJECT / JSON_SCHEMA).
    pub structured_output: bool,
    /// Reasoning asked for (ENABLED, ADAPTIVE, or an effort other than `none`).
    pub reasoning: bool,
    /// Choices asked for (`n`); 0 and 1 = one.
    pub choices: u32,
    pub logprobs: bool,
    pub seed: bool,
    /// `presence_penalty`, `frequency_penalty` or `logit_bias`.
    pub penalties: bool,
    pub top_k: bool,
    /// `ToolChoice` other than AUTO, or `parallel_tool_calls` set.
    pub tool_choice: bool,
    /// Fields only spokes speaking this API take (passthrough, Converse additional fields).
    pub api: Option<Api>,
}

impl Needs {
    /// What a request in the internal model needs: streaming when the client streams, tools when
    /// it offers any, images when a message carries one, a context window for its estimated
    /// input plus its `max_tokens` (the hub's one token estimate,
    /// `switchyard_proto::estimate_input_tokens`, for every surface), and the capability of
    /// each contract-1.3 field it sets (see [`Feature`]).
    pub fn of_request(req: &switchyard_proto::v1::InferRequest, streaming: bool) -> Needs {
        use switchyard_proto::v1 as pb;
        let estimate =
            u32::try_from(switchyard_proto::estimate_input_tokens(req)).unwrap_or(u32::MAX);
        let p = req.params.clone().unwrap_or_default();
        let out = p.max_tokens.unwrap_or(0);
        let images = req
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .any(|p| matches!(p.part, Some(pb::content_part::Part::Image(_))));
        let structured_output = req.response_format.as_ref().is_some_and(|f| {
            matches!(
                pb::response_format::Type::try_from(f.r#type),
                Ok(pb::response_format::Type::JsonObject | pb::response_format::Type::JsonSchema)
            )
        });
        let reasoning =
            p.reasoning.as_ref().is_some_and(|r| {
                match pb::reasoning::Mode::try_from(r.mode)
                    .unwrap_or(pb::reasoning::Mode::Unspecified)
                {
                    pb::reasoning::Mode::Enabled | pb::reasoning::Mode::Adaptive => true,
                    pb::reasoning::Mode::Disabled => false,
                    pb::reasoning::Mode::Unspecified => !r.effort.is_empty() && r.effort != "none",
                }
            });
        let tool_choice = req.parallel_tool_calls.is_some()
            || req
                .tool_choice
                .as_ref()
                .is_some_and(|c| c.mode != pb::tool_choice::Mode::Auto as i32);
        let api = req
            .passthrough
            .as_ref()
            .and_then(|p| Api::parse(&p.api))
            .or_else(|| {
                (!req.additional_model_request_fields_json.is_empty()
                    || !req.additional_model_response_field_paths.is_empty())
                .then_some(Api::Converse)
            });
        Needs {
            streaming,
            tools: !req.tools.is_empty(),
            min_context_window: estimate.saturating_add(out),
            images,
            structured_output,
            reasoning,
            choices: p.n,
            logprobs: p.logprobs || p.top_logprobs.is_some_and(|n| n > 0),
            seed: p.seed.is_some(),
            penalties: p.presence_penalty.is_some()
                || p.frequency_penalty.is_some()
                || !p.logit_bias.is_empty(),
            top_k: p.top_k.is_some(),
            tool_choice,
            api,
        }
    }

    /// Both sets of needs at once.
    pub fn union(self, other: Needs) -> Needs {
        Needs {
            streaming: self.streaming || other.streaming,
            tools: self.tools || other.tools,
            images: self.images || other.images,
            min_context_window: self.min_context_window.max(other.min_context_window),
            structured_output: self.structured_output || other.structured_output,
            reasoning: self.reasoning || other.reasoning,
            choices: self.choices.max(other.choices),
            logprobs: self.logprobs || other.logprobs,
            seed: self.seed || other.seed,
            penalties: self.penalties || other.penalties,
            top_k: self.top_k || other.top_k,
            tool_choice: self.tool_choice || other.tool_choice,
            api: self.api.or(other.api),
        }
    }

    /// The same needs without the [`Feature`]s: what the request would need if it asked for
    /// none of them.
    pub fn basic(self) -> Needs {
        Needs {
            streaming: self.streaming,
            tools: self.tools,
            images: self.images,
            min_context_window: self.min_context_window,
            ..Needs::default()
        }
    }

    /// Whether the request asks for `f`.
    pub fn asks(&self, f: Feature) -> bool {
        match f {
            Feature::StructuredOutput => self.structured_output,
            Feature::Reasoning => self.reasoning,
            Feature::Choices => self.choices > 1,
            Feature::Logprobs => self.logprobs,
            Feature::Seed => self.seed,
            Feature::Penalties => self.penalties,
            Feature::TopK => self.top_k,
            Feature::ToolChoice => self.tool_choice,
            Feature::Api => self.api.is_some(),
        }
    }
}

/// What a spoke reported (via `Describe`) about one model.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModelCaps {
    pub streaming: bool,
    pub tools: bool,
    pub images: bool,
    pub context_window: u32,
    pub structured_output: bool,
    pub reasoning: bool,
    /// Largest `n`; 0 and 1 = one choice.
    pub max_choices: u32,
    pub logprobs: bool,
    /// Cache points are honoured (never a routing need: without it they are left out).
    pub prompt_caching: bool,
    pub seed: bool,
    pub penalties: bool,
    pub top_k: bool,
    pub tool_choice: bool,
    /// What the spoke's upstream speaks (`Describe.provider`, the same for all its models).
    pub speaks: Speaks,
}

impl ModelCaps {
    /// Whether these capabilities satisfy `needs`. A context window of 0 means "unknown" and
    /// satisfies any size.
    pub fn satisfies(&self, needs: &Needs) -> bool {
        (!needs.streaming || self.streaming)
            && (!needs.tools || self.tools)
            && (!needs.images || self.images)
            && (self.context_window == 0 || self.context_window >= needs.min_context_window)
            && Feature::ALL.iter().all(|f| self.has(*f, needs))
    }

    /// Whether the model can honour feature `f` as `needs` asks for it (true when it does not
    /// ask for it).
    pub fn has(&self, f: Feature, needs: &Needs) -> bool {
        if !needs.asks(f) {
            return true;
        }
        match f {
            Feature::StructuredOutput => self.structured_output,
            Feature::Reasoning => self.reasoning,
            Feature::Choices => self.max_choices >= needs.choices,
            Feature::Logprobs => self.logprobs,
            Feature::Seed => self.seed,
            Feature::Penalties => self.penalties,
            Feature::TopK => self.top_k,
            Feature::ToolChoice => self.tool_choice,
            Feature::Api => self.speaks.takes(needs.api),
        }
    }

    /// The first [`Feature`] (in [`Feature::ALL`]'s order) `needs` asks for and these
    /// capabilities lack.
    pub fn lacks(&self, needs: &Needs) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| !self.has(*f, needs))
    }
}

/// A spoke as the selector sees it: a snapshot, no locks.
#[derive(Debug, Clone, Default)]
pub struct SpokeView {
    pub id: u64,
    pub weight: u32,
    /// 0.0 ..= 1.0, from the last `Describe`.
    pub headroom: f64,
    pub healthy: bool,
    pub in_flight: u32,
    /// What the spoke's last `Describe` said it serves (shared with the spoke's state, not
    /// copied per request).
    pub models: std::sync::Arc<HashMap<String, ModelCaps>>,
    /// Models the spoke's account refused and whose next probe is not due: not served here.
    pub denied: Vec<String>,
}

impl SpokeView {
    fn serves(&self, model: &str, needs: &Needs) -> bool {
        self.healthy
            && !self.denied.iter().any(|m| m == model)
            && self
                .models
                .get(model)
                .is_some_and(|caps| caps.satisfies(needs))
    }

    /// Configured weight scaled by headroom; a spoke at quota gets 0.
    pub fn effective_weight(&self) -> f64 {
        let h = if self.headroom.is_finite() {
            self.headroom.clamp(0.0, 1.0)
        } else {
            0.0
        };
        f64::from(self.weight) * h
    }
}

/// How the client asked to order candidates (`x-switchyard-route-preference`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Preference {
    #[default]
    Priority,
    Cheapest,
    Fastest,
}

impl Preference {
    /// Parses the header value; unknown values are `None` (→ 400).
    pub fn parse(v: &str) -> Option<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "" | "priority" | "default" => Some(Self::Priority),
            "cheapest" => Some(Self::Cheapest),
            "fastest" => Some(Self::Fastest),
            _ => None,
        }
    }
}

/// Puts an alias's candidates in the order they will be tried.
///
/// Default: by `priority` (lower first, stable). If some candidates carry a split `weight`, one of
/// them is drawn by weight (`roll` in 0..100) and moved to the front; the rest keep priority
/// order. `Cheapest` sorts by `price_in + price_out` (unknown prices last); `Fastest` by observed
/// latency (unknown last); both keep priority order among ties and ignore the split.
pub fn order_candidates(
    candidates: &[Candidate],
    pref: Preference,
    latency: &dyn Fn(&Candidate) -> Option<Duration>,
    roll: u32,
) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = candidates.to_vec();
    out.sort_by_key(|c| c.priority);
    match pref {
        Preference::Priority => {
            let total: u32 = out.iter().filter_map(|c| c.weight).sum();
            if total > 0 {
                let mut r = roll % total;
                let mut chosen = None;
                for (i, c) in out.iter().enumerate() {
                    if let Some(w) = c.weight {
                        if r < w {
                            chosen = Some(i);
                            break;
                        }
                        r -= w;
                    }
                }
                if let Some(i) = chosen {
                    let c = out.remove(i);
                    out.insert(0, c);
                }
            }
        }
        Preference::Cheapest => {
            let price = |c: &Candidate| match (c.price_in, c.price_out) {
                (None, None) => f64::INFINITY,
                (a, b) => a.unwrap_or(0.0) + b.unwrap_or(0.0),
            };
            out.sort_by(|a, b| price(a).partial_cmp(&price(b)).unwrap_or(Ordering::Equal));
        }
        Preference::Fastest => {
            let lat = |c: &Candidate| latency(c).unwrap_or(Duration::MAX);
            out.sort_by_key(|c| lat(c));
        }
    }
    out
}

/// Step 1 + 2: whether any healthy spoke of the candidate's pool serves its model with `needs`.
pub fn candidate_servable(spokes: &[SpokeView], model: &str, needs: &Needs) -> bool {
    spokes.iter().any(|s| s.serves(model, needs))
}

/// Step 3: picks a spoke for `model` among the healthy ones not in `exclude`.
///
/// Weighted random by [`SpokeView::effective_weight`]; among the spokes of the same effective
/// weight as the drawn one, a second one is drawn and the one with fewer requests in flight wins
/// (power of two choices), which keeps the long-run split equal to the weights. Spokes with zero
/// effective weight (at quota) are used only when no other is left, fewest in flight first.
pub fn pick_spoke<R: Rng + ?Sized>(
    spokes: &[SpokeView],
    model: &str,
    needs: &Needs,
    exclude: &[u64],
    rng: &mut R,
) -> Option<u64> {
    let eligible: Vec<&SpokeView> = spokes
        .iter()
        .filter(|s| s.serves(model, needs) && !exclude.contains(&s.id))
        .collect();
    if eligible.is_empty() {
        return None;
    }
    let positive: Vec<(&SpokeView, f64)> = eligible
        .iter()
        .map(|s| (*s, s.effective_weight()))
        .filter(|(_, w)| *w > 0.0)
        .collect();
    if positive.is_empty() {
        return eligible.iter().min_by_key(|s| s.in_flight).map(|s| s.id);
    }
    let total: f64 = positive.iter().map(|(_, w)| w).sum();
    let mut r = rng.random::<f64>() * total;
    let mut first = positive[positive.len() - 1];
    for (s, w) in &positive {
        if r < *w {
            first = (*s, *w);
            break;
        }
        r -= w;
    }
    let peers: Vec<&SpokeView> = positive
        .iter()
        .filter(|(s, w)| s.id != first.0.id && same_weight(*w, first.1))
        .map(|(s, _)| *s)
        .collect();
    if peers.is_empty() {
        return Some(first.0.id);
    }
    let second = peers[rng.random_range(0..peers.len())];
    if second.in_flight < first.0.in_flight {
        Some(second.id)
    } else {
        Some(first.0.id)
    }
}

fn same_weight(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn spoke(id: u64, weight: u32, headroom: f64, healthy: bool) -> SpokeView {
        let mut models = HashMap::new();
        models.insert(
            "m".to_string(),
            ModelCaps {
                streaming: true,
                tools: false,
                images: false,
                context_window: 1000,
                ..ModelCaps::default()
            },
        );
        SpokeView {
            id,
            weight,
            headroom,
            healthy,
            in_flight: 0,
            models: std::sync::Arc::new(models),
            denied: Vec::new(),
        }
    }

    fn cand(model: &str, priority: i32) -> Candidate {
        Candidate {
            provider: "p".into(),
            model: model.into(),
            priority,
            price_in: None,
            price_out: None,
            weight: None,
        }
    }

    #[test]
    fn weighted_three_to_one() {
        let spokes = vec![spoke(1, 3, 1.0, true), spoke(2, 1, 1.0, true)];
        let mut rng = StdRng::seed_from_u64(7);
        let mut n1 = 0;
        for _ in 0..10_000 {
            if pick_spoke(&spokes, "m", &Needs::default(), &[], &mut rng) == Some(1) {
                n1 += 1;
            }
        }
        assert!((7_200..7_800).contains(&n1), "{n1}");
    }

    #[test]
    fn headroom_scales_and_zero_is_last_resort() {
        let spokes = vec![spoke(1, 1, 0.0, true), spoke(2, 1, 0.5, true)];
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            assert_eq!(
                pick_spoke(&spokes, "m", &Needs::default(), &[], &mut rng),
                Some(2)
            );
        }
        assert_eq!(
            pick_spoke(&spokes, "m", &Needs::default(), &[2], &mut rng),
            Some(1)
        );
        assert_eq!(
            pick_spoke(&spokes, "m", &Needs::default(), &[1, 2], &mut rng),
            None
        );
    }

    #[test]
    fn a_model_denied_at_a_spoke_is_not_served_there() {
        let mut denied = spoke(1, 1, 1.0, true);
        denied.denied = vec!["m".into()];
        let spokes = vec![denied.clone(), spoke(2, 1, 1.0, true)];
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..50 {
            assert_eq!(
                pick_spoke(&spokes, "m", &Needs::default(), &[], &mut rng),
                Some(2)
            );
        }
        assert_eq!(
            pick_spoke(&[denied.clone()], "m", &Needs::default(), &[], &mut rng),
            None
        );
        // The shared map itself is untouched: the spoke still lists the model.
        assert!(denied.models.contains_key("m"));
    }

    #[test]
    fn capabilities_filter() {
        let spokes = vec![spoke(1, 1, 1.0, true)];
        let mut rng = StdRng::seed_from_u64(1);
        let tools = Needs {
            tools: true,
            ..Needs::default()
        };
        assert_eq!(pick_spoke(&spokes, "m", &tools, &[], &mut rng), None);
        let images = Needs {
            images: true,
            ..Needs::default()
        };
        assert!(!candidate_servable(&spokes, "m", &images));
        let big = Needs {
            min_context_window: 5000,
            ..Needs::default()
        };
        assert!(!candidate_servable(&spokes, "m", &big));
        assert!(candidate_servable(&spokes, "m", &Needs::default()));
        assert!(!candidate_servable(&spokes, "other", &Needs::default()));
    }

    #[test]
    fn contract_1_3_features_filter_models() {
        use switchyard_proto::v1 as pb;
        let req = pb::InferRequest {
            response_format: Some(pb::ResponseFormat {
                r#type: pb::response_format::Type::JsonSchema as i32,
                ..Default::default()
            }),
            params: Some(pb::GenerationParams {
                n: 3,
                seed: Some(7),
                ..Default::default()
            }),
            passthrough: Some(pb::Passthrough {
                api: "openai".into(),
                fields_json: "{\"verbosity\":\"low\"}".into(),
            }),
            ..Default::default()
        };
        let needs = Needs::of_request(&req, false);
        assert!(needs.structured_output && needs.seed && needs.choices == 3);
        assert_eq!(needs.api, Some(Api::OpenAi));
        assert!(!needs.reasoning && !needs.penalties && !needs.tool_choice);
        let mut caps = ModelCaps {
            streaming: true,
            structured_output: true,
            seed: true,
            max_choices: 2,
            speaks: Speaks::One(Api::OpenAi),
            ..ModelCaps::default()
        };
        assert_eq!(caps.lacks(&needs), Some(Feature::Choices));
        caps.max_choices = 4;
        assert!(caps.satisfies(&needs));
        caps.speaks = Speaks::One(Api::Converse);
        assert_eq!(caps.lacks(&needs), Some(Feature::Api));
        caps.speaks = Speaks::Any;
        assert!(caps.satisfies(&needs));
        assert!(caps.satisfies(&needs.basic()));
        assert!(!ModelCaps::default().satisfies(&needs));
        assert!(ModelCaps::default().satisfies(&needs.basic()));
        // Disabled reasoning and effort "none" need nothing; an effort alone needs reasoning.
        let reasoning = |mode: pb::reasoning::Mode, effort: &str| {
            let req = pb::InferRequest {
                params: Some(pb::GenerationParams {
                    reasoning: Some(pb::Reasoning {
                        mode: mode as i32,
                        effort: effort.into(),
                        budget_tokens: 0,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            Needs::of_request(&req, false).reasoning
        };
        assert!(!reasoning(pb::reasoning::Mode::Disabled, "high"));
        assert!(!reasoning(pb::reasoning::Mode::Unspecified, "none"));
        assert!(reasoning(pb::reasoning::Mode::Unspecified, "low"));
        assert!(reasoning(pb::reasoning::Mode::Adaptive, ""));
        assert_eq!(Speaks::of_provider("bedrock"), Speaks::One(Api::Converse));
        assert!(!Speaks::of_provider("fake").takes(Some(Api::Anthropic)));
        assert!(Speaks::of_provider("fake").takes(None));
    }

    #[test]
    fn power_of_two_prefers_fewer_in_flight_among_equals() {
        let mut a = spoke(1, 1, 1.0, true);
        a.in_flight = 10;
        let b = spoke(2, 1, 1.0, true);
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..100 {
            assert_eq!(
                pick_spoke(
                    &[a.clone(), b.clone()],
                    "m",
                    &Needs::default(),
                    &[],
                    &mut rng
                ),
                Some(2)
            );
        }
    }

    #[test]
    fn candidate_order_priority_split_and_preferences() {
        let mut a = cand("a", 1);
        let mut b = cand("b", 0);
        let c = cand("c", 2);
        let none = |_: &Candidate| None;
        let order = order_candidates(
            &[a.clone(), b.clone(), c.clone()],
            Preference::Priority,
            &none,
            0,
        );
        assert_eq!(
            order.iter().map(|c| c.model.as_str()).collect::<Vec<_>>(),
            ["b", "a", "c"]
        );
        // 90/10 split between a and b: roll < 10 → b first (b sorts first by priority).
        a.weight = Some(90);
        b.weight = Some(10);
        let first = |roll| {
            order_candidates(
                &[a.clone(), b.clone(), c.clone()],
                Preference::Priority,
                &none,
                roll,
            )[0]
            .model
            .clone()
        };
        assert_eq!(first(5), "b");
        assert_eq!(first(50), "a");
        // cheapest
        a.price_in = Some(1.0);
        b.price_in = Some(3.0);
        let order = order_candidates(
            &[a.clone(), b.clone(), c.clone()],
            Preference::Cheapest,
            &none,
            0,
        );
        assert_eq!(order[0].model, "a");
        assert_eq!(order[2].model, "c");
        // fastest
        let lat = |c: &Candidate| match c.model.as_str() {
            "c" => Some(Duration::from_millis(5)),
            "a" => Some(Duration::from_millis(50)),
            _ => None,
        };
        let order = order_candidates(&[a, b, c], Preference::Fastest, &lat, 0);
        assert_eq!(
            order.iter().map(|c| c.model.as_str()).collect::<Vec<_>>(),
            ["c", "a", "b"]
        );
    }

    proptest! {
        #[test]
        fn never_picks_unhealthy_or_excluded(
            specs in proptest::collection::vec((1u32..10, 0.0f64..1.0, any::<bool>(), 0u32..5), 1..8),
            exclude_mask in any::<u8>(),
            seed in any::<u64>(),
        ) {
            let spokes: Vec<SpokeView> = specs.iter().enumerate().map(|(i, (w, h, ok, inf))| {
                let mut s = spoke(i as u64, *w, *h, *ok);
                s.in_flight = *inf;
                s
            }).collect();
            let exclude: Vec<u64> = (0..8u64).filter(|i| exclude_mask & (1 << i) != 0).collect();
            let mut rng = StdRng::seed_from_u64(seed);
            let picked = pick_spoke(&spokes, "m", &Needs::default(), &exclude, &mut rng);
            let any_ok = spokes.iter().any(|s| s.healthy && !exclude.contains(&s.id));
            match picked {
                Some(id) => {
                    let s = &spokes[id as usize];
                    prop_assert!(s.healthy);
                    prop_assert!(!exclude.contains(&id));
                }
                None => prop_assert!(!any_ok),
            }
        }

        #[test]
        fn long_run_follows_weights(w1 in 1u32..10, w2 in 1u32..10, seed in any::<u64>()) {
            let spokes = vec![spoke(1, w1, 1.0, true), spoke(2, w2, 1.0, true)];
            let mut rng = StdRng::seed_from_u64(seed);
            let n = 4000;
            let mut hits = 0u32;
            for _ in 0..n {
                if pick_spoke(&spokes, "m", &Needs::default(), &[], &mut rng) == Some(1) {
                    hits += 1;
                }
            }
            let expected = f64::from(w1) / f64::from(w1 + w2);
            let got = f64::from(hits) / f64::from(n);
            prop_assert!((got - expected).abs() < 0.05, "expected {expected}, got {got}");
        }
    }
}
