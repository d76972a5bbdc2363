//! End-to-end: live configuration of the real `hub` and `spoke` binaries. The config file is
//! rewritten (or SIGHUP sent) while requests flow; the new routing must take effect with no
//! failed request, and a broken file must leave the old config serving with the problems
//! reported by `GET /admin/config`. Run `cargo build --workspace --bins` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;
use switchyard_e2e::Spoke;
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::{Proc, eventually, write_config};

const KEY: &str = "sk-live-key";
const NEW_KEY: &str = "sk-live-key-added";
const ADMIN: &str = "sk-live-admin";

fn sha(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

struct Hub {
    proc: Proc,
    config: tempfile::TempPath,
    client: reqwest::Client,
}

/// Replaces the file's contents in one step (write + rename), as an editor or deploy would.
fn rewrite(path: &Path, text: &str) {
    let tmp = path.with_extension("next");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl Hub {
    async fn start(toml: &str) -> Hub {
        let config = write_config(toml, "toml").unwrap();
        let proc = Proc::spawn(
            "hub",
            &[
                "--config".to_string(),
                config.to_string_lossy().into_owned(),
            ],
            &[],
        )
        .await
        .unwrap();
        Hub {
            proc,
            config,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.proc.url())
    }

    async fn chat_with(&self, key: &str) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({
                "model": "demo",
                "messages": [{"role": "user", "content": "live config"}],
            }))
            .send()
            .await
            .unwrap()
    }

    async fn admin_config(&self) -> Value {
        let r = self
            .client
            .get(self.url("/admin/config"))
            .header("x-admin-key", ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn wait_reloads(&self, n: u64) {
        let ok = eventually(Duration::from_secs(10), || async {
            self.admin_config().await["reloads"].as_u64() == Some(n)
        })
        .await;
        assert!(ok, "no reload #{n}:\n{}", self.proc.logs());
    }

    async fn wait_healthy(&self, n: usize) {
        let ok = eventually(Duration::from_secs(15), || async {
            self.proc.count_log("spoke healthy") >= n
        })
        .await;
        assert!(ok, "{n} spokes not healthy:\n{}", self.proc.logs());
    }
}

fn spoke_toml(account: &str, up: &FakeOpenAi) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\naccount = \"{account}\"\nprovider = \"openai\"\n\
         default_timeout = \"20s\"\ndrain_timeout = \"5s\"\n\
         [[regions]]\nname = \"us-east-1\"\nendpoint = \"{}\"\n\
         [[models]]\nid = \"m1\"\nstreaming = true\n\
         [[models]]\nid = \"m2\"\nstreaming = true\n",
        up.url()
    )
}

/// Hub config: alias `demo` → `model` on provider p1 = spokes a and b with weights.
fn hub_toml(model: &str, a: (SocketAddr, u32), b: (SocketAddr, u32), keys: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{}\"", sha(k))).collect();
    format!(
        "listen = \"127.0.0.1:0\"\n\
         [admin]\napi_key_sha256 = [\"{}\"]\n\
         [[tenants]]\nname = \"live\"\napi_key_sha256 = [{}]\naliases = [\"*\"]\n\
         [[aliases]]\nname = \"demo\"\ncandidates = [{{ provider = \"p1\", model = \"{model}\" }}]\n\
         [[providers]]\nname = \"p1\"\nhealth = {{ interval = \"1s\" }}\n\
         spokes = [{{ addr = \"{}\", weight = {} }}, {{ addr = \"{}\", weight = {} }}]\n",
        sha(ADMIN),
        keys.join(", "),
        a.0,
        a.1,
        b.0,
        b.1
    )
}

/// Background load: `workers` clients sending requests until stopped; returns every status.
fn load(hub: &Arc<Hub>, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Vec<u16>>> {
    (0..4)
        .map(|_| {
            let (hub, stop) = (hub.clone(), stop.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(hub.chat_with(KEY).await.status().as_u16());
                }
                statuses
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_aliases_and_keys_change_under_load_without_a_failed_request() {
    let (ua, ub) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    let a = Spoke::start(&spoke_toml("acct-a", &ua)).await.unwrap();
    let b = Spoke::start(&spoke_toml("acct-b", &ub)).await.unwrap();
    let (aa, ba) = (a.proc.addr(), b.proc.addr());
    let hub = Arc::new(Hub::start(&hub_toml("m1", (aa, 1), (ba, 1), &[KEY])).await);
    hub.wait_healthy(2).await;
    let v1 = hub.admin_config().await;
    assert_eq!(v1["reloads"], 0);
    assert_eq!(
        v1["version"].as_str().unwrap(),
        hex::encode(sha2::Sha256::digest(std::fs::read(&*hub.config).unwrap()))
    );
    assert_eq!(hub.chat_with(NEW_KEY).await.status(), 401);

    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&hub, &stop);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(ub.calls("m1") > 0, "b served nothing at weight 1");

    // 1. Weight of b to 0 (and a second key): b stops getting traffic, channels stay.
    rewrite(
        &hub.config,
        &hub_toml("m1", (aa, 1), (ba, 0), &[KEY, NEW_KEY]),
    );
    hub.wait_reloads(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b_before = ub.calls("m1");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(ub.calls("m1"), b_before, "weight 0 spoke still served");
    assert_eq!(hub.chat_with(NEW_KEY).await.status(), 200, "added key");

    // 2. The alias now maps to m2, weights even again.
    rewrite(
        &hub.config,
        &hub_toml("m2", (aa, 1), (ba, 1), &[KEY, NEW_KEY]),
    );
    hub.wait_reloads(2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m1_before = ua.calls("m1") + ub.calls("m1");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        ua.calls("m1") + ub.calls("m1"),
        m1_before,
        "old alias target still used"
    );
    assert!(
        ua.calls("m2") > 0 && ub.calls("m2") > 0,
        "m2 on both spokes"
    );

    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    assert!(all.len() > 50, "too little load: {}", all.len());
    let failed: Vec<_> = all.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty(),
        "failed requests during reloads: {failed:?}"
    );
    // The spokes were kept, not re-added: one `spoke added` per address.
    assert_eq!(hub.proc.count_log("spoke added"), 2, "{}", hub.proc.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_is_rejected_and_the_old_config_keeps_serving() {
    let up = FakeOpenAi::start().await.unwrap();
    let a = Spoke::start(&spoke_toml("acct-a", &up)).await.unwrap();
    let good = hub_toml("m1", (a.proc.addr(), 1), (a.proc.addr(), 1), &[KEY]);
    // Two spokes at one address would be odd; use one provider entry with one spoke.
    let good = good.replace(
        &format!(", {{ addr = \"{}\", weight = 1 }}", a.proc.addr()),
        "",
    );
    let hub = Hub::start(&good).await;
    hub.wait_healthy(1).await;
    let v1 = hub.admin_config().await["version"].clone();

    // Unknown provider, bad duration, bad key hash: all three must be reported.
    let broken = good
        .replace("provider = \"p1\"", "provider = \"ghost\"")
        .replace("interval = \"1s\"", "interval = \"soon\"")
        .replace(&sha(KEY), "not-a-hash");
    rewrite(&hub.config, &broken);
    let ok = eventually(Duration::from_secs(10), || async {
        !hub.admin_config().await["last_reload_error"].is_null()
    })
    .await;
    assert!(ok, "no reload error reported:\n{}", hub.proc.logs());
    let status = hub.admin_config().await;
    let err = status["last_reload_error"].as_str().unwrap();
    for needle in [
        "aliases[0].candidates[0].provider",
        "providers[0].health.interval",
        "tenants[0].api_key_sha256[0]",
    ] {
        assert!(err.contains(needle), "{needle} missing from {err}");
    }
    assert_eq!(status["version"], v1, "version changed on a rejected file");
    assert_eq!(status["reloads"], 0);
    assert!(hub.proc.count_log("config reload rejected") >= 1);
    // The old config (key, alias, provider) still serves.
    for _ in 0..5 {
        assert_eq!(hub.chat_with(KEY).await.status(), 200);
    }
    // Not even valid TOML: rejected too.
    rewrite(&hub.config, "listen = [unclosed");
    let ok = eventually(Duration::from_secs(10), || async {
        hub.admin_config().await["last_reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("parse error"))
    })
    .await;
    assert!(ok);
    assert_eq!(hub.chat_with(KEY).await.status(), 200);

    // Fixed: the error clears and the new version is active.
    rewrite(
        &hub.config,
        &good.replace("name = \"live\"", "name = \"live2\""),
    );
    hub.wait_reloads(1).await;
    let status = hub.admin_config().await;
    assert!(status["last_reload_error"].is_null());
    assert_ne!(status["version"], v1);
    assert_eq!(hub.chat_with(KEY).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_restart_only_changes_keep_their_old_value() {
    let up = FakeOpenAi::start().await.unwrap();
    let a = Spoke::start(&spoke_toml("acct-a", &up)).await.unwrap();
    let good = hub_toml("m1", (a.proc.addr(), 1), (a.proc.addr(), 1), &[KEY]).replace(
        &format!(", {{ addr = \"{}\", weight = 1 }}", a.proc.addr()),
        "",
    );
    let hub = Hub::start(&good).await;
    hub.wait_healthy(1).await;
    // Unauthenticated / wrong key: no config details.
    let r = hub
        .client
        .get(hub.url("/admin/config"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // SIGHUP re-reads the file even when it did not change.
    let pid = hub.proc.pid().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    hub.wait_reloads(1).await;
    // The log line travels through a pipe; it may land just after /admin/config counts the reload.
    assert!(
        eventually(Duration::from_secs(5), || async {
            hub.proc.count_log("trigger=\"SIGHUP\"") + hub.proc.count_log("trigger=SIGHUP") >= 1
        })
        .await,
        "no SIGHUP reload logged"
    );

    // A new listen address needs a restart: reported, not applied; the hub serves on.
    rewrite(&hub.config, &good.replace("127.0.0.1:0", "127.0.0.1:1"));
    hub.wait_reloads(2).await;
    let status = hub.admin_config().await;
    assert_eq!(status["restart_required"], json!(["listen"]));
    assert_eq!(hub.chat_with(KEY).await.status(), 200);
    assert!(hub.proc.count_log("need a restart") >= 1);
}

/// The spoke reloads its models' region chains (and quotas) live; a broken file leaves the old
/// chains serving and is reported by its `/admin/config`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoke_reloads_region_chains_and_rejects_a_broken_file() {
    let (east, west) = (
        FakeOpenAi::start().await.unwrap(),
        FakeOpenAi::start().await.unwrap(),
    );
    let admin = sha(ADMIN);
    let toml = |chain: &str, rpm: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\naccount = \"acct\"\nprovider = \"openai\"\n\
             default_timeout = \"10s\"\ndrain_timeout = \"1s\"\n\
             [admin]\napi_key_sha256 = [\"{admin}\"]\n\
             [[regions]]\nname = \"east\"\nendpoint = \"{}\"\n\
             [[regions]]\nname = \"west\"\nendpoint = \"{}\"\n\
             [[models]]\nid = \"m1\"\nregions = [{chain}]\n{rpm}",
            east.url(),
            west.url()
        )
    };
    let config = write_config(&toml("\"east\", \"west\"", ""), "toml").unwrap();
    let spoke = Proc::spawn(
        "spoke",
        &[
            "--config".to_string(),
            config.to_string_lossy().into_owned(),
        ],
        &[],
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let infer = || async {
        let r = client
            .post(format!("{}/inference", spoke.url()))
            .json(&json!({"models": ["m1"], "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        (
            status,
            body["route"]["region"].as_str().unwrap_or("").to_string(),
        )
    };
    let admin_status = || async {
        client
            .get(format!("{}/admin/config", spoke.url()))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(infer().await, (200, "east".to_string()));
    let v1 = admin_status().await["version"].clone();

    rewrite(&config, &toml("\"west\", \"east\"", ""));
    let ok = eventually(Duration::from_secs(10), || async {
        admin_status().await["reloads"] == 1
    })
    .await;
    assert!(ok, "{}", spoke.logs());
    for _ in 0..3 {
        assert_eq!(infer().await, (200, "west".to_string()));
    }

    // A broken file (unknown region in a chain, bad quota): rejected, west still first.
    rewrite(
        &config,
        &toml("\"north\"", "requests_per_minute = \"lots\"\n"),
    );
    let ok = eventually(Duration::from_secs(10), || async {
        !admin_status().await["last_reload_error"].is_null()
    })
    .await;
    assert!(ok, "{}", spoke.logs());
    let status = admin_status().await;
    assert_ne!(status["version"], v1);
    assert_eq!(status["reloads"], 1);
    assert_eq!(infer().await, (200, "west".to_string()));

    // A quota reload: one request per minute on the only route.
    rewrite(&config, &toml("\"east\"", "requests_per_minute = 1\n"));
    let ok = eventually(Duration::from_secs(10), || async {
        admin_status().await["reloads"] == 2
    })
    .await;
    assert!(ok, "{}", spoke.logs());
    assert_eq!(infer().await, (200, "east".to_string()));
    assert_eq!(infer().await.0, 429, "the reloaded quota applies");

    // No admin key configured → the endpoint does not exist; a wrong key → 401.
    let r = client
        .get(format!("{}/admin/config", spoke.url()))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
