//! End-to-end quota scenarios: real `hub` and `spoke` binaries, the simulated or fake
//! upstream, and a real Redis on 127.0.0.1 for the shared store (`SWITCHYARD_TEST_REDIS_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use sha2::Digest;
use std::time::Duration;
use switchyard_e2e::{Spoke, spoke_toml};
use switchyard_testkit::process::eventually;

fn sha(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

fn redis_url() -> String {
    std::env::var("SWITCHYARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique(tag: &str) -> String {
    format!(
        "sytest-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A hub process (the shared test support), with this file's helpers.
struct Hub(switchyard_e2e::Hub);

impl std::ops::Deref for Hub {
    type Target = switchyard_e2e::Hub;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Hub {
    async fn start(toml: &str) -> Hub {
        Hub(switchyard_e2e::Hub::start_ready(toml).await.unwrap())
    }

    async fn chat(&self, key: &str, model: &str, max_tokens: u32) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", self.proc.url()))
            .bearer_auth(key)
            .json(&json!({
                "model": model, "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": "hello there"}],
            }))
            .send()
            .await
            .unwrap()
    }
}

/// One simulated spoke serving `primary` (with `primary_rpm` if set) and `fallback`.
async fn sim_spoke(latency: &str, primary_rpm: Option<u64>) -> Spoke {
    let rpm = primary_rpm
        .map(|n| format!("requests_per_minute = {n}\n"))
        .unwrap_or_default();
    let toml = spoke_toml(
        "simulated",
        &[("us-east-1", "http://unused.invalid")],
        &format!("[[models]]\nid = \"primary\"\n{rpm}[[models]]\nid = \"fallback\"\n"),
        &format!("[simulated]\nlatency = \"{latency}\"\n"),
    );
    Spoke::start(&toml).await.unwrap()
}

fn hub_toml(spoke: &Spoke, tenants: &str, extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n{extra}\n\
         [[aliases]]\nname = \"chat\"\ncandidates = [\
           {{ provider = \"sim\", model = \"primary\", price_in = 1000.0, price_out = 1000.0 }}, \
           {{ provider = \"sim\", model = \"fallback\", price_in = 1000.0, price_out = 1000.0 }}]\n\
         [[providers]]\nname = \"sim\"\nspokes = [{{ addr = \"{}\", weight = 1 }}]\nhealth = {{ interval = \"1s\" }}\n\
         {tenants}",
        spoke.proc.addr()
    )
}

fn tenant(name: &str, key: &str, limits: &str) -> String {
    format!(
        "[[tenants]]\nname = \"{name}\"\napi_key_sha256 = [\"{}\"]\naliases = [\"*\"]\n{limits}\n",
        sha(key)
    )
}

/// Scenario 1: the primary model is limited to 3 requests/min in the account; the fallback is
/// not. 10 requests: 3 served by the primary, 7 by the fallback, no errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_fallback_under_account_quota() {
    let spoke = sim_spoke("1ms", Some(3)).await;
    let hub = Hub::start(&hub_toml(&spoke, &tenant("t", "sk-t", ""), "")).await;
    let mut by_model = std::collections::BTreeMap::new();
    for _ in 0..10 {
        let r = hub.chat("sk-t", "chat", 20).await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        let model = r.headers()["x-switchyard-model"]
            .to_str()
            .unwrap()
            .to_owned();
        *by_model.entry(model).or_insert(0) += 1;
    }
    assert_eq!(by_model.get("primary"), Some(&3), "{by_model:?}");
    assert_eq!(by_model.get("fallback"), Some(&7), "{by_model:?}");
}

/// Scenario 2: tenants A, B, C send 5 requests each; A is limited to 3/min.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_over_its_limit_does_not_touch_the_others() {
    let spoke = sim_spoke("1ms", None).await;
    let tenants = tenant("a", "sk-a", "requests_per_minute = 3")
        + &tenant("b", "sk-b", "requests_per_minute = 100")
        + &tenant("c", "sk-c", "");
    let hub = Hub::start(&hub_toml(&spoke, &tenants, "")).await;
    let mut ok = std::collections::BTreeMap::new();
    for round in 0..5 {
        for key in ["sk-a", "sk-b", "sk-c"] {
            let r = hub.chat(key, "chat", 20).await;
            match r.status().as_u16() {
                200 => *ok.entry(key).or_insert(0) += 1,
                429 => {
                    assert_eq!(key, "sk-a");
                    assert!(round >= 3);
                    let h = r.headers();
                    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
                    assert_eq!(h["x-ratelimit-limit-requests"], "3");
                    assert_eq!(h["x-ratelimit-remaining-requests"], "0");
                    assert!(h.contains_key("x-ratelimit-reset-requests"));
                    let body: Value = r.json().await.unwrap();
                    assert_eq!(body["error"]["type"], "rate_limit_error");
                    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
                    assert!(
                        body["error"]["message"]
                            .as_str()
                            .unwrap()
                            .contains("requests per minute")
                    );
                }
                s => panic!("unexpected status {s}"),
            }
        }
    }
    assert_eq!(ok.get("sk-a"), Some(&3));
    assert_eq!(ok.get("sk-b"), Some(&5));
    assert_eq!(ok.get("sk-c"), Some(&5));
    // B's headers show its own allowance, untouched by A.
    let r = hub.chat("sk-b", "chat", 20).await;
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "94");
}

/// Scenario 3: three hub replicas share one Redis; a tenant limited to 30 requests/min sends
/// 90 requests spread over the three: exactly 30 are admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hub_replicas_sharing_redis_admit_exactly_the_limit() {
    let spoke = sim_spoke("1ms", None).await;
    let quota = format!(
        "[quota]\nstore = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"\nreplicas = 3\n",
        redis_url(),
        unique("replicas")
    );
    let toml = hub_toml(
        &spoke,
        &tenant("t", "sk-t", "requests_per_minute = 30"),
        &quota,
    );
    let hubs = [
        Hub::start(&toml).await,
        Hub::start(&toml).await,
        Hub::start(&toml).await,
    ];
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..90 {
        let url = format!("{}/v1/chat/completions", hubs[i % 3].proc.url());
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            c.post(url)
                .bearer_auth("sk-t")
                .json(&json!({"model": "chat", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        *counts.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(counts.get(&200), Some(&30), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&60), "{counts:?}");
}

/// Scenario 4: 20 concurrent requests against a tokens/min limit that fits 10 of them: the
/// reservation at admission keeps the burst from overshooting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_reservation_stops_a_concurrent_burst_at_the_limit() {
    // Slow upstream: every admission happens before any request settles.
    let spoke = sim_spoke("1500ms", None).await;
    // Each request reserves its input estimate (3 tokens for "hello there") + max_tokens 100.
    let hub = Hub::start(&hub_toml(
        &spoke,
        &tenant("t", "sk-t", "tokens_per_minute = 1030"),
        "",
    ))
    .await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let url = format!("{}/v1/chat/completions", hub.proc.url());
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth("sk-t")
                .json(&json!({"model": "chat", "max_tokens": 100, "messages": [{"role": "user", "content": "hello there"}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert!(
        ok <= 10,
        "{ok} admitted: the burst overshot the tokens/min limit"
    );
    assert!(ok >= 9, "{ok} admitted: the limit fits 10");
}

/// Scenario 5: a $0.01 daily budget refuses once recorded spend reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_budget_refuses_once_spend_reaches_it() {
    let spoke = sim_spoke("1ms", None).await;
    // Prices are $1000 per million tokens: a request of ~10 tokens costs ~$0.01.
    let hub = Hub::start(&hub_toml(
        &spoke,
        &tenant("t", "sk-t", "usd_per_day = 0.01"),
        "",
    ))
    .await;
    let mut served = 0;
    let refused = loop {
        let r = hub.chat("sk-t", "chat", 20).await;
        if r.status() == 200 {
            served += 1;
            assert!(served < 10, "the budget never ran out");
            continue;
        }
        break r;
    };
    assert!(served >= 1);
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "insufficient_quota");
    assert_eq!(body["error"]["code"], "budget_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("daily spend budget"),
        "{body}"
    );
}

/// A private `redis-server` on a free port, killed on drop.
struct PrivateRedis {
    child: std::process::Child,
}

impl PrivateRedis {
    async fn start(port: u16) -> PrivateRedis {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        assert!(
            eventually(Duration::from_secs(5), || async move {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            })
            .await
        );
        PrivateRedis { child }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn quota_store_state(hub: &Hub) -> String {
    let h: Value = reqwest::get(format!("{}/healthz", hub.proc.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    h["quota_store"].as_str().unwrap_or_default().to_owned()
}

/// Scenario 6: Redis killed mid-run → requests keep flowing on local limits; Redis back →
/// shared limits resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_mid_run_falls_back_to_local_limits_then_resumes() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = PrivateRedis::start(port).await;
    let spoke = sim_spoke("1ms", None).await;
    let quota = format!(
        "[quota]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}\"\nreplicas = 2\ntimeout = \"200ms\"\n"
    );
    let hub = Hub::start(&hub_toml(
        &spoke,
        &tenant("t", "sk-t", "requests_per_minute = 20"),
        &quota,
    ))
    .await;
    for _ in 0..4 {
        assert_eq!(hub.chat("sk-t", "chat", 10).await.status(), 200);
    }
    assert_eq!(quota_store_state(&hub).await, "ok");

    drop(redis);
    // No request fails because Redis is down; this replica now enforces 20 / 2 = 10 locally.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(hub.chat("sk-t", "chat", 10).await.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(quota_store_state(&hub).await, "degraded: local limits");
    hub.proc
        .wait_for_log("enforcing local limits", Duration::from_secs(2))
        .await
        .unwrap();

    let _redis = PrivateRedis::start(port).await;
    let h = &hub;
    assert!(
        eventually(Duration::from_secs(10), || async move {
            let _ = h.chat("sk-t", "chat", 10).await;
            quota_store_state(h).await == "ok"
        })
        .await,
        "shared limits never resumed"
    );
    // The new Redis is empty: the shared window starts afresh and admits again.
    assert_eq!(hub.chat("sk-t", "chat", 10).await.status(), 200);
}
