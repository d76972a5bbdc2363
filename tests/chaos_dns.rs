//! Chaos: a DNS change removes a spoke while it serves streams. The hub discovers its pool through
//! SRV records served by an in-process hickory DNS server on 127.0.0.1:0 (UDP); dropping one
//! spoke's record must let its in-flight streams finish (`data: [DONE]`) while new requests go
//! to the remaining spoke. Real `hub` and `spoke` binaries; run `cargo build --workspace --bins`
//! first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod chaos_common;

use std::net::Ipv4Addr;
use std::time::Duration;

use chaos_common::*;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, RecordType};
use switchyard_testkit::dns::TestDns;
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::eventually;

fn srv(port: u16) -> RData {
    switchyard_testkit::dns::srv("s.pool.test.", port, 1).unwrap()
}

const SRV_NAME: &str = "_spoke._tcp.pool.test.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_removal_lets_in_flight_streams_finish_and_moves_new_requests() {
    let (ua, ub) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    // 12 content chunks, 300 ms apart: each stream lasts about 3.6 s.
    for f in [&ua, &ub] {
        f.set_chunk_delay(Duration::from_millis(300));
    }
    let (a, b) = (spoke("acct-a", &ua).await, spoke("acct-b", &ub).await);
    let dns = TestDns::start("pool.test.").await.unwrap();
    dns.set(
        "s.pool.test.",
        RecordType::A,
        vec![RData::A(A(Ipv4Addr::LOCALHOST))],
    )
    .await
    .unwrap();
    dns.set(
        SRV_NAME,
        RecordType::SRV,
        vec![srv(a.proc.addr().port()), srv(b.proc.addr().port())],
    )
    .await
    .unwrap();
    let hub = Hub::start(&format!(
        "{DEMO_M1}\n[[providers]]\nname = \"p1\"\ndns = \"{SRV_NAME}\"\ndns_record = \"srv\"\n\
         dns_server = \"{}\"\ndns_min_ttl = \"1s\"\ndns_max_ttl = \"1s\"\nhealth = {{ interval = \"1s\" }}\n",
        dns.addr
    ))
    .await;
    hub.wait_healthy_lines(2, Duration::from_secs(15)).await;

    // 16 streams, started together: about half land on each spoke.
    let client = client();
    let url = hub.chat_url();
    let streams: Vec<_> = (0..16)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { call(&client, &url, true).await })
        })
        .collect();
    // Wait until a's upstream is streaming, then drop a from DNS.
    assert!(
        eventually(Duration::from_secs(5), || async { ua.total_calls() >= 2 }).await,
        "no stream reached spoke a"
    );
    dns.set(SRV_NAME, RecordType::SRV, vec![srv(b.proc.addr().port())])
        .await
        .unwrap();
    hub.proc
        .wait_for_log("spoke removed", Duration::from_secs(5))
        .await
        .unwrap();

    // New requests go to b only, while a's streams are still running.
    let mut fresh = Vec::new();
    for _ in 0..10 {
        fresh.push(call(&client, &url, false).await);
    }
    let streams_on_a_running = ua.total_calls();
    let mut done = Vec::new();
    for s in streams {
        done.push(s.await.unwrap());
    }
    eprintln!(
        "dns removal: streams {}; new requests {}",
        summary(&done),
        summary(&fresh)
    );
    assert!(
        done.iter().all(Rec::ok),
        "in-flight streams did not finish cleanly:\n{}",
        failures(&done)
    );
    let on_a = done.iter().filter(|r| r.account == "acct-a").count();
    assert!(on_a >= 1, "no stream was served by the removed spoke");
    assert!(
        fresh.iter().all(|r| r.ok() && r.account == "acct-b"),
        "a new request went to the removed spoke:\n{}",
        failures(&fresh)
    );
    assert_eq!(
        ua.total_calls(),
        streams_on_a_running,
        "the removed spoke got new calls"
    );
    // The removed spoke itself is still running (DNS removal is not a crash).
    assert!(reqwest::get(format!("{}/healthz", a.url())).await.is_ok());
}
