//! Shared pieces of the chaos tests (`tests/chaos_*.rs`): a real `hub` in front of real `spoke`
//! processes whose upstreams are `FakeOpenAi`s, and a bounded load loop that records, for every
//! request, what the client saw (status, account, attempts, whether a stream ended with
//! `data: [DONE]`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use switchyard_e2e::Spoke;
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::{Proc, eventually, write_config};

pub const KEY: &str = "sk-e2e-key";
/// `printf %s sk-e2e-key | sha256sum`
pub const KEY_SHA256: &str = "efa5642593240584aa889ebfff15261eedfcf4bef5a8ec85db1be8135774d1a9";

/// Alias `demo` → provider pool `p1`, model `m1`.
pub const DEMO_M1: &str =
    "[[aliases]]\nname = \"demo\"\ncandidates = [{ provider = \"p1\", model = \"m1\" }]\n";

pub struct Hub {
    pub proc: Proc,
    _config: tempfile::TempPath,
}

impl Hub {
    /// Starts `hub` with `body` (aliases, providers) plus a listen address and the test tenant.
    pub async fn start(body: &str) -> Hub {
        let toml = format!(
            "listen = \"127.0.0.1:0\"\ndrain_timeout = \"20s\"\n{body}\n\
             [[tenants]]\nname = \"chaos\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"*\"]\n"
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

    pub fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.proc.url())
    }

    /// Waits until the hub has logged `spoke healthy` at least `n` times in all.
    pub async fn wait_healthy_lines(&self, n: usize, within: Duration) {
        let ok = eventually(within, || async {
            self.proc.count_log("spoke healthy") >= n
        })
        .await;
        assert!(
            ok,
            "hub did not log `spoke healthy` {n} times within {within:?}:\n{}",
            self.proc.logs()
        );
    }
}

/// TOML of a spoke for `account` on `listen` serving `m1` (streaming) over the given regions
/// (name, fake), in that order.
pub fn spoke_toml(account: &str, regions: &[(&str, &FakeOpenAi)], listen: &str) -> String {
    let mut t = format!(
        "listen = \"{listen}\"\naccount = \"{account}\"\nprovider = \"openai\"\n\
         default_timeout = \"20s\"\ndrain_timeout = \"10s\"\n"
    );
    for (name, fake) in regions {
        t.push_str(&format!(
            "[[regions]]\nname = \"{name}\"\nendpoint = \"{}\"\n",
            fake.url()
        ));
    }
    t.push_str("[[models]]\nid = \"m1\"\nstreaming = true\n");
    t
}

/// Starts a spoke for `account` with one region `us-east-1` on `fake`.
pub async fn spoke(account: &str, fake: &FakeOpenAi) -> Spoke {
    Spoke::start(&spoke_toml(account, &[("us-east-1", fake)], "127.0.0.1:0"))
        .await
        .unwrap()
}

/// A static `[[providers]]` block named `name` with `spokes` (weight 1 each).
pub fn pool(name: &str, spokes: &[SocketAddr], health: &str) -> String {
    let list: Vec<String> = spokes
        .iter()
        .map(|a| format!("{{ addr = \"{a}\", weight = 1 }}"))
        .collect();
    format!(
        "[[providers]]\nname = \"{name}\"\nspokes = [{}]\nhealth = {health}\n",
        list.join(", ")
    )
}

/// One request as the client saw it.
#[derive(Clone, Debug)]
pub struct Rec {
    pub started: Instant,
    pub ended: Instant,
    pub stream: bool,
    pub status: u16,
    pub account: String,
    pub region: String,
    /// `x-switchyard-attempts` (spoke calls the hub made), 0 when absent.
    pub attempts: u32,
    /// Streams: the body ended with `data: [DONE]`.
    pub done: bool,
    /// Transport error, error event, or error body.
    pub error: Option<String>,
}

impl Rec {
    /// A 200 with no error and, for streams, a `[DONE]` at the end.
    pub fn ok(&self) -> bool {
        self.status == 200 && self.error.is_none() && (!self.stream || self.done)
    }

    pub fn took(&self) -> Duration {
        self.ended - self.started
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One chat completion for alias `demo`.
pub async fn call(client: &reqwest::Client, url: &str, stream: bool) -> Rec {
    let started = Instant::now();
    let mut rec = Rec {
        started,
        ended: started,
        stream,
        status: 0,
        account: String::new(),
        region: String::new(),
        attempts: 0,
        done: false,
        error: None,
    };
    let resp = client
        .post(url)
        .bearer_auth(KEY)
        .json(&json!({
            "model": "demo",
            "stream": stream,
            "messages": [{"role": "user", "content": "one two three four five six seven"}],
            "max_tokens": 32,
        }))
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            rec.error = Some(format!("send: {e}"));
            rec.ended = Instant::now();
            return rec;
        }
    };
    rec.status = resp.status().as_u16();
    let h = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    rec.account = h("x-switchyard-account");
    rec.region = h("x-switchyard-region");
    rec.attempts = h("x-switchyard-attempts").parse().unwrap_or(0);
    let mut body = String::new();
    let mut bytes = resp.bytes_stream();
    while let Some(chunk) = bytes.next().await {
        match chunk {
            Ok(c) => body.push_str(&String::from_utf8_lossy(&c)),
            Err(e) => {
                rec.error = Some(format!("body: {e}"));
                break;
            }
        }
    }
    rec.ended = Instant::now();
    if rec.status != 200 {
        rec.error
            .get_or_insert(format!("status {}: {body}", rec.status));
        return rec;
    }
    if stream {
        let data: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .collect();
        rec.done = data.last() == Some(&"[DONE]");
        if let Some(err) = data
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|v| v.get("error").is_some())
        {
            rec.error.get_or_insert(format!("error event: {err}"));
        }
        if !rec.done {
            rec.error.get_or_insert("truncated: no [DONE]".to_string());
        }
    } else if serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.pointer("/choices/0/message/content").cloned())
        .is_none()
    {
        rec.error = Some(format!("no content: {body}"));
    }
    rec
}

/// `workers` tasks sending requests back to back (each followed by `pause`) until stopped, or
/// until `max_per_worker` requests each (a bound so a test cannot run away).
pub struct LoadLoop {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<Rec>>>,
}

impl LoadLoop {
    pub fn start(url: &str, workers: usize, stream: bool, pause: Duration) -> LoadLoop {
        Self::start_bounded(url, workers, stream, pause, 2_000)
    }

    pub fn start_bounded(
        url: &str,
        workers: usize,
        stream: bool,
        pause: Duration,
        max_per_worker: usize,
    ) -> LoadLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let client = client();
        let workers = (0..workers)
            .map(|_| {
                let (stop, client, url) = (stop.clone(), client.clone(), url.to_string());
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    while !stop.load(Ordering::SeqCst) && out.len() < max_per_worker {
                        out.push(call(&client, &url, stream).await);
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                    out
                })
            })
            .collect();
        LoadLoop { stop, workers }
    }

    /// Stops the workers after their current request and returns every record.
    pub async fn stop(self) -> Vec<Rec> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for w in self.workers {
            all.extend(w.await.unwrap());
        }
        all.sort_by_key(|r| r.started);
        all
    }
}

/// A one-line summary: total, failures, per account.
pub fn summary(recs: &[Rec]) -> String {
    let mut by_account = std::collections::BTreeMap::<String, usize>::new();
    for r in recs {
        *by_account.entry(r.account.clone()).or_insert(0) += 1;
    }
    let failed = recs.iter().filter(|r| !r.ok()).count();
    format!(
        "{} requests, {failed} failed, by account {by_account:?}",
        recs.len()
    )
}

/// The failures, for assertion messages (at most 10).
pub fn failures(recs: &[Rec]) -> String {
    recs.iter()
        .filter(|r| !r.ok())
        .take(10)
        .map(|r| {
            format!(
                "  stream={} status={} account={:?} attempts={} took={:?} error={:?}\n",
                r.stream,
                r.status,
                r.account,
                r.attempts,
                r.took(),
                r.error
            )
        })
        .collect()
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}
