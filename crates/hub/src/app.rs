//! The hub's HTTP application: the one route table and the middleware order.
//!
//! Middleware, outermost first (each request passes them in this order):
//! 1. `TraceLayer` — an HTTP span per request (`tower_http::trace`), only when spans or its
//!    debug lines go somewhere (OTLP tracing on, or `RUST_LOG=tower_http=debug`);
//! 2. `CorsLayer` when `[cors]` is set — preflights answered, CORS headers on every answer to an
//!    allowed origin (`tower_http::cors`);
//! 3. `CatchPanicLayer` — a panicking handler becomes a 500 in OpenAI's error shape;
//! 4. the handler, which runs in its surface's per-request frame (`surface::frame`): request id,
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

use axum::http::HeaderName;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::config::cors::Cors;
use crate::error::HubError;
use crate::headers;
use crate::state::Hub;
use crate::surface::{anthropic, converse, count, embeddings, openai, responses};

/// The hub's HTTP routes; no socket needed (tests call it with `tower::ServiceExt::oneshot`).
pub fn router(hub: Arc<Hub>) -> Router {
    let app = Router::new()
        // OpenAI
        .route(
            "/v1/chat/completions",
            post(openai::chat_completions_handler),
        )
        .route("/v1/models", get(openai::models_handler))
        .route("/v1/models/{model}", get(openai::model_handler))
        .route("/v1/embeddings", post(embeddings::embeddings_handler))
        .route("/v1/prompts/{name}", post(openai::prompt_handler))
        .route("/v1/responses", post(responses::create_handler))
        .route(
            "/v1/responses/{id}",
            get(responses::get_handler).delete(responses::delete_handler),
        )
        // Anthropic
        .route("/v1/messages", post(anthropic::messages_handler))
        .route("/v1/messages/count_tokens", post(count::anthropic_handler))
        // Bedrock
        .route(
            "/model/{model_id}/converse",
            post(converse::converse_handler),
        )
        .route(
            "/model/{model_id}/converse-stream",
            post(converse::converse_stream_handler),
        )
        .route(
            "/model/{model_id}/count-tokens",
            post(count::bedrock_handler),
        )
        // Operations
        .route("/healthz", get(healthz_handler))
        .route("/readyz", get(readyz_handler))
        .route("/metrics", get(metrics_handler))
        .merge(crate::admin::routes())
        // After every route: it applies to the routes registered before it.
        .method_not_allowed_fallback(method_not_allowed_handler)
        .fallback(fallback_handler)
        .with_state(hub.clone())
        // Outermost: trace, then CORS (so panics and errors carry its headers too), then turn a
        // panic into a 500 in OpenAI's shape.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(tower::util::option_layer(
            hub.settings.cors.as_ref().map(cors_layer),
        ));
    if http_trace_wanted() {
        app.layer(tower_http::trace::TraceLayer::new_for_http())
    } else {
        app
    }
}

/// Whether the per-request HTTP span and its debug log lines (`tower_http::trace`) would go
/// anywhere: when OTLP tracing is on, or the log filter lets `tower_http` debug lines through
/// (`RUST_LOG=tower_http=debug`). Otherwise the layer is left out, so a request does no span
/// work at all when nobody reads spans (decided when the router is built; the log filter is
/// fixed at start).
fn http_trace_wanted() -> bool {
    switchyard_core::telemetry::tracing_enabled()
        || tracing::enabled!(target: "tower_http::trace::on_request", tracing::Level::DEBUG)
}

/// Response headers a browser script may read (`Access-Control-Expose-Headers`): request ids,
/// the route taken, cache and cost, rate limits, `retry-after`, Bedrock's error type.
fn exposed_headers() -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = [
        headers::REQUEST_ID,
        headers::ANTHROPIC_REQUEST_ID,
        headers::AMZN_REQUEST_ID,
        headers::AMZN_ERROR_TYPE,
        headers::PROVIDER,
        headers::ACCOUNT,
        headers::REGION,
        headers::MODEL,
        headers::ATTEMPTS,
        headers::OVERHEAD_MS,
        headers::COST,
        headers::CACHE,
        headers::PROMPT,
        "retry-after",
    ]
    .iter()
    .map(|h| HeaderName::from_static(h))
    .collect();
    for kind in ["requests", "tokens"] {
        for what in ["limit", "remaining", "reset"] {
            if let Ok(h) = HeaderName::try_from(format!("x-ratelimit-{what}-{kind}")) {
                names.push(h);
            }
        }
    }
    names
}

/// The CORS layer of `[cors]`: preflights (`OPTIONS` with `Access-Control-Request-Method`)
/// answered for allowed origins, CORS headers on every answer to them (errors included), none
/// for other origins. No credentials mode: callers authenticate with a header, not cookies.
fn cors_layer(c: &Cors) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_origin(match &c.origins {
            None => AllowOrigin::any(),
            Some(list) => AllowOrigin::list(list.iter().cloned()),
        })
        .allow_methods(c.methods.clone())
        .expose_headers(exposed_headers())
        .max_age(c.max_age);
    match &c.headers {
        None => layer.allow_headers(AllowHeaders::mirror_request()),
        Some(list) => layer.allow_headers(list.clone()),
    }
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

/// Ready when at least one spoke of any pool is healthy: 200 `{"status":"ready"}`, else 503
/// `{"status":"unavailable","reason":"no healthy spoke"}`.
async fn readyz_handler(State(hub): State<Arc<Hub>>) -> Response {
    let table = hub.table.load();
    let ready = table
        .pools
        .values()
        .any(|p| p.spokes().iter().any(|s| s.is_healthy()));
    if ready {
        axum::Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unavailable", "reason": "no healthy spoke"})),
        )
            .into_response()
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
