//! The load generator: open loop (fixed rate, latency measured from each request's *scheduled*
//! send time so a slow server cannot hide its queueing — no coordinated omission) and closed loop
//! (fixed concurrency), unary and streaming (SSE) chat completions over a pooled keep-alive client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::stats::Percentiles;

/// Where requests go and what they carry.
#[derive(Clone, Debug)]
pub struct Target {
    /// `direct` or `hub` (for reports).
    pub name: String,
    /// Full URL of the chat completions endpoint.
    pub url: String,
    /// `Authorization: Bearer` value, if any.
    pub bearer: Option<String>,
    /// The JSON request body (identical for every request).
    pub body: Bytes,
    /// Whether `body` asks for a stream (the response is read as SSE).
    pub stream: bool,
}

/// The outcome of one request.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Completion time − scheduled (open loop) or actual (closed loop) send time, µs.
    pub latency_us: u64,
    /// Actual send time − scheduled send time, µs (the generator's own lag; open loop only).
    pub send_lag_us: u64,
    /// `None` when the request succeeded, else a short error class (`status 503`, `truncated`…).
    pub error: Option<String>,
    /// Streams: scheduled send → first `data:` chunk with non-empty content, µs.
    pub ttft_us: Option<u64>,
    /// Streams: gaps between consecutive content chunks as received, µs.
    pub gaps_us: Vec<u64>,
    /// The hub's own `x-switchyard-overhead-ms` header, in µs, when present.
    pub overhead_us: Option<u64>,
}

/// A summary of one load phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseResult {
    pub target: String,
    /// `open` or `closed`.
    pub mode: String,
    pub stream: bool,
    /// Open loop: the requested rate; closed loop: 0.
    pub target_rps: f64,
    /// Closed loop: the concurrency; open loop: 0.
    pub concurrency: usize,
    pub duration_s: f64,
    pub requests: usize,
    pub ok: usize,
    pub errors: BTreeMap<String, usize>,
    /// Successful requests per second of wall time (first scheduled send → last completion).
    pub throughput_rps: f64,
    pub latency: Percentiles,
    pub ttft: Percentiles,
    pub inter_chunk_gap: Percentiles,
    /// The hub's self-reported overhead (`x-switchyard-overhead-ms`), unary through the hub only.
    pub hub_overhead: Percentiles,
    /// How late the generator sent requests compared to their schedule (open loop).
    pub send_lag: Percentiles,
    /// CPU time per successful request (µs) of each process during the phase: `hub`, `spoke`,
    /// `fake`, `loadgen` (10 ms tick resolution over the whole phase).
    pub cpu_us_per_request: BTreeMap<String, f64>,
}

impl PhaseResult {
    fn from_samples(
        target: &Target,
        mode: &str,
        target_rps: f64,
        concurrency: usize,
        wall: Duration,
        samples: Vec<Sample>,
    ) -> PhaseResult {
        let mut errors = BTreeMap::new();
        let mut lat = Vec::with_capacity(samples.len());
        let (mut ttft, mut gaps, mut overhead, mut lag) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let requests = samples.len();
        for s in samples {
            lag.push(s.send_lag_us);
            match s.error {
                Some(e) => *errors.entry(e).or_insert(0) += 1,
                None => {
                    lat.push(s.latency_us);
                    ttft.extend(s.ttft_us);
                    gaps.extend(s.gaps_us);
                    overhead.extend(s.overhead_us);
                }
            }
        }
        let ok = lat.len();
        let secs = wall.as_secs_f64().max(1e-9);
        PhaseResult {
            target: target.name.clone(),
            mode: mode.to_string(),
            stream: target.stream,
            target_rps,
            concurrency,
            duration_s: secs,
            requests,
            ok,
            errors,
            throughput_rps: ok as f64 / secs,
            latency: Percentiles::from_micros(lat),
            ttft: Percentiles::from_micros(ttft),
            inter_chunk_gap: Percentiles::from_micros(gaps),
            hub_overhead: Percentiles::from_micros(overhead),
            send_lag: Percentiles::from_micros(lag),
            cpu_us_per_request: BTreeMap::new(),
        }
    }

    /// Total failed requests.
    pub fn error_count(&self) -> usize {
        self.errors.values().sum()
    }
}

/// A pooled HTTP/1.1 keep-alive client sized for `max_conns` concurrent requests per host.
pub fn client(max_conns: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(max_conns)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Sends `rate` requests per second for `duration` on a fixed schedule and waits for all of
/// them. A dedicated OS thread paces the sends (tokio timers have 1 ms granularity, which would
/// bunch requests at 1,000/s); each request runs as a task on the current runtime.
pub async fn open_loop(
    client: &reqwest::Client,
    target: &Target,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<PhaseResult> {
    let n = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let handle = tokio::runtime::Handle::current();
    let start = Instant::now() + Duration::from_millis(5);
    let target_arc = Arc::new(target.clone());
    let client_c = client.clone();
    let pacer = std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn(move || {
            for i in 0..n {
                let at = start + Duration::from_secs_f64(i as f64 / rate);
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                let (tx, client, target) = (tx.clone(), client_c.clone(), target_arc.clone());
                handle.spawn(async move {
                    let s = one(&client, &target, at).await;
                    let _ = tx.send(s);
                });
            }
        })?;
    let mut samples = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    while let Some(s) = rx.recv().await {
        samples.push(s);
    }
    let wall = start.elapsed();
    let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    Ok(PhaseResult::from_samples(
        target, "open", rate, 0, wall, samples,
    ))
}

/// `concurrency` workers send back-to-back requests for `duration`; latency is measured from each
/// actual send.
pub async fn closed_loop(
    client: &reqwest::Client,
    target: &Target,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<PhaseResult> {
    let start = Instant::now();
    let until = start + duration;
    let target_arc = Arc::new(target.clone());
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (client, target) = (client.clone(), target_arc.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while Instant::now() < until {
                out.push(one(&client, &target, Instant::now()).await);
            }
            out
        }));
    }
    let mut samples = Vec::new();
    for w in workers {
        samples.extend(w.await?);
    }
    let wall = start.elapsed();
    Ok(PhaseResult::from_samples(
        target,
        "closed",
        0.0,
        concurrency,
        wall,
        samples,
    ))
}

/// Counts streams that have received their first content chunk and not yet ended.
#[derive(Debug, Default)]
pub struct OpenStreams {
    open: AtomicUsize,
    peak: AtomicUsize,
}

impl OpenStreams {
    fn opened(&self) {
        let now = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    fn closed(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }

    /// Streams open now.
    pub fn now(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// The most streams open at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// Starts `n` streams at once (all scheduled at the same instant) and returns their handles;
/// `open` tracks how many are in their content phase.
pub fn burst_streams(
    client: &reqwest::Client,
    target: &Target,
    n: usize,
    open: Arc<OpenStreams>,
) -> Vec<tokio::task::JoinHandle<Sample>> {
    let at = Instant::now();
    let target = Arc::new(target.clone());
    (0..n)
        .map(|_| {
            let (client, target, open) = (client.clone(), target.clone(), open.clone());
            tokio::spawn(async move { one_tracked(&client, &target, at, Some(&open)).await })
        })
        .collect()
}

/// Summarises a finished burst.
pub fn summarize_burst(target: &Target, wall: Duration, samples: Vec<Sample>) -> PhaseResult {
    let n = samples.len();
    PhaseResult::from_samples(target, "burst", 0.0, n, wall, samples)
}

/// One request scheduled at `at`.
pub async fn one(client: &reqwest::Client, target: &Target, at: Instant) -> Sample {
    one_tracked(client, target, at, None).await
}

async fn one_tracked(
    client: &reqwest::Client,
    target: &Target,
    at: Instant,
    open: Option<&OpenStreams>,
) -> Sample {
    let sent = Instant::now();
    let mut s = Sample {
        send_lag_us: micros(sent.saturating_duration_since(at)),
        ..Sample::default()
    };
    let mut req = client
        .post(&target.url)
        .header("content-type", "application/json")
        .body(target.body.clone());
    if let Some(b) = &target.bearer {
        req = req.bearer_auth(b);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            s.error = Some(transport_class(&e));
            s.latency_us = micros(at.elapsed());
            return s;
        }
    };
    if resp.status() != reqwest::StatusCode::OK {
        s.error = Some(format!("status {}", resp.status().as_u16()));
        let _ = resp.bytes().await;
        s.latency_us = micros(at.elapsed());
        return s;
    }
    s.overhead_us = resp
        .headers()
        .get("x-switchyard-overhead-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|ms| (ms * 1000.0).round() as u64);
    if target.stream {
        read_stream(resp, at, &mut s, open).await;
    } else {
        match resp.bytes().await {
            Ok(b) if !b.is_empty() => {}
            Ok(_) => s.error = Some("empty body".into()),
            Err(e) => s.error = Some(transport_class(&e)),
        }
    }
    s.latency_us = micros(at.elapsed());
    s
}

/// Reads an SSE body: records the first content chunk, the gaps between content chunks, and
/// whether the stream ended with `data: [DONE]`.
async fn read_stream(
    mut resp: reqwest::Response,
    at: Instant,
    s: &mut Sample,
    open: Option<&OpenStreams>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut last_content: Option<Instant> = None;
    let mut done = false;
    let mut counted = false;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                s.error = Some(format!("stream {}", transport_class(&e)));
                break;
            }
        };
        let now = Instant::now();
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            let data = data.trim_ascii();
            if data == b"[DONE]" {
                done = true;
                continue;
            }
            if has_content(data) {
                if let Some(prev) = last_content {
                    s.gaps_us.push(micros(now.saturating_duration_since(prev)));
                } else {
                    s.ttft_us = Some(micros(now.saturating_duration_since(at)));
                    if let Some(o) = open {
                        o.opened();
                        counted = true;
                    }
                }
                last_content = Some(now);
            } else if data.windows(8).any(|w| w == b"\"error\":") {
                s.error.get_or_insert_with(|| "error event".into());
            }
        }
    }
    if counted && let Some(o) = open {
        o.closed();
    }
    if s.error.is_none() && !done {
        s.error = Some("truncated (no [DONE])".into());
    }
    if s.error.is_none() && s.ttft_us.is_none() {
        s.error = Some("no content".into());
    }
}

/// Whether an SSE data payload carries a non-empty `choices[0].delta.content`.
fn has_content(data: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return false;
    };
    v.pointer("/choices/0/delta/content")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|c| !c.is_empty())
}

fn transport_class(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else if e.is_body() || e.is_decode() {
        "body".into()
    } else {
        "transport".into()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_detection() {
        assert!(has_content(
            br#"{"choices":[{"index":0,"delta":{"content":"Hello "}}]}"#
        ));
        assert!(!has_content(
            br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#
        ));
        assert!(!has_content(br#"{"choices":[],"usage":{}}"#));
        assert!(!has_content(b"[DONE]"));
    }
}
