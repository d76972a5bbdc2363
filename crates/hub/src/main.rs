//! `hub --config FILE`: parse flags and config, then serve (see the `switchyard_hub` library).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use switchyard_hub::HubConfig;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Switchyard hub: OpenAI-compatible gateway routing to spoke pools over gRPC.
#[derive(Debug, Parser)]
#[command(name = "hub", version)]
struct Args {
    /// TOML config file (see docs/configuration.md).
    #[arg(long, env = "SWITCHYARD_HUB_CONFIG")]
    config: PathBuf,
    /// Validate the config, report every problem, and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match HubConfig::load(&args.config).and_then(|c| c.validate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hub: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        eprintln!("hub: config OK");
        return ExitCode::SUCCESS;
    }
    // Logging, plus OTLP tracing when configured; flushed when `_telemetry` drops at exit.
    let _telemetry = switchyard_core::telemetry::init("hub", &settings.telemetry);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hub: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Reloads on SIGHUP and when the file changes.
    let served = rt.block_on(switchyard_hub::serve::run(
        settings,
        Some(args.config),
        switchyard_hub::serve::shutdown_signal(),
    ));
    // Requests the drain cut off end here (their records write their audit lines); then every
    // buffered audit line is written, waiting at most 5 s on a blocked output.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    switchyard_hub::observe::audit::close_all(std::time::Duration::from_secs(5));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "hub failed");
            ExitCode::FAILURE
        }
    }
}
