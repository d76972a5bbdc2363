//! Runs one fake upstream standalone:
//! `fake-upstream --kind bedrock|openai --listen 127.0.0.1:0 --label X`.
//! Logs `listening on ADDR` (stderr) once ready; stops on SIGINT / SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use switchyard_testkit::{Behavior, FakeBedrock, FakeOpenAi, FakeServer};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FakeKind {
    Bedrock,
    Openai,
}

/// A fake Bedrock / OpenAI-compatible upstream for local demos and manual runs.
#[derive(Debug, Parser)]
#[command(name = "fake-upstream")]
struct Args {
    /// Which API to fake.
    #[arg(long, value_enum)]
    kind: FakeKind,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Label included in every completion text (e.g. the region name).
    #[arg(long, default_value = "fake")]
    label: String,
    /// Default behavior as JSON, e.g. '{"kind":"slow","ms":200}'.
    #[arg(long)]
    behavior: Option<String>,
    /// Pause before each stream chunk, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let default: Option<Behavior> = args
        .behavior
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .context("--behavior is not a valid Behavior JSON")?;
    match args.kind {
        FakeKind::Bedrock => {
            let fake = FakeBedrock::start_on(args.listen).await?;
            run(&fake, &fake.url(), &args, default).await
        }
        FakeKind::Openai => {
            let fake = FakeOpenAi::start_on(args.listen).await?;
            run(&fake, &fake.url(), &args, default).await
        }
    }
}

async fn run(
    fake: &FakeServer,
    url: &str,
    args: &Args,
    default: Option<Behavior>,
) -> anyhow::Result<()> {
    fake.set_label(&args.label);
    fake.set_chunk_delay(Duration::from_millis(args.chunk_delay_ms));
    if let Some(b) = default {
        fake.set_default(b);
    }
    eprintln!(
        "fake-upstream ({:?}, label {}) listening on {} url={url}",
        args.kind,
        args.label,
        fake.addr()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for ctrl-c")?,
        _ = term.recv() => {}
    }
    eprintln!(
        "fake-upstream: shutting down after {} calls",
        fake.total_calls()
    );
    Ok(())
}
