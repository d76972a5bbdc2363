//! Every shared store on a real Redis Cluster that the test starts: six `redis-server
//! --cluster-enabled yes` nodes on free ports in a temporary directory, joined by `redis-cli
//! --cluster create … --cluster-replicas 1` (three primaries, one replica each).
//!
//! - three hubs sharing a 30/min tenant limit through the cluster admit exactly 30 of 90;
//! - the response cache written by one hub is read by another through the cluster;
//! - the primary that owns a loaded tenant's slot is killed (`kill -9`) during load: 0 failed
//!   requests, and once its replica has taken over, a tenant in that slot is limited exactly again;
//! - the whole cluster down: each hub enforces its share of the limit locally, as with one node.
//!
//! Real `hub` and `spoke` binaries (`cargo build --workspace --bins`); `redis-server` and
//! `redis-cli` from Debian's `redis-server` / `redis-tools` (`.ci/run` installs them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use sha2::Digest;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchyard_e2e::{Spoke, spoke_toml};
use switchyard_testkit::process::eventually;

/// One node of the test cluster.
struct Node {
    port: u16,
    child: Option<Child>,
}

/// Six nodes (three primaries with a replica each), killed on drop.
struct Cluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

fn free_ports(n: usize) -> Vec<u16> {
    // Hold every listener until all are chosen, so no port is handed out twice.
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(12);
        let mut nodes = Vec::new();
        for i in 0..6 {
            let (port, bus) = (ports[i], ports[i + 6]);
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--cluster-port",
                    &bus.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                    "--cluster-node-timeout",
                    "1000",
                    // Replicas sync at once (the default waits 5 s to batch them); a replica
                    // that never synced may not take over.
                    "--repl-diskless-sync-delay",
                    "0",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                ])
                .arg(dir.path())
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server must be installed");
            nodes.push(Node {
                port,
                child: Some(child),
            });
        }
        for n in &nodes {
            let port = n.port;
            assert!(
                eventually(Duration::from_secs(10), || async move {
                    cli(port, &["ping"]).trim() == "PONG"
                })
                .await,
                "redis node {port} did not start"
            );
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster { nodes, _dir: dir };
        cluster.wait_settled(Duration::from_secs(20)).await;
        // Three replicas, each synced with its primary.
        let ports: Vec<u16> = cluster.alive().collect();
        let ok = eventually(Duration::from_secs(20), || {
            let ports = ports.clone();
            async move {
                ports
                    .iter()
                    .filter(|p| {
                        cli(**p, &["info", "replication"]).contains("master_link_status:up")
                    })
                    .count()
                    == 3
            }
        })
        .await;
        assert!(
            ok,
            "replicas did not sync: {}",
            cli(ports[0], &["cluster", "nodes"])
        );
        cluster
    }

    fn alive(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
    }

    /// Every live node sees the cluster ok, with all 16384 slots served by live primaries.
    async fn wait_settled(&self, within: Duration) {
        let alive: Vec<u16> = self.alive().collect();
        let ok = eventually(within, || {
            let alive = alive.clone();
            async move {
                alive.iter().all(|p| {
                    let info = cli(*p, &["cluster", "info"]);
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                })
            }
        })
        .await;
        assert!(
            ok,
            "cluster did not settle: {}",
            cli(alive[0], &["cluster", "nodes"])
        );
    }

    /// Seed URLs (comma-separated), as a user would configure them.
    fn seeds(&self) -> String {
        self.nodes
            .iter()
            .take(3)
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The slot of keys tagged `{tag}`.
    fn slot(&self, tag: &str) -> u16 {
        let p = self.alive().next().unwrap();
        cli(p, &["cluster", "keyslot", &format!("{{{tag}}}")])
            .trim()
            .parse()
            .unwrap()
    }

    /// The port of the live primary serving `slot`.
    fn primary_of(&self, slot: u16) -> u16 {
        self.try_primary_of(slot)
            .unwrap_or_else(|| panic!("no primary for slot {slot}"))
    }

    /// The port of the primary serving `slot`, unless it is marked failed.
    fn try_primary_of(&self, slot: u16) -> Option<u16> {
        let p = self.alive().next().unwrap();
        for line in cli(p, &["cluster", "nodes"]).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            for range in &f[8..] {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>())
                    && (a..=b).contains(&slot)
                {
                    let addr = f[1].split('@').next().unwrap();
                    return addr.rsplit(':').next().unwrap().parse().ok();
                }
            }
        }
        None
    }

    fn kill(&mut self, port: u16) {
        let n = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn kill_all(&mut self) {
        let ports: Vec<u16> = self.nodes.iter().map(|n| n.port).collect();
        for p in ports {
            self.kill(p);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn sha(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// A hub process (the shared test support), with this file's helpers.
struct Hub(switchyard_e2e::Hub);

impl std::ops::Deref for Hub {
    type Target = switchyard_e2e::Hub;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Hub {
    async fn start(toml: &str) -> Hub {
        Hub(switchyard_e2e::Hub::start_ready(toml).await.unwrap())
    }

    fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.proc.url())
    }

    async fn quota_store(&self) -> String {
        let h: Value = reqwest::get(format!("{}/healthz", self.proc.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        h["quota_store"].as_str().unwrap_or_default().to_owned()
    }
}

async fn chat(client: &reqwest::Client, url: &str, key: &str, text: &str) -> reqwest::Response {
    client
        .post(url)
        .bearer_auth(key)
        .json(&json!({"model": "chat", "max_tokens": 10, "temperature": 0,
                      "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap()
}

async fn sim_spoke() -> Spoke {
    let toml = spoke_toml(
        "simulated",
        &[("us-east-1", "http://unused.invalid")],
        "[[models]]\nid = \"m\"\n",
        "[simulated]\nlatency = \"1ms\"\n",
    );
    Spoke::start(&toml).await.unwrap()
}

/// A hub config on `spoke` whose quota (and, with `cache`, response cache) live on `redis`,
/// with tenants `(name, limits)`; each tenant's API key is `sk-<name>`.
fn hub_toml(
    spoke: &Spoke,
    redis: &str,
    prefix: &str,
    cache: bool,
    tenants: &[(&str, &str)],
) -> String {
    let mut t = format!(
        "listen = \"127.0.0.1:0\"\n\
         [quota]\nstore = \"redis\"\nredis_url = \"{redis}\"\nkey_prefix = \"{prefix}\"\nreplicas = 3\ntimeout = \"250ms\"\n"
    );
    if cache {
        t.push_str(&format!(
            // A generous bound: this checks that the cache is shared through the cluster, and a
            // loaded CI machine can take longer than the default 250 ms to connect to six nodes.
            "[cache]\nstore = \"redis\"\nredis_url = \"{redis}\"\nkey_prefix = \"{prefix}\"\ntimeout = \"2s\"\n"
        ));
    }
    t.push_str(&format!(
        "[[aliases]]\nname = \"chat\"\ncandidates = [{{ provider = \"sim\", model = \"m\" }}]\n\
         [[providers]]\nname = \"sim\"\nspokes = [{{ addr = \"{}\" }}]\nhealth = {{ interval = \"1s\" }}\n",
        spoke.proc.addr()
    ));
    for (name, limits) in tenants {
        t.push_str(&format!(
            "[[tenants]]\nname = \"{name}\"\napi_key_sha256 = [\"{}\"]\naliases = [\"*\"]\n{limits}\n",
            sha(&format!("sk-{name}"))
        ));
    }
    t
}

/// 90 concurrent requests of tenant `name` spread over `hubs`; the count of each status.
async fn burst(hubs: &[Hub], name: &str) -> BTreeMap<u16, usize> {
    let client = reqwest::Client::new();
    let key = format!("sk-{name}");
    let mut tasks = Vec::new();
    for i in 0..90 {
        let (c, url, key) = (client.clone(), hubs[i % hubs.len()].chat_url(), key.clone());
        tasks.push(tokio::spawn(async move {
            chat(&c, &url, &key, &format!("burst {i}"))
                .await
                .status()
                .as_u16()
        }));
    }
    let mut counts = BTreeMap::new();
    for t in tasks {
        *counts.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    counts
}

fn prefix(tag: &str) -> String {
    format!("sycl-{tag}-{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_on_a_cluster_admit_exactly_the_limit_and_share_the_cache() {
    let cluster = Cluster::start().await;
    let spoke = sim_spoke().await;
    let toml = hub_toml(
        &spoke,
        &cluster.seeds(),
        &prefix("exact"),
        true,
        &[
            ("t", "requests_per_minute = 30"),
            ("c", "cache = { ttl = \"5m\" }"),
        ],
    );
    let hubs = [
        Hub::start(&toml).await,
        Hub::start(&toml).await,
        Hub::start(&toml).await,
    ];
    let counts = burst(&hubs, "t").await;
    assert_eq!(counts.get(&200), Some(&30), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&60), "{counts:?}");
    for h in &hubs {
        assert_eq!(h.quota_store().await, "ok", "{}", h.proc.logs());
        assert!(
            h.proc.count_log("connected to a Redis Cluster") >= 1,
            "{}",
            h.proc.logs()
        );
    }

    // The cache: hub 0 answers and stores; hubs 1 and 2 answer from the cluster.
    let client = reqwest::Client::new();
    let first = chat(&client, &hubs[0].chat_url(), "sk-c", "cached question").await;
    assert_eq!(first.status(), 200);
    let body: Value = first.json().await.unwrap();
    for h in &hubs[1..] {
        let r = chat(&client, &h.chat_url(), "sk-c", "cached question").await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()
                .get("x-switchyard-cache")
                .map(|v| v.to_str().unwrap()),
            Some("hit"),
            "another hub must find the answer in the cluster\n{}\n{}",
            hubs[0].proc.logs(),
            h.proc.logs()
        );
        let again: Value = r.json().await.unwrap();
        assert_eq!(
            again["choices"][0]["message"]["content"],
            body["choices"][0]["message"]["content"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_during_load_fails_nothing_and_limits_are_exact_once_settled() {
    let mut cluster = Cluster::start().await;
    let spoke = sim_spoke().await;
    let pre = prefix("failover");
    // The loaded tenant and, for the exactness check after the failover, a tenant whose keys
    // hash to the same shard (so the promoted replica serves it).
    let load_slot = cluster.slot("tenant:load");
    let victim = cluster.primary_of(load_slot);
    let exact = (0..500)
        .map(|i| format!("exact{i}"))
        .find(|n| cluster.primary_of(cluster.slot(&format!("tenant:{n}"))) == victim)
        .unwrap();
    let exact_limits = "requests_per_minute = 30".to_string();
    let toml = hub_toml(
        &spoke,
        &cluster.seeds(),
        &pre,
        false,
        &[
            ("load", "requests_per_minute = 1000000"),
            (exact.as_str(), exact_limits.as_str()),
        ],
    );
    let hubs = Arc::new([
        Hub::start(&toml).await,
        Hub::start(&toml).await,
        Hub::start(&toml).await,
    ]);

    // Steady load over the three hubs, bounded in count and time.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..6 {
        let (stop, hubs) = (stop.clone(), hubs.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut statuses = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) && statuses.len() < 5_000 {
                let url = hubs[(w + i) % 3].chat_url();
                statuses.push(
                    chat(&client, &url, "sk-load", &format!("load {w} {i}"))
                        .await
                        .status()
                        .as_u16(),
                );
                i += 1;
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = Instant::now();
    cluster.kill(victim);
    let c = &cluster;
    assert!(
        eventually(Duration::from_secs(30), || async move {
            c.try_primary_of(load_slot).is_some_and(|p| p != victim)
        })
        .await,
        "no replica took over from 127.0.0.1:{victim}"
    );
    cluster.wait_settled(Duration::from_secs(30)).await;
    let promoted = cluster.primary_of(load_slot);
    println!(
        "primary 127.0.0.1:{victim} killed; replica 127.0.0.1:{promoted} serves slot {load_slot} after {:.1} s",
        killed_at.elapsed().as_secs_f64()
    );
    assert_ne!(promoted, victim);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let mut statuses = Vec::new();
    for w in workers {
        statuses.extend(w.await.unwrap());
    }
    let failed = statuses.iter().filter(|s| **s != 200).count();
    println!(
        "{} requests during the failover, {failed} failed",
        statuses.len()
    );
    assert!(statuses.len() >= 100, "too little load: {}", statuses.len());
    assert_eq!(
        failed, 0,
        "requests failed during the failover: {statuses:?}"
    );

    // Settled: every hub back on the shared store, then the limit holds exactly again.
    for h in hubs.iter() {
        let client = reqwest::Client::new();
        let ok = eventually(Duration::from_secs(15), || {
            let (c, url) = (client.clone(), h.chat_url());
            async move {
                let _ = chat(&c, &url, "sk-load", "probe").await;
                h.quota_store().await == "ok"
            }
        })
        .await;
        assert!(ok, "hub never returned to the cluster: {}", h.proc.logs());
    }
    let counts = burst(&hubs[..], &exact).await;
    assert_eq!(
        counts.get(&200),
        Some(&30),
        "after the failover: {counts:?}"
    );
    assert_eq!(
        counts.get(&429),
        Some(&60),
        "after the failover: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cluster_down_means_local_limits() {
    let mut cluster = Cluster::start().await;
    let spoke = sim_spoke().await;
    let toml = hub_toml(
        &spoke,
        &cluster.seeds(),
        &prefix("down"),
        false,
        &[("t", "requests_per_minute = 30")],
    );
    let hub = Hub::start(&toml).await;
    let client = reqwest::Client::new();
    for i in 0..3 {
        let r = chat(&client, &hub.chat_url(), "sk-t", &format!("before {i}")).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(hub.quota_store().await, "ok");
    cluster.kill_all();
    // No request fails because the cluster is gone; this replica enforces 30 / 3 = 10 locally.
    let mut statuses = Vec::new();
    for i in 0..14 {
        statuses.push(
            chat(&client, &hub.chat_url(), "sk-t", &format!("after {i}"))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(hub.quota_store().await, "degraded: local limits");
}
