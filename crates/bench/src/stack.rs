//! The system under test, as real processes: a `fake-upstream` (OpenAI-compatible, no artificial
//! delay), one `spoke` (provider `openai`, its one region pointing at the fake) and one `hub` in
//! front of it, all three started from one binary directory (release builds for benchmarks) —
//! and the floor relay's two processes (`floor-relay back` → the same fake, `floor-relay front`
//! → back), the gateway's hops with none of its logic (see [`crate::floor`]).

use std::net::SocketAddr;
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

/// The running fake, spoke and hub, and the floor relay's two processes beside them.
pub struct Stack {
    pub fake: Proc,
    pub spoke: Proc,
    pub hub: Proc,
    /// `floor-relay back` (gRPC `Infer` → the same fake).
    pub floor_back: Proc,
    /// `floor-relay front` (HTTP/1.1 → `floor_back`).
    pub floor_front: Proc,
    http: reqwest::Client,
    _configs: Vec<tempfile::TempPath>,
    /// The hub's audit log: written to a file, as in production, not to the stdout pipe this
    /// process reads (parsing every audit line would load the generator, not the gateway).
    _audit: tempfile::TempPath,
}

/// `bin_dir/name`, or an error saying how to build it.
pub fn binary(bin_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let p = bin_dir.join(name);
    if !p.is_file() {
        bail!(
            "{} not found — build with `cargo build --release --workspace --bins` first",
            p.display()
        );
    }
    Ok(p)
}

/// The `floor-relay` binary: the one next to the running `switchyard-bench` (both are built from
/// this crate, so they come from the same build even when `--bin-dir` points at another one),
/// else the one in `bin_dir`.
pub fn floor_binary(bin_dir: &Path) -> anyhow::Result<PathBuf> {
    let name = format!("floor-relay{}", std::env::consts::EXE_SUFFIX);
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
        && dir.join(&name).is_file()
    {
        return Ok(dir.join(&name));
    }
    binary(bin_dir, &name)
        .context("floor-relay (build it with `cargo build --release -p switchyard-bench --bins`)")
}

/// The readiness timeout of a natively started process.
pub const READY: Duration = Duration::from_secs(30);

/// Starts `fake-upstream --kind openai` from `bin_dir` (no artificial delay).
pub async fn start_fake(bin_dir: &Path) -> anyhow::Result<Proc> {
    Proc::spawn_path(
        &binary(bin_dir, "fake-upstream")?,
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
        READY,
    )
    .await
}

/// The spoke's config: provider `openai`, one region whose endpoint is the fake at `fake_url`
/// (`http://ADDR`), one model [`MODEL`].
pub fn spoke_config(fake_url: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\naccount = \"bench\"\nprovider = \"openai\"\n\
         default_timeout = \"30s\"\ndrain_timeout = \"5s\"\n\
         [[regions]]\nname = \"local\"\nendpoint = \"{fake_url}/v1\"\n\
         [[models]]\nid = \"{MODEL}\"\nstreaming = true\ntools = true\n"
    )
}

/// The hub's config: the two tenants (without and with a content policy), the alias [`MODEL`]
/// and one provider with the static spoke `spoke_addr`; the audit log goes to `audit`. `health`
/// is the provider's `health` inline table (e.g. `{ interval = "2s" }`).
pub fn hub_config(spoke_addr: SocketAddr, audit: &Path, health: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\ndrain_timeout = \"5s\"\n[audit]\npath = \"{}\"\n\
         [[tenants]]\nname = \"bench\"\napi_key_sha256 = [\"{API_KEY_SHA256}\"]\naliases = [\"*\"]\n\
         [[tenants]]\nname = \"bench-policy\"\napi_key_sha256 = [\"{POLICY_API_KEY_SHA256}\"]\naliases = [\"*\"]\n{POLICY_TOML}\
         [[aliases]]\nname = \"{MODEL}\"\ncandidates = [{{ provider = \"openai\", model = \"{MODEL}\" }}]\n\
         [[providers]]\nname = \"openai\"\nspokes = [{{ addr = \"{spoke_addr}\" }}]\nhealth = {health}\n",
        audit.display(),
    )
}

/// A fresh file for the hub's audit log (deleted when dropped).
pub fn audit_file() -> anyhow::Result<tempfile::TempPath> {
    Ok(tempfile::Builder::new()
        .prefix("switchyard-bench-audit")
        .suffix(".jsonl")
        .tempfile()?
        .into_temp_path())
}

impl Stack {
    /// Starts fake → spoke → hub from `bin_dir`, then the floor relay (`floor_bin` back → the
    /// same fake, front → back), and waits until the hub has checked the spoke healthy.
    /// `gateway_envs` go to the spoke, the hub and both floor processes (e.g.
    /// `TOKIO_WORKER_THREADS`), not to the fake.
    pub async fn start(
        bin_dir: &Path,
        floor_bin: &Path,
        gateway_envs: &[(String, String)],
    ) -> anyhow::Result<Stack> {
        let fake = start_fake(bin_dir).await?;
        let spoke_cfg = write_config(&spoke_config(&fake.url()), "toml")?;
        let spoke = Proc::spawn_path(
            &binary(bin_dir, "spoke")?,
            "spoke",
            &args(&["--config", &spoke_cfg.to_string_lossy()]),
            gateway_envs,
            READY,
        )
        .await?;
        let audit = audit_file()?;
        let hub_cfg = write_config(
            &hub_config(spoke.addr(), &audit, "{ interval = \"2s\" }"),
            "toml",
        )?;
        let hub = Proc::spawn_path(
            &binary(bin_dir, "hub")?,
            "hub",
            &args(&["--config", &hub_cfg.to_string_lossy()]),
            gateway_envs,
            READY,
        )
        .await?;
        let (floor_back, floor_front) =
            start_floor(floor_bin, &fake.url(), None, gateway_envs).await?;
        hub.wait_for_log("spoke healthy", Duration::from_secs(20))
            .await
            .context("the hub never saw its spoke healthy")?;
        Ok(Stack {
            fake,
            spoke,
            hub,
            floor_back,
            floor_front,
            http: reqwest::Client::new(),
            _configs: vec![spoke_cfg, hub_cfg],
            _audit: audit,
        })
    }

    /// `POST /v1/chat/completions` on the floor relay's front.
    pub fn floor_url(&self) -> String {
        format!("{}/v1/chat/completions", self.floor_front.url())
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

    /// Resets the fake every `every` until the returned guard is dropped. The fake keeps its
    /// last 10,000 requests in a `Vec` and, once full, drops the oldest with `remove(0)` — a
    /// ~1 MB move per request under its lock — which capped it at 12–16k req/s under wrk ×32
    /// on this machine against ~35k req/s with this loop resetting it every 100 ms. Closed-loop
    /// and wrk phases (tens of thousands of requests) run with it.
    pub fn reset_loop(&self, every: Duration) -> ResetLoop {
        let (http, url) = (
            self.http.clone(),
            format!("{}/_control/reset", self.fake.url()),
        );
        ResetLoop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let _ = http.post(&url).json(&serde_json::json!({})).send().await;
            }
        }))
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

/// A running [`Stack::reset_loop`]; dropping it stops the loop.
#[derive(Debug)]
pub struct ResetLoop(tokio::task::JoinHandle<()>);

impl Drop for ResetLoop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often [`Stack::reset_loop`] resets the fake in closed-loop and wrk phases: 100 ms is
/// under 10,000 requests up to 100k req/s.
pub const RESET_EVERY: Duration = Duration::from_millis(100);

/// How [`start_floor`] runs each process under another program (valgrind): the program, its
/// arguments before the floor binary, extra environment variables and the readiness timeout.
#[derive(Clone, Copy, Debug)]
pub struct Wrap<'a> {
    pub program: &'a Path,
    pub lead: &'a [String],
    pub envs: &'a [(String, String)],
    pub ready: Duration,
}

/// Starts `floor-relay back --upstream {fake_url}`, then `floor-relay front --back BACK`,
/// natively (with `envs`) or, with `wrap`, each under [`Wrap::program`] (with its envs).
pub async fn start_floor(
    floor_bin: &Path,
    fake_url: &str,
    wrap: Option<Wrap<'_>>,
    envs: &[(String, String)],
) -> anyhow::Result<(Proc, Proc)> {
    let spawn = |name: &'static str, mode_args: Vec<String>| async move {
        match wrap {
            None => Proc::spawn_path(floor_bin, name, &mode_args, envs, READY).await,
            Some(w) => {
                let mut all = w.lead.to_vec();
                all.push(floor_bin.to_string_lossy().into_owned());
                all.extend(mode_args);
                Proc::spawn_path(w.program, name, &all, w.envs, w.ready).await
            }
        }
    };
    let back = spawn(
        "floor-back",
        args(&["back", "--listen", "127.0.0.1:0", "--upstream", fake_url]),
    )
    .await?;
    let front = spawn(
        "floor-front",
        args(&[
            "front",
            "--listen",
            "127.0.0.1:0",
            "--back",
            &back.addr().to_string(),
        ]),
    )
    .await?;
    Ok((back, front))
}

/// Owned copies of `a`.
pub fn args(a: &[&str]) -> Vec<String> {
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
