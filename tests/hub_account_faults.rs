//! End-to-end, through the real `hub` and `spoke` binaries against the wire-faithful fakes: an
//! account's faults behind the hub (issue 17, "Tests that must exist"). Two spokes — two
//! accounts, `acct-a` and `acct-b` — serve one pool (same provider, same model `m1` behind the
//! alias `demo`), each in front of its own fake upstream. Under a steady load, account A is
//! refused the way each provider really does it — Bedrock `AccessDeniedException`, OpenAI 401
//! `invalid_api_key`, OpenAI 429 `insufficient_quota`, Anthropic's credit-balance 400 — and:
//! - no client sees an error (every answer 200, served by B),
//! - A's spoke shows the route `denied` (with its reason) in `/healthz` after the one request
//!   that reached A's upstream,
//! - once A's upstream serves the account again (and the spoke's `[denial] probe_interval`,
//!   1 s here, passed), A serves again (`x-switchyard-account: acct-a`).
//!
//! When both accounts are refused the caller gets 503 in OpenAI's shape with
//! `error.code = "no_account_available"` and none of the upstreams' words.
//! Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_e2e::{FakeUpstream as Fake, UpstreamKind as Provider};
use switchyard_e2e::{Spoke, spoke_toml};
use switchyard_testkit::behavior::{AccountFault, Behavior};
use switchyard_testkit::process::{Proc, eventually, write_config};

/// The upstream key both spokes send (one per account in real life; the fakes accept any).
const UPSTREAM_KEY: &str = "sk-test-account-key-0123456789abcdef";
/// The tenant's key at the hub.
const KEY: &str = "sk-e2e-key";
/// `printf %s sk-e2e-key | sha256sum`
const KEY_SHA256: &str = "efa5642593240584aa889ebfff15261eedfcf4bef5a8ec85db1be8135774d1a9";
/// Requests of the steady load while account A is refused, and how many run at once.
const LOAD: u32 = 200;
const CONCURRENCY: usize = 4;

/// A spoke for `account` of `provider` whose one region `r1` is `up`, serving `m1`, with denied
/// routes probed every second.
async fn spoke(provider: Provider, account: &str, up: &Fake) -> Spoke {
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
        &[("r1", &up.url())],
        "[[models]]\nid = \"m1\"\nupstream_id = \"model-one\"\ncontext_window = 100000\n",
        &format!("{section}[denial]\nprobe_interval = \"1s\"\n"),
    )
    .replace(
        "account = \"111111111111\"",
        &format!("account = \"{account}\""),
    );
    assert!(toml.contains(&format!("account = \"{account}\"")), "{toml}");
    Spoke::start_with_env(&toml, &[("TEST_UPSTREAM_KEY", UPSTREAM_KEY)])
        .await
        .unwrap()
}

struct Hub {
    proc: Proc,
    _config: tempfile::TempPath,
}

impl Hub {
    /// A hub with one pool `p1` of `spokes` (weight 1 each, checked every second) and the alias
    /// `demo` → `p1`/`m1`; waits until it saw every spoke healthy.
    async fn start(spokes: &[&Spoke]) -> Hub {
        let list: Vec<String> = spokes
            .iter()
            .map(|s| format!("{{ addr = \"{}\", weight = 1 }}", s.proc.addr()))
            .collect();
        let toml = format!(
            "listen = \"127.0.0.1:0\"\ndrain_timeout = \"20s\"\n\
             [[providers]]\nname = \"p1\"\nspokes = [{}]\nhealth = {{ interval = \"1s\" }}\n\
             [[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"p1\", model = \"m1\" }}]\n\
             [[tenants]]\nname = \"e2e\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"*\"]\n",
            list.join(", ")
        );
        let path = write_config(&toml, "toml").unwrap();
        let proc = Proc::spawn(
            "hub",
            &["--config".to_string(), path.to_string_lossy().into_owned()],
            &[],
        )
        .await
        .unwrap();
        let hub = Hub {
            proc,
            _config: path,
        };
        let n = spokes.len();
        let ok = eventually(Duration::from_secs(15), || async {
            hub.proc.count_log("spoke healthy") >= n
        })
        .await;
        assert!(
            ok,
            "hub did not see {n} healthy spokes:\n{}",
            hub.proc.logs()
        );
        hub
    }

    /// One chat completion: (status, `x-switchyard-account`, body text, `Retry-After`).
    async fn chat(&self, client: &reqwest::Client) -> Answer {
        let r = client
            .post(format!("{}/v1/chat/completions", self.proc.url()))
            .bearer_auth(KEY)
            .json(&json!({
                "model": "demo",
                "messages": [{"role": "user", "content": "one two three"}],
            }))
            .send()
            .await
            .unwrap();
        let header = |name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let (account, retry_after) = (header("x-switchyard-account"), header("retry-after"));
        Answer {
            status: r.status().as_u16(),
            account,
            retry_after,
            body: r.text().await.unwrap(),
        }
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    account: String,
    retry_after: String,
    body: String,
}

/// The `/healthz` entry of `m1` in region `r1` of `spoke`.
async fn route_health(spoke: &Spoke) -> Value {
    let h: Value = reqwest::get(format!("{}/healthz", spoke.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    h["models"]
        .as_array()
        .unwrap_or_else(|| panic!("no models in {h}"))
        .iter()
        .find(|m| m["id"] == "m1")
        .and_then(|m| {
            m["regions"]
                .as_array()?
                .iter()
                .find(|r| r["region"] == "r1")
        })
        .unwrap_or_else(|| panic!("m1/r1 not in {h}"))
        .clone()
}

/// Two accounts in one pool, account A refused with `fault` (the spoke's reason `reason`) under
/// a steady load: 0 client errors, A `denied` after one request, and A re-admitted after its
/// upstream recovers.
async fn one_account_faulty_under_load(provider: Provider, fault: Behavior, reason: &str) {
    let (ua, ub) = (
        Fake::start(provider, "a").await,
        Fake::start(provider, "b").await,
    );
    let (a, b) = (
        spoke(provider, "acct-a", &ua).await,
        spoke(provider, "acct-b", &ub).await,
    );
    let hub = Arc::new(Hub::start(&[&a, &b]).await);
    let client = reqwest::Client::new();

    // 0. Both accounts serve (weights 1:1: 20 answers from one only is a 2^-19 chance).
    let mut seen = Vec::new();
    for _ in 0..20 {
        let r = hub.chat(&client).await;
        assert_eq!(r.status, 200, "{provider:?} warm-up: {r:?}");
        seen.push(r.account);
    }
    assert!(
        seen.iter().any(|s| s == "acct-a") && seen.iter().any(|s| s == "acct-b"),
        "{seen:?}"
    );

    // 1. Account A is refused. The first request that reaches A's upstream is still served
    //    (by B, through the hub's failover), and right after it A's spoke says `denied`.
    ua.set_default(fault.clone());
    let a_calls = ua.total_calls();
    let mut reached_a = false;
    for i in 0..40 {
        let r = hub.chat(&client).await;
        assert_eq!(r.status, 200, "{provider:?} {fault:?} request {i}: {r:?}");
        assert_eq!(r.account, "acct-b", "{provider:?} {fault:?}: {r:?}");
        if ua.total_calls() > a_calls {
            reached_a = true;
            break;
        }
    }
    assert!(reached_a, "{provider:?}: no request reached account A");
    assert_eq!(ua.total_calls(), a_calls + 1);
    let route = route_health(&a).await;
    assert_eq!(route["state"], "denied", "{provider:?} {fault:?}: {route}");
    assert_eq!(
        route["denied_reason"], reason,
        "{provider:?} {fault:?}: {route}"
    );
    assert_eq!(route_health(&b).await["state"], "ready");

    // 2. Steady load while A stays refused: every answer 200, all from B, and A's upstream only
    //    sees the spoke's probes (at most one a second, with slack for the hub's own retry).
    let a_before = ua.total_calls();
    let started = Instant::now();
    let next = Arc::new(AtomicU32::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (hub, next, client) = (hub.clone(), next.clone(), client.clone());
        workers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < LOAD {
                answers.push(hub.chat(&client).await);
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for w in workers {
        answers.extend(w.await.unwrap());
    }
    assert_eq!(answers.len(), LOAD as usize);
    let errors: Vec<&Answer> = answers.iter().filter(|r| r.status != 200).collect();
    assert!(
        errors.is_empty(),
        "{provider:?} {fault:?}: {} client errors, e.g. {:?}",
        errors.len(),
        errors.first()
    );
    assert!(
        answers.iter().all(|r| r.account == "acct-b"),
        "{provider:?} {fault:?}: a refused account served"
    );
    let probes = ua.total_calls() - a_before;
    let allowed = 2 * (started.elapsed().as_secs() + 1);
    assert!(
        probes <= allowed,
        "{provider:?} {fault:?}: {probes} calls to the refused account in {:?}",
        started.elapsed()
    );
    assert_eq!(route_health(&a).await["state"], "denied");

    // 3. A's upstream serves the account again: after its probe interval A is re-admitted and
    //    serves requests; no client error meanwhile.
    ua.clear_behaviors();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = hub.chat(&client).await;
        assert_eq!(r.status, 200, "{provider:?} {fault:?} recovering: {r:?}");
        if r.account == "acct-a" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{provider:?} {fault:?}: account A never re-admitted:\n{}",
            hub.proc.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let route = route_health(&a).await;
    assert_eq!(route["state"], "ready", "{route}");
    assert!(route["denied_reason"].is_null(), "{route}");
    // The hub logged the refusal; no key reached its log or the spokes'.
    assert!(hub.proc.count_log("account denied the model") >= 1);
    for logs in [hub.proc.logs(), a.proc.logs()] {
        assert!(!logs.contains(UPSTREAM_KEY));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_access_denied_on_one_account_costs_no_client_errors() {
    one_account_faulty_under_load(
        Provider::Bedrock,
        Behavior::AccountFault {
            fault: AccountFault::ModelAccess,
        },
        "model_access",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_revoked_key_on_one_account_costs_no_client_errors() {
    one_account_faulty_under_load(
        Provider::OpenAi,
        Behavior::AccountFault {
            fault: AccountFault::Credentials,
        },
        "credentials",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_insufficient_quota_on_one_account_costs_no_client_errors() {
    one_account_faulty_under_load(
        Provider::OpenAi,
        Behavior::AccountFault {
            fault: AccountFault::Billing,
        },
        "billing",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_credit_balance_on_one_account_costs_no_client_errors() {
    one_account_faulty_under_load(
        Provider::Anthropic,
        Behavior::AccountFault {
            fault: AccountFault::Billing,
        },
        "billing",
    )
    .await;
}

/// Both accounts refused (a revoked key and an unpaid bill): 503 in OpenAI's shape saying no
/// account could serve, with `Retry-After` and none of the upstreams' words — for the request
/// that met both refusals and for the ones routed around them afterwards. Then both recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_account_refused_is_503_no_account_available() {
    let (ua, ub) = (
        Fake::start(Provider::OpenAi, "a").await,
        Fake::start(Provider::OpenAi, "b").await,
    );
    let (a, b) = (
        spoke(Provider::OpenAi, "acct-a", &ua).await,
        spoke(Provider::OpenAi, "acct-b", &ub).await,
    );
    let hub = Hub::start(&[&a, &b]).await;
    let client = reqwest::Client::new();
    assert_eq!(hub.chat(&client).await.status, 200);

    ua.set_default(Behavior::AccountFault {
        fault: AccountFault::Credentials,
    });
    ub.set_default(Behavior::AccountFault {
        fault: AccountFault::Billing,
    });
    for i in 0..10 {
        let r = hub.chat(&client).await;
        assert_eq!(r.status, 503, "request {i}: {r:?}");
        assert!(!r.retry_after.is_empty(), "request {i}: {r:?}");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body["error"]["code"], "no_account_available",
            "request {i}: {body}"
        );
        assert_eq!(body["error"]["type"], "server_error", "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
        // None of the upstreams' words: the masked key, the billing state, their docs links.
        for word in [
            "Incorrect",
            "API key",
            "sk-",
            "quota",
            "billing",
            "platform.openai.com",
            "invalid_api_key",
            UPSTREAM_KEY,
        ] {
            assert!(
                !r.body.contains(word),
                "{word:?} in request {i}'s answer: {}",
                r.body
            );
        }
    }
    // Each upstream was asked at most once a second (the spokes' probes), not per request.
    assert!(
        ua.total_calls() <= 3 && ub.total_calls() <= 3,
        "{} / {} upstream calls",
        ua.total_calls(),
        ub.total_calls()
    );
    assert_eq!(route_health(&a).await["denied_reason"], "credentials");
    assert_eq!(route_health(&b).await["denied_reason"], "billing");

    // Both accounts recover: requests are served again once the probes are due.
    ua.clear_behaviors();
    ub.clear_behaviors();
    let served = eventually(Duration::from_secs(15), || async {
        hub.chat(&client).await.status == 200
    })
    .await;
    assert!(served, "never served after recovery:\n{}", hub.proc.logs());
}
