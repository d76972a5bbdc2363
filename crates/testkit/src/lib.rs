//! Test support for Switchyard's end-to-end tests.
//!
//! - [`bedrock::FakeBedrock`], [`openai::FakeOpenAi`] and [`anthropic::FakeAnthropic`]: wire-faithful fake upstreams (axum
//!   servers on `127.0.0.1:0` inside the test's tokio runtime) whose behavior per model is set
//!   through [`behavior::Behavior`] (Rust API or `POST /_control/behavior`), and which count and
//!   record the calls they get. Their shared API lives on [`fake::FakeServer`].
//! - [`process`]: start the real `spoke` / `hub` binaries as child processes, wait for
//!   `listening on ADDR`, collect their logs, send signals; plus [`process::eventually`].
//! - The `fake-upstream` binary runs a fake standalone (for demos and manual runs).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use switchyard_testkit::{Behavior, ErrorKind, FakeBedrock, Proc, eventually, write_config};
//!
//! let east = FakeBedrock::start().await?;
//! east.set_label("us-east-1");
//! east.set_default(Behavior::Error { error: ErrorKind::Throttling });
//! let config = write_config(
//!     &format!("provider = \"bedrock\"\n[[regions]]\nname = \"us-east-1\"\nendpoint = \"{}\"\n", east.url()),
//!     "toml",
//! )?;
//! let spoke = Proc::spawn(
//!     "spoke",
//!     &["--config".to_string(), config.display().to_string()],
//!     &[],
//! )
//! .await?;
//! // ... call spoke.url() / spoke.addr() ...
//! assert!(eventually(Duration::from_secs(5), || async { east.total_calls() > 0 }).await);
//! # Ok(()) }
//! ```

pub mod anthropic;
pub mod bedrock;
pub mod behavior;
pub mod dns;
pub mod fake;
pub mod openai;
pub mod pki;
pub mod process;

pub use anthropic::FakeAnthropic;
pub use bedrock::FakeBedrock;
pub use behavior::{AccountFault, Behavior, ErrorKind};
pub use fake::{
    FakeServer, RecordedRequest, ToolUse, completion_text, fake_embedding, schema_sample,
    thinking_signature, thinking_text,
};
pub use openai::FakeOpenAi;
pub use process::{Proc, binary_path, eventually, write_config};
