//! JWT bearer tokens: RS256 and ES256 tokens signed with keys generated here, JWKS served from a local
//! HTTP server (counting fetches), issuer/audience/expiry checks, unknown `kid` → one refresh,
//! bad signatures and foreign algorithms → 401. API keys keep working next to JWTs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use proptest::prelude::*;
use serde_json::{Value, json};

const ISS: &str = "https://issuer.test";
const AUD: &str = "switchyard";

struct Key {
    enc: EncodingKey,
    jwk: Value,
}

fn es256_key(kid: &str) -> Key {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = kp.public_key_raw(); // 0x04 || X || Y
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    Key {
        enc: EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({"kty": "EC", "crv": "P-256", "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
                    "kid": kid, "alg": "ES256", "use": "sig"}),
    }
}

/// An RSA-2048 key (RS256), generated here with aws-lc-rs; the JWK carries its modulus and
/// exponent, as Cognito's and other OIDC providers' JWKS do.
fn rs256_key(kid: &str) -> Key {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair as _;
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = kp.as_der().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    let url = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let public = kp.public_key();
    Key {
        enc: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        jwk: json!({"kty": "RSA", "n": url(public.modulus().big_endian_without_leading_zero()),
                    "e": url(public.exponent().big_endian_without_leading_zero()),
                    "kid": kid, "alg": "RS256", "use": "sig"}),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(tenant: &str) -> Value {
    json!({"iss": ISS, "aud": AUD, "exp": now() + 300, "iat": now(), "sub": "user-1", "tenant": tenant})
}

fn sign(key: &Key, kid: &str, claims: &Value) -> String {
    let alg = if key.jwk["kty"] == "RSA" {
        Algorithm::RS256
    } else {
        Algorithm::ES256
    };
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &key.enc).unwrap()
}

/// A JWKS endpoint whose document tests replace, counting fetches.
struct Jwks {
    url: String,
    doc: Arc<Mutex<Value>>,
    fetches: Arc<AtomicU64>,
}

async fn jwks_server(keys: &[&Key]) -> Jwks {
    let doc = Arc::new(Mutex::new(
        json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}),
    ));
    let fetches = Arc::new(AtomicU64::new(0));
    let (d, f) = (doc.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (d, f) = (d.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                axum::Json(d.lock().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Jwks {
        url: format!("http://{addr}/jwks.json"),
        doc,
        fetches,
    }
}

async fn chat(hub: &HubHandle, bearer: &str) -> (u16, Value) {
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(bearer)
        .json(&chat_body("demo", false))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn jwt_bearer_tokens_are_verified_against_the_jwks() {
    let k1 = es256_key("k1");
    let jwks = jwks_server(&[&k1]).await;
    let spoke = start_spoke("acct-a", &["m1"]).await;
    let hub = start_hub(&format!(
        r#"
[jwt]
issuer = "{ISS}"
audience = "{AUD}"
jwks_url = "{}"
jwks_min_refresh = "0s"
leeway = "5s"

[[aliases]]
name = "demo"
candidates = [{{ provider = "p1", model = "m1" }}]

[[providers]]
name = "p1"
spokes = [{{ addr = "{}" }}]
health = {{ interval = "1s" }}
"#,
        jwks.url, spoke.addr
    ))
    .await;
    hub.wait_healthy("p1", 1).await;

    // A good token for tenant "limited" (may use `demo`).
    let (status, body) = chat(&hub, &sign(&k1, "k1", &claims("limited"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1);
    // API keys still work.
    assert_eq!(chat(&hub, KEY).await.0, 200);

    // Each broken token is a 401 with the API-key error shape (no detail for the caller).
    let mut expired = claims("limited");
    expired["exp"] = json!(now() - 3600);
    let mut wrong_aud = claims("limited");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("limited");
    wrong_iss["iss"] = json!("https://evil.test");
    let mut no_exp = claims("limited");
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut no_tenant = claims("limited");
    no_tenant.as_object_mut().unwrap().remove("tenant");
    let other = es256_key("k1");
    let hs = jsonwebtoken::encode(
        &Header {
            kid: Some("k1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims("limited"),
        &EncodingKey::from_secret(b"guessable"),
    )
    .unwrap();
    let good = sign(&k1, "k1", &claims("limited"));
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, _) = rest.split_once('.').unwrap();
    let forged_payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims("full").to_string());
    let tampered = format!(
        "{head}.{forged_payload}.{}",
        good.rsplit('.').next().unwrap()
    );
    let unsigned = format!("{head}.{payload}.");
    for (what, token) in [
        ("expired", sign(&k1, "k1", &expired)),
        ("wrong audience", sign(&k1, "k1", &wrong_aud)),
        ("wrong issuer", sign(&k1, "k1", &wrong_iss)),
        ("no exp", sign(&k1, "k1", &no_exp)),
        ("no tenant claim", sign(&k1, "k1", &no_tenant)),
        ("unknown tenant", sign(&k1, "k1", &claims("nobody"))),
        ("bad signature", sign(&other, "k1", &claims("limited"))),
        ("HS256", hs),
        ("tampered payload", tampered),
        ("no signature", unsigned),
    ] {
        let (status, body) = chat(&hub, &token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], "invalid_api_key", "{what}");
    }

    // The signing key rotates: a token with an unknown kid makes the hub fetch the JWKS once.
    let k2 = es256_key("k2");
    *jwks.doc.lock() = json!({"keys": [k1.jwk.clone(), k2.jwk.clone()]});
    let before = jwks.fetches.load(Ordering::SeqCst);
    let (status, body) = chat(&hub, &sign(&k2, "k2", &claims("full"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), before + 1);
    let (status, _) = chat(&hub, &sign(&k2, "k2", &claims("full"))).await;
    assert_eq!(status, 200);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), before + 1, "cached");
    // A kid that is nowhere: refused after its refresh.
    let (status, _) = chat(&hub, &sign(&k2, "k9", &claims("full"))).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn jwt_claims_scope_the_tenant() {
    // A token for "limited" cannot use aliases "limited" may not use.
    let k1 = es256_key("k1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, json!({"keys": [k1.jwk.clone()]}).to_string()).unwrap();
    let spoke = start_spoke("acct-a", &["m1"]).await;
    let hub = start_hub(&format!(
        r#"
[jwt]
issuer = "{ISS}"
audience = "{AUD}"
jwks_file = "{}"

[[aliases]]
name = "demo"
candidates = [{{ provider = "p1", model = "m1" }}]
[[aliases]]
name = "premium"
candidates = [{{ provider = "p1", model = "m1" }}]

[[providers]]
name = "p1"
spokes = [{{ addr = "{}" }}]
health = {{ interval = "1s" }}
"#,
        path.display(),
        spoke.addr
    ))
    .await;
    hub.wait_healthy("p1", 1).await;
    let token = sign(&k1, "k1", &claims("limited"));
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(&token)
        .json(&chat_body("premium", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(chat(&hub, &token).await.0, 200);
}

#[tokio::test]
async fn rs256_tokens_are_verified_and_algorithms_can_be_restricted() {
    let rsa = rs256_key("rsa-1");
    let ec = es256_key("ec-1");
    let jwks = jwks_server(&[&rsa, &ec]).await;
    let spoke = start_spoke("acct-a", &["m1"]).await;
    let config = |algorithms: &str| {
        format!(
            r#"
[jwt]
issuer = "{ISS}"
audience = "{AUD}"
jwks_url = "{}"
{algorithms}

[[aliases]]
name = "demo"
candidates = [{{ provider = "p1", model = "m1" }}]

[[providers]]
name = "p1"
spokes = [{{ addr = "{}" }}]
health = {{ interval = "1s" }}
"#,
            jwks.url, spoke.addr
        )
    };
    let hub = start_hub(&config("")).await;
    hub.wait_healthy("p1", 1).await;
    // Default algorithms: RS256 and ES256 both verify.
    let (status, body) = chat(&hub, &sign(&rsa, "rsa-1", &claims("limited"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        chat(&hub, &sign(&ec, "ec-1", &claims("limited"))).await.0,
        200
    );
    // An RS256 token signed by another RSA key under the same kid: refused.
    let impostor = rs256_key("rsa-1");
    let (status, _) = chat(&hub, &sign(&impostor, "rsa-1", &claims("limited"))).await;
    assert_eq!(status, 401);
    // Expired RS256 token: refused.
    let mut expired = claims("limited");
    expired["exp"] = json!(now() - 3600);
    assert_eq!(chat(&hub, &sign(&rsa, "rsa-1", &expired)).await.0, 401);

    // A hub that accepts only RS256 refuses a valid ES256 token.
    let rs_only = start_hub(&config("algorithms = [\"RS256\"]")).await;
    rs_only.wait_healthy("p1", 1).await;
    assert_eq!(
        chat(&rs_only, &sign(&rsa, "rsa-1", &claims("limited")))
            .await
            .0,
        200
    );
    assert_eq!(
        chat(&rs_only, &sign(&ec, "ec-1", &claims("limited")))
            .await
            .0,
        401
    );
}

fn verifier() -> Arc<switchyard_hub::jwt::JwtVerifier> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, json!({"keys": [es256_key("k1").jwk]}).to_string()).unwrap();
    let cfg: switchyard_hub::jwt::JwtConfig = toml::from_str(&format!(
        "issuer = \"{ISS}\"\naudience = \"{AUD}\"\njwks_file = \"{}\"\njwks_min_refresh = \"1h\"\n",
        path.display()
    ))
    .unwrap();
    let mut errs = Vec::new();
    let settings = cfg.validate(&mut errs).unwrap();
    // The file is read here; the temp dir may go afterwards.
    switchyard_hub::jwt::JwtVerifier::new(settings)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn jwt_verifier_never_panics(
        header in prop_oneof![".{0,40}".prop_map(|s| s), "eyJ[A-Za-z0-9_-]{0,40}".prop_map(|s| s),
            Just(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"k1"}"#))],
        payload in "[A-Za-z0-9_=-]{0,60}",
        sig in "[A-Za-z0-9_=-]{0,90}",
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let v = rt.block_on(async { verifier() });
        let token = format!("{header}.{payload}.{sig}");
        prop_assert!(rt.block_on(v.verify(&token)).is_err());
    }
}
