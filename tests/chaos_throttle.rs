//! Chaos: a 429 storm, first in one region of an account, then in the whole account, under
//! steady load. Traffic moves (to the other region, then to the other account) with no
//! client-visible error while capacity remains; only when every account throttles does the
//! client get a 429. Real `hub` and `spoke` binaries; run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod chaos_common;

use std::time::Duration;

use chaos_common::*;
use switchyard_e2e::Spoke;
use switchyard_testkit::behavior::Behavior;
use switchyard_testkit::openai::FakeOpenAi;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_storm_in_a_region_then_an_account_shifts_traffic_without_errors() {
    // Account A: us-east-1 (a1) then us-west-2 (a2). Account B: one region (b1).
    let (a1, a2, b1) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    let a = Spoke::start(&spoke_toml(
        "acct-a",
        &[("us-east-1", &a1), ("us-west-2", &a2)],
        "127.0.0.1:0",
    ))
    .await
    .unwrap();
    let b = spoke("acct-b", &b1).await;
    let hub = Hub::start(&format!(
        "{DEMO_M1}{}",
        pool(
            "p1",
            &[a.proc.addr(), b.proc.addr()],
            "{ interval = \"1s\" }"
        )
    ))
    .await;
    hub.wait_healthy_lines(2, Duration::from_secs(15)).await;

    // Baseline: both accounts serve, account A from its first region.
    let load = LoadLoop::start(&hub.chat_url(), 4, false, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = load.stop().await;
    assert!(
        base.iter().all(Rec::ok),
        "baseline failed:\n{}",
        failures(&base)
    );
    assert!(
        base.iter()
            .any(|r| r.account == "acct-a" && r.region == "us-east-1")
    );

    // Storm 1: us-east-1 of account A throttles every call.
    a1.set_default(Behavior::ThrottleRetryAfter { secs: 30 });
    let (a1_before, a2_before) = (a1.total_calls(), a2.total_calls());
    let load = LoadLoop::start(&hub.chat_url(), 4, false, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let region_storm = load.stop().await;
    eprintln!("region storm: {}", summary(&region_storm));
    assert!(
        region_storm.iter().all(Rec::ok),
        "errors during a one-region storm:\n{}",
        failures(&region_storm)
    );
    let on_a: Vec<_> = region_storm
        .iter()
        .filter(|r| r.account == "acct-a")
        .collect();
    assert!(
        on_a.len() > 10,
        "account A stopped serving: {}",
        summary(&region_storm)
    );
    assert!(
        on_a.iter().all(|r| r.region == "us-west-2"),
        "account A served from the throttled region"
    );
    assert!(a2.total_calls() > a2_before);
    // The throttled region cools down (Retry-After 30 s): it is not hammered.
    let a1_calls = a1.total_calls() - a1_before;
    assert!(a1_calls <= 4, "the throttled region got {a1_calls} calls");

    // Storm 2: the whole of account A throttles.
    a2.set_default(Behavior::ThrottleRetryAfter { secs: 30 });
    let a_before = a1.total_calls() + a2.total_calls();
    let b_before = b1.total_calls();
    let load = LoadLoop::start(&hub.chat_url(), 4, false, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let account_storm = load.stop().await;
    let a_calls = a1.total_calls() + a2.total_calls() - a_before;
    eprintln!(
        "account storm: {}; calls reaching account A's upstreams: {a_calls}",
        summary(&account_storm)
    );
    assert!(
        account_storm.iter().all(Rec::ok),
        "errors while account B had capacity:\n{}",
        failures(&account_storm)
    );
    assert!(
        account_storm.iter().all(|r| r.account == "acct-b"),
        "a request was served by the throttled account"
    );
    assert!(b1.total_calls() - b_before >= account_storm.len() as u64);
    // Account A's routes cool down: its upstreams see a handful of calls, not the load.
    assert!(
        a_calls <= 4,
        "account A's throttled upstreams got {a_calls} calls"
    );

    // No capacity anywhere: now (and only now) the client gets a 429 with Retry-After.
    b1.set_default(Behavior::ThrottleRetryAfter { secs: 20 });
    let r = call(&client(), &hub.chat_url(), false).await;
    assert_eq!(r.status, 429, "{r:?}");
}
