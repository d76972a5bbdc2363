//! Chaos: a spoke dies (`kill -9`) or hangs (SIGSTOP) under steady load, real `hub` and `spoke`
//! binaries, `FakeOpenAi` upstreams. Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod chaos_common;

use std::time::{Duration, Instant};

use chaos_common::*;
use switchyard_testkit::behavior::Behavior;
use switchyard_testkit::openai::FakeOpenAi;

/// `kill -9` one of two spokes while unary and streaming requests flow. Every unary request and
/// every stream that did not already have content flowing from the killed spoke must succeed
/// (they had another route); the time until the dead spoke stops getting attempts is measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_spoke_under_unary_and_stream_load() {
    let (ua, ub) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    for f in [&ua, &ub] {
        f.set_behavior("m1", Behavior::Slow { ms: 5 });
        f.set_chunk_delay(Duration::from_millis(20));
    }
    let (a, b) = (spoke("acct-a", &ua).await, spoke("acct-b", &ub).await);
    // Active checks are slow (5 s × 3): only passive ejection can react within the test.
    let hub = Hub::start(&format!(
        "{DEMO_M1}{}",
        pool(
            "p1",
            &[a.proc.addr(), b.proc.addr()],
            "{ interval = \"5s\", unhealthy_threshold = 3 }"
        )
    ))
    .await;
    hub.wait_healthy_lines(2, Duration::from_secs(15)).await;

    let unary = LoadLoop::start(&hub.chat_url(), 4, false, Duration::from_millis(5));
    let streams = LoadLoop::start(&hub.chat_url(), 4, true, Duration::ZERO);
    let warm = ub.total_calls();
    assert!(
        switchyard_testkit::process::eventually(Duration::from_secs(5), || async {
            ub.total_calls() > warm + 20
        })
        .await,
        "spoke b served nothing before the kill"
    );
    b.proc.kill9().unwrap();
    let killed = Instant::now();
    hub.proc
        .wait_for_log("spoke ejected", Duration::from_secs(5))
        .await
        .unwrap();
    let ejected_after = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut recs = unary.stop().await;
    recs.extend(streams.stop().await);
    recs.sort_by_key(|r| r.started);

    // Unary: every request had another route.
    let unary_failed: Vec<_> = recs.iter().filter(|r| !r.stream && !r.ok()).collect();
    // Streams: only those already committed to b (content flowing) when it died may fail.
    let stream_failed_excusable = |r: &&Rec| r.started < killed && r.account == "acct-b";
    let stream_failed: Vec<_> = recs
        .iter()
        .filter(|r| r.stream && !r.ok() && !stream_failed_excusable(r))
        .collect();
    // The last request that still made an attempt at b (attempts > 1 = failed over).
    let last_retry = recs
        .iter()
        .filter(|r| r.attempts > 1)
        .map(|r| r.ended.saturating_duration_since(killed))
        .max();
    eprintln!(
        "kill -9: {}; ejected after {ejected_after:?}; last request that still tried the dead spoke ended {last_retry:?} after the kill; streams cut mid-flight on the dead spoke: {}",
        summary(&recs),
        recs.iter()
            .filter(|r| r.stream && !r.ok() && stream_failed_excusable(r))
            .count()
    );
    assert!(
        unary_failed.is_empty() && stream_failed.is_empty(),
        "client-visible errors for requests that had another route:\n{}",
        failures(
            &unary_failed
                .into_iter()
                .chain(stream_failed)
                .cloned()
                .collect::<Vec<_>>()
        )
    );
    assert!(
        ejected_after < Duration::from_secs(3),
        "ejection took {ejected_after:?}"
    );
    // After the ejection nothing is sent to the dead spoke any more.
    let late: Vec<_> = recs
        .iter()
        .filter(|r| r.started > killed + ejected_after + Duration::from_millis(200))
        .collect();
    assert!(
        late.len() > 20,
        "too little load after the kill: {}",
        late.len()
    );
    assert!(
        late.iter()
            .all(|r| r.attempts == 1 && r.account == "acct-a"),
        "requests after the ejection still tried the dead spoke:\n{}",
        failures(&late.into_iter().cloned().collect::<Vec<_>>())
    );
    drop(a);
}

/// SIGSTOP one of two spokes: its sockets stay open but nothing answers. Requests time out
/// against it at most once each (attempts ≤ 2, all succeed on the other spoke), then it is taken
/// out of routing and later requests never wait on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_spoke_times_out_at_most_once_per_request_then_is_ejected() {
    let (ua, ub) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    let (a, b) = (spoke("acct-a", &ua).await, spoke("acct-b", &ub).await);
    let hub = Hub::start(&format!(
        "{DEMO_M1}{}",
        pool(
            "p1",
            &[a.proc.addr(), b.proc.addr()],
            "{ interval = \"1s\", timeout = \"500ms\", unhealthy_threshold = 2 }"
        )
    ))
    .await;
    hub.wait_healthy_lines(2, Duration::from_secs(15)).await;

    let load = LoadLoop::start(&hub.chat_url(), 4, false, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.proc.sigstop().unwrap();
    let stopped = Instant::now();
    let taken_out = switchyard_testkit::process::eventually(Duration::from_secs(10), || async {
        hub.proc.count_log("spoke unhealthy") > 0 || hub.proc.count_log("spoke ejected") > 0
    })
    .await;
    let out_after = stopped.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let recs = load.stop().await;
    b.proc.sigcont().unwrap();

    // A request that waited on the hung spoke was freed by a timeout there and then served by
    // the other spoke: two attempts.
    let slow: Vec<_> = recs.iter().filter(|r| r.attempts >= 2).collect();
    eprintln!(
        "SIGSTOP: {}; taken out of routing after {out_after:?}; {} requests waited on the hung spoke (longest {:?})",
        summary(&recs),
        slow.len(),
        slow.iter().map(|r| r.took()).max()
    );
    assert!(
        taken_out,
        "the hung spoke was never taken out of routing:\n{}",
        hub.proc.logs()
    );
    assert!(
        recs.iter().all(Rec::ok),
        "client-visible errors although spoke a could serve:\n{}",
        failures(&recs)
    );
    assert!(
        recs.iter().all(|r| r.attempts <= 2),
        "a request timed out against the hung spoke more than once: {:?}",
        recs.iter().map(|r| r.attempts).max()
    );
    // Each worker can be caught by the hung spoke at most once before it is taken out.
    assert!(
        slow.len() <= 4,
        "{} requests waited on the hung spoke",
        slow.len()
    );
    let late: Vec<_> = recs
        .iter()
        .filter(|r| r.started > stopped + out_after + Duration::from_millis(200))
        .collect();
    assert!(
        late.len() > 20,
        "too little load after ejection: {}",
        late.len()
    );
    assert!(
        late.iter()
            .all(|r| r.account == "acct-a" && r.attempts == 1),
        "requests after the ejection still waited on the hung spoke:\n{}",
        failures(&late.into_iter().cloned().collect::<Vec<_>>())
    );
}
