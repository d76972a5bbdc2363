//! End-to-end: account quotas of the spoke — shared by the tasks of one spoke service through
//! Redis, and lowered after the upstream throttles anyway.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;
use switchyard_e2e::{Spoke, request, spoke_toml};
use switchyard_testkit::behavior::{Behavior, ErrorKind};
use switchyard_testkit::openai::FakeOpenAi;

fn unique_prefix() -> String {
    format!(
        "sytest-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn redis_url() -> String {
    std::env::var("SWITCHYARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_one_spoke_service_share_the_account_quota_through_redis() {
    let up = FakeOpenAi::start().await.unwrap();
    let toml = spoke_toml(
        "openai",
        &[("r1", &up.url())],
        "[[models]]\nid = \"gpt\"\nrequests_per_minute = 3\n",
        &format!(
            "[quota]\nstore = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"\nreplicas = 2\n",
            redis_url(),
            unique_prefix()
        ),
    );
    // Two tasks of the same service (same account, same config).
    let a = Spoke::start(&toml).await.unwrap();
    let b = Spoke::start(&toml).await.unwrap();
    let mut ca = a.grpc().await.unwrap();
    let mut cb = b.grpc().await.unwrap();
    let mut ok = 0;
    let mut exhausted = 0;
    for i in 0..8 {
        let c = if i % 2 == 0 { &mut ca } else { &mut cb };
        match c.infer(request(&["gpt"], "hi")).await {
            Ok(_) => ok += 1,
            Err(s) if s.code() == tonic::Code::ResourceExhausted => exhausted += 1,
            Err(s) => panic!("unexpected {s:?}"),
        }
    }
    assert_eq!(
        (ok, exhausted),
        (3, 5),
        "the account's 3/min holds across both tasks"
    );
    assert_eq!(up.calls("gpt"), 3);
    let h: serde_json::Value = reqwest::get(format!("{}/healthz", a.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["quota_store"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_starts_and_serves_on_local_limits_when_redis_is_down() {
    let up = FakeOpenAi::start().await.unwrap();
    let toml = spoke_toml(
        "openai",
        &[("r1", &up.url())],
        "[[models]]\nid = \"gpt\"\nrequests_per_minute = 4\n",
        // Nothing listens on port 1.
        "[quota]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\nreplicas = 2\ntimeout = \"100ms\"\n",
    );
    let spoke = Spoke::start(&toml).await.unwrap();
    let mut c = spoke.grpc().await.unwrap();
    let mut ok = 0;
    for _ in 0..4 {
        if c.infer(request(&["gpt"], "hi")).await.is_ok() {
            ok += 1;
        }
    }
    assert_eq!(
        ok, 2,
        "4/min shared by 2 replicas -> 2 locally while Redis is down"
    );
    let h: serde_json::Value = reqwest::get(format!("{}/healthz", spoke.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["quota_store"], "degraded: local limits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_throttle_lowers_the_account_rate_in_force() {
    let up = FakeOpenAi::start().await.unwrap();
    let toml = spoke_toml(
        "openai",
        &[("r1", &up.url())],
        "[[models]]\nid = \"gpt\"\nrequests_per_minute = 10\n",
        "[backoff]\nbase = \"1ms\"\nmax = \"1ms\"\n",
    );
    let spoke = Spoke::start(&toml).await.unwrap();
    let mut c = spoke.grpc().await.unwrap();
    // The upstream throttles the first call although the configured quota had room.
    up.set_behavior(
        "gpt",
        Behavior::FailFirst {
            n: 1,
            error: ErrorKind::Throttling,
        },
    );
    let err = c.infer(request(&["gpt"], "hi")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    // Wait out the Retry-After (1 s) cool-down.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mut ok = 0;
    for _ in 0..10 {
        if c.infer(request(&["gpt"], "hi")).await.is_ok() {
            ok += 1;
        }
    }
    // Rate halved to 5/min; the throttled call used one slot of the window: 4 more, not 9.
    assert_eq!(ok, 4);
    assert_eq!(up.calls("gpt"), 5);
}
