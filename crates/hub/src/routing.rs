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

/// Capabilities a request (or an alias) needs from a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub streaming: bool,
    pub tools: bool,
    /// The request carries images.
    pub images: bool,
    pub min_context_window: u32,
}

impl Needs {
    /// What a request in the internal model needs: streaming when the client streams, tools when
    /// it offers any, and a context window for its estimated input plus its `max_tokens` (the
    /// hub's one token estimate, `switchyard_proto::estimate_input_tokens`, for every surface).
    pub fn of_request(req: &switchyard_proto::v1::InferRequest, streaming: bool) -> Needs {
        let estimate =
            u32::try_from(switchyard_proto::estimate_input_tokens(req)).unwrap_or(u32::MAX);
        let out = req.params.as_ref().and_then(|p| p.max_tokens).unwrap_or(0);
        Needs {
            streaming,
            tools: !req.tools.is_empty(),
            min_context_window: estimate.saturating_add(out),
            images: false,
        }
    }

    /// Both sets of needs at once.
    pub fn union(self, other: Needs) -> Needs {
        Needs {
            streaming: self.streaming || other.streaming,
            tools: self.tools || other.tools,
            images: self.images || other.images,
            min_context_window: self.min_context_window.max(other.min_context_window),
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
}

impl ModelCaps {
    /// Whether these capabilities satisfy `needs`. A context window of 0 means "unknown" and
    /// satisfies any size.
    pub fn satisfies(&self, needs: &Needs) -> bool {
        (!needs.streaming || self.streaming)
            && (!needs.tools || self.tools)
            && (!needs.images || self.images)
            && (self.context_window == 0 || self.context_window >= needs.min_context_window)
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
    pub models: HashMap<String, ModelCaps>,
}

impl SpokeView {
    fn serves(&self, model: &str, needs: &Needs) -> bool {
        self.healthy
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
            },
        );
        SpokeView {
            id,
            weight,
            headroom,
            healthy,
            in_flight: 0,
            models,
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
