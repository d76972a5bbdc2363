//! Switchyard's benchmark harness.
//!
//! - [`load`]: the load generator — open loop (fixed rate; latency from each request's scheduled
//!   send time, so back-pressure cannot hide queueing) and closed loop (fixed concurrency), unary
//!   and SSE streams (time to first token, gaps between chunks), over a pooled keep-alive client.
//! - [`stack`]: the system under test as real processes — `fake-upstream` (OpenAI-compatible, no
//!   artificial delay), one `spoke` and one `hub`, and the floor relay's two processes.
//! - [`floor`]: the floor relay (`floor-relay` binary): the gateway's two hops with the same
//!   libraries and none of its logic.
//! - [`wrk`]: drives Debian's `wrk` (throughput, latency and CPU per request at fixed
//!   concurrency: direct, hub → spoke, floor).
//! - [`instructions`]: callgrind instructions per request per tier, and the record
//!   (`docs/instructions.json`) the CI check compares them with.
//! - [`scenarios`]: each scenario run directly against the fake and through hub → spoke in the
//!   same run: added latency at fixed rates, throughput at saturation, added TTFT and chunk gap,
//!   RSS at idle and with many concurrent streams, the wrk phase.
//! - [`report`]: JSON and the Markdown tables of `docs/benchmarks.md`.
//!
//! `scripts/bench` is the one command that builds the release binaries and runs it all.

pub mod floor;
pub mod instructions;
pub mod load;
pub mod report;
pub mod scenarios;
pub mod stack;
pub mod stats;
pub mod sys;
pub mod wrk;
