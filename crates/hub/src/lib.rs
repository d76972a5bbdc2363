//! The Switchyard hub: the client-facing entry point. It authenticates tenants, resolves model
//! aliases to candidates, picks a spoke (weighted by configured weight × reported headroom, power
//! of two choices on in-flight load), calls it over gRPC and fails over across spokes and
//! candidates within the request deadline, `max_attempts` and a retry budget.
//!
//! Modules in layers, lowest first; a module imports only from its own layer (without cycles)
//! or from lower ones (`scripts/check-layers` enforces it in CI; docs/architecture.md draws it):
//!
//! 0. leaves — [`headers`], [`routing`] (pure selection), [`policy`], [`templates`], [`media`], [`jwt`]
//!   
//! 1. [`error`] — the one error type and its status / per-API shape tables
//! 2. [`model`] — runtime types every layer shares (tenant, alias, provider, route taken)
//! 3. [`outbound`] (one call to one spoke, pools, health checks, DNS), [`cache`] and [`store`]
//!    (the Responses API's stored responses)
//! 4. [`config`] — file input and `validate()`
//! 5. [`live`] — the swappable routing table (one snapshot per request) and reload
//! 6. [`observe`] — request record, spans, metrics, audit
//! 7. [`state`] — the process handles ([`Hub`]); [`reload`] — re-reads the config file and swaps
//!    the live table (it starts pools with the process's shutdown token, so it sits above state)
//! 8. [`gateway`] — the request path with no wire format: check → cache → admit → plan →
//!    failover → settle
//! 9. [`surface`] (one folder per client API, one shared per-request frame) and [`admin`]
//! 10. [`app`] — the route table and the middleware order
//! 11. [`serve`] — sockets, TLS, graceful shutdown; `main` parses flags and calls it

pub mod headers;
pub mod jwt;
pub mod media;
pub mod policy;
pub mod routing;
pub mod templates;

pub mod error;

pub mod model;

pub mod cache;
pub mod outbound;
pub mod store;

pub mod config;

pub mod live;

pub mod observe;

pub mod state;

pub mod reload;

pub mod gateway;

pub mod admin;
pub mod surface;

pub mod app;

pub mod serve;

pub use app::router;
pub use config::{HubConfig, Settings};
pub use error::HubError;
pub use state::Hub;
