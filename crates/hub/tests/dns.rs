//! DNS discovery against an in-process hickory-server on 127.0.0.1:0 (UDP): adding and removing
//! records changes the routing set within the TTL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, RecordType};
use switchyard_testkit::dns::TestDns;

fn srv(port: u16, weight: u16) -> RData {
    switchyard_testkit::dns::srv("s.pool.test.", port, weight).unwrap()
}

fn spoke_addrs(hub: &HubHandle) -> Vec<SocketAddr> {
    let t = hub.hub.table.load();
    let mut v: Vec<SocketAddr> = t.pools["p1"].spokes().iter().map(|s| s.addr).collect();
    v.sort();
    v
}

fn dns_hub_config(dns: &TestDns, name: &str, record: &str, port: u16) -> String {
    format!(
        r#"
[[aliases]]
name = "demo"
candidates = [{{ provider = "p1", model = "m1" }}]

[[providers]]
name = "p1"
dns = "{name}"
dns_record = "{record}"
dns_port = {port}
dns_server = "{}"
dns_min_ttl = "1s"
dns_max_ttl = "2s"
health = {{ interval = "1s" }}
"#,
        dns.addr
    )
}

async fn served_by(hub: &HubHandle) -> String {
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("demo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-switchyard-account"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn srv_records_add_and_remove_spokes() {
    let a = start_spoke("acct-a", &["m1"]).await;
    let b = start_spoke("acct-b", &["m1"]).await;
    let dns = TestDns::start("pool.test.").await.unwrap();
    dns.set(
        "s.pool.test.",
        RecordType::A,
        vec![RData::A(A(Ipv4Addr::LOCALHOST))],
    )
    .await
    .unwrap();
    dns.set(
        "_spoke._tcp.pool.test.",
        RecordType::SRV,
        vec![srv(a.addr.port(), 3)],
    )
    .await
    .unwrap();
    let hub = start_hub(&dns_hub_config(&dns, "_spoke._tcp.pool.test.", "srv", 0)).await;
    hub.wait_healthy("p1", 1).await;
    assert_eq!(spoke_addrs(&hub), vec![a.addr]);
    assert_eq!(served_by(&hub).await, "acct-a");
    assert_eq!(hub.hub.table.load().pools["p1"].spokes()[0].weight(), 3);

    // Add B: it joins within the TTL (2s max) plus one health check.
    dns.set(
        "_spoke._tcp.pool.test.",
        RecordType::SRV,
        vec![srv(a.addr.port(), 3), srv(b.addr.port(), 1)],
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(6), || spoke_addrs(&hub).len() == 2).await;
    hub.wait_healthy("p1", 2).await;

    // Remove A: it leaves the routing set; all traffic goes to B.
    dns.set(
        "_spoke._tcp.pool.test.",
        RecordType::SRV,
        vec![srv(b.addr.port(), 1)],
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(6), || spoke_addrs(&hub) == vec![b.addr]).await;
    for _ in 0..10 {
        assert_eq!(served_by(&hub).await, "acct-b");
    }

    // No records at all: the pool empties and the alias has no route (503).
    dns.set("_spoke._tcp.pool.test.", RecordType::SRV, vec![])
        .await
        .unwrap();
    eventually(Duration::from_secs(6), || spoke_addrs(&hub).is_empty()).await;
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("demo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn a_records_add_and_remove_spokes() {
    // Two spokes on the same port, different loopback addresses (127.0.0.1 and 127.0.0.2).
    let a = start_spoke("acct-a", &["m1"]).await;
    let port = a.addr.port();
    let b = start_spoke_with(
        "acct-b",
        &["m1"],
        3,
        Duration::ZERO,
        &format!("127.0.0.2:{port}"),
    )
    .await;
    let dns = TestDns::start("pool.test.").await.unwrap();
    dns.set(
        "spokes.pool.test.",
        RecordType::A,
        vec![RData::A(A(Ipv4Addr::LOCALHOST))],
    )
    .await
    .unwrap();
    let hub = start_hub(&dns_hub_config(&dns, "spokes.pool.test.", "a", port)).await;
    hub.wait_healthy("p1", 1).await;
    assert_eq!(served_by(&hub).await, "acct-a");
    dns.set(
        "spokes.pool.test.",
        RecordType::A,
        vec![
            RData::A(A(Ipv4Addr::LOCALHOST)),
            RData::A(A(Ipv4Addr::new(127, 0, 0, 2))),
        ],
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(6), || {
        spoke_addrs(&hub) == vec![a.addr, b.addr]
    })
    .await;
    hub.wait_healthy("p1", 2).await;
    dns.set(
        "spokes.pool.test.",
        RecordType::A,
        vec![RData::A(A(Ipv4Addr::new(127, 0, 0, 2)))],
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(6), || spoke_addrs(&hub) == vec![b.addr]).await;
    for _ in 0..10 {
        assert_eq!(served_by(&hub).await, "acct-b");
    }
}
