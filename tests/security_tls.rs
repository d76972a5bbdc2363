//! TLS on every hop, through the real binaries: the hub calls spokes over TLS with a client
//! certificate (mutual TLS), a spoke with `client_ca` refuses everyone else during the
//! handshake, and both tiers pick up rotated certificate files without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod security_common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use security_common::{openai_spoke, sha};
use serde_json::Value;
use switchyard_testkit::openai::FakeOpenAi;
use switchyard_testkit::pki::{Ca, Leaf};
use switchyard_testkit::process::{Proc, eventually, write_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "sk-tls-tenant";

struct Files {
    dir: tempfile::TempDir,
    ca: Ca,
    ca_path: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("switchyard test ca").unwrap();
        let ca_path = ca.write(dir.path(), "ca").unwrap();
        Files { dir, ca, ca_path }
    }
    fn leaf(&self, cn: &str, names: &[&str], stem: &str) -> (Leaf, PathBuf, PathBuf) {
        let leaf = self.ca.leaf(cn, names).unwrap();
        let (c, k) = leaf.write(self.dir.path(), stem).unwrap();
        (leaf, c, k)
    }
}

fn tls_spoke_extra(cert: &Path, key: &Path, client_ca: Option<&Path>) -> String {
    let mut t = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\nreload_interval = \"200ms\"\n",
        cert.display(),
        key.display()
    );
    if let Some(ca) = client_ca {
        t.push_str(&format!("client_ca = \"{}\"\n", ca.display()));
    }
    t
}

/// Hub config with one provider whose spokes are called with `provider_tls` (inline table body).
fn hub_toml(spoke: SocketAddr, provider_tls: &str, top: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n{top}\n\
         [[aliases]]\nname = \"chat\"\ncandidates = [{{ provider = \"oa\", model = \"gpt\" }}]\n\
         [[providers]]\nname = \"oa\"\nspokes = [{{ addr = \"{spoke}\" }}]\n\
         health = {{ interval = \"1s\" }}\ntls = {{ {provider_tls} }}\n\
         [[tenants]]\nname = \"t\"\napi_key_sha256 = [\"{}\"]\naliases = [\"*\"]\n",
        sha(KEY)
    )
}

async fn spawn_hub(toml: &str) -> (Proc, tempfile::TempPath) {
    let path = write_config(toml, "toml").unwrap();
    let proc = Proc::spawn(
        "hub",
        &["--config".into(), path.to_string_lossy().into_owned()],
        &[],
    )
    .await
    .unwrap();
    (proc, path)
}

async fn chat(client: &reqwest::Client, base: &str) -> (u16, Value) {
    let r = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"model": "chat", "max_tokens": 5,
            "messages": [{"role": "user", "content": "hello over tls"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// One TLS connection to `addr` trusting `ca`, optionally with a client certificate; sends an
/// HTTP/1.1 `GET /healthz` and returns (certificate the server presented, response head), or
/// the error. With TLS 1.3 a refused client certificate only shows on the first read.
async fn probe(
    addr: SocketAddr,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<(Vec<u8>, String), String> {
    let mut cfg = switchyard_tls::client_config(&switchyard_tls::ClientFiles {
        ca: ca.to_path_buf(),
        cert: client.map(|c| c.0.to_path_buf()),
        key: client.map(|c| c.1.to_path_buf()),
    })
    .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    Ok((der, String::from_utf8_lossy(&buf).into_owned()))
}

#[tokio::test]
async fn hub_reaches_spokes_over_mutual_tls_and_spokes_refuse_everyone_else() {
    let f = Files::new();
    let (_, spoke_cert, spoke_key) = f.leaf("spoke", &["127.0.0.1"], "spoke");
    let (_, hub_cert, hub_key) = f.leaf("hub", &["hub.internal"], "hub-client");
    let upstream = FakeOpenAi::start().await.unwrap();
    let spoke = openai_spoke(
        &upstream.url(),
        &tls_spoke_extra(&spoke_cert, &spoke_key, Some(&f.ca_path)),
        &[],
    )
    .await;
    assert!(spoke.proc.logs().contains("tls=\"mutual\"") || spoke.proc.logs().contains("mutual"));
    let addr = spoke.proc.addr();

    // The hub with the CA and its client certificate gets answers through the TLS hop.
    let (hub, _cfg) = spawn_hub(&hub_toml(
        addr,
        &format!(
            "ca = \"{}\", cert = \"{}\", key = \"{}\"",
            f.ca_path.display(),
            hub_cert.display(),
            hub_key.display()
        ),
        "",
    ))
    .await;
    let client = reqwest::Client::new();
    let base = hub.url();
    assert!(
        eventually(Duration::from_secs(15), || {
            let (client, base) = (client.clone(), base.clone());
            async move { chat(&client, &base).await.0 == 200 }
        })
        .await,
        "hub never served over mTLS:\n{}\n{}",
        hub.logs(),
        spoke.proc.logs()
    );
    let (status, body) = chat(&client, &base).await;
    assert_eq!(status, 200, "{body}");
    assert!(upstream.total_calls() >= 1);

    // Plain h2c to the spoke gets nowhere.
    let plain = async {
        let mut c =
            switchyard_proto::v1::spoke_client::SpokeClient::connect(format!("http://{addr}"))
                .await
                .map_err(|e| e.to_string())?;
        c.describe(switchyard_proto::v1::DescribeRequest::default())
            .await
            .map_err(|e| e.to_string())
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(5), plain)
            .await
            .map_or(true, |r| r.is_err()),
        "plain-text gRPC reached a TLS spoke"
    );

    // TLS without a client certificate, or with one from another CA: refused in the handshake.
    let err = probe(addr, &f.ca_path, None).await.unwrap_err();
    assert!(err.contains("CertificateRequired"), "{err}");
    let other = Ca::new("not our ca").unwrap();
    let intruder = other.leaf("intruder", &["hub.internal"]).unwrap();
    let (ic, ik) = intruder.write(f.dir.path(), "intruder").unwrap();
    let err = probe(addr, &f.ca_path, Some((&ic, &ik))).await.unwrap_err();
    assert!(
        err.contains("UnknownCA") || err.contains("UnknownIssuer"),
        "{err}"
    );
    // With the hub's certificate the same probe is answered.
    let (_, head) = probe(addr, &f.ca_path, Some((&hub_cert, &hub_key)))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // A hub that trusts the CA but holds no client certificate never gets a healthy spoke.
    let (lonely, _cfg2) = spawn_hub(&hub_toml(
        addr,
        &format!("ca = \"{}\"", f.ca_path.display()),
        "",
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = chat(&client, &lonely.url()).await;
    assert_eq!(status, 503, "{body}");
    assert!(spoke.proc.logs().contains("TLS handshake refused"));
}

#[tokio::test]
async fn rotated_certificates_are_served_without_restart_on_both_tiers() {
    let f = Files::new();
    let (spoke_leaf, spoke_cert, spoke_key) = f.leaf("spoke-1", &["127.0.0.1"], "spoke");
    let (hub_leaf, hub_cert, hub_key) = f.leaf("hub-1", &["127.0.0.1"], "hub-server");
    let upstream = FakeOpenAi::start().await.unwrap();
    let spoke = openai_spoke(
        &upstream.url(),
        &tls_spoke_extra(&spoke_cert, &spoke_key, None),
        &[],
    )
    .await;
    let spoke_addr = spoke.proc.addr();
    let (hub, _cfg) = spawn_hub(&hub_toml(
        spoke_addr,
        &format!("ca = \"{}\"", f.ca_path.display()),
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nreload_interval = \"200ms\"\n",
            hub_cert.display(),
            hub_key.display()
        ),
    ))
    .await;
    let hub_addr = hub.addr();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(f.ca.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://{hub_addr}");
    assert!(
        eventually(Duration::from_secs(15), || {
            let (client, base) = (client.clone(), base.clone());
            async move { chat(&client, &base).await.0 == 200 }
        })
        .await,
        "{}",
        hub.logs()
    );
    assert_eq!(
        probe(spoke_addr, &f.ca_path, None).await.unwrap().0,
        spoke_leaf.cert_der
    );
    assert_eq!(
        probe(hub_addr, &f.ca_path, None).await.unwrap().0,
        hub_leaf.cert_der
    );

    // Rotate both certificates in place; requests keep flowing the whole time.
    let (spoke_next, _, _) = f.leaf("spoke-2", &["127.0.0.1"], "spoke");
    let (hub_next, _, _) = f.leaf("hub-2", &["127.0.0.1"], "hub-server");
    let rotated = eventually(Duration::from_secs(10), || {
        let f = &f;
        let (client, base) = (client.clone(), base.clone());
        let (s, h) = (spoke_next.cert_der.clone(), hub_next.cert_der.clone());
        async move {
            assert_eq!(chat(&client, &base).await.0, 200);
            probe(spoke_addr, &f.ca_path, None).await.unwrap().0 == s
                && probe(hub_addr, &f.ca_path, None).await.unwrap().0 == h
        }
    })
    .await;
    assert!(
        rotated,
        "rotation not picked up:\n{}\n{}",
        hub.logs(),
        spoke.proc.logs()
    );
    assert!(spoke.proc.logs().contains("TLS certificates reloaded"));
    assert!(hub.logs().contains("TLS certificates reloaded"));

    // A broken rotation (garbage certificate) keeps the last good one in service.
    std::fs::write(f.dir.path().join("spoke.crt"), "garbage").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        probe(spoke_addr, &f.ca_path, None).await.unwrap().0,
        spoke_next.cert_der
    );
    assert!(spoke.proc.logs().contains("keeping the previous ones"));
    // New hub→spoke connections still work: a fresh client through a fresh hub connection.
    let fresh = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(f.ca.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    assert_eq!(chat(&fresh, &base).await.0, 200);
}
