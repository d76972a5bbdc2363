//! Config reload against in-process fake spokes: what is kept (spoke channels and health), what
//! is swapped, and that an invalid text changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;

fn config(a: &SpokeHandle, wa: u32, b: &SpokeHandle, wb: u32, model: &str, extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
[[aliases]]
name = "demo"
candidates = [{{ provider = "p1", model = "{model}" }}]
[[providers]]
name = "p1"
spokes = [{{ addr = "{}", weight = {wa} }}, {{ addr = "{}", weight = {wb} }}]
health = {{ interval = "1s" }}
{extra}
{}"#,
        a.addr,
        b.addr,
        tenants_toml()
    )
}

#[tokio::test]
async fn reload_keeps_unchanged_spokes_and_swaps_routing_atomically() {
    let a = start_spoke("acct-a", &["m1", "m2"]).await;
    let b = start_spoke("acct-b", &["m1", "m2"]).await;
    let c = start_spoke("acct-c", &["m1", "m2"]).await;
    let text = config(&a, 1, &b, 1, "m1", "");
    let hub =
        start_hub(&text[text.find("[[aliases]]").unwrap()..text.find("[[tenants]]").unwrap()])
            .await;
    hub.wait_healthy("p1", 2).await;
    let before = hub.hub.table.load().pools["p1"].spokes();

    // Weights change, b is replaced by c, the alias points at m2, a new provider appears.
    let next = config(
        &a,
        5,
        &c,
        1,
        "m2",
        &format!(
            "[[providers]]\nname = \"p2\"\nspokes = [{{ addr = \"{}\" }}]\n",
            b.addr
        ),
    );
    switchyard_hub::reload::reload(&hub.hub, &next, "v2").unwrap();
    let table = hub.hub.table.load();
    let after = table.pools["p1"].spokes();
    assert!(
        Arc::ptr_eq(&before[0], &after[0]),
        "spoke a must be kept (channel, health)"
    );
    assert_eq!(after[0].weight(), 5);
    assert!(after[0].is_healthy(), "kept spoke lost its health state");
    assert_eq!(after[1].addr, c.addr);
    assert!(table.pools.contains_key("p2"));
    assert_eq!(table.aliases["demo"].candidates[0].model, "m2");
    let status = hub.hub.live.status();
    assert_eq!((status.version.as_str(), status.reloads), ("v2", 1));

    // Requests now go to m2 and never to b.
    hub.wait_healthy("p1", 2).await;
    let b_calls = b.fake.calls();
    for _ in 0..10 {
        let r = client()
            .post(hub.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body("demo", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-switchyard-model"], "m2");
    }
    assert_eq!(b.fake.calls(), b_calls);

    // An invalid text: every problem listed, nothing changes.
    let bad = next
        .replace("model = \"m2\"", "model = \"\"")
        .replace("interval = \"1s\"", "interval = \"1ms\"");
    let err = switchyard_hub::reload::reload(&hub.hub, &bad, "v3").unwrap_err();
    assert!(err.contains("aliases[0].candidates[0].model"), "{err}");
    assert!(err.contains("providers[0].health.interval"), "{err}");
    assert_eq!(hub.hub.live.status().version, "v2");
    assert_eq!(
        hub.hub.table.load().aliases["demo"].candidates[0].model,
        "m2"
    );
    assert!(switchyard_hub::reload::reload(&hub.hub, "listen = [", "v4").is_err());

    // Removing a provider stops its pool.
    switchyard_hub::reload::reload(&hub.hub, &config(&a, 1, &c, 1, "m1", ""), "v5").unwrap();
    assert!(!hub.hub.table.load().pools.contains_key("p2"));
}

/// A request reads ONE table: it is authenticated, resolved and routed with the snapshot taken
/// when it arrived, even when a reload lands while its body is still arriving. Version 1 maps
/// the key to tenant `v1` (1000 requests/min) and the alias to pool `p1` (account `acct-a`);
/// version 2 maps the same key to tenant `v2` (2000 requests/min) and the alias to pool `p2`
/// (`acct-b`). The answer's `x-ratelimit-limit-requests` names the tenant version and
/// `x-switchyard-account` the route: they must agree.
#[tokio::test]
async fn a_request_in_flight_across_a_reload_sees_one_table() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SNAP_KEY: &str = "sk-snapshot-key";
    let a = start_spoke("acct-a", &["m1"]).await;
    let b = start_spoke("acct-b", &["m1"]).await;
    let version = |n: u32| {
        let (pool, rpm) = if n == 1 { ("p1", 1000) } else { ("p2", 2000) };
        format!(
            r#"
[[aliases]]
name = "demo"
candidates = [{{ provider = "{pool}", model = "m1" }}]
[[providers]]
name = "p1"
spokes = [{{ addr = "{}" }}]
health = {{ interval = "1s" }}
[[providers]]
name = "p2"
spokes = [{{ addr = "{}" }}]
health = {{ interval = "1s" }}
[[tenants]]
name = "v{n}"
api_key_sha256 = ["{}"]
aliases = ["*"]
requests_per_minute = {rpm}
"#,
            a.addr,
            b.addr,
            sha(SNAP_KEY)
        )
    };
    let hub = start_hub(&version(1)).await;
    hub.wait_healthy("p1", 1).await;
    hub.wait_healthy("p2", 1).await;

    // Version 1 throughout: tenant v1, account a.
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(SNAP_KEY)
        .json(&chat_body("demo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit-requests"], "1000");
    assert_eq!(r.headers()["x-switchyard-account"], "acct-a");

    // Head and half the body, then the reload, then the rest of the body.
    let body = serde_json::to_vec(&chat_body("demo", false)).unwrap();
    let mut conn = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: hub\r\nauthorization: Bearer {SNAP_KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    conn.write_all(first).await.unwrap();
    conn.flush().await.unwrap();
    // The hub has the head and waits for the body: the request holds its snapshot (the table's
    // Arc is then held by the hub, the request, and this check).
    eventually(Duration::from_secs(5), || {
        Arc::strong_count(&hub.hub.table.load_full()) > 2
    })
    .await;
    let full = format!(
        "listen = \"127.0.0.1:0\"\n{}\n{}",
        version(2),
        tenants_toml()
    );
    switchyard_hub::reload::reload(&hub.hub, &full, "v2").unwrap();
    conn.write_all(rest).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    let head = answer.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{answer}");
    assert!(
        head.contains("x-ratelimit-limit-requests: 1000")
            && head.contains("x-switchyard-account: acct-a"),
        "a request that arrived under version 1 must be served by version 1 alone: {answer}"
    );

    // A request that arrives after the reload sees version 2 alone.
    let r = client()
        .post(hub.url("/v1/chat/completions"))
        .bearer_auth(SNAP_KEY)
        .json(&chat_body("demo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit-requests"], "2000");
    assert_eq!(r.headers()["x-switchyard-account"], "acct-b");
}
