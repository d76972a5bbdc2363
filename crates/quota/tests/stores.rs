//! The same contract, run against the in-memory store and a real Redis on 127.0.0.1
//! (`SWITCHYARD_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`; `.ci/run` starts one).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;
use switchyard_quota::{
    Admission, FallbackStore, Limit, Limits, MemoryStore, QuotaStore, RedisStore,
};

fn redis_url() -> String {
    std::env::var("SWITCHYARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A store with a fresh key prefix, so parallel tests never share keys.
async fn redis() -> RedisStore {
    let prefix = format!("sytest-{}", uuid_like());
    RedisStore::connect(&redis_url(), &prefix, Duration::from_secs(2))
        .await
        .expect("a Redis server must answer at SWITCHYARD_TEST_REDIS_URL (scripts/test starts one)")
}

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn admitted(a: &Admission) -> bool {
    matches!(a, Admission::Admitted { .. })
}

async fn requests_limit_is_exact(store: Arc<dyn QuotaStore>) {
    let l = Limits {
        requests_per_minute: Some(5),
        ..Default::default()
    };
    let mut ok = 0;
    for _ in 0..8 {
        if admitted(&store.admit("tenant:a", &l, 0).await.unwrap()) {
            ok += 1;
        }
    }
    assert_eq!(ok, 5);
    let a = store.admit("tenant:a", &l, 0).await.unwrap();
    let Admission::Refused {
        limit,
        retry_after,
        state,
    } = a
    else {
        panic!("admitted over the limit")
    };
    assert_eq!(limit, Limit::Requests);
    assert!(retry_after > Duration::from_secs(50) && retry_after <= Duration::from_secs(60));
    assert_eq!(state.requests.unwrap().remaining, 0);
    // Another scope is untouched.
    assert!(admitted(&store.admit("tenant:b", &l, 0).await.unwrap()));
}

async fn tokens_are_reserved_and_settled(store: Arc<dyn QuotaStore>) {
    let l = Limits {
        tokens_per_minute: Some(1_000),
        ..Default::default()
    };
    let Admission::Admitted { reservation, state } = store.admit("t", &l, 700).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(reservation.tokens, 700);
    assert!(state.tokens.unwrap().remaining <= 301);
    assert!(!admitted(&store.admit("t", &l, 700).await.unwrap()));
    store.settle(&reservation, &l, 100, 0.0).await.unwrap();
    let s = store.peek("t", &l).await.unwrap();
    assert!(s.tokens.unwrap().remaining >= 899, "{s:?}");
    assert!(admitted(&store.admit("t", &l, 700).await.unwrap()));
}

async fn budget_refuses_after_recorded_spend(store: Arc<dyn QuotaStore>) {
    let l = Limits {
        usd_per_day: Some(0.01),
        usd_per_month: Some(1.0),
        ..Default::default()
    };
    let Admission::Admitted { reservation, .. } = store.admit("t", &l, 1).await.unwrap() else {
        panic!()
    };
    store.settle(&reservation, &l, 1, 0.011).await.unwrap();
    let Admission::Refused { limit, .. } = store.admit("t", &l, 1).await.unwrap() else {
        panic!("over budget admitted")
    };
    assert_eq!(limit, Limit::DailyBudget);
}

#[tokio::test]
async fn memory_store_contract() {
    requests_limit_is_exact(Arc::new(MemoryStore::new())).await;
    tokens_are_reserved_and_settled(Arc::new(MemoryStore::new())).await;
    budget_refuses_after_recorded_spend(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn redis_store_contract() {
    requests_limit_is_exact(Arc::new(redis().await)).await;
    tokens_are_reserved_and_settled(Arc::new(redis().await)).await;
    budget_refuses_after_recorded_spend(Arc::new(redis().await)).await;
}

/// Three "replicas" (separate connections) hammering one scope concurrently admit exactly the
/// limit: the check-and-consume is atomic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replicas_admit_exactly_the_limit() {
    let first = redis().await;
    let prefix_store = |s: &RedisStore| s.clone();
    let replicas = [
        prefix_store(&first),
        prefix_store(&first),
        prefix_store(&first),
    ];
    let l = Limits {
        requests_per_minute: Some(30),
        tokens_per_minute: Some(100_000),
        ..Default::default()
    };
    let mut tasks = Vec::new();
    for i in 0..90 {
        let s = replicas[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            admitted(&s.admit("tenant:shared", &l, 10).await.unwrap())
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() {
            ok += 1;
        }
    }
    assert_eq!(ok, 30);
}

/// A private `redis-server` on a free port, killed on drop.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        PrivateRedis { child, port }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("private redis did not start");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_enforces_local_share_while_redis_is_down_and_resumes_after() {
    let port = PrivateRedis::free_port();
    let server = PrivateRedis::start(port);
    server.wait_ready().await;
    let url = format!("redis://127.0.0.1:{port}");
    let redis = RedisStore::connect(&url, "fb", Duration::from_millis(300))
        .await
        .unwrap();
    let store = FallbackStore::new(redis, 3);
    let l = Limits {
        requests_per_minute: Some(9),
        ..Default::default()
    };
    for _ in 0..2 {
        assert!(admitted(&store.admit("t", &l, 0).await.unwrap()));
    }
    assert!(store.is_shared_healthy());

    drop(server);
    // Redis is gone: no error reaches the caller; this replica enforces 9 / 3 = 3 locally.
    let mut ok = 0;
    for _ in 0..6 {
        if admitted(&store.admit("t", &l, 0).await.unwrap()) {
            ok += 1;
        }
    }
    assert_eq!(ok, 3);
    assert!(!store.is_shared_healthy());

    // Redis comes back (empty, it keeps nothing on disk): shared limits resume.
    let server = PrivateRedis::start(port);
    server.wait_ready().await;
    let mut healthy = false;
    for _ in 0..60 {
        let _ = store.admit("t", &l, 0).await.unwrap();
        if store.is_shared_healthy() {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "shared store never resumed");
    let s = store.peek("t", &l).await.unwrap();
    assert!(s.requests.unwrap().remaining >= 7, "{s:?}");
    drop(server);
}

#[tokio::test]
async fn connecting_to_nothing_fails_fast() {
    let t0 = std::time::Instant::now();
    let store = RedisStore::connect("redis://127.0.0.1:1", "x", Duration::from_millis(200)).await;
    assert!(store.is_err());
    assert!(t0.elapsed() < Duration::from_secs(3));
}
