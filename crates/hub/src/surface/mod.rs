//! The client APIs, one folder each: [`openai`] (chat completions, models, prompt templates), [`anthropic`] (Messages), [`converse`] (Bedrock Converse), [`embeddings`], [`count`] (token counting), [`responses`] (the OpenAI Responses API). Each
//! fills the same contract — decode its wire format into the internal request
//! (`switchyard.v1.InferRequest`), encode the answer, encode a stream item, encode an error in
//! its shape — around the shared per-request [`frame`] and the wire-free `gateway`.

pub mod answer;
pub mod anthropic;
pub mod converse;
pub mod count;
pub mod embeddings;
pub mod extra;
pub mod frame;
pub mod openai;
pub mod responses;

use axum::response::{IntoResponse, Response};

use crate::error::HubError;

/// `e` in the error shape of the surface `path` falls under: `/v1/messages…` Anthropic's,
/// `/model/…` Bedrock's (with `x-amzn-ErrorType`), any other path OpenAI's. For requests no
/// handler takes (unknown paths, a method a path does not allow).
pub fn error_for_path(path: &str, e: HubError) -> Response {
    if path.starts_with("/v1/messages") {
        anthropic::error_response(e)
    } else if path.starts_with("/model/") {
        converse::error_response(e)
    } else {
        e.into_response()
    }
}

/// `value` (a sampling parameter of the caller's body, named `param` in the caller's own terms)
/// within `0..=max`, the range the caller's API documents; else 400 `invalid_value` naming it.
pub fn in_range(param: &str, value: Option<f32>, max: f32) -> Result<(), HubError> {
    match value {
        Some(v) if !(v.is_finite() && (0.0..=max).contains(&v)) => Err(HubError::InvalidParam {
            param: param.to_string().into(),
            code: "invalid_value",
            message: format!("{param}: {v} is not a number from 0 to {max}"),
        }),
        _ => Ok(()),
    }
}

/// The error for a path parameter that does not decode (percent-encoded bytes that are not
/// UTF-8); never echoes the path.
pub fn bad_path(rejection: &axum::extract::rejection::PathRejection) -> HubError {
    tracing::debug!(reason = %rejection.body_text(), "path parameter refused");
    HubError::BadRequest("the path is not valid: its parameters must be UTF-8 text".into())
}
