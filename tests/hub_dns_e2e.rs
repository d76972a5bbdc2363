//! End-to-end DNS discovery: the real `hub` binary resolves its spoke pool from a DNS server run
//! by this test (hickory-server, in process, UDP on 127.0.0.1:0) pointing at real `spoke`
//! binaries. Adding and removing SRV records changes the routing set within the TTL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::Ipv4Addr;
use std::time::Duration;

use hickory_proto::rr::RData;
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::A;
use serde_json::json;
use switchyard_e2e::Spoke;
use switchyard_testkit::dns::TestDns;
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::{Proc, eventually, write_config};

const KEY: &str = "sk-e2e-key";
const KEY_SHA256: &str = "efa5642593240584aa889ebfff15261eedfcf4bef5a8ec85db1be8135774d1a9";
const SRV_NAME: &str = "_spoke._tcp.pool.test.";

async fn set_srv(dns: &TestDns, ports: &[u16]) {
    let records = ports
        .iter()
        .map(|p| switchyard_testkit::dns::srv("s.pool.test.", *p, 1).unwrap())
        .collect();
    dns.set(SRV_NAME, RecordType::SRV, records).await.unwrap();
}

fn spoke_config(account: &str, up: &FakeOpenAi) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\naccount = \"{account}\"\nprovider = \"openai\"\n\
         [[regions]]\nname = \"us-east-1\"\nendpoint = \"{}\"\n\
         [[models]]\nid = \"m1\"\nstreaming = true\n",
        up.url()
    )
}

async fn served_by(hub: &Proc) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", hub.url()))
        .bearer_auth(KEY)
        .json(&json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-switchyard-account"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_srv_records_add_and_remove_spokes() {
    let (ua, ub) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    let a = Spoke::start(&spoke_config("acct-a", &ua)).await.unwrap();
    let b = Spoke::start(&spoke_config("acct-b", &ub)).await.unwrap();

    // The zone: SOA, s.pool.test → 127.0.0.1, SRV → spoke a only.
    let dns = TestDns::start("pool.test.").await.unwrap();
    dns.set(
        "s.pool.test.",
        RecordType::A,
        vec![RData::A(A(Ipv4Addr::LOCALHOST))],
    )
    .await
    .unwrap();
    set_srv(&dns, &[a.proc.addr().port()]).await;
    let dns_addr = dns.addr;

    let toml = format!(
        "listen = \"127.0.0.1:0\"\n\
         [[tenants]]\nname = \"e2e\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"*\"]\n\
         [[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"p1\", model = \"m1\" }}]\n\
         [[providers]]\nname = \"p1\"\ndns = \"{SRV_NAME}\"\ndns_record = \"srv\"\n\
         dns_server = \"{dns_addr}\"\ndns_min_ttl = \"1s\"\ndns_max_ttl = \"2s\"\n\
         health = {{ interval = \"1s\" }}\n"
    );
    let path = write_config(&toml, "toml").unwrap();
    let hub = Proc::spawn(
        "hub",
        &["--config".into(), path.to_string_lossy().into_owned()],
        &[],
    )
    .await
    .unwrap();
    let healthy = |n: usize| {
        let hub = &hub;
        async move { hub.count_log("spoke healthy") >= n }
    };
    assert!(
        eventually(Duration::from_secs(10), || healthy(1)).await,
        "{}",
        hub.logs()
    );
    for _ in 0..5 {
        assert_eq!(served_by(&hub).await, "acct-a");
    }

    // Add b: it joins within the TTL (≤ 2s) plus one health check.
    set_srv(&dns, &[a.proc.addr().port(), b.proc.addr().port()]).await;
    assert!(
        eventually(Duration::from_secs(8), || healthy(2)).await,
        "{}",
        hub.logs()
    );
    let mut seen_b = false;
    for _ in 0..40 {
        seen_b |= served_by(&hub).await == "acct-b";
    }
    assert!(seen_b, "added spoke never served");

    // Remove a: after the TTL everything goes to b.
    set_srv(&dns, &[b.proc.addr().port()]).await;
    let removed = eventually(Duration::from_secs(8), || async {
        hub.count_log("spoke removed") >= 1
    })
    .await;
    assert!(removed, "{}", hub.logs());
    let calls_a = ua.calls("m1");
    for _ in 0..10 {
        assert_eq!(served_by(&hub).await, "acct-b");
    }
    assert_eq!(ua.calls("m1"), calls_a);
    drop(dns);
}
