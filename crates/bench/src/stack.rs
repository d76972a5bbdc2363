//! The system under test, as real processes: a `fake-upstream` (OpenAI-compatible, no artificial
//! delay), one `spoke` (provider `openai`, its one region pointing at the fake) and one `hub` in
//! front of it. All three are started from one binary directory (release builds for benchmarks).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use switchyard_testkit::process::{Proc, write_config};

/// The tenant's API key (the hub config holds only its SHA-256).
pub const API_KEY: &str = "sk-bench-key";
/// `printf %s sk-bench-key | sha256sum`
pub const API_KEY_SHA256: &str = "780c00844f279a58fce645ca8e6fc1e36611198b7ed0ccefdbfb401dec997b97";
/// The key of the second tenant, whose content policy is on (deny rules + PII redaction).
pub const POLICY_API_KEY: &str = "sk-bench-policy-key";
/// `printf %s sk-bench-policy-key | sha256sum`
pub const POLICY_API_KEY_SHA256: &str =
    "e0f24c1699700b18f3adca91fd7a4a0b611ed04e441f1af9d4ce2bdb583e3882";
/// The policy tenant's `[tenants.policy]`: five deny rules of the usual kind and PII redaction.
pub const POLICY_TOML: &str = r#"[tenants.policy]
deny = ['(?i)ignore (all )?previous instructions', '(?i)\bproject falcon\b', '(?i)disregard (the|your) (system|above) prompt', '(?i)you are now (dan|developer mode)', '(?i)\bbegin (rsa|openssh) private key\b']
pii = "redact"
"#;
/// The model id: the spoke's model, the fake's model and the hub alias all use it, so the direct
/// and the gateway request bodies are byte-for-byte the same.
pub const MODEL: &str = "bench-model";

/// The running fake, spoke and hub.
pub struct Stack {
    pub fake: Proc,
    pub spoke: Proc,
    pub hub: Proc,
    http: reqwest::Client,
    _configs: Vec<tempfile::TempPath>,
    /// The hub's audit log: written to a file, as in production, not to the stdout pipe this
    /// process reads (parsing every audit line would load the generator, not the gateway).
    _audit: tempfile::TempPath,
}

impl Stack {
    /// Starts fake → spoke → hub from `bin_dir` and waits until the hub has checked the spoke
    /// healthy.
    pub async fn start(bin_dir: &Path) -> anyhow::Result<Stack> {
        let bin = |name: &str| -> anyhow::Result<PathBuf> {
            let p = bin_dir.join(name);
            if !p.is_file() {
                bail!(
                    "{} not found — build with `cargo build --release --workspace --bins` first",
                    p.display()
                );
            }
            Ok(p)
        };
        let ready = Duration::from_secs(30);
        let fake = Proc::spawn_path(
            &bin("fake-upstream")?,
            "fake-upstream",
            &args(&[
                "--kind",
                "openai",
                "--listen",
                "127.0.0.1:0",
                "--label",
                "bench",
            ]),
            &[],
            ready,
        )
        .await?;
        let spoke_cfg = write_config(
            &format!(
                "listen = \"127.0.0.1:0\"\naccount = \"bench\"\nprovider = \"openai\"\n\
                 default_timeout = \"30s\"\ndrain_timeout = \"5s\"\n\
                 [[regions]]\nname = \"local\"\nendpoint = \"{}/v1\"\n\
                 [[models]]\nid = \"{MODEL}\"\nstreaming = true\ntools = true\n",
                fake.url()
            ),
            "toml",
        )?;
        let spoke = Proc::spawn_path(
            &bin("spoke")?,
            "spoke",
            &args(&["--config", &spoke_cfg.to_string_lossy()]),
            &[],
            ready,
        )
        .await?;
        let audit = tempfile::Builder::new()
            .prefix("switchyard-bench-audit")
            .suffix(".jsonl")
            .tempfile()?
            .into_temp_path();
        let hub_cfg = write_config(
            &format!(
                "listen = \"127.0.0.1:0\"\ndrain_timeout = \"5s\"\n[audit]\npath = \"{}\"\n\
                 [[tenants]]\nname = \"bench\"\napi_key_sha256 = [\"{API_KEY_SHA256}\"]\naliases = [\"*\"]\n\
                 [[tenants]]\nname = \"bench-policy\"\napi_key_sha256 = [\"{POLICY_API_KEY_SHA256}\"]\naliases = [\"*\"]\n{POLICY_TOML}\
                 [[aliases]]\nname = \"{MODEL}\"\ncandidates = [{{ provider = \"openai\", model = \"{MODEL}\" }}]\n\
                 [[providers]]\nname = \"openai\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"2s\" }}\n",
                audit.display(),
                spoke.addr()
            ),
            "toml",
        )?;
        let hub = Proc::spawn_path(
            &bin("hub")?,
            "hub",
            &args(&["--config", &hub_cfg.to_string_lossy()]),
            &[],
            ready,
        )
        .await?;
        hub.wait_for_log("spoke healthy", Duration::from_secs(20))
            .await
            .context("the hub never saw its spoke healthy")?;
        Ok(Stack {
            fake,
            spoke,
            hub,
            http: reqwest::Client::new(),
            _configs: vec![spoke_cfg, hub_cfg],
            _audit: audit,
        })
    }

    /// `POST /v1/chat/completions` on the fake.
    pub fn direct_url(&self) -> String {
        format!("{}/v1/chat/completions", self.fake.url())
    }

    /// `POST /v1/chat/completions` on the hub.
    pub fn hub_url(&self) -> String {
        format!("{}/v1/chat/completions", self.hub.url())
    }

    /// Sets the fake's pause before each stream content chunk.
    pub async fn set_chunk_delay(&self, ms: u64) -> anyhow::Result<()> {
        self.control("chunk_delay", serde_json::json!({ "ms": ms }))
            .await
    }

    /// Forgets the fake's recorded calls (it keeps the last 10,000 requests; trimming that list
    /// costs time per call, so every phase starts from an empty one).
    pub async fn reset_fake(&self) -> anyhow::Result<()> {
        self.control("reset", serde_json::json!({})).await
    }

    async fn control(&self, what: &str, body: serde_json::Value) -> anyhow::Result<()> {
        let r = self
            .http
            .post(format!("{}/_control/{what}", self.fake.url()))
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("fake /_control/{what}: {}", r.status());
        }
        Ok(())
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_string()).collect()
}

/// The chat request body used for every request, direct or through the gateway.
pub fn request_body(stream: bool) -> bytes::Bytes {
    let mut v = serde_json::json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
        "max_tokens": 64,
    });
    if stream {
        v["stream"] = serde_json::Value::Bool(true);
    }
    bytes::Bytes::from(v.to_string())
}

/// The body of the policy scenario, sent by both tenants: a system prompt, a four-turn
/// conversation (about 2 KB of text, one e-mail address that redaction replaces), a tool with a
/// parameter schema, a tool call and its result, and stop sequences — every field the policy
/// reads.
pub fn policy_request_body() -> bytes::Bytes {
    let para = "The quarterly report covers revenue, churn and the hiring plan for the next two \
                quarters; summarise the risks and the open questions for the leadership team. ";
    let v = serde_json::json!({
        "model": MODEL,
        "max_tokens": 64,
        "stop": ["END", "Human:"],
        "messages": [
            {"role": "system", "content": format!("You are a careful analyst. {para}")},
            {"role": "user", "content": format!("{}Send the summary to jane.doe@example.com.", para.repeat(4))},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "fetch_report", "arguments": "{\"quarter\": \"Q3\", \"sections\": [\"revenue\", \"churn\"]}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": para.repeat(3)},
            {"role": "user", "content": format!("Thanks. {}", para.repeat(2))},
        ],
        "tools": [{"type": "function", "function": {
            "name": "fetch_report",
            "description": "Fetches a section of the quarterly report by quarter and section name.",
            "parameters": {"type": "object", "properties": {
                "quarter": {"type": "string", "enum": ["Q1", "Q2", "Q3", "Q4"], "description": "The fiscal quarter."},
                "sections": {"type": "array", "items": {"type": "string"}, "description": "Section names to fetch."}
            }, "required": ["quarter"]}
        }}],
    });
    bytes::Bytes::from(v.to_string())
}
