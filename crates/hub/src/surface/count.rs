//! Token counting: Anthropic `POST /v1/messages/count_tokens` and Bedrock
//! `POST /model/{modelId}/count-tokens`. The count is the upstream's own where the serving
//! account offers one: the hub asks one healthy spoke of the alias's first candidate that has
//! one serving its model (`CountTokens`; Anthropic and Bedrock spokes count, the others answer
//! UNIMPLEMENTED), one attempt, no failover, within [`UPSTREAM_COUNT_TIMEOUT`]. Any failure, and
//! Bedrock `invokeModel` input, fall back to the hub's estimate
//! (`switchyard_proto::estimate_input_tokens`, about four characters a token: the figure the hub
//! admits tenant token quotas with). Every answer says which in `x-switchyard-token-count:
//! upstream | estimate`; an upstream count also names who counted (`x-switchyard-provider`,
//! `-account`, `-region`, `-model`). The caller must be allowed the model; no quota is spent.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;

use crate::error::HubError;
use crate::gateway;
use crate::headers;
use crate::live::Snapshot;
use crate::model::{Alias, Tenant};
use crate::outbound::call;
use crate::routing::{self, Needs};
use crate::state::Hub;
use crate::surface::frame;
use crate::surface::{anthropic, converse};

/// Response header naming where a count comes from: `upstream` (the serving account's model
/// provider counted) or `estimate` (the hub's).
pub const TOKEN_COUNT: &str = "x-switchyard-token-count";

/// Longest the hub waits for an upstream count (or the request timeout, when shorter) before
/// it answers with its estimate.
pub const UPSTREAM_COUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a count request was resolved to: where an upstream count may be asked.
struct Asked {
    table: Snapshot,
    /// Whose request it is: its content policy runs before anything is sent upstream.
    tenant: Tenant,
    alias: Alias,
    request_id: String,
}

/// Authenticates (`Authorization: Bearer` or `x-api-key`), reads the body within the size and
/// time limits, checks the caller may use `model` and parses the body as JSON.
async fn prologue(
    hub: &Hub,
    headers: &HeaderMap,
    body: Body,
    model: Option<&str>,
    request_id: &str,
) -> Result<(Value, Asked), HubError> {
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
    let alias = table.resolve_alias(&tenant, &model)?;
    let asked = Asked {
        tenant,
        alias,
        request_id: request_id.to_string(),
        table,
    };
    Ok((v, asked))
}

/// The upstream's count of `req`: one healthy spoke serving the model of the alias's first
/// candidate that has one, asked once. `None` when there is none, or it failed, timed out or
/// answered UNIMPLEMENTED (its provider offers no counting).
async fn upstream_count(
    hub: &Hub,
    asked: &Asked,
    mut req: pb::InferRequest,
) -> Option<pb::CountTokensResponse> {
    let limit = hub.settings.request_timeout.min(UPSTREAM_COUNT_TIMEOUT);
    let (cand, spoke) = asked.alias.candidates.iter().find_map(|cand| {
        let pool = asked.table.pools.get(&cand.provider)?;
        let views = pool.views();
        let id = routing::pick_spoke(
            &views,
            &cand.model,
            &Needs::default(),
            &[],
            &mut rand::rng(),
        )?;
        Some((cand, pool.get(id)?))
    })?;
    // What only generation needs does not travel: the count is of the input.
    if let Some(p) = req.params.as_mut() {
        p.max_tokens = None;
    }
    req.request_id = asked.request_id.clone();
    req.models = vec![cand.model.clone()];
    req.allowed_regions = asked.tenant.allowed_regions.clone();
    req.timeout_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    let counted = tokio::time::timeout(
        limit,
        call::count_tokens(spoke.clone(), req, limit, &asked.request_id),
    )
    .await;
    match counted {
        Ok(Ok(r)) => Some(r),
        Ok(Err(e)) => {
            tracing::debug!(request_id = %asked.request_id, spoke = %spoke.addr, provider = %cand.provider, model = %cand.model, error = ?e, "no upstream token count; estimating");
            None
        }
        Err(_) => {
            tracing::debug!(request_id = %asked.request_id, spoke = %spoke.addr, "upstream token count timed out; estimating");
            None
        }
    }
}

/// A count, and who made it (`None`: the hub's estimate).
struct Counted {
    tokens: u64,
    by: Option<pb::Route>,
}

/// The upstream's count of `req` when one answers, else the estimate. The tenant's content
/// policy runs first, as for inference (a deny rule or blocked PII refuses the count; redacted
/// text is what is counted and what leaves the hub).
async fn count(hub: &Hub, asked: &Asked, mut req: pb::InferRequest) -> Result<Counted, HubError> {
    gateway::apply_policy(&asked.tenant, &mut req, &asked.request_id)?;
    let estimated = estimate(&req);
    Ok(match upstream_count(hub, asked, req).await {
        Some(r) => Counted {
            tokens: u64::from(r.input_tokens),
            by: Some(r.route.unwrap_or_default()),
        },
        None => Counted {
            tokens: estimated,
            by: None,
        },
    })
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

/// The answer `body`, with `x-switchyard-token-count` and, for an upstream count, the route.
fn answer(body: Value, by: Option<&pb::Route>) -> Response {
    let mut resp = axum::Json(body).into_response();
    let h = resp.headers_mut();
    match by {
        Some(r) => {
            h.insert(TOKEN_COUNT, HeaderValue::from_static("upstream"));
            headers::route(h, &r.provider, &r.account, &r.region, &r.model, 1);
        }
        None => {
            h.insert(TOKEN_COUNT, HeaderValue::from_static("estimate"));
        }
    }
    resp
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}` (the upstream's count or the
/// estimate: `x-switchyard-token-count`); errors in Anthropic's shape. The body is a Messages
/// request without `max_tokens`.
pub async fn anthropic_handler(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = frame::request_id(&headers);
    let counted = async {
        let (mut v, asked) = prologue(&hub, &headers, body, None, &request_id).await?;
        if let Some(obj) = v.as_object_mut() {
            obj.entry("max_tokens").or_insert(json!(1));
        }
        let req: anthropic::MessagesRequest = crate::surface::parse_value(v)?;
        let req = req.to_infer()?;
        count(&hub, &asked, req).await
    }
    .await;
    let resp = match counted {
        Ok(c) => answer(json!({ "input_tokens": c.tokens }), c.by.as_ref()),
        Err(e) => anthropic::error_response(e),
    };
    frame::with_request_id(resp, &request_id, Some(headers::ANTHROPIC_REQUEST_ID))
}

/// `POST /model/{modelId}/count-tokens`: `{"inputTokens": N}` for `{"input": {"converse":
/// {messages, system, toolConfig, …}}}` or `{"input": {"invokeModel": {"body": <base64>}}}`
/// (the model's native body: always estimated from its length); the Converse form is counted
/// upstream where offered (`x-switchyard-token-count`); errors in Bedrock's shape.
pub async fn bedrock_handler(
    State(hub): State<Arc<Hub>>,
    model: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = frame::request_id(&headers);
    let counted = async {
        let model = match model {
            Ok(Path(m)) => m,
            Err(rejection) => return Err(crate::surface::bad_path(&rejection)),
        };
        let (v, asked) = prologue(&hub, &headers, body, Some(&model), &request_id).await?;
        let input = v
            .get("input")
            .ok_or_else(|| HubError::BadRequest("`input` is required".into()))?;
        match (input.get("converse"), input.get("invokeModel")) {
            (Some(c), None) => count(&hub, &asked, converse::to_infer(c)?).await,
            (None, Some(i)) => {
                let b64 = i.get("body").and_then(Value::as_str).ok_or_else(|| {
                    HubError::BadRequest("`input.invokeModel.body` is required".into())
                })?;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| {
                        HubError::BadRequest("`input.invokeModel.body` is not base64".into())
                    })?;
                // The model's native body: estimated (the contract carries Converse's form).
                Ok(Counted {
                    tokens: (raw.len() as u64).div_ceil(4).max(1),
                    by: None,
                })
            }
            _ => Err(HubError::BadRequest(
                "`input` must hold exactly one of `converse`, `invokeModel`".into(),
            )),
        }
    }
    .await;
    let resp = match counted {
        Ok(c) => answer(json!({ "inputTokens": c.tokens }), c.by.as_ref()),
        Err(e) => converse::error_response(e),
    };
    frame::with_request_id(resp, &request_id, Some(headers::AMZN_REQUEST_ID))
}
