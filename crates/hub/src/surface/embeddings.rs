//! `POST /v1/embeddings` (OpenAI shape), routed like chat: the inputs ride the shared gateway
//! path (content policy, tenant quota, failover) and reach the spokes' `Embed` RPC.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;

use crate::error::HubError;
use crate::gateway;
use crate::observe::{self, RequestInfo, Surface};
use crate::routing::Needs;
use crate::state::Hub;
use crate::surface::frame::{self, Frame};

/// Most inputs one request may carry (OpenAI's own limit).
pub const MAX_INPUTS: usize = 2048;

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
            return Err(HubError::InvalidParam {
                param: "input".into(),
                code: "invalid_value",
                message: format!(
                    "input: {} texts were sent; between 1 and {MAX_INPUTS} are accepted",
                    texts.len()
                ),
            });
        }
        if texts.iter().any(String::is_empty) {
            return Err(bad("input: texts must not be empty"));
        }
        Ok(texts)
    }
}

pub async fn embeddings_handler(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut frame = Frame::begin(&hub, &headers, Surface::Embeddings);
    let span = frame.span();
    let result =
        tracing::Instrument::instrument(embeddings(&hub, &headers, body, &mut frame), span).await;
    frame.finish(result, IntoResponse::into_response, None)
}

async fn embeddings(
    hub: &Arc<Hub>,
    headers: &HeaderMap,
    body: Body,
    frame: &mut Frame,
) -> Result<Response, HubError> {
    let table = frame.table.clone();
    let tenant = frame::authenticate(hub, &table, headers).await?;
    frame.rec.set_tenant(&tenant.name);
    let bytes = frame::read_body(hub, headers, body).await?;
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
    let max_dimensions = hub.settings.bounds.max_embedding_dimensions;
    if let Some(d) = req.dimensions.filter(|d| *d == 0 || *d > max_dimensions) {
        return Err(HubError::InvalidParam {
            param: "dimensions".into(),
            code: "invalid_value",
            message: format!("dimensions: {d} is not between 1 and {max_dimensions}"),
        });
    }
    let alias = table.resolve_alias(&tenant, &req.model)?;
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
    frame.rec.set_request(
        &alias,
        &RequestInfo::infer(&req.model, false, &request),
        || observe::infer_messages(&request),
    );
    let inbound = gateway::Inbound {
        table,
        headers,
        model: &req.model,
        request,
        needs: Needs::default(),
        asked: Default::default(),
        started: frame.started,
        request_id: &frame.request_id,
    };
    let admission = gateway::check(hub, tenant, alias, inbound)?
        .admit(hub)
        .await?;
    let rate_state = admission.rate_state;
    let (resp, route) = admission.embed(hub, req.dimensions.unwrap_or(0)).await?;
    frame
        .rec
        .set_route(&route, resp.usage.as_ref(), &resp.attempts);
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
    frame::answered(
        &mut out,
        &route,
        frame.started,
        &rate_state,
        frame.rec.cost(),
    );
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
