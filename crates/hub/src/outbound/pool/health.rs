//! Active health checks of one spoke: `grpc.health.v1/Check` then `Describe`, on a schedule, with
//! faster half-open probes after a passive ejection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_proto::v1 as pb;
use switchyard_proto::v1::spoke_client::SpokeClient;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::{Described, RegionHeadroom, Spoke};
use crate::model::Health;
use crate::routing::{ModelCaps, Speaks};

pub(super) const DRAINING: &str = "draining";

/// One active check within `timeout`: `grpc.health.v1/Check` then `Describe` over one of the
/// spoke's connections. Behind a TCP load balancer each connection may reach another task, so
/// when a connection's check fails fast (its task is draining or gone) the next connection is
/// tried, until one passes or `timeout` is spent: the address is healthy while the balancer has
/// a task that serves. A check that times out ends the round (a black-holed address costs one
/// `timeout`, not one per connection).
pub async fn check(spoke: &Spoke, timeout: Duration) -> Result<Described, String> {
    let started = Instant::now();
    let start = spoke.channels.rotate();
    let mut last = String::from("health check timed out");
    for k in 0..spoke.channels.len() {
        let Some(left) = timeout
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
        else {
            break;
        };
        let channel = spoke.channels.channel(start + k);
        match tokio::time::timeout(left, check_one(channel, left)).await {
            Err(_) => return Err("health check timed out".into()),
            Ok(Ok(d)) => return Ok(d),
            Ok(Err(why)) if why.ends_with("DeadlineExceeded") => return Err(why),
            Ok(Err(why)) => last = why,
        }
    }
    Err(last)
}

/// `grpc.health.v1/Check` then `Describe` on one connection.
async fn check_one(
    channel: tonic::transport::Channel,
    timeout: Duration,
) -> Result<Described, String> {
    let mut health = HealthClient::new(channel.clone());
    let mut req = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    });
    req.set_timeout(timeout);
    let resp = health
        .check(req)
        .await
        .map_err(|s| format!("health check: {}", s.code()))?;
    if resp.get_ref().status != ServingStatus::Serving as i32 {
        return Err("not serving".into());
    }
    let mut req = tonic::Request::new(pb::DescribeRequest {});
    req.set_timeout(timeout);
    let d = SpokeClient::new(channel)
        .describe(req)
        .await
        .map_err(|s| format!("describe: {}", s.code()))?
        .into_inner();
    if d.draining {
        return Err(DRAINING.into());
    }
    let speaks = Speaks::of_provider(&d.provider);
    let models = d
        .models
        .iter()
        .map(|m| {
            let caps = m.capabilities.unwrap_or_default();
            (
                m.id.clone(),
                ModelCaps {
                    streaming: caps.streaming,
                    tools: caps.tools,
                    images: caps.images,
                    context_window: caps.context_window,
                    structured_output: caps.structured_output,
                    reasoning: caps.reasoning,
                    max_choices: caps.max_choices,
                    logprobs: caps.logprobs,
                    prompt_caching: caps.prompt_caching,
                    seed: caps.seed,
                    penalties: caps.penalties,
                    top_k: caps.top_k,
                    tool_choice: caps.tool_choice,
                    speaks,
                },
            )
        })
        .collect();
    let regions = d
        .models
        .iter()
        .flat_map(|m| {
            m.regions.iter().map(|r| RegionHeadroom {
                model: m.id.clone(),
                region: r.region.clone(),
                headroom: r.headroom,
                state: switchyard_core::labels::RouteState::from_wire(r.state).as_str(),
            })
        })
        .collect();
    Ok(Described {
        regions,
        account: d.account,
        headroom: d.headroom,
        serving: d.serving,
        models: Arc::new(models),
    })
}

/// Runs until the spoke is stopped: checks at once, then every `interval`; after a passive
/// ejection, probes sooner (100 ms doubling up to the interval).
pub async fn health_loop(spoke: Arc<Spoke>, cfg: Health) {
    let mut probe_delay = Duration::from_millis(100);
    loop {
        let result = check(&spoke, cfg.timeout).await;
        if let Err(why) = &result {
            tracing::debug!(spoke = %spoke.addr, reason = %why, "health check failed");
        }
        let passed = result.is_ok();
        spoke.record_check(result, &cfg);
        let delay = if spoke.needs_probe() && !passed {
            let d = probe_delay;
            probe_delay = (probe_delay * 2).min(cfg.interval);
            d
        } else {
            probe_delay = Duration::from_millis(100);
            cfg.interval
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = spoke.wake.notified() => {
                // Ejected: give the spoke a moment, then probe (half-open).
                tokio::select! {
                    () = tokio::time::sleep(probe_delay) => {}
                    () = spoke.stop.cancelled() => return,
                }
            }
            () = spoke.stop.cancelled() => return,
        }
    }
}
