//! HTTPS: with `[tls]` configured the hub serves TLS (rustls), HTTP/1.1 and HTTP/2 via ALPN.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use switchyard_hub::config::TlsConfig;

#[tokio::test]
async fn serves_https_with_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path: PathBuf = dir.path().join("cert.pem");
    let key_path: PathBuf = dir.path().join("key.pem");
    std::fs::write(&cert_path, ck.cert.pem()).unwrap();
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).unwrap();

    let s = start_spoke("acct-a", &["m1"]).await;
    let body = format!(
        r#"
[tls]
cert = "{}"
key = "{}"

[[aliases]]
name = "demo"
candidates = [{{ provider = "p1", model = "m1" }}]

[[providers]]
name = "p1"
spokes = [{{ addr = "{}" }}]
health = {{ interval = "1s" }}
"#,
        cert_path.display(),
        key_path.display(),
        s.addr
    );
    let text = format!("listen = \"127.0.0.1:0\"\n{body}\n{}", tenants_toml());
    let settings = switchyard_hub::HubConfig::parse(&text)
        .unwrap()
        .validate()
        .unwrap();
    let tls = switchyard_hub::serve::tls_config(&TlsConfig {
        cert: cert_path.clone(),
        key: key_path.clone(),
        reload_interval: None,
    })
    .unwrap();
    let hub = switchyard_hub::Hub::start(settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = tokio_util::sync::CancellationToken::new();
    let app = switchyard_hub::router(hub.clone());
    let s2 = stop.clone();
    tokio::spawn(async move {
        switchyard_hub::serve::serve(
            listener,
            app,
            Some(tls),
            s2.cancelled_owned(),
            Duration::from_secs(5),
        )
        .await
        .unwrap()
    });
    eventually(Duration::from_secs(10), || {
        hub.table.load().pools["p1"]
            .spokes()
            .iter()
            .all(|s| s.is_healthy())
    })
    .await;

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = client
        .post(format!("https://localhost:{port}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("demo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hello from acct-a");
    // Plain HTTP on the TLS port fails.
    assert!(
        reqwest::get(format!("http://localhost:{port}/healthz"))
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
    );
    stop.cancel();
    hub.stop.cancel();
}
