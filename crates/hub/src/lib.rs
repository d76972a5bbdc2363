//! The Switchyard hub: the OpenAI-compatible entry point. It authenticates tenants, resolves model
//! aliases to candidates, picks a spoke (weighted by configured weight × reported headroom, power
//! of two choices on in-flight load), calls it over gRPC and fails over across spokes and
//! candidates within the request deadline, `max_attempts` and a retry budget.
//!
//! Modules, outside in: [`serve`] (sockets, TLS, graceful shutdown) → [`api`] (HTTP handlers,
//! SSE) and the other client surfaces ([`anthropic`], [`converse`], [`embeddings`]) → [`gateway`]
//! (the request path they share) → [`hub`] (state, failover loop) → [`routing`] (pure selection) and [`pool`] (spokes,
//! health) + [`dns`] (discovery). [`config`] parses and validates `hub --config FILE`.

pub mod admin;
pub mod anthropic;
pub mod api;
pub mod audit;
pub mod budget;
pub mod cache;
pub mod config;
pub mod converse;
pub mod dns;
pub mod embeddings;
pub mod error;
pub mod gateway;
pub mod hub;
pub mod jwt;
pub mod media;
pub mod observe;
pub mod openai;
pub mod policy;
pub mod pool;
pub mod prompts;
pub mod quota;
pub mod reload;
pub mod routing;
pub mod serve;

pub use api::router;
pub use config::{HubConfig, Settings};
pub use error::HubError;
pub use hub::Hub;
