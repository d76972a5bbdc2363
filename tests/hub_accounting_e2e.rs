//! End-to-end, real `hub` and `spoke` binaries (issue 17): what the hub accounts for when a
//! request does not end normally — a stream the client drops mid-way is settled with its usage
//! so far (the tenant's reservation released, cost recorded, audited and metered `cancelled`),
//! and a unary request it abandons returns its reservation; a request the upstream rejects is audited with the attempt and the account that refused it,
//! and its caller never sees the upstream's words; a spoke whose upstream fails every call is
//! ejected after `outlier_detection.consecutive_5xx` failures, before any health check sees it.
//! Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use switchyard_e2e::prom::{scrape, sum};
use switchyard_e2e::{Hub, Spoke, audit_lines, spoke_toml};
use switchyard_testkit::behavior::{Behavior, ErrorKind};
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::eventually;

const KEY: &str = "sk-e2e-key";
/// `printf %s sk-e2e-key | sha256sum`
const KEY_SHA256: &str = "efa5642593240584aa889ebfff15261eedfcf4bef5a8ec85db1be8135774d1a9";

/// A simulated spoke serving `m1` (`extra`: more of its `[simulated]` section).
async fn simulated(extra: &str) -> Spoke {
    Spoke::start(&spoke_toml(
        "simulated",
        &[("us-east-1", "http://unused.invalid")],
        "[[models]]\nid = \"m1\"\n",
        &format!("[simulated]\nlatency = \"1ms\"\n{extra}"),
    ))
    .await
    .unwrap()
}

/// Hub config: pool `p` of `spokes` (health every `interval`), alias `demo` → (`p`, `m1`) at
/// 1000 USD per million tokens each way, tenant `e2e` with `limits`, the audit log at `audit`.
fn hub_toml(
    spokes: &[&Spoke],
    interval: &str,
    provider_extra: &str,
    limits: &str,
    audit: &std::path::Path,
) -> String {
    let list: Vec<String> = spokes
        .iter()
        .map(|s| format!("{{ addr = \"{}\" }}", s.proc.addr()))
        .collect();
    format!(
        "listen = \"127.0.0.1:0\"\ndrain_timeout = \"5s\"\n\
         [audit]\npath = \"{}\"\n\
         [prices.m1]\ninput = 1000.0\noutput = 1000.0\n\
         [[providers]]\nname = \"p\"\nspokes = [{}]\nhealth = {{ interval = \"{interval}\" }}\n{provider_extra}\n\
         [[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"p\", model = \"m1\" }}]\n\
         [[tenants]]\nname = \"e2e\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"*\"]\n{limits}\n",
        audit.display(),
        list.join(", "),
    )
}

fn chat(hub: &Hub, stream: bool, max_tokens: u32) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({
            "model": "demo", "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "tell me about the switchyard"}],
        }))
}

/// The audit line of request `id`, once written (10 s at most).
async fn audit_line(path: &std::path::Path, id: &str) -> Value {
    let mut found = None;
    let ok = eventually(Duration::from_secs(10), || {
        found = audit_lines(path)
            .into_iter()
            .find(|l| l["request_id"] == id);
        let done = found.is_some();
        async move { done }
    })
    .await;
    assert!(ok, "no audit line for {id}: {:#?}", audit_lines(path));
    found.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_releases_its_reservation_and_is_audited_cancelled() {
    // Two words a second: the client is long gone before the answer ends.
    let spoke = simulated("tokens_per_second = 2\n").await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    // 2000 tokens a minute: one request reserving 1500 leaves no room for a second one until
    // it is settled (refilling the 1500 would take 45 s).
    let hub = Hub::start(&hub_toml(
        &[&spoke],
        "1s",
        "",
        "tokens_per_minute = 2000",
        &audit,
    ))
    .await
    .unwrap();
    hub.wait_healthy(1).await.unwrap();

    let r = chat(&hub, true, 1500).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let remaining: u64 = r.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        remaining < 1500,
        "the stream holds its reservation: {remaining}"
    );
    // Read up to the first content, then go away mid-stream.
    let mut body = r.bytes_stream();
    let mut seen = String::new();
    let has_content = |sse: &str| {
        sse.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .any(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty())
            })
    };
    while !has_content(&seen) {
        let chunk = body.next().await.expect("stream ended early").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!seen.contains("[DONE]"), "the stream ended before the drop");
    drop(body);

    // The reservation is returned at once (less the usage so far): a second request of the same
    // size is admitted within seconds, not after the bucket refills.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = chat(&hub, false, 1500).send().await.unwrap().status();
        if status == 200 || tokio::time::Instant::now() >= deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        status, 200,
        "second request still refused: reservation held"
    );

    // Audited as cancelled, with the estimated usage so far and its cost.
    let line = audit_line(&audit, &id).await;
    assert_eq!(line["outcome"], "cancelled", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert!(
        line["usage"]["input_tokens"].as_u64().unwrap() >= 1,
        "{line}"
    );
    let out = line["usage"]["output_tokens"].as_u64().unwrap();
    assert!((1..1500).contains(&out), "{line}");
    assert!(line["cost_usd"].as_f64().unwrap() > 0.0, "{line}");
    assert_eq!(line["route"]["model"], "m1", "{line}");
    // And metered with outcome `cancelled`.
    let m = scrape(&hub.url("/metrics")).await;
    let cancelled = sum(
        &m,
        "switchyard_requests_total",
        &[("outcome", "cancelled"), ("surface", "openai")],
    );
    assert_eq!(cancelled, 1.0);
    assert!(sum(&m, "switchyard_cost_usd_micros_total", &[]) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_client_abandons_before_its_answer_releases_its_reservation() {
    // Alias `slow` answers after a minute; alias `fast` at once. One tenant, one token bucket.
    let slow = Spoke::start(&spoke_toml(
        "simulated",
        &[("us-east-1", "http://unused.invalid")],
        "[[models]]\nid = \"m1\"\n",
        "[simulated]\nlatency = \"60s\"\n",
    ))
    .await
    .unwrap();
    let fast = Spoke::start(&spoke_toml(
        "simulated",
        &[("us-east-1", "http://unused.invalid")],
        "[[models]]\nid = \"m2\"\n",
        "[simulated]\nlatency = \"1ms\"\n",
    ))
    .await
    .unwrap();
    let hub = Hub::start(&format!(
        "listen = \"127.0.0.1:0\"\ndrain_timeout = \"1s\"\nrequest_timeout = \"120s\"\n\
         [[providers]]\nname = \"ps\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
         [[providers]]\nname = \"pf\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
         [[aliases]]\nname = \"slow\"\ncandidates = [{{ provider = \"ps\", model = \"m1\" }}]\n\
         [[aliases]]\nname = \"fast\"\ncandidates = [{{ provider = \"pf\", model = \"m2\" }}]\n\
         [[tenants]]\nname = \"e2e\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"*\"]\n\
         tokens_per_minute = 2000\n",
        slow.proc.addr(),
        fast.proc.addr(),
    ))
    .await
    .unwrap();
    hub.wait_healthy(2).await.unwrap();
    let body = |model: &str| {
        json!({"model": model, "max_tokens": 1500,
               "messages": [{"role": "user", "content": "hello"}]})
    };
    // The client gives up after 500 ms, long before the answer.
    let gave_up = reqwest::Client::new()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .timeout(Duration::from_millis(500))
        .json(&body("slow"))
        .send()
        .await;
    assert!(gave_up.unwrap_err().is_timeout());
    // Its 1500 reserved tokens come back: the next request of that size is admitted within
    // seconds (without the release it would wait ~45 s for the bucket to refill).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let r = reqwest::Client::new()
            .post(hub.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&body("fast"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 || tokio::time::Instant::now() >= deadline {
            break r.status();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        status, 200,
        "the abandoned request still holds its reservation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_request_names_the_refusing_account_and_hides_the_upstreams_words() {
    let upstream = FakeOpenAi::start().await.unwrap();
    upstream.set_default(Behavior::Error {
        error: ErrorKind::Validation,
    });
    let spoke = Spoke::start(&spoke_toml(
        "openai",
        &[("us-east-1", &upstream.url())],
        "[[models]]\nid = \"m1\"\n",
        "",
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let hub = Hub::start(&hub_toml(&[&spoke], "1s", "", "", &audit))
        .await
        .unwrap();
    hub.wait_healthy(1).await.unwrap();

    let r = chat(&hub, false, 16).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-switchyard-attempts"], "1");
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_rejected", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("the model provider rejected the request"),
        "{body}"
    );
    // The fake's message ("fake openai …: Validation for model …") never reaches the caller.
    assert!(!body.to_string().contains("fake openai"), "{body}");
    assert!(!body.to_string().contains("for model"), "{body}");
    assert_eq!(upstream.total_calls(), 1, "a rejection is never retried");

    let line = audit_line(&audit, &id).await;
    assert_eq!(line["error"], "upstream_rejected", "{line}");
    let attempts = line["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{line}");
    let spoke_addr = spoke.proc.addr().to_string();
    assert_eq!(attempts[0]["outcome"], "rejected", "{line}");
    assert_eq!(attempts[0]["spoke"], spoke_addr.as_str(), "{line}");
    assert_eq!(attempts[0]["account"], "111111111111", "{line}");
    assert_eq!(line["route"]["account"], "111111111111", "{line}");
    assert_eq!(line["route"]["spoke"], spoke_addr.as_str(), "{line}");
    assert!(!line.to_string().contains("fake openai"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_whose_upstream_fails_every_call_is_ejected_after_n_failures() {
    let broken = simulated("failure_rate = 1.0\n").await;
    let good = simulated("").await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    // Health checks every minute: only the first one runs during the test, so whatever takes
    // the broken spoke out of routing is the hub's passive outlier detection.
    let hub = Hub::start(&hub_toml(
        &[&broken, &good],
        "60s",
        "outlier_detection = { consecutive_5xx = 3, base_ejection_time = \"60s\" }",
        "",
        &audit,
    ))
    .await
    .unwrap();
    hub.wait_healthy(2).await.unwrap();

    let mut ids = Vec::new();
    for _ in 0..30 {
        let r = chat(&hub, false, 16).send().await.unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        ids.push(r.headers()["x-request-id"].to_str().unwrap().to_string());
    }
    let mut lines = Vec::new();
    for id in &ids {
        lines.push(audit_line(&audit, id).await);
    }
    let broken_addr = broken.proc.addr().to_string();
    let at_broken: Vec<&Value> = lines
        .iter()
        .flat_map(|l| l["attempts"].as_array().unwrap())
        .filter(|a| a["spoke"] == broken_addr.as_str())
        .collect();
    assert_eq!(
        at_broken.len(),
        3,
        "the broken spoke took exactly consecutive_5xx calls: {at_broken:#?}"
    );
    assert!(at_broken.iter().all(|a| a["outcome"] == "unavailable"));
    assert_eq!(hub.proc.count_log("spoke ejected (outlier detection)"), 1);
}
