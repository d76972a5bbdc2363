#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use rustls::pki_types::ServerName;
use switchyard_testkit::pki::{Ca, Leaf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One TLS handshake over real TCP between `server` (from `srv`) and a client using `client`;
/// returns the DER of the certificate the server presented, or the error either side saw.
async fn handshake(
    srv: &Reloading<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> Result<Vec<u8>, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(srv.current());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(&buf).await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let result = async {
        let mut tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let der = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        // TLS 1.3 client auth fails after the client's handshake returns: the echo proves the
        // server accepted us.
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(der)
    }
    .await;
    let served = server.await.unwrap();
    match (result, served) {
        (Ok(der), Ok(())) => Ok(der),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    }
}

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    server: Leaf,
    client: Leaf,
}

fn pki() -> Pki {
    let ca = Ca::new("test ca").unwrap();
    let server = ca.leaf("spoke", &["127.0.0.1"]).unwrap();
    let client = ca.leaf("hub", &["hub.internal"]).unwrap();
    Pki {
        dir: tempfile::tempdir().unwrap(),
        ca,
        server,
        client,
    }
}

fn server_files(p: &Pki, mtls: bool) -> ServerFiles {
    let (cert, key) = p.server.write(p.dir.path(), "server").unwrap();
    ServerFiles {
        cert,
        key,
        client_ca: mtls.then(|| p.ca.write(p.dir.path(), "ca").unwrap()),
    }
}

fn client(p: &Pki, ca: &Ca, cert: Option<&Leaf>, stem: &str) -> Arc<rustls::ClientConfig> {
    let ca_path = ca.write(p.dir.path(), &format!("{stem}-ca")).unwrap();
    let (cert, key) = match cert {
        Some(l) => {
            let (c, k) = l.write(p.dir.path(), stem).unwrap();
            (Some(c), Some(k))
        }
        None => (None, None),
    };
    Arc::new(
        client_config(&ClientFiles {
            ca: ca_path,
            cert,
            key,
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn mutual_tls_accepts_only_clients_with_a_certificate_from_the_ca() {
    let p = pki();
    let srv = Reloading::watch(server_files(&p, true), Duration::from_secs(60)).unwrap();

    let good = client(&p, &p.ca, Some(&p.client), "good");
    assert_eq!(handshake(&srv, good).await.unwrap(), p.server.cert_der);

    let anonymous = client(&p, &p.ca, None, "anon");
    let err = handshake(&srv, anonymous).await.unwrap_err();
    assert!(err.contains("CertificateRequired"), "{err}");

    let other_ca = Ca::new("someone else").unwrap();
    let stranger = other_ca.leaf("intruder", &["hub.internal"]).unwrap();
    let stranger = client(&p, &p.ca, Some(&stranger), "stranger");
    let err = handshake(&srv, stranger).await.unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("UnknownCA"),
        "{err}"
    );
}

#[tokio::test]
async fn without_client_ca_any_client_may_connect_but_must_trust_the_server() {
    let p = pki();
    let srv = Reloading::watch(server_files(&p, false), Duration::from_secs(60)).unwrap();
    let anonymous = client(&p, &p.ca, None, "anon");
    assert_eq!(handshake(&srv, anonymous).await.unwrap(), p.server.cert_der);
    // A client that trusts another CA refuses this server.
    let other = Ca::new("other").unwrap();
    let wrong_trust = client(&p, &other, None, "wrong");
    let err = handshake(&srv, wrong_trust).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn rotated_files_are_used_by_new_connections_and_bad_files_are_ignored() {
    let p = pki();
    let files = server_files(&p, false);
    let srv = Reloading::watch(files.clone(), Duration::from_millis(50)).unwrap();
    let c = client(&p, &p.ca, None, "c");
    assert_eq!(handshake(&srv, c.clone()).await.unwrap(), p.server.cert_der);

    // Rotate: a new certificate from the same CA.
    let next = p.ca.leaf("spoke-2", &["127.0.0.1"]).unwrap();
    next.write(p.dir.path(), "server").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if handshake(&srv, c.clone()).await.unwrap() == next.cert_der {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rotation not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken rotation (key of another certificate, then garbage): the last good one stays.
    let other = p.ca.leaf("x", &["127.0.0.1"]).unwrap();
    std::fs::write(&files.key, &other.key_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handshake(&srv, c.clone()).await.unwrap(), next.cert_der);
    std::fs::write(&files.cert, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handshake(&srv, c.clone()).await.unwrap(), next.cert_der);

    // Fixed again: picked up.
    other.write(p.dir.path(), "server").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while handshake(&srv, c.clone()).await.unwrap() != other.cert_der {
        assert!(std::time::Instant::now() < deadline, "repair not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn clear_errors_for_bad_files() {
    let p = pki();
    let missing = ServerFiles {
        cert: p.dir.path().join("nope.crt"),
        key: p.dir.path().join("nope.key"),
        client_ca: None,
    };
    let err = server_config(&missing).unwrap_err().to_string();
    assert!(err.contains("nope.crt"), "{err}");

    let (cert, _) = p.server.write(p.dir.path(), "s").unwrap();
    let (_, wrong_key) = p.client.write(p.dir.path(), "c").unwrap();
    let err = server_config(&ServerFiles {
        cert,
        key: wrong_key,
        client_ca: None,
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not match"), "{err}");
    // Errors name files, never print key material.
    assert!(!err.contains("PRIVATE KEY"), "{err}");

    let half = ClientFiles {
        ca: p.ca.write(p.dir.path(), "ca").unwrap(),
        cert: Some(p.dir.path().join("s.crt")),
        key: None,
    };
    assert!(
        client_config(&half)
            .unwrap_err()
            .to_string()
            .contains("both")
    );
}
