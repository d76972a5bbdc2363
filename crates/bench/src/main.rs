//! `switchyard-bench`: starts fake → spoke → hub from the release binaries (and the floor relay
//! beside them), runs every scenario directly, through the gateway and (wrk phase) through the
//! floor, then counts instructions per request under callgrind, and writes
//! `docs/benchmarks.json` and the tables of `docs/benchmarks.md`. Run it through `scripts/bench`.
//!
//! `--instructions` runs only the callgrind count (what `scripts/check-instructions` does), and
//! can compare it with, or record it as, `docs/instructions.json`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Parser;
use switchyard_bench::instructions::{self, InstrPlan, Recorded};
use switchyard_bench::report::{Report, utc_date};
use switchyard_bench::scenarios::{self, Plan, progress};
use switchyard_bench::stack::{Stack, floor_binary};

/// Gateway benchmark: direct vs hub → spoke (vs the floor relay), same run, same request.
#[derive(Debug, Parser)]
#[command(name = "switchyard-bench")]
struct Args {
    /// Directory holding the `hub`, `spoke` and `fake-upstream` binaries (default: this binary's
    /// directory, i.e. target/release). `floor-relay` is taken from this binary's directory
    /// first, then from here.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Seconds per measured phase (each rate point, each path; wrk runs are rounded to whole
    /// seconds).
    #[arg(long, default_value_t = 10.0)]
    phase_secs: f64,
    /// Tokio worker threads of the hub, the spoke and the floor relay (their
    /// `TOKIO_WORKER_THREADS`; default: Tokio's, one per core). Recorded in the report.
    #[arg(long)]
    gateway_worker_threads: Option<usize>,
    /// Open-loop rates (requests per second) for the added-latency scenario.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    rates: Vec<f64>,
    /// Closed-loop concurrency for throughput at saturation.
    #[arg(long, default_value_t = 32)]
    saturation_concurrency: usize,
    /// Concurrencies of the wrk phase (wrk -c; direct, hub and floor at each).
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    wrk_concurrency: Vec<usize>,
    /// Skip the wrk phase (it needs `wrk`: `apt-get install wrk`).
    #[arg(long)]
    no_wrk: bool,
    /// Open-loop rate of the streaming scenario.
    #[arg(long, default_value_t = 100.0)]
    stream_rate: f64,
    /// The fake's pause before each stream chunk in the streaming scenario (ms).
    #[arg(long, default_value_t = 5)]
    stream_chunk_delay_ms: u64,
    /// Streams held open at once for the memory scenario.
    #[arg(long, default_value_t = 1000)]
    concurrent_streams: usize,
    /// The fake's pause before each of the 12 chunks in the memory scenario (ms).
    #[arg(long, default_value_t = 250)]
    hold_chunk_delay_ms: u64,
    /// Open-loop rate of the content-policy scenario (the same request as a tenant without and
    /// with a policy).
    #[arg(long, default_value_t = 200.0)]
    policy_rate: f64,
    /// Run only the content-policy scenario and print its figures (no report files written).
    #[arg(long)]
    policy_only: bool,
    /// Run only the callgrind instruction count (hub and spoke under valgrind) and print its
    /// figures as JSON; written to `--json` only when that is given.
    #[arg(long)]
    instructions: bool,
    /// Skip the instruction count at the end of the full run.
    #[arg(long)]
    no_instructions: bool,
    /// Measured sequential requests of the instruction count.
    #[arg(long, default_value_t = 500)]
    instructions_requests: usize,
    /// Unmeasured requests before the instruction count.
    #[arg(long, default_value_t = 50)]
    instructions_warmup: usize,
    /// Idle-baseline window of the instruction count (s).
    #[arg(long, default_value_t = 5.0)]
    instructions_idle_secs: f64,
    /// With `--instructions`: also count the floor relay's tiers (the full run always does).
    #[arg(long)]
    instructions_floor: bool,
    /// Keep the callgrind dumps in this directory (`callgrind.PID.1` idle, `.2` measured; the
    /// processes' names and PIDs are in the progress lines), e.g. for `callgrind_annotate`.
    #[arg(long)]
    callgrind_dir: Option<PathBuf>,
    /// With `--instructions`: compare with this record (e.g. docs/instructions.json) and exit 1
    /// when a tier is more than `--tolerance-pct` above its recorded figure.
    #[arg(long)]
    check_instructions: Option<PathBuf>,
    /// With `--instructions`: write the measurement as the record at this path.
    #[arg(long)]
    record_instructions: Option<PathBuf>,
    /// The commit to write into the record.
    #[arg(long, default_value = "unknown")]
    commit: String,
    /// How far above its recorded figure a tier may be, in percent.
    #[arg(long, default_value_t = 10.0)]
    tolerance_pct: f64,
    /// Where to write the JSON figures (default docs/benchmarks.json; with `--instructions`,
    /// nowhere unless given).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Markdown file whose generated section receives the tables.
    #[arg(long, default_value = "docs/benchmarks.md")]
    markdown: PathBuf,
    /// The command line to record next to the figures.
    #[arg(long, default_value = "scripts/bench")]
    command: String,
    /// Build profile to record.
    #[arg(long, default_value = "release")]
    build: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let bin_dir = match args.bin_dir.clone() {
        Some(d) => d,
        None => switchyard_testkit::process::bin_dir()?,
    };
    let floor_bin = floor_binary(&bin_dir)?;
    let instr_plan = InstrPlan {
        requests: args.instructions_requests,
        warmup: args.instructions_warmup,
        idle_secs: args.instructions_idle_secs,
        floor: args.instructions_floor || !args.instructions,
        keep_dumps: args.callgrind_dir.clone(),
    };
    if args.instructions {
        return instructions_only(&args, &bin_dir, &floor_bin, &instr_plan).await;
    }
    let wrk_concurrency = if args.no_wrk {
        Vec::new()
    } else {
        args.wrk_concurrency.clone()
    };
    if !wrk_concurrency.is_empty() {
        switchyard_bench::wrk::check_installed().await?;
    }
    let plan = Plan {
        rates: args.rates.clone(),
        phase_secs: args.phase_secs,
        saturation_concurrency: args.saturation_concurrency,
        stream_rate: args.stream_rate,
        stream_chunk_delay_ms: args.stream_chunk_delay_ms,
        concurrent_streams: args.concurrent_streams,
        hold_chunk_delay_ms: args.hold_chunk_delay_ms,
        policy_rate: args.policy_rate,
        wrk_concurrency,
    };
    progress(&format!(
        "starting fake → spoke → hub from {}, floor relay {}",
        bin_dir.display(),
        floor_bin.display()
    ));
    let gateway_envs: Vec<(String, String)> = args
        .gateway_worker_threads
        .map(|n| ("TOKIO_WORKER_THREADS".to_string(), n.to_string()))
        .into_iter()
        .collect();
    let stack = Stack::start(&bin_dir, &floor_bin, &gateway_envs).await?;
    if args.policy_only {
        let client = switchyard_bench::load::client(256)?;
        let phase = std::time::Duration::from_secs_f64(args.phase_secs);
        let cost = scenarios::policy_cost(&stack, &client, args.policy_rate, phase).await?;
        #[expect(clippy::print_stdout, reason = "the figures are this binary's output")]
        {
            println!("{}", serde_json::to_string_pretty(&cost)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut results = scenarios::run(&stack, &plan).await?;
    drop(stack);
    if !args.no_instructions {
        results.instructions =
            Some(instructions::measure(&bin_dir, &floor_bin, &instr_plan).await?);
    }
    let report = Report::new(
        utc_date(now()),
        args.command.clone(),
        args.build.clone(),
        results,
    );
    let json = args
        .json
        .clone()
        .unwrap_or_else(|| PathBuf::from("docs/benchmarks.json"));
    report
        .write_json(&json)
        .context("writing the JSON report")?;
    report
        .write_markdown(&args.markdown)
        .context("writing the Markdown report")?;
    #[expect(clippy::print_stdout, reason = "the tables are this binary's output")]
    {
        println!("{}", report.markdown());
    }
    progress(&format!(
        "wrote {} and {}",
        json.display(),
        args.markdown.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// `--instructions`: measure, print, then write / record / check as asked. Exit code 1 when the
/// check fails.
async fn instructions_only(
    args: &Args,
    bin_dir: &std::path::Path,
    floor_bin: &std::path::Path,
    plan: &InstrPlan,
) -> anyhow::Result<ExitCode> {
    let m = instructions::measure(bin_dir, floor_bin, plan).await?;
    let text = serde_json::to_string_pretty(&m)?;
    #[expect(clippy::print_stdout, reason = "the figures are this binary's output")]
    {
        println!("{text}");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    let mut code = ExitCode::SUCCESS;
    if let Some(path) = &args.check_instructions {
        let recorded = Recorded::read(path)?;
        progress(&format!(
            "comparing with {} (measured {} on {})",
            path.display(),
            recorded.date,
            recorded.commit
        ));
        for v in instructions::compare(&recorded, &m, args.tolerance_pct) {
            let measured = v
                .measured
                .map_or_else(|| "not measured".to_string(), |x| format!("{x:.0}"));
            progress(&format!(
                "{}: {} instructions/request, recorded {:.0}: {:+.1} % (limit +{:.0} %) — {}",
                v.tier,
                measured,
                v.recorded,
                v.change_pct,
                args.tolerance_pct,
                match (v.ok, v.change_pct < -args.tolerance_pct) {
                    (false, _) => "FAILED",
                    (true, true) =>
                        "ok, well below the record (re-record it so a later rise shows)",
                    (true, false) => "ok",
                }
            ));
            if !v.ok {
                code = ExitCode::FAILURE;
            }
        }
    }
    if let Some(path) = &args.record_instructions {
        Recorded::of(&m, utc_date(now()), args.commit.clone()).write(path)?;
        progress(&format!("recorded {}", path.display()));
    }
    Ok(code)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
