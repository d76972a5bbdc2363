//! End-to-end: a spoke whose OpenAI-compatible API key lives in AWS Secrets Manager, fetched
//! with the real SDK against `moto` (started here on 127.0.0.1), rotated without a restart,
//! and read from a second account through an assumed role.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::config::{Credentials, Region};
use std::time::Duration;
use switchyard_e2e::{Spoke, request, spoke_toml};
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::process::eventually;

/// `moto_server` on a free port, killed on drop. `SWITCHYARD_TEST_PYTHON` names a python with
/// `moto[server]` installed (scripts/test sets it to its venv).
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Moto {
    async fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let python = std::env::var("SWITCHYARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let child = std::process::Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python with moto[server] (scripts/test installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let probe = format!("{url}/moto-api/");
        assert!(
            eventually(Duration::from_secs(30), || {
                let p = probe.clone();
                async move { reqwest::get(&p).await.is_ok() }
            })
            .await,
            "moto did not start"
        );
        Moto { child, url }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn sdk(moto: &Moto, role_arn: Option<&str>) -> aws_types::SdkConfig {
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&moto.url)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    match role_arn {
        None => base,
        Some(role) => {
            let p = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("test")
                .configure(&base)
                .build()
                .await;
            base.into_builder()
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(p),
                )
                .build()
        }
    }
}

fn spoke_env(moto: &Moto) -> Vec<(&'static str, String)> {
    vec![("AWS_ENDPOINT_URL", moto.url.clone())]
}

fn auth_seen(up: &FakeOpenAi) -> Option<String> {
    up.last_request()
        .and_then(|r| r.header("authorization").map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_used_without_a_restart_and_never_logged() {
    let moto = Moto::start().await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk(&moto, None).await);
    sm.create_secret()
        .name("prod/openai")
        .secret_string(r#"{"api_key":"sk-first-0123456789"}"#)
        .send()
        .await
        .unwrap();

    let up = FakeOpenAi::start().await.unwrap();
    let toml = spoke_toml(
        "openai",
        &[("us-east-1", &up.url())],
        "[[models]]\nid = \"gpt\"\n",
        "[openai]\napi_key_secret = \"prod/openai\"\napi_key_secret_field = \"api_key\"\nsecret_refresh = \"300ms\"\n",
    );
    let env = spoke_env(&moto);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let spoke = Spoke::start_with_env(&toml, &env).await.unwrap();
    let mut c = spoke.grpc().await.unwrap();
    c.infer(request(&["gpt"], "hi")).await.unwrap();
    assert_eq!(
        auth_seen(&up).as_deref(),
        Some("Bearer sk-first-0123456789")
    );

    sm.put_secret_value()
        .secret_id("prod/openai")
        .secret_string(r#"{"api_key":"sk-second-9876543210"}"#)
        .send()
        .await
        .unwrap();
    let mut rotated = false;
    for _ in 0..50 {
        c.infer(request(&["gpt"], "hi")).await.unwrap();
        if auth_seen(&up).as_deref() == Some("Bearer sk-second-9876543210") {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rotated, "the rotated key was never used");

    // Secrets Manager goes away: the last good key stays in use.
    drop(moto);
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.infer(request(&["gpt"], "hi")).await.unwrap();
    assert_eq!(
        auth_seen(&up).as_deref(),
        Some("Bearer sk-second-9876543210")
    );
    spoke
        .proc
        .wait_for_log("secret refresh failed", Duration::from_secs(5))
        .await
        .unwrap();
    // The failure is metered, and the successful refreshes before it too.
    let metrics = reqwest::get(format!("{}/metrics", spoke.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |outcome: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("switchyard_secret_refreshes_total")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(count("error") >= 1.0, "{metrics}");
    assert!(count("ok") >= 1.0, "{metrics}");

    let health = reqwest::get(format!("{}/healthz", spoke.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let logs = spoke.proc.logs();
    for secret in ["sk-first-0123456789", "sk-second-9876543210"] {
        assert!(!logs.contains(secret), "secret in logs");
        assert!(!health.contains(secret), "secret in /healthz");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spoke_assumes_a_role_into_its_own_account() {
    let moto = Moto::start().await;
    let role = "arn:aws:iam::222222222222:role/switchyard-spoke";
    // The same secret name in the caller's default account and in account 222222222222.
    let default_sm = aws_sdk_secretsmanager::Client::new(&sdk(&moto, None).await);
    default_sm
        .create_secret()
        .name("openai")
        .secret_string("sk-wrong-account")
        .send()
        .await
        .unwrap();
    let acct2_sm = aws_sdk_secretsmanager::Client::new(&sdk(&moto, Some(role)).await);
    let created = acct2_sm
        .create_secret()
        .name("openai")
        .secret_string("sk-account-two")
        .send()
        .await
        .unwrap();
    assert!(
        created.arn().unwrap().contains(":222222222222:"),
        "{created:?}"
    );

    let up = FakeOpenAi::start().await.unwrap();
    let toml = spoke_toml(
        "openai",
        &[("us-east-1", &up.url())],
        "[[models]]\nid = \"gpt\"\n",
        &format!("[aws]\nrole_arn = \"{role}\"\n[openai]\napi_key_secret = \"openai\"\n"),
    );
    let env = spoke_env(&moto);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let spoke = Spoke::start_with_env(&toml, &env).await.unwrap();
    let mut c = spoke.grpc().await.unwrap();
    c.infer(request(&["gpt"], "hi")).await.unwrap();
    assert_eq!(auth_seen(&up).as_deref(), Some("Bearer sk-account-two"));
}
