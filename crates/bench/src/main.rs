//! `switchyard-bench`: starts fake → spoke → hub from the release binaries (and the floor relay
//! beside them), runs every scenario directly, through the gateway and (wrk phase) through the
//! floor, and writes `docs/benchmarks.json` and the tables of `docs/benchmarks.md`. Run it
//! through `scripts/bench`.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Parser;
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
    /// Where to write the JSON figures.
    #[arg(long, default_value = "docs/benchmarks.json")]
    json: PathBuf,
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
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin_dir = match args.bin_dir.clone() {
        Some(d) => d,
        None => switchyard_testkit::process::bin_dir()?,
    };
    let floor_bin = floor_binary(&bin_dir)?;
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
    let stack = Stack::start(&bin_dir, &floor_bin).await?;
    if args.policy_only {
        let client = switchyard_bench::load::client(256)?;
        let phase = std::time::Duration::from_secs_f64(args.phase_secs);
        let cost = scenarios::policy_cost(&stack, &client, args.policy_rate, phase).await?;
        #[expect(clippy::print_stdout, reason = "the figures are this binary's output")]
        {
            println!("{}", serde_json::to_string_pretty(&cost)?);
        }
        return Ok(());
    }
    let results = scenarios::run(&stack, &plan).await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let report = Report::new(
        utc_date(now),
        args.command.clone(),
        args.build.clone(),
        results,
    );
    report
        .write_json(&args.json)
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
        args.json.display(),
        args.markdown.display()
    ));
    Ok(())
}
