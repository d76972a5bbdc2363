//! DNS discovery against an in-process hickory-server on 127.0.0.1:0 (UDP): adding and removing
//! records changes the routing set within the TTL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hickory_proto::rr::rdata::{A, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::Server;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use tokio::net::UdpSocket;

struct Dns {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    _server: Server<Catalog>,
}

async fn start_dns(origin: &str) -> Dns {
    let origin = Name::from_str(origin).unwrap();
    let zone = InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
    let soa = SOA::new(
        Name::from_str("ns.pool.test.").unwrap(),
        Name::from_str("admin.pool.test.").unwrap(),
        1,
        60,
        60,
        600,
        1,
    );
    zone.upsert(Record::from_rdata(origin.clone(), 1, RData::SOA(soa)), 1)
        .await;
    let zone = Arc::new(zone);
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![zone.clone()]);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let mut server = Server::new(catalog);
    server.register_socket(socket);
    Dns {
        addr,
        zone,
        _server: server,
    }
}

impl Dns {
    /// Replaces every record of (name, type) with `data` (TTL 1s).
    async fn set(&self, name: &str, rtype: RecordType, data: Vec<RData>) {
        let name = Name::from_str(name).unwrap();
        self.zone
            .records_mut()
            .await
            .remove(&RrKey::new(LowerName::new(&name), rtype));
        for d in data {
            self.zone
                .upsert(Record::from_rdata(name.clone(), 1, d), 2)
                .await;
        }
    }
}

fn srv(port: u16, weight: u16) -> RData {
    RData::SRV(SRV::new(
        0,
        weight,
        port,
        Name::from_str("s.pool.test.").unwrap(),
    ))
}

fn spoke_addrs(hub: &HubHandle) -> Vec<SocketAddr> {
    let t = hub.hub.table.load();
    let mut v: Vec<SocketAddr> = t.pools["p1"].spokes().iter().map(|s| s.addr).collect();
    v.sort();
    v
}

fn dns_hub_config(dns: &Dns, name: &str, record: &str, port: u16) -> String {
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
    let dns = start_dns("pool.test.").await;
    dns.set(
        "s.pool.test.",
        RecordType::A,
        vec![RData::A(A(Ipv4Addr::LOCALHOST))],
    )
    .await;
    dns.set(
        "_spoke._tcp.pool.test.",
        RecordType::SRV,
        vec![srv(a.addr.port(), 3)],
    )
    .await;
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
    .await;
    eventually(Duration::from_secs(6), || spoke_addrs(&hub).len() == 2).await;
    hub.wait_healthy("p1", 2).await;

    // Remove A: it leaves the routing set; all traffic goes to B.
    dns.set(
        "_spoke._tcp.pool.test.",
        RecordType::SRV,
        vec![srv(b.addr.port(), 1)],
    )
    .await;
    eventually(Duration::from_secs(6), || spoke_addrs(&hub) == vec![b.addr]).await;
    for _ in 0..10 {
        assert_eq!(served_by(&hub).await, "acct-b");
    }

    // No records at all: the pool empties and the alias has no route (503).
    dns.set("_spoke._tcp.pool.test.", RecordType::SRV, vec![])
        .await;
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
    let dns = start_dns("pool.test.").await;
    dns.set(
        "spokes.pool.test.",
        RecordType::A,
        vec![RData::A(A(Ipv4Addr::LOCALHOST))],
    )
    .await;
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
    .await;
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
    .await;
    eventually(Duration::from_secs(6), || spoke_addrs(&hub) == vec![b.addr]).await;
    for _ in 0..10 {
        assert_eq!(served_by(&hub).await, "acct-b");
    }
}
