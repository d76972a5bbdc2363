//! Running the real binaries (`spoke`, `hub`, `fake-upstream`) as child processes.
//!
//! [`Proc::spawn`] starts a binary from the cargo target dir (see [`binary_path`]), collects its
//! stdout/stderr lines (echoed to the test's stderr as `[name:PID] line` unless
//! `SWITCHYARD_TEST_QUIET=1`), and waits until it logs `listening on ADDR`. The child is killed
//! when the [`Proc`] is dropped.

use std::ffi::OsStr;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long [`Proc::spawn`] waits for `listening on`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The marker [`Proc::spawn`] waits for; the next token is the address.
pub const LISTENING_MARKER: &str = "listening on ";

/// Environment every spawned process gets (overridable through `envs`).
const DEFAULT_ENV: &[(&str, &str)] = &[
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
    ("RUST_LOG", "info"),
    ("NO_COLOR", "1"),
    ("RUST_BACKTRACE", "1"),
];

/// Inherited variables removed so a developer's real AWS setup never leaks into a test.
const REMOVED_ENV: &[&str] = &[
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

/// The directory holding the workspace binaries: `$SWITCHYARD_BIN_DIR` if set, else the directory
/// of the running test executable, minus a trailing `deps` (so `target/debug/`).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SWITCHYARD_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("locating the current executable")?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", exe.display()))?
        .to_path_buf();
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.pop();
    }
    Ok(dir)
}

/// The path of workspace binary `name` (e.g. `"spoke"`, `"hub"`, `"fake-upstream"`); an error if
/// it has not been built.
pub fn binary_path(name: &str) -> anyhow::Result<PathBuf> {
    let dir = bin_dir()?;
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!(
            "binary `{name}` not found at {} — run `cargo build --workspace --bins` first \
             (or set SWITCHYARD_BIN_DIR to the directory holding it)",
            path.display()
        );
    }
    Ok(path)
}

/// Writes `contents` to a fresh temporary file named `switchyard-*.{ext}` (`ext` with or without
/// the dot); the file is deleted when the returned path is dropped.
pub fn write_config(contents: &str, ext: &str) -> anyhow::Result<tempfile::TempPath> {
    let ext = ext.trim_start_matches('.');
    let suffix = if ext.is_empty() {
        String::new()
    } else {
        format!(".{ext}")
    };
    let mut file = tempfile::Builder::new()
        .prefix("switchyard-")
        .suffix(&suffix)
        .tempfile()
        .context("creating a temporary config file")?;
    file.write_all(contents.as_bytes())
        .context("writing the temporary config file")?;
    file.flush()?;
    Ok(file.into_temp_path())
}

/// Polls `f` every 50 ms until it returns true (→ true) or `timeout` passes (→ false). `f` is
/// always tried at least once, and once more at the deadline.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep_until((now + Duration::from_millis(50)).min(deadline)).await;
    }
}

/// Collected output lines of a child, with a change counter to wait on.
#[derive(Debug)]
struct LogBuf {
    lines: Mutex<Vec<String>>,
    changed: watch::Sender<usize>,
}

impl LogBuf {
    fn push(&self, line: String) {
        let n = {
            let mut lines = self.lines.lock();
            lines.push(line);
            lines.len()
        };
        self.changed.send_replace(n);
    }

    fn text(&self) -> String {
        let lines = self.lines.lock();
        let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines.iter() {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    fn find(&self, needle: &str) -> Option<String> {
        self.lines
            .lock()
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
    }
}

/// A running child process (killed with SIGKILL when dropped).
#[derive(Debug)]
pub struct Proc {
    name: String,
    pid: u32,
    addr: SocketAddr,
    child: Child,
    logs: Arc<LogBuf>,
    readers: Vec<JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

type AddrSlot = Arc<Mutex<Option<oneshot::Sender<SocketAddr>>>>;

impl Proc {
    /// Spawns workspace binary `bin_name` (see [`binary_path`]) with `args` and `envs` (on top of
    /// the inherited environment plus `AWS_EC2_METADATA_DISABLED=true`, `AWS_ACCESS_KEY_ID=test`,
    /// `AWS_SECRET_ACCESS_KEY=test`, `AWS_REGION=us-east-1`, `RUST_LOG=info`, `NO_COLOR=1`,
    /// all overridable), and waits up to 60 s for its first `listening on ADDR` line.
    pub async fn spawn(
        bin_name: &str,
        args: &[String],
        envs: &[(String, String)],
    ) -> anyhow::Result<Proc> {
        let path = binary_path(bin_name)?;
        Self::spawn_path(&path, bin_name, args, envs, READY_TIMEOUT).await
    }

    /// [`Proc::spawn`] for any executable, with `name` as the log prefix and an explicit
    /// readiness timeout.
    pub async fn spawn_path(
        path: &Path,
        name: &str,
        args: &[String],
        envs: &[(String, String)],
        ready_timeout: Duration,
    ) -> anyhow::Result<Proc> {
        let mut cmd = command(path, args, envs);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", path.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("{name} exited immediately"))?;
        // Echo prefix; `SWITCHYARD_TEST_QUIET=1` turns the echo off.
        let prefix = (std::env::var_os("SWITCHYARD_TEST_QUIET")
            .is_none_or(|v| v.is_empty() || v == "0"))
        .then(|| format!("[{name}:{pid}]"));
        let (changed, _) = watch::channel(0);
        let logs = Arc::new(LogBuf {
            lines: Mutex::new(Vec::new()),
            changed,
        });
        let (addr_tx, mut addr_rx) = oneshot::channel();
        let slot: AddrSlot = Arc::new(Mutex::new(Some(addr_tx)));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(read_lines(
                out,
                prefix.clone(),
                logs.clone(),
                slot.clone(),
            )));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(read_lines(
                err,
                prefix.clone(),
                logs.clone(),
                slot.clone(),
            )));
        }
        drop(slot);

        let deadline = tokio::time::sleep(ready_timeout);
        tokio::pin!(deadline);
        let exited = |status: std::io::Result<ExitStatus>| match status {
            Ok(s) => format!("exited ({s}) before logging `listening on`"),
            Err(e) => format!("could not be waited for: {e}"),
        };
        let outcome = tokio::select! {
            biased;
            addr = &mut addr_rx => match addr {
                Ok(addr) => Ok(addr),
                // Both output pipes closed: the process is (almost certainly) exiting.
                Err(_) => Err(match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                    Ok(status) => exited(status),
                    Err(_) => "closed its output without logging `listening on`".to_string(),
                }),
            },
            status = child.wait() => Err(exited(status)),
            () = &mut deadline => Err(format!("did not log `listening on` within {ready_timeout:?}")),
        };
        match outcome {
            Ok(addr) => Ok(Proc {
                name: name.to_string(),
                pid,
                addr,
                child,
                logs,
                readers,
                exit: None,
            }),
            Err(why) => {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                for r in readers {
                    let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
                }
                Err(anyhow!(
                    "{name} (pid {pid}, {}) {why}; its output:\n{}",
                    path.display(),
                    logs.text()
                ))
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The address of the first `listening on` line.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The binary name used as log prefix.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything the process printed so far (stdout and stderr interleaved by arrival, ANSI
    /// colours stripped), one line per line.
    pub fn logs(&self) -> String {
        self.logs.text()
    }

    /// The addresses of every `listening on` line so far, in order.
    pub fn listening_addrs(&self) -> Vec<SocketAddr> {
        self.logs
            .lines
            .lock()
            .iter()
            .filter_map(|l| parse_listening(l))
            .collect()
    }

    /// Sends `signal` to the process; an error if it has already been reaped.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        if let Some(status) = self.exit {
            bail!(
                "{} (pid {}) already exited ({status}); not sending {signal}",
                self.name,
                self.pid
            );
        }
        let pid = i32::try_from(self.pid).context("pid out of range")?;
        nix::sys::signal::kill(Pid::from_raw(pid), signal)
            .with_context(|| format!("sending {signal} to {} (pid {})", self.name, self.pid))
    }

    /// SIGKILL.
    pub fn kill9(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGKILL)
    }

    /// SIGTERM (graceful shutdown / drain).
    pub fn sigterm(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGTERM)
    }

    /// SIGSTOP (freeze: the process keeps its sockets but answers nothing).
    pub fn sigstop(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    /// SIGCONT (thaw after [`Proc::sigstop`]).
    pub fn sigcont(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGCONT)
    }

    /// Waits up to `timeout` for the process to exit; then also waits (briefly) for its remaining
    /// output so [`Proc::logs`] is complete.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.exit {
            return Ok(status);
        }
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.with_context(|| format!("waiting for {}", self.name))?,
            Err(_) => bail!(
                "{} (pid {}) did not exit within {timeout:?}; its output:\n{}",
                self.name,
                self.pid,
                self.logs()
            ),
        };
        self.exit = Some(status);
        for r in std::mem::take(&mut self.readers) {
            let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
        }
        Ok(status)
    }

    /// The exit status if the process has exited (non-blocking).
    pub fn try_exit_status(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait()?;
        }
        Ok(self.exit)
    }

    /// Waits up to `timeout` for an output line containing `needle` (searching all output since
    /// the start) and returns it; on timeout an error with the output so far.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let mut changed = self.logs.changed.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            changed.mark_unchanged();
            if let Some(line) = self.logs.find(needle) {
                return Ok(line);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives as long as `self`; a closed channel cannot happen, but do not
                // spin if it does.
                Ok(Err(_)) | Err(_) => {
                    return self.logs.find(needle).ok_or_else(|| {
                        anyhow!(
                            "{} (pid {}) did not log `{needle}` within {timeout:?}; its output:\n{}",
                            self.name,
                            self.pid,
                            self.logs()
                        )
                    });
                }
            }
        }
    }

    /// How many output lines so far contain `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.logs
            .lines
            .lock()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

fn command(path: &Path, args: &[String], envs: &[(String, String)]) -> Command {
    let mut cmd = Command::new(path);
    cmd.args(args);
    for var in REMOVED_ENV {
        cmd.env_remove(var);
    }
    for (k, v) in DEFAULT_ENV {
        cmd.env(k, v);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Runs workspace binary `bin_name` to completion (same environment as [`Proc::spawn`]) and
/// returns its output; an error if it runs longer than `timeout` (it is killed then). For tests of
/// start-up failures such as config errors.
pub async fn run_output(
    bin_name: &str,
    args: &[String],
    envs: &[(String, String)],
    timeout: Duration,
) -> anyhow::Result<Output> {
    let path = binary_path(bin_name)?;
    let mut cmd = command(&path, args, envs);
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| anyhow!("{bin_name} did not exit within {timeout:?}"))?
        .with_context(|| format!("running {}", path.display()))
}

async fn read_lines(
    stream: impl AsyncRead + Unpin,
    prefix: Option<String>,
    logs: Arc<LogBuf>,
    addr_slot: AddrSlot,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let raw = String::from_utf8_lossy(&buf);
        let line = strip_ansi(raw.trim_end_matches(['\n', '\r']));
        if let Some(prefix) = &prefix {
            eprintln!("{prefix} {line}");
        }
        if let Some(addr) = parse_listening(&line) {
            let tx = addr_slot.lock().take();
            if let Some(tx) = tx {
                let _ = tx.send(addr);
            }
        }
        logs.push(line);
    }
}

/// The address after `listening on ` in `line` (quotes, commas and an `http://` prefix stripped).
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once(LISTENING_MARKER)?;
    let token = rest.split_whitespace().next()?;
    let token = token.trim_matches(|c: char| matches!(c, '"' | '\'' | ',' | ';' | '`'));
    let token = token
        .strip_prefix("http://")
        .or_else(|| token.strip_prefix("https://"))
        .unwrap_or(token);
    let token = token.trim_end_matches('/');
    token.parse().ok()
}

/// Removes ANSI escape sequences (CSI `ESC [ … letter` and two-byte `ESC x`).
fn strip_ansi(s: &str) -> String {
    if !s.contains('\u{1b}') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        // CSI: parameters and intermediates up to a final byte in '@'..='~'.
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines() {
        let a: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        assert_eq!(parse_listening("listening on 127.0.0.1:4242"), Some(a));
        assert_eq!(
            parse_listening(
                "2025-01-01T00:00:00Z  INFO spoke: listening on 127.0.0.1:4242 grpc=true"
            ),
            Some(a)
        );
        assert_eq!(parse_listening("listening on \"127.0.0.1:4242\","), Some(a));
        assert_eq!(
            parse_listening("listening on http://127.0.0.1:4242/"),
            Some(a)
        );
        assert_eq!(
            parse_listening("listening on [::1]:80"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_listening("listening on soon"), None);
        assert_eq!(parse_listening("nothing here"), None);
    }

    #[test]
    fn ansi() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2025\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m listening on 1.2.3.4:5"),
            "2025  INFO listening on 1.2.3.4:5"
        );
        assert_eq!(strip_ansi("plain"), "plain");
    }
}
