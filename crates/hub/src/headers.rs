//! Header names the hub reads or writes (one copy of each) and the small helpers that set them.
//! A leaf: imports nothing of the crate.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use switchyard_quota::RateState;

/// The request id a client may send (≤ 128 bytes kept) and the hub echoes on OpenAI answers.
pub const REQUEST_ID: &str = "x-request-id";
/// The request id on Anthropic answers (Anthropic's own name).
pub const ANTHROPIC_REQUEST_ID: &str = "request-id";
/// The request id on Bedrock answers (AWS's own name).
pub const AMZN_REQUEST_ID: &str = "x-amzn-requestid";
/// The error type on Bedrock error answers (AWS's own name).
pub const AMZN_ERROR_TYPE: &str = "x-amzn-errortype";
/// The API key as the Anthropic SDK (and the documented boto3 hook) send it.
pub const API_KEY: &str = "x-api-key";
/// The admin key (`[admin]`), besides HTTP Basic.
pub const ADMIN_KEY: &str = "x-admin-key";
/// A client may reorder candidates: `cheapest` (configured price) or `fastest` (observed latency).
pub const ROUTE_PREFERENCE: &str = "x-switchyard-route-preference";
/// A client may shorten the request deadline (milliseconds).
pub const TIMEOUT_MS: &str = "x-switchyard-timeout-ms";
/// The route that served: provider kind, account, region, upstream model.
pub const PROVIDER: &str = "x-switchyard-provider";
pub const ACCOUNT: &str = "x-switchyard-account";
pub const REGION: &str = "x-switchyard-region";
pub const MODEL: &str = "x-switchyard-model";
/// Spoke calls made for the request (0 when the response cache answered).
pub const ATTEMPTS: &str = "x-switchyard-attempts";
/// The hub's own time: total minus time waiting on spokes, milliseconds with three decimals.
pub const OVERHEAD_MS: &str = "x-switchyard-overhead-ms";
/// The request's cost in USD, six decimals (non-streamed answers).
pub const COST: &str = "x-switchyard-cost-usd";
/// Response cache outcome: `hit`, `coalesced` or `miss`.
pub const CACHE: &str = "x-switchyard-cache";
/// The prompt template used, `name@version`.
pub const PROMPT: &str = "x-switchyard-prompt";

/// The token of an `Authorization: Bearer <token>` value (see [`credentials`]).
pub fn bearer_token(value: &str) -> Option<&str> {
    credentials(value, "bearer")
}

/// The credentials of an `Authorization` value using `scheme`: the scheme matches in any letter
/// case and one or more spaces may follow it (RFC 9110 §11.1, §11.4); the credentials come
/// trimmed. `None` for another scheme or empty credentials.
pub fn credentials<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.trim_start().split_once(' ')?;
    if !given.eq_ignore_ascii_case(scheme) {
        return None;
    }
    Some(rest.trim()).filter(|t| !t.is_empty())
}

/// Sets `name` to `value`; a value that is not a valid header value is left out. `name` is a
/// `&'static str` (parsed on every call) or, on the per-request path, a prebuilt [`HeaderName`].
pub fn set(h: &mut HeaderMap, name: impl axum::http::header::IntoHeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// The route headers' names, built once ([`HeaderName::from_static`] checks the name and looks
/// it up among the standard ones on each call).
const PROVIDER_NAME: HeaderName = HeaderName::from_static(PROVIDER);
const ACCOUNT_NAME: HeaderName = HeaderName::from_static(ACCOUNT);
const REGION_NAME: HeaderName = HeaderName::from_static(REGION);
const MODEL_NAME: HeaderName = HeaderName::from_static(MODEL);
const ATTEMPTS_NAME: HeaderName = HeaderName::from_static(ATTEMPTS);
const OVERHEAD_MS_NAME: HeaderName = HeaderName::from_static(OVERHEAD_MS);

/// Sets `x-switchyard-overhead-ms` (milliseconds, three decimals).
pub fn overhead(h: &mut HeaderMap, overhead: Duration) {
    set(
        h,
        OVERHEAD_MS_NAME,
        &format!("{:.3}", overhead.as_secs_f64() * 1000.0),
    );
}

/// The route headers (provider, account, region, model, attempts).
pub fn route(
    h: &mut HeaderMap,
    provider: &str,
    account: &str,
    region: &str,
    model: &str,
    attempts: u32,
) {
    set(h, PROVIDER_NAME, provider);
    set(h, ACCOUNT_NAME, account);
    set(h, REGION_NAME, region);
    set(h, MODEL_NAME, model);
    h.insert(ATTEMPTS_NAME, HeaderValue::from(attempts));
}

/// Sets `x-switchyard-cost-usd` (six decimals) when the cost is known.
pub fn cost(h: &mut HeaderMap, cost: Option<f64>) {
    if let Some(c) = cost {
        set(h, COST, &format!("{c:.6}"));
    }
}

/// A response header's value as text (at most 128 characters), for the audit line.
pub fn text(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(128).collect())
}

/// OpenAI's duration format for `x-ratelimit-reset-*`: `250ms`, `12s`, `1m5s`.
fn reset_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64().ceil() as u64;
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{}s", secs / 60, secs % 60)
    }
}

/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, as OpenAI sends them.
pub fn ratelimit(h: &mut HeaderMap, state: &RateState) {
    for (kind, w) in [("requests", state.requests), ("tokens", state.tokens)] {
        let Some(w) = w else { continue };
        for (name, value) in [
            (format!("x-ratelimit-limit-{kind}"), w.limit.to_string()),
            (
                format!("x-ratelimit-remaining-{kind}"),
                w.remaining.to_string(),
            ),
            (format!("x-ratelimit-reset-{kind}"), reset_text(w.reset)),
        ] {
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
                h.insert(n, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_in_any_case() {
        for v in [
            "Bearer sk-1",
            "bearer sk-1",
            "BEARER sk-1",
            "bEaReR sk-1",
            "Bearer   sk-1 ",
        ] {
            assert_eq!(bearer_token(v), Some("sk-1"), "{v:?}");
        }
        for v in [
            "Basic sk-1",
            "Bearer",
            "Bearer   ",
            "Bearersk-1",
            "sk-1",
            "",
        ] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
        assert_eq!(
            credentials("BASIC dXNlcjpwdw==", "basic"),
            Some("dXNlcjpwdw==")
        );
    }

    #[test]
    fn reset_format() {
        assert_eq!(reset_text(Duration::from_millis(250)), "250ms");
        assert_eq!(reset_text(Duration::from_millis(1_200)), "2s");
        assert_eq!(reset_text(Duration::from_secs(65)), "1m5s");
    }

    #[test]
    fn cost_has_six_decimals() {
        let mut h = HeaderMap::new();
        cost(&mut h, Some(0.0000125));
        assert_eq!(h.get(COST).unwrap(), "0.000013");
        let mut none = HeaderMap::new();
        cost(&mut none, None);
        assert!(none.is_empty());
    }
}
