//! Unit tests of the engine's planning, request checks and denials.

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

/// An upstream whose answer per region is set by the test: `None` = a completion, `Some(e)` =
/// that error.
struct Scripted {
    by_region: parking_lot::Mutex<std::collections::HashMap<String, UpstreamError>>,
    calls: std::sync::atomic::AtomicU32,
}

impl Scripted {
    fn new() -> Arc<Scripted> {
        Arc::new(Scripted {
            by_region: parking_lot::Mutex::new(std::collections::HashMap::new()),
            calls: std::sync::atomic::AtomicU32::new(0),
        })
    }

    fn fail(&self, region: &str, e: UpstreamError) {
        self.by_region.lock().insert(region.to_owned(), e);
    }

    fn heal(&self, region: &str) {
        self.by_region.lock().remove(region);
    }
}

#[async_trait::async_trait]
impl Upstream for Scripted {
    fn kind(&self) -> &'static str {
        "simulated"
    }

    async fn complete(
        &self,
        call: switchyard_providers::Call<'_>,
    ) -> Result<switchyard_providers::Completion, UpstreamError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(e) = self.by_region.lock().get(call.region) {
            return Err(e.clone());
        }
        Ok(switchyard_providers::Completion {
            text: format!("from {}", call.region),
            tool_calls: vec![],
            stop_reason: switchyard_proto::v1::StopReason::EndTurn,
            usage: switchyard_proto::v1::Usage::default(),
            ..Default::default()
        })
    }

    async fn stream(
        &self,
        _call: switchyard_providers::Call<'_>,
    ) -> Result<switchyard_providers::ChunkStream, UpstreamError> {
        Err(UpstreamError::unavailable("not scripted"))
    }
}

/// Two models over regions r0, r1 with a short probe interval, on a scripted upstream.
fn scripted_engine(probe: &str) -> (Engine, Arc<Scripted>) {
    let t = format!(
        "listen = \"127.0.0.1:0\"\naccount = \"1\"\nprovider = \"simulated\"\n\
         [denial]\nprobe_interval = \"{probe}\"\n\
         [[regions]]\nname = \"r0\"\n[[regions]]\nname = \"r1\"\n\
         [[models]]\nid = \"a\"\ncontext_window = 1000\n[[models]]\nid = \"b\"\n"
    );
    let up = Scripted::new();
    let e = Engine::new(
        &parse(&t).unwrap(),
        up.clone(),
        Arc::new(switchyard_quota::MemoryStore::new()),
    );
    (e, up)
}

fn ask(models: &[&str]) -> InferRequest {
    InferRequest {
        models: models.iter().map(|m| m.to_string()).collect(),
        messages: vec![switchyard_proto::v1::Message {
            role: switchyard_proto::v1::Role::User as i32,
            content: vec![switchyard_proto::v1::ContentPart {
                part: Some(switchyard_proto::v1::content_part::Part::Text("hi".into())),
            }],
        }],
        ..Default::default()
    }
}

fn denied(why: DenyReason, ty: &str) -> UpstreamError {
    UpstreamError::Denied {
        why,
        reason: switchyard_providers::Reason::upstream(ty, "refused", &[]),
    }
}

fn outcomes(attempts: &[switchyard_proto::v1::Attempt]) -> Vec<(String, String, Outcome)> {
    attempts
        .iter()
        .map(|a| {
            let t = a.target.clone().unwrap_or_default();
            (t.model, t.region, Outcome::try_from(a.outcome).unwrap())
        })
        .collect()
}

fn o(model: &str, region: &str, outcome: Outcome) -> (String, String, Outcome) {
    (model.to_string(), region.to_string(), outcome)
}

fn region_state(
    d: &switchyard_proto::v1::DescribeResponse,
    model: &str,
    region: &str,
) -> (i32, String) {
    let r = d
        .models
        .iter()
        .find(|m| m.id == model)
        .and_then(|m| m.regions.iter().find(|r| r.region == region))
        .unwrap();
    (r.state, r.denied_reason.clone())
}

use switchyard_core::labels::DenyReason;
use switchyard_proto::v1::{Outcome, RouteState as WireState};
use switchyard_providers::UpstreamError;

#[tokio::test]
async fn a_model_access_denial_fails_over_and_denies_only_that_route() {
    let (e, up) = scripted_engine("5m");
    up.fail(
        "r0",
        denied(DenyReason::ModelAccess, "AccessDeniedException"),
    );
    let r = e.infer(ask(&["a"]), None).await.unwrap();
    assert_eq!(
        outcomes(&r.attempts),
        vec![o("a", "r0", Outcome::Denied), o("a", "r1", Outcome::Ok)]
    );
    assert_eq!(r.attempts[0].detail, "model_access: AccessDeniedException");
    let d = e.describe().await;
    assert_eq!(
        region_state(&d, "a", "r0"),
        (WireState::Denied as i32, "model_access".to_string())
    );
    // Route scope: model b in r0 is untouched.
    assert_eq!(region_state(&d, "b", "r0").0, WireState::Ready as i32);
    assert!(d.serving);
    // The next request skips the denied route without calling it.
    let before = up.calls.load(std::sync::atomic::Ordering::SeqCst);
    let r = e.infer(ask(&["a"]), None).await.unwrap();
    assert_eq!(
        outcomes(&r.attempts),
        vec![
            o("a", "r0", Outcome::SkippedDenied),
            o("a", "r1", Outcome::Ok)
        ]
    );
    assert_eq!(r.attempts[0].detail, "model_access");
    assert_eq!(
        up.calls.load(std::sync::atomic::Ordering::SeqCst),
        before + 1
    );
}

#[tokio::test]
async fn credentials_deny_the_whole_region_and_every_route_denied_is_the_accounts_fault() {
    let (e, up) = scripted_engine("5m");
    up.fail("r0", denied(DenyReason::Credentials, "invalid_api_key"));
    up.fail("r1", denied(DenyReason::Billing, "insufficient_quota"));
    let err = e.infer(ask(&["a", "b"]), None).await.unwrap_err();
    let SpokeError::AccountDenied {
        reasons,
        retry_after,
        attempts,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(reasons, &vec![DenyReason::Credentials, DenyReason::Billing]);
    assert!(
        *retry_after > std::time::Duration::from_secs(200),
        "{retry_after:?}"
    );
    // a/r0 and a/r1 were called; b's routes were already denied region-wide.
    assert_eq!(
        outcomes(attempts),
        vec![
            o("a", "r0", Outcome::Denied),
            o("a", "r1", Outcome::Denied),
            o("b", "r0", Outcome::SkippedDenied),
            o("b", "r1", Outcome::SkippedDenied),
        ]
    );
    let st = err.to_status();
    assert_eq!(st.code(), tonic::Code::FailedPrecondition);
    assert_eq!(st.metadata().get("x-switchyard-fault").unwrap(), "account");
    assert_eq!(
        st.metadata().get("x-switchyard-denied").unwrap(),
        "credentials,billing"
    );
    let d = e.describe().await;
    assert!(!d.serving);
    assert_eq!(region_state(&d, "b", "r0").1, "credentials");
    assert_eq!(region_state(&d, "b", "r1").1, "billing");
}

#[tokio::test]
async fn a_due_probe_that_succeeds_readmits_the_region() {
    let (e, up) = scripted_engine("100ms");
    up.fail("r0", denied(DenyReason::Credentials, "invalid_api_key"));
    e.infer(ask(&["a"]), None).await.unwrap();
    assert_eq!(
        region_state(&e.describe().await, "b", "r0").0,
        WireState::Denied as i32
    );
    up.heal("r0");
    // Until the probe is due the route is skipped; then one request probes and re-admits it,
    // and the rest of the region with it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = e.infer(ask(&["a"]), None).await.unwrap();
        if r.route.unwrap().region == "r0" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never re-admitted");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let d = e.describe().await;
    assert_eq!(region_state(&d, "a", "r0").0, WireState::Ready as i32);
    assert_eq!(region_state(&d, "b", "r0").0, WireState::Ready as i32);
}

#[tokio::test]
async fn the_callers_fault_ends_the_request_with_a_fixed_message() {
    let (e, up) = scripted_engine("5m");
    up.fail(
        "r0",
        UpstreamError::Invalid {
            reason: switchyard_providers::Reason::upstream(
                "invalid_request_error",
                "your key sk-test-1234567890 and balance $0.01",
                &[],
            ),
        },
    );
    let err = e.infer(ask(&["a"]), None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the model provider rejected the request (invalid_request_error)"
    );
    assert_eq!(err.attempts().len(), 1);
    assert_eq!(err.attempts()[0].detail, "invalid_request_error");
}

#[test]
fn max_tokens_beyond_every_context_window_is_refused_and_smaller_models_are_skipped() {
    let (e, _) = scripted_engine("5m");
    let mut req = ask(&["a", "b"]);
    req.params = Some(switchyard_proto::v1::GenerationParams {
        max_tokens: Some(1001),
        ..Default::default()
    });
    // a's window is 1000: only b is planned.
    let plan = e.plan(&req).unwrap();
    assert!(plan.iter().all(|r| r.model == "b"));
    req.models = vec!["a".into()];
    match e.plan(&req) {
        Err(SpokeError::BadRequest(m)) => assert!(m.starts_with("max_tokens:"), "{m}"),
        other => panic!("{:?}", other.map(|p| p.len())),
    }
}

#[test]
fn tools_are_bounded() {
    let tool = |name: &str, params: usize| switchyard_proto::v1::ToolSpec {
        name: name.into(),
        description: String::new(),
        parameters_json: "x".repeat(params),
        ..Default::default()
    };
    let mut req = ask(&["a"]);
    req.tools = vec![tool("t", 10); MAX_TOOLS + 1];
    assert!(
        matches!(validate_request(&req), Err(SpokeError::BadRequest(m)) if m.starts_with("tools:"))
    );
    req.tools = vec![tool(&"n".repeat(MAX_TOOL_NAME + 1), 10)];
    assert!(validate_request(&req).is_err());
    req.tools = vec![tool("t", MAX_TOOL_BYTES + 1)];
    assert!(validate_request(&req).is_err());
    req.tools = vec![tool("t", 10); MAX_TOOLS];
    assert!(validate_request(&req).is_ok());
}

#[tokio::test]
async fn embeddings_dimensions_are_bounded_before_any_call() {
    let (e, up) = scripted_engine("5m");
    let req = switchyard_proto::v1::EmbedRequest {
        models: vec!["a".into()],
        inputs: vec!["x".into()],
        dimensions: u32::MAX,
        ..Default::default()
    };
    match e.embed(req, None).await {
        Err(SpokeError::BadRequest(m)) => assert!(m.starts_with("dimensions:"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(up.calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}
