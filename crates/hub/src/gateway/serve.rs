//! Serving an admitted request: unary ([`Admission::complete`]), streamed
//! ([`Admission::stream`]: failover until the first content, then committed) and embeddings
//! ([`Admission::embed`]). Each settles the tenant's quota exactly once.

use std::sync::Arc;

use switchyard_proto::v1 as pb;

use super::{Admission, Completed, StreamItem, Streamed};
use crate::error::HubError;
use crate::model::RouteTaken;
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

    /// Serves the request streamed (`InferStream`). Failover happens until the first content;
    /// after that the stream is committed and a failure ends it with [`StreamItem::Failed`].
    /// The quota is settled exactly once: at the end, on failure, or here when nothing served.
    pub async fn stream(self, hub: &Arc<Hub>) -> Result<Streamed, HubError> {
        let Admission {
            plan,
            request: base,
            admitted,
            ..
        } = self;
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
        let quota_hub = hub.clone();
        let quota_route = route.clone();
        let deadline = plan.deadline;
        let request_id = plan.request_id.clone();
        let Committed {
            start,
            buffered,
            mut rest,
        } = committed;
        let attempts = start.map(|s| s.attempts).unwrap_or_default();
        let items = async_stream::stream! {
            let _guard = guard;
            let mut admitted = Some(admitted);
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
                        yield StreamItem::Delta(d);
                    }
                    Ok(Some(pb::InferEvent { event: Some(pb::infer_event::Event::End(end)) })) => {
                        if let Some(a) = admitted.take() {
                            super::quota::settle(&quota_hub, a, end.usage.as_ref(), Some(&quota_route)).await;
                        }
                        yield StreamItem::End(end);
                        break;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        tracing::warn!(request_id = %request_id, "spoke stream closed without an end event");
                        if let Some(a) = admitted.take() {
                            super::quota::settle(&quota_hub, a, None, None).await;
                        }
                        yield StreamItem::Failed("the stream ended unexpectedly");
                        break;
                    }
                    Err(why) => {
                        tracing::warn!(request_id = %request_id, reason = %why, "stream failed after first chunk");
                        if let Some(a) = admitted.take() {
                            super::quota::settle(&quota_hub, a, None, None).await;
                        }
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
