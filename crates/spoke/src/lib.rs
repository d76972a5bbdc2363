//! The spoke: one account's credentials, quotas and upstream adapters, with regional and model
//! failover inside the account. See `docs/architecture.md`.
//!
//! One port serves HTTP (`GET /healthz`, `POST /inference`) and gRPC (`switchyard.v1.Spoke`,
//! `grpc.health.v1.Health`), told apart by path and content type.

pub mod config;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod http;
pub mod observe;
pub mod reload;
pub mod routes;
pub mod server;

pub use config::SpokeConfig;
pub use engine::Engine;
pub use error::SpokeError;
