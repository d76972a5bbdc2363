//! Chaos: a rolling restart of every spoke with SIGTERM, one at a time, under unary and streaming
//! load: zero client-visible errors and zero truncated streams (each ends with `data: [DONE]`).
//! Real `hub` and `spoke` binaries; run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod chaos_common;

use std::time::Duration;

use chaos_common::*;
use switchyard_e2e::Spoke;
use switchyard_testkit::behavior::Behavior;
use switchyard_testkit::openai::FakeOpenAi;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_sigterm_restart_of_every_spoke_loses_nothing() {
    let fakes = [
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    ];
    for f in &fakes {
        f.set_behavior("m1", Behavior::Slow { ms: 5 });
        // Streams of ~12 × 40 ms: several are always in flight during a drain.
        f.set_chunk_delay(Duration::from_millis(40));
    }
    let accounts = ["acct-a", "acct-b", "acct-c"];
    let mut spokes = Vec::new();
    for (acct, fake) in accounts.iter().zip(&fakes) {
        spokes.push(spoke(acct, fake).await);
    }
    let addrs: Vec<_> = spokes.iter().map(|s| s.proc.addr()).collect();
    let hub = Hub::start(&format!(
        "{DEMO_M1}{}",
        pool(
            "p1",
            &addrs,
            "{ interval = \"1s\", unhealthy_threshold = 2 }"
        )
    ))
    .await;
    hub.wait_healthy_lines(3, Duration::from_secs(15)).await;

    let unary = LoadLoop::start(&hub.chat_url(), 3, false, Duration::from_millis(5));
    let streams = LoadLoop::start(&hub.chat_url(), 3, true, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(500)).await;

    for (i, acct) in accounts.iter().enumerate() {
        let healthy_before = hub.proc.count_log("spoke healthy");
        let old = &mut spokes[i];
        old.proc.sigterm().unwrap();
        let status = old.proc.wait_exit(Duration::from_secs(15)).await.unwrap();
        assert!(status.success(), "{acct} exited with {status}");
        assert!(
            old.proc.logs().contains("stopped"),
            "{acct} did not drain:\n{}",
            old.proc.logs()
        );
        // The replacement takes the same address (a new task in the same slot).
        let new = Spoke::start(&spoke_toml(
            acct,
            &[("us-east-1", &fakes[i])],
            &addrs[i].to_string(),
        ))
        .await
        .unwrap();
        spokes[i] = new;
        hub.wait_healthy_lines(healthy_before + 1, Duration::from_secs(15))
            .await;
        // Let traffic reach the new process before the next one goes.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut recs = unary.stop().await;
    let stream_recs = streams.stop().await;
    let truncated = stream_recs.iter().filter(|r| !r.done).count();
    recs.extend(stream_recs);
    eprintln!(
        "rolling restart: {}; truncated streams: {truncated}",
        summary(&recs)
    );
    assert!(recs.len() > 100, "too little load: {}", recs.len());
    assert!(
        recs.iter().all(Rec::ok),
        "client-visible errors during the rolling restart:\n{}",
        failures(&recs)
    );
    assert_eq!(truncated, 0);
    // Every restarted spoke served again.
    let late = recs.iter().rev().take(60);
    let mut seen: Vec<&str> = late.map(|r| r.account.as_str()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert!(seen.len() >= 2, "traffic did not spread back: {seen:?}");
}
