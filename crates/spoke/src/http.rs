//! HTTP surface of the spoke: `GET /healthz` (load-balancer target health),
//! `POST /inference` (the JSON form of `Infer`, with the same semantics and status codes) and
//! `GET /metrics` (Prometheus text).

use crate::engine::Engine;
use crate::error::SpokeError;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics::gauge;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::labels;
use switchyard_proto::v1::{
    Attempt, ContentPart, GenerationParams, InferRequest, InferResponse, Message, Role,
    content_part::Part,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceBody {
    #[serde(default)]
    pub request_id: String,
    pub models: Vec<String>,
    #[serde(default)]
    pub system: String,
    pub messages: Vec<MessageBody>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    #[serde(default)]
    pub stop: Vec<String>,
    #[serde(default)]
    pub allowed_regions: Vec<String>,
    #[serde(default)]
    pub timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct RouteBody {
    pub provider: String,
    pub account: String,
    pub region: String,
    pub model: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct AttemptBody {
    pub region: String,
    pub model: String,
    pub outcome: String,
    pub latency_ms: u32,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub detail: String,
}

impl InferenceBody {
    fn into_request(self) -> Result<InferRequest, SpokeError> {
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.into_iter().enumerate() {
            let role = match m.role.as_str() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(SpokeError::BadRequest(format!(
                        "messages[{i}].role: {other:?} is not \"user\" or \"assistant\""
                    )));
                }
            };
            messages.push(Message {
                role: role as i32,
                content: vec![ContentPart {
                    part: Some(Part::Text(m.content)),
                }],
            });
        }
        Ok(InferRequest {
            request_id: self.request_id,
            models: self.models,
            system: self.system,
            messages,
            params: Some(GenerationParams {
                max_tokens: self.max_tokens,
                temperature: self.temperature,
                top_p: self.top_p,
                stop: self.stop,
                ..Default::default()
            }),
            allowed_regions: self.allowed_regions,
            timeout_ms: self.timeout_ms,
            tools: vec![],
            ..Default::default()
        })
    }
}

pub fn attempts_json(attempts: &[Attempt]) -> Vec<AttemptBody> {
    attempts
        .iter()
        .map(|a| {
            let t = a.target.clone().unwrap_or_default();
            AttemptBody {
                region: t.region,
                model: t.model,
                outcome: labels::Outcome::from_wire(a.outcome).as_str().to_owned(),
                latency_ms: a.latency_ms,
                detail: a.detail.clone(),
            }
        })
        .collect()
}

fn response_json(r: InferResponse) -> serde_json::Value {
    let content: String = r
        .message
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|p| match &p.part {
            Some(Part::Text(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let route = r.route.unwrap_or_default();
    let usage = r.usage.unwrap_or_default();
    json!({
        "request_id": r.request_id,
        "content": content,
        "stop_reason": labels::StopReason::from_wire(r.stop_reason).as_str(),
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
        "route": RouteBody { provider: route.provider, account: route.account, region: route.region, model: route.model },
        "attempts": attempts_json(&r.attempts),
    })
}

/// An error in the OpenAI shape, with `Retry-After` where it applies and `x-switchyard-fault`
/// (`caller` / `account`) when it is the caller's or the account's fault.
pub fn error_response(e: &SpokeError) -> Response {
    let (kind, code) = e.kind();
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "error": {"message": e.to_string(), "type": kind, "code": code},
        "attempts": attempts_json(e.attempts()),
    });
    let mut resp = (status, Json(body)).into_response();
    if let Some(fault) = e.fault() {
        resp.headers_mut().insert(
            switchyard_proto::FAULT,
            HeaderValue::from_static(match fault {
                labels::Fault::Account => switchyard_proto::FAULT_ACCOUNT,
                labels::Fault::Caller | labels::Fault::Transient => switchyard_proto::FAULT_CALLER,
            }),
        );
    }
    if let Some(ra) = e.retry_after() {
        let secs = ra.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert("retry-after", v);
        }
    }
    resp
}

pub async fn inference_handler(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
    body: Result<Json<InferenceBody>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(rej) => return error_response(&SpokeError::BadRequest(rej.body_text())),
    };
    let req = match body.into_request() {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let timeout = headers
        .get("x-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    let mut rec = crate::observe::SpokeRecord::start(
        engine.provider(),
        engine.account(),
        tracing::Span::none(),
        false,
    );
    match engine.infer(req, timeout).await {
        Ok(r) => {
            let route = r.route.clone().unwrap_or_default();
            rec.ok(&route.region, &route.model, &r.attempts, r.usage.as_ref());
            Json(response_json(r)).into_response()
        }
        Err(e) => {
            rec.failed(&e);
            error_response(&e)
        }
    }
}

/// 200 when at least one route can serve now; 503 when none can (all cooling down, broken or
/// denied, credentials missing) or while draining. `status` says which: `ok`, `draining`,
/// `credentials_missing`, `denied` (the upstream refuses this account on every route) or
/// `unavailable`. A denied route shows `"state": "denied"` with `denied_reason`
/// (`credentials`, `model_access`, `model_not_found`, `billing`), `denied_error_type` (the
/// upstream's error type) and `retry_after_ms` (until its next probe).
pub async fn healthz_handler(State(engine): State<Arc<Engine>>) -> Response {
    let d = engine.describe().await;
    let denied = labels::RouteState::Denied;
    let all_denied = d.models.iter().flat_map(|m| &m.regions).count() > 0
        && d.models
            .iter()
            .flat_map(|m| &m.regions)
            .all(|r| labels::RouteState::from_wire(r.state) == denied);
    let status = if d.draining {
        "draining"
    } else if !engine.credentials_ok() {
        "credentials_missing"
    } else if d.serving {
        "ok"
    } else if all_denied {
        "denied"
    } else {
        "unavailable"
    };
    let models: Vec<_> = d
        .models
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "regions": m.regions.iter().map(|r| {
                    let mut v = json!({
                        "region": r.region,
                        "state": labels::RouteState::from_wire(r.state).as_str(),
                        "headroom": r.headroom,
                        "requests_remaining": (r.requests_remaining != u64::MAX).then_some(r.requests_remaining),
                        "tokens_remaining": (r.tokens_remaining != u64::MAX).then_some(r.tokens_remaining),
                        "retry_after_ms": r.retry_after_ms,
                    });
                    if !r.denied_reason.is_empty() {
                        v["denied_reason"] = json!(r.denied_reason);
                        v["denied_error_type"] = json!(r.denied_error_type);
                    }
                    v
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = json!({
        "status": status,
        "provider": d.provider,
        "account": d.account,
        "headroom": d.headroom,
        "quota_store": if engine.quota_store_healthy() { "ok" } else { "degraded: local limits" },
        "models": models,
    });
    let code = if d.serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// `GET /metrics` on the spoke: Prometheus text; route gauges (state, headroom) are refreshed
/// from the engine at scrape time.
pub async fn metrics_handler(State(engine): State<Arc<Engine>>) -> Response {
    let d = engine.describe().await;
    let account = engine.account().to_string();
    gauge!("switchyard_spoke_serving", "account" => account.clone()).set(if d.serving {
        1.0
    } else {
        0.0
    });
    for m in &d.models {
        for r in &m.regions {
            let l = [
                ("account", account.clone()),
                ("region", r.region.clone()),
                ("model", m.id.clone()),
            ];
            gauge!("switchyard_route_headroom", &l).set(r.headroom);
            let current = labels::RouteState::from_wire(r.state);
            for st in labels::RouteState::ALL {
                let mut l = l.to_vec();
                l.push(("state", st.as_str().to_string()));
                gauge!("switchyard_route_state", &l).set(if st == current { 1.0 } else { 0.0 });
            }
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        switchyard_core::prom::render_with_help(crate::observe::METRIC_FAMILIES),
    )
        .into_response()
}
