//! End-to-end: the real `hub` binary in front of real `spoke` binaries, with fake OpenAI-style
//! upstreams. Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use switchyard_e2e::Spoke;
use switchyard_testkit::behavior::{Behavior, ErrorKind};
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::{Proc, eventually, write_config};

const KEY: &str = "sk-e2e-key";
/// `printf %s sk-e2e-key | sha256sum`
const KEY_SHA256: &str = "efa5642593240584aa889ebfff15261eedfcf4bef5a8ec85db1be8135774d1a9";

struct Hub {
    proc: Proc,
    _config: tempfile::TempPath,
}

impl Hub {
    async fn start(body: &str) -> Hub {
        let toml = format!(
            "listen = \"127.0.0.1:0\"\ndrain_timeout = \"20s\"\n{body}\n\
             [[tenants]]\nname = \"e2e\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"*\"]\n"
        );
        let path = write_config(&toml, "toml").unwrap();
        let proc = Proc::spawn(
            "hub",
            &["--config".to_string(), path.to_string_lossy().into_owned()],
            &[],
        )
        .await
        .unwrap();
        Hub {
            proc,
            _config: path,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.proc.url())
    }

    async fn chat(&self, stream: bool) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&json!({
                "model": "demo",
                "stream": stream,
                "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "one two three four five six seven"}],
            }))
            .send()
            .await
            .unwrap()
    }

    /// Waits until the hub has logged `spoke healthy` for `n` distinct spokes (counting lines).
    async fn wait_healthy(&self, n: usize) {
        let ok = eventually(Duration::from_secs(15), || async {
            self.proc.count_log("spoke healthy") >= n
        })
        .await;
        assert!(
            ok,
            "hub did not see {n} healthy spokes:\n{}",
            self.proc.logs()
        );
    }
}

/// A spoke for `account` whose one region is the fake `up`, serving models `m1` and `m2`.
fn spoke_config(account: &str, up: &FakeOpenAi, listen: &str) -> String {
    format!(
        "listen = \"{listen}\"\naccount = \"{account}\"\nprovider = \"openai\"\n\
         default_timeout = \"20s\"\ndrain_timeout = \"5s\"\n\
         [[regions]]\nname = \"us-east-1\"\nendpoint = \"{}\"\n\
         [[models]]\nid = \"m1\"\nstreaming = true\ncontext_window = 100000\n\
         [[models]]\nid = \"m2\"\nstreaming = true\ncontext_window = 100000\n",
        up.url()
    )
}

async fn spoke(account: &str, up: &FakeOpenAi) -> Spoke {
    Spoke::start(&spoke_config(account, up, "127.0.0.1:0"))
        .await
        .unwrap()
}

fn pool(name: &str, spokes: &[(SocketAddr, u32)], health: &str) -> String {
    let list: Vec<String> = spokes
        .iter()
        .map(|(a, w)| format!("{{ addr = \"{a}\", weight = {w} }}"))
        .collect();
    format!(
        "[[providers]]\nname = \"{name}\"\nspokes = [{}]\nhealth = {health}\n",
        list.join(", ")
    )
}

const DEMO_M1: &str =
    "[[aliases]]\nname = \"demo\"\ncandidates = [{ provider = \"p1\", model = \"m1\" }]\n";
const FAST_HEALTH: &str = "{ interval = \"1s\" }";

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_three_to_one_across_two_spokes() {
    let (ua, ub) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    let (a, b) = (spoke("acct-a", &ua).await, spoke("acct-b", &ub).await);
    let hub = Hub::start(&format!(
        "{DEMO_M1}{}",
        pool("p1", &[(a.proc.addr(), 3), (b.proc.addr(), 1)], FAST_HEALTH)
    ))
    .await;
    hub.wait_healthy(2).await;
    let n = 300;
    let mut to_a = 0;
    for _ in 0..n {
        let r = hub.chat(false).await;
        assert_eq!(r.status(), 200);
        if header(&r, "x-switchyard-account") == "acct-a" {
            to_a += 1;
        }
    }
    // Expected share 0.75; the binomial sd at n=300 is 0.025: ±0.10 is 4 sd.
    let share = f64::from(to_a) / f64::from(n);
    assert!((0.65..=0.85).contains(&share), "weight-3 spoke got {share}");
    assert_eq!(ua.calls("m1") + ub.calls("m1"), u64::from(n as u32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_spoke_under_load_no_client_errors_then_rejoin() {
    let (ua, ub) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    ua.set_behavior("m1", Behavior::Slow { ms: 20 });
    ub.set_behavior("m1", Behavior::Slow { ms: 20 });
    let a = spoke("acct-a", &ua).await;
    let b = spoke("acct-b", &ub).await;
    let b_addr = b.proc.addr();
    // Active checks every 5s with 3 failures needed: only passive ejection can react in time.
    let hub = Arc::new(
        Hub::start(&format!(
            "{DEMO_M1}{}",
            pool(
                "p1",
                &[(a.proc.addr(), 1), (b_addr, 1)],
                "{ interval = \"5s\", unhealthy_threshold = 3 }"
            )
        ))
        .await,
    );
    hub.wait_healthy(2).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let hub = hub.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = hub.chat(false).await;
                if t.elapsed() > Duration::from_millis(500) {
                    eprintln!("slow request: {:?} {}", t.elapsed(), r.status());
                }
                statuses.push((r.status().as_u16(), header(&r, "x-switchyard-account")));
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(ub.calls("m1") > 0, "spoke b served nothing before the kill");
    b.proc.kill9().unwrap();
    let killed = Instant::now();
    hub.proc
        .wait_for_log("spoke ejected", Duration::from_secs(3))
        .await
        .unwrap();
    let ejected_after = killed.elapsed();
    assert!(
        ejected_after < Duration::from_secs(3),
        "ejection took {ejected_after:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b_calls_after_kill = ub.calls("m1");

    // Restart b on the same address: the half-open probe brings it back.
    drop(b);
    let b2 = Spoke::start(&spoke_config("acct-b", &ub, &b_addr.to_string()))
        .await
        .unwrap();
    let rejoined = eventually(Duration::from_secs(15), || async {
        ub.calls("m1") > b_calls_after_kill
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let errors: Vec<_> = all.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        errors.is_empty(),
        "{} of {} requests failed: {errors:?}",
        errors.len(),
        all.len()
    );
    eprintln!("requests: {}", all.len());
    assert!(all.len() > 20, "too little load: {}", all.len());
    assert!(
        rejoined,
        "restarted spoke did not rejoin:\n{}",
        hub.proc.logs()
    );
    drop(b2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_account_moves_to_other_account_then_429() {
    let (ua, ub) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    let (a, b) = (spoke("acct-a", &ua).await, spoke("acct-b", &ub).await);
    let hub = Hub::start(&format!(
        "{DEMO_M1}{}",
        pool("p1", &[(a.proc.addr(), 1), (b.proc.addr(), 1)], FAST_HEALTH)
    ))
    .await;
    hub.wait_healthy(2).await;
    ua.set_default(Behavior::ThrottleRetryAfter { secs: 30 });
    for _ in 0..20 {
        let r = hub.chat(false).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchyard-account"), "acct-b");
    }
    ub.set_default(Behavior::ThrottleRetryAfter { secs: 20 });
    let r = hub.chat(false).await;
    assert_eq!(r.status(), 429, "{}", r.text().await.unwrap());
    let retry_after: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=30).contains(&retry_after), "Retry-After {retry_after}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_whose_spokes_fail_falls_back_to_next_candidate() {
    let (ua, ub) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    let (a, b) = (spoke("acct-a", &ua).await, spoke("acct-b", &ub).await);
    ua.set_default(Behavior::Error {
        error: ErrorKind::ServiceUnavailable,
    });
    let hub = Hub::start(&format!(
        "[[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"p1\", model = \"m1\" }}, {{ provider = \"p2\", model = \"m2\" }}]\n{}{}",
        pool("p1", &[(a.proc.addr(), 1)], FAST_HEALTH),
        pool("p2", &[(b.proc.addr(), 1)], FAST_HEALTH)
    ))
    .await;
    hub.wait_healthy(2).await;
    for _ in 0..5 {
        let r = hub.chat(false).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchyard-account"), "acct-b");
        assert_eq!(header(&r, "x-switchyard-model"), "m2");
    }
    assert!(ua.calls("m1") > 0, "the first provider was never tried");
    assert!(ub.calls("m2") >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_through_both_tiers_with_failover_and_error_event() {
    let (ua, ub) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    let (a, b) = (spoke("acct-a", &ua).await, spoke("acct-b", &ub).await);
    let hub = Hub::start(&format!(
        "{DEMO_M1}{}",
        pool(
            "p1",
            &[(a.proc.addr(), 50), (b.proc.addr(), 1)],
            FAST_HEALTH
        )
    ))
    .await;
    hub.wait_healthy(2).await;

    // Plain stream.
    let r = hub.chat(true).await;
    assert_eq!(r.status(), 200);
    let data = sse_data(&r.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let text: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(text.contains("Hello from"), "{text}");

    // Spoke a fails before its first chunk: the hub fails over to b.
    ua.set_default(Behavior::Error {
        error: ErrorKind::ServiceUnavailable,
    });
    for _ in 0..3 {
        let r = hub.chat(true).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchyard-account"), "acct-b");
        let data = sse_data(&r.text().await.unwrap());
        assert_eq!(data.last().unwrap(), "[DONE]");
    }

    // b fails after two chunks: the client gets them, then an error event, never [DONE].
    ub.set_default(Behavior::StreamFailAfter { chunks: 2 });
    let r = hub.chat(true).await;
    assert_eq!(r.status(), 200);
    let data = sse_data(&r.text().await.unwrap());
    assert!(!data.iter().any(|d| d == "[DONE]"), "{data:?}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{last}");
    assert!(data.len() >= 3, "{data:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_sigterm_drains_an_in_flight_stream() {
    let ua = FakeOpenAi::start().await.unwrap();
    ua.set_chunk_delay(Duration::from_millis(150));
    let a = spoke("acct-a", &ua).await;
    let mut hub = Hub::start(&format!(
        "{DEMO_M1}{}",
        pool("p1", &[(a.proc.addr(), 1)], FAST_HEALTH)
    ))
    .await;
    hub.wait_healthy(1).await;
    let r = hub.chat(true).await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    hub.proc.sigterm().unwrap();
    let mut rest = String::from_utf8_lossy(&first).into_owned();
    while let Some(chunk) = body.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let data = sse_data(&rest);
    assert_eq!(data.last().unwrap(), "[DONE]", "{rest}");
    let status = hub.proc.wait_exit(Duration::from_secs(20)).await.unwrap();
    assert!(status.success(), "{status}");
    assert!(hub.proc.logs().contains("drained"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_spoke_calls_in_flight_are_retried_elsewhere() {
    let (ua, ub) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    let (a, b) = (spoke("acct-a", &ua).await, spoke("acct-b", &ub).await);
    let hub = Arc::new(
        Hub::start(&format!(
            "{DEMO_M1}{}",
            pool(
                "p1",
                &[(a.proc.addr(), 1), (b.proc.addr(), 1)],
                "{ interval = \"2s\", timeout = \"1s\", unhealthy_threshold = 2 }"
            )
        ))
        .await,
    );
    hub.wait_healthy(2).await;
    b.proc.sigstop().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = hub.chat(false).await;
            (
                r.status().as_u16(),
                header(&r, "x-switchyard-account"),
                t.elapsed(),
            )
        }));
    }
    for t in tasks {
        let (status, account, took) = t.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(account, "acct-a");
        // Keepalive (2s ping, 1s timeout) frees calls stuck on the stopped spoke well before
        // the 60s request deadline.
        assert!(took < Duration::from_secs(10), "took {took:?}");
    }
    b.proc.sigcont().unwrap();
}
