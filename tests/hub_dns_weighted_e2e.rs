//! End-to-end weighted DNS discovery (`dns_record = "weighted"`): the real `hub` binary resolves
//! a name served like a Route 53 weighted record set — each query answered with ONE A record,
//! drawn by weight — by a DNS server run by this test (hickory-server, UDP on 127.0.0.1:0). The
//! records point at three real `spoke` binaries on 127.0.0.2/3/4, one port.
//!
//! Checked: the pool converges to all three spokes; the split of real hub → spoke requests
//! follows the record weights (1:2:1) within ±10 percentage points; a withdrawn record (weight 0,
//! as when its health check fails) leaves the pool within its stated bound — at most
//! `ln(10⁻⁶) / ln(1 − p)` answers for a record answered with frequency p, here about 48 answers
//! (1.4 s at 10 queries per 0.3 s TTL) — and gets no traffic after; and from the first ready
//! moment on, `/readyz` never fails and no request fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, RecordType};
use serde_json::{Value, json};
use sha2::Digest;
use switchyard_e2e::Spoke;
use switchyard_testkit::dns::TestDns;
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::{Proc, eventually, write_config};

const KEY: &str = "sk-e2e-key";
const KEY_SHA256: &str = "efa5642593240584aa889ebfff15261eedfcf4bef5a8ec85db1be8135774d1a9";
const ADMIN_KEY: &str = "admin-weighted-key";
const NAME: &str = "bedrock.pool.test.";
/// The hub's TTL (the records say 1 s; `dns_max_ttl` clamps it): 10 queries per TTL = one per 30 ms.
const TTL: Duration = Duration::from_millis(300);

fn spoke_config(listen: &str, account: &str, up: &FakeOpenAi) -> String {
    format!(
        "listen = \"{listen}\"\naccount = \"{account}\"\nprovider = \"openai\"\n\
         [[regions]]\nname = \"us-east-1\"\nendpoint = \"{}\"\n\
         [[models]]\nid = \"m1\"\nstreaming = true\n",
        up.url()
    )
}

/// Three spokes on 127.0.0.2, .3 and .4, all on one port (A records carry no port). The port is
/// the first spoke's (bound on port 0); if another process holds it on .3 or .4, start over.
async fn three_spokes(ups: &[FakeOpenAi; 3]) -> (Vec<Spoke>, u16) {
    for _ in 0..5 {
        let a = Spoke::start(&spoke_config("127.0.0.2:0", "acct-a", &ups[0]))
            .await
            .unwrap();
        let port = a.proc.addr().port();
        let b = Spoke::start(&spoke_config(
            &format!("127.0.0.3:{port}"),
            "acct-b",
            &ups[1],
        ))
        .await;
        let c = Spoke::start(&spoke_config(
            &format!("127.0.0.4:{port}"),
            "acct-c",
            &ups[2],
        ))
        .await;
        if let (Ok(b), Ok(c)) = (b, c) {
            return (vec![a, b, c], port);
        }
    }
    panic!("could not start three spokes on one port");
}

fn a_record(last: u8) -> RData {
    RData::A(A(Ipv4Addr::new(127, 0, 0, last)))
}

async fn set_weights(dns: &TestDns, weights: [u32; 3]) {
    dns.set_weighted(
        NAME,
        RecordType::A,
        vec![
            (weights[0], a_record(2)),
            (weights[1], a_record(3)),
            (weights[2], a_record(4)),
        ],
    )
    .unwrap();
}

async fn chat(client: &reqwest::Client, hub: &str) -> Result<String, String> {
    let r = client
        .post(format!("{hub}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let account = r
        .headers()
        .get("x-switchyard-account")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if status != 200 {
        return Err(format!("{status}: {}", r.text().await.unwrap_or_default()));
    }
    Ok(account)
}

/// `n` requests, 8 at a time: the count per serving account, and every failure.
async fn load(
    client: &reqwest::Client,
    hub: &str,
    n: usize,
) -> (HashMap<String, usize>, Vec<String>) {
    let mut per = HashMap::new();
    let mut failed = Vec::new();
    let mut left = n;
    while left > 0 {
        let batch = left.min(8);
        left -= batch;
        let calls: Vec<_> = (0..batch).map(|_| chat(client, hub)).collect();
        for r in futures::future::join_all(calls).await {
            match r {
                Ok(account) => *per.entry(account).or_insert(0) += 1,
                Err(e) => failed.push(e),
            }
        }
    }
    (per, failed)
}

/// The pool's spokes as `/admin/routes` lists them: (address, weight, health).
async fn routes(client: &reqwest::Client, hub: &str) -> Vec<(String, u64, String)> {
    let v: Value = client
        .get(format!("{hub}/admin/routes"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["pools"][0]["spokes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["address"].as_str().unwrap_or("").to_string(),
                s["weight"].as_u64().unwrap_or(0),
                s["health"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_records_fill_the_pool_split_by_weight_and_drop_a_withdrawn_record() {
    let ups = [
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    ];
    let (spokes, port) = three_spokes(&ups).await;
    let dns = TestDns::start("pool.test.").await.unwrap();
    set_weights(&dns, [1, 2, 1]).await;

    let admin_sha = hex::encode(sha2::Sha256::digest(ADMIN_KEY.as_bytes()));
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n\
         [admin]\napi_key_sha256 = [\"{admin_sha}\"]\n\
         [[tenants]]\nname = \"e2e\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"*\"]\n\
         [[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"p1\", model = \"m1\" }}]\n\
         [[providers]]\nname = \"p1\"\ndns = \"{NAME}\"\ndns_record = \"weighted\"\n\
         dns_port = {port}\ndns_server = \"{}\"\ndns_min_ttl = \"{}ms\"\ndns_max_ttl = \"{}ms\"\n\
         health = {{ interval = \"1s\" }}\n",
        dns.addr,
        TTL.as_millis(),
        TTL.as_millis()
    );
    let path = write_config(&toml, "toml").unwrap();
    let hub = Proc::spawn(
        "hub",
        &["--config".into(), path.to_string_lossy().into_owned()],
        &[],
    )
    .await
    .unwrap();
    let url = hub.url();
    let client = reqwest::Client::new();

    // Watch /readyz every 20 ms for the whole test: once ready, it must never fail.
    let stop = Arc::new(AtomicBool::new(false));
    let not_ready_after_ready = Arc::new(AtomicU64::new(0));
    let became_ready = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, bad, ready) = (
            stop.clone(),
            not_ready_after_ready.clone(),
            became_ready.clone(),
        );
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = client
                    .get(format!("{url}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if ok {
                    ready.store(true, Ordering::Relaxed);
                } else if ready.load(Ordering::Relaxed) {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // 1. The pool converges to all three spokes, all healthy.
    let all_three = eventually(Duration::from_secs(15), || async {
        let r = routes(&client, &url).await;
        r.len() == 3 && r.iter().all(|(_, _, h)| h == "healthy")
    })
    .await;
    assert!(
        all_three,
        "{:?}\n{}",
        routes(&client, &url).await,
        hub.logs()
    );

    // Several queries per TTL: ~10, at least 3 on a loaded machine.
    let (q0, t0) = (dns.queries(NAME, RecordType::A), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let per_ttl = (dns.queries(NAME, RecordType::A) - q0) as f64
        / (t0.elapsed().as_secs_f64() / TTL.as_secs_f64());
    assert!(per_ttl >= 3.0, "only {per_ttl:.1} queries per TTL");

    // 2. Once the window is full (400 answers), the split follows the weights (25/50/25 %).
    let full = eventually(Duration::from_secs(60), || async {
        dns.queries(NAME, RecordType::A) >= 450
    })
    .await;
    assert!(full, "the hub stopped querying");
    let (per, failed) = load(&client, &url, 1000).await;
    assert!(failed.is_empty(), "requests failed: {failed:?}");
    let total: usize = per.values().sum();
    eprintln!(
        "split over {total} requests: {per:?}; routes {:?}",
        routes(&client, &url).await
    );
    for (account, want) in [("acct-a", 0.25), ("acct-b", 0.50), ("acct-c", 0.25)] {
        let got = per.get(account).copied().unwrap_or(0) as f64 / total as f64;
        assert!(
            (got - want).abs() <= 0.10,
            "{account}: {got:.3} of requests, weight share {want}"
        );
    }
    assert_eq!(
        hub.count_log("spoke removed"),
        0,
        "a live record was dropped"
    );

    // 3. Withdraw c's record (weight 0, as a failing Route 53 health check does) while requests
    // keep flowing. It leaves within its bound: for a share p ≈ 0.25, ln(1e-6)/ln(0.75) = 48
    // answers (≈ 1.5 s here); allowed: 70 answers (the share is estimated), counted on the
    // DNS server, plus the poll's own lag.
    let background = {
        let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut failed = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = chat(&client, &url).await {
                    failed.push(e);
                }
                n += 1;
            }
            (n, failed)
        })
    };
    set_weights(&dns, [1, 2, 0]).await;
    let q_withdrawn = dns.queries(NAME, RecordType::A);
    let withdrawn_at = Instant::now();
    let mut q_removed = None;
    while withdrawn_at.elapsed() < Duration::from_secs(20) {
        if hub.count_log("spoke removed") >= 1 {
            q_removed = Some(dns.queries(NAME, RecordType::A));
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let q_removed = q_removed.unwrap_or_else(|| panic!("c was never removed:\n{}", hub.logs()));
    let answers = q_removed - q_withdrawn;
    eprintln!(
        "withdrawn record left after {answers} answers, {:?}",
        withdrawn_at.elapsed()
    );
    assert!(answers <= 70 + 10, "left after {answers} answers");
    let logs = hub.logs();
    let removed = logs.lines().find(|l| l.contains("spoke removed")).unwrap();
    assert!(
        removed.contains("127.0.0.4:"),
        "another spoke left: {removed}"
    );
    let c_calls = ups[2].calls("m1");
    let (per, failed) = load(&client, &url, 200).await;
    assert!(failed.is_empty(), "requests failed: {failed:?}");
    assert_eq!(
        per.get("acct-c"),
        None,
        "withdrawn spoke still served: {per:?}"
    );
    assert_eq!(
        ups[2].calls("m1"),
        c_calls,
        "withdrawn spoke's upstream still called"
    );
    let r = routes(&client, &url).await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(
        r.iter().all(|(a, _, _)| !a.starts_with("127.0.0.4")),
        "{r:?}"
    );

    // 4. No moment without a usable spoke: /readyz never failed once ready, no request failed.
    stop.store(true, Ordering::Relaxed);
    let (n, failed) = background.await.unwrap();
    watcher.await.unwrap();
    assert!(n > 0);
    assert!(
        failed.is_empty(),
        "requests failed during the withdrawal: {failed:?}"
    );
    assert!(became_ready.load(Ordering::Relaxed));
    assert_eq!(
        not_ready_after_ready.load(Ordering::Relaxed),
        0,
        "/readyz failed after the pool was ready"
    );
    assert_eq!(hub.count_log("spoke removed"), 1, "{}", hub.logs());
    drop(spokes);
}
