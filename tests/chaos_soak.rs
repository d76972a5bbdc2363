//! Soak: moderate steady load (unary and streams) through a real hub and two real spokes for 10
//! minutes; after a warm-up, the resident memory of the hub and of each spoke must not grow by
//! 5 % or more.
//!
//! It runs on demand, not in every CI run:
//!
//! ```text
//! cargo build --workspace --bins
//! cargo test --test chaos_soak -- --ignored --nocapture
//! SWITCHYARD_SOAK_SECS=120 cargo test --test chaos_soak -- --ignored --nocapture   # shorter
//! ```
//!
//! With `SWITCHYARD_BIN_DIR=target/release` it soaks the release binaries (build them with
//! `cargo build --release --workspace --bins`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod chaos_common;

use std::time::{Duration, Instant};

use chaos_common::*;
use switchyard_testkit::behavior::Behavior;
use switchyard_testkit::openai::FakeOpenAi;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "10-minute soak; run on demand: cargo test --test chaos_soak -- --ignored"]
async fn soak_rss_growth_under_five_percent_after_warm_up() {
    let total = Duration::from_secs(
        std::env::var("SWITCHYARD_SOAK_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600),
    );
    let warm_up = (total / 10).clamp(Duration::from_secs(10), Duration::from_secs(60));
    let (ua, ub) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    for f in [&ua, &ub] {
        f.set_behavior("m1", Behavior::Slow { ms: 10 });
        f.set_chunk_delay(Duration::from_millis(10));
    }
    let (a, b) = (spoke("acct-a", &ua).await, spoke("acct-b", &ub).await);
    let hub = Hub::start(&format!(
        "{DEMO_M1}{}",
        pool(
            "p1",
            &[a.proc.addr(), b.proc.addr()],
            "{ interval = \"2s\" }"
        )
    ))
    .await;
    hub.wait_healthy_lines(2, Duration::from_secs(15)).await;
    let pids = [
        ("hub", hub.proc.pid()),
        ("spoke a", a.proc.pid()),
        ("spoke b", b.proc.pid()),
    ];

    // ~4 unary workers + 2 stream workers with short pauses: on the order of 100–200 req/s.
    let bound = usize::MAX;
    let unary =
        LoadLoop::start_bounded(&hub.chat_url(), 4, false, Duration::from_millis(20), bound);
    let streams =
        LoadLoop::start_bounded(&hub.chat_url(), 2, true, Duration::from_millis(20), bound);
    let started = Instant::now();
    tokio::time::sleep(warm_up).await;
    let baseline: Vec<u64> = pids.iter().map(|(_, p)| rss_kib(*p)).collect();
    let mut peak = baseline.clone();
    while started.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(5)).await;
        for (i, (_, pid)) in pids.iter().enumerate() {
            peak[i] = peak[i].max(rss_kib(*pid));
        }
        // Keep the fakes' request logs short.
        ua.reset_calls();
        ub.reset_calls();
    }
    let end: Vec<u64> = pids.iter().map(|(_, p)| rss_kib(*p)).collect();
    let mut recs = unary.stop().await;
    recs.extend(streams.stop().await);

    let mut report = String::new();
    let mut grew = Vec::new();
    for (i, (name, _)) in pids.iter().enumerate() {
        let growth = (end[i] as f64 - baseline[i] as f64) / baseline[i].max(1) as f64 * 100.0;
        report.push_str(&format!(
            "  {name}: after warm-up {} KiB, end {} KiB, peak {} KiB, growth {growth:+.1} %\n",
            baseline[i], end[i], peak[i]
        ));
        if growth >= 5.0 {
            grew.push(*name);
        }
    }
    eprintln!(
        "soak {total:?} (warm-up {warm_up:?}): {}\n{report}",
        summary(&recs)
    );
    assert!(
        recs.iter().all(Rec::ok),
        "errors during the soak:\n{}",
        failures(&recs)
    );
    assert!(
        grew.is_empty(),
        "RSS grew by 5 % or more: {grew:?}\n{report}"
    );
}
