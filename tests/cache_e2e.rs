//! End-to-end: the response cache and request coalescing of the real `hub` (in front of a real
//! `spoke` and a fake OpenAI upstream that counts its calls). Run `cargo build --workspace --bins`
//! first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;
use switchyard_e2e::Spoke;
use switchyard_e2e::prom::{Samples, settled, sum};
use switchyard_testkit::behavior::Behavior;
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::{Proc, eventually, write_config};

const KEY_A: &str = "sk-cache-a";
const KEY_B: &str = "sk-cache-b";

fn sha(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

struct Hub {
    proc: Proc,
    _config: tempfile::TempPath,
    client: reqwest::Client,
}

impl Hub {
    async fn start(toml: &str) -> Hub {
        let config = write_config(toml, "toml").unwrap();
        let proc = Proc::spawn(
            "hub",
            &[
                "--config".to_string(),
                config.to_string_lossy().into_owned(),
            ],
            &[],
        )
        .await
        .unwrap();
        let ok = eventually(Duration::from_secs(15), || async {
            proc.count_log("spoke healthy") >= 1
        })
        .await;
        assert!(ok, "{}", proc.logs());
        Hub {
            proc,
            _config: config,
            client: reqwest::Client::new(),
        }
    }

    async fn send(&self, key: &str, body: Value) -> (u16, String, String) {
        let r = self
            .client
            .post(format!("{}/v1/chat/completions", self.proc.url()))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let cache = r
            .headers()
            .get("x-switchyard-cache")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        (status, cache, content_of(&text))
    }
}

/// The assistant text of a JSON completion or of an SSE stream (deltas joined; `[DONE]` checked).
fn content_of(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        return v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "stream not finished: {body}");
    data.iter()
        .filter(|d| **d != "[DONE]")
        .filter_map(|d| {
            serde_json::from_str::<Value>(d).ok()?["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

fn chat(text: &str, temperature: f64, stream: bool) -> Value {
    json!({
        "model": "demo",
        "temperature": temperature,
        "stream": stream,
        "max_tokens": 50,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
    })
}

async fn stack(up: &FakeOpenAi, tenant_extra: &str, extra: &str) -> (Spoke, Hub) {
    stack_with(up, tenant_extra, extra, "").await
}

/// A spoke on `up` and a hub with tenants a and b (`tenant_extra` on both), alias `demo`
/// (`alias_extra`) and `extra` top-level config.
async fn stack_with(
    up: &FakeOpenAi,
    tenant_extra: &str,
    extra: &str,
    alias_extra: &str,
) -> (Spoke, Hub) {
    let spoke = Spoke::start(&format!(
        "listen = \"127.0.0.1:0\"\naccount = \"acct\"\nprovider = \"openai\"\n\
         default_timeout = \"20s\"\ndrain_timeout = \"1s\"\n\
         [[regions]]\nname = \"us-east-1\"\nendpoint = \"{}\"\n\
         [[models]]\nid = \"m1\"\nstreaming = true\n",
        up.url()
    ))
    .await
    .unwrap();
    let hub = Hub::start(&format!(
        "listen = \"127.0.0.1:0\"\n{extra}\n\
         [[tenants]]\nname = \"a\"\napi_key_sha256 = [\"{}\"]\naliases = [\"*\"]\n{tenant_extra}\n\
         [[tenants]]\nname = \"b\"\napi_key_sha256 = [\"{}\"]\naliases = [\"*\"]\n{tenant_extra}\n\
         [[aliases]]\nname = \"demo\"\n{alias_extra}\n\
         candidates = [{{ provider = \"p\", model = \"m1\" }}]\n\
         [[providers]]\nname = \"p\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n",
        sha(KEY_A),
        sha(KEY_B),
        spoke.proc.addr()
    ))
    .await;
    (spoke, hub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hit_miss_streaming_replay_and_ttl_expiry() {
    let up = FakeOpenAi::start().await.unwrap();
    // Tokens: 150 per minute, 50 reserved per request: a hit that counted tokens would be refused
    // after two; requests: 8 per minute, hits included.
    let (_spoke, hub) = stack(
        &up,
        "cache = { ttl = \"2s\" }\ntokens_per_minute = 150\nrequests_per_minute = 8",
        "",
    )
    .await;
    let (s, c, first) = hub.send(KEY_A, chat("cache me please", 0.0, false)).await;
    assert_eq!((s, c.as_str()), (200, "miss"));
    assert!(first.contains("cache me please"), "{first}");
    assert_eq!(up.calls("m1"), 1);
    for _ in 0..3 {
        let (s, c, text) = hub.send(KEY_A, chat("cache me please", 0.0, false)).await;
        assert_eq!((s, c.as_str(), text.as_str()), (200, "hit", first.as_str()));
    }
    // The same request streamed: replayed from the cache as SSE chunks.
    let (s, c, text) = hub.send(KEY_A, chat("cache me please", 0.0, true)).await;
    assert_eq!((s, c.as_str(), text.as_str()), (200, "hit", first.as_str()));
    assert_eq!(up.calls("m1"), 1, "hits made upstream calls");

    // Not deterministic (temperature > 0) or different messages: not served from the cache.
    let (s, c, _) = hub.send(KEY_A, chat("cache me please", 0.7, false)).await;
    assert_eq!((s, c.as_str()), (200, ""));
    let (_, c, _) = hub.send(KEY_A, chat("something else", 0.0, false)).await;
    assert_eq!(c, "miss");
    assert_eq!(up.calls("m1"), 3);

    // Requests still count: 8 per minute, 7 used → one more, then 429 (a hit too).
    let (s, c, _) = hub.send(KEY_A, chat("cache me please", 0.0, false)).await;
    assert_eq!((s, c.as_str()), (200, "hit"));
    let (s, _, _) = hub.send(KEY_A, chat("cache me please", 0.0, false)).await;
    assert_eq!(s, 429, "hits must count against requests_per_minute");

    // TTL: after 2 s the entry is gone (tenant b: its own, fresh quota).
    let (_, c, _) = hub.send(KEY_B, chat("ttl", 0.0, false)).await;
    assert_eq!(c, "miss");
    let (_, c, _) = hub.send(KEY_B, chat("ttl", 0.0, false)).await;
    assert_eq!(c, "hit");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let (_, c, _) = hub.send(KEY_B, chat("ttl", 0.0, false)).await;
    assert_eq!(c, "miss", "expired entry served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_never_shared_across_tenants() {
    let up = FakeOpenAi::start().await.unwrap();
    let (_spoke, hub) = stack(&up, "cache = { ttl = \"1m\" }", "").await;
    let body = chat("tenant secret question", 0.0, false);
    assert_eq!(hub.send(KEY_A, body.clone()).await.1, "miss");
    assert_eq!(hub.send(KEY_A, body.clone()).await.1, "hit");
    // Same request from tenant b: its own miss and upstream call.
    assert_eq!(hub.send(KEY_B, body.clone()).await.1, "miss");
    assert_eq!(hub.send(KEY_B, body.clone()).await.1, "hit");
    assert_eq!(up.calls("m1"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_identical_concurrent_requests_make_one_upstream_call() {
    let up = FakeOpenAi::start().await.unwrap();
    up.set_behavior("m1", Behavior::Slow { ms: 1500 });
    // The alias opts in with TTL 0: coalescing only, nothing stored.
    let (_spoke, hub) = stack_with(&up, "", "", "cache = { ttl = \"0s\" }").await;
    let hub = Arc::new(hub);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let hub = hub.clone();
        // Half stream, half do not: both follow the same call.
        tasks.push(tokio::spawn(async move {
            hub.send(KEY_A, chat("fan me out", 0.0, i % 2 == 0)).await
        }));
    }
    let mut outcomes = std::collections::BTreeMap::new();
    let mut texts = std::collections::BTreeSet::new();
    for t in tasks {
        let (s, c, text) = t.await.unwrap();
        assert_eq!(s, 200);
        *outcomes.entry(c).or_insert(0) += 1;
        texts.insert(text);
    }
    assert_eq!(up.calls("m1"), 1, "outcomes: {outcomes:?}");
    assert_eq!(outcomes.get("miss"), Some(&1), "{outcomes:?}");
    assert_eq!(outcomes.get("coalesced"), Some(&49), "{outcomes:?}");
    assert_eq!(texts.len(), 1, "followers got different answers: {texts:?}");
    assert!(texts.iter().next().unwrap().contains("fan me out"));
    // TTL 0: nothing stored, the next identical request calls upstream again.
    assert_eq!(
        hub.send(KEY_A, chat("fan me out", 0.0, false)).await.1,
        "miss"
    );
    assert_eq!(up.calls("m1"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_leader_does_not_hang_its_followers() {
    let up = FakeOpenAi::start().await.unwrap();
    // Every call takes 800 ms; the leader's client gives up after 200 ms.
    up.set_behavior("m1", Behavior::Slow { ms: 800 });
    let (_spoke, hub) = stack(&up, "cache = { ttl = \"1m\" }", "").await;
    let hub = Arc::new(hub);
    let leader = {
        let hub = hub.clone();
        tokio::spawn(async move { hub.send(KEY_A, chat("leader dies", 0.0, false)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The leader's client goes away mid-call: its followers must not wait forever.
    leader.abort();
    let started = std::time::Instant::now();
    let (s, c, text) = hub.send(KEY_A, chat("leader dies", 0.0, false)).await;
    assert_eq!(s, 200);
    assert!(c == "miss" || c == "coalesced", "{c}");
    assert!(text.contains("leader dies"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_is_shared_by_hub_replicas() {
    let up = FakeOpenAi::start().await.unwrap();
    let prefix = format!("sy-cache-test-{}", uuid_like());
    let extra = format!(
        "[cache]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"\nkey_prefix = \"{prefix}\"\n"
    );
    let (spoke, hub1) = stack(&up, "cache = { ttl = \"30s\" }", &extra).await;
    let hub2 = Hub::start(&format!(
        "listen = \"127.0.0.1:0\"\n{extra}\n\
         [[tenants]]\nname = \"a\"\napi_key_sha256 = [\"{}\"]\naliases = [\"*\"]\ncache = {{ ttl = \"30s\" }}\n\
         [[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"p\", model = \"m1\" }}]\n\
         [[providers]]\nname = \"p\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n",
        sha(KEY_A),
        spoke.proc.addr()
    ))
    .await;
    let body = chat("shared between replicas", 0.0, false);
    assert_eq!(hub1.send(KEY_A, body.clone()).await.1, "miss");
    let (s, c, text) = hub2.send(KEY_A, body.clone()).await;
    assert_eq!((s, c.as_str()), (200, "hit"));
    assert!(text.contains("shared between replicas"));
    assert_eq!(up.calls("m1"), 1);
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}-{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_streaming_follower_gets_every_chunk_of_the_leaders_stream() {
    let up = FakeOpenAi::start().await.unwrap();
    // A slow stream: one word every 150 ms.
    up.set_chunk_delay(Duration::from_millis(150));
    let (_spoke, hub) = stack(&up, "cache = { ttl = \"1m\" }", "").await;
    let hub = Arc::new(hub);
    let body = chat("one two three four five six", 0.0, true);
    let leader = {
        let (hub, body) = (hub.clone(), body.clone());
        tokio::spawn(async move { hub.send(KEY_A, body).await })
    };
    // Join mid-stream: the replay buffer hands over the chunks already sent, then the rest.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (s, c, follower_text) = hub.send(KEY_A, body.clone()).await;
    let (ls, lc, leader_text) = leader.await.unwrap();
    assert_eq!((ls, lc.as_str()), (200, "miss"));
    assert_eq!((s, c.as_str()), (200, "coalesced"));
    assert_eq!(follower_text, leader_text);
    assert!(
        leader_text.contains("one two three four five six"),
        "{leader_text}"
    );
    assert_eq!(up.calls("m1"), 1);
}

impl Hub {
    /// The hub's `/metrics` once no request is in flight (records, streams included, finish
    /// when their response ends).
    async fn scrape(&self) -> Samples {
        settled(
            &format!("{}/metrics", self.proc.url()),
            "switchyard_in_flight_requests",
        )
        .await
    }
}

/// `switchyard_cache_requests_total{outcome}` moves by exactly the hits, misses and coalesced
/// requests of known traffic, and every request's audit line — streamed ones included — carries
/// its `x-switchyard-cache` value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_metrics_and_audit_count_hits_misses_and_coalesced() {
    let up = FakeOpenAi::start().await.unwrap();
    up.set_behavior("m1", Behavior::Slow { ms: 800 });
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let (_spoke, hub) = stack(
        &up,
        "cache = { ttl = \"1m\" }",
        &format!("[audit]\npath = \"{}\"\n", audit.display()),
    )
    .await;
    let hub = Arc::new(hub);
    let m0 = hub.scrape().await;
    // Four identical requests at once (two streamed): one call, three followers.
    let mut tasks = Vec::new();
    for i in 0..4 {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            hub.send(KEY_A, chat("count me", 0.0, i % 2 == 0)).await
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        let (s, c, _) = t.await.unwrap();
        assert_eq!(s, 200);
        outcomes.push(c);
    }
    outcomes.sort();
    assert_eq!(outcomes, ["coalesced", "coalesced", "coalesced", "miss"]);
    // Two hits (one replayed as a stream), then a streamed miss.
    assert_eq!(hub.send(KEY_A, chat("count me", 0.0, false)).await.1, "hit");
    assert_eq!(hub.send(KEY_A, chat("count me", 0.0, true)).await.1, "hit");
    assert_eq!(
        hub.send(KEY_A, chat("streamed miss", 0.0, true)).await.1,
        "miss"
    );
    // Not cacheable (temperature > 0): not counted at all.
    assert_eq!(hub.send(KEY_A, chat("count me", 0.5, false)).await.1, "");
    assert_eq!(up.calls("m1"), 3);

    let m1 = hub.scrape().await;
    let d = |outcome: &str| {
        let want = [("outcome", outcome)];
        sum(&m1, "switchyard_cache_requests_total", &want)
            - sum(&m0, "switchyard_cache_requests_total", &want)
    };
    assert_eq!(
        (d("hit"), d("miss"), d("coalesced")),
        (2.0, 2.0, 3.0),
        "{m1:#?}"
    );

    let mut lines: Vec<Value> = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lines.len(), 8, "{lines:#?}");
    // The leader of the four was streamed or not (whichever came first); its upstream call says.
    let leader_streamed = up.requests()[0].body["stream"] == true;
    let mut seen: Vec<(String, bool)> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["status"], 200, "{l}");
            assert_eq!(l["tenant"], "a");
            assert_eq!(l["surface"], "openai");
            (
                l["cache"].as_str().unwrap_or("none").to_string(),
                l["stream"].as_bool().unwrap(),
            )
        })
        .collect();
    seen.sort();
    let mut want = vec![
        ("coalesced", false),
        ("coalesced", true),
        ("hit", false),
        ("hit", true),
        ("miss", leader_streamed),
        ("miss", true),
        ("none", false),
        // The follower of the leader's own kind.
        ("coalesced", !leader_streamed),
    ]
    .into_iter()
    .map(|(c, s)| (c.to_string(), s))
    .collect::<Vec<_>>();
    want.sort();
    assert_eq!(seen, want, "{lines:#?}");
    // The streamed misses were served by their own call: usage and TTFT are in their lines.
    for l in lines
        .iter()
        .filter(|l| l["cache"] == "miss" && l["stream"] == true)
    {
        assert!(l["usage"]["output_tokens"].as_u64().unwrap() > 0, "{l}");
        assert!(l["time_to_first_token_ms"].is_number(), "{l}");
    }
}
