//! `POST /v1/embeddings` (OpenAI shape), routed like chat: the inputs ride the shared gateway
//! path (content policy, tenant quota, failover) and reach the spokes' `Embed` RPC.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;

use crate::error::HubError;
use crate::gateway;
use crate::hub::Hub;
use crate::observe::{self, RequestInfo, RequestRecord, Surface};
use crate::routing::Needs;

/// Most inputs one request may carry (OpenAI's own limit).
pub const MAX_INPUTS: usize = 2048;

/// `/v1/embeddings`, merged into the hub's router.
pub fn routes() -> Router<Arc<Hub>> {
    Router::new().route("/v1/embeddings", post(embeddings_handler))
}

/// The request body. `user` and unknown fields are ignored.
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: Input,
    #[serde(default)]
    pub dimensions: Option<u32>,
    #[serde(default)]
    pub encoding_format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    One(String),
    Many(Vec<Value>),
}

fn bad(msg: impl Into<String>) -> HubError {
    HubError::BadRequest(msg.into())
}

impl EmbeddingsRequest {
    /// The input texts; token-id inputs are refused (they only mean something to OpenAI's own
    /// tokenizer).
    pub fn texts(&self) -> Result<Vec<String>, HubError> {
        let texts = match &self.input {
            Input::One(s) => vec![s.clone()],
            Input::Many(items) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        bad("input: only strings are supported (token arrays are refused)")
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        if texts.is_empty() || texts.len() > MAX_INPUTS {
            return Err(bad(format!(
                "input: between 1 and {MAX_INPUTS} texts are required"
            )));
        }
        if texts.iter().any(String::is_empty) {
            return Err(bad("input: texts must not be empty"));
        }
        Ok(texts)
    }
}

async fn embeddings_handler(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let request_id = gateway::request_id(&headers);
    let span = observe::request_span(&headers, &request_id, Surface::Embeddings.operation());
    let mut rec = RequestRecord::start(
        hub.audit.clone(),
        &request_id,
        span.clone(),
        Surface::Embeddings,
    );
    let serving = embeddings(&hub, &headers, body, started, &request_id, &mut rec);
    let result = tracing::Instrument::instrument(serving, span).await;
    rec.finish(result, &request_id, IntoResponse::into_response)
}

async fn embeddings(
    hub: &Arc<Hub>,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
    request_id: &str,
    rec: &mut RequestRecord,
) -> Result<Response, HubError> {
    let tenant = crate::api::authenticate(hub, headers).await?;
    rec.set_tenant(&tenant.name);
    let bytes = gateway::read_body(hub, headers, body).await?;
    let req: EmbeddingsRequest =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid request body: {e}")))?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(bad(format!(
                "encoding_format: {other:?} is not one of float, base64"
            )));
        }
    };
    if req.dimensions == Some(0) {
        return Err(bad("dimensions: must be at least 1"));
    }
    let alias = hub.resolve_alias(&tenant, &req.model)?;
    // One user message per input: the content policy and the quota estimate see every text.
    let request = pb::InferRequest {
        messages: req
            .texts()?
            .into_iter()
            .map(|t| pb::Message {
                role: pb::Role::User as i32,
                content: vec![pb::ContentPart {
                    part: Some(pb::content_part::Part::Text(t)),
                }],
            })
            .collect(),
        params: Some(pb::GenerationParams {
            max_tokens: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    };
    rec.set_request(
        &alias,
        &RequestInfo::infer(&req.model, false, &request),
        || observe::infer_messages(&request),
    );
    let inbound = gateway::Inbound {
        headers,
        model: &req.model,
        request,
        needs: Needs::default(),
        started,
        request_id,
    };
    let admission = gateway::check(hub, tenant, alias, inbound)?
        .admit(hub)
        .await?;
    let rate_state = admission.rate_state;
    let (resp, route) = admission.embed(hub, req.dimensions.unwrap_or(0)).await?;
    rec.set_route(&route, resp.usage.as_ref(), &resp.attempts);
    let data: Vec<Value> = resp
        .embeddings
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = e.values.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(e.values)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens = resp.usage.map_or(0, |u| u.input_tokens);
    let mut out = axum::Json(json!({
        "object": "list",
        "data": data,
        "model": route.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response();
    gateway::route_headers(out.headers_mut(), &route, started);
    observe::cost_header(out.headers_mut(), rec.cost());
    crate::quota::ratelimit_headers(out.headers_mut(), &rate_state);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs() {
        let r: EmbeddingsRequest =
            serde_json::from_value(json!({"model": "e", "input": "one"})).unwrap();
        assert_eq!(r.texts().unwrap(), vec!["one".to_string()]);
        let r: EmbeddingsRequest =
            serde_json::from_value(json!({"model": "e", "input": ["a", "b"]})).unwrap();
        assert_eq!(r.texts().unwrap().len(), 2);
        let r: EmbeddingsRequest =
            serde_json::from_value(json!({"model": "e", "input": [[1, 2, 3]]})).unwrap();
        assert!(r.texts().is_err());
        let r: EmbeddingsRequest =
            serde_json::from_value(json!({"model": "e", "input": []})).unwrap();
        assert!(r.texts().is_err());
    }
}
