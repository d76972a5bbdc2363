//! Passive outlier detection (Envoy's consecutive 5xx) against in-process fake spokes over real
//! gRPC: a spoke answering UNAVAILABLE is ejected after `consecutive_5xx` calls, stays out for
//! `base_ejection_time` while the health checks still pass, then takes traffic again; an
//! ejected spoke that is the only one of its pool still serves (no outage from an ejection).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn pool(spokes: &[&SpokeHandle], base_ejection_time: &str) -> String {
    let list: Vec<String> = spokes
        .iter()
        .map(|s| format!("{{ addr = \"{}\" }}", s.addr))
        .collect();
    format!(
        r#"
[[aliases]]
name = "demo"
candidates = [{{ provider = "p1", model = "m1" }}]

[[providers]]
name = "p1"
spokes = [{}]
health = {{ interval = "1s" }}
outlier_detection = {{ consecutive_5xx = 3, base_ejection_time = "{base_ejection_time}" }}
"#,
        list.join(", ")
    )
}

async fn chat(hub: &HubHandle) -> reqwest::Response {
    client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("demo", false))
        .send()
        .await
        .unwrap()
}

async fn chat_ok(hub: &HubHandle) {
    let r = chat(hub).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
}

#[tokio::test]
async fn a_spoke_failing_every_call_stops_getting_calls_after_n_then_returns() {
    let a = start_spoke("acct-a", &["m1"]).await;
    let b = start_spoke("acct-b", &["m1"]).await;
    let hub = start_hub(&pool(&[&a, &b], "2s")).await;
    hub.wait_healthy("p1", 2).await;
    a.fake.set_mode(Mode::Unavailable);
    let mut ejected_at = None;
    for _ in 0..30 {
        chat_ok(&hub).await;
        if ejected_at.is_none() && a.fake.calls() == 3 {
            ejected_at = Some(Instant::now());
        }
    }
    // Its health checks pass all along (the spoke process is fine; its upstream is not): only
    // the hub's outlier detection keeps it out.
    assert_eq!(
        a.fake.calls(),
        3,
        "the failing spoke took exactly consecutive_5xx calls"
    );
    assert_eq!(hub.healthy_count("p1"), 2);
    let ejected_at = ejected_at.unwrap();
    // Once the ejection time is over it takes traffic again.
    a.fake.set_mode(Mode::Ok);
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.fake.calls() == 3 {
        assert!(Instant::now() < deadline, "the spoke never came back");
        chat_ok(&hub).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out_for = ejected_at.elapsed();
    assert!(
        out_for >= Duration::from_millis(1500),
        "back after {out_for:?}, before base_ejection_time"
    );
}

#[tokio::test]
async fn an_ejected_spoke_alone_in_its_pool_still_serves() {
    let a = start_spoke("acct-a", &["m1"]).await;
    let hub = start_hub(&pool(&[&a], "60s")).await;
    hub.wait_healthy("p1", 1).await;
    a.fake.set_mode(Mode::Unavailable);
    for _ in 0..3 {
        assert_eq!(chat(&hub).await.status(), 503);
    }
    assert_eq!(a.fake.calls(), 3);
    // Ejected for a minute, but the last resort of its pool: it recovers, requests succeed.
    a.fake.set_mode(Mode::Ok);
    chat_ok(&hub).await;
    assert_eq!(a.fake.calls(), 4);
}
