//! The response-cache step of the request path, between the checks and admission: a hit or a
//! coalesced answer is admitted against the tenant's request rate only and needs no call; a miss
//! leads the call that identical requests follow. Surfaces render what this returns in their
//! own wire format.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_quota::RateState;

use crate::cache::{Answer, Begin, Flight, Key, Leader, count};
use crate::error::HubError;
use crate::model::Tenant;
use crate::state::Hub;

/// What the cache step decided for one cacheable request.
pub enum Cached {
    /// A stored answer (`outcome` `hit`) or the finished answer of the call it followed
    /// (`coalesced`).
    Answer {
        answer: Arc<Answer>,
        outcome: &'static str,
        state: RateState,
    },
    /// Follow a streaming call live: its deltas so far, then the rest as they arrive
    /// (`coalesced`).
    Live {
        flight: Arc<Flight>,
        state: RateState,
    },
    /// Make the call; the leader stores its answer and feeds the followers.
    Lead(Leader),
}

/// Cache lookup and coalescing for one cacheable request (`key`, `ttl` from
/// [`crate::cache::cacheable`]). `stream`: whether the client streams (a streaming follower
/// follows as soon as the leader's first delta arrives). Errors: the tenant's request rate
/// (429), or the deadline passing while following (504).
pub async fn lookup(
    hub: &Hub,
    tenant: &Tenant,
    key: Key,
    ttl: Duration,
    stream: bool,
    deadline: Instant,
) -> Result<Cached, HubError> {
    loop {
        match hub.cache.begin(key, ttl).await {
            Begin::Lead(l) => {
                count("miss");
                return Ok(Cached::Lead(l));
            }
            Begin::Hit(answer) => {
                let state = super::quota::admit_request_only(hub, tenant).await?;
                count("hit");
                return Ok(Cached::Answer {
                    answer,
                    outcome: "hit",
                    state,
                });
            }
            // A leader that failed before any content: start over (one of its followers leads
            // the next call).
            Begin::Follow(flight) => {
                if let Some(c) = follow(hub, tenant, flight, stream, deadline).await? {
                    return Ok(c);
                }
            }
        }
    }
}

async fn follow(
    hub: &Hub,
    tenant: &Tenant,
    flight: Arc<Flight>,
    stream: bool,
    deadline: Instant,
) -> Result<Option<Cached>, HubError> {
    let mut rx = flight.subscribe();
    // Wait for the first content (streaming) or the end (non-streaming); a failed leader lets
    // this request make its own call.
    let first = loop {
        let (deltas, done) = flight.read(0);
        match done {
            Some(Err(())) => return Ok(None),
            Some(Ok(answer)) => break Some(answer),
            None if stream && !deltas.is_empty() => break None,
            None => {}
        }
        match tokio::time::timeout_at(deadline.into(), rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Ok(None),
            Err(_) => return Err(HubError::DeadlineExceeded { attempts: vec![] }),
        }
    };
    let state = super::quota::admit_request_only(hub, tenant).await?;
    count("coalesced");
    Ok(Some(match first {
        Some(answer) => Cached::Answer {
            answer,
            outcome: "coalesced",
            state,
        },
        None => Cached::Live { flight, state },
    }))
}
