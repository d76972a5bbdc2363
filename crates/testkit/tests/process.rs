//! The process harness, exercised with the crate's own `fake-upstream` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_testkit::process::{Proc, binary_path, eventually, run_output, write_config};

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

async fn chat(url: &str, model: &str) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .post(format!("{url}/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "ping"}]}))
        .send()
        .await
}

#[test]
fn binary_path_finds_the_crate_binary() {
    let p = binary_path("fake-upstream").unwrap();
    assert_eq!(
        p,
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_fake-upstream"))
    );
    let err = binary_path("no-such-binary").unwrap_err().to_string();
    assert!(err.contains("cargo build --workspace --bins"), "{err}");
}

#[test]
fn write_config_writes_a_temp_file() {
    let p = write_config("listen = \"127.0.0.1:0\"\n", "toml").unwrap();
    assert!(p.to_string_lossy().ends_with(".toml"));
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "listen = \"127.0.0.1:0\"\n"
    );
    let path = p.to_path_buf();
    drop(p);
    assert!(!path.exists());
}

#[tokio::test]
async fn spawn_serve_and_signals() {
    let mut p = Proc::spawn(
        "fake-upstream",
        &args(&["--kind", "openai", "--label", "proc-test"]),
        &[("RUST_LOG".to_string(), "debug".to_string())],
    )
    .await
    .unwrap();
    assert!(p.pid() > 0);
    assert_eq!(p.addr().ip().to_string(), "127.0.0.1");
    assert_ne!(p.addr().port(), 0);
    assert!(p.logs().contains("listening on"));
    assert_eq!(p.listening_addrs(), vec![p.addr()]);

    let url = format!("{}/v1", p.url());
    let body: Value = chat(&url, "m").await.unwrap().json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from proc-test (m): ping"
    );

    // SIGSTOP: the process answers nothing; SIGCONT: it answers again.
    p.sigstop().unwrap();
    let r = tokio::time::timeout(Duration::from_millis(300), chat(&url, "m")).await;
    assert!(r.is_err(), "a stopped process must not answer");
    p.sigcont().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            matches!(chat(&url, "m").await, Ok(r) if r.status() == 200)
        })
        .await
    );

    // SIGTERM: clean exit, logged.
    p.sigterm().unwrap();
    let status = p.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "{status}");
    let line = p
        .wait_for_log("shutting down", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(line.contains("calls"));
    assert!(
        p.sigterm().is_err(),
        "signalling a reaped process is refused"
    );
    assert_eq!(p.try_exit_status().unwrap(), Some(status));
}

#[tokio::test]
async fn kill9_and_wait_exit() {
    use std::os::unix::process::ExitStatusExt;
    let mut p = Proc::spawn("fake-upstream", &args(&["--kind", "bedrock"]), &[])
        .await
        .unwrap();
    p.kill9().unwrap();
    let status = p.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert_eq!(status.signal(), Some(9));
    assert_eq!(p.count_log("listening on"), 1);
}

#[tokio::test]
async fn wait_for_log_times_out_with_logs() {
    let p = Proc::spawn("fake-upstream", &args(&["--kind", "bedrock"]), &[])
        .await
        .unwrap();
    let err = p
        .wait_for_log("never printed", Duration::from_millis(100))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("never printed") && err.contains("listening on"),
        "{err}"
    );
}

#[tokio::test]
async fn spawn_reports_early_exit_with_output() {
    let err = Proc::spawn("fake-upstream", &args(&["--kind", "bogus"]), &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("before logging `listening on`"), "{err}");
    assert!(
        err.contains("bogus"),
        "the child's stderr is included: {err}"
    );

    let out = run_output(
        "fake-upstream",
        &args(&["--help"]),
        &[],
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--kind"));
}

#[tokio::test]
async fn eventually_polls_until_true_or_timeout() {
    let mut n = 0;
    assert!(
        eventually(Duration::from_secs(5), || {
            n += 1;
            let done = n >= 3;
            async move { done }
        })
        .await
    );
    assert_eq!(n, 3);
    let t = std::time::Instant::now();
    assert!(!eventually(Duration::from_millis(120), || async { false }).await);
    assert!(t.elapsed() >= Duration::from_millis(120));
}
