//! Unit tests of the engine's planning and request checks.

use super::*;
use crate::config::parse;
use crate::error::SpokeError;
use proptest::prelude::*;
use switchyard_proto::v1::InferRequest;
use switchyard_providers::simulated::{SimulatedConfig, SimulatedUpstream};

const REGIONS: [&str; 4] = ["r0", "r1", "r2", "r3"];

fn engine(chains: &[Vec<usize>]) -> Engine {
    let mut t =
        String::from("listen = \"127.0.0.1:0\"\naccount = \"1\"\nprovider = \"simulated\"\n");
    for r in REGIONS {
        t.push_str(&format!("[[regions]]\nname = \"{r}\"\n"));
    }
    for (i, chain) in chains.iter().enumerate() {
        let regions: Vec<String> = chain
            .iter()
            .map(|r| format!("\"{}\"", REGIONS[*r]))
            .collect();
        t.push_str(&format!(
            "[[models]]\nid = \"m{i}\"\nregions = [{}]\n",
            regions.join(",")
        ));
    }
    let config = parse(&t).unwrap();
    Engine::new(
        &config,
        Arc::new(SimulatedUpstream::new(SimulatedConfig::default())),
        Arc::new(switchyard_quota::MemoryStore::new()),
    )
}

fn chain() -> impl Strategy<Value = Vec<usize>> {
    Just(vec![0usize, 1, 2, 3])
        .prop_shuffle()
        .prop_flat_map(|v| (1..=4usize).prop_map(move |n| v[..n].to_vec()))
}

proptest! {
    /// The plan is: each requested model that the spoke serves, in request order, with its
    /// region chain in configured order, filtered by the allowed regions — nothing else.
    #[test]
    fn route_order_is_models_then_region_chains(
        chains in proptest::collection::vec(chain(), 1..4),
        asked in proptest::collection::vec(0usize..5, 1..4),
        allowed in proptest::collection::vec(0usize..4, 0..3),
    ) {
        let e = engine(&chains);
        let req = InferRequest {
            models: asked.iter().map(|m| format!("m{m}")).collect(),
            allowed_regions: allowed.iter().map(|r| REGIONS[*r].to_string()).collect(),
            ..Default::default()
        };
        let mut expected = Vec::new();
        let mut known = false;
        for m in &asked {
            let Some(chain) = chains.get(*m) else { continue };
            known = true;
            for r in chain {
                if allowed.is_empty() || allowed.contains(r) {
                    expected.push((format!("m{m}"), REGIONS[*r].to_string()));
                }
            }
        }
        match e.plan(&req) {
            Ok(plan) => {
                let got: Vec<_> = plan.iter().map(|r| (r.model.clone(), r.region.clone())).collect();
                prop_assert_eq!(got, expected);
            }
            Err(SpokeError::UnknownModel(_)) => prop_assert!(!known),
            Err(SpokeError::BadRequest(_)) => prop_assert!(known && expected.is_empty()),
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }
}

#[test]
fn requests_without_messages_or_models_are_refused() {
    let e = engine(&[vec![0]]);
    let empty = InferRequest {
        models: vec!["m0".into()],
        ..Default::default()
    };
    assert!(matches!(
        validate_request(&empty),
        Err(SpokeError::BadRequest(_))
    ));
    let req = InferRequest::default();
    assert!(matches!(e.plan(&req), Err(SpokeError::UnknownModel(_))));
}
