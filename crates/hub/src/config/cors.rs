//! `[cors]`: which browser origins may call the hub (opt-in; unset = no CORS headers at all).

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;

/// `[cors]` as written in the file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct CorsConfig {
    /// Origins allowed to call the hub from a browser (`"https://app.example.com"`: scheme,
    /// host and port exactly as the browser sends `Origin`), or `["*"]` for any origin. Empty
    /// (the default) = CORS off: no preflight answers, no CORS headers.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Methods a preflight may ask for. Default: `GET`, `POST`, `DELETE`, `OPTIONS`.
    #[serde(default)]
    pub allowed_methods: Option<Vec<String>>,
    /// Request headers a preflight may ask for. Default: whatever the preflight asks for (the
    /// SDKs send their own `x-stainless-*` headers besides `authorization` and `content-type`).
    #[serde(default)]
    pub allowed_headers: Option<Vec<String>>,
    /// How long a browser may keep a preflight answer (`Access-Control-Max-Age`). Default
    /// `"10m"`.
    #[serde(default)]
    pub max_age: Option<String>,
}

/// Validated `[cors]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cors {
    /// `None` = any origin (`*`).
    pub origins: Option<Vec<HeaderValue>>,
    pub methods: Vec<Method>,
    /// `None` = mirror the preflight's `Access-Control-Request-Headers`.
    pub headers: Option<Vec<HeaderName>>,
    pub max_age: Duration,
}

impl CorsConfig {
    /// `None` when CORS is off. Problems go to `errs`, each with its path.
    pub fn validate(&self, errs: &mut Vec<String>) -> Option<Cors> {
        if self.allowed_origins.is_empty() {
            if self.allowed_methods.is_some() || self.allowed_headers.is_some() {
                errs.push(
                    "cors: allowed_methods / allowed_headers given without allowed_origins".into(),
                );
            }
            return None;
        }
        let origins = if self.allowed_origins.iter().any(|o| o == "*") {
            if self.allowed_origins.len() > 1 {
                errs.push("cors.allowed_origins: \"*\" must be the only entry".into());
            }
            None
        } else {
            let mut v = Vec::new();
            for (i, o) in self.allowed_origins.iter().enumerate() {
                let ok = (o.starts_with("http://") || o.starts_with("https://"))
                    && !o.ends_with('/')
                    && !o[o.find("//").map_or(0, |p| p + 2)..].contains('/');
                match HeaderValue::from_str(o) {
                    Ok(h) if ok => v.push(h),
                    _ => errs.push(format!(
                        "cors.allowed_origins[{i}]: {o:?} is not an origin like \"https://app.example.com\" (scheme, host, optional port; no path)"
                    )),
                }
            }
            Some(v)
        };
        let methods = match &self.allowed_methods {
            None => vec![Method::GET, Method::POST, Method::DELETE, Method::OPTIONS],
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(
                    |(i, m)| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                        Ok(m) => Some(m),
                        Err(_) => {
                            errs.push(format!(
                                "cors.allowed_methods[{i}]: {m:?} is not an HTTP method"
                            ));
                            None
                        }
                    },
                )
                .collect(),
        };
        let headers = self.allowed_headers.as_ref().map(|list| {
            list.iter()
                .enumerate()
                .filter_map(|(i, h)| match HeaderName::from_bytes(h.as_bytes()) {
                    Ok(h) => Some(h),
                    Err(_) => {
                        errs.push(format!(
                            "cors.allowed_headers[{i}]: {h:?} is not a header name"
                        ));
                        None
                    }
                })
                .collect()
        });
        let max_age = match self.max_age.as_deref().map(humantime::parse_duration) {
            None => Duration::from_secs(600),
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                errs.push(format!("cors.max_age: invalid duration: {e}"));
                Duration::from_secs(600)
            }
        };
        Some(Cors {
            origins,
            methods,
            headers,
            max_age,
        })
    }
}
