//! Token counting: Anthropic `POST /v1/messages/count_tokens` and Bedrock
//! `POST /model/{modelId}/count-tokens`. The count is the hub's estimate of the request's input
//! (`switchyard_proto::estimate_input_tokens`, about four characters a token: the figure the hub
//! admits tenant token quotas with), and every answer says so in `x-switchyard-token-count:
//! estimate`. The caller must be allowed the model; nothing is sent upstream and no quota is
//! spent.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;

use crate::error::HubError;
use crate::state::Hub;
use crate::surface::frame;
use crate::surface::{anthropic, converse};

/// Response header naming where a count comes from: `estimate` (the hub's).
pub const TOKEN_COUNT: &str = "x-switchyard-token-count";

/// Authenticates (`Authorization: Bearer` or `x-api-key`), reads the body within the size and
/// time limits, checks the caller may use `model` and parses the body as JSON.
async fn prologue(
    hub: &Hub,
    headers: &HeaderMap,
    body: Body,
    model: Option<&str>,
) -> Result<Value, HubError> {
    let table = hub.snapshot();
    let tenant = frame::authenticate_x_api_key(hub, &table, headers).await?;
    let bytes = frame::read_body(hub, headers, body).await?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| HubError::BadRequest(format!("invalid request body: {e}")))?;
    let model = match model {
        Some(m) => m.to_string(),
        None => v
            .get("model")
            .and_then(Value::as_str)
            .ok_or_else(|| HubError::BadRequest("`model` is required".into()))?
            .to_string(),
    };
    table.resolve_alias(&tenant, &model)?;
    Ok(v)
}

/// The estimate for `req`, tools included (their definitions are part of the prompt).
fn estimate(req: &pb::InferRequest) -> u64 {
    let tools: usize = req
        .tools
        .iter()
        .map(|t| t.name.len() + t.description.len() + t.parameters_json.len())
        .sum();
    switchyard_proto::estimate_input_tokens(req) + (tools as u64).div_ceil(4)
}

fn answer(body: Value) -> Response {
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert(TOKEN_COUNT, HeaderValue::from_static("estimate"));
    resp
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}`; errors in Anthropic's shape. The
/// body is a Messages request without `max_tokens`.
pub async fn anthropic_handler(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let counted = async {
        let mut v = prologue(&hub, &headers, body, None).await?;
        if let Some(obj) = v.as_object_mut() {
            obj.entry("max_tokens").or_insert(json!(1));
        }
        let req: anthropic::MessagesRequest = serde_json::from_value(v)
            .map_err(|e| HubError::BadRequest(format!("invalid request body: {e}")))?;
        Ok::<_, HubError>(estimate(&req.to_infer()?))
    }
    .await;
    match counted {
        Ok(n) => answer(json!({ "input_tokens": n })),
        Err(e) => anthropic::error_response(e),
    }
}

/// `POST /model/{modelId}/count-tokens`: `{"inputTokens": N}` for `{"input": {"converse":
/// {messages, system, toolConfig, …}}}` or `{"input": {"invokeModel": {"body": <base64>}}}`
/// (the model's native body: estimated from its length); errors in Bedrock's shape.
pub async fn bedrock_handler(
    State(hub): State<Arc<Hub>>,
    model: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let counted = async {
        let model = match model {
            Ok(Path(m)) => m,
            Err(rejection) => return Err(crate::surface::bad_path(&rejection)),
        };
        let v = prologue(&hub, &headers, body, Some(&model)).await?;
        let input = v
            .get("input")
            .ok_or_else(|| HubError::BadRequest("`input` is required".into()))?;
        match (input.get("converse"), input.get("invokeModel")) {
            (Some(c), None) => Ok(estimate(&converse::to_infer(c)?)),
            (None, Some(i)) => {
                let b64 = i.get("body").and_then(Value::as_str).ok_or_else(|| {
                    HubError::BadRequest("`input.invokeModel.body` is required".into())
                })?;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| {
                        HubError::BadRequest("`input.invokeModel.body` is not base64".into())
                    })?;
                Ok((raw.len() as u64).div_ceil(4).max(1))
            }
            _ => Err(HubError::BadRequest(
                "`input` must hold exactly one of `converse`, `invokeModel`".into(),
            )),
        }
    }
    .await;
    match counted {
        Ok(n) => answer(json!({ "inputTokens": n })),
        Err(e) => converse::error_response(e),
    }
}
