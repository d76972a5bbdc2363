//! Tenant isolation through the real binaries: tenant A cannot use tenant B's aliases nor
//! consume B's quota, whatever headers it sends (spoofed `x-switchyard-*`, `x-tenant`,
//! `x-request-id`, B's key in other headers, a second `Authorization` header).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod security_common;

use security_common::{Hub, hub_toml, openai_spoke, tenant};
use serde_json::{Value, json};
use switchyard_testkit::openai::FakeOpenAi;

const KEY_A: &str = "sk-tenant-a";
const KEY_B: &str = "sk-tenant-b";

/// Headers that try to pass A's request off as B's.
fn spoofs() -> Vec<Vec<(&'static str, String)>> {
    vec![
        vec![],
        vec![("x-switchyard-tenant", "b".into())],
        vec![("x-tenant", "b".into()), ("x-tenant-id", "b".into())],
        vec![
            ("x-request-id", "b".into()),
            ("x-switchyard-account", "b".into()),
        ],
        vec![("x-api-key", KEY_B.into()), ("api-key", KEY_B.into())],
        vec![
            ("x-switchyard-route-preference", "cheapest".into()),
            ("x-forwarded-user", "b".into()),
        ],
        vec![
            ("openai-organization", "b".into()),
            ("openai-project", "b".into()),
        ],
    ]
}

async fn send(
    hub: &Hub,
    auth: &[String],
    extra: &[(&'static str, String)],
    model: &str,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(hub.url("/v1/chat/completions"))
        .json(&json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}));
    for a in auth {
        req = req.header("authorization", a);
    }
    for (k, v) in extra {
        req = req.header(*k, v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn bearer(key: &str) -> Vec<String> {
    vec![format!("Bearer {key}")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_use_another_tenants_models_or_quota() {
    let fake = FakeOpenAi::start().await.unwrap();
    let spoke = openai_spoke(&fake.url(), "", &[]).await;
    let tenants = tenant("a", KEY_A, &["chat"], "requests_per_minute = 2")
        + &tenant("b", KEY_B, &["other"], "requests_per_minute = 3");
    let hub = Hub::start(&hub_toml(&spoke, &tenants, ""), &[]).await;

    // B's alias: 403 for A whatever it sends, and nothing reaches the upstream.
    for extra in spoofs() {
        let (status, body) = send(&hub, &bearer(KEY_A), &extra, "other").await;
        assert_eq!(status, 403, "{extra:?}: {body}");
        assert_eq!(body["error"]["code"], "model_not_allowed");
    }
    // Two Authorization headers (in either order) are refused rather than guessed at.
    for auth in [
        vec![format!("Bearer {KEY_A}"), format!("Bearer {KEY_B}")],
        vec![format!("Bearer {KEY_B}"), format!("Bearer {KEY_A}")],
    ] {
        let (status, _) = send(&hub, &auth, &[], "other").await;
        assert_eq!(status, 401, "{auth:?}");
    }
    assert_eq!(fake.total_calls(), 0);

    // A's model list shows only A's aliases.
    let models: Value = reqwest::Client::new()
        .get(hub.url("/v1/models"))
        .bearer_auth(KEY_A)
        .header("x-switchyard-tenant", "b")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["chat"]);

    // A spends its own 2 requests; every spoofed attempt after that is A's 429, not B's quota.
    let mut ok = 0;
    for extra in spoofs() {
        let (status, body) = send(&hub, &bearer(KEY_A), &extra, "chat").await;
        match status {
            200 => ok += 1,
            429 => assert!(
                body["error"]["message"].as_str().unwrap().contains("\"a\""),
                "{body}"
            ),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(ok, 2, "A got more than its own quota");

    // B still has all 3 of its requests.
    for i in 0..3 {
        let (status, body) = send(&hub, &bearer(KEY_B), &[], "other").await;
        assert_eq!(status, 200, "B request {i}: {body}");
    }
    let (status, _) = send(&hub, &bearer(KEY_B), &[], "other").await;
    assert_eq!(status, 429);
}
