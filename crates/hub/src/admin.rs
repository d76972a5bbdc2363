//! Operator endpoints under `/admin/`. Each is behind an admin key (`[admin] api_key_sha256`),
//! sent as `Authorization: Bearer KEY` or `x-admin-key: KEY`, compared as a SHA-256 hash in
//! constant time. With no admin key configured, every `/admin/*` path answers 404, so the
//! surface does not exist at all.

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::error::HubError;
use crate::hub::Hub;

/// Header an admin client may use instead of `Authorization: Bearer`.
pub const ADMIN_KEY_HEADER: &str = "x-admin-key";

/// The `/admin/*` routes, merged into [`crate::api::router`]. Each handler starts with
/// [`require_admin`].
pub fn routes() -> Router<Arc<Hub>> {
    Router::new().route("/admin/config", axum::routing::get(config_handler))
}

/// `GET /admin/config`: the active config's version (SHA-256 of the file), when it was loaded,
/// the last rejected reload's problems, the number of reloads, and changes awaiting a restart.
async fn config_handler(
    axum::extract::State(hub): axum::extract::State<Arc<Hub>>,
    headers: HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Err(e) = require_admin(&hub, &headers) {
        return e.into_response();
    }
    axum::Json(hub.live.status()).into_response()
}

/// Whether `headers` carry a configured admin key. `Err(NotFound)` when admin is off (the
/// endpoints do not exist), `Err(Unauthorized)` for a missing or wrong key.
pub fn require_admin(hub: &Hub, headers: &HeaderMap) -> Result<(), HubError> {
    let hashes = &hub.settings.admin_key_hashes;
    if hashes.is_empty() {
        return Err(HubError::NotFound);
    }
    let key = headers
        .get(ADMIN_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .or_else(|| {
            headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
        })
        .ok_or(HubError::Unauthorized)?;
    use sha2::Digest;
    let digest: [u8; 32] = sha2::Sha256::digest(key.as_bytes()).into();
    let mut ok = false;
    for h in hashes {
        ok |= bool::from(h.ct_eq(&digest));
    }
    if ok {
        Ok(())
    } else {
        Err(HubError::Unauthorized)
    }
}
