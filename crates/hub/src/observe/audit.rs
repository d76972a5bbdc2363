//! The audit log (`[audit]`): one JSON line per client request (every surface), written in
//! batches by a dedicated thread so the request path never waits on the file. The line itself is assembled by
//! [`crate::observe::RequestRecord`] when the request ends; its fields are listed in
//! docs/observability.md.

use crate::config::AuditConfig;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use serde::Serialize;

use crate::error::FailedAttempt;

/// Where audit lines go: a batch buffer in memory that a dedicated writer thread empties into
/// the file (or stdout) once per batch.
///
/// A request appends its line to the buffer under a short lock and never waits on the file and
/// never wakes the writer except for the first line of a batch. The writer then lets the batch
/// gather for `flush_interval` (default 100 ms), takes the whole buffer, writes it with one
/// `write` and flushes: one wake-up, one write and one flush per batch rather than per line. A
/// batch that grows past 64 KiB wakes the writer early. When the writer cannot keep up and the
/// buffer holds `max_buffer_bytes` (default 8 MiB), a new line is dropped and counted in
/// `switchyard_audit_lines_dropped_total` (and a warning is logged once per second), never
/// silently. At exit the hub binary calls [`close_all`] (after its runtime has shut down), which
/// writes what is left and stops the writers.
#[derive(Debug)]
pub struct AuditSink {
    shared: Arc<Shared>,
    pub capture_content: bool,
}

/// The buffers of every sink opened in this process, for [`close_all`] at exit (held here,
/// not through the sinks: a hub's sink is gone with its runtime before the process exits, but
/// its buffered lines must still be written).
static OPEN: Mutex<Vec<Arc<Shared>>> = Mutex::new(Vec::new());

/// Writes what every open audit sink holds and stops their writers, waiting at most `within`
/// for each (a writer blocked on its output — a pipe nobody reads — is left behind, its lines
/// counted as dropped, rather than holding the process). The hub binary calls it last, after
/// its runtime has shut down, so the lines of requests cut off by the drain timeout are in.
pub fn close_all(within: Duration) {
    let open: Vec<Arc<Shared>> = OPEN.lock().drain(..).collect();
    for shared in open {
        shared.close(within);
    }
}

/// A batch that grows past this many bytes wakes the writer before its interval is up.
const EARLY_WAKE_BYTES: usize = 64 * 1024;

#[derive(Debug)]
struct Shared {
    state: Mutex<Pending>,
    /// Lines dropped so far (also counted in `switchyard_audit_lines_dropped_total`).
    dropped: std::sync::atomic::AtomicU64,
    wake: Condvar,
    /// Signalled when the writer stops ([`Pending::finished`]).
    stopped: Condvar,
    max_bytes: usize,
    interval: Duration,
}

#[derive(Debug, Default)]
struct Pending {
    buf: Vec<u8>,
    /// The writer has written its last batch and stopped.
    finished: bool,
    /// The writer is waiting for a first line (an empty buffer).
    idle: bool,
    /// Woken early for a large batch already.
    woken: bool,
    closing: bool,
    dropped_since_warning: u64,
    last_warning: Option<Instant>,
}

thread_local! {
    /// Each thread's scratch buffer for serialising a line outside the lock.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl AuditSink {
    /// `None` when the audit log is disabled or the file cannot be opened (logged).
    pub fn open(cfg: &AuditConfig) -> Option<Arc<AuditSink>> {
        if !cfg.enabled {
            return None;
        }
        let out: Box<dyn Write + Send> = match &cfg.path {
            None => Box::new(std::io::stdout()),
            Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdout()),
            Some(p) => match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                Ok(f) => Box::new(f),
                Err(e) => {
                    tracing::error!(path = %p.display(), "audit log: cannot open ({e}); audit off");
                    return None;
                }
            },
        };
        Self::start(out, cfg)
    }

    /// A sink writing to `out` with `cfg`'s batching settings.
    fn start(out: Box<dyn Write + Send>, cfg: &AuditConfig) -> Option<Arc<AuditSink>> {
        let shared = Arc::new(Shared {
            state: Mutex::new(Pending::default()),
            dropped: std::sync::atomic::AtomicU64::new(0),
            wake: Condvar::new(),
            stopped: Condvar::new(),
            max_bytes: cfg.max_buffer_bytes.max(EARLY_WAKE_BYTES),
            interval: cfg.flush_interval(),
        });
        let spawned = std::thread::Builder::new().name("audit".into()).spawn({
            let shared = shared.clone();
            move || shared.write_batches(out)
        });
        if let Err(e) = spawned {
            tracing::error!("audit log: cannot start writer ({e}); audit off");
            return None;
        }
        // Registered at 0, so the series exists (and can be alerted on) before a first drop.
        metrics::counter!("switchyard_audit_lines_dropped_total").increment(0);
        {
            let mut open = OPEN.lock();
            // Sinks already closed (their writer stopped) need no closing at exit.
            open.retain(|s| !s.state.lock().finished);
            open.push(shared.clone());
        }
        Some(Arc::new(AuditSink {
            shared,
            capture_content: cfg.capture_content,
        }))
    }

    /// Appends one line: `line` serialised as JSON plus a newline. Never blocks on the file;
    /// a full buffer drops the line and counts it (`switchyard_audit_lines_dropped_total`).
    pub fn write<T: Serialize + ?Sized>(&self, line: &T) {
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            if serde_json::to_writer(&mut *scratch, line).is_err() {
                return;
            }
            scratch.push(b'\n');
            self.shared.append(scratch);
            if scratch.capacity() > EARLY_WAKE_BYTES {
                *scratch = Vec::new();
            }
        });
    }

    /// Lines dropped since the sink opened (every cause `switchyard_audit_lines_dropped_total`
    /// counts).
    pub fn dropped(&self) -> u64 {
        self.shared
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes what is buffered and stops the writer, waiting at most `within` for it; lines
    /// written afterwards are dropped and counted. A writer still blocked on its output after
    /// `within` is left behind (logged): shutting down must not wait on a stuck log reader.
    pub fn close(&self, within: Duration) {
        self.shared.close(within);
    }
}

impl Shared {
    /// [`AuditSink::close`].
    fn close(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut st = self.state.lock();
        st.closing = true;
        self.wake.notify_one();
        while !st.finished {
            if self.stopped.wait_until(&mut st, deadline).timed_out() {
                let pending = st.buf.len();
                drop(st);
                tracing::warn!(
                    pending_bytes = pending,
                    "audit log: the writer did not finish within {within:?} (its output is blocked); exiting without it"
                );
                return;
            }
        }
    }

    /// Counts `n` lost lines (metric, total, and the next warning).
    fn count_dropped(&self, st: &mut Pending, n: u64) {
        metrics::counter!("switchyard_audit_lines_dropped_total").increment(n);
        self.dropped
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        st.dropped_since_warning += n;
    }

    /// Logs the lines dropped since the last warning, at most once a second (the writer also
    /// calls it after each batch, so a burst of drops is reported even if none follow).
    fn warn_dropped(&self, mut st: parking_lot::MutexGuard<'_, Pending>) {
        let due = st
            .last_warning
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if st.dropped_since_warning > 0 && due {
            let dropped = std::mem::take(&mut st.dropped_since_warning);
            st.last_warning = Some(Instant::now());
            drop(st);
            tracing::warn!(
                dropped,
                "audit log: lines dropped (buffer full, a line larger than max_buffer_bytes, a failed write, or the log closing; switchyard_audit_lines_dropped_total)"
            );
        }
    }

    fn append(&self, line: &[u8]) {
        let mut st = self.state.lock();
        if st.closing || st.buf.len() + line.len() > self.max_bytes {
            self.count_dropped(&mut st, 1);
            self.warn_dropped(st);
            return;
        }
        st.buf.extend_from_slice(line);
        let wake = if st.idle {
            st.idle = false;
            true
        } else if !st.woken && st.buf.len() >= EARLY_WAKE_BYTES {
            st.woken = true;
            true
        } else {
            false
        };
        drop(st);
        if wake {
            self.wake.notify_one();
        }
    }

    /// The writer thread: waits for a first line, lets the batch gather for the interval (or
    /// until it is large), then writes and flushes it in one go.
    fn write_batches(&self, out: Box<dyn Write + Send>) {
        let mut out = out;
        let mut batch = Vec::new();
        loop {
            {
                let mut st = self.state.lock();
                while st.buf.is_empty() && !st.closing {
                    st.idle = true;
                    self.wake.wait(&mut st);
                }
                st.idle = false;
                if !st.closing && st.buf.len() < EARLY_WAKE_BYTES {
                    let deadline = Instant::now() + self.interval;
                    while !st.closing && st.buf.len() < EARLY_WAKE_BYTES {
                        if self.wake.wait_until(&mut st, deadline).timed_out() {
                            break;
                        }
                    }
                }
                std::mem::swap(&mut st.buf, &mut batch);
                st.woken = false;
                if batch.is_empty() && st.closing {
                    st.finished = true;
                    self.stopped.notify_all();
                    break;
                }
            }
            if let Err(e) = out.write_all(&batch).and_then(|()| out.flush()) {
                // The batch's lines are lost (a write that failed part-way may have left some
                // of them, and a partial line, in the output): all of them count as dropped.
                let lines = batch.iter().filter(|b| **b == b'\n').count() as u64;
                tracing::warn!(error = %e, bytes = batch.len(), lines, "audit log: write failed");
                let mut st = self.state.lock();
                self.count_dropped(&mut st, lines);
            }
            self.warn_dropped(self.state.lock());
            batch.clear();
            // Keep a big batch's buffer from pinning memory after a burst.
            if batch.capacity() > 4 * EARLY_WAKE_BYTES {
                batch.shrink_to(EARLY_WAKE_BYTES);
            }
        }
    }
}

/// One attempt as it appears in the audit line.
#[derive(Debug, Clone, Serialize)]
pub struct AuditAttempt<'a> {
    pub pool: &'a str,
    pub model: &'a str,
    pub spoke: &'a str,
    pub outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<&'a str>,
    /// The serving spoke's own attempts, when it reported them: `[{region, model, outcome,
    /// latency_ms}]`.
    #[serde(
        skip_serializing_if = "<[_]>::is_empty",
        serialize_with = "upstream_attempts"
    )]
    pub upstream: &'a [switchyard_proto::v1::Attempt],
}

/// The spoke's `Attempt` list as audit JSON: `[{region, model, outcome, latency_ms}]`.
fn upstream_attempts<S: serde::Serializer>(
    attempts: &&[switchyard_proto::v1::Attempt],
    ser: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Upstream<'a> {
        region: &'a str,
        model: &'a str,
        outcome: &'static str,
        latency_ms: u32,
    }
    ser.collect_seq(attempts.iter().map(|a| {
        let (region, model) = a
            .target
            .as_ref()
            .map_or(("", ""), |t| (t.region.as_str(), t.model.as_str()));
        Upstream {
            region,
            model,
            outcome: switchyard_core::labels::Outcome::from_wire(a.outcome).as_str(),
            latency_ms: a.latency_ms,
        }
    }))
}

impl<'a> AuditAttempt<'a> {
    pub fn failed(a: &'a FailedAttempt) -> Self {
        Self {
            pool: &a.provider,
            model: &a.model,
            spoke: &a.spoke,
            outcome: crate::observe::spans::failure_reason(&a.kind),
            account: a.account.as_deref(),
            region: None,
            upstream: &[],
        }
    }
}

/// RFC 3339 UTC with milliseconds, without a date crate.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn sink(path: &std::path::Path, flush_interval: &str) -> Arc<AuditSink> {
        AuditSink::open(&AuditConfig {
            path: Some(path.to_path_buf()),
            flush_interval: flush_interval.into(),
            max_buffer_bytes: 64 * 1024,
            ..AuditConfig::default()
        })
        .unwrap()
    }

    fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Lines from many threads gather in one batch (a 10 s interval: nothing is written yet)
    /// and every one of them, whole, is on disk once the sink closes.
    #[test]
    fn close_writes_every_buffered_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = sink(&path, "10s");
        std::thread::scope(|s| {
            for t in 0..4 {
                let audit = &audit;
                s.spawn(move || {
                    for i in 0..100 {
                        audit.write(&serde_json::json!({"thread": t, "i": i}));
                    }
                });
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(lines(&path).is_empty(), "the batch is still gathering");
        audit.close(Duration::from_secs(5));
        let got = lines(&path);
        assert_eq!(got.len(), 400);
        for t in 0..4 {
            let of_t: Vec<u64> = got
                .iter()
                .filter(|v| v["thread"] == t)
                .map(|v| v["i"].as_u64().unwrap())
                .collect();
            assert_eq!(
                of_t,
                (0..100).collect::<Vec<_>>(),
                "thread {t}: in order, none lost"
            );
        }
        assert_eq!(audit.dropped(), 0);
    }

    /// With a short interval a line reaches the file without any shutdown.
    #[test]
    fn a_batch_is_written_after_its_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = sink(&path, "20ms");
        audit.write(&serde_json::json!({"n": 1}));
        let mut got = Vec::new();
        for _ in 0..200 {
            got = lines(&path);
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got, vec![serde_json::json!({"n": 1})]);
        audit.write(&serde_json::json!({"n": 2}));
        audit.close(Duration::from_secs(5));
        assert_eq!(lines(&path).len(), 2);
    }

    /// An output that never returns (a pipe nobody reads) does not hold `close` past its
    /// deadline; an output that fails has its lines counted as dropped.
    #[test]
    fn a_stuck_or_failing_output_is_not_waited_for_and_is_counted() {
        struct Stuck(std::sync::mpsc::Receiver<()>);
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.recv();
                Err(std::io::Error::other("closed"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let cfg = AuditConfig {
            flush_interval: "1ms".into(),
            ..AuditConfig::default()
        };
        let (hold, rx) = std::sync::mpsc::channel();
        let stuck = AuditSink::start(Box::new(Stuck(rx)), &cfg).unwrap();
        stuck.write(&serde_json::json!({"n": 1}));
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        stuck.close(Duration::from_millis(200));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "close waited {:?}",
            started.elapsed()
        );
        drop(hold);

        struct Failing;
        impl Write for Failing {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("no space left"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let failing = AuditSink::start(Box::new(Failing), &cfg).unwrap();
        for n in 0..3 {
            failing.write(&serde_json::json!({"n": n}));
        }
        failing.close(Duration::from_secs(5));
        assert_eq!(
            failing.dropped(),
            3,
            "every line of the failed batches is counted"
        );
    }

    /// A line that does not fit in the buffer is dropped and counted, never half-written; so is
    /// a line after close.
    #[test]
    fn a_full_buffer_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = sink(&path, "10s");
        audit.write(&serde_json::json!({"big": "x".repeat(70 * 1024)}));
        audit.write(&serde_json::json!({"small": 1}));
        assert_eq!(audit.dropped(), 1);
        audit.close(Duration::from_secs(5));
        audit.write(&serde_json::json!({"late": 1}));
        assert_eq!(audit.dropped(), 2);
        assert_eq!(lines(&path), vec![serde_json::json!({"small": 1})]);
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
