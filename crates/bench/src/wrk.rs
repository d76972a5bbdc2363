//! The `wrk` phase's driver: runs Debian's `wrk` (a C load generator; the harness's own reqwest
//! client saturates at about a third of what the fake can serve, so throughput and per-request
//! CPU are driven by wrk) with a Lua script that POSTs the benchmark body and prints one
//! parseable result line from its `done()` hook.
//!
//! One run is `wrk -t1 -c{concurrency} -d{secs}s --latency -s SCRIPT URL`: one wrk thread,
//! `concurrency` keep-alive connections each sending its next request as soon as the previous
//! answer arrived (a closed loop). Latency is wrk's: from each request's send to its complete
//! response, in µs (HdrHistogram), so percentiles below 1 µs do not exist.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context as _, anyhow, bail};
use serde::Serialize;

use crate::stats::Percentiles;

/// The marker at the start of the line the script's `done()` prints.
const RESULT_MARKER: &str = "switchyard-wrk-result";

/// Where wrk sends its requests and what they carry.
#[derive(Clone, Debug)]
pub struct WrkTarget {
    /// `direct`, `hub` or `floor` (for reports).
    pub name: String,
    /// Full URL of the chat completions endpoint.
    pub url: String,
    /// `Authorization: Bearer` value, if any.
    pub bearer: Option<String>,
    /// The JSON request body (identical for every request; [`crate::stack::request_body`]).
    pub body: bytes::Bytes,
}

/// wrk's socket errors over a run (each a count of events, not of requests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SocketErrors {
    /// Connections that could not be opened.
    pub connect: u64,
    /// Failed or unexpectedly closed reads (a server closing a keep-alive connection counts).
    pub read: u64,
    /// Failed writes.
    pub write: u64,
    /// Requests without an answer within wrk's timeout (2 s).
    pub timeout: u64,
}

impl SocketErrors {
    /// All socket errors.
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// What one wrk run measured, plus the CPU its processes used (filled in by the caller).
#[derive(Clone, Debug, Default, Serialize)]
pub struct WrkPhase {
    /// `direct`, `hub` or `floor`.
    pub target: String,
    /// Open connections (wrk `-c`), each with one request in flight at a time.
    pub concurrency: usize,
    /// The run's length as wrk measured it, seconds.
    pub duration_s: f64,
    /// Responses wrk read completely (any status).
    pub requests: u64,
    /// Responses with status ≥ 400 (wrk's "Non-2xx or 3xx responses"; none of the servers here
    /// answers 1xx or 3xx), counted in `requests`.
    pub non_2xx: u64,
    /// Socket-level errors (not counted in `requests`).
    pub socket_errors: SocketErrors,
    /// `requests − non_2xx`.
    pub ok: u64,
    /// `ok / duration_s`, requests per second.
    pub throughput_rps: f64,
    /// wrk's latency distribution over every response (`n` = `requests`), milliseconds.
    pub latency: Percentiles,
    /// CPU time (user + system) per successful request, µs, of each process over the run:
    /// `hub`, `spoke`, `fake`, `floor-front`, `floor-back` and `wrk` (from `/proc`, 10 ms
    /// ticks; see [`crate::sys::cpu_micros`] and [`crate::sys::children_cpu_micros`]).
    pub cpu_us_per_request: BTreeMap<String, f64>,
}

impl WrkPhase {
    /// Non-2xx responses plus socket errors: a run with any is not a clean run.
    pub fn error_count(&self) -> u64 {
        self.non_2xx + self.socket_errors.total()
    }

    /// The summed CPU per request (µs) of the named processes (missing ones count 0).
    pub fn cpu_us(&self, processes: &[&str]) -> f64 {
        processes
            .iter()
            .map(|p| self.cpu_us_per_request.get(*p).copied().unwrap_or(0.0))
            .sum()
    }

    /// `"0"`, or what went wrong (`"12 non-2xx, 3 read"`).
    pub fn errors_text(&self) -> String {
        let e = &self.socket_errors;
        let parts: Vec<String> = [
            (self.non_2xx, "non-2xx"),
            (e.connect, "connect"),
            (e.read, "read"),
            (e.write, "write"),
            (e.timeout, "timeout"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() {
            "0".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Fails with an installation hint unless a `wrk` binary is on `PATH`.
pub async fn check_installed() -> anyhow::Result<()> {
    let spawned = tokio::process::Command::new("wrk")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    match spawned {
        // `wrk --version` prints its usage and exits 1: being able to run it is the check.
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "`wrk` is not installed (the wrk phase needs it): `apt-get install wrk`, or pass \
             `--no-wrk` to skip the phase"
        ),
        Err(e) => Err(anyhow!(e).context("running `wrk --version`")),
    }
}

/// The Lua script: a POST of `body` (as a long string), `Content-Type: application/json`,
/// `Authorization: Bearer {bearer}` when given, and a `done()` that prints one line:
/// `switchyard-wrk-result requests=N duration_us=N non2xx=N connect=N read=N write=N timeout=N
/// mean_us=F p50_us=N p90_us=N p99_us=N max_us=N`.
pub fn lua_script(bearer: Option<&str>, body: &[u8]) -> String {
    let body = String::from_utf8_lossy(body);
    // A long bracket whose level does not occur in the body: the body goes in verbatim.
    let mut level = 0;
    while body.contains(&format!("]{}]", "=".repeat(level))) {
        level += 1;
    }
    let eq = "=".repeat(level);
    let mut s = String::new();
    let _ = writeln!(s, "wrk.method = \"POST\"");
    let _ = writeln!(s, "wrk.body = [{eq}[{body}]{eq}]");
    let _ = writeln!(s, "wrk.headers[\"Content-Type\"] = \"application/json\"");
    if let Some(b) = bearer {
        let _ = writeln!(s, "wrk.headers[\"Authorization\"] = \"Bearer {b}\"");
    }
    let _ = writeln!(
        s,
        r#"function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("{RESULT_MARKER} requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d mean_us=%.3f p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end"#
    );
    s
}

/// Parses the `done()` line out of wrk's standard output into a [`WrkPhase`] (without CPU).
pub fn parse_result(stdout: &str, target: &str, concurrency: usize) -> anyhow::Result<WrkPhase> {
    let line = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(RESULT_MARKER))
        .ok_or_else(|| anyhow!("no `{RESULT_MARKER}` line in wrk's output"))?;
    let fields: BTreeMap<&str, &str> = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let num = |k: &str| -> anyhow::Result<f64> {
        fields
            .get(k)
            .ok_or_else(|| anyhow!("wrk result has no `{k}`"))?
            .parse::<f64>()
            .with_context(|| format!("wrk result `{k}`"))
    };
    let count = |k: &str| -> anyhow::Result<u64> { Ok(num(k)?.max(0.0) as u64) };
    let requests = count("requests")?;
    let non_2xx = count("non2xx")?;
    let duration_s = num("duration_us")? / 1e6;
    let ok = requests.saturating_sub(non_2xx);
    let ms = |k: &str| -> anyhow::Result<f64> { Ok(num(k)? / 1000.0) };
    Ok(WrkPhase {
        target: target.to_string(),
        concurrency,
        duration_s,
        requests,
        non_2xx,
        socket_errors: SocketErrors {
            connect: count("connect")?,
            read: count("read")?,
            write: count("write")?,
            timeout: count("timeout")?,
        },
        ok,
        throughput_rps: if duration_s > 0.0 {
            ok as f64 / duration_s
        } else {
            0.0
        },
        latency: Percentiles {
            n: usize::try_from(requests).unwrap_or(usize::MAX),
            mean_ms: ms("mean_us")?,
            p50_ms: ms("p50_us")?,
            p90_ms: ms("p90_us")?,
            p99_ms: ms("p99_us")?,
            max_ms: ms("max_us")?,
        },
        cpu_us_per_request: BTreeMap::new(),
    })
}

/// Runs `wrk -t1 -c{concurrency} -d{secs}s --latency` against `target` (the script is written
/// to `script_dir`) and returns its figures; an error if wrk fails or prints no result line.
pub async fn run(
    target: &WrkTarget,
    concurrency: usize,
    secs: u64,
    script_dir: &Path,
) -> anyhow::Result<WrkPhase> {
    let script = script_dir.join(format!("{}.lua", target.name));
    std::fs::write(&script, lua_script(target.bearer.as_deref(), &target.body))
        .with_context(|| format!("writing {}", script.display()))?;
    let out = tokio::process::Command::new("wrk")
        .arg("-t1")
        .arg(format!("-c{}", concurrency.max(1)))
        .arg(format!("-d{}s", secs.max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(&target.url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk (`apt-get install wrk` if it is missing)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk against {} exited with {}: {}{}",
            target.url,
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_result(&stdout, &target.name, concurrency).with_context(|| {
        format!(
            "wrk against {}; its output:\n{stdout}{}",
            target.url,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_and_result() -> anyhow::Result<()> {
        let s = lua_script(Some("sk-x"), br#"{"a":[[1]]}"#);
        assert!(s.contains(r#"wrk.body = [=[{"a":[[1]]}]=]"#), "{s}");
        assert!(s.contains("\"Bearer sk-x\""));
        assert!(!lua_script(None, b"{}").contains("Authorization"));

        let out = "Running 2s test\n  Latency Distribution\n     50%  100.00us\n\
                   switchyard-wrk-result requests=1000 duration_us=2000000 non2xx=10 connect=0 read=2 write=0 timeout=1 mean_us=120.500 p50_us=100 p90_us=150 p99_us=300 max_us=4000\n";
        let p = parse_result(out, "hub", 32)?;
        assert_eq!((p.requests, p.non_2xx, p.ok), (1000, 10, 990));
        assert_eq!(p.socket_errors.total(), 3);
        assert_eq!(p.error_count(), 13);
        assert_eq!(p.throughput_rps, 495.0);
        assert_eq!(p.latency.p50_ms, 0.1);
        assert_eq!(p.latency.max_ms, 4.0);
        assert_eq!(p.errors_text(), "10 non-2xx, 2 read, 1 timeout");
        assert!(parse_result("nothing", "hub", 1).is_err());
        Ok(())
    }
}
