//! Shared helpers of the `security_*` end-to-end tests: a real `hub` process in front of real
//! `spoke` processes whose upstream is the fake OpenAI server.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use sha2::Digest;
use std::time::Duration;
use switchyard_e2e::{Spoke, spoke_toml};
use switchyard_testkit::process::{Proc, eventually, write_config};

pub fn sha(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// A running `hub --config FILE`.
pub struct Hub {
    pub proc: Proc,
    _config: tempfile::TempPath,
}

impl Hub {
    /// Starts the hub and waits until `/readyz` says a spoke is healthy.
    pub async fn start(toml: &str, env: &[(&str, &str)]) -> Hub {
        let path = write_config(toml, "toml").unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let proc = Proc::spawn(
            "hub",
            &["--config".to_string(), path.to_string_lossy().into_owned()],
            &env,
        )
        .await
        .unwrap();
        let hub = Hub {
            proc,
            _config: path,
        };
        let ready = hub.proc.url() + "/readyz";
        assert!(
            eventually(Duration::from_secs(15), || {
                let r = ready.clone();
                async move { reqwest::get(&r).await.is_ok_and(|r| r.status() == 200) }
            })
            .await,
            "hub never ready: {}",
            hub.proc.logs()
        );
        hub
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.proc.url())
    }

    /// `POST /v1/chat/completions` with one user message.
    pub async fn chat(&self, key: &str, model: &str, text: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({
                "model": model, "max_tokens": 20,
                "messages": [{"role": "user", "content": text}],
            }))
            .send()
            .await
            .unwrap()
    }
}

/// A spoke of provider `openai` serving model `gpt` from `upstream_url` (a `FakeOpenAi`).
pub async fn openai_spoke(upstream_url: &str, extra: &str, env: &[(&str, &str)]) -> Spoke {
    let toml = spoke_toml(
        "openai",
        &[("east", upstream_url)],
        "[[models]]\nid = \"gpt\"\n",
        extra,
    );
    Spoke::start_with_env(&toml, env).await.unwrap()
}

/// Hub config: aliases `chat` and `other` (both served by model `gpt` of provider `oa`), then
/// `tenants` (raw TOML) and `extra` top-level keys.
pub fn hub_toml(spoke: &Spoke, tenants: &str, extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n{extra}\n\
         [[aliases]]\nname = \"chat\"\ncandidates = [{{ provider = \"oa\", model = \"gpt\" }}]\n\
         [[aliases]]\nname = \"other\"\ncandidates = [{{ provider = \"oa\", model = \"gpt\" }}]\n\
         [[providers]]\nname = \"oa\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n\
         {tenants}",
        spoke.proc.addr()
    )
}

/// One `[[tenants]]` block; `extra` is appended inside it (limits, `[tenants.policy]`).
pub fn tenant(name: &str, key: &str, aliases: &[&str], extra: &str) -> String {
    let aliases: Vec<String> = aliases.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[[tenants]]\nname = \"{name}\"\napi_key_sha256 = [\"{}\"]\naliases = [{}]\n{extra}\n",
        sha(key),
        aliases.join(", ")
    )
}
