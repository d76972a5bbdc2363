//! Shared building blocks for the hub and the spoke.
//!
//! Everything here is pure logic or process plumbing: no network I/O, so the arithmetic that
//! decides routing (backoff, token buckets, breakers) is unit- and property-testable with plain
//! values and explicit instants.

pub mod backoff;
pub mod breaker;
pub mod bucket;
pub mod config;
pub mod duration;
pub mod labels;
pub mod prom;
pub mod shutdown;
pub mod telemetry;
pub mod watch;
