//! `floor-relay`: the floor of the gateway's two hops, as two processes (see
//! `switchyard_bench::floor`):
//!
//! ```text
//! floor-relay back  --listen 127.0.0.1:0 --upstream http://127.0.0.1:PORT   # Infer, InferStream → upstream
//! floor-relay front --listen 127.0.0.1:0 --back 127.0.0.1:PORT              # HTTP/1.1 → back
//! ```
//!
//! Each logs `floor-relay {back|front} listening on ADDR` on stderr once bound and runs until
//! killed. `switchyard-bench` starts both next to fake → spoke → hub.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

/// Minimal two-hop relay (HTTP/1.1 JSON or SSE → gRPC → HTTP/1.1 JSON or SSE) with the gateway's
/// libraries and none of its logic.
#[derive(Debug, Parser)]
#[command(name = "floor-relay")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// The spoke's hop: a tonic server for `switchyard.v1.Spoke/Infer` and `InferStream` that
    /// calls the upstream.
    Back {
        /// Address to listen on (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// The OpenAI-compatible upstream's base URL (`/v1/chat/completions` is appended).
        #[arg(long)]
        upstream: String,
    },
    /// The hub's hop: `POST /v1/chat/completions` (axum; `"stream": true` answers SSE) relayed to
    /// the back over gRPC.
    Front {
        /// Address to listen on (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// The back's address (`HOST:PORT`).
        #[arg(long)]
        back: SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().mode {
        Mode::Back { listen, upstream } => {
            switchyard_bench::floor::run_back(listen, &upstream).await
        }
        Mode::Front { listen, back } => switchyard_bench::floor::run_front(listen, back).await,
    }
}
