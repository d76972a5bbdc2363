//! `InferStream`: a streamed completion with failover until the first content chunk, then the
//! committed stream (content flows through; a failure ends it with an error item).

use super::admit::{Ticket, release, settle};
use super::table::Route;
use super::tally::Tally;
use super::{Engine, EventStream};
use crate::error::SpokeError;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::backoff::Backoff;
use switchyard_proto::v1::{
    Attempt, InferEvent, InferRequest, Outcome, Route as WireRoute, StreamDelta, StreamEnd,
    StreamStart, infer_event::Event,
};
use switchyard_providers::{Call, Chunk, UpstreamError};
use switchyard_quota::QuotaStore;
use tokio::time::Instant;

impl Engine {
    /// A streamed completion with failover until the first content chunk.
    pub async fn infer_stream(
        &self,
        mut req: InferRequest,
        grpc_timeout: Option<Duration>,
    ) -> Result<EventStream, SpokeError> {
        let (deadline, estimate) = self.prepare(&mut req, grpc_timeout)?;
        let plan = self.plan(&req)?;
        let mut tally = Tally::default();
        for route in plan {
            let Some((res, budget)) = self
                .begin_attempt(&route, deadline, estimate, &mut tally)
                .await?
            else {
                continue;
            };
            let call = Call {
                region: &route.region,
                model: &route.upstream_model,
                request: &req,
                timeout: budget,
                options: route.options,
            };
            let started = Instant::now();
            let attempt_deadline = Instant::now() + budget;
            let span = self.upstream_span(&route);
            // Open the stream and wait for its first chunk: until then, failing over is free.
            let opening = tracing::Instrument::instrument(
                async {
                    let mut s = self.upstream.stream(call).await?;
                    match s.next().await {
                        Some(Ok(first)) => Ok((first, s)),
                        Some(Err(e)) => Err(e),
                        None => Err(UpstreamError::unavailable(
                            "stream closed before any content",
                        )),
                    }
                },
                span.clone(),
            );
            let opened = tokio::time::timeout_at(attempt_deadline, opening)
                .await
                .unwrap_or(Err(UpstreamError::Timeout));
            crate::observe::upstream_result(&span, opened.as_ref().err());
            let latency = started.elapsed();
            match opened {
                Ok((first, rest)) => {
                    // The upstream took the request: a denial of this route is over.
                    self.readmit(&route);
                    tally
                        .attempts
                        .push(self.attempt(&route, Outcome::Ok, latency, String::new()));
                    let start = InferEvent {
                        event: Some(Event::Start(StreamStart {
                            request_id: req.request_id.clone(),
                            route: Some(self.wire_route(&route)),
                            attempts: tally.attempts,
                        })),
                    };
                    return Ok(self.committed(route, res, start, first, rest, deadline));
                }
                Err(e) => {
                    self.record_failure(&route, res, e, latency, &mut tally)
                        .await?
                }
            }
        }
        Err(tally.into_error(deadline))
    }

    /// The stream after its route committed: content flows through; an upstream failure or the
    /// deadline ends it with an error item (never a silent close).
    fn committed(
        &self,
        route: Arc<Route>,
        ticket: Ticket,
        start: InferEvent,
        first: Chunk,
        rest: switchyard_providers::ChunkStream,
        deadline: Instant,
    ) -> EventStream {
        struct St {
            route: Arc<Route>,
            ticket: Option<Ticket>,
            store: Arc<dyn QuotaStore>,
            pending: Vec<Result<Chunk, UpstreamError>>,
            rest: switchyard_providers::ChunkStream,
            deadline: Instant,
            backoff: Backoff,
            account: String,
            provider: &'static str,
        }
        let st = St {
            route,
            ticket: Some(ticket),
            store: self.store.clone(),
            pending: vec![Ok(first)],
            rest,
            deadline,
            backoff: self.backoff,
            account: self.account.clone(),
            provider: self.provider,
        };
        let tail = futures::stream::unfold(st, |mut st| async move {
            // `None` once the stream has ended (cleanly or not): stop.
            st.ticket.as_ref()?;
            let item = match st.pending.pop() {
                Some(item) => Some(item),
                None => tokio::time::timeout_at(st.deadline, st.rest.next())
                    .await
                    .unwrap_or(Some(Err(UpstreamError::Timeout))),
            };
            let now = std::time::Instant::now();
            let out = match item {
                Some(Ok(Chunk::Delta(text))) => Ok(InferEvent {
                    event: Some(Event::Delta(StreamDelta {
                        text,
                        tool_call: None,
                        ..Default::default()
                    })),
                }),
                Some(Ok(Chunk::ToolCall {
                    index,
                    id,
                    name,
                    arguments,
                })) => Ok(InferEvent {
                    event: Some(Event::Delta(StreamDelta {
                        text: String::new(),
                        tool_call: Some(switchyard_proto::v1::ToolCallDelta {
                            index,
                            id,
                            name,
                            arguments_json: arguments,
                        }),
                        ..Default::default()
                    })),
                }),
                Some(Ok(Chunk::Part(delta))) => Ok(InferEvent {
                    event: Some(Event::Delta(delta)),
                }),
                Some(Ok(Chunk::End {
                    stop_reason,
                    usage,
                    more_stop_reasons,
                    additional_response_fields_json,
                })) => {
                    st.route.state.lock().on_success();
                    if let Some(t) = st.ticket.take() {
                        settle(&*st.store, t, &usage).await;
                    }
                    Ok(InferEvent {
                        event: Some(Event::End(StreamEnd {
                            stop_reason: stop_reason as i32,
                            usage: Some(usage),
                            more_stop_reasons: more_stop_reasons
                                .into_iter()
                                .map(|s| s as i32)
                                .collect(),
                            additional_model_response_fields_json: additional_response_fields_json,
                        })),
                    })
                }
                Some(Err(e)) => {
                    st.route.state.lock().on_error(&e, &st.backoff, now);
                    if let Some(t) = st.ticket.take() {
                        release(&*st.store, t).await;
                    }
                    tracing::warn!(model = %st.route.model, region = %st.route.region, error = %e, "upstream failed mid-stream");
                    let attempt = Attempt {
                        target: Some(WireRoute {
                            provider: st.provider.to_owned(),
                            account: st.account.clone(),
                            region: st.route.region.clone(),
                            model: st.route.model.clone(),
                        }),
                        outcome: Outcome::FailedMidStream as i32,
                        latency_ms: 0,
                        detail: e.detail(),
                    };
                    Err(match e {
                        UpstreamError::Timeout => SpokeError::DeadlineExceeded {
                            attempts: vec![attempt],
                        },
                        _ => SpokeError::Unavailable {
                            retry_after: None,
                            attempts: vec![attempt],
                        },
                    })
                }
                None => {
                    st.route.state.lock().on_error(
                        &UpstreamError::unavailable("stream ended without an end event"),
                        &st.backoff,
                        now,
                    );
                    if let Some(t) = st.ticket.take() {
                        release(&*st.store, t).await;
                    }
                    Err(SpokeError::Unavailable {
                        retry_after: None,
                        attempts: vec![],
                    })
                }
            };
            Some((out, st))
        });
        futures::stream::once(async move { Ok(start) })
            .chain(tail)
            .boxed()
    }
}
