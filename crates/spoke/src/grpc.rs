//! The `switchyard.v1.Spoke` gRPC service over the engine.

use crate::engine::Engine;
use crate::observe::{self, SpokeRecord};
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use switchyard_proto::v1::infer_event::Event;
use switchyard_proto::v1::spoke_server::Spoke;
use switchyard_proto::v1::{
    CountTokensResponse, DescribeRequest, DescribeResponse, EmbedRequest, EmbedResponse,
    InferEvent, InferRequest, InferResponse,
};
use tonic::{Request, Response, Status};
use tracing::Instrument;

pub struct SpokeService {
    engine: Arc<Engine>,
}

impl SpokeService {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

/// Parses the `grpc-timeout` header (`<digits><unit>`, unit one of H M S m u n).
pub fn grpc_timeout<T>(req: &Request<T>) -> Option<Duration> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    parse_grpc_timeout(v)
}

pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

type EventStream = Pin<Box<dyn Stream<Item = Result<InferEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Spoke for SpokeService {
    async fn infer(
        &self,
        request: Request<InferRequest>,
    ) -> Result<Response<InferResponse>, Status> {
        let timeout = grpc_timeout(&request);
        let (provider, account) = (self.engine.provider(), self.engine.account());
        let span = observe::request_span(
            provider,
            account,
            request.metadata(),
            request.get_ref(),
            false,
        );
        let mut rec = SpokeRecord::start(provider, account, span.clone(), false);
        let result = self
            .engine
            .infer(request.into_inner(), timeout)
            .instrument(span)
            .await;
        match &result {
            Ok(r) => {
                let route = r.route.clone().unwrap_or_default();
                rec.ok(&route.region, &route.model, &r.attempts, r.usage.as_ref());
            }
            Err(e) => rec.failed(e),
        }
        drop(rec);
        result.map(Response::new).map_err(|e| e.to_status())
    }

    type InferStreamStream = EventStream;

    async fn infer_stream(
        &self,
        request: Request<InferRequest>,
    ) -> Result<Response<Self::InferStreamStream>, Status> {
        let timeout = grpc_timeout(&request);
        let (provider, account) = (self.engine.provider(), self.engine.account());
        let span = observe::request_span(
            provider,
            account,
            request.metadata(),
            request.get_ref(),
            true,
        );
        let mut rec = SpokeRecord::start(provider, account, span.clone(), true);
        let events = match self
            .engine
            .infer_stream(request.into_inner(), timeout)
            .instrument(span)
            .await
        {
            Ok(ev) => ev,
            Err(e) => {
                rec.failed(&e);
                return Err(e.to_status());
            }
        };
        // The record (and the span it holds) lives as long as the stream.
        let out = events.map(move |item| {
            match &item {
                Ok(ev) => match &ev.event {
                    Some(Event::Start(s)) => {
                        let route = s.route.clone().unwrap_or_default();
                        rec.ok(&route.region, &route.model, &s.attempts, None);
                    }
                    Some(Event::Delta(_)) => rec.first_token(),
                    Some(Event::End(end)) => rec.usage(end.usage.as_ref()),
                    None => {}
                },
                Err(e) => rec.failed(e),
            }
            item.map_err(|e| e.to_status())
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn describe(
        &self,
        _request: Request<DescribeRequest>,
    ) -> Result<Response<DescribeResponse>, Status> {
        Ok(Response::new(self.engine.describe().await))
    }

    async fn embed(
        &self,
        request: Request<EmbedRequest>,
    ) -> Result<Response<EmbedResponse>, Status> {
        let timeout = grpc_timeout(&request);
        self.engine
            .embed(request.into_inner(), timeout)
            .await
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    /// UNIMPLEMENTED when this spoke's provider has no counting API (the hub then estimates).
    async fn count_tokens(
        &self,
        request: Request<InferRequest>,
    ) -> Result<Response<CountTokensResponse>, Status> {
        let timeout = grpc_timeout(&request);
        match self
            .engine
            .count_tokens(request.into_inner(), timeout)
            .await
        {
            Ok(Some(r)) => Ok(Response::new(r)),
            Ok(None) => Err(Status::unimplemented(format!(
                "the {} provider offers no token counting",
                self.engine.provider()
            ))),
            Err(e) => Err(e.to_status()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("m"), None);
    }
}
