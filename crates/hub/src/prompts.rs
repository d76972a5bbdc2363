//! Prompt templates: named, versioned system prompts and user templates with `{{variables}}`,
//! configured in `[[prompts]]`, used from a chat request's `prompt` field or through
//! `POST /v1/prompts/{name}` (variables only). A template may split traffic between two versions
//! (A/B); the version used is reported in `x-switchyard-prompt: NAME@VERSION` and in the
//! `switchyard_prompt_requests_total{prompt,version}` counter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config::Alias;
use crate::error::HubError;
use crate::hub::Hub;
use crate::openai::{ChatMessage, ChatRequest, Content};

/// Response header naming the template version a request used.
pub const PROMPT_HEADER: &str = "x-switchyard-prompt";

/// `[[prompts]]`: one named template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptConfig {
    pub name: String,
    /// Alias `POST /v1/prompts/{name}` uses when the body names no `model`.
    pub model: Option<String>,
    pub versions: Vec<PromptVersionConfig>,
    /// Version served when a request pins none and there is no split; default: the last listed.
    pub default_version: Option<String>,
    /// A/B split: version → percent of the unpinned requests (two versions, adding up to 100).
    #[serde(default)]
    pub split: BTreeMap<String, u32>,
}

/// `[[prompts.versions]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptVersionConfig {
    pub version: String,
    /// System prompt (may use `{{variables}}` too); empty = none.
    #[serde(default)]
    pub system: String,
    /// The user message template.
    pub user: String,
}

/// The `prompt` field of a chat request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptRef {
    pub name: String,
    /// Pin a version (no A/B split applies then).
    pub version: Option<String>,
    #[serde(default)]
    pub variables: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Var(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<Segment>);

impl Template {
    fn parse(text: &str) -> Result<Template, String> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                out.push(Segment::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err("`{{` without a closing `}}`".into());
            };
            let name = after[..close].trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            {
                return Err(format!(
                    "`{{{{{name}}}}}`: a variable name is letters, digits, `_`, `-` or `.`"
                ));
            }
            out.push(Segment::Var(name.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            out.push(Segment::Text(rest.to_string()));
        }
        Ok(Template(out))
    }

    fn variables(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|s| match s {
            Segment::Var(v) => Some(v.as_str()),
            Segment::Text(_) => None,
        })
    }

    /// Substitutes every variable; the first missing one is the error.
    fn render(&self, vars: &Map<String, Value>) -> Result<String, String> {
        let mut out = String::new();
        for s in &self.0 {
            match s {
                Segment::Text(t) => out.push_str(t),
                Segment::Var(v) => match vars.get(v) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(Value::Null) | None => return Err(v.clone()),
                    Some(other) => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone)]
struct Version {
    system: Template,
    user: Template,
}

/// A validated prompt template.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub name: String,
    pub model: Option<String>,
    versions: BTreeMap<String, Version>,
    default: String,
    /// (version, percent), adding up to 100; empty = always `default`.
    split: Vec<(String, u32)>,
}

impl Prompt {
    /// The version for a request: the pinned one, else by the A/B split (`roll` in 0..100), else
    /// the default.
    fn choose(&self, pinned: Option<&str>, roll: u32) -> Result<(&str, &Version), HubError> {
        let name = match pinned {
            Some(v) => v,
            None => {
                let mut acc = 0;
                let mut chosen = self.default.as_str();
                for (v, pct) in &self.split {
                    acc += pct;
                    if roll < acc {
                        chosen = v;
                        break;
                    }
                }
                chosen
            }
        };
        self.versions
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| {
                HubError::BadRequest(format!(
                    "prompt.version: prompt {:?} has no version {name:?}",
                    self.name
                ))
            })
    }
}

/// Validates `[[prompts]]`, pushing every problem with its path.
pub fn validate(
    list: &[PromptConfig],
    aliases: &BTreeMap<String, Alias>,
    errs: &mut Vec<String>,
) -> BTreeMap<String, Prompt> {
    let mut out = BTreeMap::new();
    for (i, p) in list.iter().enumerate() {
        let base = format!("prompts[{i}]");
        if p.name.is_empty() || p.name.contains('/') {
            errs.push(format!("{base}.name: must be non-empty and without `/`"));
        }
        if out.contains_key(&p.name) {
            errs.push(format!("{base}.name: duplicate prompt {:?}", p.name));
        }
        if let Some(m) = &p.model
            && !aliases.contains_key(m)
        {
            errs.push(format!("{base}.model: unknown alias {m:?}"));
        }
        if p.versions.is_empty() {
            errs.push(format!("{base}.versions: needs at least one version"));
        }
        let mut versions = BTreeMap::new();
        for (j, v) in p.versions.iter().enumerate() {
            let vbase = format!("{base}.versions[{j}]");
            if v.version.is_empty() {
                errs.push(format!("{vbase}.version: must not be empty"));
            }
            if versions.contains_key(&v.version) {
                errs.push(format!(
                    "{vbase}.version: duplicate version {:?}",
                    v.version
                ));
            }
            let mut parse = |field: &str, text: &str| {
                Template::parse(text).unwrap_or_else(|e| {
                    errs.push(format!("{vbase}.{field}: {e}"));
                    Template(Vec::new())
                })
            };
            let system = parse("system", &v.system);
            let user = parse("user", &v.user);
            if v.user.trim().is_empty() {
                errs.push(format!("{vbase}.user: must not be empty"));
            }
            versions.insert(v.version.clone(), Version { system, user });
        }
        let default = match &p.default_version {
            Some(d) => {
                if !versions.contains_key(d) {
                    errs.push(format!("{base}.default_version: unknown version {d:?}"));
                }
                d.clone()
            }
            None => p
                .versions
                .last()
                .map(|v| v.version.clone())
                .unwrap_or_default(),
        };
        let mut split = Vec::new();
        if !p.split.is_empty() {
            if p.split.len() != 2 {
                errs.push(format!(
                    "{base}.split: an A/B split names exactly two versions"
                ));
            }
            let total: u32 = p.split.values().sum();
            if total != 100 {
                errs.push(format!("{base}.split: percents add up to {total}, not 100"));
            }
            for (v, pct) in &p.split {
                if !versions.contains_key(v) {
                    errs.push(format!("{base}.split.{v}: unknown version"));
                }
                split.push((v.clone(), *pct));
            }
        }
        out.insert(
            p.name.clone(),
            Prompt {
                name: p.name.clone(),
                model: p.model.clone(),
                versions,
                default,
                split,
            },
        );
    }
    out
}

/// Replaces a chat request's `prompt` reference with the rendered messages: the template's system
/// prompt, its user message, then any `messages` the request carries. Returns `NAME@VERSION`.
pub fn expand(hub: &Hub, req: &mut ChatRequest) -> Result<Option<String>, HubError> {
    let Some(r) = req.prompt.take() else {
        return Ok(None);
    };
    let table = hub.table.load();
    let prompt = table.prompts.get(&r.name).ok_or_else(|| {
        HubError::BadRequest(format!("prompt.name: no prompt named {:?}", r.name))
    })?;
    let (version, v) = prompt.choose(r.version.as_deref(), rand::random_range(0..100))?;
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
    if let Some(v) = used.and_then(|u| HeaderValue::from_str(u).ok()) {
        resp.headers_mut().insert(PROMPT_HEADER, v);
    }
}

/// `POST /v1/prompts/{name}`.
pub fn routes() -> Router<Arc<Hub>> {
    Router::new().route("/v1/prompts/{name}", post(prompt_handler))
}

/// Body: `{"variables": {...}}`, optionally `version`, `model` (default: the prompt's `model`),
/// `stream`, and any chat-completions parameter (`temperature`, `max_tokens`, …). Answered
/// exactly like `POST /v1/chat/completions`, and recorded like it (surface `openai`) — its own
/// refusals (bad key, unknown prompt, bad body) included.
async fn prompt_handler(
    State(hub): State<Arc<Hub>>,
    Path(name): Path<String>,
    mut headers: HeaderMap,
    body: Bytes,
) -> Response {
    use crate::observe::{RequestRecord, Surface};
    let started = std::time::Instant::now();
    let request_id = crate::gateway::request_id(&headers);
    let span = crate::observe::request_span(&headers, &request_id, Surface::OpenAi.operation());
    let mut rec = RequestRecord::start(
        hub.audit.clone(),
        &request_id,
        span.clone(),
        Surface::OpenAi,
    );
    let building = chat_body(&hub, &name, &headers, &body, &mut rec);
    match tracing::Instrument::instrument(building, span).await {
        Ok(bytes) => {
            headers.remove(http::header::CONTENT_LENGTH);
            crate::api::chat_completions_observed(
                hub,
                headers,
                Body::from(bytes),
                started,
                &request_id,
                rec,
            )
            .await
        }
        Err(e) => rec.finish(Err(e), &request_id, IntoResponse::into_response),
    }
}

/// The chat-completions body for one call of prompt `name`.
async fn chat_body(
    hub: &Hub,
    name: &str,
    headers: &HeaderMap,
    body: &Bytes,
    rec: &mut crate::observe::RequestRecord,
) -> Result<Vec<u8>, HubError> {
    let tenant = crate::api::authenticate(hub, headers).await?;
    rec.set_tenant(&tenant.name);
    let Some(prompt) = hub.table.load().prompts.get(name).cloned() else {
        return Err(HubError::NotFound);
    };
    let mut obj = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
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

/// Variables a version uses (for docs and tests).
pub fn variables_of(p: &Prompt, version: &str) -> BTreeSet<String> {
    p.versions
        .get(version)
        .map(|v| {
            v.system
                .variables()
                .chain(v.user.variables())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn renders_and_reports_missing_variables() {
        let t = Template::parse("Summarise {{ doc }} in {{n}} words, {{doc}}!").unwrap();
        assert_eq!(
            t.render(&vars(json!({"doc": "X", "n": 5}))).unwrap(),
            "Summarise X in 5 words, X!"
        );
        assert_eq!(t.render(&vars(json!({"doc": "X"}))).unwrap_err(), "n");
        assert!(Template::parse("a {{ b").is_err());
        assert!(Template::parse("a {{ b c }}").is_err());
        assert_eq!(
            Template::parse("plain")
                .unwrap()
                .render(&Map::new())
                .unwrap(),
            "plain"
        );
    }

    #[test]
    fn split_pins_and_validation() {
        let cfg: PromptConfig = toml::from_str(
            r#"
name = "p"
split = { "1" = 30, "2" = 70 }
versions = [{ version = "1", user = "a {{x}}" }, { version = "2", system = "s {{y}}", user = "b" }]
"#,
        )
        .unwrap();
        let mut errs = Vec::new();
        let map = validate(std::slice::from_ref(&cfg), &BTreeMap::new(), &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        let p = &map["p"];
        assert_eq!(p.choose(None, 0).unwrap().0, "1");
        assert_eq!(p.choose(None, 29).unwrap().0, "1");
        assert_eq!(p.choose(None, 30).unwrap().0, "2");
        assert_eq!(p.choose(Some("1"), 99).unwrap().0, "1");
        assert!(p.choose(Some("9"), 0).is_err());
        assert_eq!(
            variables_of(p, "2").into_iter().collect::<Vec<_>>(),
            vec!["y".to_string()]
        );

        let mut bad = cfg;
        bad.split = BTreeMap::from([("1".into(), 50), ("3".into(), 40)]);
        bad.model = Some("ghost".into());
        bad.versions[1].user = "{{ broken".into();
        let mut errs = Vec::new();
        validate(&[bad], &BTreeMap::new(), &mut errs);
        let joined = errs.join("\n");
        for needle in [
            "prompts[0].model",
            "prompts[0].split: percents add up to 90",
            "prompts[0].split.3",
            "prompts[0].versions[1].user",
        ] {
            assert!(joined.contains(needle), "missing {needle} in {joined}");
        }
    }
}
