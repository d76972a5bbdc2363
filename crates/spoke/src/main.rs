//! `spoke --config FILE`: parse flags and config, serve, exit.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Switchyard spoke: serves one account's models to hubs over gRPC, with regional and model
/// failover. Config reference: docs/configuration.md.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Path to the spoke's TOML config file.
    #[arg(long, env = "SWITCHYARD_SPOKE_CONFIG")]
    config: PathBuf,
    /// Only validate the config, print the result and exit.
    #[arg(long)]
    check: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match switchyard_spoke::config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    if args.check {
        eprintln!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    // Reload on SIGHUP and when the file changes.
    switchyard_spoke::reload::watch_file(args.config.clone());
    // Logging, plus OTLP tracing when configured; flushed when `_telemetry` drops at exit.
    let _telemetry = switchyard_core::telemetry::init("spoke", &config.telemetry);
    match switchyard_spoke::server::serve(config, switchyard_core::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
