//! Instructions per request, per tier, counted by callgrind: a figure that does not depend on
//! what else the (shared, 2-core) machine is doing, for comparing builds and for the CI check
//! (`scripts/check-instructions`).
//!
//! The fake runs natively; `spoke` and `hub` (and, when asked, the floor relay's `back` and
//! `front`) each run under `valgrind --tool=callgrind --instr-atstart=no --fair-sched=yes`.
//! Per chain (gateway: hub → spoke; floor: front → back):
//!
//! 1. `warmup` sequential requests with instrumentation off (connections, pools, lazy statics).
//! 2. `callgrind_control -i on` for each tier, 10 more requests, then `callgrind_control -z`
//!    (zero): counting starts from a warm process.
//! 3. **Idle baseline**: nothing for `idle_secs`, then `callgrind_control -d` (dump, which also
//!    zeroes). Tokio's timers (the config-file watch and health reporting every second, metrics
//!    upkeep, HTTP/2 keep-alive pings) and workers parking and waking run instructions that
//!    scale with wall time, not with requests; under valgrind a request is ~50× slower, so the
//!    measured window is long and that share is not negligible.
//! 4. **Measured**: `requests` sequential requests (the benchmark body), then a second dump.
//! 5. Per tier: `(measured − idle × measured_secs / idle_secs) / requests`, each window's length
//!    taken per tier between the control commands that open and close it.
//!
//! Each tier runs with `TOKIO_WORKER_THREADS=2` (the default is one worker per core), so the
//! figure does not change with the machine's core count. It does depend on the CPU model a
//! little: glibc picks its `memcpy`/`memcmp` variants by the CPU features valgrind reports, so
//! compare figures measured on the same kind of machine.
//!
//! The hub is configured with a 10-minute health interval for this mode (one check at start,
//! none during the windows) and a 60-s check timeout (valgrind is slow).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};
use switchyard_testkit::process::{Proc, write_config};

use crate::scenarios::progress;
use crate::stack::{
    API_KEY, Wrap, args, audit_file, binary, hub_config, request_body, spoke_config, start_fake,
    start_floor,
};

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct InstrPlan {
    /// Measured sequential requests per chain.
    pub requests: usize,
    /// Unmeasured requests before (instrumentation off).
    pub warmup: usize,
    /// Length of the idle-baseline window, seconds.
    pub idle_secs: f64,
    /// Also measure the floor relay's two tiers.
    pub floor: bool,
    /// Where to keep the callgrind dumps (`callgrind.PID.N`: N = 1 the idle window, 2 the
    /// measured one; read them with `callgrind_annotate`); `None` = a temporary directory.
    pub keep_dumps: Option<PathBuf>,
}

/// One tier's counts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TierCount {
    /// Instructions (callgrind `Ir`, user space only: the kernel's share of a request is not
    /// counted) per request, idle baseline subtracted.
    pub per_request: f64,
    /// Instructions over the measured window (the `requests` requests), raw.
    pub measured_ir: u64,
    /// The measured window's length, seconds.
    pub measured_secs: f64,
    /// Instructions over the idle window, raw.
    pub idle_ir: u64,
    /// The idle window's length, seconds.
    pub idle_secs: f64,
}

/// Instructions per request of each tier measured.
#[derive(Clone, Debug, Serialize)]
pub struct Instructions {
    /// Measured requests per chain.
    pub requests: usize,
    /// Unmeasured warm-up requests per chain.
    pub warmup: usize,
    /// How the figure is made (for readers of the JSON).
    pub method: String,
    /// `hub`, `spoke` and, when measured, `floor-front`, `floor-back`.
    pub tiers: BTreeMap<String, TierCount>,
    /// Wall time of the whole mode (start-up under valgrind included), seconds.
    pub wall_secs: f64,
}

impl Instructions {
    /// `per_request` of `tier`, if measured.
    pub fn per_request(&self, tier: &str) -> Option<f64> {
        self.tiers.get(tier).map(|t| t.per_request)
    }
}

/// A line of `method` for the JSON.
const METHOD: &str = "callgrind Ir per request, user space; warm processes; idle baseline \
                      (same processes, no requests) subtracted in proportion to wall time";

/// How long a process under valgrind may take to log `listening on`.
const READY_UNDER_VALGRIND: Duration = Duration::from_secs(180);

/// Measures the gateway's tiers (and the floor's, with `plan.floor`): starts the fake from
/// `bin_dir`, the tiers under callgrind, runs the windows, stops everything.
pub async fn measure(
    bin_dir: &Path,
    floor_bin: &Path,
    plan: &InstrPlan,
) -> anyhow::Result<Instructions> {
    let started = Instant::now();
    let valgrind = find_tool("valgrind")?;
    find_tool("callgrind_control")?;
    let temp = tempfile::Builder::new()
        .prefix("switchyard-callgrind")
        .tempdir()?;
    let out_dir = match &plan.keep_dumps {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => temp.path().to_path_buf(),
    };
    let fake = start_fake(bin_dir).await?;
    // Generous timeouts: every request is ~50× slower under valgrind.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .tcp_nodelay(true)
        .build()?;
    let mut tiers = BTreeMap::new();

    progress("instructions: starting spoke and hub under callgrind");
    let spoke_cfg = write_config(&spoke_config(&fake.url()), "toml")?;
    let spoke = spawn_under(
        &valgrind,
        &out_dir,
        "spoke",
        &binary(bin_dir, "spoke")?,
        &args(&["--config", &spoke_cfg.to_string_lossy()]),
    )
    .await?;
    let audit = audit_file()?;
    let hub_cfg = write_config(
        &hub_config(
            spoke.addr(),
            &audit,
            "{ interval = \"10m\", timeout = \"60s\" }",
        ),
        "toml",
    )?;
    let hub = spawn_under(
        &valgrind,
        &out_dir,
        "hub",
        &binary(bin_dir, "hub")?,
        &args(&["--config", &hub_cfg.to_string_lossy()]),
    )
    .await?;
    hub.wait_for_log("spoke healthy", Duration::from_secs(120))
        .await
        .context("the hub (under callgrind) never saw its spoke healthy")?;
    let url = format!("{}/v1/chat/completions", hub.url());
    tiers.extend(measure_chain(&client, &url, &[&hub, &spoke], &out_dir, plan).await?);
    drop((hub, spoke));

    if plan.floor {
        progress("instructions: starting the floor relay under callgrind");
        let lead = valgrind_args(&out_dir);
        let envs = tier_env();
        let wrap = Wrap {
            program: &valgrind,
            lead: &lead,
            envs: &envs,
            ready: READY_UNDER_VALGRIND,
        };
        let (back, front) = start_floor(floor_bin, &fake.url(), Some(wrap), &[]).await?;
        let url = format!("{}/v1/chat/completions", front.url());
        tiers.extend(measure_chain(&client, &url, &[&front, &back], &out_dir, plan).await?);
    }
    Ok(Instructions {
        requests: plan.requests,
        warmup: plan.warmup,
        method: METHOD.to_string(),
        tiers,
        wall_secs: started.elapsed().as_secs_f64(),
    })
}

/// The tiers' environment under callgrind: two tokio workers whatever the machine's core count
/// (the default is one per core, and idle workers parking and waking are part of the count),
/// so a CI machine with more cores measures the same program.
fn tier_env() -> Vec<(String, String)> {
    vec![("TOKIO_WORKER_THREADS".to_string(), "2".to_string())]
}

/// `valgrind`'s arguments before the program: callgrind, instrumentation off until asked, fair
/// thread scheduling, dumps named `callgrind.PID.N` in `out_dir`.
fn valgrind_args(out_dir: &Path) -> Vec<String> {
    vec![
        "--tool=callgrind".into(),
        "--instr-atstart=no".into(),
        "--fair-sched=yes".into(),
        format!("--callgrind-out-file={}/callgrind.%p", out_dir.display()),
    ]
}

async fn spawn_under(
    valgrind: &Path,
    out_dir: &Path,
    name: &str,
    program: &Path,
    program_args: &[String],
) -> anyhow::Result<Proc> {
    let mut all = valgrind_args(out_dir);
    all.push(program.to_string_lossy().into_owned());
    all.extend_from_slice(program_args);
    Proc::spawn_path(valgrind, name, &all, &tier_env(), READY_UNDER_VALGRIND).await
}

/// The windows of one chain; `procs` are its tiers under callgrind (named by [`Proc::name`]).
async fn measure_chain(
    client: &reqwest::Client,
    url: &str,
    procs: &[&Proc],
    out_dir: &Path,
    plan: &InstrPlan,
) -> anyhow::Result<BTreeMap<String, TierCount>> {
    let names: Vec<&str> = procs.iter().map(|p| p.name()).collect();
    progress(&format!(
        "instructions {}: {} warm-up requests",
        names.join(" → "),
        plan.warmup
    ));
    send(client, url, plan.warmup).await?;
    for p in procs {
        control(p.pid(), &["-i", "on"]).await?;
    }
    send(client, url, 10).await?;
    let mut opened = Vec::with_capacity(procs.len());
    for p in procs {
        control(p.pid(), &["-z"]).await?;
        opened.push(Instant::now());
    }
    tokio::time::sleep(Duration::from_secs_f64(plan.idle_secs)).await;
    let mut idle = Vec::with_capacity(procs.len());
    for (p, t0) in procs.iter().zip(&opened) {
        let ir = dump(p, out_dir).await?;
        let now = Instant::now();
        idle.push((ir, now.duration_since(*t0).as_secs_f64(), now));
    }
    progress(&format!(
        "instructions {}: {} measured requests",
        names.join(" → "),
        plan.requests
    ));
    send(client, url, plan.requests).await?;
    let mut out = BTreeMap::new();
    for (p, (idle_ir, idle_secs, t1)) in procs.iter().zip(idle) {
        let measured_ir = dump(p, out_dir).await?;
        let measured_secs = t1.elapsed().as_secs_f64();
        let background = idle_ir as f64 * measured_secs / idle_secs.max(1e-3);
        let count = TierCount {
            per_request: (measured_ir as f64 - background) / plan.requests.max(1) as f64,
            measured_ir,
            measured_secs,
            idle_ir,
            idle_secs,
        };
        progress(&format!(
            "instructions {} (pid {}): {:.0}/request ({} over {:.1} s measured, {} over {:.1} s idle)",
            p.name(),
            p.pid(),
            count.per_request,
            count.measured_ir,
            count.measured_secs,
            count.idle_ir,
            count.idle_secs
        ));
        out.insert(p.name().to_string(), count);
    }
    Ok(out)
}

/// `n` sequential requests with the benchmark body; an error on the first that is not a 200
/// with a body.
async fn send(client: &reqwest::Client, url: &str, n: usize) -> anyhow::Result<()> {
    let body = request_body(false);
    for i in 0..n {
        let r = client
            .post(url)
            .header("content-type", "application/json")
            .bearer_auth(API_KEY)
            .body(body.clone())
            .send()
            .await
            .with_context(|| format!("request {i} to {url}"))?;
        let status = r.status();
        let bytes = r.bytes().await?;
        if !status.is_success() || bytes.is_empty() {
            bail!(
                "request {i} to {url}: {status} {}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
    Ok(())
}

/// `callgrind_control ARGS PID`; an error unless it exits 0.
async fn control(pid: u32, a: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("callgrind_control")
        .args(a)
        .arg(pid.to_string())
        .kill_on_drop(true)
        .output()
        .await
        .context("running callgrind_control")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("No active callgrind runs") {
        bail!(
            "callgrind_control {} {pid}: {}{}{}",
            a.join(" "),
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Dumps `p`'s counters (which zeroes them) and returns the dump's total `Ir`.
async fn dump(p: &Proc, out_dir: &Path) -> anyhow::Result<u64> {
    let before = latest_dump(out_dir, p.pid())?;
    control(p.pid(), &["-d"]).await?;
    // The command returns once callgrind has acknowledged it; the file may lag a little.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = latest_dump(out_dir, p.pid())?;
        if let Some((n, path)) = &now
            && before.as_ref().is_none_or(|(b, _)| n > b)
        {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            if let Some(ir) = total_ir(&text) {
                return Ok(ir);
            }
        }
        if Instant::now() > deadline {
            bail!(
                "callgrind wrote no new dump for {} (pid {})",
                p.name(),
                p.pid()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The numbered dump `callgrind.{pid}.N` with the highest N, if any.
fn latest_dump(out_dir: &Path, pid: u32) -> anyhow::Result<Option<(u32, PathBuf)>> {
    let prefix = format!("callgrind.{pid}.");
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in std::fs::read_dir(out_dir)? {
        let entry = entry?;
        let file = entry.file_name();
        let Some(n) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, entry.path()));
        }
    }
    Ok(best)
}

/// The first event count (`Ir`) of a callgrind dump's `totals:` line (or `summary:`, which
/// older versions write instead); `None` while the file is incomplete.
pub fn total_ir(dump: &str) -> Option<u64> {
    let line = |key: &str| {
        dump.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    line("totals:").or_else(|| line("summary:"))
}

fn find_tool(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!("`{name}` is not installed (the instructions mode needs it): `apt-get install valgrind`")
        })
}

/// The figures recorded in the repository (`docs/instructions.json`) that the CI check compares
/// a new measurement with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Recorded {
    /// When it was measured, UTC `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: String,
    /// The commit the measured binaries were built from (`git rev-parse HEAD`, `-dirty` when the
    /// tree had changes).
    pub commit: String,
    /// Measured requests per chain.
    pub requests: usize,
    /// How the figure is made.
    pub method: String,
    /// Instructions per request of each tier (`hub`, `spoke`).
    pub instructions_per_request: BTreeMap<String, f64>,
}

impl Recorded {
    /// The record of `m`'s gateway tiers (`hub`, `spoke`).
    pub fn of(m: &Instructions, date: String, commit: String) -> Recorded {
        Recorded {
            date,
            commit,
            requests: m.requests,
            method: m.method.clone(),
            instructions_per_request: m
                .tiers
                .iter()
                .filter(|(k, _)| matches!(k.as_str(), "hub" | "spoke"))
                .map(|(k, v)| (k.clone(), v.per_request.round()))
                .collect(),
        }
    }

    /// Reads a record.
    pub fn read(path: &Path) -> anyhow::Result<Recorded> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes the record as pretty JSON.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// One tier's comparison with its recorded figure.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub tier: String,
    pub recorded: f64,
    /// `None` when the tier was not measured (which fails the check).
    pub measured: Option<f64>,
    /// (measured − recorded) / recorded × 100.
    pub change_pct: f64,
    /// Within the tolerance (or below the recorded figure).
    pub ok: bool,
}

/// Compares every recorded tier with `m`: a tier fails when it is more than `tolerance_pct`
/// above its recorded figure, or was not measured.
pub fn compare(recorded: &Recorded, m: &Instructions, tolerance_pct: f64) -> Vec<Verdict> {
    recorded
        .instructions_per_request
        .iter()
        .map(|(tier, &rec)| {
            let measured = m.per_request(tier);
            let change_pct = measured.map_or(0.0, |v| (v - rec) / rec.max(1.0) * 100.0);
            Verdict {
                tier: tier.clone(),
                recorded: rec,
                measured,
                change_pct,
                ok: measured.is_some() && change_pct <= tolerance_pct,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_compare() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 300717\n\nfn=x\n1 2\ntotals: 300717\n";
        assert_eq!(total_ir(dump), Some(300_717));
        assert_eq!(total_ir("events: Ir\nsummary: 5\n"), Some(5));
        assert_eq!(total_ir("events: Ir\n"), None);

        let tier = |per_request: f64| TierCount {
            per_request,
            measured_ir: 0,
            measured_secs: 0.0,
            idle_ir: 0,
            idle_secs: 0.0,
        };
        let m = Instructions {
            requests: 500,
            warmup: 50,
            method: METHOD.into(),
            tiers: BTreeMap::from([
                ("hub".to_string(), tier(111_000.0)),
                ("spoke".to_string(), tier(90_000.0)),
                ("floor-front".to_string(), tier(1.0)),
            ]),
            wall_secs: 1.0,
        };
        let rec = Recorded::of(&m, "d".into(), "c".into());
        assert_eq!(rec.instructions_per_request.len(), 2);
        let mut base = rec.clone();
        base.instructions_per_request
            .insert("hub".into(), 100_000.0);
        base.instructions_per_request
            .insert("spoke".into(), 100_000.0);
        let v = compare(&base, &m, 10.0);
        assert_eq!(v.len(), 2);
        assert!(!v[0].ok, "hub +11 % fails");
        assert!((v[0].change_pct - 11.0).abs() < 1e-9);
        assert!(v[1].ok, "spoke −10 % passes");
        base.instructions_per_request.insert("gone".into(), 1.0);
        assert!(
            compare(&base, &m, 10.0)
                .iter()
                .any(|v| !v.ok && v.measured.is_none())
        );
    }
}
