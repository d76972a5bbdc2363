//! The machinery shared by the fakes: rules, call counting, request recording, the control
//! endpoint, deterministic completion text, and a server that can be stopped (severing open
//! connections) and restarted on the same port.
//!
//! [`crate::bedrock::FakeBedrock`] and [`crate::openai::FakeOpenAi`] deref to [`FakeServer`], so
//! every method here is available on both.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::behavior::{Action, Behavior, directive_for_model};

mod net;
use net::{Running, spawn_server};

/// Requests kept by [`FakeServer::requests`] (the oldest are dropped beyond this).
const MAX_RECORDED: usize = 10_000;

/// One call received by a fake (completion endpoints only, not the control endpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The request path as received (still percent-encoded), e.g.
    /// `/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse`.
    pub path: String,
    /// The model id (percent-decoded; for OpenAI the body's `model`, `""` when absent).
    pub model: String,
    /// All request headers, names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`null` when it was not valid JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The deterministic completion text of a fake: `Hello from {label} ({model}): {first 8 words of
/// the last user message}` (words joined by single spaces, no trailing space when the message is
/// empty). Streams send it word by word: every chunk but the last ends with a space.
pub fn completion_text(label: &str, model: &str, last_user_message: &str) -> String {
    let echo: Vec<&str> = last_user_message.split_whitespace().take(8).collect();
    let text = format!("Hello from {label} ({model}): {}", echo.join(" "));
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The fakes' deterministic embedding of `text`: `dims` values in [-1, 1) derived from the text's
/// bytes (FNV-1a, then a xorshift per component), so tests can compute the expected vector.
pub fn fake_embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..dims)
        .map(|_| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            // Multiples of 1/1024: exact in f32 and in JSON.
            ((h % 2048) as f32 - 1024.0) / 1024.0
        })
        .collect()
}

/// The fakes' deterministic JSON value for a JSON Schema (what they answer to a structured-output
/// request): `const` → itself, `enum` → its first value, `anyOf`/`oneOf` → the first, `$ref` →
/// the local definition, object → every declared property, array → `minItems` items (at least
/// one, at most 8), string → `"…"`, integer and number → 0 (or `minimum`), boolean → `true`,
/// null → `null`; nesting below 16 levels is `null`.
pub fn schema_sample(schema: &Value) -> Value {
    fn go(root: &Value, s: &Value, depth: usize) -> Value {
        if depth > 16 {
            return Value::Null;
        }
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let target = r.strip_prefix('#').and_then(|p| {
                if p.is_empty() {
                    Some(root)
                } else {
                    root.pointer(p)
                }
            });
            return target.map_or(json!({}), |t| go(root, t, depth + 1));
        }
        if let Some(c) = s.get("const") {
            return c.clone();
        }
        if let Some(e) = s
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            return e.clone();
        }
        for k in ["anyOf", "oneOf"] {
            if let Some(first) = s.get(k).and_then(Value::as_array).and_then(|a| a.first()) {
                return go(root, first, depth + 1);
            }
        }
        let ty = match s.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null"),
            _ if s.get("properties").is_some() => "object",
            _ => "",
        };
        match ty {
            "object" => Value::Object(
                s.get("properties")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), go(root, v, depth + 1)))
                    .collect(),
            ),
            "array" => {
                let n = s
                    .get("minItems")
                    .and_then(Value::as_u64)
                    .unwrap_or(1)
                    .clamp(1, 8);
                let item = s.get("items").cloned().unwrap_or(json!({}));
                Value::Array((0..n).map(|_| go(root, &item, depth + 1)).collect())
            }
            "string" => json!("…"),
            "integer" => json!(s.get("minimum").and_then(Value::as_i64).unwrap_or(0).max(0)),
            "number" => json!(
                s.get("minimum")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
                    .max(0.0)
            ),
            "boolean" => json!(true),
            "null" => Value::Null,
            _ => json!({}),
        }
    }
    go(schema, schema, 0)
}

/// The fakes' thinking text for a request whose last user message is `last_user`.
pub fn thinking_text(last_user: &str) -> String {
    let echo: Vec<&str> = last_user.split_whitespace().take(8).collect();
    format!("Let me think about: {}", echo.join(" "))
}

/// The fakes' signature over a thinking text (what a real API signs; the fakes check only
/// that history blocks carry one).
pub fn thinking_signature(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("sig-{h:016x}")
}

/// Whitespace word count, the fakes' token count.
pub fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The fakes' answer to a token count (Anthropic `count_tokens`, Bedrock `CountTokens`): the
/// whitespace words of every text in `system` and `messages` (strings and `text` fields), plus
/// [`TOOL_COUNT_TOKENS`] per tool definition in `tools`. Deterministic, and unlike the hub's
/// four-characters-a-token estimate, so tests can tell who counted.
pub fn count_tokens(system: &Value, messages: &Value, tools: &Value) -> u64 {
    let mut text = String::new();
    for v in [system, messages] {
        collect_strings(v, &mut text);
    }
    let tools = tools.as_array().map_or(0, Vec::len) as u64;
    (word_count(&text) + TOOL_COUNT_TOKENS * tools).max(1)
}

/// What each tool definition adds to a fake's token count.
pub const TOOL_COUNT_TOKENS: u64 = 10;

/// Every string that is a value of `text` or an item / value of a plain string content.
fn collect_strings(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                if matches!(k.as_str(), "text" | "content") {
                    collect_strings(v, out);
                }
            }
        }
        _ => {}
    }
}

/// The generated answer of one call.
#[derive(Clone, Debug)]
pub(crate) struct Completion {
    pub text: String,
    /// Stream chunks (concatenated = `text`).
    pub chunks: Vec<String>,
    pub truncated: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Bedrock only: a guardrail blocked the answer (`stopReason: guardrail_intervened`).
    pub guardrail_intervened: bool,
}

impl Completion {
    /// `input_text` is all the input text (system + messages), `max_tokens` the request's limit.
    pub fn new(
        label: &str,
        model: &str,
        last_user: &str,
        input_text: &str,
        max_tokens: Option<u64>,
    ) -> Completion {
        let full = completion_text(label, model, last_user);
        let mut words: Vec<&str> = full.split_whitespace().collect();
        let mut truncated = false;
        if let Some(max) = max_tokens {
            let max = usize::try_from(max.max(1)).unwrap_or(usize::MAX);
            if words.len() > max {
                words.truncate(max);
                truncated = true;
            }
        }
        let n = words.len();
        let chunks: Vec<String> = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i + 1 < n {
                    format!("{w} ")
                } else {
                    (*w).to_string()
                }
            })
            .collect();
        Completion {
            text: words.join(" "),
            chunks,
            truncated,
            input_tokens: word_count(input_text).max(1),
            output_tokens: n as u64,
            guardrail_intervened: false,
        }
    }
}

/// The fakes' tool-use rule: when a request offers tools and its last message is a user turn
/// (not tool results), the model calls the first tool with `{"query": <the last user text,
/// trimmed>}`. Answering tool results gets text again: the fake echoes the last tool result as
/// if it were the user's message ([`completion_text`]). A call the request forces (`tool_choice`
/// any / required / a named tool) is made whatever the last message, with arguments valid for
/// the tool's schema ([`ToolUse::forced`]); `tool_choice` none never calls.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolUse {
    /// `toolu_…` / `tooluse_…` / `call_…` plus the fake's request id.
    pub id: String,
    pub name: String,
    /// The JSON arguments, as text.
    pub arguments: String,
}

impl ToolUse {
    pub fn new(prefix: &str, request_id: &str, name: &str, last_user: &str) -> ToolUse {
        ToolUse {
            id: format!("{prefix}{request_id}"),
            name: name.to_string(),
            arguments: json!({ "query": last_user.trim() }).to_string(),
        }
    }

    /// A call the request forced (`tool_choice` any / a named tool): arguments valid for the
    /// tool's `schema` ([`schema_sample`]), with `query` set to the last user text when the schema
    /// declares it or declares no properties.
    pub fn forced(
        prefix: &str,
        request_id: &str,
        name: &str,
        last_user: &str,
        schema: &Value,
    ) -> ToolUse {
        let mut args = match schema_sample(schema) {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        let props = schema.get("properties").and_then(Value::as_object);
        if props.is_none_or(|p| p.is_empty() || p.contains_key("query")) {
            args.insert("query".into(), json!(last_user.trim()));
        }
        ToolUse {
            id: format!("{prefix}{request_id}"),
            name: name.to_string(),
            arguments: Value::Object(args).to_string(),
        }
    }

    /// The arguments in two streamed pieces (split inside the JSON, like real models do).
    pub fn pieces(&self) -> Vec<String> {
        let mid = self
            .arguments
            .char_indices()
            .map(|(i, _)| i)
            .find(|i| *i >= self.arguments.len() / 2)
            .unwrap_or(0);
        vec![
            self.arguments[..mid].to_string(),
            self.arguments[mid..].to_string(),
        ]
    }

    /// The arguments as JSON.
    pub fn input(&self) -> Value {
        serde_json::from_str(&self.arguments).unwrap_or(Value::Null)
    }
}

/// Which wire protocol a fake speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Bedrock,
    OpenAi,
    Anthropic,
}

#[derive(Debug)]
struct Inner {
    label: String,
    rules: HashMap<String, Behavior>,
    default: Option<Behavior>,
    chunk_delay: Duration,
    calls: BTreeMap<String, u64>,
    total: u64,
    /// `FailFirst` progress per model.
    flaky: HashMap<String, u32>,
    /// The last [`MAX_RECORDED`] requests, oldest first (a ring: dropping the oldest is O(1)).
    requests: std::collections::VecDeque<RecordedRequest>,
    /// Prompt-cache prefixes seen (hashes), for cache read / write usage.
    cached: std::collections::HashSet<u64>,
}

/// State shared by the handlers of one fake.
#[derive(Debug)]
pub(crate) struct Shared {
    pub kind: Kind,
    inner: Mutex<Inner>,
    next_id: AtomicU64,
}

/// What a handler needs to answer one call, decided when the call arrives.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub action: Action,
    pub label: String,
    pub chunk_delay: Duration,
    /// A unique id for the response (`x-amzn-requestid`, `chatcmpl-…`).
    pub request_id: String,
}

impl Shared {
    fn new(kind: Kind) -> Shared {
        Shared {
            kind,
            inner: Mutex::new(Inner {
                label: "fake".to_string(),
                rules: HashMap::new(),
                default: None,
                chunk_delay: Duration::ZERO,
                calls: BTreeMap::new(),
                total: 0,
                flaky: HashMap::new(),
                requests: std::collections::VecDeque::new(),
                cached: std::collections::HashSet::new(),
            }),
            next_id: AtomicU64::new(1),
        }
    }

    /// Counts and records a call, and decides what to do with it.
    pub fn begin_call(&self, path: String, model: &str, headers: &HeaderMap, body: Value) -> Plan {
        let headers = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.inner.lock();
        inner.total += 1;
        *inner.calls.entry(model.to_string()).or_insert(0) += 1;
        if inner.requests.len() >= MAX_RECORDED {
            inner.requests.pop_front();
        }
        inner.requests.push_back(RecordedRequest {
            path,
            model: model.to_string(),
            headers,
            body,
        });
        let behavior = inner
            .rules
            .get(model)
            .or(inner.default.as_ref())
            .cloned()
            .or_else(|| directive_for_model(model))
            .unwrap_or(Behavior::Ok);
        let action = match behavior {
            Behavior::Ok => Action::Ok,
            Behavior::Error { error } => Action::Fail {
                kind: error,
                retry_after: None,
            },
            Behavior::ThrottleRetryAfter { secs } => Action::Fail {
                kind: crate::behavior::ErrorKind::Throttling,
                retry_after: Some(secs),
            },
            Behavior::Slow { ms } => Action::Slow(Duration::from_millis(ms)),
            Behavior::FailFirst { n, error } => {
                let seen = inner.flaky.entry(model.to_string()).or_insert(0);
                *seen = seen.saturating_add(1);
                if *seen <= n {
                    Action::Fail {
                        kind: error,
                        retry_after: None,
                    }
                } else {
                    Action::Ok
                }
            }
            Behavior::StreamFailAfter { chunks } => Action::StreamFailAfter(chunks),
            Behavior::Hang => Action::Hang,
            Behavior::AccountFault { fault } => Action::AccountFault(fault),
            Behavior::EchoAuth => Action::EchoAuth,
        };
        Plan {
            action,
            label: inner.label.clone(),
            chunk_delay: inner.chunk_delay,
            request_id: format!("fake-{id:08}"),
        }
    }

    fn set_behavior(&self, model: Option<&str>, behavior: Behavior) {
        let mut inner = self.inner.lock();
        match model {
            Some(model) => {
                inner.flaky.remove(model);
                inner.rules.insert(model.to_string(), behavior);
            }
            None => {
                inner.flaky.clear();
                inner.default = Some(behavior);
            }
        }
    }

    fn reset_calls(&self) {
        let mut inner = self.inner.lock();
        inner.calls.clear();
        inner.total = 0;
        inner.flaky.clear();
        inner.requests.clear();
        inner.cached.clear();
    }

    fn clear_behaviors(&self) {
        let mut inner = self.inner.lock();
        inner.rules.clear();
        inner.default = None;
        inner.flaky.clear();
    }

    fn calls_json(&self) -> Value {
        let inner = self.inner.lock();
        json!({ "total": inner.total, "by_model": inner.calls })
    }

    /// The prompt-cache usage of a request whose cached prefix (everything up to its last cache
    /// breakpoint) is `key` and holds `tokens` tokens: `(read, written)` — written the first
    /// time a prefix is seen, read after that; `(0, 0)` for an empty prefix.
    pub fn cache_usage(&self, key: &str, tokens: u64) -> (u64, u64) {
        if key.is_empty() || tokens == 0 {
            return (0, 0);
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        if self.inner.lock().cached.insert(h) {
            (0, tokens)
        } else {
            (tokens, 0)
        }
    }

    /// Models seen in calls or named by a rule, sorted.
    pub fn known_models(&self) -> Vec<String> {
        let inner = self.inner.lock();
        let mut models: Vec<String> = inner
            .calls
            .keys()
            .chain(inner.rules.keys())
            .filter(|m| !m.is_empty())
            .cloned()
            .collect();
        models.sort();
        models.dedup();
        models
    }
}

/// Body of `POST /_control/behavior`.
#[derive(Debug, Deserialize)]
struct BehaviorBody {
    #[serde(default)]
    model: Option<String>,
    behavior: Behavior,
}

#[derive(Debug, Deserialize)]
struct LabelBody {
    label: String,
}

#[derive(Debug, Deserialize)]
struct ChunkDelayBody {
    ms: u64,
}

/// `/_control/*` routes, shared by both fakes.
pub(crate) fn control_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/_control/behavior",
            post(
                |State(st): State<Arc<Shared>>, Json(b): Json<BehaviorBody>| async move {
                    st.set_behavior(b.model.as_deref(), b.behavior);
                    Json(json!({"ok": true}))
                },
            )
            .delete(|State(st): State<Arc<Shared>>| async move {
                st.clear_behaviors();
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/_control/calls",
            get(|State(st): State<Arc<Shared>>| async move { Json(st.calls_json()) }),
        )
        .route(
            "/_control/requests",
            get(|State(st): State<Arc<Shared>>| async move {
                Json(st.inner.lock().requests.clone())
            }),
        )
        .route(
            "/_control/reset",
            post(|State(st): State<Arc<Shared>>| async move {
                st.reset_calls();
                st.clear_behaviors();
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/_control/label",
            post(
                |State(st): State<Arc<Shared>>, Json(b): Json<LabelBody>| async move {
                    st.inner.lock().label = b.label;
                    Json(json!({"ok": true}))
                },
            ),
        )
        .route(
            "/_control/chunk_delay",
            post(
                |State(st): State<Arc<Shared>>, Json(b): Json<ChunkDelayBody>| async move {
                    st.inner.lock().chunk_delay = Duration::from_millis(b.ms);
                    Json(json!({"ok": true}))
                },
            ),
        )
}

/// Fallback for unknown routes: a 404 naming the path, so misconfigured endpoints are obvious.
pub(crate) async fn not_found(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"message": format!("fake upstream: no route for {}", uri.path())})),
    )
        .into_response()
}

/// A running fake: the shared API of [`crate::bedrock::FakeBedrock`] and
/// [`crate::openai::FakeOpenAi`]. Stops (severing its connections) when dropped.
#[derive(Debug)]
pub struct FakeServer {
    shared: Arc<Shared>,
    app: Router,
    addr: SocketAddr,
    running: Mutex<Option<Running>>,
}

impl FakeServer {
    pub(crate) async fn start(
        kind: Kind,
        listen: SocketAddr,
        routes: Router<Arc<Shared>>,
    ) -> anyhow::Result<FakeServer> {
        let shared = Arc::new(Shared::new(kind));
        let app = routes
            .merge(control_routes())
            .fallback(not_found)
            .with_state(shared.clone());
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding fake upstream to {listen}"))?;
        let addr = listener.local_addr()?;
        let running = spawn_server(listener, app.clone());
        Ok(FakeServer {
            shared,
            app,
            addr,
            running: Mutex::new(Some(running)),
        })
    }

    /// The address the fake listens on (kept across [`FakeServer::restart`]).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no path).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The label included in every completion text (default `"fake"`).
    pub fn label(&self) -> String {
        self.shared.inner.lock().label.clone()
    }

    /// Sets the label included in every completion text, e.g. the region name.
    pub fn set_label(&self, label: &str) {
        self.shared.inner.lock().label = label.to_string();
    }

    /// Sets the behavior for one model id (as the fake sees it: percent-decoded upstream id).
    /// Restarts that model's `FailFirst` count.
    pub fn set_behavior(&self, model: &str, behavior: Behavior) {
        self.shared.set_behavior(Some(model), behavior);
    }

    /// Removes the rule of one model.
    pub fn clear_behavior(&self, model: &str) {
        let mut inner = self.shared.inner.lock();
        inner.rules.remove(model);
        inner.flaky.remove(model);
    }

    /// Sets the behavior of models without their own rule (this overrides model-name
    /// directives). Restarts all `FailFirst` counts.
    pub fn set_default(&self, behavior: Behavior) {
        self.shared.set_behavior(None, behavior);
    }

    /// Removes every rule and the default (back to directives / `Ok`).
    pub fn clear_behaviors(&self) {
        self.shared.clear_behaviors();
    }

    /// Pause before every content chunk of a stream (default 0).
    pub fn set_chunk_delay(&self, delay: Duration) {
        self.shared.inner.lock().chunk_delay = delay;
    }

    /// Calls received for `model` (completion endpoints, successful or not).
    pub fn calls(&self, model: &str) -> u64 {
        self.shared
            .inner
            .lock()
            .calls
            .get(model)
            .copied()
            .unwrap_or(0)
    }

    /// Calls received for all models.
    pub fn total_calls(&self) -> u64 {
        self.shared.inner.lock().total
    }

    /// Calls per model.
    pub fn calls_by_model(&self) -> BTreeMap<String, u64> {
        self.shared.inner.lock().calls.clone()
    }

    /// Zeroes the call counters, forgets recorded requests and restarts `FailFirst` counts.
    /// Rules stay.
    pub fn reset_calls(&self) {
        self.shared.reset_calls();
    }

    /// [`FakeServer::reset_calls`] plus [`FakeServer::clear_behaviors`] (the label and chunk delay
    /// stay). The same as `POST /_control/reset`.
    pub fn reset(&self) {
        self.shared.reset_calls();
        self.shared.clear_behaviors();
    }

    /// Every call received since the start or the last reset, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.inner.lock().requests.iter().cloned().collect()
    }

    /// The most recent call.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.inner.lock().requests.back().cloned()
    }

    /// Stops the server like a crashed upstream: new connections are refused and open ones
    /// (including streams and hanging calls) are cut. State (rules, counters) is kept.
    pub fn stop(&self) {
        if let Some(running) = self.running.lock().take() {
            running.stop();
        }
    }

    /// True unless stopped.
    pub fn is_running(&self) -> bool {
        self.running.lock().is_some()
    }

    /// Starts serving again on the same address after [`FakeServer::stop`] (no-op if running).
    pub async fn restart(&self) -> anyhow::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr)
            .await
            .with_context(|| format!("re-binding fake upstream to {}", self.addr))?;
        let running = spawn_server(listener, self.app.clone());
        if let Some(old) = self.running.lock().replace(running) {
            old.stop();
        }
        Ok(())
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Collects every string under a `"text"` key in `value` (recursively), space-separated.
pub(crate) fn collect_text(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("text", Value::String(s)) => {
                        out.push_str(s);
                        out.push(' ');
                    }
                    _ => collect_text(v, out),
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                collect_text(v, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_shapes() {
        let c = Completion::new(
            "us-east-1",
            "m",
            "one two three four five six seven eight nine",
            "sys one two three four five six seven eight nine",
            None,
        );
        assert_eq!(
            c.text,
            "Hello from us-east-1 (m): one two three four five six seven eight"
        );
        assert_eq!(c.chunks.concat(), c.text);
        assert_eq!(c.output_tokens, 12);
        assert_eq!(c.input_tokens, 10);
        assert!(!c.truncated);

        let c = Completion::new("l", "m", "", "", Some(2));
        assert_eq!(c.text, "Hello from");
        assert!(c.truncated);
        assert_eq!(c.input_tokens, 1);
        assert_eq!(c.chunks, vec!["Hello ".to_string(), "from".to_string()]);

        assert_eq!(completion_text("l", "m", "  "), "Hello from l (m):");
    }
}
