//! End-to-end, through the real `spoke` binary against the wire-faithful fakes: the account's
//! faults (issue 17). One region of a two-region spoke refuses the account the way each
//! provider really does — Bedrock `AccessDeniedException` / `UnrecognizedClientException`, OpenAI
//! 401 `invalid_api_key` / 429 `insufficient_quota` / 404 `model_not_found`, Anthropic's
//! credit-balance 400 — and the spoke fails over to the other region with no error to the
//! client, shows the route `denied` (with its reason) in `/healthz` and `Describe` after one
//! request, and re-admits it once the upstream serves the account again. When every route
//! refuses, the hub gets FAILED_PRECONDITION with `x-switchyard-fault: account`.
//! Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_e2e::{FakeUpstream as Fake, UpstreamKind as Provider};
use switchyard_e2e::{Spoke, o, outcomes, request, spoke_toml};
use switchyard_proto::v1::{DescribeRequest, DescribeResponse, Outcome, RouteState};
use switchyard_testkit::behavior::{AccountFault, Behavior, ErrorKind};
use switchyard_testkit::process::eventually;

const KEY: &str = "sk-test-account-key-0123456789abcdef";

/// A spoke of `provider` with regions `ra` (fake `a`) and `rb` (fake `b`), models `m1` and
/// `m2` in both, and denied routes probed every second (unless told otherwise).
struct Stack {
    a: Fake,
    b: Fake,
    spoke: Spoke,
}

impl Stack {
    async fn start(provider: Provider) -> Stack {
        Self::start_with(provider, &[], "1s").await
    }

    /// With extra environment variables and `[denial] probe_interval = probe`.
    async fn start_with(provider: Provider, env: &[(&str, &str)], probe: &str) -> Stack {
        let a = Fake::start(provider, "a").await;
        let b = Fake::start(provider, "b").await;
        let (name, section) = match provider {
            Provider::Bedrock => ("bedrock", ""),
            Provider::OpenAi => ("openai", "[openai]\napi_key_env = \"TEST_UPSTREAM_KEY\"\n"),
            Provider::Anthropic => (
                "anthropic",
                "[anthropic]\napi_key_env = \"TEST_UPSTREAM_KEY\"\n",
            ),
        };
        let toml = spoke_toml(
            name,
            &[("ra", &a.url()), ("rb", &b.url())],
            "[[models]]\nid = \"m1\"\nupstream_id = \"model-one\"\n\
             [[models]]\nid = \"m2\"\nupstream_id = \"model-two\"\n",
            &format!("{section}[denial]\nprobe_interval = \"{probe}\"\n"),
        );
        let mut all_env = vec![("TEST_UPSTREAM_KEY", KEY)];
        all_env.extend_from_slice(env);
        let spoke = Spoke::start_with_env(&toml, &all_env).await.unwrap();
        Stack { a, b, spoke }
    }

    async fn describe(&self) -> DescribeResponse {
        let mut c = self.spoke.grpc().await.unwrap();
        c.describe(DescribeRequest {}).await.unwrap().into_inner()
    }

    async fn healthz(&self) -> (u16, Value) {
        let r = reqwest::get(format!("{}/healthz", self.spoke.url()))
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn inference(&self, model: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/inference", self.spoke.url()))
            .json(&json!({"models": [model], "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

/// (state, denied_reason) of `model` in `region`, from `Describe`.
fn route_of(d: &DescribeResponse, model: &str, region: &str) -> (RouteState, String) {
    let r = d
        .models
        .iter()
        .find(|m| m.id == model)
        .and_then(|m| m.regions.iter().find(|r| r.region == region))
        .unwrap_or_else(|| panic!("{model}/{region} not in {d:?}"));
    (
        RouteState::try_from(r.state).unwrap(),
        r.denied_reason.clone(),
    )
}

/// The `/healthz` entry of `model` in `region`.
fn health_of<'a>(h: &'a Value, model: &str, region: &str) -> &'a Value {
    h["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == model)
        .and_then(|m| {
            m["regions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["region"] == region)
        })
        .unwrap_or_else(|| panic!("{model}/{region} not in {h}"))
}

/// One account fault on region `ra`: failover with no client error, `denied` after one
/// request (the whole region for credentials and billing), steady load without errors, and
/// re-admission once the fake serves the account again.
async fn fault_fails_over_and_recovers(provider: Provider, fault: Behavior, reason: &str) {
    let s = Stack::start(provider).await;
    let region_wide = matches!(reason, "credentials" | "billing");
    s.a.set_default(fault.clone());
    let mut client = s.spoke.grpc().await.unwrap();

    // 1. The first request fails over inside the spoke: no error to the client.
    let r = client
        .infer(request(&["m1"], "hello"))
        .await
        .unwrap_or_else(|e| panic!("{provider:?} {fault:?}: {e:?}"))
        .into_inner();
    assert_eq!(
        outcomes(&r.attempts),
        vec![o("m1", "ra", Outcome::Denied), o("m1", "rb", Outcome::Ok)],
        "{provider:?} {fault:?}"
    );
    assert!(
        r.attempts[0].detail.starts_with(reason),
        "{:?}",
        r.attempts[0]
    );
    assert_eq!(r.route.unwrap().region, "rb");

    // 2. Within that one request the route is `denied`, with its reason, in Describe and
    //    /healthz — the whole region for credentials and billing, only the route otherwise.
    let d = s.describe().await;
    assert_eq!(
        route_of(&d, "m1", "ra"),
        (RouteState::Denied, reason.to_string())
    );
    let m2 = route_of(&d, "m2", "ra");
    if region_wide {
        assert_eq!(m2, (RouteState::Denied, reason.to_string()));
    } else {
        assert_eq!(m2.0, RouteState::Ready);
    }
    assert_eq!(route_of(&d, "m1", "rb").0, RouteState::Ready);
    assert!(d.serving);
    let (code, h) = s.healthz().await;
    assert_eq!(code, 200, "{h}");
    assert_eq!(h["status"], "ok");
    let ra = health_of(&h, "m1", "ra");
    assert_eq!(ra["state"], "denied", "{h}");
    assert_eq!(ra["denied_reason"], reason, "{h}");
    assert!(ra["denied_error_type"].is_string(), "{h}");
    // One log line per route that changed state (the line is read from the process' pipe).
    let lines = if region_wide { 2 } else { 1 };
    assert!(
        eventually(Duration::from_secs(5), || async {
            s.spoke.proc.count_log("route denied") >= lines
        })
        .await
    );
    assert_eq!(s.spoke.proc.count_log("route denied"), lines);

    // 3. Steady load: no client errors, and the denied region is not called again before its
    //    probe is due (at most one probe per second).
    let a_before = s.a.total_calls();
    let started = std::time::Instant::now();
    for i in 0..20 {
        let model = if i % 2 == 0 { "m1" } else { "m2" };
        let r = client.infer(request(&[model], "load")).await;
        assert!(r.is_ok(), "request {i}: {r:?}");
        let (code, body) = s.inference(model).await;
        assert_eq!(code, 200, "request {i}: {body}");
    }
    let probes_allowed = 2 * (started.elapsed().as_secs() + 1);
    assert!(
        s.a.total_calls() - a_before <= probes_allowed,
        "{} calls to the denied region",
        s.a.total_calls() - a_before
    );

    // 4. The account is served again: a probe re-admits the route (and its region).
    s.a.clear_behaviors();
    let readmitted = eventually(Duration::from_secs(15), || {
        let mut client = client.clone();
        async move {
            let r = client
                .infer(request(&["m1"], "are you back"))
                .await
                .unwrap()
                .into_inner();
            r.route.unwrap().region == "ra"
        }
    })
    .await;
    assert!(readmitted, "{provider:?} {fault:?}: never re-admitted");
    let d = s.describe().await;
    assert_eq!(route_of(&d, "m1", "ra").0, RouteState::Ready);
    if region_wide {
        assert_eq!(route_of(&d, "m2", "ra").0, RouteState::Ready);
    }
    let (_, h) = s.healthz().await;
    assert_eq!(health_of(&h, "m1", "ra")["state"], "ready", "{h}");
    assert!(health_of(&h, "m1", "ra")["denied_reason"].is_null(), "{h}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            s.spoke.proc.count_log("route re-admitted") >= 1
        })
        .await
    );
    // The account's key never reached a log line.
    assert!(!s.spoke.proc.logs().contains(KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_access_denied_fails_over_and_recovers() {
    fault_fails_over_and_recovers(
        Provider::Bedrock,
        Behavior::Error {
            error: ErrorKind::AccessDenied,
        },
        "model_access",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_unrecognized_credentials_fail_over_and_recover() {
    fault_fails_over_and_recovers(
        Provider::Bedrock,
        Behavior::AccountFault {
            fault: AccountFault::Credentials,
        },
        "credentials",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_revoked_key_fails_over_and_recovers() {
    fault_fails_over_and_recovers(
        Provider::OpenAi,
        Behavior::AccountFault {
            fault: AccountFault::Credentials,
        },
        "credentials",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_insufficient_quota_fails_over_and_recovers() {
    fault_fails_over_and_recovers(
        Provider::OpenAi,
        Behavior::AccountFault {
            fault: AccountFault::Billing,
        },
        "billing",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_model_not_found_fails_over_and_recovers() {
    fault_fails_over_and_recovers(
        Provider::OpenAi,
        Behavior::AccountFault {
            fault: AccountFault::ModelNotFound,
        },
        "model_not_found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_credit_balance_fails_over_and_recovers() {
    fault_fails_over_and_recovers(
        Provider::Anthropic,
        Behavior::AccountFault {
            fault: AccountFault::Billing,
        },
        "billing",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_permission_error_fails_over_and_recovers() {
    fault_fails_over_and_recovers(
        Provider::Anthropic,
        Behavior::AccountFault {
            fault: AccountFault::ModelAccess,
        },
        "model_access",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refusing_the_account_is_failed_precondition_with_account_metadata() {
    let s = Stack::start_with(Provider::OpenAi, &[], "1m").await;
    s.a.set_default(Behavior::AccountFault {
        fault: AccountFault::Credentials,
    });
    s.b.set_default(Behavior::AccountFault {
        fault: AccountFault::Billing,
    });
    let mut client = s.spoke.grpc().await.unwrap();
    let err = client
        .infer(request(&["m1", "m2"], "anyone?"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let md = err.metadata();
    assert_eq!(md.get(switchyard_proto::FAULT).unwrap(), "account");
    assert_eq!(
        md.get(switchyard_proto::DENIED).unwrap(),
        "credentials,billing"
    );
    // m1 in both regions was called; m2 was denied with its regions and skipped.
    assert_eq!(md.get(switchyard_proto::ATTEMPTS).unwrap(), "4");
    let retry_ms: u64 = md
        .get(switchyard_proto::RETRY_AFTER_MS)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_ms > 50_000 && retry_ms <= 60_000, "{retry_ms}");
    // Never the upstream's words.
    assert!(!err.message().contains("quota"), "{err:?}");
    assert!(!err.message().contains("Incorrect"), "{err:?}");
    assert_eq!((s.a.total_calls(), s.b.total_calls()), (1, 1));

    // Streams answer the same, before any event.
    let err = client
        .infer_stream(request(&["m1"], "stream?"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        err.metadata().get(switchyard_proto::FAULT).unwrap(),
        "account"
    );
    // Nothing was called while the routes wait for their probe.
    assert_eq!((s.a.total_calls(), s.b.total_calls()), (1, 1));

    // The HTTP form: 503, `account_denied`, and `/healthz` says `denied`.
    let (code, body) = s.inference("m1").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "account_denied");
    let (code, h) = s.healthz().await;
    assert_eq!(code, 503, "{h}");
    assert_eq!(h["status"], "denied", "{h}");
}

/// The secret-leak test with an upstream that echoes the credential header it got, for each
/// provider: the key is in no answer (gRPC message and metadata, HTTP body) and no log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_echoing_the_credentials_leaks_them_nowhere() {
    const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    for provider in [Provider::OpenAi, Provider::Anthropic, Provider::Bedrock] {
        let s = Stack::start_with(
            provider,
            &[
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
                ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ],
            "1s",
        )
        .await;
        s.a.set_default(Behavior::EchoAuth);
        s.b.set_default(Behavior::EchoAuth);
        let mut seen = String::new();
        let mut client = s.spoke.grpc().await.unwrap();
        let err = client.infer(request(&["m1"], "hi")).await.unwrap_err();
        // The caller's fault: INVALID_ARGUMENT with a fixed message and the upstream's type.
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{provider:?}");
        assert!(
            err.message()
                .starts_with("the model provider rejected the request ("),
            "{err:?}"
        );
        assert_eq!(
            err.metadata().get(switchyard_proto::FAULT).unwrap(),
            "caller"
        );
        seen.push_str(&format!("{err:?}\n"));
        let err = client
            .infer_stream(request(&["m1"], "hi"))
            .await
            .unwrap_err();
        seen.push_str(&format!("{err:?}\n"));
        let (code, body) = s.inference("m1").await;
        assert_eq!(code, 400, "{body}");
        seen.push_str(&body.to_string());
        // What the upstream echoed really held the credentials (the test can fail).
        let sent = s.a.last_request().unwrap();
        let header = match provider {
            Provider::Anthropic => "x-api-key",
            _ => "authorization",
        };
        let sent = sent.header(header).unwrap().to_string();
        let secret = match provider {
            Provider::Bedrock => ACCESS_KEY_ID,
            _ => KEY,
        };
        assert!(sent.contains(secret), "{provider:?}: {sent}");
        s.spoke
            .proc
            .wait_for_log("upstream attempt failed", Duration::from_secs(5))
            .await
            .unwrap();
        let logs = s.spoke.proc.logs();
        for secret in [KEY, ACCESS_KEY_ID, SECRET_KEY] {
            assert!(
                !seen.contains(secret),
                "{provider:?}: {secret} in an answer:\n{seen}"
            );
            assert!(
                !logs.contains(secret),
                "{provider:?}: {secret} in the logs:\n{logs}"
            );
        }
        // The SigV4 signature is not logged either.
        if provider == Provider::Bedrock {
            let sig = sent.rsplit("Signature=").next().unwrap();
            assert!(sig.len() >= 32, "{sent}");
            assert!(!logs.contains(sig), "signature in the logs:\n{logs}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_dimensions_and_max_tokens_are_refused_and_the_spoke_keeps_serving() {
    let toml = "listen = \"127.0.0.1:0\"\naccount = \"111111111111\"\nprovider = \"simulated\"\n\
        [simulated]\nlatency = \"1ms\"\n[[regions]]\nname = \"r1\"\n\
        [[models]]\nid = \"sim\"\ncontext_window = 128000\n";
    let spoke = Spoke::start(toml).await.unwrap();
    let mut client = spoke.grpc().await.unwrap();
    let embed = |dimensions, n: usize| switchyard_proto::v1::EmbedRequest {
        models: vec!["sim".into()],
        inputs: vec!["x".to_string(); n],
        dimensions,
        ..Default::default()
    };
    for (dims, n) in [(u32::MAX, 1), (8193, 1), (8192, 2048)] {
        let err = client.embed(embed(dims, n)).await.unwrap_err();
        assert_eq!(
            err.code(),
            tonic::Code::InvalidArgument,
            "{dims} × {n}: {err:?}"
        );
    }
    let err = client.embed(embed(u32::MAX, 1)).await.unwrap_err();
    assert!(err.message().contains("dimensions"), "{err:?}");
    // max_tokens above the model's window: refused naming max_tokens.
    let mut req = request(&["sim"], "long");
    req.params.as_mut().unwrap().max_tokens = Some(128_001);
    let err = client.infer(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("max_tokens"), "{err:?}");
    // The spoke is unharmed: chat and small embeddings still work, health is fine.
    let r = client
        .infer(request(&["sim"], "still there"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.usage.unwrap().output_tokens > 0);
    let r = client.embed(embed(16, 2)).await.unwrap().into_inner();
    assert_eq!(r.embeddings.len(), 2);
    assert_eq!(r.embeddings[0].values.len(), 16);
    let h = reqwest::get(format!("{}/healthz", spoke.url()))
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
}
