//! The hub's HTTP application: the one route table and the middleware order.
//!
//! Middleware, outermost first (each request passes them in this order):
//! 1. `TraceLayer` — an HTTP span per request (`tower_http::trace`);
//! 2. `CatchPanicLayer` — a panicking handler becomes a 500 in OpenAI's error shape;
//! 3. the handler, which runs in its surface's per-request frame (`surface::frame`): request id,
//!    span, the request's one table snapshot, the request record (metrics, audit, cost) —
//!    finished once with the error in the surface's shape.
//!
//! Body size and slow-client limits are the listener's (`serve`) and the frame's (`read_body`).
//! A request no handler takes — an unknown path, or a method its path does not allow (405 with
//! `Allow`) — is answered in the error shape of the surface its path falls under
//! (`surface::error_for_path`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::error::HubError;
use crate::state::Hub;
use crate::surface::{anthropic, converse, embeddings, openai};

/// The hub's HTTP routes; no socket needed (tests call it with `tower::ServiceExt::oneshot`).
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        // OpenAI
        .route(
            "/v1/chat/completions",
            post(openai::chat_completions_handler),
        )
        .route("/v1/models", get(openai::models_handler))
        .route("/v1/embeddings", post(embeddings::embeddings_handler))
        .route("/v1/prompts/{name}", post(openai::prompt_handler))
        // Anthropic
        .route("/v1/messages", post(anthropic::messages_handler))
        // Bedrock
        .route(
            "/model/{model_id}/converse",
            post(converse::converse_handler),
        )
        .route(
            "/model/{model_id}/converse-stream",
            post(converse::converse_stream_handler),
        )
        // Operations
        .route("/healthz", get(healthz_handler))
        .route("/readyz", get(readyz_handler))
        .route("/metrics", get(metrics_handler))
        .merge(crate::admin::routes())
        // After every route: it applies to the routes registered before it.
        .method_not_allowed_fallback(method_not_allowed_handler)
        .fallback(fallback_handler)
        .with_state(hub)
        // Outermost: trace, then turn a panic into a 500 in OpenAI's shape.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    HubError::Internal("panic".into()).into_response()
}

/// Liveness: the process answers. Reports whether the shared quota store (Redis) answers;
/// while it does not, local limits are in force (`"degraded: local limits"`) and requests
/// still flow, so this stays 200.
async fn healthz_handler(State(hub): State<Arc<Hub>>) -> Response {
    let quota = if hub.quota.is_shared_healthy() {
        "ok"
    } else {
        "degraded: local limits"
    };
    axum::Json(json!({"status": "ok", "quota_store": quota})).into_response()
}

/// Ready when at least one spoke of any pool is healthy.
async fn readyz_handler(State(hub): State<Arc<Hub>>) -> Response {
    let table = hub.table.load();
    let ready = table
        .pools
        .values()
        .any(|p| p.spokes().iter().any(|s| s.is_healthy()));
    if ready {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no healthy spoke").into_response()
    }
}

/// `GET /metrics`: Prometheus text. Pool gauges (spoke health, breaker, headroom) are refreshed
/// from the live table at scrape time. Open unless `[metrics] require_admin = true`.
async fn metrics_handler(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    if hub.settings.metrics.require_admin
        && let Err(e) = crate::admin::require_admin(&hub, &headers)
    {
        return e.into_response();
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::observe::metrics::render(&hub.snapshot()),
    )
        .into_response()
}

/// An unknown path: 404 in the shape of the surface the path falls under.
async fn fallback_handler(uri: Uri) -> Response {
    crate::surface::error_for_path(uri.path(), HubError::NotFound)
}

/// A known path with a method it does not take: 405 in its surface's shape (axum adds `Allow`).
async fn method_not_allowed_handler(uri: Uri) -> Response {
    crate::surface::error_for_path(uri.path(), HubError::MethodNotAllowed)
}
