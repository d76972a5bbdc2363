//! The benchmark scenarios, each run directly against the fake and through hub → spoke in the
//! same run, back to back, with the same request body; the `wrk` phase and the streaming
//! scenario also run it through the floor relay.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::instructions::Instructions;
use crate::load::{self, OpenStreams, PhaseResult, Target};
use crate::stack::{
    API_KEY, POLICY_API_KEY, RESET_EVERY, Stack, policy_request_body, request_body,
};
use crate::stats::Added;
use crate::sys::{self, Load};
use crate::wrk::{self, WrkPhase, WrkTarget};

/// What to run (all durations and sizes configurable from the command line).
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// Open-loop rates for the added-latency scenario.
    pub rates: Vec<f64>,
    /// Length of each measured phase.
    pub phase_secs: f64,
    /// Closed-loop concurrency for the saturation scenario.
    pub saturation_concurrency: usize,
    /// Open-loop rate of the streaming scenario.
    pub stream_rate: f64,
    /// The fake's pause before each content chunk in the streaming scenario.
    pub stream_chunk_delay_ms: u64,
    /// Concurrent streams held open for the memory scenario.
    pub concurrent_streams: usize,
    /// The fake's pause before each chunk in the memory scenario (12 content chunks per stream).
    pub hold_chunk_delay_ms: u64,
    /// Open-loop rate of the content-policy scenario.
    pub policy_rate: f64,
    /// Concurrencies (wrk `-c`) of the wrk phase; empty = no wrk phase.
    pub wrk_concurrency: Vec<usize>,
}

/// Direct and gateway results of one scenario point.
#[derive(Clone, Debug, Serialize)]
pub struct Pair {
    pub direct: PhaseResult,
    pub hub: PhaseResult,
    /// hub − direct, latency percentiles.
    pub added_latency: Added,
    /// hub − direct, time to first token (streams).
    pub added_ttft: Added,
    /// hub − direct, gaps between chunks (streams).
    pub added_gap: Added,
}

impl Pair {
    fn new(direct: PhaseResult, hub: PhaseResult) -> Pair {
        Pair {
            added_latency: hub.latency.minus(&direct.latency),
            added_ttft: hub.ttft.minus(&direct.ttft),
            added_gap: hub.inter_chunk_gap.minus(&direct.inter_chunk_gap),
            direct,
            hub,
        }
    }
}

/// The streaming scenario through the floor relay, read against the same run's direct phase
/// ([`Results::streaming`]`.direct`).
#[derive(Clone, Debug, Serialize)]
pub struct FloorStreams {
    pub floor: PhaseResult,
    /// floor − direct, whole-stream latency percentiles.
    pub added_latency: Added,
    /// floor − direct, time to first token.
    pub added_ttft: Added,
    /// floor − direct, gaps between chunks.
    pub added_gap: Added,
}

impl FloorStreams {
    fn new(direct: &PhaseResult, floor: PhaseResult) -> FloorStreams {
        FloorStreams {
            added_latency: floor.latency.minus(&direct.latency),
            added_ttft: floor.ttft.minus(&direct.ttft),
            added_gap: floor.inter_chunk_gap.minus(&direct.inter_chunk_gap),
            floor,
        }
    }
}

/// Resident memory (KiB) of the gateway processes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Memory {
    pub hub_idle_kib: u64,
    pub spoke_idle_kib: u64,
    /// Peak while the concurrent streams were open.
    pub hub_streams_peak_kib: u64,
    pub spoke_streams_peak_kib: u64,
    /// After the streams ended (and after all other scenarios).
    pub hub_after_kib: u64,
    pub spoke_after_kib: u64,
    /// Streams started, the most seen open (first content received, not ended) at once, and
    /// those that ended cleanly with `[DONE]`.
    pub streams_started: usize,
    pub streams_peak_open: usize,
    pub streams_completed: usize,
    /// The burst, through the hub: TTFT and errors under that concurrency.
    pub burst: PhaseResult,
}

/// The content policy's cost: the same request through the hub for a tenant without a policy
/// and for one with deny rules and PII redaction, back to back at the same rate.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyCost {
    pub off: PhaseResult,
    pub on: PhaseResult,
    /// on − off, latency percentiles.
    pub added_latency: Added,
    /// on − off, the hub's self-reported overhead (`x-switchyard-overhead-ms`) percentiles.
    pub added_hub_self: Added,
    /// on − off, the hub's CPU time per request (µs).
    pub added_hub_cpu_us: f64,
    /// The request body's size (bytes).
    pub body_bytes: usize,
}

/// One concurrency of the wrk phase: wrk against the fake directly, through hub → spoke and
/// through the floor relay, back to back (in that order), the fake reset before each.
#[derive(Clone, Debug, Serialize)]
pub struct WrkPoint {
    /// wrk `-c`: connections, each with one request in flight.
    pub concurrency: usize,
    pub direct: WrkPhase,
    pub hub: WrkPhase,
    pub floor: WrkPhase,
    /// hub − direct, latency percentiles (ms).
    pub added_hub: Added,
    /// floor − direct, latency percentiles (ms).
    pub added_floor: Added,
    /// direct req/s ÷ hub req/s (0 when the hub served nothing).
    pub direct_over_hub: f64,
    /// direct req/s ÷ floor req/s (0 when the floor served nothing).
    pub direct_over_floor: f64,
    /// CPU µs per request of hub + spoke together, in the hub run.
    pub hub_spoke_cpu_us: f64,
    /// CPU µs per request of the floor's front + back together, in the floor run.
    pub floor_cpu_us: f64,
}

impl WrkPoint {
    fn new(concurrency: usize, direct: WrkPhase, hub: WrkPhase, floor: WrkPhase) -> WrkPoint {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        WrkPoint {
            concurrency,
            added_hub: hub.latency.minus(&direct.latency),
            added_floor: floor.latency.minus(&direct.latency),
            direct_over_hub: ratio(direct.throughput_rps, hub.throughput_rps),
            direct_over_floor: ratio(direct.throughput_rps, floor.throughput_rps),
            hub_spoke_cpu_us: hub.cpu_us(&["hub", "spoke"]),
            floor_cpu_us: floor.cpu_us(&["floor-front", "floor-back"]),
            direct,
            hub,
            floor,
        }
    }
}

/// Everything one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub plan: Plan,
    pub added_latency: Vec<Pair>,
    pub saturation: Pair,
    /// The wrk phase, one point per concurrency of [`Plan::wrk_concurrency`].
    pub wrk: Vec<WrkPoint>,
    pub streaming: Pair,
    /// The streaming scenario through the floor relay (after direct and hub, same settings).
    pub streaming_floor: FloorStreams,
    pub memory: Memory,
    pub policy: PolicyCost,
    /// Callgrind instructions per request of each tier (`None` when not measured in this run;
    /// it runs after every other scenario, with its own processes).
    pub instructions: Option<Instructions>,
    pub load_before: Load,
    pub load_after: Load,
}

/// Runs every scenario against `stack`.
pub async fn run(stack: &Stack, plan: &Plan) -> anyhow::Result<Results> {
    let load_before = Load::now();
    let phase = Duration::from_secs_f64(plan.phase_secs);
    let client = load::client(plan.concurrent_streams.max(256) + 64)?;
    let target = |name: &str, stream: bool| Target {
        name: name.to_string(),
        url: match name {
            "hub" => stack.hub_url(),
            "floor" => stack.floor_url(),
            _ => stack.direct_url(),
        },
        // The floor gets the same bytes as the hub (it does not check the key).
        bearer: (name != "direct").then(|| API_KEY.to_string()),
        body: request_body(stream),
        stream,
    };
    let (direct, hub) = (target("direct", false), target("hub", false));

    let mut memory = Memory {
        hub_idle_kib: sys::rss_kib(stack.hub.pid()).unwrap_or(0),
        spoke_idle_kib: sys::rss_kib(stack.spoke.pid()).unwrap_or(0),
        ..Memory::default()
    };

    progress("warm-up (2 s each, closed loop ×8)");
    for t in [&direct, &hub] {
        load::closed_loop(&client, t, 8, Duration::from_secs(2)).await?;
    }

    let mut added_latency = Vec::new();
    for &rate in &plan.rates {
        let d = measured(stack, || load::open_loop(&client, &direct, rate, phase)).await?;
        let h = measured(stack, || load::open_loop(&client, &hub, rate, phase)).await?;
        let pair = Pair::new(d, h);
        progress(&format!(
            "open loop {rate}/s: direct p50 {:.3} p99 {:.3} | hub p50 {:.3} p99 {:.3} | added p50 {:.3} p99 {:.3} ms | errors {}/{}",
            pair.direct.latency.p50_ms,
            pair.direct.latency.p99_ms,
            pair.hub.latency.p50_ms,
            pair.hub.latency.p99_ms,
            pair.added_latency.p50_ms,
            pair.added_latency.p99_ms,
            pair.direct.error_count(),
            pair.hub.error_count()
        ));
        added_latency.push(pair);
    }

    let c = plan.saturation_concurrency;
    let saturation = {
        let _trim = stack.reset_loop(RESET_EVERY);
        let d = measured(stack, || load::closed_loop(&client, &direct, c, phase)).await?;
        let h = measured(stack, || load::closed_loop(&client, &hub, c, phase)).await?;
        Pair::new(d, h)
    };
    progress(&format!(
        "saturation (closed loop ×{c}): direct {:.0}/s, hub {:.0}/s",
        saturation.direct.throughput_rps, saturation.hub.throughput_rps
    ));

    let wrk = wrk_phase(stack, &plan.wrk_concurrency, phase).await?;

    stack.set_chunk_delay(plan.stream_chunk_delay_ms).await?;
    let (sd, sh, sf) = (
        target("direct", true),
        target("hub", true),
        target("floor", true),
    );
    // The floor has been idle since the wrk phase (or since start, without it): one unmeasured
    // 1-s run ×8 against each path, so every one has warm connections, as in the wrk phase.
    for t in [&sd, &sh, &sf] {
        load::closed_loop(&client, t, 8, Duration::from_secs(1)).await?;
    }
    let rate = plan.stream_rate;
    let d = measured(stack, || load::open_loop(&client, &sd, rate, phase)).await?;
    let h = measured(stack, || load::open_loop(&client, &sh, rate, phase)).await?;
    let f = measured_floor(stack, || load::open_loop(&client, &sf, rate, phase)).await?;
    let streaming = Pair::new(d, h);
    let streaming_floor = FloorStreams::new(&streaming.direct, f);
    progress(&format!(
        "streams {rate}/s: added TTFT p50 {:.3} p99 {:.3} ms (floor {:.3} / {:.3}), added gap p50 {:.3} p99 {:.3} ms (floor {:.3} / {:.3}), errors {}/{}/{}",
        streaming.added_ttft.p50_ms,
        streaming.added_ttft.p99_ms,
        streaming_floor.added_ttft.p50_ms,
        streaming_floor.added_ttft.p99_ms,
        streaming.added_gap.p50_ms,
        streaming.added_gap.p99_ms,
        streaming_floor.added_gap.p50_ms,
        streaming_floor.added_gap.p99_ms,
        streaming.direct.error_count(),
        streaming.hub.error_count(),
        streaming_floor.floor.error_count()
    ));

    let policy = policy_cost(stack, &client, plan.policy_rate, phase).await?;

    stack.reset_fake().await?;
    stack.set_chunk_delay(plan.hold_chunk_delay_ms).await?;
    concurrent_streams(stack, &client, &sh, plan.concurrent_streams, &mut memory).await?;
    stack.set_chunk_delay(0).await?;
    // Let connections idle out of the burst before the "after" figure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    memory.hub_after_kib = sys::rss_kib(stack.hub.pid()).unwrap_or(0);
    memory.spoke_after_kib = sys::rss_kib(stack.spoke.pid()).unwrap_or(0);
    progress(&format!(
        "memory: hub idle {} KiB, {} streams {} KiB, after {} KiB; spoke idle {} KiB, streams {} KiB",
        memory.hub_idle_kib,
        memory.streams_started,
        memory.hub_streams_peak_kib,
        memory.hub_after_kib,
        memory.spoke_idle_kib,
        memory.spoke_streams_peak_kib
    ));

    Ok(Results {
        plan: plan.clone(),
        added_latency,
        saturation,
        wrk,
        streaming,
        streaming_floor,
        memory,
        policy,
        instructions: None,
        load_before,
        load_after: Load::now(),
    })
}

/// The policy scenario: [`policy_request_body`] through the hub at `rate`, first as the tenant
/// without a policy, then as the one with it.
pub async fn policy_cost(
    stack: &Stack,
    client: &reqwest::Client,
    rate: f64,
    phase: Duration,
) -> anyhow::Result<PolicyCost> {
    let body = policy_request_body();
    let target = |name: &str, key: &str| Target {
        name: name.to_string(),
        url: stack.hub_url(),
        bearer: Some(key.to_string()),
        body: body.clone(),
        stream: false,
    };
    let (off, on) = (
        target("hub-policy-off", API_KEY),
        target("hub-policy-on", POLICY_API_KEY),
    );
    for t in [&off, &on] {
        load::closed_loop(client, t, 4, Duration::from_secs(1)).await?;
    }
    let off = measured(stack, || load::open_loop(client, &off, rate, phase)).await?;
    let on = measured(stack, || load::open_loop(client, &on, rate, phase)).await?;
    let hub_cpu = |p: &PhaseResult| p.cpu_us_per_request.get("hub").copied().unwrap_or(0.0);
    let cost = PolicyCost {
        added_latency: on.latency.minus(&off.latency),
        added_hub_self: on.hub_overhead.minus(&off.hub_overhead),
        added_hub_cpu_us: hub_cpu(&on) - hub_cpu(&off),
        body_bytes: body.len(),
        off,
        on,
    };
    progress(&format!(
        "content policy {rate}/s ({} B body): added p50 {:.3} p99 {:.3} ms, hub self p50 {:.3} ms, hub CPU {:+.0} µs/request, errors {}/{}",
        cost.body_bytes,
        cost.added_latency.p50_ms,
        cost.added_latency.p99_ms,
        cost.added_hub_self.p50_ms,
        cost.added_hub_cpu_us,
        cost.off.error_count(),
        cost.on.error_count()
    ));
    Ok(cost)
}

/// The wrk phase: for each concurrency, wrk against direct, hub and floor back to back (after a
/// 1-s unmeasured wrk run against each, ×8, so every path has warm connections).
pub async fn wrk_phase(
    stack: &Stack,
    concurrency: &[usize],
    phase: Duration,
) -> anyhow::Result<Vec<WrkPoint>> {
    if concurrency.is_empty() {
        return Ok(Vec::new());
    }
    let dir = tempfile::Builder::new()
        .prefix("switchyard-bench-wrk")
        .tempdir()?;
    let targets = [
        ("direct", stack.direct_url(), None),
        ("hub", stack.hub_url(), Some(API_KEY.to_string())),
        // The same bytes the hub gets (the floor does not check the key).
        ("floor", stack.floor_url(), Some(API_KEY.to_string())),
    ]
    .map(|(name, url, bearer)| WrkTarget {
        name: name.to_string(),
        url,
        bearer,
        body: request_body(false),
    });
    progress("wrk warm-up (1 s each, ×8)");
    for t in &targets {
        let _trim = stack.reset_loop(RESET_EVERY);
        wrk::run(t, 8, 1, dir.path()).await?;
    }
    let secs = phase.as_secs_f64().round().max(1.0) as u64;
    let mut points = Vec::new();
    for &c in concurrency {
        let [d, h, f] = &targets;
        let direct = wrk_measured(stack, d, c, secs, dir.path()).await?;
        let hub = wrk_measured(stack, h, c, secs, dir.path()).await?;
        let floor = wrk_measured(stack, f, c, secs, dir.path()).await?;
        let p = WrkPoint::new(c, direct, hub, floor);
        progress(&format!(
            "wrk ×{c}: direct {:.0}/s, hub {:.0}/s (÷{:.2}), floor {:.0}/s (÷{:.2}) | added p50 / p99 hub {:.3} / {:.3}, floor {:.3} / {:.3} ms | CPU µs/request hub+spoke {:.1}, floor {:.1} | errors {} / {} / {}",
            p.direct.throughput_rps,
            p.hub.throughput_rps,
            p.direct_over_hub,
            p.floor.throughput_rps,
            p.direct_over_floor,
            p.added_hub.p50_ms,
            p.added_hub.p99_ms,
            p.added_floor.p50_ms,
            p.added_floor.p99_ms,
            p.hub_spoke_cpu_us,
            p.floor_cpu_us,
            p.direct.errors_text(),
            p.hub.errors_text(),
            p.floor.errors_text(),
        ));
        points.push(p);
    }
    Ok(points)
}

/// Resets the fake, then runs wrk once, with the CPU time each process used over the run:
/// `/proc/PID/stat` of the servers before and after, and wrk's own from this process's
/// waited-for children (`cutime` + `cstime`), all divided by the successful requests.
async fn wrk_measured(
    stack: &Stack,
    target: &WrkTarget,
    concurrency: usize,
    secs: u64,
    dir: &std::path::Path,
) -> anyhow::Result<WrkPhase> {
    stack.reset_fake().await?;
    let pids = [
        ("hub", stack.hub.pid()),
        ("spoke", stack.spoke.pid()),
        ("fake", stack.fake.pid()),
        ("floor-front", stack.floor_front.pid()),
        ("floor-back", stack.floor_back.pid()),
    ];
    let before: Vec<u64> = pids
        .iter()
        .map(|(_, p)| sys::cpu_micros(*p).unwrap_or(0))
        .collect();
    let children_before = sys::children_cpu_micros().unwrap_or(0);
    let trim = stack.reset_loop(RESET_EVERY);
    let mut r = wrk::run(target, concurrency, secs, dir).await?;
    drop(trim);
    let ok = r.ok.max(1) as f64;
    for ((name, pid), b) in pids.iter().zip(before) {
        let used = sys::cpu_micros(*pid).unwrap_or(0).saturating_sub(b);
        r.cpu_us_per_request
            .insert((*name).to_string(), used as f64 / ok);
    }
    let wrk_used = sys::children_cpu_micros()
        .unwrap_or(0)
        .saturating_sub(children_before);
    r.cpu_us_per_request
        .insert("wrk".to_string(), wrk_used as f64 / ok);
    Ok(r)
}

/// Resets the fake, then runs one phase, with the CPU per request of hub, spoke, fake and the
/// load generator.
async fn measured<F, Fut>(stack: &Stack, f: F) -> anyhow::Result<PhaseResult>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<PhaseResult>>,
{
    let pids = [
        ("hub", stack.hub.pid()),
        ("spoke", stack.spoke.pid()),
        ("fake", stack.fake.pid()),
        ("loadgen", std::process::id()),
    ];
    measured_pids(stack, &pids, f).await
}

/// [`measured`] for a phase through the floor relay: the CPU per request of its front and back
/// in place of hub and spoke.
async fn measured_floor<F, Fut>(stack: &Stack, f: F) -> anyhow::Result<PhaseResult>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<PhaseResult>>,
{
    let pids = [
        ("floor-front", stack.floor_front.pid()),
        ("floor-back", stack.floor_back.pid()),
        ("fake", stack.fake.pid()),
        ("loadgen", std::process::id()),
    ];
    measured_pids(stack, &pids, f).await
}

async fn measured_pids<F, Fut>(
    stack: &Stack,
    pids: &[(&str, u32)],
    f: F,
) -> anyhow::Result<PhaseResult>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<PhaseResult>>,
{
    stack.reset_fake().await?;
    let before: Vec<u64> = pids
        .iter()
        .map(|(_, p)| sys::cpu_micros(*p).unwrap_or(0))
        .collect();
    let mut r = f().await?;
    for ((name, pid), b) in pids.iter().zip(before) {
        let used = sys::cpu_micros(*pid).unwrap_or(0).saturating_sub(b);
        r.cpu_us_per_request
            .insert((*name).to_string(), used as f64 / r.ok.max(1) as f64);
    }
    Ok(r)
}

/// Opens `n` streams through the hub at once and samples hub and spoke RSS every 50 ms while
/// they run.
async fn concurrent_streams(
    stack: &Stack,
    client: &reqwest::Client,
    target: &Target,
    n: usize,
    memory: &mut Memory,
) -> anyhow::Result<()> {
    let open = Arc::new(OpenStreams::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (hub_pid, spoke_pid) = (stack.hub.pid(), stack.spoke.pid());
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut hub_peak, mut spoke_peak) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                hub_peak = sys::rss_kib(hub_pid).unwrap_or(0).max(hub_peak);
                spoke_peak = sys::rss_kib(spoke_pid).unwrap_or(0).max(spoke_peak);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (hub_peak, spoke_peak)
        })
    };
    let started = Instant::now();
    let handles = load::burst_streams(client, target, n, open.clone());
    let mut samples = Vec::with_capacity(n);
    for h in handles {
        samples.push(h.await?);
    }
    let wall = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (hub_peak, spoke_peak) = sampler.await?;
    let burst = load::summarize_burst(target, wall, samples);
    memory.hub_streams_peak_kib = hub_peak;
    memory.spoke_streams_peak_kib = spoke_peak;
    memory.streams_started = n;
    memory.streams_peak_open = open.peak();
    memory.streams_completed = burst.ok;
    memory.burst = burst;
    Ok(())
}

/// Progress lines go to stderr; the result tables are written at the end.
pub fn progress(line: &str) {
    eprintln!("[bench] {line}");
}
