//! Operator endpoints under `/admin/`. Each is behind an admin key (`[admin] api_key_sha256`),
//! sent as `Authorization: Bearer KEY`, `x-admin-key: KEY`, or as the password of HTTP Basic
//! authentication (any user name) so that a browser can open the HTML view (a refused request
//! carries `WWW-Authenticate: Basic`, and the browser asks); compared as a SHA-256 hash in
//! constant time. With no admin key configured, every `/admin/*` path answers 404, so the
//! surface does not exist at all.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::error::HubError;
use crate::state::Hub;

/// The `/admin/*` routes, merged into [`crate::app::router`]. Each handler starts with
/// [`require_admin`].
pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/admin/routes", get(routes_handler))
        .route("/admin/routes.html", get(routes_html_handler))
        .route("/admin/config", get(config_handler))
}

#[derive(Debug, serde::Deserialize)]
struct RoutesQuery {
    format: Option<String>,
}

/// `GET /admin/routes`: the live routing table as JSON (`?format=html`: the page).
async fn routes_handler(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Query(q): Query<RoutesQuery>,
) -> Response {
    if let Err(e) = require_admin(&hub, &headers) {
        return refuse(e);
    }
    match q.format.as_deref() {
        None | Some("json") => axum::Json(routing_table(&hub)).into_response(),
        Some("html") => Html(routes_page(&routing_table(&hub))).into_response(),
        Some(other) => {
            HubError::BadRequest(format!("format: {other:?} is not \"json\" or \"html\""))
                .into_response()
        }
    }
}

/// `GET /admin/routes.html`: the routing table as a self-refreshing page.
async fn routes_html_handler(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    if let Err(e) = require_admin(&hub, &headers) {
        return refuse(e);
    }
    Html(routes_page(&routing_table(&hub))).into_response()
}

/// Health of one spoke as a word: `healthy`, `ejected` (a call failed at the connection level;
/// waiting for a probe), `unhealthy` (failed active checks), `pending` (not checked yet).
fn health_word(s: &crate::outbound::pool::SpokeSnapshot) -> &'static str {
    if s.healthy {
        "healthy"
    } else if s.ejected {
        "ejected"
    } else if s.last_check.is_none() {
        "pending"
    } else {
        "unhealthy"
    }
}

/// The live routing table: every pool, every spoke with its weight, health, breaker, headroom.
pub fn routing_table(hub: &Hub) -> Value {
    let table = hub.table.load();
    let mut names: Vec<&String> = table.pools.keys().collect();
    names.sort();
    let pools: Vec<Value> = names
        .into_iter()
        .filter_map(|name| table.pools.get(name).map(|p| (name, p)))
        .map(|(name, pool)| {
            let spokes: Vec<Value> = pool
                .spokes()
                .iter()
                .map(|s| {
                    let snap = s.snapshot();
                    let d = snap.described.clone().unwrap_or_default();
                    let mut models: Vec<&String> = d.models.keys().collect();
                    models.sort();
                    json!({
                        "pool": name,
                        "address": snap.addr.to_string(),
                        "weight": snap.weight,
                        "health": health_word(&snap),
                        "breaker": if snap.ejected || snap.outlier_ejected_for.is_some() { "open" } else { "closed" },
                        "in_flight": snap.in_flight,
                        "account": snap.described.as_ref().map(|d| d.account.clone()),
                        "serving": d.serving,
                        "headroom": snap.described.as_ref().map(|d| d.headroom),
                        "exhausted_for_ms": snap.exhausted_for.map(|d| d.as_millis() as u64),
                        "outlier_ejected_for_ms": snap.outlier_ejected_for.map(|d| d.as_millis() as u64),
                        "models": models,
                        "regions": d.regions,
                        "last_check": snap.last_check.map(crate::observe::audit::rfc3339),
                        "last_error": snap.last_error,
                    })
                })
                .collect();
            json!({"name": name, "spokes": spokes})
        })
        .collect();
    json!({
        "generated_at": crate::observe::audit::rfc3339(std::time::SystemTime::now()),
        "pools": pools,
    })
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.2}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The routing table as a small HTML page: one row per spoke, coloured by health, refreshed
/// every 5 seconds.
pub fn routes_page(table: &Value) -> String {
    let mut rows = String::new();
    let empty = Vec::new();
    for pool in table["pools"].as_array().unwrap_or(&empty) {
        for s in pool["spokes"].as_array().unwrap_or(&empty) {
            let health = s["health"].as_str().unwrap_or("pending");
            let regions: Vec<String> = s["regions"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|r| {
                    format!(
                        "{}/{} {} ({})",
                        text(&r["model"]),
                        text(&r["region"]),
                        text(&r["headroom"]),
                        text(&r["state"])
                    )
                })
                .collect();
            rows.push_str(&format!(
                "<tr class=\"spoke health-{h}\" data-address=\"{addr}\"><td>{pool}</td><td>{addr}</td>\
                 <td>{acct}</td><td>{w}</td><td class=\"health\">{h}</td><td class=\"breaker-{b}\">{b}</td>\
                 <td>{hr}</td><td>{inf}</td><td>{reg}</td><td>{lc}</td><td>{le}</td></tr>\n",
                h = esc(health),
                pool = esc(&text(&s["pool"])),
                addr = esc(&text(&s["address"])),
                acct = esc(&text(&s["account"])),
                w = esc(&text(&s["weight"])),
                b = esc(&text(&s["breaker"])),
                hr = esc(&text(&s["headroom"])),
                inf = esc(&text(&s["in_flight"])),
                reg = esc(&regions.join(", ")),
                lc = esc(&text(&s["last_check"])),
                le = esc(&text(&s["last_error"])),
            ));
        }
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<title>Switchyard routes</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
table {{ border-collapse: collapse; width: 100%; font-size: 14px; }}
th, td {{ border: 1px solid #ccc; padding: 6px 8px; text-align: left; }}
th {{ background: #f0f0f0; }}
tr.health-healthy td.health {{ background: #2e9e44; color: #fff; }}
tr.health-ejected td.health {{ background: #e08a00; color: #fff; }}
tr.health-unhealthy td.health {{ background: #c62828; color: #fff; }}
tr.health-pending td.health {{ background: #9e9e9e; color: #fff; }}
td.breaker-open {{ color: #c62828; font-weight: bold; }}
</style></head>
<body><h1>Switchyard routing table</h1>
<p>Generated {gen}; refreshes every 5 s.</p>
<table id="routes"><thead><tr><th>Pool</th><th>Address</th><th>Account</th><th>Weight</th>
<th>Health</th><th>Breaker</th><th>Headroom</th><th>In flight</th><th>Model/region headroom</th>
<th>Last check</th><th>Last error</th></tr></thead>
<tbody>
{rows}</tbody></table></body></html>
"#,
        gen = esc(&text(&table["generated_at"])),
    )
}

/// `GET /admin/config`: the active config's version (SHA-256 of the file), when it was loaded,
/// the last rejected reload's problems, the number of reloads, and changes awaiting a restart.
async fn config_handler(
    axum::extract::State(hub): axum::extract::State<Arc<Hub>>,
    headers: HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Err(e) = require_admin(&hub, &headers) {
        return refuse(e);
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
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let basic = authorization
        .and_then(|v| crate::headers::credentials(v, "basic"))
        .and_then(|b64| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(_, password)| password.to_string())
        });
    let key = headers
        .get(crate::headers::ADMIN_KEY)
        .and_then(|v| v.to_str().ok())
        .map(|k| k.trim().to_string())
        .or_else(|| {
            authorization
                .and_then(crate::headers::bearer_token)
                .map(str::to_string)
        })
        .or(basic)
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

/// An admin refusal; a 401 asks for HTTP Basic credentials, so a browser prompts for the key.
fn refuse(e: HubError) -> Response {
    let unauthorized = matches!(e, HubError::Unauthorized);
    let mut resp = e.into_response();
    if unauthorized {
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic realm=\"switchyard admin\", charset=\"UTF-8\""),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_escapes_spoke_supplied_text_and_colours_health() {
        let table = json!({
            "generated_at": "2026-01-01T00:00:00.000Z",
            "pools": [{"name": "p", "spokes": [
                {"pool": "p", "address": "10.0.0.1:50051", "weight": 2, "health": "healthy",
                 "breaker": "closed", "account": "<script>alert(1)</script>", "headroom": 0.5,
                 "in_flight": 0, "regions": [], "last_check": null, "last_error": null},
                {"pool": "p", "address": "10.0.0.2:50051", "weight": 1, "health": "ejected",
                 "breaker": "open", "account": null, "headroom": null,
                 "in_flight": 0, "regions": [], "last_check": null, "last_error": "a \"b\" & c"},
            ]}],
        });
        let page = routes_page(&table);
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("a &quot;b&quot; &amp; c"));
        assert!(page.contains("class=\"spoke health-healthy\" data-address=\"10.0.0.1:50051\""));
        assert!(page.contains("class=\"spoke health-ejected\" data-address=\"10.0.0.2:50051\""));
        assert!(page.contains("http-equiv=\"refresh\""));
        assert!(page.contains("0.50"));
    }
}
