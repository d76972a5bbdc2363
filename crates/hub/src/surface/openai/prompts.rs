//! Prompt templates on the OpenAI surface: a chat request's `prompt` field is expanded into
//! messages ([`expand`]), and `POST /v1/prompts/{name}` (variables only) is answered exactly like
//! `POST /v1/chat/completions`. The version used is reported in `x-switchyard-prompt:
//! NAME@VERSION` and in the `switchyard_prompt_requests_total{prompt,version}` counter.

use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::wire::{ChatMessage, ChatRequest, Content};
use crate::error::HubError;
use crate::headers;
use crate::live::Table;
use crate::state::Hub;
use crate::surface::frame::{self, Frame};

/// Replaces a chat request's `prompt` reference with the rendered messages: the template's system
/// prompt, its user message, then any `messages` the request carries. Returns `NAME@VERSION`.
pub fn expand(table: &Table, req: &mut ChatRequest) -> Result<Option<String>, HubError> {
    let Some(r) = req.prompt.take() else {
        return Ok(None);
    };
    let prompt = table.prompts.get(&r.name).ok_or_else(|| {
        HubError::BadRequest(format!("prompt.name: no prompt named {:?}", r.name))
    })?;
    let (version, v) = prompt
        .choose(r.version.as_deref(), rand::random_range(0..100))
        .map_err(HubError::BadRequest)?;
    let missing = |var: String| {
        HubError::BadRequest(format!(
            "prompt.variables: missing variable `{var}` for prompt {:?} version {version:?}",
            prompt.name
        ))
    };
    let system = v.system.render(&r.variables).map_err(missing)?;
    let user = v.user.render(&r.variables).map_err(missing)?;
    let msg = |role: &str, text: String| ChatMessage {
        role: role.to_string(),
        content: Some(Content::Text(text)),
        tool_calls: Vec::new(),
        tool_call_id: None,
    };
    let mut messages = Vec::with_capacity(req.messages.len() + 2);
    if !system.is_empty() {
        messages.push(msg("system", system));
    }
    messages.push(msg("user", user));
    messages.append(&mut req.messages);
    req.messages = messages;
    let used = format!("{}@{version}", prompt.name);
    metrics::counter!(
        "switchyard_prompt_requests_total",
        "prompt" => prompt.name.clone(),
        "version" => version.to_string()
    )
    .increment(1);
    Ok(Some(used))
}

/// Marks a response with the template version used.
pub fn mark(resp: &mut Response, used: Option<&String>) {
    if let Some(u) = used {
        headers::set(resp.headers_mut(), headers::PROMPT, u);
    }
}

/// The chat-completions body for one call of prompt `name`.
pub(super) async fn chat_body(
    hub: &Hub,
    name: &str,
    headers: &HeaderMap,
    body: Body,
    frame: &mut Frame,
) -> Result<Vec<u8>, HubError> {
    let tenant = frame::authenticate(hub, &frame.table, headers).await?;
    frame.rec.set_tenant(&tenant.name);
    let body = frame::read_body(hub, headers, body).await?;
    let Some(prompt) = frame.table.prompts.get(name).cloned() else {
        return Err(HubError::NotFound);
    };
    let mut obj = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                return Err(HubError::BadRequest(
                    "the body must be a JSON object".into(),
                ));
            }
            Err(e) => {
                return Err(HubError::BadRequest(format!("invalid request body: {e}")));
            }
        }
    };
    if obj.contains_key("prompt") {
        return Err(HubError::BadRequest(
            "`prompt` is set by the path; send `variables` and `version`".into(),
        ));
    }
    let variables = obj.remove("variables").unwrap_or_else(|| json!({}));
    if !variables.is_object() {
        return Err(HubError::BadRequest("`variables` must be an object".into()));
    }
    let version = obj.remove("version");
    if !obj.contains_key("model") {
        match &prompt.model {
            Some(m) => {
                obj.insert("model".into(), Value::String(m.clone()));
            }
            None => {
                return Err(HubError::BadRequest(format!(
                    "`model` is required: prompt {name:?} names no default model"
                )));
            }
        }
    }
    obj.entry("messages").or_insert_with(|| json!([]));
    obj.insert(
        "prompt".into(),
        json!({"name": name, "version": version, "variables": variables}),
    );
    serde_json::to_vec(&Value::Object(obj)).map_err(|e| HubError::Internal(e.to_string()))
}
