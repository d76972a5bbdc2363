//! Serving an admitted request: unary ([`Admission::complete`]), streamed
//! ([`Admission::stream`]: failover until the first content, then committed) and embeddings
//! ([`Admission::embed`]). Each settles the tenant's quota exactly once — a stream the client
//! dropped included, with its usage so far.

use std::sync::Arc;

use switchyard_proto::v1 as pb;

use super::quota::Admitted;
use super::{Admission, Completed, Opened, Refusal, StreamItem, Streamed};
use crate::error::HubError;
use crate::model::RouteTaken;
use crate::observe::RequestRecord;
use crate::outbound::call::{self, Committed};
use crate::state::Hub;

impl Admission {
    /// Serves the request unary (`Infer`) with failover; settles the quota either way.
    pub async fn complete(self, hub: &Hub) -> Result<Completed, HubError> {
        let Admission {
            plan,
            request: base,
            admitted,
            ..
        } = self;
        let dispatched = super::dispatch(hub, &plan, |spoke, routing, remaining| {
            let req = call::with_routing(&base, routing);
            let rid = plan.request_id.clone();
            async move { call::infer(spoke, req, remaining, &rid).await }
        })
        .await;
        match dispatched {
            Ok((response, route, _guard)) => {
                super::quota::settle(hub, admitted, response.usage.as_ref(), Some(&route)).await;
                Ok(Completed { response, route })
            }
            Err(e) => {
                super::quota::settle(hub, admitted, None, None).await;
                Err(e)
            }
        }
    }

    /// [`Admission::stream`], with the response committed early when the route is slow to
    /// answer: when nothing has come within `keepalive` (failover still going on, or a model
    /// that thinks long before its first token), [`Opened::Late`] lets the surface send its
    /// status and headers at once and keep the connection alive until the first content. `None`
    /// = wait as long as it takes ([`Opened::Now`] always). `rec` is the stream's handle on
    /// the request record ([`RequestRecord::share_with_stream`]): a late stream records its
    /// route, or its refusal, there.
    pub fn open_stream(
        self,
        hub: &Arc<Hub>,
        rec: &RequestRecord,
        keepalive: Option<std::time::Duration>,
    ) -> impl std::future::Future<Output = Result<Opened, HubError>> + Send + 'static {
        // Built now, boxed: the returned future holds a pointer to it, not the admission.
        let mut opening = Box::pin(self.stream(hub, rec));
        let rec = rec.handle();
        async move {
            let Some(every) = keepalive else {
                return opening.await.map(Opened::Now);
            };
            tokio::select! {
                opened = &mut opening => opened.map(Opened::Now),
                () = tokio::time::sleep(every) => {
                    let mut rec = rec.handle();
                    let items = async_stream::stream! {
                        let start = tokio::time::Instant::now() + every;
                        let mut tick = tokio::time::interval_at(start, every);
                        let opened = loop {
                            tokio::select! {
                                opened = &mut opening => break opened,
                                _ = tick.tick() => yield StreamItem::Waiting,
                            }
                        };
                        match opened {
                            Ok(streamed) => {
                                rec.set_route(&streamed.route, None, &streamed.attempts);
                                let mut items = streamed.items;
                                while let Some(item) = futures::StreamExt::next(&mut items).await {
                                    yield item;
                                }
                            }
                            Err(e) => {
                                rec.set_late_error(&e);
                                yield StreamItem::Refused(Refusal(Arc::new(e)));
                            }
                        }
                    };
                    Ok(Opened::Late(Streamed {
                        items: Box::pin(items),
                        route: RouteTaken::default(),
                        attempts: Vec::new(),
                    }))
                }
            }
        }
    }

    /// Serves the request streamed (`InferStream`). Failover happens until the first content;
    /// after that the stream is committed and a failure ends it with [`StreamItem::Failed`].
    /// The quota is settled exactly once: at the end, on failure, here when nothing served, or
    /// — when the client goes away first and the stream is dropped — with the usage so far,
    /// estimated from what was streamed; `rec` (the request's record) then gets that usage and
    /// the outcome `cancelled`.
    ///
    /// Not an `async fn`: the admission is taken apart before the future is built, so the
    /// future (held, boxed, by [`Admission::open_stream`] while the stream opens) keeps only the
    /// plan, the request and the quota reservation, once, rather than the whole admission as
    /// its argument as well as its parts.
    pub fn stream(
        self,
        hub: &Arc<Hub>,
        rec: &RequestRecord,
    ) -> impl std::future::Future<Output = Result<Streamed, HubError>> + Send + 'static {
        let Admission {
            plan,
            request: base,
            admitted,
            ..
        } = self;
        let (hub, rec) = (hub.clone(), rec.handle());
        async move {
            let hub = &hub;
            let rec = &rec;
            let dispatched = super::dispatch(hub, &plan, |spoke, routing, remaining| {
                call::open_stream(
                    spoke,
                    call::with_routing(&base, routing),
                    remaining,
                    plan.request_id.clone(),
                )
            })
            .await;
            let (committed, route, guard) = match dispatched {
                Ok(d) => d,
                Err(e) => {
                    super::quota::settle(hub, admitted, None, None).await;
                    return Err(e);
                }
            };
            let deadline = plan.deadline;
            let request_id = plan.request_id.clone();
            let mut settlement = Settlement {
                hub: hub.clone(),
                admitted: Some(admitted),
                route: route.clone(),
                rec: rec.handle(),
                request_id: request_id.clone(),
                input_tokens: u32::try_from(switchyard_proto::estimate_input_tokens(&base))
                    .unwrap_or(u32::MAX),
                output_chars: 0,
            };
            let Committed {
                start,
                buffered,
                mut rest,
            } = committed;
            let attempts = start.map(|s| s.attempts).unwrap_or_default();
            let items = async_stream::stream! {
                let _guard = guard;
                let mut pending: std::collections::VecDeque<pb::InferEvent> = buffered.into();
                loop {
                    let next = match pending.pop_front() {
                        Some(ev) => Ok(Some(ev)),
                        None => match tokio::time::timeout_at(deadline.into(), rest.message()).await {
                            Ok(r) => r.map_err(|s| format!("{:?}: {}", s.code(), s.message())),
                            Err(_) => Err("deadline exceeded".to_string()),
                        },
                    };
                    match next {
                        Ok(Some(pb::InferEvent { event: Some(pb::infer_event::Event::Delta(d)) })) => {
                            settlement.streamed(&d);
                            yield StreamItem::Delta(d);
                        }
                        Ok(Some(pb::InferEvent { event: Some(pb::infer_event::Event::End(end)) })) => {
                            settlement.settle(end.usage.as_ref(), true).await;
                            yield StreamItem::End(end);
                            break;
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            tracing::warn!(request_id = %request_id, "spoke stream closed without an end event");
                            settlement.settle(None, false).await;
                            yield StreamItem::Failed("the stream ended unexpectedly");
                            break;
                        }
                        Err(why) => {
                            tracing::warn!(request_id = %request_id, reason = %why, "stream failed after first chunk");
                            settlement.settle(None, false).await;
                            yield StreamItem::Failed("the upstream failed while streaming");
                            break;
                        }
                    }
                }
            };
            Ok(Streamed {
                items: Box::pin(items),
                route,
                attempts,
            })
        }
    }
}

/// A committed stream's hold on its tenant's quota, settled exactly once: by
/// [`Settlement::settle`] when the stream ends or fails, else — the stream was dropped because
/// the client went away — on drop, with the usage so far (the input estimate and the streamed
/// text at the hub's one ratio, 4 bytes a token), cost included, and the record marked
/// `cancelled`.
struct Settlement {
    hub: Arc<Hub>,
    admitted: Option<Admitted>,
    route: RouteTaken,
    rec: RequestRecord,
    request_id: String,
    input_tokens: u32,
    /// Bytes of text, reasoning and tool-call arguments sent on so far.
    output_chars: usize,
}

impl Settlement {
    fn streamed(&mut self, d: &pb::StreamDelta) {
        self.output_chars += d.text.len();
        if let Some(tc) = &d.tool_call {
            self.output_chars += tc.name.len() + tc.arguments_json.len();
        }
        if let Some(t) = &d.thinking {
            self.output_chars += t.text.len();
        }
    }

    /// The end (`served`: with the route's price) or a failure (`usage` None: the reservation
    /// is returned).
    async fn settle(&mut self, usage: Option<&pb::Usage>, served: bool) {
        if let Some(a) = self.admitted.take() {
            let route = served.then_some(&self.route);
            super::quota::settle(&self.hub, a, usage, route).await;
        }
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        let Some(admitted) = self.admitted.take() else {
            return;
        };
        let usage = pb::Usage {
            input_tokens: self.input_tokens,
            output_tokens: u32::try_from(self.output_chars.div_ceil(4)).unwrap_or(u32::MAX),
            ..Default::default()
        };
        self.rec.set_cancelled(&usage);
        tracing::info!(
            request_id = %self.request_id, input_tokens = usage.input_tokens,
            output_tokens = usage.output_tokens,
            "stream cancelled by the client; settling the estimated usage so far"
        );
        let (hub, route) = (self.hub.clone(), self.route.clone());
        // The store is async and this is a drop: settle on the runtime (always there while
        // requests are served).
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    super::quota::settle(&hub, admitted, Some(&usage), Some(&route)).await;
                });
            }
            Err(_) => {
                tracing::warn!("no runtime to settle a cancelled stream; its reservation expires")
            }
        }
    }
}

impl Admission {
    /// Serves an embeddings request (`Embed`) with failover; settles the quota either way. The
    /// inputs are the text parts of the admitted request's messages, one message per input, as
    /// the content policy left them.
    pub async fn embed(
        self,
        hub: &Hub,
        dimensions: u32,
    ) -> Result<(pb::EmbedResponse, RouteTaken), HubError> {
        let Admission {
            plan,
            request,
            admitted,
            ..
        } = self;
        let inputs: Vec<String> = request
            .messages
            .iter()
            .map(|m| {
                m.content
                    .iter()
                    .filter_map(|p| match &p.part {
                        Some(pb::content_part::Part::Text(t)) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        let dispatched = super::dispatch(hub, &plan, |spoke, routing, remaining| {
            let req = pb::EmbedRequest {
                request_id: routing.request_id,
                models: routing.models,
                inputs: inputs.clone(),
                dimensions,
                allowed_regions: routing.allowed_regions,
                timeout_ms: routing.timeout_ms,
            };
            let rid = plan.request_id.clone();
            async move { call::embed(spoke, req, remaining, &rid).await }
        })
        .await;
        match dispatched {
            Ok((response, route, _guard)) => {
                super::quota::settle(hub, admitted, response.usage.as_ref(), Some(&route)).await;
                Ok((response, route))
            }
            Err(e) => {
                super::quota::settle(hub, admitted, None, None).await;
                Err(e)
            }
        }
    }
}
