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

/// `value` as a `200 application/json` response, serialised into one buffer sized for a usual
/// answer (axum's `Json` starts at 128 bytes, grows it as it writes, and writes through
/// `BytesMut`'s writer). Same body and `content-type` as `axum::Json`; a value that cannot be
/// serialised answers 500 with the reason as text, as `axum::Json` does.
pub fn json_response<T: serde::Serialize>(value: &T) -> Response {
    let mut buf = Vec::with_capacity(1024);
    match serde_json::to_writer(&mut buf, value) {
        Ok(()) => (
            [(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            )],
            buf,
        )
            .into_response(),
        Err(e) => (
            http::StatusCode::INTERNAL_SERVER_ERROR,
            [(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            e.to_string(),
        )
            .into_response(),
    }
}

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

/// Why a tool choice a caller asked for cannot stand against the tools it offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolChoiceProblem {
    /// A tool must be called (`any` / a named tool) but none is offered.
    NoTools,
    /// The named tool is not among the offered tools.
    UnknownTool,
}

/// The contract's tool choice for a surface's `mode` and tool `name` (empty unless `mode` is
/// `Tool`) against the offered `tools`: `None` for `auto` (every upstream's default) and for
/// `none` with no tools offered; the surface words a [`ToolChoiceProblem`] in its own terms.
pub fn checked_tool_choice(
    mode: switchyard_proto::v1::tool_choice::Mode,
    name: &str,
    tools: &[switchyard_proto::v1::ToolSpec],
) -> Result<Option<switchyard_proto::v1::ToolChoice>, ToolChoiceProblem> {
    use switchyard_proto::v1::tool_choice::Mode;
    match mode {
        Mode::Auto => return Ok(None),
        Mode::None if tools.is_empty() => return Ok(None),
        Mode::Any | Mode::Tool if tools.is_empty() => return Err(ToolChoiceProblem::NoTools),
        Mode::Tool if !tools.iter().any(|t| t.name == name) => {
            return Err(ToolChoiceProblem::UnknownTool);
        }
        _ => {}
    }
    Ok(Some(switchyard_proto::v1::ToolChoice {
        mode: mode as i32,
        name: name.to_owned(),
    }))
}

/// A request body as the surface's typed request `T`. A body that is not JSON is 400
/// `invalid_request`; one whose field has the wrong type or value is 400 `invalid_value` with
/// `param` = the field's path (`messages.0.content`, `n`) and a message in JSON's terms (never
/// the hub's own type names).
pub fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, HubError> {
    // Most bodies are good: read them without tracking the path (which wraps every value), and
    // read a refused one again with it, for the error's `param`.
    if let Ok(v) = T::deserialize(&mut serde_json::Deserializer::from_slice(bytes)) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    named(serde_path_to_error::deserialize::<_, T>(de))
}

/// [`parse_body`] for a body already read as JSON.
pub fn parse_value<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, HubError> {
    named(serde_path_to_error::deserialize::<_, T>(v))
}

/// A typed read's failure as [`parse_body`] words it.
fn named<T>(read: Result<T, serde_path_to_error::Error<serde_json::Error>>) -> Result<T, HubError> {
    match read {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let why = json_terms(&inner.to_string());
            if inner.is_syntax() || inner.is_eof() || path == "." {
                return Err(HubError::BadRequest(format!("invalid request body: {why}")));
            }
            Err(HubError::InvalidParam {
                message: format!("{path}: {why}"),
                param: path.into(),
                code: "invalid_value",
            })
        }
    }
}

/// A serde message with Rust's type names put in JSON's terms.
fn json_terms(message: &str) -> String {
    // serde says "expected u32", "expected struct ChatRequest", "untagged enum Content"…
    let mut out = message.to_string();
    for (rust, json) in [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected u64", "expected a whole number from 0"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
    ] {
        out = out.replace(rust, json);
    }
    if let Some(i) = out.find("expected struct ") {
        let end = out[i + 16..]
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .map_or(out.len(), |e| i + 16 + e);
        out.replace_range(i..end, "expected an object");
    }
    if let Some(i) = out.find("data did not match any variant of untagged enum ") {
        let start = i + "data did not match any variant of untagged enum ".len();
        let end = out[start..]
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .map_or(out.len(), |e| start + e);
        out.replace_range(i..end, "not one of the accepted forms");
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn json_response_answers_as_axum_json_does() {
        let value =
            serde_json::json!({"id": "x", "choices": [{"index": 0, "text": "é\n\"q\""}], "n": 1.5});
        let ours = json_response(&value);
        let axums = axum::Json(&value).into_response();
        assert_eq!(ours.status(), axums.status());
        assert_eq!(
            ours.headers().get(http::header::CONTENT_TYPE),
            axums.headers().get(http::header::CONTENT_TYPE)
        );
        let body = |r: Response| axum::body::to_bytes(r.into_body(), usize::MAX);
        assert_eq!(body(ours).await.unwrap(), body(axums).await.unwrap());
    }
}
